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

#define ATTEMPT_UNEXPRESSIBLE 1 /* attempt_start: the adapter cannot express the request */
#define ATTEMPT_PARKED 2        /* attempt_start: waiting for an access token (gcp_auth.h) */
#define ATTEMPT_NO_TOKEN 3      /* attempt_start: no access token and none coming: auth */
#define ATTEMPT_NO_CONTINUE 4   /* attempt_start: the stream cannot be continued (midstream.h) */

static void attempt_next(chat *c, const snap_dep *from, const char *reason);
static void attempt_failed(chat *c, enum metrics_class cls, const char *reason);
static void ms_give_up(chat *c);
static void ms_died(chat *c, int why);
static void on_done(CURL *e, CURLcode res, cu_owner *o);

uint64_t attempt_chats_in_flight(void) { return chats_in_flight; }

/* ---- the snapshot's resilience settings and the deployment's breaker -------------------- */

uint64_t attempt_now_ms(void) { return multi.loop ? uv_now(multi.loop) : 0; }
static uint64_t now_ms(void) { return uv_now(multi.loop); }

/* The worker's breaker state of deployment dep; NULL when there is none (ENOMEM). */
static dep_state *chat_st(const chat *c, int dep) { return c->snap->deps[dep].st; }
static const brk_config *chat_brk(const chat *c) { return &c->snap->brk; }
static uint32_t snap_total_timeout_ms(const chat *c) { return c->snap->total_timeout_ms; }
static uint32_t snap_max_retry_after_ms(const chat *c) { return c->snap->max_retry_after_ms; }

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

/* ---- outcomes to the breaker --------------------------------------------------------
 * Every attempt that reached curl calls breaker_attempt_start once and brk_end exactly
 * once (brk_open guards it: the first path that knows the outcome reports it; chat_free
 * reports a forgotten one as neutral so in_flight never leaks). */

static void brk_start(chat *c, int dep) {
  dep_state *st = chat_st(c, dep);
  c->brk_open = 0;
  if (!st) return;
  brk_state was = st->local;
  breaker_attempt_start(st, now_ms());
  c->brk_open = 1;
  if (was == BRK_OPEN && st->local == BRK_HALF_OPEN) /* this attempt is the trial */
    LOG_INFO(c->rid, "circuit_half_open", LF_S("deployment", c->snap->deps[dep].name),
             LF_S("circuit_level", "local"));
}

static void brk_end(chat *c, brk_outcome o) {
  if (!c->brk_open) return;
  c->brk_open = 0;
  dep_state *st = chat_st(c, c->dep);
  if (!st) return;
  const snap_dep *d = &c->snap->deps[c->dep];
  /* the run this failure extends, read before a trip resets it: connect errors and timeouts
   * count in one run, 5xx-class failures in another (breaker.h) */
  int by_server = o == BO_SERVER;
  uint32_t fails = (by_server ? st->consecutive_server : st->consecutive_fails) + 1;
  brk_state was = st->local;
  uint64_t now = now_ms();
  double lat = o == BO_SUCCESS ? c->hdr_latency_ms : 0;
  if (breaker_attempt_end(st, chat_brk(c), now, o, lat, o == BO_RATE_LIMITED ? c->reset_ms : 0) == 1)
    LOG_WARN(c->rid, "circuit_open", LF_S("deployment", d->name), LF_S("circuit_level", "local"),
             LF_S("trip_on", by_server ? "server" : "connect"), LF_I("consecutive_failures", fails),
             LF_I("open_ms", st->open_ms));
  if (was == BRK_HALF_OPEN && st->local == BRK_CLOSED)
    LOG_INFO(c->rid, "circuit_closed", LF_S("deployment", d->name), LF_S("circuit_level", "local"));
  if (o == BO_SUCCESS && c->committed && c->ttft_ms > 0) {
    breaker_ttft(st, c->ttft_ms);
    hedge_note_ttft(d->stats);
  }
  if (o == BO_RATE_LIMITED) {
    uint64_t left = st->cooldown_until_ms > now ? st->cooldown_until_ms - now : 0;
    if (!c->soonest_reset_ms || (left && left < c->soonest_reset_ms)) c->soonest_reset_ms = left;
    LOG_INFO(c->rid, "cooldown", LF_S("deployment", d->name), LF_I("cooldown_ms", left),
             LF_I("reset_hint_ms", c->reset_ms));
  }
}

/* Anthropic's 529 / overloaded_error is a cooldown like a 429 (a 503 stays a 5xx). */
static int is_overloaded(const chat *c, const char *reason) {
  if (strcmp(reason, "http_529") == 0) return 1;
  return strcmp(reason, prov_error_name(PE_OVERLOADED)) == 0 && c->status != 503;
}

/* What a failed attempt says about its deployment's health. */
static brk_outcome failure_outcome(const chat *c, enum metrics_class cls, const char *reason) {
  int cut_short = c->clipped && c->deadline_ms && now_ms() >= c->deadline_ms;
  switch (cls) {
    case MC_CONNECT_ERROR: return BO_CONNECT_FAIL;
    case MC_TIMEOUT: /* stopped early by the request's total deadline: says nothing */
      if (cut_short) return BO_NEUTRAL;
      return strcmp(reason, "connect_timeout") == 0 ? BO_CONNECT_FAIL : BO_TIMEOUT;
    case MC_RATE_LIMITED: return BO_RATE_LIMITED;
    case MC_AUTH_ERROR: /* a minted access token was refused: dropped, the next is fresh */
      return c->used_token ? BO_NEUTRAL : BO_AUTH;
    case MC_CLIENT_ERROR:
    case MC_CANCELLED: return BO_NEUTRAL;
    default: return is_overloaded(c, reason) ? BO_RATE_LIMITED : BO_SERVER;
  }
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
static void release_easy(chat *c) {
  if (!c->easy) return;
  if (c->in_multi) cu_cancel(&multi, c->easy);
  c->in_multi = 0;
  cu_easy_put(&multi, c->easy, c->ri.stream);
  c->easy = NULL;
  c->paused = 0;
}

static void chat_free(chat *c) {
  if (c->peer) { /* never expected: a racing peer must not outlive the client request */
    chat *p = c->peer;
    c->peer = p->peer = NULL;
    attempt_hedge_cancel(p);
  }
  if (c->brk_open) brk_end(c, BO_NEUTRAL);
  gcp_auth_cancel(&c->gw);
  release_easy(c);
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, on_chat_closed);
  hedge_close(c, on_hedge_closed);
}

static void chat_set_dep_headers(chat *c) {
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

static void chat_error(chat *c, int status, const char *type, const char *code, const char *msg) {
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

/* ms left of the request's total deadline; UINT64_MAX without one. */
static uint64_t time_left(const chat *c) {
  if (!c->deadline_ms) return UINT64_MAX;
  uint64_t now = now_ms();
  return c->deadline_ms > now ? c->deadline_ms - now : 0;
}

/* A deadline of ms (0 = none) cut to what is left of the total deadline (at least 1 ms,
 * so a timer still fires); *clipped is set when it was cut. */
static uint32_t clip_ms(const chat *c, uint32_t ms, int *clipped) {
  uint64_t left = time_left(c);
  if (left == UINT64_MAX || (ms && ms <= left)) return ms;
  *clipped = 1;
  return left == 0 ? 1 : left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

static void on_deadline(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  if (!c->easy || (c->committed && c->ms_phase != MS_PENDING)) return;
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
  c->clipped = 0;
  uint32_t ms = clip_ms(c, c->ri.stream ? d->stream_timeout_ms : d->timeout_ms, &c->clipped);
  if (ms) uv_timer_start(&c->timer, on_token_deadline, ms, 0);
  LOG_DEBUG(c->rid, "attempt_waits_for_token", LF_S("deployment", d->name));
  return ATTEMPT_PARKED;
}

/* The continuation request for d (prefill when d supports it) into c->ms_body / ms_ri,
 * and a fresh splicer for its answer. Returns 0, ATTEMPT_NO_CONTINUE or -1 (ENOMEM). */
static int ms_build(chat *c, const snap_dep *d) {
  int rc = midstream_build_request(c->body, c->body_len, &c->ms, d->supports_prefill, &c->ms_body);
  if (rc == -EINVAL) return ATTEMPT_NO_CONTINUE;
  if (rc || req_parse(c->ms_body.data, c->ms_body.len, &c->ms_ri) != REQ_OK) return -1;
  if (c->splice_live) midstream_splice_free(&c->splice);
  c->splice_live = midstream_splice_init(&c->splice, &c->ms, midstream_delivered_tokens(&c->ms)) == 0;
  return c->splice_live ? 0 : -1;
}

/* Returns 0 started, ATTEMPT_UNEXPRESSIBLE, ATTEMPT_PARKED, ATTEMPT_NO_TOKEN,
 * ATTEMPT_NO_CONTINUE, or -1 (nothing was sent). */
static int attempt_start(chat *c, int dep) {
  const snap_dep *d = &c->snap->deps[dep];
  const char *url, *body, *canon = c->body;
  size_t body_len, canon_len = c->body_len;
  const req_info *canon_ri = &c->ri;
  struct curl_slist *hdrs;
  if (c->ms_phase != MS_ORIGINAL) { /* a continuation: its own canonical body */
    int rc = ms_build(c, d);
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
  uint32_t ms = clip_ms(c, c->ri.stream ? d->stream_timeout_ms : d->timeout_ms, &c->clipped);
  uint32_t connect_ms = clip_ms(c, d->connect_timeout_ms, &c->clipped);

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
  brk_start(c, dep);
  if (ms) uv_timer_start(&c->timer, on_deadline, ms, 0);
  hedge_arm(c);
  LOG_DEBUG(c->rid, "attempt", LF_S("deployment", d->name), LF_I("attempt", c->attempts));
  return 0;
}

/* Appends "NAME reason" to the failure list of the final error. */
static void note_failure(chat *c, const snap_dep *d, const char *reason) {
  size_t room = sizeof c->failures - c->failures_len;
  int w = snprintf(c->failures + c->failures_len, room, "%s%s %s", c->failures_len ? ", " : "",
                   d->name, reason);
  if (w > 0) c->failures_len += (size_t)w < room ? (size_t)w : room - 1;
}

/* ---- hedging (hedge.h): the race's exits that need the attempt machinery ------------ */

/* The retry_ok route.c recorded for dep's last try in st (0 when not tried). */
static int route_retry_ok(const route_state *st, int dep) {
  for (int k = st->ntried - 1; k >= 0; k--)
    if (st->tried[k] == dep) return st->retry_ok[k];
  return 0;
}

/* c failed (failed = 1: its failure is counted already) or ran out of options while its
 * peer still runs: c ends quietly and the peer carries on alone, knowing what c's failure
 * says about c's deployment (re-try rules, the final error's list). */
static void hedge_quiet_end(chat *c, const char *reason, int failed) {
  chat *s = hedge_detach(c, reason);
  if (failed && c->dep >= 0) {
    route_failed(&s->route, c->snap, c->dep, route_retry_ok(&c->route, c->dep));
    s->n_failed++;
    if (c->last_class == MC_RATE_LIMITED) s->n_rate_limited++;
    if (c->last_class == MC_AUTH_ERROR) s->n_auth++;
    s->last_class = c->last_class;
    note_failure(s, &c->snap->deps[c->dep], reason);
  }
  c->req = NULL;
  chat_free(c);
}

/* The request is over for p (lost, or the client left): the transfer stops from the loop. */
static void on_hedge_cancel(uv_timer_t *t) {
  chat *p = container_of(t, chat, timer);
  release_easy(p); /* a uv callback: removing from the multi is allowed here */
  chat_free(p);
}

void attempt_hedge_cancel(chat *p) {
  p->hedge_lost = 1;
  p->peer = NULL;
  p->req = NULL; /* never writes to the client; its curl callbacks abort the transfer */
  if (p->dep >= 0 && p->brk_open) p->snap->deps[p->dep].stats->errors[MC_CANCELLED]++;
  brk_end(p, BO_NEUTRAL); /* a cancellation says nothing about the provider */
  gcp_auth_cancel(&p->gw);
  uv_timer_stop(&p->hedge_timer);
  uv_timer_start(&p->timer, on_hedge_cancel, 0, 0); /* maybe inside a curl callback now */
}

/* A second chat for the same client request, as attempt_serve builds one, with what c
 * has learnt so far (attempts, failures); it has no transfer yet. NULL on ENOMEM. */
static chat *chat_clone(const chat *c) {
  chat *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  int own_canon = c->canon.data && c->body == c->canon.data;
  if ((c->ais && !(h->ais = ai_stream_new(c->ri.model))) ||
      (own_canon && buf_append(&h->canon, c->canon.data, c->canon.len))) {
    if (h->ais) ai_stream_free(h->ais);
    buf_free(&h->canon);
    free(h);
    return NULL;
  }
  chats_in_flight++;
  h->req = c->req;
  h->snap = snapshot_ref(c->snap);
  memcpy(h->rid, c->rid, sizeof h->rid);
  h->ri = c->ri;
  h->body = own_canon ? h->canon.data : c->body;
  h->body_len = c->body_len;
  h->op = c->op;
  h->egress = c->egress;
  h->embed_b64 = c->embed_b64;
  h->has_native = c->has_native;
  h->native_ri = c->native_ri;
  h->deadline_ms = c->deadline_ms;
  h->attempts = c->attempts;
  memcpy(h->failures, c->failures, sizeof h->failures);
  h->failures_len = c->failures_len;
  h->n_failed = c->n_failed;
  h->n_rate_limited = c->n_rate_limited;
  h->n_auth = c->n_auth;
  h->n_unexpressible = c->n_unexpressible;
  h->last_class = c->last_class;
  h->skip_logged = c->skip_logged;
  h->waited_retry_after = c->waited_retry_after;
  h->is_hedge = h->hedged = 1;
  h->dep = h->pending_dep = h->ms_from = -1;
  h->cu.done = on_done;
  sse_init(&h->sse);
  uv_timer_init(multi.loop, &h->timer);
  hedge_init(h, multi.loop);
  h->handles_open = 2;
  return h;
}

int attempt_hedge_start(chat *c, uint64_t after_ms) {
  const char *from = c->snap->deps[c->dep].name;
  route_state rs = c->route;
  c->hedged = 1;
  int dep = route_pick(&rs, c->snap, route_rng_default(), now_ms());
  const snap_dep *d = dep >= 0 ? &c->snap->deps[dep] : NULL;
  /* a re-try (backoff) or a token wait is no hedge */
  if (!d || dep == c->dep || rs.backoff_ms || d->gcp || d->gcp_broken) {
    LOG_DEBUG(c->rid, "hedge_skipped", LF_S("from", from),
              LF_I("budget_refused", rs.budget_refused), LF_S("next", d ? d->name : NULL));
    return -1;
  }
  chat *h = chat_clone(c);
  if (!h) return -1;
  h->route = rs;
  if (attempt_start(h, dep) != 0) {
    LOG_DEBUG(c->rid, "hedge_skipped", LF_S("from", from), LF_S("next", d->name));
    h->req = NULL;
    chat_free(h);
    return -1;
  }
  c->route = rs; /* both know both deployments are taken */
  c->peer = h;
  h->peer = c;
  c->attempts = h->attempts;
  chat_set_dep_headers(c);
  d->stats->hedges++;
  LOG_INFO(c->rid, "hedge_started", LF_S("from", from), LF_S("to", d->name),
           LF_I("after_ms", after_ms));
  return 0;
}

/* The request's total deadline passed before anything reached the client: 504. */
static void finish_deadline(chat *c) {
  char msg[1024];
  if (c->peer) { hedge_quiet_end(c, "deadline", 0); return; } /* the peer answers */
  if (c->committed) { ms_give_up(c); return; } /* a continuation ran out of time */
  metrics_req_fail[MRF_REQUEST_TIMEOUT]++;
  LOG_WARN(c->rid, "request_timeout", LF_I("total_timeout_ms", snap_total_timeout_ms(c)),
           LF_I("attempts", c->attempts), LF_B("streaming", 0));
  snprintf(msg, sizeof msg,
           "The request for model '%.200s' did not complete within its total timeout of %u ms "
           "(%d attempts%s%s).", c->ri.model, snap_total_timeout_ms(c), c->attempts,
           c->failures_len ? ": " : "", c->failures);
  chat_error(c, 504, "server_error", "request_timeout", msg);
  chat_free(c);
}

static int refusals_total(const route_state *st) {
  int n = 0;
  for (int r = BR_OK + 1; r < BR__COUNT; r++) n += st->refused[r];
  return n;
}

/* Nothing could be tried at all: circuits open, cooldowns, drains or refused credentials.
 * Only cooldowns: 429 (the client may come back at the soonest reset); else 503. */
static void finish_refused(chat *c) {
  char msg[1024];
  if (c->peer) { hedge_quiet_end(c, "no_deployment", 0); return; } /* the peer answers */
  if (c->committed) { ms_give_up(c); return; } /* nothing left to continue a stream on */
  const route_state *st = &c->route;
  int total = refusals_total(st);
  uint64_t soon = st->soonest_ms ? st->soonest_ms : 1000;
  c->retry_after_s = (uint32_t)((soon + 999) / 1000);
  if (st->refused[BR_COOLING] == total) {
    metrics_req_fail[MRF_ALL_COOLING]++;
    snprintf(msg, sizeof msg,
             "Every deployment for model '%.200s' is cooling down after rate limits (%d); retry "
             "in %u s.", c->ri.model, total, c->retry_after_s);
    chat_error(c, 429, "rate_limit_error", "rate_limit_exceeded", msg);
  } else {
    metrics_req_fail[MRF_NO_HEALTHY]++;
    snprintf(msg, sizeof msg,
             "No healthy deployment for model '%.200s': %d with an open circuit, %d cooling down "
             "after rate limits, %d drained, %d with a refused credential; retry in %u s.",
             c->ri.model, st->refused[BR_LOCAL_OPEN] + st->refused[BR_CONTROL_OPEN],
             st->refused[BR_COOLING], st->refused[BR_DRAINED], st->refused[BR_CREDENTIAL],
             c->retry_after_s);
    chat_error(c, 503, "server_error", "no_healthy_deployment", msg);
  }
  chat_free(c);
}

/* Every attempt failed (or none could be made): the final OpenAI-shaped error. */
static void finish_exhausted(chat *c) {
  char msg[1024];
  if (c->peer) { hedge_quiet_end(c, "exhausted", 0); return; } /* the peer answers */
  if (c->committed) { ms_give_up(c); return; } /* nothing left to continue a stream on */
  const char *model = c->ri.model;
  if (c->n_budget_refused) { /* say why it stopped early: the retry budget, not the config */
    size_t room = sizeof c->failures - c->failures_len;
    int w = snprintf(c->failures + c->failures_len, room, "; %d retries refused by the retry budget",
                     c->n_budget_refused);
    if (w > 0) c->failures_len += (size_t)w < room ? (size_t)w : room - 1;
  }
  if (c->attempts == 0 && c->n_unexpressible) { /* nothing sent: no provider can take it */
    chat_error(c, 400, "invalid_request_error", "unsupported_request", c->bad_request);
  } else if (c->attempts == 0) {
    snprintf(msg, sizeof msg, "No deployment is available for model '%.200s'.", model);
    chat_error(c, 503, "server_error", "no_deployment_available", msg);
  } else if (c->n_auth && c->n_auth == c->n_failed) { /* our keys, not the client's */
    metrics_req_fail[MRF_AUTH_FAILED]++;
    snprintf(msg, sizeof msg,
             "The provider refused llmesh's credentials for every deployment tried for model "
             "'%.200s' (%d attempts: %s). This is a gateway configuration problem.",
             model, c->attempts, c->failures);
    chat_error(c, 502, "server_error", "upstream_auth_failed", msg);
  } else if (c->n_rate_limited == c->n_failed) {
    if (c->soonest_reset_ms) c->retry_after_s = (uint32_t)((c->soonest_reset_ms + 999) / 1000);
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

/* Could dep have lost the last pick's probe-share draw? The breaker admits it, the control
 * plane has it half-open with a share below 100 %, it was a candidate (supported, untried
 * or re-triable) and the pick went elsewhere. route_state counts lost draws, not who lost
 * them: a half-open candidate that won its draw but not the pick looks the same, so at most
 * st->probe_held deployments are named. */
static int maybe_probe_held(const chat *c, const dep_state *ds, int dep, int next) {
  const route_state *st = &c->route;
  if (!ds || dep == next || c->snap->deps[dep].unsupported) return 0;
  if (ds->ctl_state != LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN || ds->ctl_probe_share_milli >= 1000)
    return 0;
  for (int k = st->ntried - 1; k >= 0; k--)
    if (st->tried[k] == dep) return st->retry_ok[k];
  return 1;
}

/* What the last pick skipped: each deployment a breaker refused is logged (route_skip, once
 * per request) and counted by reason; so is a half-open one held back by its probe share
 * (as control_open, the documented count, with probe_share_held in the log line). Budget
 * refusals are logged (the breaker counts them per deployment). *soonest_dep: the refused
 * deployment that can take traffic soonest. */
static void note_route(chat *c, int next, int *soonest_dep) {
  const route_state *st = &c->route;
  *soonest_dep = -1;
  c->n_budget_refused += st->budget_refused;
  if (st->budget_refused)
    LOG_INFO(c->rid, "retry_budget_exhausted", LF_I("skipped", st->budget_refused),
             LF_S("next", next >= 0 ? c->snap->deps[next].name : NULL));
  if (!refusals_total(st)) return;
  uint64_t now = now_ms(), soonest = UINT64_MAX;
  int last = st->pos < st->nchain ? st->pos : st->nchain - 1; /* groups the pick went through */
  int held_left = st->probe_held;
  for (int k = 0; k <= last; k++) {
    const snap_group *g = &c->snap->groups[st->chain[k]];
    for (int i = 0; i < g->ndeps; i++) {
      int dep = g->deps[i], held = 0;
      const dep_state *ds = chat_st(c, dep);
      uint64_t wait = 0;
      brk_refusal r = ds ? breaker_admit(ds, now, &wait) : BR_OK;
      if (r == BR_OK && held_left > 0 && maybe_probe_held(c, ds, dep, next)) {
        r = BR_CONTROL_OPEN;
        held = 1;
        held_left--;
      }
      if (r == BR_OK) continue;
      if (wait && wait < soonest) soonest = wait, *soonest_dep = dep;
      if (dep < 64 && (c->skip_logged >> dep & 1)) continue;
      if (dep < 64) c->skip_logged |= 1ull << dep;
      const snap_dep *d = &c->snap->deps[dep];
      d->stats->refusals[r]++;
      if (held)
        LOG_INFO(c->rid, "route_skip", LF_S("deployment", d->name),
                 LF_S("reason", breaker_refusal_name(r)), LF_I("wait_ms", 0),
                 LF_I("probe_share_held", 1));
      else
        LOG_INFO(c->rid, "route_skip", LF_S("deployment", d->name),
                 LF_S("reason", breaker_refusal_name(r)), LF_I("wait_ms", wait));
    }
  }
}

/* The chat's timer after a backoff or a Retry-After wait: the pending deployment, else a
 * new pick. */
static void on_wait_done(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  int dep = c->pending_dep;
  const snap_dep *from = NULL;
  const char *reason = NULL;
  c->pending_dep = -1;
  if (!c->req) { chat_free(c); return; }
  if (time_left(c) == 0) { finish_deadline(c); return; }
  if (dep >= 0 && attempt_try(c, dep, &from, &reason)) return;
  attempt_next(c, from, reason);
}

/* The pick re-tries a deployment: wait its backoff first (bounded by the total deadline;
 * when that passes during the wait, on_wait_done ends the request). Never a tight loop. */
static void wait_backoff(chat *c, int next) {
  uint64_t ms = c->route.backoff_ms, left = time_left(c);
  const snap_dep *d = &c->snap->deps[next];
  if (ms > left) ms = left;
  d->stats->backoffs++;
  LOG_DEBUG(c->rid, "retry_backoff", LF_S("deployment", d->name), LF_I("backoff_ms", ms));
  c->pending_dep = next;
  uv_timer_start(&c->timer, on_wait_done, ms ? ms : 1, 0);
}

/* Nothing admissible and every refusal a cooldown that ends within max_retry_after and
 * before the total deadline: wait for the soonest once, then pick again. 1 = waiting. */
static int wait_cooldown(chat *c, int soonest_dep) {
  const route_state *st = &c->route;
  int total = refusals_total(st);
  uint64_t ms = st->soonest_ms;
  if (c->waited_retry_after || !total || st->refused[BR_COOLING] != total || !ms ||
      ms > snap_max_retry_after_ms(c) || ms >= time_left(c))
    return 0;
  c->waited_retry_after = 1;
  c->pending_dep = -1;
  const snap_dep *d = soonest_dep >= 0 ? &c->snap->deps[soonest_dep] : NULL;
  if (d) d->stats->retry_after_waits++;
  LOG_INFO(c->rid, "retry_after_wait", LF_S("deployment", d ? d->name : NULL), LF_I("wait_ms", ms));
  uv_timer_start(&c->timer, on_wait_done, ms + 1, 0); /* + 1: the reset has passed when it fires */
  return 1;
}

/* Picks and starts the next attempt; from/reason describe the failure that led here
 * (NULL for the first attempt). */
static void attempt_next(chat *c, const snap_dep *from, const char *reason) {
  if (!c->req) { chat_free(c); return; }
  for (;;) {
    if (time_left(c) == 0) { finish_deadline(c); return; }
    int soonest_dep, pos = c->route.pos;
    uint32_t used = c->route.used_in_group;
    int next = route_pick(&c->route, c->snap, route_rng_default(), now_ms());
    note_route(c, next, &soonest_dep);
    if (from) {
      LOG_INFO(c->rid, "failover", LF_S("from", from->name), LF_S("reason", reason),
               LF_I("attempt", c->attempts), LF_S("next", next >= 0 ? c->snap->deps[next].name : NULL));
      if (next >= 0) metrics_failover(from->stats, reason);
    }
    if (next < 0) {
      if (wait_cooldown(c, soonest_dep)) { /* pick again afterwards from where this pick began */
        c->route.pos = pos;
        c->route.used_in_group = used;
        return;
      }
      if (c->attempts == 0 && !c->n_unexpressible && refusals_total(&c->route)) finish_refused(c);
      else finish_exhausted(c);
      return;
    }
    if (c->route.backoff_ms) { wait_backoff(c, next); return; }
    if (attempt_try(c, next, &from, &reason)) return;
  }
}

/* Starts an attempt on deployment next. 1: the chat went on (started, parked for a
 * token, or failed over from here); 0: pick another, *from / *reason say why. */
static int attempt_try(chat *c, int next, const snap_dep **from, const char **reason) {
  int rc = attempt_start(c, next);
  if (rc == 0 || rc == ATTEMPT_PARKED) return 1;
  if (rc == ATTEMPT_NO_CONTINUE) {
    ms_give_up(c);
    return 1;
  }
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

/* Counts a failed attempt, tells its breaker, and moves on. */
static void attempt_failed(chat *c, enum metrics_class cls, const char *reason) {
  const snap_dep *d = &c->snap->deps[c->dep];
  int reached = c->brk_open; /* an upstream attempt (not a token that never came) */
  if (c->ms_phase == MS_PENDING) { /* a continuation that wrote nothing: the next one */
    d->stats->midstream_failed++;
    LOG_INFO(c->rid, "midstream_attempt_failed", LF_S("deployment", d->name), LF_S("reason", reason));
  }
  brk_outcome o = failure_outcome(c, cls, reason);
  d->stats->errors[cls]++;
  brk_end(c, o);
  /* a 5xx, garbage or cut may be re-tried on the same deployment later, and a 429 once its
   * cooldown is over; a silent timeout or a connect failure never */
  route_failed(&c->route, c->snap, c->dep, reached && (o == BO_SERVER || o == BO_RATE_LIMITED));
  c->n_failed++;
  if (cls == MC_RATE_LIMITED) c->n_rate_limited++;
  if (cls == MC_AUTH_ERROR) {
    c->n_auth++;
    LOG_WARN(c->rid, "credential_failed", LF_S("deployment", d->name), LF_I("status", c->status));
  }
  c->last_class = cls;
  note_failure(c, d, reason);
  if (c->peer) { hedge_quiet_end(c, reason, 1); return; } /* its peer carries on alone */
  if (time_left(c) == 0) {
    LOG_INFO(c->rid, "failover", LF_S("from", d->name), LF_S("reason", reason),
             LF_I("attempt", c->attempts), LF_S("next", NULL));
    finish_deadline(c);
    return;
  }
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
    brk_end(c, BO_NEUTRAL);
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
  brk_end(c, BO_SUCCESS);
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
  brk_end(c, BO_NEUTRAL);
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

/* A refusal that has its own fallbacks (context length, content policy): when the group
 * has them the chain switches to them and the next deployment is tried; the attempt was
 * the client's kind of failure (neutral for the breaker). 1 = diverted, the chat went on. */
static int try_divert(chat *c, const snap_dep *d, enum route_divert_kind k) {
  if (route_divert(&c->route, c->snap, k) != 0) return 0;
  const char *reason = k == ROUTE_DIVERT_CONTEXT_WINDOW ? "context_window" : "content_policy";
  release_easy(c);
  d->stats->errors[MC_CLIENT_ERROR]++;
  brk_end(c, BO_NEUTRAL);
  c->n_failed++;
  c->last_class = MC_CLIENT_ERROR;
  note_failure(c, d, reason);
  attempt_next(c, d, reason);
  return 1;
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
        try_divert(c, d, pe == PE_CONTEXT_LENGTH ? ROUTE_DIVERT_CONTEXT_WINDOW
                                                 : ROUTE_DIVERT_CONTENT_POLICY))
      return;
    if (cls == MC_CLIENT_ERROR && c->pt && c->resp.len &&
        req_json_valid(c->resp.data, c->resp.len)) { /* already the client's dialect */
      release_easy(c);
      d->stats->errors[MC_CLIENT_ERROR]++;
      brk_end(c, BO_NEUTRAL);
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
      brk_end(c, BO_SUCCESS);
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
      brk_end(c, BO_SUCCESS);
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
      brk_end(c, BO_SUCCESS);
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
      if (c->ms_on && !c->saw_done) { ms_died(c, c->ms_dead ? c->ms_dead : MS_CUT); return; }
      account_usage(c, d);
      if (c->saw_done) d->stats->success++;
      else d->stats->errors[MC_OTHER_ERROR]++;
      brk_end(c, c->saw_done ? BO_SUCCESS : BO_SERVER);
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

/* ---- mid-stream continuation (docs/resilience.md "Mid-stream failover") ----------------
 * A tracked stream (stream.c) that dies after commit is continued on another deployment:
 * the dead attempt is a failure like a pre-commit one (BO_SERVER, counted, re-try rules),
 * ms_phase turns MS_PENDING and attempt_next picks as for any failover; attempt_start
 * builds the continuation request (ms_build) and stream.c splices its events. Nothing
 * left to try (finish_*), no time left, or a stream that cannot be continued: the client
 * gets the held failure (ms_give_up). */

static const char *ms_why_name(int why) {
  static const char *const names[] = {"", "stream_cut", "stream_stalled", "stream_error",
                                      "stream_malformed"};
  return why > 0 && why < (int)ARRAY_SIZE(names) ? names[why] : "stream_cut";
}

/* Ends the client's stream with the held failure: the in-band error event the provider
 * sent, else the cut or stall event. */
static void ms_give_up(chat *c) {
  if (!c->req) { chat_free(c); return; }
  LOG_WARN(c->rid, "midstream_failed",
           LF_S("from", c->ms_from >= 0 ? c->snap->deps[c->ms_from].name : NULL),
           LF_I("delivered_bytes", c->ms_delivered), LF_S("reason", ms_why_name(c->ms_fail)),
           LF_I("attempts", c->attempts), LF_S("not_continuable", c->ms.why_not));
  if (c->ms_fail == MS_ERROR && c->ms_err.len) {
    egress_stream_write(c, c->ms_err.data, c->ms_err.len); /* a gone client: stream_end copes */
    c->terminal_sent = 1;
  }
  if (c->ms_from >= 0) c->dep = c->ms_from; /* the stream_cut / stall log names who died */
  c->saw_done = 0;
  stream_end(c, c->ms_fail == MS_STALL);
  chat_free(c);
}

/* The answer was complete (finish_reason seen) when the stream died before [DONE]: the
 * client gets its terminator rather than a continuation of nothing. */
static void ms_complete(chat *c, const snap_dep *d) {
  static const char done[] = "data: [DONE]\n\n";
  LOG_INFO(c->rid, "stream_done_supplied", LF_S("deployment", d->name),
           LF_S("finish_reason", c->ms.finish_reason), LF_S("reason", ms_why_name(c->ms_fail)));
  account_usage(c, d);
  if (egress_stream_write(c, done, sizeof done - 1) >= 0) c->saw_done = 1;
  stream_end(c, 0);
  chat_free(c);
}

/* The committed stream of the current attempt died (why: enum attempt_ms_why); its
 * transfer is released and the client is still there. */
static void ms_died(chat *c, int why) {
  const snap_dep *d = &c->snap->deps[c->dep];
  const char *reason = ms_why_name(why);
  d->stats->errors[MC_OTHER_ERROR]++;
  brk_end(c, BO_SERVER);
  c->ms_fail = why;
  if (why != MS_ERROR) buf_reset(&c->ms_err);
  c->ms_from = c->dep;
  c->ms_delivered = c->ms.text.len;
  if (c->ms.finish_reason[0]) { ms_complete(c, d); return; }
  if (!c->ms.continuable || time_left(c) == 0) {
    account_usage(c, d); /* what the client got of it, as for any cut stream */
    ms_give_up(c);
    return;
  }
  /* a stall is a silence: never re-tried on the same deployment */
  route_failed(&c->route, c->snap, c->dep, why != MS_STALL);
  c->n_failed++;
  c->last_class = MC_OTHER_ERROR;
  note_failure(c, d, reason);
  c->ms_phase = MS_PENDING;
  attempt_next(c, d, reason);
}

void attempt_ms_spliced(chat *c) {
  const snap_dep *d = &c->snap->deps[c->dep];
  c->ms_phase = MS_SPLICED;
  d->stats->midstream_continued++;
  LOG_INFO(c->rid, "midstream_continued",
           LF_S("from", c->ms_from >= 0 ? c->snap->deps[c->ms_from].name : NULL),
           LF_S("to", d->name), LF_I("delivered_bytes", c->ms_delivered),
           LF_S("reason", ms_why_name(c->ms_fail)), LF_B("prefill", d->supports_prefill));
  attempt_stream_committed(c); /* the idle check from here on */
}

/* A continuation ended before writing anything: a failed attempt, whatever it answered
 * (a 400 from a provider refusing the prefill never reaches the client). */
static void ms_pending_done(chat *c, CURL *e, CURLcode res, const snap_dep *d) {
  enum metrics_class cls = MC_OTHER_ERROR;
  const char *reason = "garbage"; /* 2xx without a single event for the client */
  char rbuf[24];
  if (c->fail_reason[0]) {
    cls = c->fail_class;
    reason = c->fail_reason;
  } else if (c->err_body || c->relay) {
    uint64_t ra = 0;
    prov_error pe = d->ops ? d->ops->classify_error(c->status, c->resp.data ? c->resp.data : "",
                                                    c->resp.len, &ra)
                           : PE_BAD_REQUEST; /* relay: a 4xx other than 401/403/408/429 */
    cls = attempt_error_class(pe);
    snprintf(rbuf, sizeof rbuf, "http_%d", c->status);
    reason = rbuf;
  } else if (res != CURLE_OK) {
    classify(res, e, &cls, &reason);
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
  if (c->committed && c->ms_phase == MS_PENDING) { /* a continuation, nothing written yet */
    if (d->ops && res == CURLE_OK && !c->fail_reason[0] && !c->err_body && c->headers_done)
      stream_adapter_eof(c); /* its events may complete only at EOF */
    if (c->ms_phase == MS_PENDING) { ms_pending_done(c, e, res, d); return; }
    if (c->client_gone) { release_easy(c); return; } /* on_abort frees */
  } else if (c->committed && d->ops && res == CURLE_OK && !c->saw_done && !c->terminal_sent &&
             !c->ms_dead) {
    stream_adapter_eof(c);
  }
  if (c->committed && c->ms_on && !c->saw_done && !c->client_gone && c->req) {
    release_easy(c); /* the stream died: continued elsewhere when it can be */
    ms_died(c, c->ms_dead ? c->ms_dead : MS_CUT);
    return;
  }
  if (c->committed) { /* stream: the client has bytes, no failover possible */
    account_usage(c, d);
    if (res == CURLE_OK && c->saw_done) d->stats->success++;
    else d->stats->errors[MC_OTHER_ERROR]++; /* cut, or ended by an in-band error */
    brk_end(c, res == CURLE_OK && c->saw_done ? BO_SUCCESS : BO_SERVER);
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
      int k = c->relay ? passthrough_divert_kind(c) : -1;
      if (k >= 0 && try_divert(c, d, (enum route_divert_kind)k)) return;
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
  uint64_t idle = uv_now(t->loop) - c->last_byte_ms, left = time_left(c);
  if (c->paused || c->client_full) idle = 0;
  if (idle < c->idle_ms && left > 0) {
    uint64_t ms = c->idle_ms - idle;
    uv_timer_start(t, on_stream_idle, ms < left ? ms : left, 0);
    return;
  }
  const snap_dep *d = &c->snap->deps[c->dep];
  if (c->ms_on && left > 0) { /* a stall: continued elsewhere when it can be */
    release_easy(c); /* a uv callback: removing from the multi is allowed */
    ms_died(c, MS_STALL);
    return;
  }
  account_usage(c, d);
  if (left == 0) { /* the request's total deadline, not the provider's silence */
    metrics_req_fail[MRF_REQUEST_TIMEOUT]++;
    LOG_WARN(c->rid, "request_timeout", LF_I("total_timeout_ms", snap_total_timeout_ms(c)),
             LF_I("attempts", c->attempts), LF_B("streaming", 1));
    brk_end(c, BO_NEUTRAL);
  } else {
    d->stats->errors[MC_OTHER_ERROR]++;
    brk_end(c, BO_SERVER);
  }
  release_easy(c); /* a uv callback: removing from the multi is allowed; no DONE follows */
  stream_end(c, 1);
  chat_free(c);
}

void attempt_stream_committed(chat *c) {
  /* the idle bound between upstream chunks is the deployment's timeout (30 s if none) */
  uint32_t ms = c->snap->deps[c->dep].timeout_ms;
  c->idle_ms = ms ? ms : ATTEMPT_STREAM_IDLE_MS;
  c->last_byte_ms = uv_now(c->timer.loop);
  c->ttft_ms = (double)(util_now_us() - c->attempt_start_us) / 1000.0;
  uint64_t left = time_left(c);
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
  c->pending_dep = -1;
  c->ms_from = -1;
  uint32_t total = snap_total_timeout_ms(c);
  if (total) c->deadline_ms = uv_now(multi.loop) + total;
  c->cu.done = on_done;
  snprintf(c->rid, sizeof c->rid, "%s", rid);
  sse_init(&c->sse);
  uv_timer_init(multi.loop, &c->timer);
  hedge_init(c, multi.loop);
  c->handles_open = 2;
  req->user = c;
  route_init(&c->route, snap, group);
  attempt_next(c, NULL, NULL);
}

void attempt_on_abort(hs_request *req) {
  chat *c = req->user;
  if (!c) return;
  if (c->peer) { /* a race nobody will win: the hedge goes too */
    chat *p = c->peer;
    hedge_detach(c, "client_gone");
    attempt_hedge_cancel(p);
  }
  if (c->dep >= 0 && (c->easy || c->committed)) c->snap->deps[c->dep].stats->errors[MC_CANCELLED]++;
  brk_end(c, BO_NEUTRAL); /* a cancellation says nothing about the provider */
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
