/* probe.c — active health probes on libcurl multi + the control loop (see probe.h). */
#include "probe.h"

#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "curl_uv.h"
#include "log.h"
#include "provider.h"
#include "util.h"

typedef struct probe_target {
  probe_set *ps;              /* owner */
  size_t idx;                 /* deployment index in the config */
  const cfg_deployment *d;    /* borrowed from the config */
  const cfg_router *r;        /* the probe request's prompt and max_tokens (borrowed) */
  int skip;                   /* cannot be probed (logged once) */
  int paused;                 /* drained: no probes */
  uv_timer_t timer;           /* next probe */
  CURL *easy;                 /* running transfer, NULL when idle */
  cu_owner cu;                /* its owner tag (curl_uv.h): probe_on_done */
  struct curl_slist *hdrs;    /* its headers */
  prov_request req;           /* its URL, headers and body (alive during the transfer) */
  buf_t resp;                 /* response body, ≤ PROBE_BODY_MAX */
  uint64_t started_ms;        /* monotonic */
  probe_status st;            /* last result */
} probe_target;

struct probe_set {
  uv_loop_t *loop;            /* the control loop */
  cu_multi cu;                /* all probes' transfers, on loop (curl_uv.h) */
  probe_target *t;            /* one per deployment, config order */
  size_t n;                   /* entries in t */
  uint32_t interval_ms;       /* between probes of one deployment */
  uint32_t timeout_ms;        /* whole-probe deadline */
  probe_done_cb cb;           /* result callback */
  void *ud;                   /* its argument */
  uint64_t rng;               /* xorshift state for jitter */
  int open_handles;           /* uv handles not yet closed; freed at 0 */
};

static void probe_finish(probe_target *t, CURLcode rc);
static void probe_schedule(probe_target *t, uint64_t delay_ms);

/* A probe's transfer finished (curl_uv's done callback, outside any curl callback). */
static void probe_on_done(CURL *e, CURLcode rc, cu_owner *o) {
  (void)e;
  probe_finish(container_of(o, probe_target, cu), rc);
}

/* ------------------------------------------------------------------ requests */

static size_t probe_on_body(char *p, size_t size, size_t n, void *ud) {
  probe_target *t = ud;
  size_t len = size * n, room = PROBE_BODY_MAX - t->resp.len;
  if (t->resp.len < PROBE_BODY_MAX) buf_append(&t->resp, p, len < room ? len : room);
  return len; /* the rest is read and dropped: the status is what matters */
}

/* Why d is never probed, or NULL. model_info.health_check: false is for deployments where
 * a probe costs money or is not allowed. Vertex needs an OAuth access token minted from
 * the service account, which only the worker does; without one the probe could only fail. */
static const char *probe_skip_reason(const cfg_deployment *d) {
  const provider_ops *ops = provider_find(d->provider);
  if (!d->health_check) return "disabled in config";
  if (ops == &prov_vertex) return "vertex_ai needs an OAuth access token (minted by workers only)";
  if (!d->api_base || !d->api_base[0]) return "no api_base";
  return NULL;
}

/* The canonical probe: one user message (health_check_prompt) and max_tokens
 * (health_check_max_tokens). */
static int probe_canon(const probe_target *t, buf_t *canon) {
  const char *prompt = t->r->probe_prompt ? t->r->probe_prompt : CFG_DEFAULT_PROBE_PROMPT;
  uint32_t max_tokens = t->r->probe_max_tokens ? t->r->probe_max_tokens : CFG_DEFAULT_PROBE_MAX_TOKENS;
  int rv = BUF_LIT(canon, "{\"model\":");
  if (!rv) rv = buf_json_quote(canon, t->d->upstream_model, strlen(t->d->upstream_model));
  if (!rv) rv = BUF_LIT(canon, ",\"messages\":[{\"role\":\"user\",\"content\":");
  if (!rv) rv = buf_json_quote(canon, prompt, strlen(prompt));
  if (!rv) rv = buf_printf(canon, "}],\"max_tokens\":%u}", max_tokens);
  return rv;
}

/* canonical probe → the deployment's own request. */
static int probe_build(probe_target *t, char *err, size_t errlen) {
  const cfg_deployment *d = t->d;
  buf_t canon = {0};
  int rv = probe_canon(t, &canon);
  const provider_ops *ops = provider_find(d->provider);
  if (!rv && ops) {
    prov_target pt = {.api_base = d->api_base, .api_key = d->api_key, .upstream_model = d->upstream_model,
                      .api_version = d->api_version, .aws_access_key_id = d->aws_access_key_id,
                      .aws_secret_access_key = d->aws_secret_access_key,
                      .aws_session_token = d->aws_session_token, .aws_region = d->aws_region,
                      .gcp_project = d->gcp_project, .gcp_location = d->gcp_location, .access_token = ""};
    prov_canon c = {.body = canon.data, .len = canon.len};
    rv = ops->build_request(&pt, &c, &t->req, err, errlen);
  } else if (!rv) { /* OpenAI family: the canonical body as is */
    rv = buf_printf(&t->req.url, "%s/chat/completions", d->api_base);
    if (!rv) rv = prov_request_header(&t->req, "Content-Type", "application/json");
    if (!rv && d->api_key[0]) {
      char auth[1024];
      snprintf(auth, sizeof auth, "Bearer %s", d->api_key);
      rv = prov_request_header(&t->req, "Authorization", auth);
    }
    if (!rv) rv = buf_append(&t->req.body, canon.data, canon.len);
  }
  buf_free(&canon);
  if (rv && !err[0]) snprintf(err, errlen, "cannot build the probe request");
  return rv ? -1 : 0;
}

static int probe_launch(probe_target *t) {
  probe_set *ps = t->ps;
  char err[256] = "";
  prov_request_free(&t->req);
  buf_reset(&t->resp);
  if (probe_build(t, err, sizeof err) < 0 || !buf_cstr(&t->req.url) || !(t->easy = curl_easy_init())) {
    LOG_WARN(NULL, "probe_skipped", LF_S("deployment", t->d->name), LF_S("reason", err[0] ? err : "out of memory"));
    t->skip = 1;
    return -1;
  }
  const char *h = t->req.headers.data;
  for (int i = 0; i < t->req.nheaders; i++, h += strlen(h) + 1) t->hdrs = curl_slist_append(t->hdrs, h);
  uint32_t connect_ms = t->d->connect_timeout_ms && t->d->connect_timeout_ms < ps->timeout_ms
                            ? t->d->connect_timeout_ms : ps->timeout_ms;
  curl_easy_setopt(t->easy, CURLOPT_URL, t->req.url.data);
  curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->hdrs);
  curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
  curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, t->req.body.data);
  curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE, (long)t->req.body.len);
  curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, probe_on_body);
  curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
  curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long)ps->timeout_ms);
  curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long)connect_ms);
  t->started_ms = util_now_ms();
  if (cu_start(&ps->cu, t->easy, &t->cu)) {
    probe_finish(t, CURLE_FAILED_INIT);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ results */

static void probe_set_error(probe_status *st, int ok, cbrk_probe_result kind, const char *error) {
  st->ok = ok;
  st->kind = kind;
  snprintf(st->error, sizeof st->error, "%s", error);
}

static void probe_classify_transport(probe_status *st, CURLcode rc) {
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT: probe_set_error(st, 0, CBRK_PROBE_FAIL, "timeout"); break;
    case CURLE_COULDNT_CONNECT:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_PEER_FAILED_VERIFICATION: probe_set_error(st, 0, CBRK_PROBE_FAIL, "connect"); break;
    default: probe_set_error(st, 0, CBRK_PROBE_FAIL, "transport"); break;
  }
}

/* How a provider error counts for health. */
static cbrk_probe_result probe_kind(prov_error pe) {
  switch (pe) {
    case PE_RATE_LIMITED:
    case PE_OVERLOADED: return CBRK_PROBE_OK; /* alive, only busy */
    case PE_AUTH: return CBRK_PROBE_AUTH;
    case PE_SERVER:
    case PE_TIMEOUT:
    case PE_GARBAGE: return CBRK_PROBE_FAIL;
    default: return CBRK_PROBE_NEUTRAL; /* the probe's own fault (bad request, unknown model) */
  }
}

static void probe_classify_http(probe_target *t, probe_status *st) {
  const provider_ops *ops = provider_find(t->d->provider);
  int s = st->http_status;
  char cls[24];
  prov_error pe = PE_SERVER;
  snprintf(cls, sizeof cls, "http_%d", s);
  if (s >= 200 && s < 300) pe = PE_NONE;
  else if (s == 429 || s == 529) pe = PE_RATE_LIMITED;
  else if (s == 401 || s == 403) pe = PE_AUTH;
  else if (ops) {
    uint64_t retry = 0;
    pe = ops->classify_error(s, t->resp.data ? t->resp.data : "", t->resp.len, &retry);
  } else if (s < 500) {
    pe = s == 408 ? PE_TIMEOUT : PE_BAD_REQUEST;
  }
  if (pe == PE_NONE) probe_set_error(st, 1, CBRK_PROBE_OK, "");
  else if (probe_kind(pe) == CBRK_PROBE_OK) probe_set_error(st, 1, CBRK_PROBE_OK, "rate_limited");
  else if (probe_kind(pe) == CBRK_PROBE_AUTH) probe_set_error(st, 0, CBRK_PROBE_AUTH, "credential_failed");
  else probe_set_error(st, 0, probe_kind(pe), cls);
}

static uint64_t probe_jitter(probe_set *ps, uint64_t ms) {
  ps->rng ^= ps->rng << 13;
  ps->rng ^= ps->rng >> 7;
  ps->rng ^= ps->rng << 17;
  int64_t span = (int64_t)ms * PROBE_JITTER_PERCENT / 100;
  int64_t off = span ? (int64_t)(ps->rng % (uint64_t)(2 * span + 1)) - span : 0;
  return (uint64_t)((int64_t)ms + off);
}

static void probe_finish(probe_target *t, CURLcode rc) {
  probe_status *st = &t->st;
  long status = 0;
  curl_easy_getinfo(t->easy, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(t->easy);
  curl_slist_free_all(t->hdrs);
  t->easy = NULL;
  t->hdrs = NULL;
  st->ran = 1;
  st->at_ms = util_now_ms();
  st->latency_ms = (uint32_t)(st->at_ms - t->started_ms);
  st->http_status = rc == CURLE_OK ? (int)status : 0;
  if (rc != CURLE_OK) probe_classify_transport(st, rc);
  else probe_classify_http(t, st);
  st->consecutive_failures = st->kind == CBRK_PROBE_FAIL ? st->consecutive_failures + 1 : 0;
  prov_request_free(&t->req);
  probe_schedule(t, probe_jitter(t->ps, t->ps->interval_ms));
  t->ps->cb(t->idx, st, t->ps->ud);
}

/* ------------------------------------------------------------------ scheduling */

static void probe_on_timer(uv_timer_t *h) {
  probe_target *t = h->data;
  if (t->skip || t->paused || t->easy) return;
  if (probe_launch(t) < 0 && !t->skip) probe_schedule(t, t->ps->interval_ms);
}

static void probe_schedule(probe_target *t, uint64_t delay_ms) {
  if (!t->skip) uv_timer_start(&t->timer, probe_on_timer, delay_ms, 0);
}

void probe_now(probe_set *ps, size_t idx) {
  if (!ps || idx >= ps->n) return;
  probe_target *t = &ps->t[idx];
  if (t->skip || t->paused || t->easy) return;
  uv_timer_stop(&t->timer);
  probe_schedule(t, 0);
}

void probe_pause(probe_set *ps, size_t idx, int paused) {
  if (!ps || idx >= ps->n) return;
  probe_target *t = &ps->t[idx];
  int was = t->paused;
  t->paused = paused;
  if (was && !paused) probe_schedule(t, probe_jitter(ps, ps->interval_ms / 2));
}

const probe_status *probe_last(const probe_set *ps, size_t idx) {
  if (!ps || idx >= ps->n || !ps->t[idx].st.ran) return NULL;
  return &ps->t[idx].st;
}

static void probe_closed_one(probe_set *ps) {
  if (--ps->open_handles > 0) return;
  free(ps->t);
  free(ps);
}

static void probe_handle_closed(uv_handle_t *h) { probe_closed_one(h->data); }

static void probe_cu_closed(uv_handle_t *h) {
  probe_closed_one(container_of(container_of((uv_timer_t *)h, cu_multi, timer), probe_set, cu));
}

int probe_start(probe_set **out, uv_loop_t *loop, const cfg_config *c, uint32_t interval_ms,
                uint32_t timeout_ms, probe_done_cb cb, void *ud) {
  probe_set *ps = calloc(1, sizeof *ps);
  if (!ps || !(ps->t = calloc(c->ndeployments + 1, sizeof *ps->t)) || cu_init(&ps->cu, loop)) {
    if (ps) free(ps->t);
    free(ps);
    return -1;
  }
  ps->loop = loop;
  ps->n = c->ndeployments;
  ps->interval_ms = interval_ms ? interval_ms : CFG_DEFAULT_PROBE_INTERVAL_MS;
  ps->timeout_ms = timeout_ms ? timeout_ms : CFG_DEFAULT_PROBE_TIMEOUT_MS;
  ps->cb = cb;
  ps->ud = ud;
  ps->rng = util_now_us() | 1;
  ps->open_handles = 1; /* cu's timer */
  for (size_t i = 0; i < ps->n; i++) {
    probe_target *t = &ps->t[i];
    const char *why;
    t->ps = ps;
    t->idx = i;
    t->d = &c->deployments[i];
    t->r = &c->router;
    t->cu.done = probe_on_done;
    uv_timer_init(loop, &t->timer);
    t->timer.data = t;
    ps->open_handles++;
    if ((why = probe_skip_reason(t->d))) {
      t->skip = 1;
      LOG_INFO(NULL, "probe_skipped", LF_S("deployment", t->d->name), LF_S("reason", why));
      continue;
    }
    /* staggered over the second half of the first interval: never all at once, and
     * not in the first seconds after a (re)start */
    uint64_t first = ps->interval_ms / 2 + (uint64_t)ps->interval_ms / 2 * (i + 1) / (ps->n + 1);
    probe_schedule(t, probe_jitter(ps, first));
  }
  *out = ps;
  return 0;
}

void probe_stop(probe_set *ps) {
  if (!ps) return;
  for (size_t i = 0; i < ps->n; i++) {
    probe_target *t = &ps->t[i];
    if (t->easy) {
      cu_cancel(&ps->cu, t->easy);
      curl_easy_cleanup(t->easy);
      curl_slist_free_all(t->hdrs);
      t->easy = NULL;
    }
    prov_request_free(&t->req);
    buf_free(&t->resp);
    uv_close((uv_handle_t *)&t->timer, probe_handle_closed);
    t->timer.data = ps;
  }
  cu_close(&ps->cu, probe_cu_closed);
}
