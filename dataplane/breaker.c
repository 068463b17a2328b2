/* breaker.c — per-deployment health as one worker sees it (see breaker.h). */
#include "breaker.h"

#include <stdlib.h>
#include <string.h>

#define BRK_BUCKETS 256                /* hash buckets, like metrics.c */
#define BRK_CFG_LOCAL_COOLDOWN_MS 1000 /* defaults for zero config fields (docs/resilience.md) */
#define BRK_CFG_TRIP_FAILURES 3
#define BRK_CFG_COOLDOWN_MS 5000
#define BRK_CFG_BUDGET_PERCENT 20
#define BRK_CFG_BUDGET_MIN_PER_S 10
#define BRK_LOCAL_CAP_FACTOR 8         /* local open period ≤ cooldown_ms × 8 */
#define BRK_MAX_COOLDOWN_MS 900000u    /* a provider's reset hint is believed up to 15 min */
#define BRK_BUDGET_MIN_CAP 10.0        /* the bucket holds at least this many tokens */
#define BRK_PROBE_SHARE_DEFAULT 100    /* ‰ when a HALF_OPEN health entry carries none */
#define BRK_P95_STEP 0.05              /* relative step of the streaming p95 estimate */

static dep_state *table[BRK_BUCKETS];
static dep_state **list;               /* creation order, for apply_health and free_all */
static int nlist, caplist;

static uint32_t hash_name(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

/* The configuration with defaults for zero fields; cfg may be NULL. */
static brk_config cfg_eff(const brk_config *cfg) {
  brk_config c = cfg ? *cfg : (brk_config){0};
  if (!c.local_trip_failures) c.local_trip_failures = BRK_CFG_TRIP_FAILURES;
  if (!c.local_cooldown_ms) c.local_cooldown_ms = BRK_CFG_LOCAL_COOLDOWN_MS;
  if (!c.cooldown_ms) c.cooldown_ms = BRK_CFG_COOLDOWN_MS;
  if (!c.retry_budget_percent) c.retry_budget_percent = BRK_CFG_BUDGET_PERCENT;
  if (!c.retry_budget_min_per_s) c.retry_budget_min_per_s = BRK_CFG_BUDGET_MIN_PER_S;
  return c;
}

static void ctl_reset(dep_state *d) {
  d->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_CLOSED;
  d->ctl_weight_milli = 1000;
  d->ctl_probe_share_milli = 1000;
  d->ctl_open_until_ms = 0;
  d->ctl_cooldown_until_ms = 0;
  d->ctl_latency_ms = 0;
  d->ctl_rpm_used = 0;
  d->ctl_tpm_used = 0;
}

dep_state *breaker_get(const char *name) {
  uint32_t b = hash_name(name) & (BRK_BUCKETS - 1);
  for (dep_state *d = table[b]; d; d = d->hnext)
    if (strncmp(d->name, name, sizeof d->name - 1) == 0) return d;
  if (nlist == caplist) {
    int cap = caplist ? caplist * 2 : 16;
    dep_state **l = realloc(list, (size_t)cap * sizeof *l);
    if (!l) return NULL;
    list = l;
    caplist = cap;
  }
  dep_state *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  size_t n = strlen(name);
  if (n >= sizeof d->name) n = sizeof d->name - 1;
  memcpy(d->name, name, n);
  ctl_reset(d);
  d->budget_tokens = BRK_BUDGET_MIN_CAP; /* a new deployment may be retried at once */
  d->hnext = table[b];
  table[b] = d;
  list[nlist++] = d;
  return d;
}

void breaker_free_all(void) {
  for (int i = 0; i < nlist; i++) free(list[i]);
  free(list);
  list = NULL;
  nlist = caplist = 0;
  memset(table, 0, sizeof table);
}

static const char *const refusal_names[BR__COUNT] = {
    "ok", "local_open", "control_open", "drained", "cooling", "credential"};

const char *breaker_refusal_name(brk_refusal r) {
  return (unsigned)r < BR__COUNT ? refusal_names[r] : "unknown";
}

/* Records one blocking condition: the first (most severe) names the refusal, the wait is
 * the longest of them all (the deployment is usable only once every one has passed). */
static void block(brk_refusal *r, uint64_t *wait, brk_refusal why, uint64_t until_ms,
                  uint64_t now_ms) {
  if (*r == BR_OK) *r = why;
  uint64_t w = until_ms > now_ms ? until_ms - now_ms : 0;
  if (w > *wait) *wait = w;
}

brk_refusal breaker_admit(const dep_state *d, uint64_t now_ms, uint64_t *wait_ms) {
  brk_refusal r = BR_OK;
  uint64_t w = 0;
  if (d->ctl_state == LLMESH__CIRCUIT_STATE__CIRCUIT_DRAINED) block(&r, &w, BR_DRAINED, 0, now_ms);
  /* the control's OPEN is time-bounded so a silent control plane cannot keep it out forever */
  if (d->ctl_state == LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN && d->ctl_open_until_ms > now_ms)
    block(&r, &w, BR_CONTROL_OPEN, d->ctl_open_until_ms, now_ms);
  if (d->local == BRK_OPEN && d->open_until_ms > now_ms)
    block(&r, &w, BR_LOCAL_OPEN, d->open_until_ms, now_ms);
  else if (d->local != BRK_CLOSED && d->trial_in_flight)
    block(&r, &w, BR_LOCAL_OPEN, 0, now_ms); /* half-open: its one trial is running */
  if (d->cred_failed_until_ms > now_ms) block(&r, &w, BR_CREDENTIAL, d->cred_failed_until_ms, now_ms);
  if (d->cooldown_until_ms > now_ms) block(&r, &w, BR_COOLING, d->cooldown_until_ms, now_ms);
  if (d->ctl_cooldown_until_ms > now_ms) block(&r, &w, BR_COOLING, d->ctl_cooldown_until_ms, now_ms);
  if (wait_ms) *wait_ms = r == BR_OK ? 0 : w;
  return r;
}

void breaker_attempt_start(dep_state *d, uint64_t now_ms) {
  d->in_flight++;
  if (d->local == BRK_OPEN && d->open_until_ms <= now_ms) d->local = BRK_HALF_OPEN;
  if (d->local == BRK_HALF_OPEN) d->trial_in_flight = 1;
  /* a credential's retry after BRK_CRED_RETRY_MS is one trial: the others wait for it */
  if (d->cred_failed_until_ms && d->cred_failed_until_ms <= now_ms)
    d->cred_failed_until_ms = now_ms + BRK_CRED_RETRY_MS;
}

/* Opens the local circuit: the first open lasts local_cooldown_ms, each re-trip from
 * half-open doubles it up to cooldown_ms × 8. */
static void local_trip(dep_state *d, const brk_config *c, uint64_t now_ms) {
  uint64_t cap = (uint64_t)c->cooldown_ms * BRK_LOCAL_CAP_FACTOR;
  if (cap < c->local_cooldown_ms) cap = c->local_cooldown_ms;
  uint64_t len = d->open_ms ? (uint64_t)d->open_ms * 2 : c->local_cooldown_ms;
  if (len > cap) len = cap;
  d->open_ms = (uint32_t)len;
  d->local = BRK_OPEN;
  d->open_until_ms = now_ms + len;
  d->trial_in_flight = 0;
  d->consecutive_fails = 0;
  d->consecutive_server = 0;
  d->trips++;
}

/* A 429: out until the provider's reset, else a default that doubles per 429 in a row. */
static void rate_limited(dep_state *d, const brk_config *c, uint64_t now_ms, uint64_t retry_after_ms) {
  uint64_t wait = retry_after_ms;
  if (!wait) {
    uint32_t k = d->consecutive_429 < 20 ? d->consecutive_429 : 20;
    wait = (uint64_t)BRK_DEFAULT_COOLDOWN_MS << k;
    if (wait > c->cooldown_ms) wait = c->cooldown_ms > BRK_DEFAULT_COOLDOWN_MS ? c->cooldown_ms
                                                                               : BRK_DEFAULT_COOLDOWN_MS;
  }
  if (wait > BRK_MAX_COOLDOWN_MS) wait = BRK_MAX_COOLDOWN_MS;
  d->consecutive_429++;
  if (now_ms + wait > d->cooldown_until_ms) d->cooldown_until_ms = now_ms + wait;
  d->cooldowns++;
}

static void latency_sample(dep_state *d, double latency_ms) {
  if (latency_ms <= 0) return;
  d->lat_ewma_ms = d->lat_ewma_ms > 0 ? d->lat_ewma_ms + BRK_EWMA_ALPHA * (latency_ms - d->lat_ewma_ms)
                                      : latency_ms;
}

int breaker_attempt_end(dep_state *d, const brk_config *cfg, uint64_t now_ms, brk_outcome o,
                        double latency_ms, uint64_t retry_after_ms) {
  brk_config c = cfg_eff(cfg);
  int half = d->local == BRK_HALF_OPEN;
  if (d->in_flight) d->in_flight--;
  latency_sample(d, latency_ms);
  switch (o) {
  case BO_SUCCESS:
    d->consecutive_fails = 0;
    d->consecutive_server = 0;
    d->consecutive_429 = 0;
    d->cred_failed_until_ms = 0;
    if (half) { d->local = BRK_CLOSED; d->open_ms = 0; }
    break;
  case BO_CONNECT_FAIL:
  case BO_TIMEOUT:
    d->consecutive_fails++;
    if (half || (d->local == BRK_CLOSED && d->consecutive_fails >= c.local_trip_failures)) {
      local_trip(d, &c, now_ms);
      return 1;
    }
    break;
  case BO_SERVER: /* fails a trial; a closed circuit needs a longer run than connect errors */
    d->consecutive_server++;
    if (half || (d->local == BRK_CLOSED &&
                 d->consecutive_server >= (uint64_t)c.local_trip_failures + BRK_SERVER_TRIP_EXTRA)) {
      local_trip(d, &c, now_ms);
      return 1;
    }
    break;
  case BO_RATE_LIMITED: rate_limited(d, &c, now_ms, retry_after_ms); break;
  case BO_AUTH: d->cred_failed_until_ms = now_ms + BRK_CRED_RETRY_MS; break;
  case BO_NEUTRAL: break;
  }
  if (d->local == BRK_HALF_OPEN) d->trial_in_flight = 0; /* undecided: the next attempt is the trial */
  return 0;
}

/* Streaming p95 by stochastic approximation: a sample above the estimate raises it by
 * 95 % of a step, one below lowers it by 5 %, so it settles where 5 % of the samples lie
 * above. The step is relative to the estimate (no unit, no extra state). */
void breaker_p95_update(double *est, double sample) {
  if (sample <= 0) return;
  if (*est <= 0) { *est = sample; return; }
  double step = BRK_P95_STEP * *est;
  *est += sample > *est ? 0.95 * step : -0.05 * step;
}

void breaker_ttft(dep_state *d, double ttft_ms) { breaker_p95_update(&d->ttft_p95_ms, ttft_ms); }

static void health_one(dep_state *d, const Llmesh__DeploymentHealth *h, uint64_t now_ms) {
  d->ctl_state = (int)h->state;
  d->ctl_weight_milli = h->weight_milli ? h->weight_milli : 1000; /* 0: not computed */
  d->ctl_probe_share_milli = h->probe_share_milli ? h->probe_share_milli : BRK_PROBE_SHARE_DEFAULT;
  d->ctl_open_until_ms = h->open_remaining_ms ? now_ms + h->open_remaining_ms : 0;
  d->ctl_cooldown_until_ms = h->cooldown_remaining_ms ? now_ms + h->cooldown_remaining_ms : 0;
  d->ctl_latency_ms = h->latency_ewma_ms;
  d->ctl_rpm_used = h->rpm_used;
  d->ctl_tpm_used = h->tpm_used;
}

void breaker_apply_health(const Llmesh__Snapshot *pb, uint64_t now_ms) {
  for (int i = 0; i < nlist; i++) ctl_reset(list[i]);
  for (size_t i = 0; pb && i < pb->n_health; i++) {
    const Llmesh__DeploymentHealth *h = pb->health[i];
    if (!h->deployment || !*h->deployment) continue;
    dep_state *d = breaker_get(h->deployment);
    if (d) health_one(d, h, now_ms);
  }
}

static double budget_cap(const brk_config *c) {
  double cap = (double)c->retry_budget_min_per_s * 10.0;
  return cap > BRK_BUDGET_MIN_CAP ? cap : BRK_BUDGET_MIN_CAP;
}

/* Adds the free tokens earned since the last refill. The first call only starts the clock. */
static void budget_refill(dep_state *d, const brk_config *c, uint64_t now_ms) {
  double cap = budget_cap(c);
  if (d->budget_last_ms && now_ms > d->budget_last_ms)
    d->budget_tokens += (double)(now_ms - d->budget_last_ms) * c->retry_budget_min_per_s / 1000.0;
  if (!d->budget_last_ms || now_ms > d->budget_last_ms) d->budget_last_ms = now_ms ? now_ms : 1;
  if (d->budget_tokens > cap) d->budget_tokens = cap;
}

void breaker_budget_deposit(dep_state *d, const brk_config *cfg, uint64_t now_ms) {
  brk_config c = cfg_eff(cfg);
  budget_refill(d, &c, now_ms);
  d->budget_tokens += c.retry_budget_percent / 100.0;
  if (d->budget_tokens > budget_cap(&c)) d->budget_tokens = budget_cap(&c);
}

int breaker_budget_take(dep_state *d, const brk_config *cfg, uint64_t now_ms) {
  brk_config c = cfg_eff(cfg);
  budget_refill(d, &c, now_ms);
  if (d->budget_tokens < 1.0) {
    d->budget_exhausted++;
    return 0;
  }
  d->budget_tokens -= 1.0;
  d->retries++;
  return 1;
}
