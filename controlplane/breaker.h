/* breaker.h — the control plane's circuit breaker per deployment (docs/resilience.md).
 *
 * Sees every worker's telemetry (as per-tick deltas) and the control plane's own
 * probes, and decides each deployment's circuit state and effective weight:
 *
 *   CLOSED ──(≥ 50 % failures over 30 s with ≥ min volume, or > allowed_fails failures
 *             in 60 s with ≥ min volume, or 3 probe failures that passive traffic
 *             does not contradict)──▶ OPEN
 *   OPEN ──(open period over: cooldown_ms × 2^level, ≤ 5 min)──▶ HALF_OPEN
 *   HALF_OPEN ──(3 successes in a row, passive or probe)──▶ CLOSED (slow start)
 *   HALF_OPEN ──(any failure)──▶ OPEN (level + 1)
 *
 * The health window is cleared at each transition (hysteresis: a just-closed circuit
 * re-opens only on failures seen since it closed). A manual drain overlays any state.
 * Pure: no I/O, no clock, no logging; the caller passes now_ms (monotonic) and logs
 * what cbrk_tick reports. */
#ifndef LLMESH_CBRK_H
#define LLMESH_CBRK_H

#include <stddef.h>
#include <stdint.h>

#include "histogram.h"

#define CBRK_WINDOW_S 30              /* error-rate window, 1 s buckets */
#define CBRK_RING_S 60                /* allowed_fails and rpm/tpm window, 1 s buckets */
#define CBRK_MIN_VOLUME 10            /* requests in a window before it may trip */
#define CBRK_MAX_OPEN_MS 300000u      /* cap of the doubling open period, 5 min */
#define CBRK_PROBE_SHARE_MILLI 100u   /* HALF_OPEN: 10 % of the would-be traffic */
#define CBRK_CLOSE_SUCCESSES 3        /* consecutive successes that close a half-open circuit */
#define CBRK_SLOW_START_MS 10000u     /* ramp 10 % → 100 % after closing */
#define CBRK_PROBE_TRIP 3             /* consecutive probe failures that may open a closed circuit */
#define CBRK_CALM_MS 60000u           /* closed this long without a trip: open period back to base */
#define CBRK_MIN_WEIGHT_MILLI 10u     /* floor of a closed circuit's weight (1 %) */
#define CBRK_LAT_ALPHA 0.1            /* latency EWMA: weight of each sample of a tick's median */
#define CBRK_LAT_HALF_LIFE_MS 2000u   /* ... and the old estimate halves its weight this often */
#define CBRK_LAT_STALE_MS 10000u      /* no latency sample this long: the factor relaxes ... */
#define CBRK_LAT_RELAX_MS 10000u      /* ... linearly to neutral (1) over this long */
#define CBRK_REASON_MAX 160           /* bytes of a reason string */
#define CBRK_NAME_MAX 128             /* bytes of a deployment or group name */

typedef enum cbrk_state {
  CBRK_CLOSED = 0,    /* same numbering as LLMESH__CIRCUIT_STATE__* */
  CBRK_OPEN = 1,
  CBRK_HALF_OPEN = 2,
  CBRK_DRAINED = 3,   /* only ever reported (cbrk_reported_state); never b->state */
} cbrk_state;

/* What every worker reported for one deployment since the previous tick. */
typedef struct cbrk_delta {
  uint64_t requests;          /* attempts sent upstream */
  uint64_t success;           /* answered completely */
  uint64_t client_error;      /* the client's 4xx: ignored */
  uint64_t rate_limited;      /* 429/529: cooldown and headroom, not a failure */
  uint64_t server_error;      /* failure */
  uint64_t timeout;           /* failure */
  uint64_t connect_error;     /* failure */
  uint64_t other_error;       /* failure (garbage, cut) */
  uint64_t cancelled;         /* ignored */
  uint64_t auth_error;        /* 401/403: credential failed, not a health failure */
  uint64_t prompt_tokens;     /* for tpm_used */
  uint64_t completion_tokens; /* for tpm_used */
  uint64_t latency[HIST_BUCKETS]; /* new samples per histogram.h bucket (time to headers) */
  uint32_t cooldown_remaining_ms; /* largest rate-limit cooldown a worker reported, ms (gauge) */
} cbrk_delta;

/* One second of the ring. */
typedef struct cbrk_bucket {
  uint64_t sec;        /* now_ms / 1000 this bucket holds; other values = empty */
  uint32_t ok;         /* successes (health) */
  uint32_t fail;       /* failures (health) */
  uint32_t limited;    /* 429s (headroom) */
  uint32_t requests;   /* every attempt (rpm_used; not cleared at transitions) */
  uint64_t tokens;     /* prompt + completion tokens (tpm_used; not cleared) */
} cbrk_bucket;

/* Tunables (cbrk_params_default, then the router's allowed_fails / cooldown_ms). */
typedef struct cbrk_params {
  uint32_t min_volume;        /* requests before a window may trip */
  uint32_t allowed_fails;     /* failures per 60 s tolerated (with the minimum volume) */
  uint32_t cooldown_ms;       /* first open period, ms */
  uint32_t max_open_ms;       /* cap of the doubled open period, ms */
  uint32_t slow_start_ms;     /* ramp duration after closing, ms */
  uint32_t probe_share_milli; /* HALF_OPEN traffic share, ‰ */
} cbrk_params;

typedef struct cbrk {
  char name[CBRK_NAME_MAX];   /* deployment name */
  char group[CBRK_NAME_MAX];  /* model group (latency is compared within it) */
  uint32_t rpm, tpm;          /* configured limits, 0 = none (headroom) */
  cbrk_state state;           /* CLOSED, OPEN or HALF_OPEN */
  int drained;                /* llmesh-ctl drain: reported as DRAINED, weight 0 */
  char reason[CBRK_REASON_MAX]; /* why the reported state last changed */
  uint64_t changed_ms;        /* now_ms of that change (0 = never changed) */
  uint32_t level;             /* re-trips in a row: open period = cooldown × 2^level */
  uint32_t open_ms;           /* length of the current/last open period, ms */
  uint64_t open_until_ms;     /* OPEN: when it turns HALF_OPEN */
  uint64_t closed_ms;         /* when it last closed (slow start), 0 = never opened */
  uint32_t half_ok;           /* consecutive successes since it opened (closing needs 3) */
  uint32_t half_ok_probe;     /* ... of which probes (for the reason string) */
  uint32_t probe_fails;       /* consecutive failed probes */
  int half_probe_due;         /* turned HALF_OPEN: the caller should probe now */
  int credential_failed;      /* 401/403 seen and no success since */
  uint64_t cooldown_until_ms; /* rate-limit cooldown end, 0 = none */
  double latency_ewma_ms;     /* time to headers, every worker, 0 = no sample yet */
  uint64_t latency_at_ms;     /* now_ms of the last tick with latency samples, 0 = never */
  double latency_factor;      /* last computed latency factor (0..1] */
  uint32_t weight_milli;      /* effective weight factor, ‰ */
  cbrk_bucket ring[CBRK_RING_S]; /* indexed by sec % CBRK_RING_S */
} cbrk;

/* Window sums (cbrk_window). */
typedef struct cbrk_sums {
  uint64_t ok30, fail30, limited30; /* last CBRK_WINDOW_S seconds */
  uint64_t ok60, fail60;            /* last CBRK_RING_S seconds */
  uint64_t requests60, tokens60;    /* rpm_used, tpm_used */
} cbrk_sums;

/* Events cbrk_tick / cbrk_probe / cbrk_drain report (bit set). */
enum {
  CBRK_EV_STATE = 1,        /* reported state changed (b->reason says why) */
  CBRK_EV_CRED_FAILED = 2,  /* credential_failed turned on */
  CBRK_EV_CRED_OK = 4,      /* credential_failed turned off */
  CBRK_EV_WEIGHT = 8,       /* weight or cooldown moved enough to republish */
};

/* How a probe ended. */
typedef enum cbrk_probe_result {
  CBRK_PROBE_OK = 0,        /* 2xx, or 429 (alive, rate limited) */
  CBRK_PROBE_FAIL,          /* timeout, connect error, 5xx, garbage */
  CBRK_PROBE_AUTH,          /* 401/403: credential failed */
  CBRK_PROBE_NEUTRAL,       /* other 4xx: says nothing about health */
} cbrk_probe_result;

void cbrk_params_default(cbrk_params *p, uint32_t allowed_fails, uint32_t cooldown_ms);
void cbrk_init(cbrk *b, const char *name, const char *group, uint32_t rpm, uint32_t tpm);

/* Folds one tick's delta in (d may be NULL) and advances the state machine. Returns
 * CBRK_EV_* bits. Call once per second or so, then cbrk_weights on the whole set. */
int cbrk_tick(cbrk *b, const cbrk_params *p, uint64_t now_ms, const cbrk_delta *d);
/* A probe finished. Returns CBRK_EV_* bits. */
int cbrk_probe(cbrk *b, const cbrk_params *p, uint64_t now_ms, cbrk_probe_result r);
/* Drain (on = 1, reason "drained by ACTOR: TEXT") or undrain (on = 0). Returns CBRK_EV_*. */
int cbrk_drain(cbrk *b, uint64_t now_ms, int on, const char *reason);
/* Recomputes every weight_milli (the latency factor compares a deployment with its
 * group's median; it relaxes to neutral when the deployment has had no latency sample for
 * CBRK_LAT_STALE_MS, so a deployment starved of traffic is measured again). Sets
 * CBRK_EV_WEIGHT in ev[i] (n entries, may be NULL) when a weight moved by more than 10 %
 * of last_published[i] (may be NULL). */
void cbrk_weights(cbrk *set, size_t n, const cbrk_params *p, uint64_t now_ms,
                  const uint32_t *last_published, int *ev);

cbrk_state cbrk_reported_state(const cbrk *b);         /* DRAINED overlays */
const char *cbrk_state_name(cbrk_state s);             /* "closed", "open", ... */
void cbrk_window(const cbrk *b, uint64_t now_ms, cbrk_sums *s);
double cbrk_ramp(const cbrk *b, const cbrk_params *p, uint64_t now_ms); /* 0.1 .. 1 */
uint32_t cbrk_open_remaining_ms(const cbrk *b, uint64_t now_ms);
uint32_t cbrk_cooldown_remaining_ms(const cbrk *b, uint64_t now_ms);

#endif
