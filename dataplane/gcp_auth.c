/* gcp_auth.c — service-account access tokens on the worker's loop (see gcp_auth.h).
 *
 *   gcp_auth_get ──▶ cred (refs) ──timer──▶ cred_fetch ──curl──▶ on_fetch_done
 *                                  ▲                                 │
 *                                  └──── arm at refresh_at ◀── set / failed, wake waiters */
#include "gcp_auth.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "gcp_token.h"
#include "log.h"
#include "metrics.h"
#include "util.h"

struct gcp_cred {
  gcp_cred *next;            /* registry list */
  int refs;                  /* snapshot deployments naming it */
  uint8_t id[32];            /* SHA-256 of the key JSON */
  gcp_sa *sa;                /* parsed key */
  gcp_token_cache cache;     /* current token, fetch state, backoff */
  uint64_t gen;              /* bumps with every stored token (gcp_auth_rejected) */
  uv_timer_t timer;          /* refresh / retry timer */
  int has_timer;             /* timer initialised (gcp_auth_init ran) */
  int timer_closed;          /* uv_close done (shutdown) */
  cu_owner cu;               /* owner of the fetch transfer */
  CURL *easy;                /* fetch in flight, NULL when none */
  prov_request req;          /* its request (outlives the transfer) */
  struct curl_slist *hdrs;   /* req's headers for curl */
  buf_t answer;              /* token endpoint answer, capped */
  uint64_t fetch_started_ms; /* monotonic, for the log */
  gcp_waiter *waiters;       /* parked attempts */
};

static uv_loop_t *auth_loop;
static cu_multi *auth_multi;
static gcp_cred *creds;        /* every live credential */
static int64_t clock_shift_s;  /* skew - GCP_REFRESH_BEFORE_S (gcp_auth.h) */
static int stopped;            /* gcp_auth_shutdown ran */

static void cred_fetch(gcp_cred *g);

static uint64_t wall_s(void) { return util_wall_ms() / 1000; }
/* The clock the cache's margins are applied to. */
static uint64_t cache_now(void) { return (uint64_t)((int64_t)wall_s() + clock_shift_s); }

void gcp_auth_init(uv_loop_t *loop, cu_multi *multi) {
  auth_loop = loop;
  auth_multi = multi;
  stopped = 0;
  clock_shift_s = 0;
  const char *s = getenv(GCP_AUTH_SKEW_ENV);
  if (s && *s) {
    long v = strtol(s, NULL, 10);
    if (v < 330) v = 330;
    if (v > 86400) v = 86400;
    clock_shift_s = v - GCP_REFRESH_BEFORE_S;
    LOG_INFO(NULL, "gcp_refresh_skew", LF_I("refresh_before_s", v));
  }
}

/* ---- timer ---------------------------------------------------------------------------- */

static void on_timer(uv_timer_t *t) { cred_fetch(container_of(t, gcp_cred, timer)); }

static void cred_arm(gcp_cred *g) {
  if (!g->has_timer || stopped) return;
  uint64_t now = cache_now(), at = gcp_cache_refresh_at(&g->cache, now);
  if (at == UINT64_MAX) { uv_timer_stop(&g->timer); return; } /* the fetch's end re-arms */
  uint64_t ms = at <= now ? 0 : (at - now) * 1000;
  uv_timer_start(&g->timer, on_timer, ms, 0);
}

/* ---- waiters -------------------------------------------------------------------------- */

static void waiter_unlink(gcp_waiter *w) {
  gcp_cred *g = w->cred;
  if (w->prev) w->prev->next = w->next;
  else g->waiters = w->next;
  if (w->next) w->next->prev = w->prev;
  w->next = w->prev = NULL;
  w->cred = NULL;
}

/* Every waiter of g gets cb once; a callback may park again (a new list). */
static void wake_waiters(gcp_cred *g) {
  gcp_waiter *list = g->waiters;
  g->waiters = NULL;
  int ok = gcp_cache_get(&g->cache, cache_now()) != NULL;
  while (list) {
    gcp_waiter *w = list;
    list = w->next;
    if (list) list->prev = NULL;
    w->next = w->prev = NULL;
    w->cred = NULL;
    w->cb(w, ok);
  }
}

void gcp_auth_cancel(gcp_waiter *w) {
  if (w && w->cred) waiter_unlink(w);
}

/* ---- fetch ---------------------------------------------------------------------------- */

static size_t on_fetch_write(char *p, size_t size, size_t n, void *ud) {
  gcp_cred *g = ud;
  size_t len = size * n;
  if (g->answer.len + len > GCP_AUTH_MAX_ANSWER) return CURL_WRITEFUNC_ERROR;
  return buf_append(&g->answer, p, len) ? CURL_WRITEFUNC_ERROR : len;
}

static void fetch_release(gcp_cred *g) {
  if (g->easy) {
    curl_easy_setopt(g->easy, CURLOPT_TIMEOUT_MS, 0L); /* pooled: chats set no total timeout */
    cu_easy_put(auth_multi, g->easy, 0);
    g->easy = NULL;
  }
  curl_slist_free_all(g->hdrs);
  g->hdrs = NULL;
  prov_request_free(&g->req); /* carries the signed JWT: wiped by nobody else */
  memset(&g->req, 0, sizeof g->req);
  if (g->answer.data) OPENSSL_cleanse(g->answer.data, g->answer.cap);
  buf_free(&g->answer);
}

static void fetch_failed(gcp_cred *g, const char *why, long status, const char *detail) {
  fetch_release(g);
  gcp_cache_fetch_failed(&g->cache, cache_now());
  metrics_gcp_token_fetches[0]++;
  LOG_WARN(NULL, "gcp_token_fetch_failed", LF_S("service_account", gcp_sa_email(g->sa)),
           LF_S("why", why), LF_I("status", status), LF_S("error", detail),
           LF_I("failures", g->cache.failures),
           LF_B("old_token_valid", gcp_cache_get(&g->cache, cache_now()) != NULL));
  wake_waiters(g);
  cred_arm(g);
}

static void on_fetch_done(CURL *e, CURLcode res, cu_owner *o) {
  gcp_cred *g = container_of(o, gcp_cred, cu);
  long status = 0;
  char tok[GCP_TOKEN_MAX], err[256] = "";
  uint64_t exp = 0, now = wall_s();
  curl_easy_getinfo(e, CURLINFO_RESPONSE_CODE, &status);
  if (res != CURLE_OK) {
    fetch_failed(g, "transport", status, curl_easy_strerror(res));
    return;
  }
  int rc = gcp_token_parse(g->answer.data ? g->answer.data : "", g->answer.len, now, tok, sizeof tok,
                           &exp, err, sizeof err);
  if (rc == 0 && (status < 200 || status >= 300)) rc = -EPROTO;
  if (rc == 0 && gcp_cache_set(&g->cache, tok, exp) < 0) rc = -ENOSPC;
  OPENSSL_cleanse(tok, sizeof tok);
  if (rc < 0) {
    fetch_failed(g, rc == -EACCES ? "rejected" : "bad_answer", status, err[0] ? err : "unusable answer");
    return;
  }
  g->gen++;
  metrics_gcp_token_fetches[1]++;
  LOG_INFO(NULL, "gcp_token_fetched", LF_S("service_account", gcp_sa_email(g->sa)),
           LF_I("expires_in", exp - now), LF_I("ms", util_now_ms() - g->fetch_started_ms));
  fetch_release(g);
  wake_waiters(g);
  cred_arm(g);
}

/* Starts a fetch when one is due (needs_refresh), else just re-arms. */
static void cred_fetch(gcp_cred *g) {
  if (!auth_multi || stopped || !gcp_cache_needs_refresh(&g->cache, cache_now())) {
    cred_arm(g);
    return;
  }
  if (gcp_cache_fetch_begin(&g->cache) < 0) return; /* in flight: its end re-arms */
  g->fetch_started_ms = util_now_ms();
  memset(&g->req, 0, sizeof g->req);
  if (gcp_token_request(g->sa, wall_s(), &g->req) < 0 || !buf_cstr(&g->req.url)) {
    fetch_failed(g, "jwt", 0, "cannot sign the assertion");
    return;
  }
  const char *p = g->req.headers.data;
  for (int i = 0; i < g->req.nheaders; i++, p += strlen(p) + 1) {
    struct curl_slist *h = curl_slist_append(g->hdrs, p);
    if (!h) { fetch_failed(g, "internal", 0, "out of memory"); return; }
    g->hdrs = h;
  }
  struct curl_slist *h = curl_slist_append(g->hdrs, "Expect:");
  if (!h || !(g->easy = cu_easy_get(auth_multi, 0))) {
    if (h) g->hdrs = h;
    fetch_failed(g, "internal", 0, "out of memory");
    return;
  }
  g->hdrs = h;
  CURL *e = g->easy;
  curl_easy_setopt(e, CURLOPT_URL, g->req.url.data);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, g->hdrs);
  curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)g->req.body.len);
  curl_easy_setopt(e, CURLOPT_POSTFIELDS, g->req.body.data ? g->req.body.data : "");
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_fetch_write);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, g);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, NULL);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, NULL);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT_MS, 5000L);
  curl_easy_setopt(e, CURLOPT_TIMEOUT_MS, (long)GCP_AUTH_FETCH_TIMEOUT_MS);
  if (cu_start(auth_multi, e, &g->cu)) {
    fetch_failed(g, "internal", 0, "cannot start the transfer");
    return;
  }
  LOG_DEBUG(NULL, "gcp_token_fetch", LF_S("service_account", gcp_sa_email(g->sa)));
  uv_timer_stop(&g->timer);
}

/* ---- registry ------------------------------------------------------------------------- */

gcp_cred *gcp_auth_get(const char *json, size_t len, const char *deployment) {
  uint8_t id[32];
  SHA256((const unsigned char *)json, len, id);
  for (gcp_cred *g = creds; g; g = g->next) {
    if (CRYPTO_memcmp(g->id, id, 32) == 0) {
      g->refs++;
      return g;
    }
  }
  char err[256] = "";
  gcp_sa *sa = gcp_sa_parse(json, len, err, sizeof err);
  if (!sa) {
    LOG_ERROR(NULL, "gcp_credentials_invalid", LF_S("deployment", deployment), LF_S("error", err));
    return NULL;
  }
  gcp_cred *g = calloc(1, sizeof *g);
  if (!g) { gcp_sa_free(sa); return NULL; }
  memcpy(g->id, id, 32);
  g->refs = 1;
  g->sa = sa;
  g->cu.done = on_fetch_done;
  gcp_cache_init(&g->cache);
  if (auth_loop && !stopped) {
    uv_timer_init(auth_loop, &g->timer);
    g->has_timer = 1;
    uv_timer_start(&g->timer, on_timer, 0, 0); /* first token now, before any request */
  }
  g->next = creds;
  creds = g;
  return g;
}

static void cred_free(gcp_cred *g) {
  gcp_sa_free(g->sa);
  OPENSSL_cleanse(&g->cache, sizeof g->cache);
  free(g);
}

static void on_timer_closed(uv_handle_t *h) {
  gcp_cred *g = container_of((uv_timer_t *)h, gcp_cred, timer);
  g->timer_closed = 1;
  if (g->refs == 0) cred_free(g);
}

/* Stops the fetch (no done callback follows) and fails the waiters. */
static void cred_stop(gcp_cred *g) {
  if (g->easy) {
    cu_cancel(auth_multi, g->easy);
    fetch_release(g);
    g->cache.fetching = 0;
  }
  wake_waiters(g);
}

void gcp_auth_put(gcp_cred *g) {
  if (!g || --g->refs > 0) return;
  for (gcp_cred **pp = &creds; *pp; pp = &(*pp)->next)
    if (*pp == g) { *pp = g->next; break; }
  cred_stop(g); /* waiters hold snapshot references: there are none left */
  if (g->has_timer && !g->timer_closed) {
    if (!uv_is_closing((uv_handle_t *)&g->timer)) uv_close((uv_handle_t *)&g->timer, on_timer_closed);
    return; /* freed when closed */
  }
  cred_free(g);
}

void gcp_auth_shutdown(void) {
  stopped = 1;
  for (gcp_cred *g = creds; g; g = g->next) {
    cred_stop(g);
    if (g->has_timer && !uv_is_closing((uv_handle_t *)&g->timer))
      uv_close((uv_handle_t *)&g->timer, on_timer_closed);
  }
}

/* ---- attempts ------------------------------------------------------------------------- */

const char *gcp_auth_token(gcp_cred *g, uint64_t *gen) {
  const char *t = gcp_cache_get(&g->cache, cache_now());
  if (gen) *gen = g->gen;
  if (gcp_cache_needs_refresh(&g->cache, cache_now())) cred_fetch(g); /* timer late or dropped */
  return t;
}

int gcp_auth_wait(gcp_cred *g, gcp_waiter *w, gcp_wait_cb cb) {
  if (!g->cache.fetching) cred_fetch(g);
  if (!g->cache.fetching) return -EAGAIN; /* backoff, stopped, or failed at once */
  w->cred = g;
  w->cb = cb;
  w->prev = NULL;
  w->next = g->waiters;
  if (g->waiters) g->waiters->prev = w;
  g->waiters = w;
  return 0;
}

void gcp_auth_rejected(gcp_cred *g, uint64_t gen) {
  if (g->gen != gen || !g->cache.token[0]) return; /* already replaced */
  LOG_WARN(NULL, "gcp_token_rejected", LF_S("service_account", gcp_sa_email(g->sa)));
  gcp_cache_drop(&g->cache);
  cred_fetch(g);
}
