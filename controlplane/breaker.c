/* breaker.c — control-plane circuit breaker and effective weight (see breaker.h). */
#include "breaker.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void cbrk_params_default(cbrk_params *p, uint32_t allowed_fails, uint32_t cooldown_ms) {
  p->min_volume = CBRK_MIN_VOLUME;
  p->allowed_fails = allowed_fails;
  p->cooldown_ms = cooldown_ms ? cooldown_ms : 5000u;
  p->max_open_ms = CBRK_MAX_OPEN_MS;
  p->slow_start_ms = CBRK_SLOW_START_MS;
  p->probe_share_milli = CBRK_PROBE_SHARE_MILLI;
}

void cbrk_init(cbrk *b, const char *name, const char *group, uint32_t rpm, uint32_t tpm) {
  memset(b, 0, sizeof *b);
  snprintf(b->name, sizeof b->name, "%s", name);
  snprintf(b->group, sizeof b->group, "%s", group);
  b->rpm = rpm;
  b->tpm = tpm;
  b->latency_factor = 1;
  b->weight_milli = 1000;
  for (size_t i = 0; i < CBRK_RING_S; i++) b->ring[i].sec = UINT64_MAX;
}

const char *cbrk_state_name(cbrk_state s) {
  switch (s) {
    case CBRK_CLOSED: return "closed";
    case CBRK_OPEN: return "open";
    case CBRK_HALF_OPEN: return "half_open";
    case CBRK_DRAINED: return "drained";
  }
  return "unknown";
}

cbrk_state cbrk_reported_state(const cbrk *b) { return b->drained ? CBRK_DRAINED : b->state; }

/* ------------------------------------------------------------------ window */

static cbrk_bucket *cbrk_bucket_at(cbrk *b, uint64_t now_ms) {
  uint64_t sec = now_ms / 1000;
  cbrk_bucket *k = &b->ring[sec % CBRK_RING_S];
  if (k->sec != sec) {
    memset(k, 0, sizeof *k);
    k->sec = sec;
  }
  return k;
}

void cbrk_window(const cbrk *b, uint64_t now_ms, cbrk_sums *s) {
  uint64_t sec = now_ms / 1000;
  memset(s, 0, sizeof *s);
  for (size_t i = 0; i < CBRK_RING_S; i++) {
    const cbrk_bucket *k = &b->ring[i];
    if (k->sec == UINT64_MAX || k->sec > sec || sec - k->sec >= CBRK_RING_S) continue;
    s->ok60 += k->ok;
    s->fail60 += k->fail;
    s->requests60 += k->requests;
    s->tokens60 += k->tokens;
    if (sec - k->sec >= CBRK_WINDOW_S) continue;
    s->ok30 += k->ok;
    s->fail30 += k->fail;
    s->limited30 += k->limited;
  }
}

/* Hysteresis: every transition starts the health judgement afresh. Usage (rpm/tpm)
 * is not health and survives. */
static void cbrk_clear_health(cbrk *b) {
  for (size_t i = 0; i < CBRK_RING_S; i++) b->ring[i].ok = b->ring[i].fail = b->ring[i].limited = 0;
}

static uint64_t cbrk_failures(const cbrk_delta *d) {
  return d->server_error + d->timeout + d->connect_error + d->other_error;
}

static uint32_t clamp32(uint64_t v) { return v > UINT32_MAX ? UINT32_MAX : (uint32_t)v; }

/* ------------------------------------------------------------------ transitions */

/* While drained the reported state (and so its reason) is the drain's. */
static int cbrk_set_reason(cbrk *b, uint64_t now_ms, const char *reason) {
  if (b->drained) return CBRK_EV_STATE;
  snprintf(b->reason, sizeof b->reason, "%s", reason);
  b->changed_ms = now_ms;
  return CBRK_EV_STATE;
}

static int cbrk_open(cbrk *b, const cbrk_params *p, uint64_t now_ms, const char *reason) {
  int retrip = b->state == CBRK_HALF_OPEN || b->state == CBRK_OPEN ||
               (b->closed_ms && now_ms - b->closed_ms < CBRK_CALM_MS);
  b->level = retrip ? b->level + 1 : 0;
  uint64_t ms = p->cooldown_ms;
  for (uint32_t i = 0; i < b->level && ms < p->max_open_ms; i++) ms *= 2;
  b->open_ms = (uint32_t)(ms < p->max_open_ms ? ms : p->max_open_ms);
  b->state = CBRK_OPEN;
  b->open_until_ms = now_ms + b->open_ms;
  b->half_ok = b->half_ok_probe = 0;
  b->probe_fails = 0;
  b->half_probe_due = 0;
  cbrk_clear_health(b);
  return cbrk_set_reason(b, now_ms, reason);
}

static int cbrk_half_open(cbrk *b, uint64_t now_ms) {
  char why[CBRK_REASON_MAX];
  snprintf(why, sizeof why, "open period of %u ms over", b->open_ms);
  b->state = CBRK_HALF_OPEN;
  b->half_probe_due = 1;
  cbrk_clear_health(b);
  return cbrk_set_reason(b, now_ms, why);
}

static int cbrk_close(cbrk *b, uint64_t now_ms) {
  char why[CBRK_REASON_MAX];
  if (b->half_ok_probe >= b->half_ok)
    snprintf(why, sizeof why, "%u probe successes", b->half_ok);
  else
    snprintf(why, sizeof why, "%u successes in half-open (%u passive, %u probe)", b->half_ok,
             b->half_ok - b->half_ok_probe, b->half_ok_probe);
  b->state = CBRK_CLOSED;
  b->closed_ms = now_ms ? now_ms : 1;
  b->half_ok = b->half_ok_probe = 0;
  b->probe_fails = 0;
  b->half_probe_due = 0;
  cbrk_clear_health(b);
  return cbrk_set_reason(b, now_ms, why);
}

/* ------------------------------------------------------------------ tick */

/* The tick's median folds in with the weight of its sample count, and the old estimate
 * also loses weight with its age: a per-tick EWMA would need ~15 s to forget a 1.5 s
 * spike however many fast answers arrive after it, and a deployment the spike pushed
 * down to a few % of the traffic would stay there. Few samples still move it little. */
static void cbrk_latency(cbrk *b, uint64_t now_ms, const cbrk_delta *d) {
  uint64_t n = 0;
  for (int i = 0; i < HIST_BUCKETS; i++) n += d->latency[i];
  if (!n) return;
  double sample = hist_quantile(d->latency, HIST_BUCKETS, 0.5);
  double age = b->latency_at_ms && now_ms > b->latency_at_ms ? (double)(now_ms - b->latency_at_ms) : 0;
  double keep = pow(1 - CBRK_LAT_ALPHA, (double)n) * exp2(-age / CBRK_LAT_HALF_LIFE_MS);
  b->latency_ewma_ms = b->latency_ewma_ms > 0 ? keep * b->latency_ewma_ms + (1 - keep) * sample : sample;
  b->latency_at_ms = now_ms ? now_ms : 1;
}

/* Rate limits are a cooldown, not a failure: until the largest reset a worker saw,
 * else 1 s. Returns CBRK_EV_WEIGHT when a cooldown starts. */
static int cbrk_cooldown(cbrk *b, uint64_t now_ms, const cbrk_delta *d) {
  uint64_t until = 0;
  if (d->cooldown_remaining_ms) until = now_ms + d->cooldown_remaining_ms;
  else if (d->rate_limited) until = now_ms + 1000;
  if (until <= b->cooldown_until_ms) return 0;
  int started = b->cooldown_until_ms <= now_ms;
  b->cooldown_until_ms = until;
  return started ? CBRK_EV_WEIGHT : 0;
}

static int cbrk_credential(cbrk *b, const cbrk_delta *d) {
  if (d->auth_error && !b->credential_failed) {
    b->credential_failed = 1;
    return CBRK_EV_CRED_FAILED;
  }
  if (!d->auth_error && d->success && b->credential_failed) {
    b->credential_failed = 0;
    return CBRK_EV_CRED_OK;
  }
  return 0;
}

static int cbrk_fold(cbrk *b, uint64_t now_ms, const cbrk_delta *d) {
  cbrk_bucket *k = cbrk_bucket_at(b, now_ms);
  k->ok += clamp32(d->success);
  k->fail += clamp32(cbrk_failures(d));
  k->limited += clamp32(d->rate_limited);
  k->requests += clamp32(d->requests);
  k->tokens += d->prompt_tokens + d->completion_tokens;
  cbrk_latency(b, now_ms, d);
  return cbrk_cooldown(b, now_ms, d) | cbrk_credential(b, d);
}

static int cbrk_check_trip(cbrk *b, const cbrk_params *p, uint64_t now_ms) {
  cbrk_sums s;
  char why[CBRK_REASON_MAX];
  cbrk_window(b, now_ms, &s);
  uint64_t vol30 = s.ok30 + s.fail30, vol60 = s.ok60 + s.fail60;
  if (vol30 >= p->min_volume && vol30 && s.fail30 * 2 >= vol30) {
    snprintf(why, sizeof why, "error_rate %.2f over %llu requests", (double)s.fail30 / (double)vol30,
             (unsigned long long)vol30);
    return cbrk_open(b, p, now_ms, why);
  }
  if (vol60 >= p->min_volume && s.fail60 > p->allowed_fails) {
    snprintf(why, sizeof why, "%llu failures in 60 s over %llu requests (allowed_fails %u)",
             (unsigned long long)s.fail60, (unsigned long long)vol60, p->allowed_fails);
    return cbrk_open(b, p, now_ms, why);
  }
  return 0;
}

static int cbrk_half_open_passive(cbrk *b, const cbrk_params *p, uint64_t now_ms, const cbrk_delta *d) {
  char why[CBRK_REASON_MAX];
  uint64_t fails = cbrk_failures(d);
  if (fails) {
    snprintf(why, sizeof why, "failure in half-open: %llu of %llu requests failed",
             (unsigned long long)fails, (unsigned long long)(fails + d->success));
    return cbrk_open(b, p, now_ms, why);
  }
  b->half_ok += clamp32(d->success);
  return b->half_ok >= CBRK_CLOSE_SUCCESSES ? cbrk_close(b, now_ms) : 0;
}

int cbrk_tick(cbrk *b, const cbrk_params *p, uint64_t now_ms, const cbrk_delta *d) {
  cbrk_state was = b->state;
  int ev = d ? cbrk_fold(b, now_ms, d) : 0;
  switch (was) {
    case CBRK_CLOSED: ev |= cbrk_check_trip(b, p, now_ms); break;
    case CBRK_HALF_OPEN:
      if (d) ev |= cbrk_half_open_passive(b, p, now_ms, d);
      break;
    case CBRK_OPEN: /* passive results now are stragglers from before the trip */
      if (now_ms >= b->open_until_ms) ev |= cbrk_half_open(b, now_ms);
      break;
    case CBRK_DRAINED: break;
  }
  if (b->drained) ev &= ~CBRK_EV_STATE; /* the reported state stays DRAINED */
  return ev;
}

/* ------------------------------------------------------------------ probes */

/* CLOSED: a failing probe alone never opens; 3 in a row open only when passive traffic
 * is absent or itself failing ≥ 25 %. */
static int cbrk_probe_closed_fail(cbrk *b, const cbrk_params *p, uint64_t now_ms) {
  cbrk_sums s;
  char why[CBRK_REASON_MAX];
  if (b->probe_fails < CBRK_PROBE_TRIP) return 0;
  cbrk_window(b, now_ms, &s);
  uint64_t vol = s.ok30 + s.fail30;
  if (vol == 0) {
    snprintf(why, sizeof why, "%u probe failures, no passive traffic", b->probe_fails);
    return cbrk_open(b, p, now_ms, why);
  }
  if (s.fail30 * 4 >= vol) {
    snprintf(why, sizeof why, "%u probe failures, passive error_rate %.2f over %llu requests",
             b->probe_fails, (double)s.fail30 / (double)vol, (unsigned long long)vol);
    return cbrk_open(b, p, now_ms, why);
  }
  return 0;
}

static int cbrk_probe_ok(cbrk *b, uint64_t now_ms) {
  int ev = 0;
  b->probe_fails = 0;
  if (b->credential_failed) {
    b->credential_failed = 0;
    ev |= CBRK_EV_CRED_OK;
  }
  if (b->state == CBRK_CLOSED) return ev;
  b->half_ok++;
  b->half_ok_probe++;
  if (b->state == CBRK_HALF_OPEN && b->half_ok >= CBRK_CLOSE_SUCCESSES) ev |= cbrk_close(b, now_ms);
  return ev;
}

int cbrk_probe(cbrk *b, const cbrk_params *p, uint64_t now_ms, cbrk_probe_result r) {
  int ev = 0;
  switch (r) {
    case CBRK_PROBE_OK: ev = cbrk_probe_ok(b, now_ms); break;
    case CBRK_PROBE_FAIL:
      b->probe_fails++;
      if (b->state == CBRK_CLOSED) ev = cbrk_probe_closed_fail(b, p, now_ms);
      else if (b->state == CBRK_HALF_OPEN) ev = cbrk_open(b, p, now_ms, "probe failed in half-open");
      else b->half_ok = b->half_ok_probe = 0; /* OPEN: already out; start counting again */
      break;
    case CBRK_PROBE_AUTH:
      if (!b->credential_failed) ev = CBRK_EV_CRED_FAILED;
      b->credential_failed = 1;
      break;
    case CBRK_PROBE_NEUTRAL: break;
  }
  if (b->drained) ev &= ~CBRK_EV_STATE;
  return ev;
}

int cbrk_drain(cbrk *b, uint64_t now_ms, int on, const char *reason) {
  b->drained = 0;
  cbrk_set_reason(b, now_ms, reason);
  b->drained = on ? 1 : 0;
  return CBRK_EV_STATE;
}

/* ------------------------------------------------------------------ weights */

double cbrk_ramp(const cbrk *b, const cbrk_params *p, uint64_t now_ms) {
  if (b->state != CBRK_CLOSED || !b->closed_ms || !p->slow_start_ms) return 1;
  uint64_t t = now_ms > b->closed_ms ? now_ms - b->closed_ms : 0;
  if (t >= p->slow_start_ms) return 1;
  return 0.1 + 0.9 * (double)t / (double)p->slow_start_ms;
}

uint32_t cbrk_open_remaining_ms(const cbrk *b, uint64_t now_ms) {
  if (b->state != CBRK_OPEN || b->open_until_ms <= now_ms) return 0;
  return clamp32(b->open_until_ms - now_ms);
}

uint32_t cbrk_cooldown_remaining_ms(const cbrk *b, uint64_t now_ms) {
  return b->cooldown_until_ms > now_ms ? clamp32(b->cooldown_until_ms - now_ms) : 0;
}

/* 1 below 80 % of rpm/tpm, linear to 0.05 at 100 %; then × (1 − 429 share). */
static double cbrk_headroom(const cbrk *b, const cbrk_sums *s) {
  double u = 0, h = 1;
  if (b->rpm) u = fmax(u, (double)s->requests60 / b->rpm);
  if (b->tpm) u = fmax(u, (double)s->tokens60 / b->tpm);
  if (u >= 1) h = 0.05;
  else if (u > 0.8) h = 1 - (u - 0.8) / 0.2 * 0.95;
  uint64_t all = s->ok30 + s->fail30 + s->limited30;
  if (s->limited30) h *= 1 - (double)s->limited30 / (double)all;
  return h;
}

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median latency EWMA of b's group (deployments with a sample), 0 when none. */
static double cbrk_group_median(const cbrk *set, size_t n, const cbrk *b, double *scratch) {
  size_t m = 0;
  for (size_t i = 0; i < n; i++)
    if (set[i].latency_ewma_ms > 0 && !strcmp(set[i].group, b->group)) scratch[m++] = set[i].latency_ewma_ms;
  if (!m) return 0;
  qsort(scratch, m, sizeof *scratch, cmp_double);
  return m % 2 ? scratch[m / 2] : (scratch[m / 2 - 1] + scratch[m / 2]) / 2;
}

/* min(1, median / own)^0.5, relaxed linearly to 1 once the newest sample is older than
 * CBRK_LAT_STALE_MS: without samples the estimate says nothing about now. */
static double cbrk_latency_factor(const cbrk *b, uint64_t now_ms, double median) {
  if (median <= 0 || b->latency_ewma_ms <= 0) return 1;
  double f = sqrt(fmin(1, median / b->latency_ewma_ms));
  uint64_t age = b->latency_at_ms && now_ms > b->latency_at_ms ? now_ms - b->latency_at_ms : 0;
  if (age <= CBRK_LAT_STALE_MS) return f;
  double t = fmin(1, (double)(age - CBRK_LAT_STALE_MS) / CBRK_LAT_RELAX_MS);
  return f + (1 - f) * t;
}

static uint32_t cbrk_weight_of(cbrk *b, const cbrk_params *p, uint64_t now_ms, double median) {
  cbrk_sums s;
  if (b->drained || b->state == CBRK_OPEN) return 0;
  cbrk_window(b, now_ms, &s);
  uint64_t vol = s.ok30 + s.fail30;
  double health = vol >= p->min_volume && vol ? 1 - (double)s.fail30 / (double)vol : 1;
  b->latency_factor = cbrk_latency_factor(b, now_ms, median);
  double w = 1000 * health * b->latency_factor * cbrk_headroom(b, &s) * cbrk_ramp(b, p, now_ms);
  return w < CBRK_MIN_WEIGHT_MILLI ? CBRK_MIN_WEIGHT_MILLI : (uint32_t)lround(w);
}

void cbrk_weights(cbrk *set, size_t n, const cbrk_params *p, uint64_t now_ms,
                  const uint32_t *last_published, int *ev) {
  double *scratch = n ? malloc(n * sizeof *scratch) : NULL;
  for (size_t i = 0; i < n; i++) {
    double median = scratch ? cbrk_group_median(set, n, &set[i], scratch) : 0;
    uint32_t w = cbrk_weight_of(&set[i], p, now_ms, median);
    set[i].weight_milli = w;
    if (!ev || !last_published) continue;
    uint32_t lp = last_published[i];
    uint32_t diff = w > lp ? w - lp : lp - w;
    if ((uint64_t)diff * 10 > lp) ev[i] |= CBRK_EV_WEIGHT;
  }
  free(scratch);
}
