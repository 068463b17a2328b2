/* attempt.c — the attempt lifecycle (see attempt.h; attempt_int.h maps the other parts).
 *
 *   attempt_serve → failover_next → attempt_start ─(curl)→ on_header / on_write
 *        ↑                                           │
 *        └──── failover_failed ←── on_done / on_deadline
 *
 * Here: building the upstream request (passthrough, adapter, embeddings, tokens), starting
 * the transfer, the curl callbacks, on_done and the stream idle check. Curl callbacks
 * record a decision (fail_reason) and abort the transfer; on_done, which runs after
 * curl_multi_info_read outside any curl callback, acts on it. What a failure means for the
 * breaker and the next pick is failover.c; waits and the total deadline are wait.c; a
 * committed stream that dies is continuation.c; a racing second chat is hedge.c. */
#include "attempt_int.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "curl_uv.h"
#include "egress.h"
#include "gcp_auth.h"
#include "hedge.h"
#include "log.h"
#include "ratelimit.h"
#include "server.h"
#include "stream.h"

static cu_multi multi;
static uint64_t chats_in_flight;

static void on_done(CURL *e, CURLcode res, cu_owner *o);

uint64_t attempt_chats_in_flight(void) { return chats_in_flight; }

uint64_t attempt_now_ms(void) { return multi.loop ? uv_now(multi.loop) : 0; }

/* Wall clock ms (absolute reset times in headers are dates); breakers use loop time. */
static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* A response header line of the current attempt ("Name: value\r\n"), any status: the
 * provider's reset hint (ratelimit.h), read at the end of the block. */
static void reset_hint_header(chat *c, const char *line, size_t len) {
  const char *colon = memchr(line, ':', len);
  if (!colon || colon == line) return;
  char f = (char)(line[0] | 0x20); /* retry-after*, x-ratelimit-*, anthropic-ratelimit-* */
  if (f != 'r' && f != 'x' && f != 'a') return;
  size_t nlen = (size_t)(colon - line);
  ratelimit_header(&c->rl, line, nlen, colon + 1, len - nlen - 1, wall_ms());
}

/* ---- lifetime ------------------------------------------------------------------ */

/* Frees what an adapter attempt built (the transfer must be released already). */
static void adapter_clear(chat *c) {
  prov_request_free(&c->preq);
  curl_slist_free_all(c->up_hdrs);
  c->up_hdrs = NULL;
  if (c->ps) c->ps_ops->stream_free(c->ps);
  c->ps = NULL;
  c->ps_ops = NULL;
}

void chat_open(chat *c) {
  chats_in_flight++;
  c->cu.done = on_done;
  sse_init(&c->sse);
  uv_timer_init(multi.loop, &c->timer);
  hedge_init(c, multi.loop);
  c->handles_open = 2;
}

/* One of the chat's uv handles is closed: the chat is freed with the last. */
static void chat_closed_one(chat *c) {
  if (--c->handles_open > 0) return;
  adapter_clear(c);
  buf_free(&c->out);
  buf_free(&c->canon);
  buf_free(&c->eg);
  if (c->ais) ai_stream_free(c->ais);
  snapshot_unref(c->snap);
  buf_free(&c->up_body);
  buf_free(&c->resp);
  sse_free(&c->sse);
  midstream_tracker_free(&c->ms);
  if (c->splice_live) midstream_splice_free(&c->splice);
  buf_free(&c->ms_out);
  buf_free(&c->ms_err);
  buf_free(&c->ms_body);
  free(c);
  chats_in_flight--;
}

static void on_chat_closed(uv_handle_t *h) {
  chat_closed_one(container_of((uv_timer_t *)h, chat, timer));
}
static void on_hedge_closed(uv_handle_t *h) {
  chat_closed_one(container_of((uv_timer_t *)h, chat, hedge_timer));
}

/* Stops the current transfer if any (never from inside a curl callback). */
void attempt_release(chat *c) {
  if (!c->easy) return;
  if (c->in_multi) cu_cancel(&multi, c->easy);
  c->in_multi = 0;
  cu_easy_put(&multi, c->easy, c->ri.stream);
  c->easy = NULL;
  c->paused = 0;
}

void chat_free(chat *c) {
  if (c->peer) { /* never expected: a racing peer must not outlive the client request */
    chat *p = c->peer;
    c->peer = p->peer = NULL;
    hedge_cancel(p);
  }
  if (c->brk_open) failover_brk_end(c, BO_NEUTRAL);
  gcp_auth_cancel(&c->gw);
  attempt_release(c);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_chat_closed);
  hedge_close(c, on_hedge_closed);
}

void chat_set_dep_headers(chat *c) {
  const char *name = c->dep >= 0 ? c->snap->deps[c->dep].name : "";
  snprintf(c->hdr_deployment, sizeof c->hdr_deployment, "%s", name);
  snprintf(c->hdr_attempts, sizeof c->hdr_attempts, "%d", c->attempts);
}

/* Whole response to the client; the chat is finished afterwards (unless a transfer
 * is still running, which never happens here). */
static void chat_respond(chat *c, int status, const char *ctype, const char *body, size_t len) {
  hedge_claim(c); /* the first answer of a race is the client's */
  hs_header h[2] = {{"x-llmesh-deployment", c->hdr_deployment}, {"x-llmesh-attempts", c->hdr_attempts}};
  int nh = c->attempts ? 2 : 0;
  buf_t tr = {0};
  int rc = egress_whole(c, &status, &ctype, body, len, &tr); /* 1: OpenAI, as is */
  if (rc == 0) body = tr.data, len = tr.len;
  if (rc < 0) {
    server_error(c->req, c->rid, 503, "server_error", "server_busy", "Out of memory.", h, nh,
                 c->dep >= 0 ? c->snap->deps[c->dep].name : NULL, c->attempts);
  } else {
    server_respond(c->req, c->rid, status, ctype, h, nh, body, len,
                   c->dep >= 0 ? c->snap->deps[c->dep].name : NULL, c->attempts);
  }
  buf_free(&tr);
  c->req = NULL;
}

void chat_error(chat *c, int status, const char *type, const char *code, const char *msg) {
  hedge_claim(c);
  char ra[16];
  snprintf(ra, sizeof ra, "%u", c->retry_after_s ? c->retry_after_s : 1u);
  hs_header h[3] = {{"x-llmesh-deployment", c->hdr_deployment},
                    {"x-llmesh-attempts", c->hdr_attempts}, {"retry-after", ra}};
  int nh = c->attempts ? 2 : 0;
  if (status == 429 || (status == 503 && c->retry_after_s)) h[nh++] = h[2];
  buf_t b = {0};
  if (c->egress != EGRESS_OPENAI &&
      egress_error_body(c->egress, status, type, code, msg, &b) == 0) {
    server_respond(c->req, c->rid, status, "application/json", h, nh, b.data, b.len,
                   c->dep >= 0 ? c->snap->deps[c->dep].name : NULL, c->attempts);
  } else {
    server_error(c->req, c->rid, status, type, code, msg, h, nh,
                 c->dep >= 0 ? c->snap->deps[c->dep].name : NULL, c->attempts);
  }
  buf_free(&b);
  c->req = NULL;
}

/* ---- curl callbacks: record, never act on the multi ----------------------------- */

static size_t on_header(char *b, size_t size, size_t n, void *ud) {
  chat *c = ud;
  size_t len = size * n;
  if (len >= 5 && memcmp(b, "HTTP/", 5) == 0) { /* a new header block: reset */
    const char *sp = memchr(b, ' ', len);
    c->status = sp ? atoi(sp + 1) : 0;
    c->headers_done = 0;
    c->relay = 0;
    c->reset_ms = 0;
    memset(&c->rl, 0, sizeof c->rl);
    c->content_type[0] = '\0';
    return len;
  }
  if (len <= 2 && (b[0] == '\r' || b[0] == '\n')) {
    if (c->status >= 100 && c->status < 200) return len; /* 1xx: the real block follows */
    c->headers_done = 1;
    c->reset_ms = ratelimit_wait_ms(&c->rl);
    const snap_dep *d = &c->snap->deps[c->dep];
    c->hdr_latency_ms = (double)(util_now_us() - c->attempt_start_us) / 1000.0;
    hist_add(&d->stats->latency, c->hdr_latency_ms);
    if (!c->ri.stream && c->status >= 200 && c->status < 300)
      hedge_note_headers(d->stats, c->hdr_latency_ms);
    if (d->ops && c->status >= 100) { /* adapter: read the error body, classify in on_done */
      c->err_body = c->status < 200 || c->status >= 300;
      return len;
    }
    if (c->status == 408 || c->status == 429 || c->status >= 500 || c->status < 100 ||
        c->status == 401 || c->status == 403) { /* 401/403: our key, not the client's fault */
      c->fail_class = c->status == 429 ? MC_RATE_LIMITED
                      : c->status == 401 || c->status == 403 ? MC_AUTH_ERROR
                      : c->status < 100 ? MC_OTHER_ERROR : MC_SERVER_ERROR;
      if (c->status < 100) strcpy(c->fail_reason, "garbage");
      else snprintf(c->fail_reason, sizeof c->fail_reason, "http_%d", c->status);
      return 0; /* abort: the client has seen nothing */
    }
    if (c->status < 200 || c->status >= 300) c->relay = 1; /* client's fault: relay as is */
    return len;
  }
  reset_hint_header(c, b, len);
  if (len > 13 && strncasecmp(b, "content-type:", 13) == 0) {
    size_t i = 13, e = len;
    while (i < e && (b[i] == ' ' || b[i] == '\t')) i++;
    while (e > i && (b[e - 1] == '\r' || b[e - 1] == '\n' || b[e - 1] == ' ')) e--;
    if (e - i >= sizeof c->content_type) e = i + sizeof c->content_type - 1;
    memcpy(c->content_type, b + i, e - i);
    c->content_type[e - i] = '\0';
  }
  return len;
}

static size_t on_write(char *p, size_t size, size_t n, void *ud) {
  chat *c = ud;
  size_t len = size * n, r;
  c->in_curl++;
  if (!c->req) {
    r = CURL_WRITEFUNC_ERROR;
  } else if (c->err_body) { /* what classify_error needs is at the start: keep a prefix */
    size_t room = ATTEMPT_MAX_ERROR_BODY - c->resp.len;
    if (room) buf_append(&c->resp, p, len < room ? len : room); /* ENOMEM: classify less */
    r = len;
  } else if (c->ri.stream && !c->relay) {
    r = stream_on_data(c, p, len);
  } else if (c->resp.len + len > ATTEMPT_MAX_BODY || buf_append(&c->resp, p, len)) {
    c->fail_class = MC_OTHER_ERROR;
    strcpy(c->fail_reason, "too_large");
    r = CURL_WRITEFUNC_ERROR;
  } else {
    r = len;
  }
  c->in_curl--;
  return r;
}

/* ---- starting attempts ------------------------------------------------------------ */

static void on_deadline(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  if (!c->easy || (c->committed && c->ms_phase != MS_PENDING)) return;
  const char *reason = "timeout";
  curl_off_t pre = 0;
  if (curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK && pre == 0)
    reason = "connect_timeout";
  attempt_release(c); /* a uv callback: removing from the multi is allowed here */
  failover_failed(c, MC_TIMEOUT, reason);
}

/* stream_options.include_usage of the client's body (adapters emit the usage chunk). */
static int include_usage(const chat *c) {
  size_t off, len, o2, l2;
  if (req_json_find(c->body, c->body_len, "stream_options", &off, &len)) return 0;
  if (req_json_find(c->body + off, len, "include_usage", &o2, &l2)) return 0;
  return l2 == 4 && memcmp(c->body + off + o2, "true", 4) == 0;
}

/* What the adapter needs to know about d, credentials included (the access token the
 * chat holds for the attempt, gcp_auth.h). */
static void attempt_target(const chat *c, const snap_dep *d, prov_target *t) {
  *t = (prov_target){.api_base = d->api_base, .api_key = d->api_key,
                     .upstream_model = d->upstream_model, .api_version = d->api_version,
                     .aws_access_key_id = d->aws_access_key_id,
                     .aws_secret_access_key = d->aws_secret_access_key,
                     .aws_session_token = d->aws_session_token, .aws_region = d->aws_region,
                     .gcp_project = d->gcp_project, .gcp_location = d->gcp_location,
                     .access_token = c->access_token};
}

/* c->preq's headers as a curl list in c->up_hdrs. Returns 0 or -1. */
static int preq_headers(chat *c) {
  struct curl_slist *h;
  const char *p = c->preq.headers.data;
  for (int i = 0; i < c->preq.nheaders; i++, p += strlen(p) + 1) {
    if (!(h = curl_slist_append(c->up_hdrs, p))) return -1;
    c->up_hdrs = h;
  }
  if (!(h = curl_slist_append(c->up_hdrs, "Expect:"))) return -1; /* no 100-continue stall */
  c->up_hdrs = h;
  return 0;
}

/* Builds the adapter's request for d from the canonical body into c->preq / c->up_hdrs
 * (and the stream decoder). Returns 0, ATTEMPT_UNEXPRESSIBLE (message in c->bad_request)
 * or -1. */
static int adapter_build(chat *c, const snap_dep *d, const char *body, size_t body_len) {
  prov_canon canon = {body, body_len, c->ri.stream, c->ri.stream && include_usage(c)};
  prov_target t;
  attempt_target(c, d, &t);
  adapter_clear(c);
  int rc = d->ops->build_request(&t, &canon, &c->preq, c->bad_request, sizeof c->bad_request);
  if (rc == -EINVAL) return ATTEMPT_UNEXPRESSIBLE;
  if (rc || !buf_cstr(&c->preq.url) || preq_headers(c)) return -1;
  if (c->preq.dropped[0]) { /* fields this provider cannot honour: never silently */
    LOG_WARN(c->rid, "fields_dropped", LF_S("deployment", d->name), LF_S("provider", d->ops->name),
             LF_S("fields", c->preq.dropped));
    d->stats->fields_dropped++;
  }
  if (c->ri.stream) {
    if (!(c->ps = d->ops->stream_new(&canon, d->upstream_model))) return -1;
    c->ps_ops = d->ops;
  }
  return 0;
}

/* adapter_build for an embeddings request: families without embeddings are skipped
 * like a request they cannot express. */
static int adapter_build_embeddings(chat *c, const snap_dep *d) {
  prov_target t;
  attempt_target(c, d, &t);
  adapter_clear(c);
  if (!d->ops->build_embeddings) {
    snprintf(c->bad_request, sizeof c->bad_request,
             "No deployment of this model supports embeddings (provider family '%s' has none).",
             d->ops->name);
    return ATTEMPT_UNEXPRESSIBLE;
  }
  int rc = d->ops->build_embeddings(&t, c->body, c->body_len, &c->preq, c->bad_request,
                                    sizeof c->bad_request);
  if (rc == -EINVAL) return ATTEMPT_UNEXPRESSIBLE;
  if (rc || !buf_cstr(&c->preq.url) || preq_headers(c)) return -1;
  return 0;
}

/* An Anthropic client and an anthropic-family deployment: the client's body goes as is
 * with only `model` rewritten, to the adapter's URL with the adapter's headers (built
 * from a minimal canonical request, so URL and credential rules stay in anthropic.c);
 * anthropic-version is the client's when it sent one, and its anthropic-beta is forwarded.
 * Returns 0 or -1. */
static int passthrough_build(chat *c, const snap_dep *d) {
  static const char probe[] = "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\".\"}]}";
  prov_canon canon = {probe, sizeof probe - 1, c->ri.stream, 0};
  prov_target t;
  char err[128];
  attempt_target(c, d, &t);
  const char *v = hs_header_get(c->req, "anthropic-version");
  if (v && *v) t.api_version = v;
  adapter_clear(c);
  if (d->ops->build_request(&t, &canon, &c->preq, err, sizeof err)) return -1;
  const char *beta = hs_header_get(c->req, "anthropic-beta"); /* opt-in features, as sent */
  if (beta && *beta && !strpbrk(beta, "\r\n") && prov_request_header(&c->preq, "anthropic-beta", beta))
    return -1;
  if (!buf_cstr(&c->preq.url) || preq_headers(c)) return -1;
  if (req_rewrite_model(&c->up_body, c->req->body, c->req->body_len, &c->native_ri,
                        d->upstream_model))
    return -1;
  c->up_model = NULL; /* up_body no longer holds the canonical body */
  return 0;
}

/* No access token for an attempt: counted as a failed attempt of its deployment. */
void attempt_token_failed(chat *c, enum metrics_class cls, const char *reason) {
  c->attempts++;
  chat_set_dep_headers(c);
  failover_failed(c, cls, reason);
}

/* The token fetch the chat waited for ended. */
static void on_token(gcp_waiter *w, int ok) {
  chat *c = container_of(w, chat, gw);
  uv_timer_stop(&c->timer);
  if (!c->req) { chat_free(c); return; }
  if (!ok) { attempt_token_failed(c, MC_OTHER_ERROR, "auth_no_token"); return; }
  const snap_dep *from = NULL;
  const char *reason = NULL;
  if (!failover_try(c, c->dep, &from, &reason)) failover_next(c, from, reason);
}

/* The attempt's deadline passed while it waited for a token: a timeout (fails over). */
static void on_token_deadline(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  if (!c->gw.cred) return;
  gcp_auth_cancel(&c->gw);
  attempt_token_failed(c, MC_TIMEOUT, "token_timeout");
}

/* Parks the chat on dep's credential until its token fetch ends (bounded by the
 * attempt's deadline). ATTEMPT_PARKED, or ATTEMPT_NO_TOKEN when no fetch can run. */
static int token_park(chat *c, int dep) {
  const snap_dep *d = &c->snap->deps[dep];
  c->dep = dep;
  if (!d->gcp || gcp_auth_wait(d->gcp, &c->gw, on_token) < 0) return ATTEMPT_NO_TOKEN;
  c->clipped = 0;
  uint32_t ms = wait_clip_ms(c, c->ri.stream ? d->stream_timeout_ms : d->timeout_ms, &c->clipped);
  if (ms) uv_timer_start(&c->timer, on_token_deadline, ms, 0);
  LOG_DEBUG(c->rid, "attempt_waits_for_token", LF_S("deployment", d->name));
  return ATTEMPT_PARKED;
}

/* Returns 0 started, ATTEMPT_UNEXPRESSIBLE, ATTEMPT_PARKED, ATTEMPT_NO_TOKEN,
 * ATTEMPT_NO_CONTINUE, or -1 (nothing was sent). */
int attempt_start(chat *c, int dep) {
  const snap_dep *d = &c->snap->deps[dep];
  const char *url, *body, *canon = c->body;
  size_t body_len, canon_len = c->body_len;
  const req_info *canon_ri = &c->ri;
  struct curl_slist *hdrs;
  if (c->ms_phase != MS_ORIGINAL) { /* a continuation: its own canonical body */
    int rc = continuation_build(c, d);
    if (rc) return rc;
    canon = c->ms_body.data;
    canon_len = c->ms_body.len;
    canon_ri = &c->ms_ri;
  }
  c->access_token = NULL;
  c->used_token = 0;
  if (d->ops && (d->gcp || d->gcp_broken)) {
    const char *tok = d->gcp ? gcp_auth_token(d->gcp, &c->token_gen) : NULL;
    if (!tok) return token_park(c, dep);
    c->access_token = tok;
    c->used_token = 1;
  }
  int pt = c->has_native && c->op == CHAT_OP_COMPLETIONS && d->ops == &prov_anthropic &&
           c->ms_phase == MS_ORIGINAL; /* a continuation is spliced on canonical events */
  if (pt) {
    if (passthrough_build(c, d)) return -1;
    url = c->preq.url.data;
    hdrs = c->up_hdrs;
    body = c->up_body.data;
    body_len = c->up_body.len;
  } else if (d->ops) {
    int rc = c->op == CHAT_OP_EMBEDDINGS ? adapter_build_embeddings(c, d)
                                         : adapter_build(c, d, canon, canon_len);
    c->access_token = NULL; /* copied into the request's headers */
    if (rc) return rc;
    url = c->preq.url.data;
    hdrs = c->up_hdrs;
    body = c->preq.body.data;
    body_len = c->preq.body.len;
  } else {
    adapter_clear(c);
    if (canon != c->body || !c->up_model || strcmp(c->up_model, d->upstream_model) != 0) {
      if (req_rewrite_model(&c->up_body, canon, canon_len, canon_ri, d->upstream_model)) return -1;
      c->up_model = canon == c->body ? d->upstream_model : NULL; /* NULL: not the original's */
    }
    url = c->op == CHAT_OP_EMBEDDINGS ? d->embed_url : d->url;
    hdrs = c->ri.stream ? d->hdrs_stream : d->hdrs_json;
    body = c->up_body.data;
    body_len = c->up_body.len;
  }
  c->dep = dep;
  c->pt = pt;
  c->native_error = 0;
  c->attempts++;
  chat_set_dep_headers(c);
  c->status = 0;
  c->headers_done = 0;
  c->relay = 0;
  c->err_body = 0;
  c->precommit_in = 0;
  c->terminal_sent = 0;
  memset(&c->usage, 0, sizeof c->usage);
  c->content_type[0] = '\0';
  c->fail_reason[0] = '\0';
  c->hdr_latency_ms = c->ttft_ms = 0;
  c->reset_ms = 0;
  c->clipped = 0;
  buf_reset(&c->resp);
  stream_reset(c);
  uint32_t ms = wait_clip_ms(c, c->ri.stream ? d->stream_timeout_ms : d->timeout_ms, &c->clipped);
  uint32_t connect_ms = wait_clip_ms(c, d->connect_timeout_ms, &c->clipped);

  CURL *e = cu_easy_get(&multi, c->ri.stream);
  if (!e) return -1;
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, hdrs);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)body_len);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, body ? body : ""); /* not copied: lives in c */
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, c);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, c);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
  c->attempt_start_us = util_now_us();
  if (cu_start(&multi, e, &c->cu)) {
    cu_easy_put(&multi, e, c->ri.stream);
    return -1;
  }
  c->easy = e;
  c->in_multi = 1;
  d->stats->requests++;
  failover_brk_start(c, dep);
  if (ms) uv_timer_start(&c->timer, on_deadline, ms, 0);
  hedge_arm(c);
  LOG_DEBUG(c->rid, "attempt", LF_S("deployment", d->name), LF_I("attempt", c->attempts));
  return 0;
}

/* ---- completion --------------------------------------------------------------------- */

void attempt_curl_failure(CURLcode res, CURL *e, enum metrics_class *cls, const char **reason) {
  curl_off_t pre = 0;
  switch (res) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION:
      *cls = MC_CONNECT_ERROR; *reason = "connect_error"; return;
    case CURLE_OPERATION_TIMEDOUT:
      curl_easy_getinfo(e, CURLINFO_PRETRANSFER_TIME_T, &pre);
      *cls = MC_TIMEOUT; *reason = pre == 0 ? "connect_timeout" : "timeout"; return;
    default:
      *cls = MC_OTHER_ERROR; *reason = "upstream_closed"; return;
  }
}

void attempt_account_usage(chat *c, const snap_dep *d) {
  if (c->usage.seen) { /* decoded by an adapter */
    c->prompt_tokens = c->usage.prompt_tokens;
    c->completion_tokens = c->usage.completion_tokens;
    c->have_usage = 1;
  }
  if (!c->have_usage) return;
  d->stats->prompt_tokens += c->prompt_tokens;
  d->stats->completion_tokens += c->completion_tokens;
}

static void finish_whole(chat *c, const snap_dep *d) {
  const char *ct = c->content_type[0] ? c->content_type : "application/json";
  if (c->relay) {
    d->stats->errors[MC_CLIENT_ERROR]++; /* the client's fault, not the provider's */
    failover_brk_end(c, BO_NEUTRAL);
    chat_respond(c, c->status, ct, c->resp.data, c->resp.len);
    return;
  }
  uint64_t pt, ctk;
  if (sse_usage(c->resp.data ? c->resp.data : "", c->resp.len, &pt, &ctk) == 0) {
    c->prompt_tokens = pt;
    c->completion_tokens = ctk;
    c->have_usage = 1;
  }
  d->stats->success++;
  failover_brk_end(c, BO_SUCCESS);
  attempt_account_usage(c, d);
  chat_respond(c, c->status, ct, c->resp.data, c->resp.len);
}

/* ---- adapter answers ---------------------------------------------------------------- */

enum metrics_class attempt_error_class(prov_error e) {
  switch (e) {
    case PE_RATE_LIMITED: return MC_RATE_LIMITED;
    case PE_OVERLOADED:
    case PE_SERVER: return MC_SERVER_ERROR;
    case PE_TIMEOUT: return MC_TIMEOUT;
    case PE_BAD_REQUEST:
    case PE_CONTEXT_LENGTH:
    case PE_CONTENT_POLICY:
    case PE_NOT_FOUND: return MC_CLIENT_ERROR;
    case PE_AUTH: return MC_AUTH_ERROR;
    default: return MC_OTHER_ERROR; /* garbage, unknown */
  }
}

/* A short summary of the provider's error message for the client: error.message of the
 * body (Anthropic, Gemini and OpenAI all put it there), printable ASCII only, at most
 * 200 bytes, and dropped entirely when it names a URL, a host of ours or the key. Never
 * the raw body: it is another dialect and may carry addresses. */
static void provider_summary(const chat *c, const snap_dep *d, char *out, size_t cap) {
  out[0] = '\0';
  json_t *root = json_loadb(c->resp.data ? c->resp.data : "", c->resp.len, 0, NULL);
  json_t *m = json_object_get(json_object_get(root, "error"), "message");
  const char *msg = json_string_value(m);
  if (msg && !strstr(msg, "://") && !strstr(msg, "127.0.0.1") && !strstr(msg, "localhost") &&
      !(*d->api_key && strstr(msg, d->api_key))) {
    size_t n = 0;
    for (const char *p = msg; *p && n + 1 < cap && n < 200; p++)
      if ((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f) out[n++] = *p;
    out[n] = '\0';
  }
  json_decref(root);
}

/* The provider refused the request as the client's fault: an OpenAI-shaped error. */
static void adapter_client_error(chat *c, const snap_dep *d, prov_error pe) {
  char summary[256], msg[640];
  int status = pe == PE_NOT_FOUND ? 404 : 400;
  const char *code = pe == PE_CONTEXT_LENGTH ? "context_length_exceeded"
                     : pe == PE_CONTENT_POLICY ? "content_filter"
                     : pe == PE_NOT_FOUND ? "model_not_found" : "invalid_request";
  provider_summary(c, d, summary, sizeof summary);
  snprintf(msg, sizeof msg, "Deployment '%s' (%s) rejected the request (HTTP %d)%s%s", d->name,
           d->provider, c->status, summary[0] ? ": " : ".", summary);
  d->stats->errors[MC_CLIENT_ERROR]++;
  failover_brk_end(c, BO_NEUTRAL);
  LOG_INFO(c->rid, "provider_rejected", LF_S("deployment", d->name), LF_I("status", c->status),
           LF_S("class", prov_error_name(pe)));
  chat_error(c, status, "invalid_request_error", code, msg);
}

/* An adapter's embeddings answer → the OpenAI list in c->out (base64 vectors when the
 * client asked for them, as the openai SDKs do by default). Returns 0 or <0. */
static int embeddings_decode(chat *c, const snap_dep *d) {
  buf_reset(&c->out);
  int rc = d->ops->decode_embeddings(c->resp.data ? c->resp.data : "", c->resp.len,
                                     c->ri.model, &c->out, &c->usage);
  if (rc || !c->embed_b64) return rc;
  buf_t b = {0};
  rc = prov_embeddings_base64(c->out.data, c->out.len, &b);
  if (rc == 0) {
    buf_free(&c->out);
    c->out = b;
  } else {
    buf_free(&b);
  }
  return rc;
}

/* The fallback kind an OpenAI-shaped 400 asks for: error.code context_length_exceeded (or
 * a message about the maximum context length), resp. content_filter /
 * content_policy_violation; -1 = none. Only read for a 400 about to be relayed. */
static int passthrough_divert_kind(const chat *c) {
  if (c->status != 400 || !c->resp.len) return -1;
  json_t *root = json_loadb(c->resp.data, c->resp.len, 0, NULL);
  json_t *err = json_object_get(root, "error");
  const char *code = json_string_value(json_object_get(err, "code"));
  const char *msg = json_string_value(json_object_get(err, "message"));
  int k = -1;
  if ((code && strcmp(code, "context_length_exceeded") == 0) ||
      (msg && strstr(msg, "maximum context length")))
    k = ROUTE_DIVERT_CONTEXT_WINDOW;
  else if (code && (strcmp(code, "content_filter") == 0 || strcmp(code, "content_policy_violation") == 0))
    k = ROUTE_DIVERT_CONTENT_POLICY;
  json_decref(root);
  return k;
}

/* A whole adapter answer decoded (or relayed) fine: 200 to the client, the chat ends. */
static void adapter_success(chat *c, const snap_dep *d, const char *ctype, const char *body,
                            size_t len) {
  attempt_release(c);
  d->stats->success++;
  failover_brk_end(c, BO_SUCCESS);
  attempt_account_usage(c, d);
  chat_respond(c, 200, ctype, body, len);
  chat_free(c);
}

/* on_done for an adapter deployment whose answer has not reached the client. */
static void adapter_done(chat *c, CURL *e, CURLcode res, const snap_dep *d) {
  enum metrics_class cls;
  const char *reason;
  char rbuf[24];
  if (c->fail_reason[0]) {
    cls = c->fail_class;
    reason = c->fail_reason;
  } else if (c->err_body) {
    uint64_t retry_after_ms = 0; /* the body's reset hint (Gemini RetryInfo, ...) */
    prov_error pe = d->ops->classify_error(c->status, c->resp.data ? c->resp.data : "",
                                           c->resp.len, &retry_after_ms);
    if (!c->reset_ms) c->reset_ms = retry_after_ms; /* the headers' hint wins when both */
    if (c->status == 401 && c->used_token && d->gcp) gcp_auth_rejected(d->gcp, c->token_gen);
    cls = attempt_error_class(pe);
    if ((pe == PE_CONTEXT_LENGTH || pe == PE_CONTENT_POLICY) &&
        failover_divert(c, d, pe == PE_CONTEXT_LENGTH ? ROUTE_DIVERT_CONTEXT_WINDOW
                                                 : ROUTE_DIVERT_CONTENT_POLICY))
      return;
    if (cls == MC_CLIENT_ERROR && c->pt && c->resp.len &&
        req_json_valid(c->resp.data, c->resp.len)) { /* already the client's dialect */
      attempt_release(c);
      d->stats->errors[MC_CLIENT_ERROR]++;
      failover_brk_end(c, BO_NEUTRAL);
      LOG_INFO(c->rid, "provider_rejected", LF_S("deployment", d->name), LF_I("status", c->status),
               LF_S("class", prov_error_name(pe)));
      chat_respond(c, c->status, c->content_type[0] ? c->content_type : "application/json",
                   c->resp.data, c->resp.len);
      chat_free(c);
      return;
    }
    if (cls == MC_CLIENT_ERROR) {
      attempt_release(c);
      adapter_client_error(c, d, pe);
      chat_free(c);
      return;
    }
    if (pe == PE_NONE) snprintf(rbuf, sizeof rbuf, "http_%d", c->status);
    else snprintf(rbuf, sizeof rbuf, "%s", prov_error_name(pe));
    reason = rbuf;
  } else if (res != CURLE_OK) {
    attempt_curl_failure(res, e, &cls, &reason);
  } else if (!c->headers_done) {
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else if (c->op == CHAT_OP_EMBEDDINGS) {
    if (embeddings_decode(c, d) == 0) {
      adapter_success(c, d, "application/json", c->out.data, c->out.len);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else if (!c->ri.stream && c->pt) {
    if (c->resp.len && req_json_valid(c->resp.data, c->resp.len)) { /* relayed untouched */
      stream_native_usage(c, c->resp.data, c->resp.len, 0);
      adapter_success(c, d, c->content_type[0] ? c->content_type : "application/json",
                      c->resp.data, c->resp.len);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else if (!c->ri.stream) {
    buf_reset(&c->out);
    if (d->ops->decode_response(c->resp.data ? c->resp.data : "", c->resp.len, d->upstream_model,
                                &c->out, &c->usage) == 0) {
      adapter_success(c, d, "application/json", c->out.data, c->out.len);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else {
    int rc = stream_adapter_eof(c); /* the last event may complete only at EOF */
    if (rc != 0) {
      attempt_release(c);
      if (rc < 0) { c->client_gone = 1; return; } /* on_abort frees */
      if (c->ms_on && !c->saw_done) {
        continuation_died(c, c->ms_dead ? c->ms_dead : MS_CUT);
        return;
      }
      attempt_account_usage(c, d);
      if (c->saw_done) d->stats->success++;
      else d->stats->errors[MC_OTHER_ERROR]++;
      failover_brk_end(c, c->saw_done ? BO_SUCCESS : BO_SERVER);
      stream_finish(c);
      chat_free(c);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage"; /* 2xx stream without a single canonical event */
  }
  if (reason != rbuf) snprintf(rbuf, sizeof rbuf, "%s", reason); /* reset by the next start */
  attempt_release(c);
  failover_failed(c, cls, rbuf);
}

static void on_done(CURL *e, CURLcode res, cu_owner *o) {
  chat *c = container_of(o, chat, cu);
  enum metrics_class cls;
  const char *reason;
  c->in_multi = 0;
  uv_timer_stop(&c->timer);
  if (!c->req || c->client_gone) { /* client left: on_abort did or will clean up */
    attempt_release(c);
    if (!c->req) chat_free(c);
    return;
  }
  const snap_dep *d = &c->snap->deps[c->dep];
  if (c->committed && c->ms_phase == MS_PENDING) { /* a continuation, nothing written yet */
    if (d->ops && res == CURLE_OK && !c->fail_reason[0] && !c->err_body && c->headers_done)
      stream_adapter_eof(c); /* its events may complete only at EOF */
    if (c->ms_phase == MS_PENDING) { continuation_pending_done(c, e, res, d); return; }
    if (c->client_gone) { attempt_release(c); return; } /* on_abort frees */
  } else if (c->committed && d->ops && res == CURLE_OK && !c->saw_done && !c->terminal_sent &&
             !c->ms_dead) {
    stream_adapter_eof(c);
  }
  if (c->committed && c->ms_on && !c->saw_done && !c->client_gone && c->req) {
    attempt_release(c); /* the stream died: continued elsewhere when it can be */
    continuation_died(c, c->ms_dead ? c->ms_dead : MS_CUT);
    return;
  }
  if (c->committed) { /* stream: the client has bytes, no failover possible */
    attempt_account_usage(c, d);
    if (res == CURLE_OK && c->saw_done) d->stats->success++;
    else d->stats->errors[MC_OTHER_ERROR]++; /* cut, or ended by an in-band error */
    failover_brk_end(c, res == CURLE_OK && c->saw_done ? BO_SUCCESS : BO_SERVER);
    attempt_release(c);
    stream_finish(c);
    chat_free(c);
    return;
  }
  if (d->ops) { adapter_done(c, e, res, d); return; }
  if (c->fail_reason[0]) { cls = c->fail_class; reason = c->fail_reason; }
  else if (res != CURLE_OK) attempt_curl_failure(res, e, &cls, &reason);
  else if (!c->headers_done) { cls = MC_OTHER_ERROR; reason = "garbage"; }
  else if (c->relay || !c->ri.stream) {
    if (!c->relay && !req_json_valid(c->resp.data ? c->resp.data : "", c->resp.len)) {
      cls = MC_OTHER_ERROR; reason = "garbage";
    } else {
      int k = c->relay ? passthrough_divert_kind(c) : -1;
      if (k >= 0 && failover_divert(c, d, (enum route_divert_kind)k)) return;
      attempt_release(c);
      finish_whole(c, d);
      chat_free(c);
      return;
    }
  } else if (req_json_valid(c->resp.data ? c->resp.data : "", c->resp.len) && c->resp.len) {
    attempt_release(c); /* asked for a stream, got one JSON answer: pass it on whole */
    finish_whole(c, d);
    chat_free(c);
    return;
  } else {
    cls = MC_OTHER_ERROR; reason = "garbage"; /* 2xx stream without a single event */
  }
  char rbuf[24];
  snprintf(rbuf, sizeof rbuf, "%s", reason); /* fail_reason is reset by the next start */
  attempt_release(c);
  failover_failed(c, cls, rbuf);
}

/* ---- stream idle check ---------------------------------------------------------------
 * One timer per chat, armed once at commit: each upstream chunk only records the loop
 * time (stream_on_data), and the timer re-arms itself for the remainder when it fires
 * early, so nothing is restarted per chunk. A transfer paused for a slow client is not
 * idle upstream (the server cuts clients that never read). */

static void on_stream_idle(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  if (!c->easy || !c->committed || !c->req || c->client_gone) return;
  uint64_t idle = uv_now(t->loop) - c->last_byte_ms, left = wait_left_ms(c);
  if (c->paused || c->client_full) idle = 0;
  if (idle < c->idle_ms && left > 0) {
    uint64_t ms = c->idle_ms - idle;
    uv_timer_start(t, on_stream_idle, ms < left ? ms : left, 0);
    return;
  }
  const snap_dep *d = &c->snap->deps[c->dep];
  if (c->ms_on && left > 0) { /* a stall: continued elsewhere when it can be */
    attempt_release(c); /* a uv callback: removing from the multi is allowed */
    continuation_died(c, MS_STALL);
    return;
  }
  attempt_account_usage(c, d);
  if (left == 0) { /* the request's total deadline, not the provider's silence */
    metrics_req_fail[MRF_REQUEST_TIMEOUT]++;
    LOG_WARN(c->rid, "request_timeout", LF_I("total_timeout_ms", snap_total_timeout_ms(c)),
             LF_I("attempts", c->attempts), LF_B("streaming", 1));
    failover_brk_end(c, BO_NEUTRAL);
  } else {
    d->stats->errors[MC_OTHER_ERROR]++;
    failover_brk_end(c, BO_SERVER);
  }
  attempt_release(c); /* a uv callback: removing from the multi is allowed; no DONE follows */
  stream_end(c, 1);
  chat_free(c);
}

void attempt_stream_committed(chat *c) {
  /* the idle bound between upstream chunks is the deployment's timeout (30 s if none) */
  uint32_t ms = c->snap->deps[c->dep].timeout_ms;
  c->idle_ms = ms ? ms : ATTEMPT_STREAM_IDLE_MS;
  c->last_byte_ms = uv_now(c->timer.loop);
  c->ttft_ms = (double)(util_now_us() - c->attempt_start_us) / 1000.0;
  uint64_t left = wait_left_ms(c);
  uv_timer_start(&c->timer, on_stream_idle, c->idle_ms < left ? c->idle_ms : left, 0);
}

/* ---- entry points -------------------------------------------------------------------- */

int attempt_init(uv_loop_t *loop) {
  int rc = cu_init(&multi, loop);
  if (rc == 0) gcp_auth_init(loop, &multi);
  return rc;
}

void attempt_shutdown(void) {
  gcp_auth_shutdown(); /* cancels token fetches: the multi must be idle */
  cu_close(&multi, NULL);
}

void attempt_chat(hs_request *req, snapshot *snap, const req_info *ri, const char *rid, int group) {
  attempt_serve(req, snap, ri, rid, group, NULL);
}

/* encoding_format "base64" in an embeddings request body. */
static int wants_base64(const char *body, size_t len) {
  size_t off, n;
  if (req_json_find(body, len, "encoding_format", &off, &n)) return 0;
  return n == 8 && memcmp(body + off, "\"base64\"", 8) == 0;
}

void attempt_serve(hs_request *req, snapshot *snap, const req_info *ri, const char *rid, int group,
                   const chat_opts *o) {
  chat *c = calloc(1, sizeof *c);
  int anth_stream = o && o->egress == EGRESS_ANTHROPIC && ri->stream;
  if (c && anth_stream && !(c->ais = ai_stream_new(ri->model))) {
    free(c);
    c = NULL;
  }
  if (!c) {
    server_error(req, rid, 503, "server_error", "server_busy", "Out of memory.", NULL, 0, NULL, 0);
    return;
  }
  c->req = req;
  c->snap = snapshot_ref(snap);
  c->ri = *ri;
  c->body = req->body;
  c->body_len = req->body_len;
  if (o) {
    c->op = o->op;
    c->egress = o->egress;
    if (o->canon) { /* moved: the chat owns the canonical body now */
      c->canon = *o->canon;
      memset(o->canon, 0, sizeof *o->canon);
      c->body = c->canon.data;
      c->body_len = c->canon.len;
    }
    if (o->native) {
      c->native_ri = *o->native;
      c->has_native = 1;
    }
  }
  if (c->op == CHAT_OP_EMBEDDINGS) {
    c->ri.stream = 0; /* embeddings never stream */
    c->embed_b64 = wants_base64(c->body, c->body_len);
  }
  c->dep = -1;
  c->pending_dep = -1;
  c->ms_from = -1;
  uint32_t total = snap_total_timeout_ms(c);
  if (total) c->deadline_ms = uv_now(multi.loop) + total;
  snprintf(c->rid, sizeof c->rid, "%s", rid);
  chat_open(c);
  req->user = c;
  route_init(&c->route, snap, group);
  failover_next(c, NULL, NULL);
}

void attempt_on_abort(hs_request *req) {
  chat *c = req->user;
  if (!c) return;
  if (c->peer) { /* a race nobody will win: the hedge goes too */
    chat *p = c->peer;
    hedge_detach(c, "client_gone");
    hedge_cancel(p);
  }
  if (c->dep >= 0 && (c->easy || c->committed)) c->snap->deps[c->dep].stats->errors[MC_CANCELLED]++;
  failover_brk_end(c, BO_NEUTRAL); /* a cancellation says nothing about the provider */
  if (c->committed) metrics_active_streams--;
  server_access_log(req, c->rid, 499, c->dep >= 0 ? c->snap->deps[c->dep].name : NULL, c->attempts);
  LOG_INFO(c->rid, "client_gone", LF_S("deployment", c->dep >= 0 ? c->snap->deps[c->dep].name : NULL),
           LF_B("streaming", c->committed));
  c->req = NULL;
  req->user = NULL;
  if (c->in_curl) return; /* the callback returns an error; on_done frees */
  chat_free(c);           /* curl_multi_remove_handle: no CURLMSG_DONE follows */
}

void attempt_on_drain(hs_request *req) {
  chat *c = req->user;
  if (c) stream_drain(c);
}
