/* test_cbrk.c — control-plane circuit breaker (controlplane/breaker.c), driven with an
 * injected clock: thresholds, volume, allowed_fails, 429 and 401 handling, open-period
 * doubling and cap, half-open, slow start, hysteresis, probes combined with passive
 * telemetry, and the effective weight. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "breaker.h"

#define T0 1000000ull /* arbitrary start, ms */

typedef struct fx {
  cbrk b;
  cbrk_params p;
  uint64_t now;
} fx;

static int setup(void **state) {
  static fx f;
  memset(&f, 0, sizeof f);
  cbrk_params_default(&f.p, 1000, 5000); /* allowed_fails out of the way unless a test sets it */
  cbrk_init(&f.b, "dep-a", "g", 0, 0);
  f.now = T0;
  *state = &f;
  return 0;
}

/* One tick one second later with ok successes and fail server errors. */
static int tick(fx *f, uint64_t ok, uint64_t fail) {
  cbrk_delta d = {0};
  d.success = ok;
  d.server_error = fail;
  d.requests = ok + fail;
  f->now += 1000;
  return cbrk_tick(&f->b, &f->p, f->now, &d);
}

static int tick_delta(fx *f, const cbrk_delta *d) {
  f->now += 1000;
  return cbrk_tick(&f->b, &f->p, f->now, d);
}

/* Advances time in 1 s ticks without traffic until the circuit is half-open. */
static void wait_half_open(fx *f) {
  for (int i = 0; i < 400 && f->b.state != CBRK_HALF_OPEN; i++) tick(f, 0, 0);
  assert_int_equal(f->b.state, CBRK_HALF_OPEN);
}

/* ------------------------------------------------------------------ tripping */

static void test_trips_at_threshold_with_volume(void **state) {
  fx *f = *state;
  for (int i = 0; i < 4; i++) assert_int_equal(tick(f, 1, 1) & CBRK_EV_STATE, 0); /* 8 requests */
  assert_int_equal(f->b.state, CBRK_CLOSED);
  int ev = tick(f, 1, 1); /* 10 requests, 50 % */
  assert_true(ev & CBRK_EV_STATE);
  assert_int_equal(f->b.state, CBRK_OPEN);
  assert_string_equal(f->b.reason, "error_rate 0.50 over 10 requests");
  assert_int_equal(cbrk_open_remaining_ms(&f->b, f->now), 5000);
}

static void test_below_threshold_stays_closed(void **state) {
  fx *f = *state;
  for (int i = 0; i < 30; i++) tick(f, 6, 4); /* 40 % */
  assert_int_equal(f->b.state, CBRK_CLOSED);
}

static void test_no_trip_on_one_of_two(void **state) {
  fx *f = *state;
  tick(f, 1, 1);
  tick(f, 0, 0);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  f->p.allowed_fails = 0; /* even "more than 0 failures" needs the volume */
  tick(f, 0, 0);
  assert_int_equal(f->b.state, CBRK_CLOSED);
}

static void test_window_slides(void **state) {
  fx *f = *state;
  tick(f, 0, 9); /* 9 failures, below volume */
  for (int i = 0; i < 30; i++) tick(f, 0, 0); /* they age out of the 30 s window */
  tick(f, 0, 1);
  assert_int_equal(f->b.state, CBRK_CLOSED);
}

static void test_allowed_fails(void **state) {
  fx *f = *state;
  f->p.allowed_fails = 3;
  tick(f, 20, 3); /* 3 failures: allowed */
  assert_int_equal(f->b.state, CBRK_CLOSED);
  for (int i = 0; i < 35; i++) tick(f, 5, 0); /* out of the 30 s window, still in 60 s */
  assert_int_equal(f->b.state, CBRK_CLOSED);
  tick(f, 5, 1); /* 4 > 3 within 60 s, at a 0.5 % error rate */
  assert_int_equal(f->b.state, CBRK_OPEN);
  assert_non_null(strstr(f->b.reason, "allowed_fails 3"));
}

static void test_429_storm_never_opens(void **state) {
  fx *f = *state;
  cbrk_delta d = {.requests = 100, .rate_limited = 100, .cooldown_remaining_ms = 7000};
  int ev = tick_delta(f, &d);
  assert_true(ev & CBRK_EV_WEIGHT); /* a cooldown started: republish */
  for (int i = 0; i < 20; i++) tick_delta(f, &d);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  assert_int_equal(cbrk_cooldown_remaining_ms(&f->b, f->now), 7000);
  cbrk_delta mixed = {.requests = 20, .success = 10, .rate_limited = 10};
  tick_delta(f, &mixed);
  cbrk_weights(&f->b, 1, &f->p, f->now, NULL, NULL);
  /* 2110 of 2120 in the window were 429s: headroom ×(1 − 0.995), floored at 1 % */
  assert_int_equal(f->b.weight_milli, CBRK_MIN_WEIGHT_MILLI);
  assert_int_equal(f->b.state, CBRK_CLOSED);
}

static void test_429_without_reset_cools_1s(void **state) {
  fx *f = *state;
  cbrk_delta d = {.requests = 1, .rate_limited = 1};
  tick_delta(f, &d);
  assert_int_equal(cbrk_cooldown_remaining_ms(&f->b, f->now), 1000);
  tick(f, 0, 0);
  assert_int_equal(cbrk_cooldown_remaining_ms(&f->b, f->now), 0);
}

static void test_401_credential_failed_not_open(void **state) {
  fx *f = *state;
  cbrk_delta d = {.requests = 50, .auth_error = 50};
  int ev = tick_delta(f, &d);
  assert_true(ev & CBRK_EV_CRED_FAILED);
  assert_true(f->b.credential_failed);
  ev = tick_delta(f, &d);
  assert_int_equal(ev & CBRK_EV_CRED_FAILED, 0); /* alert once per transition */
  assert_int_equal(f->b.state, CBRK_CLOSED);
  cbrk_delta ok = {.requests = 1, .success = 1};
  ev = tick_delta(f, &ok);
  assert_true(ev & CBRK_EV_CRED_OK);
  assert_false(f->b.credential_failed);
}

static void test_client_errors_ignored(void **state) {
  fx *f = *state;
  cbrk_delta d = {.requests = 100, .client_error = 90, .cancelled = 9, .success = 1};
  for (int i = 0; i < 10; i++) tick_delta(f, &d);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  cbrk_weights(&f->b, 1, &f->p, f->now, NULL, NULL);
  assert_int_equal(f->b.weight_milli, 1000);
}

static void test_timeouts_and_connect_errors_are_failures(void **state) {
  fx *f = *state;
  cbrk_delta d = {.requests = 12, .timeout = 4, .connect_error = 3, .other_error = 1, .success = 4};
  tick_delta(f, &d);
  assert_int_equal(f->b.state, CBRK_OPEN);
  assert_string_equal(f->b.reason, "error_rate 0.67 over 12 requests");
}

/* ------------------------------------------------------------------ open, half-open, close */

static void test_cooldown_doubles_and_caps(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  assert_int_equal(f->b.open_ms, 5000);
  uint32_t want = 5000;
  for (int i = 0; i < 10; i++) {
    wait_half_open(f);
    tick(f, 0, 1); /* failure in half-open */
    assert_int_equal(f->b.state, CBRK_OPEN);
    want = want * 2 > CBRK_MAX_OPEN_MS ? CBRK_MAX_OPEN_MS : want * 2;
    assert_int_equal(f->b.open_ms, want);
  }
  assert_int_equal(f->b.open_ms, 300000);
}

static void test_half_open_share_and_immediate_probe(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  for (int i = 0; i < 4; i++) tick(f, 0, 0);
  assert_int_equal(f->b.state, CBRK_OPEN);
  int ev = tick(f, 0, 0); /* 5 s */
  assert_true(ev & CBRK_EV_STATE);
  assert_int_equal(f->b.state, CBRK_HALF_OPEN);
  assert_true(f->b.half_probe_due);
  assert_int_equal(f->p.probe_share_milli, 100);
  cbrk_weights(&f->b, 1, &f->p, f->now, NULL, NULL);
  assert_true(f->b.weight_milli > 0); /* the worker multiplies by the probe share */
}

static void test_three_successes_close(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  wait_half_open(f);
  tick(f, 1, 0);
  tick(f, 1, 0);
  assert_int_equal(f->b.state, CBRK_HALF_OPEN);
  int ev = tick(f, 1, 0);
  assert_true(ev & CBRK_EV_STATE);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  assert_non_null(strstr(f->b.reason, "3 successes in half-open"));
}

static void test_failure_in_half_open_reopens(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  wait_half_open(f);
  tick(f, 2, 0);
  tick(f, 0, 1);
  assert_int_equal(f->b.state, CBRK_OPEN);
  assert_int_equal(f->b.open_ms, 10000);
  assert_non_null(strstr(f->b.reason, "failure in half-open"));
}

static void test_slow_start_ramp(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  wait_half_open(f);
  tick(f, 3, 0);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  uint64_t closed = f->now;
  cbrk_weights(&f->b, 1, &f->p, closed, NULL, NULL);
  assert_int_equal(f->b.weight_milli, 100);
  cbrk_weights(&f->b, 1, &f->p, closed + 5000, NULL, NULL);
  assert_int_equal(f->b.weight_milli, 550);
  cbrk_weights(&f->b, 1, &f->p, closed + 10000, NULL, NULL);
  assert_int_equal(f->b.weight_milli, 1000);
  assert_true(cbrk_ramp(&f->b, &f->p, closed + 2500) > 0.32 && cbrk_ramp(&f->b, &f->p, closed + 2500) < 0.33);
}

static void test_weight_change_event(void **state) {
  fx *f = *state;
  uint32_t last = 1000;
  int ev = 0;
  cbrk_weights(&f->b, 1, &f->p, f->now, &last, &ev);
  assert_int_equal(ev, 0);
  tick(f, 16, 4); /* health 0.8 */
  cbrk_weights(&f->b, 1, &f->p, f->now, &last, &ev);
  assert_int_equal(f->b.weight_milli, 800);
  assert_true(ev & CBRK_EV_WEIGHT);
}

static void test_hysteresis_no_flapping(void **state) {
  fx *f = *state;
  int opens = 0, closes = 0;
  /* 10 minutes of a provider alternating 40 % / 60 % error seconds; traffic in
   * half-open is the 10 % share, so about 2 requests a second. */
  for (int s = 0; s < 600; s++) {
    int bad = s % 2;
    uint64_t n = f->b.state == CBRK_CLOSED ? 20 : f->b.state == CBRK_HALF_OPEN ? 2 : 0;
    uint64_t fail = n * (bad ? 6 : 4) / 10;
    cbrk_state before = f->b.state;
    tick(f, n - fail, fail);
    if (before != CBRK_OPEN && f->b.state == CBRK_OPEN) opens++;
    if (before != CBRK_CLOSED && f->b.state == CBRK_CLOSED) closes++;
  }
  assert_true(opens >= 1);
  assert_true(opens <= 10); /* ≤ 1 per minute on average: backs off instead of flapping */
  assert_true(closes <= opens);
}

/* ------------------------------------------------------------------ probes */

static void test_probe_failure_alone_never_opens_with_healthy_traffic(void **state) {
  fx *f = *state;
  for (int i = 0; i < 5; i++) {
    tick(f, 10, 0);
    cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  }
  assert_int_equal(f->b.state, CBRK_CLOSED);
  assert_int_equal(f->b.probe_fails, 5);
}

static void test_three_probe_failures_without_traffic_open(void **state) {
  fx *f = *state;
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_OK); /* resets the run */
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  int ev = cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  assert_true(ev & CBRK_EV_STATE);
  assert_int_equal(f->b.state, CBRK_OPEN);
  assert_string_equal(f->b.reason, "3 probe failures, no passive traffic");
}

static void test_probe_failures_with_failing_traffic_open(void **state) {
  fx *f = *state;
  tick(f, 3, 1); /* 25 %, below volume */
  for (int i = 0; i < 3; i++) cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  assert_int_equal(f->b.state, CBRK_OPEN);
  assert_non_null(strstr(f->b.reason, "passive error_rate 0.25"));
}

static void test_probes_close_half_open_and_failure_reopens(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  wait_half_open(f);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_OK);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_FAIL);
  assert_int_equal(f->b.state, CBRK_OPEN);
  wait_half_open(f);
  for (int i = 0; i < 3; i++) cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_OK);
  assert_int_equal(f->b.state, CBRK_CLOSED);
  assert_string_equal(f->b.reason, "3 probe successes");
}

static void test_probe_success_in_open_counts(void **state) {
  fx *f = *state;
  tick(f, 0, 10);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_OK);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_OK);
  assert_int_equal(f->b.state, CBRK_OPEN);
  wait_half_open(f);
  cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_OK);
  assert_int_equal(f->b.state, CBRK_CLOSED);
}

static void test_probe_auth_sets_credential(void **state) {
  fx *f = *state;
  int ev = cbrk_probe(&f->b, &f->p, f->now, CBRK_PROBE_AUTH);
  assert_true(ev & CBRK_EV_CRED_FAILED);
  assert_int_equal(f->b.state, CBRK_CLOSED);
}

/* ------------------------------------------------------------------ drain, weights */

static void test_drain_overlays(void **state) {
  fx *f = *state;
  cbrk_drain(&f->b, f->now, 1, "drained by alice@host: maintenance");
  assert_int_equal(cbrk_reported_state(&f->b), CBRK_DRAINED);
  cbrk_weights(&f->b, 1, &f->p, f->now, NULL, NULL);
  assert_int_equal(f->b.weight_milli, 0);
  assert_int_equal(tick(f, 0, 10) & CBRK_EV_STATE, 0); /* reported state stays drained */
  assert_string_equal(f->b.reason, "drained by alice@host: maintenance");
  cbrk_drain(&f->b, f->now, 0, "undrained by alice@host");
  assert_int_equal(cbrk_reported_state(&f->b), CBRK_OPEN);
}

static void test_latency_factor_within_group(void **state) {
  (void)state;
  cbrk set[3];
  cbrk_params p;
  cbrk_params_default(&p, 3, 5000);
  cbrk_init(&set[0], "fast", "g", 0, 0);
  cbrk_init(&set[1], "slow", "g", 0, 0);
  cbrk_init(&set[2], "other", "h", 0, 0);
  set[0].latency_ewma_ms = 100;
  set[1].latency_ewma_ms = 400;
  set[2].latency_ewma_ms = 10000;
  cbrk_weights(set, 3, &p, T0, NULL, NULL);
  /* group g median 250: fast → 1, slow → sqrt(250/400) ≈ 0.79; h alone → 1 */
  assert_int_equal(set[0].weight_milli, 1000);
  assert_in_range(set[1].weight_milli, 785, 795);
  assert_int_equal(set[2].weight_milli, 1000);
}

static void test_latency_from_histogram_deltas(void **state) {
  fx *f = *state;
  cbrk_delta d = {.requests = 10, .success = 10};
  d.latency[6] = 10; /* 50..100 ms */
  tick_delta(f, &d);
  assert_true(f->b.latency_ewma_ms >= 50 && f->b.latency_ewma_ms <= 100);
}

/* One tick for every deployment of set: n[i] successes with their latency in bucket b[i]. */
static void lat_tick(cbrk *set, size_t k, const cbrk_params *p, uint64_t now, const int *n, const int *b) {
  for (size_t i = 0; i < k; i++) {
    cbrk_delta d = {.requests = (uint64_t)n[i], .success = (uint64_t)n[i]};
    d.latency[b[i]] = (uint64_t)n[i];
    cbrk_tick(&set[i], p, now, &d);
  }
  cbrk_weights(set, k, p, now, NULL, NULL);
}

/* A +1.5 s spike shifts load away at once, and once the answers are fast again the
 * weight comes back within a few ticks even at a few % of the traffic (a per-tick EWMA
 * needed ~15 s); one sample moves the estimate little. */
static void test_latency_spike_recovers(void **state) {
  (void)state;
  cbrk set[3];
  cbrk_params p;
  cbrk_params_default(&p, 1000, 5000);
  cbrk_init(&set[0], "slow", "g", 0, 0);
  cbrk_init(&set[1], "f1", "g", 0, 0);
  cbrk_init(&set[2], "f2", "g", 0, 0);
  uint64_t now = T0;
  int fast[3] = {6, 6, 6}, spike[3] = {10, 6, 6}; /* 50..100 ms, 1000..2500 ms */
  int many[3] = {100, 10, 10}, few[3] = {8, 60, 60};
  lat_tick(set, 3, &p, now += 1000, many, fast);
  assert_int_equal(set[0].weight_milli, 1000);
  lat_tick(set, 3, &p, now += 1000, many, spike);
  assert_true(set[0].weight_milli < 250); /* ≈ sqrt(75 / 1750) */
  for (int i = 0; i < 5; i++) lat_tick(set, 3, &p, now += 1000, few, spike);
  assert_true(set[0].weight_milli < 250);
  for (int i = 0; i < 4; i++) lat_tick(set, 3, &p, now += 1000, few, fast); /* healed, 6 % */
  assert_true(set[0].weight_milli >= 800);
  /* a single sample after a spike moves the estimate only part of the way */
  lat_tick(set, 3, &p, now += 1000, many, spike);
  int one[3] = {1, 60, 60};
  lat_tick(set, 3, &p, now += 1000, one, fast);
  assert_true(set[0].latency_ewma_ms > 1000);
}

/* Without samples the latency estimate says nothing about now: after CBRK_LAT_STALE_MS the
 * factor relaxes linearly to 1 over CBRK_LAT_RELAX_MS, so a starved deployment is measured
 * again. */
static void test_latency_factor_relaxes_when_stale(void **state) {
  (void)state;
  cbrk set[3];
  cbrk_params p;
  cbrk_params_default(&p, 1000, 5000);
  cbrk_init(&set[0], "slow", "g", 0, 0);
  cbrk_init(&set[1], "f1", "g", 0, 0);
  cbrk_init(&set[2], "f2", "g", 0, 0);
  uint64_t t0 = T0;
  int n[3] = {20, 20, 20}, b[3] = {10, 6, 6};
  lat_tick(set, 3, &p, t0, n, b);
  uint32_t low = set[0].weight_milli;
  assert_true(low < 250);
  int none[3] = {0, 20, 20};
  lat_tick(set, 3, &p, t0 + CBRK_LAT_STALE_MS, none, b);
  assert_int_equal(set[0].weight_milli, low); /* still fresh enough */
  lat_tick(set, 3, &p, t0 + CBRK_LAT_STALE_MS + CBRK_LAT_RELAX_MS / 2, none, b);
  assert_in_range(set[0].weight_milli, (1000 + low) / 2 - 5, (1000 + low) / 2 + 5);
  lat_tick(set, 3, &p, t0 + CBRK_LAT_STALE_MS + CBRK_LAT_RELAX_MS, none, b);
  assert_int_equal(set[0].weight_milli, 1000);
  /* a new slow sample makes it fresh (and slow) again */
  int one[3] = {1, 20, 20};
  lat_tick(set, 3, &p, t0 + CBRK_LAT_STALE_MS + CBRK_LAT_RELAX_MS + 1000, one, b);
  assert_true(set[0].weight_milli < 250);
}

static void test_headroom_from_rpm(void **state) {
  fx *f = *state;
  f->b.rpm = 100;
  for (int i = 0; i < 9; i++) tick(f, 10, 0); /* 90 of 100 rpm */
  cbrk_weights(&f->b, 1, &f->p, f->now, NULL, NULL);
  assert_in_range(f->b.weight_milli, 520, 530); /* 1 − 0.5 × 0.95 */
  tick(f, 20, 0);
  cbrk_weights(&f->b, 1, &f->p, f->now, NULL, NULL);
  assert_int_equal(f->b.weight_milli, 50);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_trips_at_threshold_with_volume, setup),
      cmocka_unit_test_setup(test_below_threshold_stays_closed, setup),
      cmocka_unit_test_setup(test_no_trip_on_one_of_two, setup),
      cmocka_unit_test_setup(test_window_slides, setup),
      cmocka_unit_test_setup(test_allowed_fails, setup),
      cmocka_unit_test_setup(test_429_storm_never_opens, setup),
      cmocka_unit_test_setup(test_429_without_reset_cools_1s, setup),
      cmocka_unit_test_setup(test_401_credential_failed_not_open, setup),
      cmocka_unit_test_setup(test_client_errors_ignored, setup),
      cmocka_unit_test_setup(test_timeouts_and_connect_errors_are_failures, setup),
      cmocka_unit_test_setup(test_cooldown_doubles_and_caps, setup),
      cmocka_unit_test_setup(test_half_open_share_and_immediate_probe, setup),
      cmocka_unit_test_setup(test_three_successes_close, setup),
      cmocka_unit_test_setup(test_failure_in_half_open_reopens, setup),
      cmocka_unit_test_setup(test_slow_start_ramp, setup),
      cmocka_unit_test_setup(test_weight_change_event, setup),
      cmocka_unit_test_setup(test_hysteresis_no_flapping, setup),
      cmocka_unit_test_setup(test_probe_failure_alone_never_opens_with_healthy_traffic, setup),
      cmocka_unit_test_setup(test_three_probe_failures_without_traffic_open, setup),
      cmocka_unit_test_setup(test_probe_failures_with_failing_traffic_open, setup),
      cmocka_unit_test_setup(test_probes_close_half_open_and_failure_reopens, setup),
      cmocka_unit_test_setup(test_probe_success_in_open_counts, setup),
      cmocka_unit_test_setup(test_probe_auth_sets_credential, setup),
      cmocka_unit_test_setup(test_drain_overlays, setup),
      cmocka_unit_test_setup(test_latency_factor_within_group, setup),
      cmocka_unit_test_setup(test_latency_from_histogram_deltas, setup),
      cmocka_unit_test_setup(test_latency_spike_recovers, setup),
      cmocka_unit_test_setup(test_latency_factor_relaxes_when_stale, setup),
      cmocka_unit_test_setup(test_headroom_from_rpm, setup),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
