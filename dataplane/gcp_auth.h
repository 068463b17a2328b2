/* gcp_auth.h — OAuth2 access tokens for Vertex AI deployments, minted by the worker
 * (the wiring planned in providers/gcp_token.h).
 *
 * One `gcp_cred` per distinct service account (keyed by the SHA-256 of its key JSON),
 * shared by every deployment that uses it and refcounted by the snapshots naming it: a
 * snapshot swap that keeps the key keeps the cached token. Each credential has
 *   - a token cache (gcp_token_cache) and a refresh timer armed at
 *     gcp_cache_refresh_at(): the token is renewed while the old one is still valid,
 *     so in steady state no request waits;
 *   - at most one token fetch in flight, on the worker's own curl multi (curl_uv.h);
 *   - a list of parked waiters: attempts that found no valid token wait for the fetch
 *     (bounded by their own deadline) and fail over as auth if it brings none.
 * Fetches are logged (service-account email, expires_in; never the token or the JWT)
 * and counted in /metrics as llmesh_gcp_token_fetches_total{result}.
 *
 * Test hook: LLMESH_GCP_REFRESH_SKEW_S (seconds, default GCP_REFRESH_BEFORE_S = 600,
 * clamped to 330..86400) is how long before expiry the proactive refresh starts. The
 * cache's margins are compile-time constants, so the hook shifts the clock the cache
 * sees by (skew - 600) s: a token also stops being handed out (skew - 300) s before its
 * expiry instead of 300 s. With 698, a 700 s token is renewed after ~2 s. */
#ifndef LLMESH_GCP_AUTH_H
#define LLMESH_GCP_AUTH_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "curl_uv.h"

#define GCP_AUTH_FETCH_TIMEOUT_MS 10000u   /* total deadline of one token fetch, ms */
#define GCP_AUTH_MAX_ANSWER (64u << 10)    /* token endpoint answer bytes kept */
#define GCP_AUTH_SKEW_ENV "LLMESH_GCP_REFRESH_SKEW_S"

typedef struct gcp_cred gcp_cred;
typedef struct gcp_waiter gcp_waiter;

/* The fetch a waiter waited for ended: ok = 1 when a valid token is available now. */
typedef void (*gcp_wait_cb)(gcp_waiter *w, int ok);

/* An attempt parked on a credential; embed it (container_of). */
struct gcp_waiter {
  gcp_waiter *next;  /* in the credential's list */
  gcp_waiter *prev;
  gcp_cred *cred;    /* where it is parked, NULL when not parked */
  gcp_wait_cb cb;    /* called once, after it is unparked */
};

/* Fetches run on multi (the chats' multi), timers on loop. Reads GCP_AUTH_SKEW_ENV. */
void gcp_auth_init(uv_loop_t *loop, cu_multi *multi);
/* Cancels fetches and closes timers (before cu_close); credentials stay usable as
 * plain objects until their last gcp_auth_put. Run the loop afterwards. */
void gcp_auth_shutdown(void);

/* The credential for a service-account key JSON: an existing one with a new reference,
 * or a new one (key parsed once; first fetch starts at once). NULL when the key is
 * unusable (logged with deployment, never the key) or on ENOMEM. */
gcp_cred *gcp_auth_get(const char *json, size_t len, const char *deployment);
void gcp_auth_put(gcp_cred *c); /* drops a reference (NULL ok); the last frees */

/* A token valid long enough for an attempt, or NULL (then gcp_auth_wait). The pointer
 * is valid until control returns to the loop; *gen identifies the token (for
 * gcp_auth_rejected). */
const char *gcp_auth_token(gcp_cred *c, uint64_t *gen);
/* Parks w until a fetch ends, starting one when none is in flight. Returns 0 (parked:
 * cb follows), or -EAGAIN when no fetch can run now (backoff after failures, stopped):
 * fail over at once. */
int gcp_auth_wait(gcp_cred *c, gcp_waiter *w, gcp_wait_cb cb);
void gcp_auth_cancel(gcp_waiter *w); /* unparks without a callback; no-op when not parked */
/* The upstream answered 401 to token gen: forget it (if still current) and fetch anew. */
void gcp_auth_rejected(gcp_cred *c, uint64_t gen);

#endif
