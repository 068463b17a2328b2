/* stream.c — SSE relay with backpressure and cut detection (see stream.h). */
#include "stream.h"

#include <string.h>

#include "log.h"
#include "server.h"

void stream_reset(chat *c) {
  c->committed = 0;
  c->first_event = 0;
  c->saw_done = 0;
  c->client_full = 0;
  c->paused = 0;
  c->have_usage = 0;
  c->prompt_tokens = c->completion_tokens = 0;
  sse_reset(&c->sse);
}

/* Decoder callback: [DONE], usage, and the validity of the first event. */
static void on_event(void *ud, const sse_event *ev) {
  chat *c = ud;
  if (sse_is_done(ev)) {
    c->saw_done = 1;
    if (!c->first_event) c->first_event = 1;
    return;
  }
  if (!c->first_event) c->first_event = req_json_valid(ev->data, ev->data_len) ? 1 : -1;
  uint64_t pt, ct;
  if (ev->data_len && sse_usage(ev->data, ev->data_len, &pt, &ct) == 0) {
    c->prompt_tokens = pt;
    c->completion_tokens = ct;
    c->have_usage = 1;
  }
}

static void record_garbage(chat *c) {
  c->fail_class = MC_OTHER_ERROR;
  strcpy(c->fail_reason, "garbage");
}

/* The first event was valid: send status, headers and the held bytes. */
static int commit(chat *c) {
  hs_header h[] = {{"cache-control", "no-cache"},
                   {"x-llmesh-deployment", c->hdr_deployment},
                   {"x-llmesh-attempts", c->hdr_attempts}};
  attempt_stream_committed(c); /* no failover from here on; the idle check starts */
  if (server_stream_begin(c->req, c->rid, 200, "text/event-stream", h, 3) < 0) return -1;
  c->committed = 1;
  metrics_active_streams++;
  int rc = hs_stream_write(c->req, c->resp.data, c->resp.len);
  buf_free(&c->resp); /* held bytes are out: a long-lived stream keeps no buffer for them */
  if (rc < 0) return -1;
  if (rc == 1) c->client_full = 1;
  return 0;
}

size_t stream_on_data(chat *c, const char *p, size_t n) {
  if (!c->req || c->client_gone) return CURL_WRITEFUNC_ERROR;
  if (c->committed) {
    if (c->client_full) { /* not consumed: curl delivers it again on unpause */
      c->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    c->last_byte_ms = uv_now(c->timer.loop); /* cached loop time: no syscall per chunk */
    sse_feed(&c->sse, p, n, on_event, c); /* accounting only; bytes pass as they are */
    int rc = hs_stream_write(c->req, p, n);
    if (rc < 0) { c->client_gone = 1; return CURL_WRITEFUNC_ERROR; }
    if (!c->req) return CURL_WRITEFUNC_ERROR; /* on_abort ran inside the write */
    if (rc == 1) c->client_full = 1;
    return n;
  }
  if (buf_append(&c->resp, p, n) || sse_feed(&c->sse, p, n, on_event, c) < 0 ||
      c->first_event < 0 || c->resp.len > ATTEMPT_MAX_PRECOMMIT) {
    record_garbage(c);
    return CURL_WRITEFUNC_ERROR;
  }
  if (c->first_event > 0 && commit(c) < 0) {
    c->client_gone = 1;
    return CURL_WRITEFUNC_ERROR;
  }
  return c->req ? n : CURL_WRITEFUNC_ERROR;
}

int stream_finish(chat *c) { return stream_end(c, 0); }

int stream_end(chat *c, int stalled) {
  int ok = c->saw_done && !stalled;
  if (stalled) {
    hs_stream_write(c->req, STREAM_STALL_EVENT, sizeof STREAM_STALL_EVENT - 1);
    LOG_WARN(c->rid, "stream_stalled", LF_S("deployment", c->snap->deps[c->dep].name),
             LF_I("idle_ms", c->idle_ms));
  } else if (!ok) {
    hs_stream_write(c->req, STREAM_CUT_EVENT, sizeof STREAM_CUT_EVENT - 1);
    LOG_WARN(c->rid, "stream_cut", LF_S("deployment", c->snap->deps[c->dep].name));
  }
  server_access_log(c->req, c->rid, 200, c->snap->deps[c->dep].name, c->attempts);
  hs_stream_end(c->req);
  c->req = NULL;
  metrics_active_streams--;
  return ok;
}

void stream_drain(chat *c) {
  c->client_full = 0;
  if (!c->paused || !c->easy) return;
  c->last_byte_ms = uv_now(c->timer.loop); /* a pause is the client's doing, not upstream idling */
  c->paused = 0;
  /* may call the write callback before it returns, which may pause again */
  curl_easy_pause(c->easy, CURLPAUSE_CONT);
}
