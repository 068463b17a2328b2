/* breaker.h — what one worker knows about each deployment's health, right now.
 *
 * One dep_state per deployment name, created on first use and kept across snapshot
 * swaps (snap_dep.st points at it; like metrics_dep). It combines:
 *   - the worker-local circuit: `local_trip_failures` consecutive connect errors or
 *     timeouts, or `local_trip_failures` + BRK_SERVER_TRIP_EXTRA consecutive 5xx-class
 *     failures (BO_SERVER: a provider answering 503 to everything is as dead as a refused
 *     port; 30 % random 500s almost never give 5 in a row), open it within milliseconds
 *     (no waiting for the control plane); open for
 *     `local_cooldown_ms`, doubling on each re-trip up to cooldown_ms × 8; then half-open:
 *     one trial attempt at a time; a trial success closes it, a failure re-opens it;
 *   - the rate-limit cooldown: a 429 / overloaded answer keeps the deployment out until
 *     the provider's reset time (Retry-After & co., ratelimit.h), else for a short
 *     default that doubles per consecutive 429 (BRK_DEFAULT_COOLDOWN_MS .. cooldown_ms);
 *     not a health failure (never opens a circuit);
 *   - a refused credential (401/403): out for BRK_CRED_RETRY_MS, then one trial;
 *   - the control plane's view (DeploymentHealth from the snapshot, breaker_apply_health);
 *   - local load and latency: in-flight attempts, EWMA of time to response headers and a
 *     p95 estimate of time to first token (least-busy, latency routing, hedging);
 *   - the retry budget: a token bucket per deployment; every first attempt deposits
 *     retry_budget_percent/100 of a token, every retry, failover or hedge onto the
 *     deployment takes one; `retry_budget_min_per_s` tokens/s are always granted.
 * Everything runs on the loop thread: no atomics, no locks. Times are loop ms. */
#ifndef LLMESH_BREAKER_H
#define LLMESH_BREAKER_H

#include <stdint.h>

#include "llmesh.pb-c.h"

#define BRK_DEFAULT_COOLDOWN_MS 1000u /* 429 without a reset time: first cooldown */
#define BRK_CRED_RETRY_MS 60000u      /* a refused credential is retried after this */
#define BRK_EWMA_ALPHA 0.2            /* weight of a new latency sample */
#define BRK_SERVER_TRIP_EXTRA 2u      /* BO_SERVER in a row that open: local_trip_failures + this */

typedef enum brk_state {
  BRK_CLOSED = 0,    /* healthy */
  BRK_OPEN,          /* tripped: no traffic until open_until_ms */
  BRK_HALF_OPEN,     /* one trial at a time */
} brk_state;

/* How an attempt ended, as far as health is concerned. */
typedef enum brk_outcome {
  BO_SUCCESS = 0,    /* answered (2xx, or a stream that ended well) */
  BO_CONNECT_FAIL,   /* refused, DNS, TLS, connect timeout: trips the local breaker */
  BO_TIMEOUT,        /* no answer within the deadline: trips the local breaker */
  BO_SERVER,         /* 5xx, garbage, cut: a health failure; trips only after a longer run */
  BO_RATE_LIMITED,   /* 429 / 529 overloaded: cooldown, not a health failure */
  BO_AUTH,           /* 401/403: credential refused */
  BO_NEUTRAL,        /* client's fault (4xx), cancelled: says nothing about health */
} brk_outcome;

/* Why a deployment may not take an attempt now (breaker_admit). */
typedef enum brk_refusal {
  BR_OK = 0,
  BR_LOCAL_OPEN,     /* worker-local circuit open, or half-open with its trial running */
  BR_CONTROL_OPEN,   /* the control plane's circuit is open */
  BR_DRAINED,        /* llmesh-ctl drain */
  BR_COOLING,        /* rate-limit cooldown */
  BR_CREDENTIAL,     /* credential refused recently */
  BR__COUNT
} brk_refusal;

typedef struct dep_state {
  char name[128];                 /* deployment name */
  /* worker-local circuit */
  brk_state local;                /* BRK_* */
  uint32_t consecutive_fails;     /* connect errors / timeouts in a row */
  uint32_t consecutive_server;    /* BO_SERVER outcomes in a row (reset by a success or a trip) */
  uint32_t open_ms;               /* length of the last open period, ms (doubles) */
  uint64_t open_until_ms;         /* loop ms when OPEN turns HALF_OPEN */
  int trial_in_flight;            /* HALF_OPEN: the trial attempt is running */
  uint64_t trips;                 /* times the local circuit opened */
  /* rate limit */
  uint64_t cooldown_until_ms;     /* loop ms; 0 = none */
  uint32_t consecutive_429;       /* for the default cooldown's doubling */
  uint64_t cooldowns;             /* cooldowns started */
  /* credential */
  uint64_t cred_failed_until_ms;  /* loop ms; 0 = fine */
  /* the control plane's view (from the newest snapshot's DeploymentHealth) */
  int ctl_state;                  /* LLMESH__CIRCUIT_STATE__* (CLOSED when unknown) */
  uint32_t ctl_weight_milli;      /* factor on the configured weight, 1000 = full */
  uint32_t ctl_probe_share_milli; /* HALF_OPEN share, ‰ */
  uint64_t ctl_open_until_ms;     /* loop ms */
  uint64_t ctl_cooldown_until_ms; /* loop ms */
  uint32_t ctl_latency_ms;        /* cluster-wide latency EWMA, ms (0 = unknown) */
  uint32_t ctl_rpm_used;          /* cluster-wide requests in the last minute */
  uint32_t ctl_tpm_used;          /* cluster-wide tokens in the last minute */
  /* load and latency, this worker */
  uint32_t in_flight;             /* attempts running now */
  double lat_ewma_ms;             /* time to response headers, EWMA; 0 = no sample yet */
  double ttft_p95_ms;             /* running p95 estimate of time to first token, ms; 0 = none */
  /* retry budget */
  double budget_tokens;           /* available retries (capped) */
  uint64_t budget_last_ms;        /* last refill, loop ms */
  uint64_t retries;               /* retries/failovers/hedges granted */
  uint64_t budget_exhausted;      /* retries refused */
  struct dep_state *hnext;        /* hash chain */
} dep_state;

/* Tunables from the snapshot's RouterSettings (0 fields take the defaults). */
typedef struct brk_config {
  uint32_t local_trip_failures;   /* consecutive connect errors/timeouts that open (5xx: + 2) */
  uint32_t local_cooldown_ms;     /* first local open period */
  uint32_t cooldown_ms;           /* cap base: local open ≤ cooldown_ms × 8; 429 default ≤ cooldown_ms */
  uint32_t retry_budget_percent;  /* deposit per first attempt, % of a token */
  uint32_t retry_budget_min_per_s;/* free tokens per second */
} brk_config;

/* State for a deployment, created on first use; NULL on ENOMEM. Stable pointer. */
dep_state *breaker_get(const char *name);
void breaker_free_all(void);

/* May d take an attempt at now_ms? BR_OK, or why not; *wait_ms (may be NULL) is how long
 * until it could (0 when unknown). HALF_OPEN control circuits are admitted here: the
 * router (route.c) then lets one take part in a pick with probability probe_share ‰
 * (a lost draw is counted as BR_CONTROL_OPEN). */
brk_refusal breaker_admit(const dep_state *d, uint64_t now_ms, uint64_t *wait_ms);
const char *breaker_refusal_name(brk_refusal r);       /* "local_open", ... */

/* An attempt starts on d (in_flight++, claims the half-open trial). */
void breaker_attempt_start(dep_state *d, uint64_t now_ms);
/* It ended. latency_ms: time to response headers (0 = none); retry_after_ms: the
 * provider's reset hint for BO_RATE_LIMITED (0 = none). Returns 1 when this call opened
 * the local circuit (the caller logs and counts it), else 0. */
int breaker_attempt_end(dep_state *d, const brk_config *cfg, uint64_t now_ms, brk_outcome o,
                        double latency_ms, uint64_t retry_after_ms);
/* One sample into a running p95 estimate *est (ms; 0 = none yet): the stochastic
 * approximation ttft_p95_ms uses, shared with the hedge's time-to-headers estimate. */
void breaker_p95_update(double *est, double sample);
/* Time to first token of a successful stream (feeds ttft_p95_ms). */
void breaker_ttft(dep_state *d, double ttft_ms);

/* Applies the control plane's view: every DeploymentHealth of pb to the dep_state of its
 * name; deployments without an entry go back to CLOSED / full weight. now_ms: loop time
 * at which the snapshot's relative durations start. */
void breaker_apply_health(const Llmesh__Snapshot *pb, uint64_t now_ms);

/* Retry budget: a first attempt deposits; a retry/failover/hedge onto d takes a token.
 * breaker_budget_take returns 1 when granted, 0 when the budget is exhausted. */
void breaker_budget_deposit(dep_state *d, const brk_config *cfg, uint64_t now_ms);
int breaker_budget_take(dep_state *d, const brk_config *cfg, uint64_t now_ms);

#endif
