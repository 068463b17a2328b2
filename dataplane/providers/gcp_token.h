/* gcp_token.h — OAuth2 access tokens for Google service accounts (Vertex AI), minted by
 * llmesh itself: service-account JSON → RS256-signed JWT → token exchange → cached token.
 *
 * Pure like the adapters (provider.h): no I/O, no libuv, no curl, no clock. The caller
 * passes the wall clock (seconds since the epoch: JWT iat/exp are wall-clock) and runs
 * the HTTP exchange itself.
 *
 *   gcp_sa_parse ──▶ gcp_sa (EVP_PKEY parsed once)
 *   gcp_token_request(sa, now) ──▶ POST token_uri (form: grant_type=jwt-bearer&assertion=JWT)
 *   gcp_token_parse(answer, now) ──▶ access token + absolute expiry ──▶ gcp_cache_set
 *
 * Intended wiring in the worker (dataplane, not done here; see the report of this change):
 * - One `gcp_cred` per distinct service account (keyed by the SHA-256 of the credentials
 *   JSON), shared by every deployment that uses it: a gcp_sa, a gcp_token_cache, a list
 *   of waiting attempts and a uv_timer_t.
 * - Refresh timer: armed at gcp_cache_refresh_at(); when it fires and
 *   gcp_cache_needs_refresh() is true, gcp_cache_fetch_begin() then one curl easy handle
 *   on the worker's own curl multi (gcp_token_request). Proactive refresh starts
 *   GCP_REFRESH_BEFORE_S before expiry while the old token is still valid, so in steady
 *   state no request ever waits for a token.
 * - At most one fetch in flight per service account (gcp_cache_fetch_begin refuses a second).
 * - An attempt calls gcp_cache_get(): a token → it goes into prov_target.access_token.
 *   NULL → the attempt parks on the credential's waiter list (starting a fetch if none is
 *   in flight and the backoff allows) and resumes when the fetch ends; its own deadline
 *   still runs (a fetch that outlives it fails the attempt as a timeout, which fails
 *   over).
 * - Fetch done: gcp_token_parse → gcp_cache_set, wake the waiters, re-arm the timer.
 *   Fetch failed (transport, non-2xx, parse): gcp_cache_fetch_failed (exponential backoff,
 *   GCP_BACKOFF_MIN_S..GCP_BACKOFF_MAX_S), keep using the old token while gcp_cache_get
 *   returns it, fail the waiters over (a deployment with no token is like one whose key
 *   is rejected: PE_AUTH), log the token endpoint's error (never the JWT), re-arm the
 *   timer at the retry time.
 * - Snapshot swap: credentials whose hash is unchanged keep their cache; others are
 *   freed once no attempt references them. */
#ifndef LLMESH_GCP_TOKEN_H
#define LLMESH_GCP_TOKEN_H

#include <stddef.h>
#include <stdint.h>

#include "provider.h"
#include "util.h"

#define GCP_SCOPE_CLOUD "https://www.googleapis.com/auth/cloud-platform" /* Vertex AI scope */
#define GCP_TOKEN_URI "https://oauth2.googleapis.com/token" /* default token_uri */
#define GCP_JWT_LIFETIME_S 3600   /* exp - iat of the assertion: Google's maximum, s */
#define GCP_MIN_VALID_S 300       /* gcp_cache_get hands out a token only if valid this long, s */
#define GCP_REFRESH_BEFORE_S 600  /* proactive refresh starts this long before expiry, s */
#define GCP_BACKOFF_MIN_S 1       /* first retry delay after a failed fetch, s */
#define GCP_BACKOFF_MAX_S 60      /* cap of the doubling retry delay, s */
#define GCP_TOKEN_MAX 4096        /* bytes of an access token, NUL included (Google: <= 2048) */

/* A parsed service account; opaque (holds the private key). */
typedef struct gcp_sa gcp_sa;

/* Access-token cache of one service account: a small state machine, no I/O. */
typedef struct gcp_token_cache {
  char token[GCP_TOKEN_MAX]; /* current access token, "" = none */
  uint64_t expires_at_s;     /* expiry of token, wall clock s; 0 = none */
  int fetching;              /* a token fetch is in flight */
  uint32_t failures;         /* consecutive failed fetches (0 after a success) */
  uint64_t retry_at_s;       /* no new fetch before this (backoff), wall clock s */
} gcp_token_cache;

/* ---- service account ----------------------------------------------------------------- */

/* Parses a service-account key file (JSON): type "service_account", client_email,
 * private_key (PEM, RSA; parsed here once), private_key_id, token_uri (default
 * GCP_TOKEN_URI; must be https, or http to a loopback host for tests), project_id
 * (optional). NULL with a message in err (never containing key material) on failure. */
gcp_sa *gcp_sa_parse(const char *json, size_t len, char *err, size_t errlen);
void gcp_sa_free(gcp_sa *sa);
const char *gcp_sa_email(const gcp_sa *sa);     /* client_email */
const char *gcp_sa_project(const gcp_sa *sa);   /* project_id, "" when absent */
const char *gcp_sa_token_uri(const gcp_sa *sa); /* where the JWT is exchanged */

/* ---- token exchange ------------------------------------------------------------------ */

/* Appends the signed JWT assertion: header {"alg":"RS256","typ":"JWT","kid"}, claims
 * {iss, scope, aud = token_uri, iat = now_s, exp = now_s + GCP_JWT_LIFETIME_S}, base64url
 * without padding. scope NULL = GCP_SCOPE_CLOUD. Returns 0, -ENOMEM or -EIO (signing). */
int gcp_jwt_build(gcp_sa *sa, uint64_t now_s, const char *scope, buf_t *out);

/* Builds the token request (POST token_uri, form body with the JWT, cloud-platform
 * scope) into out (empty on entry). Returns 0, -ENOMEM or -EIO; out is freed on error. */
int gcp_token_request(gcp_sa *sa, uint64_t now_s, prov_request *out);

/* Parses the token endpoint's answer (any HTTP status): {"access_token","expires_in",
 * "token_type":"Bearer"} → token (NUL-terminated, cap bytes) and *expires_at_s = now_s +
 * expires_in. Returns 0; -EACCES for an OAuth error body {"error","error_description"}
 * (message in err: "invalid_grant: Invalid JWT Signature."); -EPROTO for anything else
 * unusable (not JSON, no token, bad expiry, token with bytes unfit for a header);
 * -ENOSPC when the token does not fit. err may be NULL. */
int gcp_token_parse(const char *body, size_t len, uint64_t now_s, char *token, size_t cap,
                    uint64_t *expires_at_s, char *err, size_t errlen);

/* ---- cache --------------------------------------------------------------------------- */

void gcp_cache_init(gcp_token_cache *c);
/* The token if it is valid for more than GCP_MIN_VALID_S at now_s, else NULL. */
const char *gcp_cache_get(const gcp_token_cache *c, uint64_t now_s);
/* 1 when a fetch should start now: none in flight, backoff elapsed, and no token or
 * now_s >= expiry - GCP_REFRESH_BEFORE_S. */
int gcp_cache_needs_refresh(const gcp_token_cache *c, uint64_t now_s);
/* Wall-clock second at which gcp_cache_needs_refresh becomes true (<= now_s: now);
 * UINT64_MAX while a fetch is in flight (its completion re-arms). For the refresh timer. */
uint64_t gcp_cache_refresh_at(const gcp_token_cache *c, uint64_t now_s);
/* Marks a fetch as started. 0, or -EBUSY when one is in flight (single flight). */
int gcp_cache_fetch_begin(gcp_token_cache *c);
/* A fetch succeeded: stores token (valid until expires_at_s), ends the fetch, clears the
 * backoff. 0, or -ENOSPC when token does not fit (cache unchanged: call
 * gcp_cache_fetch_failed). */
int gcp_cache_set(gcp_token_cache *c, const char *token, uint64_t expires_at_s);
/* A fetch failed: no new fetch before now_s + backoff (doubling from GCP_BACKOFF_MIN_S
 * to GCP_BACKOFF_MAX_S); the old token stays in use while gcp_cache_get returns it. */
void gcp_cache_fetch_failed(gcp_token_cache *c, uint64_t now_s);
/* The upstream rejected the token (401 before its expiry: key deleted or rotated): forget
 * it so the next gcp_cache_needs_refresh is true (backoff still applies). */
void gcp_cache_drop(gcp_token_cache *c);

#endif
