/* attempt.c — upstream attempts and failover (see attempt.h).
 *
 *   attempt_chat → attempt_next → attempt_start ─(curl)→ on_header / on_write
 *        ↑                                          │
 *        └──── attempt_failed ←── on_done / on_deadline
 *
 * Curl callbacks record a decision (fail_reason) and abort the transfer; on_done, which
 * runs after curl_multi_info_read outside any curl callback, acts on it. */
#include "attempt.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "curl_uv.h"
#include "egress.h"
#include "gcp_auth.h"
#include "log.h"
#include "server.h"
#include "stream.h"

static cu_multi multi;
static uint64_t chats_in_flight;

#define ATTEMPT_UNEXPRESSIBLE 1 /* attempt_start: the adapter cannot express the request */
#define ATTEMPT_PARKED 2        /* attempt_start: waiting for an access token (gcp_auth.h) */
#define ATTEMPT_NO_TOKEN 3      /* attempt_start: no access token and none coming: auth */

static void attempt_next(chat *c, const snap_dep *from, const char *reason);
static void attempt_failed(chat *c, enum metrics_class cls, const char *reason);

uint64_t attempt_chats_in_flight(void) { return chats_in_flight; }

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

static void on_chat_closed(uv_handle_t *h) {
  chat *c = container_of((uv_timer_t *)h, chat, timer);
  adapter_clear(c);
  buf_free(&c->out);
  buf_free(&c->canon);
  buf_free(&c->eg);
  if (c->ais) ai_stream_free(c->ais);
  snapshot_unref(c->snap);
  buf_free(&c->up_body);
  buf_free(&c->resp);
  sse_free(&c->sse);
  free(c);
  chats_in_flight--;
}

/* Stops the current transfer if any (never from inside a curl callback). */
static void release_easy(chat *c) {
  if (!c->easy) return;
  if (c->in_multi) cu_cancel(&multi, c->easy);
  c->in_multi = 0;
  cu_easy_put(&multi, c->easy, c->ri.stream);
  c->easy = NULL;
  c->paused = 0;
}

static void chat_free(chat *c) {
  gcp_auth_cancel(&c->gw);
  release_easy(c);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_chat_closed);
}

static void chat_set_dep_headers(chat *c) {
  const char *name = c->dep >= 0 ? c->snap->deps[c->dep].name : "";
  snprintf(c->hdr_deployment, sizeof c->hdr_deployment, "%s", name);
  snprintf(c->hdr_attempts, sizeof c->hdr_attempts, "%d", c->attempts);
}

/* Whole response to the client; the chat is finished afterwards (unless a transfer
 * is still running, which never happens here). */
static void chat_respond(chat *c, int status, const char *ctype, const char *body, size_t len) {
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

static void chat_error(chat *c, int status, const char *type, const char *code, const char *msg) {
  hs_header h[3] = {{"x-llmesh-deployment", c->hdr_deployment},
                    {"x-llmesh-attempts", c->hdr_attempts}, {"retry-after", "1"}};
  int nh = c->attempts ? 2 : 0;
  if (status == 429) h[nh++] = h[2];
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
    c->content_type[0] = '\0';
    return len;
  }
  if (len <= 2 && (b[0] == '\r' || b[0] == '\n')) {
    if (c->status >= 100 && c->status < 200) return len; /* 1xx: the real block follows */
    c->headers_done = 1;
    const snap_dep *d = &c->snap->deps[c->dep];
    hist_add(&d->stats->latency, (double)(util_now_us() - c->attempt_start_us) / 1000.0);
    if (d->ops && c->status >= 100) { /* adapter: read the error body, classify in on_done */
      c->err_body = c->status < 200 || c->status >= 300;
      return len;
    }
    if (c->status == 408 || c->status == 429 || c->status >= 500 || c->status < 100) {
      c->fail_class = c->status == 429 ? MC_RATE_LIMITED
                      : c->status < 100 ? MC_OTHER_ERROR : MC_SERVER_ERROR;
      if (c->status < 100) strcpy(c->fail_reason, "garbage");
      else snprintf(c->fail_reason, sizeof c->fail_reason, "http_%d", c->status);
      return 0; /* abort: the client has seen nothing */
    }
    if (c->status < 200 || c->status >= 300) c->relay = 1; /* client's fault: relay as is */
    return len;
  }
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
  if (!c->easy || c->committed) return;
  const char *reason = "timeout";
  curl_off_t pre = 0;
  if (curl_easy_getinfo(c->easy, CURLINFO_PRETRANSFER_TIME_T, &pre) == CURLE_OK && pre == 0)
    reason = "connect_timeout";
  release_easy(c); /* a uv callback: removing from the multi is allowed here */
  attempt_failed(c, MC_TIMEOUT, reason);
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

/* Builds the adapter's request for d into c->preq / c->up_hdrs (and the stream decoder).
 * Returns 0, ATTEMPT_UNEXPRESSIBLE (message in c->bad_request) or -1. */
static int adapter_build(chat *c, const snap_dep *d) {
  prov_canon canon = {c->body, c->body_len, c->ri.stream, c->ri.stream && include_usage(c)};
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

static int attempt_try(chat *c, int next, const snap_dep **from, const char **reason);

/* No access token for an attempt: counted as a failed attempt of its deployment. */
static void token_failed(chat *c, enum metrics_class cls, const char *reason) {
  c->attempts++;
  chat_set_dep_headers(c);
  attempt_failed(c, cls, reason);
}

/* The token fetch the chat waited for ended. */
static void on_token(gcp_waiter *w, int ok) {
  chat *c = container_of(w, chat, gw);
  uv_timer_stop(&c->timer);
  if (!c->req) { chat_free(c); return; }
  if (!ok) { token_failed(c, MC_OTHER_ERROR, "auth_no_token"); return; }
  const snap_dep *from = NULL;
  const char *reason = NULL;
  if (!attempt_try(c, c->dep, &from, &reason)) attempt_next(c, from, reason);
}

/* The attempt's deadline passed while it waited for a token: a timeout (fails over). */
static void on_token_deadline(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  if (!c->gw.cred) return;
  gcp_auth_cancel(&c->gw);
  token_failed(c, MC_TIMEOUT, "token_timeout");
}

/* Parks the chat on dep's credential until its token fetch ends (bounded by the
 * attempt's deadline). ATTEMPT_PARKED, or ATTEMPT_NO_TOKEN when no fetch can run. */
static int token_park(chat *c, int dep) {
  const snap_dep *d = &c->snap->deps[dep];
  c->dep = dep;
  if (!d->gcp || gcp_auth_wait(d->gcp, &c->gw, on_token) < 0) return ATTEMPT_NO_TOKEN;
  uint32_t ms = c->ri.stream ? d->stream_timeout_ms : d->timeout_ms;
  if (ms) uv_timer_start(&c->timer, on_token_deadline, ms, 0);
  LOG_DEBUG(c->rid, "attempt_waits_for_token", LF_S("deployment", d->name));
  return ATTEMPT_PARKED;
}

/* Returns 0 started, ATTEMPT_UNEXPRESSIBLE, ATTEMPT_PARKED, ATTEMPT_NO_TOKEN, or -1
 * (nothing was sent). */
static int attempt_start(chat *c, int dep) {
  const snap_dep *d = &c->snap->deps[dep];
  const char *url, *body;
  size_t body_len;
  struct curl_slist *hdrs;
  c->access_token = NULL;
  c->used_token = 0;
  if (d->ops && (d->gcp || d->gcp_broken)) {
    const char *tok = d->gcp ? gcp_auth_token(d->gcp, &c->token_gen) : NULL;
    if (!tok) return token_park(c, dep);
    c->access_token = tok;
    c->used_token = 1;
  }
  int pt = c->has_native && c->op == CHAT_OP_COMPLETIONS && d->ops == &prov_anthropic;
  if (pt) {
    if (passthrough_build(c, d)) return -1;
    url = c->preq.url.data;
    hdrs = c->up_hdrs;
    body = c->up_body.data;
    body_len = c->up_body.len;
  } else if (d->ops) {
    int rc = c->op == CHAT_OP_EMBEDDINGS ? adapter_build_embeddings(c, d) : adapter_build(c, d);
    c->access_token = NULL; /* copied into the request's headers */
    if (rc) return rc;
    url = c->preq.url.data;
    hdrs = c->up_hdrs;
    body = c->preq.body.data;
    body_len = c->preq.body.len;
  } else {
    adapter_clear(c);
    if (!c->up_model || strcmp(c->up_model, d->upstream_model) != 0) {
      if (req_rewrite_model(&c->up_body, c->body, c->body_len, &c->ri, d->upstream_model)) return -1;
      c->up_model = d->upstream_model;
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
  buf_reset(&c->resp);
  stream_reset(c);

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
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, (long)d->connect_timeout_ms);
  c->attempt_start_us = util_now_us();
  if (cu_start(&multi, e, &c->cu)) {
    cu_easy_put(&multi, e, c->ri.stream);
    return -1;
  }
  c->easy = e;
  c->in_multi = 1;
  d->stats->requests++;
  uint32_t ms = c->ri.stream ? d->stream_timeout_ms : d->timeout_ms;
  if (ms) uv_timer_start(&c->timer, on_deadline, ms, 0);
  LOG_DEBUG(c->rid, "attempt", LF_S("deployment", d->name), LF_I("attempt", c->attempts));
  return 0;
}

/* Every attempt failed (or none could be made): the final OpenAI-shaped error. */
static void finish_exhausted(chat *c) {
  char msg[1024];
  const char *model = c->ri.model;
  if (c->attempts == 0 && c->n_unexpressible) { /* nothing sent: no provider can take it */
    chat_error(c, 400, "invalid_request_error", "unsupported_request", c->bad_request);
  } else if (c->attempts == 0) {
    snprintf(msg, sizeof msg, "No deployment is available for model '%.200s'.", model);
    chat_error(c, 503, "server_error", "no_deployment_available", msg);
  } else if (c->n_rate_limited == c->n_failed) {
    snprintf(msg, sizeof msg, "Every deployment for model '%.200s' is rate limited (%d attempts: %s).",
             model, c->attempts, c->failures);
    chat_error(c, 429, "rate_limit_error", "rate_limit_exceeded", msg);
  } else if (c->last_class == MC_TIMEOUT) {
    snprintf(msg, sizeof msg, "Upstream timed out for model '%.200s' (%d attempts: %s).", model,
             c->attempts, c->failures);
    chat_error(c, 504, "server_error", "upstream_timeout", msg);
  } else {
    snprintf(msg, sizeof msg, "All upstream attempts failed for model '%.200s' (%d attempts: %s).",
             model, c->attempts, c->failures);
    chat_error(c, 502, "server_error", "upstream_error", msg);
  }
  chat_free(c);
}

/* Picks and starts the next attempt; from/reason describe the failure that led here
 * (NULL for the first attempt). */
static void attempt_next(chat *c, const snap_dep *from, const char *reason) {
  if (!c->req) { chat_free(c); return; }
  for (;;) {
    int next = route_pick(&c->route, c->snap, route_rng_default(), uv_now(multi.loop));
    if (from) {
      LOG_INFO(c->rid, "failover", LF_S("from", from->name), LF_S("reason", reason),
               LF_I("attempt", c->attempts), LF_S("next", next >= 0 ? c->snap->deps[next].name : NULL));
      if (next >= 0) metrics_failover(from->stats, reason);
    }
    if (next < 0) { finish_exhausted(c); return; }
    if (attempt_try(c, next, &from, &reason)) return;
  }
}

/* Starts an attempt on deployment next. 1: the chat went on (started, parked for a
 * token, or failed over from here); 0: pick another, *from / *reason say why. */
static int attempt_try(chat *c, int next, const snap_dep **from, const char **reason) {
  int rc = attempt_start(c, next);
  if (rc == 0 || rc == ATTEMPT_PARKED) return 1;
  if (rc == ATTEMPT_NO_TOKEN) {
    c->dep = next;
    token_failed(c, MC_OTHER_ERROR, "auth_no_token");
    return 1;
  }
  *from = &c->snap->deps[next];
  if (rc == ATTEMPT_UNEXPRESSIBLE) { /* not the provider's fault: not counted against it */
    *reason = "unsupported_request";
    route_unused(&c->route);
    route_failed(&c->route, c->snap, next, 0); /* prefer another provider family */
    c->n_unexpressible++;
    return 0;
  }
  /* could not even start (ENOMEM): next one */
  *reason = "internal_error";
  (*from)->stats->errors[MC_OTHER_ERROR]++;
  c->n_failed++;
  c->last_class = MC_OTHER_ERROR;
  return 0;
}

/* Counts a failed attempt and moves on. */
static void attempt_failed(chat *c, enum metrics_class cls, const char *reason) {
  const snap_dep *d = &c->snap->deps[c->dep];
  d->stats->errors[cls]++;
  route_failed(&c->route, c->snap, c->dep, 0);
  c->n_failed++;
  if (cls == MC_RATE_LIMITED) c->n_rate_limited++;
  c->last_class = cls;
  size_t room = sizeof c->failures - c->failures_len;
  int w = snprintf(c->failures + c->failures_len, room, "%s%s %s", c->failures_len ? ", " : "",
                   d->name, reason);
  if (w > 0) c->failures_len += (size_t)w < room ? (size_t)w : room - 1;
  attempt_next(c, d, reason);
}

/* ---- completion --------------------------------------------------------------------- */

static void classify(CURLcode res, CURL *e, enum metrics_class *cls, const char **reason) {
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

static void account_usage(chat *c, const snap_dep *d) {
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
  account_usage(c, d);
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
    default: return MC_OTHER_ERROR; /* auth, garbage, unknown */
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

/* on_done for an adapter deployment whose answer has not reached the client. */
static void adapter_done(chat *c, CURL *e, CURLcode res, const snap_dep *d) {
  enum metrics_class cls;
  const char *reason;
  char rbuf[24];
  if (c->fail_reason[0]) {
    cls = c->fail_class;
    reason = c->fail_reason;
  } else if (c->err_body) {
    uint64_t retry_after_ms = 0; /* cooldowns are issue 5: read, not used yet */
    prov_error pe = d->ops->classify_error(c->status, c->resp.data ? c->resp.data : "",
                                           c->resp.len, &retry_after_ms);
    if (c->status == 401 && c->used_token && d->gcp) gcp_auth_rejected(d->gcp, c->token_gen);
    cls = attempt_error_class(pe);
    if (cls == MC_CLIENT_ERROR && c->pt && c->resp.len &&
        req_json_valid(c->resp.data, c->resp.len)) { /* already the client's dialect */
      release_easy(c);
      d->stats->errors[MC_CLIENT_ERROR]++;
      LOG_INFO(c->rid, "provider_rejected", LF_S("deployment", d->name), LF_I("status", c->status),
               LF_S("class", prov_error_name(pe)));
      chat_respond(c, c->status, c->content_type[0] ? c->content_type : "application/json",
                   c->resp.data, c->resp.len);
      chat_free(c);
      return;
    }
    if (cls == MC_CLIENT_ERROR) {
      release_easy(c);
      adapter_client_error(c, d, pe);
      chat_free(c);
      return;
    }
    if (pe == PE_NONE) snprintf(rbuf, sizeof rbuf, "http_%d", c->status);
    else snprintf(rbuf, sizeof rbuf, "%s", prov_error_name(pe));
    reason = rbuf;
  } else if (res != CURLE_OK) {
    classify(res, e, &cls, &reason);
  } else if (!c->headers_done) {
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else if (c->op == CHAT_OP_EMBEDDINGS) {
    if (embeddings_decode(c, d) == 0) {
      release_easy(c);
      d->stats->success++;
      account_usage(c, d);
      chat_respond(c, 200, "application/json", c->out.data, c->out.len);
      chat_free(c);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else if (!c->ri.stream && c->pt) {
    if (c->resp.len && req_json_valid(c->resp.data, c->resp.len)) { /* relayed untouched */
      stream_native_usage(c, c->resp.data, c->resp.len, 0);
      release_easy(c);
      d->stats->success++;
      account_usage(c, d);
      chat_respond(c, 200, c->content_type[0] ? c->content_type : "application/json",
                   c->resp.data, c->resp.len);
      chat_free(c);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else if (!c->ri.stream) {
    buf_reset(&c->out);
    if (d->ops->decode_response(c->resp.data ? c->resp.data : "", c->resp.len, d->upstream_model,
                                &c->out, &c->usage) == 0) {
      release_easy(c);
      d->stats->success++;
      account_usage(c, d);
      chat_respond(c, 200, "application/json", c->out.data, c->out.len);
      chat_free(c);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage";
  } else {
    int rc = stream_adapter_eof(c); /* the last event may complete only at EOF */
    if (rc != 0) {
      release_easy(c);
      if (rc < 0) { c->client_gone = 1; return; } /* on_abort frees */
      account_usage(c, d);
      if (c->saw_done) d->stats->success++;
      else d->stats->errors[MC_OTHER_ERROR]++;
      stream_finish(c);
      chat_free(c);
      return;
    }
    cls = MC_OTHER_ERROR;
    reason = "garbage"; /* 2xx stream without a single canonical event */
  }
  if (reason != rbuf) snprintf(rbuf, sizeof rbuf, "%s", reason); /* reset by the next start */
  release_easy(c);
  attempt_failed(c, cls, rbuf);
}

static void on_done(CURL *e, CURLcode res, cu_owner *o) {
  chat *c = container_of(o, chat, cu);
  enum metrics_class cls;
  const char *reason;
  c->in_multi = 0;
  uv_timer_stop(&c->timer);
  if (!c->req || c->client_gone) { /* client left: on_abort did or will clean up */
    release_easy(c);
    if (!c->req) chat_free(c);
    return;
  }
  const snap_dep *d = &c->snap->deps[c->dep];
  if (c->committed) { /* stream: the client has bytes, no failover possible */
    if (d->ops && res == CURLE_OK && !c->saw_done && !c->terminal_sent) stream_adapter_eof(c);
    account_usage(c, d);
    if (res == CURLE_OK && c->saw_done) d->stats->success++;
    else d->stats->errors[MC_OTHER_ERROR]++;
    release_easy(c);
    stream_finish(c);
    chat_free(c);
    return;
  }
  if (d->ops) { adapter_done(c, e, res, d); return; }
  if (c->fail_reason[0]) { cls = c->fail_class; reason = c->fail_reason; }
  else if (res != CURLE_OK) classify(res, e, &cls, &reason);
  else if (!c->headers_done) { cls = MC_OTHER_ERROR; reason = "garbage"; }
  else if (c->relay || !c->ri.stream) {
    if (!c->relay && !req_json_valid(c->resp.data ? c->resp.data : "", c->resp.len)) {
      cls = MC_OTHER_ERROR; reason = "garbage";
    } else {
      release_easy(c);
      finish_whole(c, d);
      chat_free(c);
      return;
    }
  } else if (req_json_valid(c->resp.data ? c->resp.data : "", c->resp.len) && c->resp.len) {
    release_easy(c); /* asked for a stream, got one JSON answer: pass it on whole */
    finish_whole(c, d);
    chat_free(c);
    return;
  } else {
    cls = MC_OTHER_ERROR; reason = "garbage"; /* 2xx stream without a single event */
  }
  char rbuf[24];
  snprintf(rbuf, sizeof rbuf, "%s", reason); /* fail_reason is reset by the next start */
  release_easy(c);
  attempt_failed(c, cls, rbuf);
}

/* ---- stream idle check ---------------------------------------------------------------
 * One timer per chat, armed once at commit: each upstream chunk only records the loop
 * time (stream_on_data), and the timer re-arms itself for the remainder when it fires
 * early, so nothing is restarted per chunk. A transfer paused for a slow client is not
 * idle upstream (the server cuts clients that never read). */

static void on_stream_idle(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  if (!c->easy || !c->committed || !c->req || c->client_gone) return;
  uint64_t idle = uv_now(t->loop) - c->last_byte_ms;
  if (c->paused || c->client_full) idle = 0;
  if (idle < c->idle_ms) {
    uv_timer_start(t, on_stream_idle, c->idle_ms - idle, 0);
    return;
  }
  const snap_dep *d = &c->snap->deps[c->dep];
  account_usage(c, d);
  d->stats->errors[MC_OTHER_ERROR]++;
  release_easy(c); /* a uv callback: removing from the multi is allowed; no DONE follows */
  stream_end(c, 1);
  chat_free(c);
}

void attempt_stream_committed(chat *c) {
  /* the idle bound between upstream chunks is the deployment's timeout (30 s if none) */
  uint32_t ms = c->snap->deps[c->dep].timeout_ms;
  c->idle_ms = ms ? ms : ATTEMPT_STREAM_IDLE_MS;
  c->last_byte_ms = uv_now(c->timer.loop);
  uv_timer_start(&c->timer, on_stream_idle, c->idle_ms, 0);
}

/* ---- entry points -------------------------------------------------------------------- */

int attempt_init(uv_loop_t *loop) {
  int rc = cu_init(&multi, loop);
  if (rc == 0) gcp_auth_init(loop, &multi);
  return rc;
}

void attempt_shutdown(void) {
  gcp_auth_shutdown(); /* cancels token fetches: the multi must be idle */
  cu_close(&multi);
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
  chats_in_flight++;
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
  c->cu.done = on_done;
  snprintf(c->rid, sizeof c->rid, "%s", rid);
  sse_init(&c->sse);
  uv_timer_init(multi.loop, &c->timer);
  req->user = c;
  route_init(&c->route, snap, group);
  attempt_next(c, NULL, NULL);
}

void attempt_on_abort(hs_request *req) {
  chat *c = req->user;
  if (!c) return;
  if (c->dep >= 0 && (c->easy || c->committed)) c->snap->deps[c->dep].stats->errors[MC_CANCELLED]++;
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
