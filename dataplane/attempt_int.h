/* attempt_int.h — what the files of the attempt stage share (not for other stages: they
 * use attempt.h). A chat's life, one file per part:
 *
 *   attempt.c       the attempt lifecycle: build the upstream request, start the transfer,
 *                   curl callbacks, on_done (the one place a finished transfer is judged)
 *   failover.c      outcomes → breaker and route, the next pick, the final error
 *   wait.c          the request's total deadline, retry backoff, Retry-After waits
 *   continuation.c  a committed stream that died, continued on another deployment
 *   hedge.c         a second chat racing a late first token
 *
 * Every function here takes a chat that is alive; those that may free it say so. */
#ifndef LLMESH_ATTEMPT_INT_H
#define LLMESH_ATTEMPT_INT_H

#include "attempt.h"

/* attempt_start results besides 0 (started) and -1 (nothing was sent). */
#define ATTEMPT_UNEXPRESSIBLE 1 /* the adapter cannot express the request */
#define ATTEMPT_PARKED 2        /* waiting for an access token (gcp_auth.h) */
#define ATTEMPT_NO_TOKEN 3      /* no access token and none coming: auth */
#define ATTEMPT_NO_CONTINUE 4   /* the stream cannot be continued (midstream.h) */

/* The worker's breaker state of deployment dep; NULL when there is none (ENOMEM). */
static inline dep_state *chat_st(const chat *c, int dep) { return c->snap->deps[dep].st; }
static inline const brk_config *chat_brk(const chat *c) { return &c->snap->brk; }
static inline uint32_t snap_total_timeout_ms(const chat *c) { return c->snap->total_timeout_ms; }
static inline uint32_t snap_max_retry_after_ms(const chat *c) { return c->snap->max_retry_after_ms; }

/* ---- attempt.c: lifecycle ----------------------------------------------------------- */

/* Counts c in flight and opens its handles (timer, hedge timer) on the worker's loop;
 * its transfers finish in on_done. Every chat, right after it is allocated. */
void chat_open(chat *c);
/* Ends c: breaker outcome, token wait and transfer released, handles closed; the memory
 * goes with the last handle. c->req must be NULL or answered. */
void chat_free(chat *c);
void chat_set_dep_headers(chat *c); /* x-llmesh-deployment / -attempts for the answer */
/* OpenAI-shaped (or the egress dialect's) error to the client; c->req is NULL afterwards. */
void chat_error(chat *c, int status, const char *type, const char *code, const char *msg);
/* Stops the current transfer if any (never from inside a curl callback). */
void attempt_release(chat *c);
/* Starts an attempt on dep: 0, ATTEMPT_* or -1 (nothing was sent). */
int attempt_start(chat *c, int dep);
/* No access token for an attempt: counted as a failed attempt of its deployment. */
void attempt_token_failed(chat *c, enum metrics_class cls, const char *reason);
/* Adds the attempt's usage (decoded or scanned) to d's token counters. */
void attempt_account_usage(chat *c, const snap_dep *d);
/* Failure class and reason of a transfer curl ended with res. */
void attempt_curl_failure(CURLcode res, CURL *e, enum metrics_class *cls, const char **reason);

/* ---- failover.c: outcomes and the next pick ---------------------------------------- */

/* The attempt on dep reached curl: the breaker counts it in flight (once). */
void failover_brk_start(chat *c, int dep);
/* The current attempt's outcome to its breaker, exactly once per failover_brk_start. */
void failover_brk_end(chat *c, brk_outcome o);
/* Appends "NAME reason" to the failure list of the final error. */
void failover_note(chat *c, const snap_dep *d, const char *reason);
/* Counts a failed attempt, tells its breaker, and moves on (may free c). */
void failover_failed(chat *c, enum metrics_class cls, const char *reason);
/* Picks and starts the next attempt; from/reason: the failure that led here (NULL at first).
 * May free c. */
void failover_next(chat *c, const snap_dep *from, const char *reason);
/* Starts an attempt on next. 1: the chat went on; 0: pick another, *from and *reason say why. */
int failover_try(chat *c, int next, const snap_dep **from, const char **reason);
/* A refusal with its own fallbacks (context window, content policy): 1 = diverted, the chat
 * went on; 0 = the group has none. */
int failover_divert(chat *c, const snap_dep *d, enum route_divert_kind k);
/* The total deadline passed before the client had anything: 504 (c is freed). */
void failover_finish_deadline(chat *c);
int failover_refusals(const route_state *st); /* deployments the last pick skipped, all reasons */

/* ---- wait.c: deadlines and waits ---------------------------------------------------- */

uint64_t wait_left_ms(const chat *c); /* ms left of the total deadline; UINT64_MAX: none */
/* ms (0 = none) cut to what is left of the total deadline (at least 1 ms); *clipped = 1
 * when it was cut. */
uint32_t wait_clip_ms(const chat *c, uint32_t ms, int *clipped);
/* The pick re-tries next: its backoff first, then the attempt (c's timer). */
void wait_backoff(chat *c, int next);
/* Every refusal a short cooldown: wait for the soonest once, then pick again. 1 = waiting. */
int wait_cooldown(chat *c, int soonest_dep);

/* ---- continuation.c: mid-stream failover -------------------------------------------- */

/* The continuation request for d and a fresh splicer: 0, ATTEMPT_NO_CONTINUE or -1. */
int continuation_build(chat *c, const snap_dep *d);
/* The committed stream died (why: enum attempt_ms_why), transfer released: continued
 * elsewhere when it can be, else the client gets the failure (may free c). */
void continuation_died(chat *c, int why);
/* Ends the client's stream with the held failure (frees c). */
void continuation_give_up(chat *c);
/* A continuation's transfer ended before it wrote anything: a failed attempt. */
void continuation_pending_done(chat *c, CURL *e, CURLcode res, const snap_dep *d);

#endif
