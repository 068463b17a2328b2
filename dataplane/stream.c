/* stream.c — SSE relay with backpressure and cut detection (see stream.h). */
#include "stream.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "egress.h"
#include "hedge.h"
#include "log.h"
#include "server.h"
#include "sse_decoder.h"

void stream_reset(chat *c) {
  if (c->ms_phase == MS_ORIGINAL) { /* a continuation writes to the stream already begun */
    c->committed = 0;
    c->client_full = 0;
  }
  c->ms_dead = MS_ALIVE;
  c->first_event = 0;
  c->saw_done = 0;
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

/* ---- passthrough of the client's own dialect (chat.pt: Anthropic SSE as is) ---------- */

static int native_uint(const char *p, size_t n, const char *key, uint64_t *v) {
  size_t off, len;
  return req_json_find(p, n, key, &off, &len) == 0 && req_json_uint(p + off, len, v) == 0;
}

void stream_native_usage(chat *c, const char *p, size_t n, int in_message) {
  size_t off, len;
  if (in_message) {
    if (req_json_find(p, n, "message", &off, &len)) return;
    p += off;
    n = len;
  }
  if (req_json_find(p, n, "usage", &off, &len)) return;
  p += off;
  n = len;
  prov_usage *u = &c->usage;
  uint64_t input = u->prompt_tokens - u->cached_tokens - u->cache_write_tokens, v;
  int seen = 0;
  if (native_uint(p, n, "input_tokens", &v)) input = v, seen = 1;
  if (native_uint(p, n, "cache_read_input_tokens", &v)) u->cached_tokens = v, seen = 1;
  if (native_uint(p, n, "cache_creation_input_tokens", &v)) u->cache_write_tokens = v, seen = 1;
  if (native_uint(p, n, "output_tokens", &v)) u->completion_tokens = v, seen = 1;
  u->prompt_tokens = input + u->cached_tokens + u->cache_write_tokens;
  if (seen) u->seen = 1;
}

/* Decoder callback of a passthrough stream: first-event validity, usage, message_stop, and
 * an in-band error (before commit: fail over; after: relayed, and the stream ends). */
static void on_native_event(void *ud, const sse_event *ev) {
  chat *c = ud;
  if (!c->first_event) c->first_event = req_json_valid(ev->data, ev->data_len) ? 1 : -1;
  if (strcmp(ev->event, "message_stop") == 0) {
    c->saw_done = 1;
  } else if (strcmp(ev->event, "message_start") == 0) {
    stream_native_usage(c, ev->data, ev->data_len, 1);
  } else if (strcmp(ev->event, "message_delta") == 0) {
    stream_native_usage(c, ev->data, ev->data_len, 0);
  } else if (strcmp(ev->event, "error") == 0) {
    if (c->committed) { c->native_error = 1; return; }
    size_t off, len, o2, l2;
    const char *t = "";
    if (req_json_find(ev->data, ev->data_len, "error", &off, &len) == 0 &&
        req_json_find(ev->data + off, len, "type", &o2, &l2) == 0)
      t = ev->data + off + o2;
    int rl = strncmp(t, "\"rate_limit_error\"", 18) == 0;
    int ov = strncmp(t, "\"overloaded_error\"", 18) == 0;
    c->fail_class = rl ? MC_RATE_LIMITED : MC_SERVER_ERROR;
    snprintf(c->fail_reason, sizeof c->fail_reason, "%s",
             prov_error_name(rl ? PE_RATE_LIMITED : ov ? PE_OVERLOADED : PE_SERVER));
    c->first_event = -1; /* the client has seen nothing: fail over */
  }
}

static int commit(chat *c);

/* ---- groups that continue a dead stream (docs/resilience.md "Mid-stream failover") ----
 * Their committed streams are relayed as canonical events, not as upstream bytes: each
 * event is tracked (midstream.h: what the client has), a continuation's are spliced
 * (original id/created, its role chunk dropped, usage grown), and an in-band error or a
 * malformed event is held back, because a continuation may still follow it. Groups with
 * mid_stream_fallback: error never come here: their bytes pass as they are. */

/* The stream about to be committed is tracked: its group continues, and it is canonical
 * (a passthrough of the client's own dialect is not). */
static int ms_wanted(const chat *c) {
  return !c->pt && c->op == CHAT_OP_COMPLETIONS &&
         c->snap->groups[c->route.chain[0]].mid_stream_continue;
}

/* An in-band error (k = MIDSTREAM_EV_ERROR) or a malformed event ended the stream. A
 * continuation that has written nothing yet simply failed (fail over to the next one: the
 * client keeps the failure it was going to get); otherwise the stream died here and the
 * error event is held: it is what the client gets when no continuation succeeds. */
static int ms_held(chat *c, const sse_event *ev, int k) {
  int why = k == MIDSTREAM_EV_ERROR ? MS_ERROR : MS_MALFORMED;
  if (c->ms_phase == MS_PENDING) {
    c->fail_class = why == MS_ERROR ? MC_SERVER_ERROR : MC_OTHER_ERROR;
    strcpy(c->fail_reason, why == MS_ERROR ? "stream_error" : "garbage");
    return 1;
  }
  c->ms_dead = why;
  buf_reset(&c->ms_err);
  if (why == MS_ERROR && sse_frame(&c->ms_err, ev->event, ev->data, ev->data_len))
    buf_reset(&c->ms_err); /* ENOMEM: cut event */
  return 1;
}

/* Decoder callback of a tracked stream: track or splice into c->ms_out (written once per
 * upstream chunk by ms_relay). Nonzero stops the decoding: the stream ended ([DONE]) or
 * died. */
static int ms_event(void *ud, const sse_event *ev) {
  chat *c = ud;
  int k;
  size_t mark = c->ms_out.len;
  if (!ev->data_len) return 0; /* nothing a client could parse */
  on_event(c, ev);             /* [DONE] and usage, as the plain relay */
  if (c->ms_phase == MS_ORIGINAL) {
    k = midstream_track(&c->ms, ev->data, ev->data_len);
    if (k == -ENOMEM) k = MIDSTREAM_EV_CHUNK; /* continuable turned off; the event is fine */
    if (k >= 0 && k != MIDSTREAM_EV_ERROR &&
        sse_frame(&c->ms_out, ev->event, ev->data, ev->data_len))
      k = -ENOMEM;
  } else {
    k = midstream_splice(&c->splice, ev->event, ev->data, ev->data_len, &c->ms_out);
  }
  if (k == MIDSTREAM_EV_DROPPED) return 0;
  if (k < 0 || k == MIDSTREAM_EV_ERROR) {
    c->ms_out.len = mark; /* the splicer wrote the error event: it is held instead */
    c->saw_done = 0;
    return ms_held(c, ev, k);
  }
  if (c->ms_phase == MS_PENDING) attempt_ms_spliced(c); /* its first event out: it took over */
  c->saw_done = k == MIDSTREAM_EV_DONE;
  return c->saw_done;
}

/* Canonical bytes of a tracked stream to the client: the events they complete, in one
 * write (what precedes a held error goes out). Returns 0, or -1 when the client is gone. */
static int ms_relay(chat *c, const char *p, size_t n) {
  if (c->saw_done || c->ms_dead || c->fail_reason[0] || c->terminal_sent) return 0;
  buf_reset(&c->ms_out);
  int rc = sse_decode(&c->sse, p, n, ms_event, c);
  if (rc == SSE_TOO_BIG || rc == -ENOMEM) {
    if (c->ms_phase == MS_PENDING) record_garbage(c);
    else c->ms_dead = MS_MALFORMED;
  }
  if (!c->ms_out.len) return 0;
  int w = egress_stream_write(c, c->ms_out.data, c->ms_out.len);
  if (w < 0) { c->client_gone = 1; return -1; }
  if (!c->req) return -1; /* on_abort ran inside the write */
  if (w == 1) c->client_full = 1;
  return 0;
}

/* Commit of a tracked stream: tracking starts; the held bytes go out event by event. */
static int ms_begin(chat *c) {
  c->ms_on = 1;
  midstream_tracker_init(&c->ms);
  sse_reset(&c->sse); /* the held bytes are decoded again, now for the client */
  int rc = ms_relay(c, c->resp.data, c->resp.len);
  buf_free(&c->resp);
  return rc;
}

/* Upstream bytes of a tracked stream after commit, or of a continuation. */
static size_t ms_on_data(chat *c, const provider_ops *ops, const char *p, size_t n) {
  if (c->client_full) { /* not consumed, not fed: curl delivers it again on unpause */
    c->paused = 1;
    return CURL_WRITEFUNC_PAUSE;
  }
  c->last_byte_ms = uv_now(c->timer.loop);
  if (!ops) {
    if (ms_relay(c, p, n) < 0) return CURL_WRITEFUNC_ERROR;
  } else if (!c->saw_done && !c->ms_dead && !c->fail_reason[0]) {
    prov_error pe = PE_NONE;
    buf_reset(&c->out);
    int rc = ops->stream_feed(c->ps, p, n, &c->out, &c->usage, &pe);
    if (ms_relay(c, c->out.data, c->out.len) < 0) return CURL_WRITEFUNC_ERROR;
    if ((rc == PS_ERROR || rc == PS_GARBAGE) && !c->saw_done && !c->ms_dead && !c->fail_reason[0]) {
      if (c->ms_phase != MS_PENDING) {
        c->ms_dead = rc == PS_ERROR ? MS_ERROR : MS_MALFORMED; /* (no event: the cut event) */
      } else if (rc == PS_GARBAGE) {
        record_garbage(c);
      } else {
        c->fail_class = attempt_error_class(pe) == MC_CLIENT_ERROR ? MC_OTHER_ERROR
                                                                   : attempt_error_class(pe);
        snprintf(c->fail_reason, sizeof c->fail_reason, "%s", prov_error_name(pe));
      }
    }
    if (rc == PS_ERROR)
      LOG_WARN(c->rid, "stream_provider_error", LF_S("deployment", c->snap->deps[c->dep].name),
               LF_S("class", prov_error_name(pe)));
  }
  if (c->ms_dead || c->fail_reason[0] || c->terminal_sent) return CURL_WRITEFUNC_ERROR;
  return n;
}

/* Passthrough: the upstream bytes go to the client as they arrive, once the first event
 * was valid; the decoder only watches them. */
static size_t native_on_data(chat *c, const char *p, size_t n) {
  if (c->committed) {
    if (c->client_full) { /* not consumed: curl delivers it again on unpause */
      c->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    c->last_byte_ms = uv_now(c->timer.loop);
    if (c->saw_done || c->terminal_sent) return n;
    sse_feed(&c->sse, p, n, on_native_event, c);
    int rc = hs_stream_write(c->req, p, n);
    if (rc < 0) { c->client_gone = 1; return CURL_WRITEFUNC_ERROR; }
    if (!c->req) return CURL_WRITEFUNC_ERROR; /* on_abort ran inside the write */
    if (rc == 1) c->client_full = 1;
    if (c->native_error) { /* relayed as is: it is the stream's end */
      c->terminal_sent = 1;
      return CURL_WRITEFUNC_ERROR;
    }
    return n;
  }
  if (buf_append(&c->resp, p, n) || sse_feed(&c->sse, p, n, on_native_event, c) < 0 ||
      c->first_event < 0 || c->resp.len > ATTEMPT_MAX_PRECOMMIT) {
    if (!c->fail_reason[0]) record_garbage(c);
    return CURL_WRITEFUNC_ERROR;
  }
  if (c->first_event > 0 && commit(c) < 0) {
    c->client_gone = 1;
    return CURL_WRITEFUNC_ERROR;
  }
  if (c->saw_done) return n;
  return c->req ? n : CURL_WRITEFUNC_ERROR;
}

/* The first event was valid: send status, headers and the held bytes. */
static int commit(chat *c) {
  hs_header h[] = {{"cache-control", "no-cache"},
                   {"x-llmesh-deployment", c->hdr_deployment},
                   {"x-llmesh-attempts", c->hdr_attempts}};
  hedge_claim(c); /* the first stream of a race to commit is the client's */
  attempt_stream_committed(c); /* no failover from here on; the idle check starts */
  if (server_stream_begin(c->req, c->rid, 200, "text/event-stream", h, 3) < 0) return -1;
  c->committed = 1;
  metrics_active_streams++;
  if (ms_wanted(c)) return ms_begin(c);
  int rc = egress_stream_write(c, c->resp.data, c->resp.len);
  buf_free(&c->resp); /* held bytes are out: a long-lived stream keeps no buffer for them */
  if (rc < 0) return -1;
  if (rc == 1) c->client_full = 1;
  return 0;
}

/* Writes c->out to the committed client stream. Returns 0 or -1 (client gone). */
static int write_out(chat *c) {
  if (!c->out.len) return 0;
  int rc = egress_stream_write(c, c->out.data, c->out.len);
  if (rc < 0) { c->client_gone = 1; return -1; }
  if (!c->req) return -1; /* on_abort ran inside the write */
  if (rc == 1) c->client_full = 1;
  return 0;
}

/* Held canonical bytes + c->out go out with the status line. */
static int commit_out(chat *c) {
  if (buf_append(&c->resp, c->out.data, c->out.len)) return -2;
  return commit(c) < 0 ? -1 : 0;
}

static size_t adapter_on_data(chat *c, const provider_ops *ops, const char *p, size_t n) {
  prov_error pe = PE_NONE;
  if (c->committed) {
    if (c->client_full) { /* not consumed, not fed: curl delivers it again on unpause */
      c->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    c->last_byte_ms = uv_now(c->timer.loop);
    if (c->saw_done || c->terminal_sent) return n; /* after the end: nothing to say */
    buf_reset(&c->out);
    int rc = ops->stream_feed(c->ps, p, n, &c->out, &c->usage, &pe);
    if (write_out(c) < 0) return CURL_WRITEFUNC_ERROR;
    if (rc == PS_DONE) c->saw_done = 1;
    if (c->terminal_sent && rc != PS_ERROR) return CURL_WRITEFUNC_ERROR; /* egress ended it */
    if (rc == PS_ERROR) { /* the adapter wrote the error event: end the stream */
      c->terminal_sent = 1;
      LOG_WARN(c->rid, "stream_provider_error", LF_S("deployment", c->snap->deps[c->dep].name),
               LF_S("class", prov_error_name(pe)));
      return CURL_WRITEFUNC_ERROR;
    }
    if (rc == PS_GARBAGE) return CURL_WRITEFUNC_ERROR; /* on_done: the cut event */
    return n;
  }
  c->precommit_in += n;
  buf_reset(&c->out);
  int rc = ops->stream_feed(c->ps, p, n, &c->out, &c->usage, &pe);
  if (rc == PS_ERROR) { /* in-band error before any byte reached the client: fail over */
    c->fail_class = attempt_error_class(pe);
    if (c->fail_class == MC_CLIENT_ERROR) c->fail_class = MC_OTHER_ERROR;
    snprintf(c->fail_reason, sizeof c->fail_reason, "%s", prov_error_name(pe));
    return CURL_WRITEFUNC_ERROR;
  }
  if (rc == PS_GARBAGE || c->precommit_in > ATTEMPT_MAX_PRECOMMIT) {
    record_garbage(c);
    return CURL_WRITEFUNC_ERROR;
  }
  if (rc == PS_DONE) c->saw_done = 1;
  if (c->out.len) {
    int r = commit_out(c);
    if (r == -2) { record_garbage(c); return CURL_WRITEFUNC_ERROR; }
    if (r < 0) { c->client_gone = 1; return CURL_WRITEFUNC_ERROR; }
  }
  return c->req && !c->ms_dead ? n : CURL_WRITEFUNC_ERROR;
}

int stream_adapter_eof(chat *c) {
  if (!c->ps) return 0;
  buf_reset(&c->out);
  int rc = c->ps_ops->stream_end(c->ps, &c->out, &c->usage);
  if (c->committed && c->ms_on) { /* tracked: [DONE] sets saw_done when it goes out */
    ms_relay(c, c->out.data, c->out.len);
    return 0;
  }
  if (c->committed) {
    if (rc == PS_DONE) {
      if (write_out(c) < 0) return 0; /* stream_finish copes with a gone client */
      c->saw_done = 1;
    }
    return 0;
  }
  if (rc != PS_DONE || !c->out.len) return 0;
  c->saw_done = 1;
  return commit_out(c) == 0 ? 1 : -1;
}

size_t stream_on_data(chat *c, const char *p, size_t n) {
  if (!c->req || c->client_gone) return CURL_WRITEFUNC_ERROR;
  if (c->pt) return native_on_data(c, p, n);
  const provider_ops *ops = c->snap->deps[c->dep].ops;
  if (c->committed && c->ms_on) return ms_on_data(c, ops, p, n); /* continuations too */
  if (ops) return adapter_on_data(c, ops, p, n);
  if (c->committed) {
    if (c->client_full) { /* not consumed: curl delivers it again on unpause */
      c->paused = 1;
      return CURL_WRITEFUNC_PAUSE;
    }
    c->last_byte_ms = uv_now(c->timer.loop); /* cached loop time: no syscall per chunk */
    sse_feed(&c->sse, p, n, on_event, c); /* accounting only; bytes pass as they are */
    int rc = c->egress == EGRESS_OPENAI ? hs_stream_write(c->req, p, n)
                                        : egress_stream_write(c, p, n);
    if (rc < 0) { c->client_gone = 1; return CURL_WRITEFUNC_ERROR; }
    if (!c->req) return CURL_WRITEFUNC_ERROR; /* on_abort ran inside the write */
    if (rc == 1) c->client_full = 1;
    if (c->terminal_sent) return CURL_WRITEFUNC_ERROR; /* the egress wrote an error event */
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
  return c->req && !c->terminal_sent && !c->ms_dead ? n : CURL_WRITEFUNC_ERROR;
}

int stream_finish(chat *c) { return stream_end(c, 0); }

int stream_end(chat *c, int stalled) {
  int ok = c->saw_done && !stalled;
  if (stalled) {
    egress_stream_fail(c, 1);
    LOG_WARN(c->rid, "stream_stalled", LF_S("deployment", c->snap->deps[c->dep].name),
             LF_I("idle_ms", c->idle_ms));
  } else if (!ok && !c->terminal_sent) {
    egress_stream_fail(c, 0);
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
