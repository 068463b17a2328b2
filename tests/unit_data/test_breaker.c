/* test_breaker.c — the worker-local circuit (trip, trip on a run of 5xx, doubling, cap,
 * half-open trial), the rate-limit cooldown, credentials, admission order, latency EWMA,
 * the p95 estimate, the retry budget and the control plane's health (breaker.h), on a
 * fake clock. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "breaker.h"

static const brk_config defaults; /* zero: 3 trips, 1 s local, 5 s cooldown, 20 %, 10/s */

/* One attempt from start to end at time t. */
static int attempt(dep_state *d, const brk_config *c, uint64_t t, brk_outcome o) {
  breaker_attempt_start(d, t);
  return breaker_attempt_end(d, c, t, o, 0, 0);
}

static void test_get_is_stable(void **unused) {
  (void)unused;
  dep_state *a = breaker_get("a"), *b = breaker_get("b");
  assert_non_null(a);
  assert_ptr_not_equal(a, b);
  assert_ptr_equal(breaker_get("a"), a);
  assert_string_equal(a->name, "a");
  assert_int_equal(a->local, BRK_CLOSED);
  assert_int_equal(a->ctl_weight_milli, 1000);
  assert_int_equal(breaker_admit(a, 5, NULL), BR_OK);
}

static void test_local_trip_and_trial(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("trip");
  uint64_t t = 10000, wait = 0;
  assert_int_equal(attempt(d, &defaults, t, BO_CONNECT_FAIL), 0);
  assert_int_equal(attempt(d, &defaults, t, BO_TIMEOUT), 0);
  assert_int_equal(attempt(d, &defaults, t, BO_CONNECT_FAIL), 1); /* third in a row opens */
  assert_int_equal(d->local, BRK_OPEN);
  assert_int_equal(d->trips, 1);
  assert_int_equal(breaker_admit(d, t + 10, &wait), BR_LOCAL_OPEN);
  assert_int_equal(wait, 990);
  /* after 1 s: half-open, exactly one trial at a time */
  assert_int_equal(breaker_admit(d, t + 1000, &wait), BR_OK);
  breaker_attempt_start(d, t + 1000);
  assert_int_equal(d->local, BRK_HALF_OPEN);
  assert_int_equal(breaker_admit(d, t + 1001, &wait), BR_LOCAL_OPEN);
  assert_int_equal(wait, 0);
  /* the trial fails: open again for twice as long */
  assert_int_equal(breaker_attempt_end(d, &defaults, t + 1100, BO_TIMEOUT, 0, 0), 1);
  assert_int_equal(d->open_ms, 2000);
  assert_int_equal(breaker_admit(d, t + 3099, NULL), BR_LOCAL_OPEN);
  assert_int_equal(breaker_admit(d, t + 3100, NULL), BR_OK);
  /* a trial success closes it and resets the doubling */
  assert_int_equal(attempt(d, &defaults, t + 3100, BO_SUCCESS), 0);
  assert_int_equal(d->local, BRK_CLOSED);
  assert_int_equal(d->open_ms, 0);
  assert_int_equal(d->in_flight, 0);
  for (int i = 0; i < 2; i++) attempt(d, &defaults, t + 4000, BO_CONNECT_FAIL);
  assert_int_equal(attempt(d, &defaults, t + 4000, BO_CONNECT_FAIL), 1);
  assert_int_equal(d->open_ms, 1000);
}

static void test_success_resets_count(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("reset");
  brk_config c = {.local_trip_failures = 2};
  attempt(d, &c, 100, BO_CONNECT_FAIL);
  attempt(d, &c, 100, BO_SUCCESS);
  assert_int_equal(attempt(d, &c, 100, BO_CONNECT_FAIL), 0);
  /* one 5xx or 429 neither counts towards nor trips a closed circuit (5xx: see below) */
  attempt(d, &c, 100, BO_SERVER);
  attempt(d, &c, 100, BO_RATE_LIMITED);
  assert_int_equal(d->local, BRK_CLOSED);
  assert_int_equal(attempt(d, &c, 100, BO_CONNECT_FAIL), 1);
}

/* A provider answering 5xx to everything is as dead as a refused port: local_trip_failures
 * + 2 BO_SERVER in a row open the local circuit; a success in between restarts the run, and
 * connect errors keep their shorter run. */
static void test_server_run_trips(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("5xx");
  uint64_t t = 5000;
  for (int i = 0; i < 4; i++) assert_int_equal(attempt(d, &defaults, t, BO_SERVER), 0);
  attempt(d, &defaults, t, BO_SUCCESS); /* 30 % random 500s: runs are broken by successes */
  for (int i = 0; i < 4; i++) assert_int_equal(attempt(d, &defaults, t, BO_SERVER), 0);
  attempt(d, &defaults, t, BO_RATE_LIMITED); /* a 429 or a client error neither breaks nor extends it */
  d->cooldown_until_ms = 0;
  attempt(d, &defaults, t, BO_NEUTRAL);
  assert_int_equal(d->local, BRK_CLOSED);
  assert_int_equal(attempt(d, &defaults, t, BO_SERVER), 1); /* the fifth in a row */
  assert_int_equal(d->local, BRK_OPEN);
  assert_int_equal(d->open_ms, 1000);
  assert_int_equal(d->consecutive_server, 0);
  assert_int_equal(breaker_admit(d, t + 999, NULL), BR_LOCAL_OPEN);
  /* the half-open trial decides as before: a 5xx re-opens for twice as long */
  assert_int_equal(attempt(d, &defaults, t + 1000, BO_SERVER), 1);
  assert_int_equal(d->open_ms, 2000);
  assert_int_equal(attempt(d, &defaults, t + 3000, BO_SUCCESS), 0);
  assert_int_equal(d->local, BRK_CLOSED);
  /* configured: local_trip_failures 1 → 3 server errors */
  brk_config c = {.local_trip_failures = 1};
  assert_int_equal(attempt(d, &c, t + 4000, BO_SERVER), 0);
  assert_int_equal(attempt(d, &c, t + 4000, BO_SERVER), 0);
  assert_int_equal(attempt(d, &c, t + 4000, BO_SERVER), 1);
  /* a huge configured run does not wrap around to a trip on the first 5xx */
  brk_config huge = {.local_trip_failures = UINT32_MAX};
  dep_state *e = breaker_get("5xx-huge");
  for (int i = 0; i < 10; i++) assert_int_equal(attempt(e, &huge, t, BO_SERVER), 0);
}

static void test_open_cap(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("cap");
  brk_config c = {.local_trip_failures = 1, .local_cooldown_ms = 100, .cooldown_ms = 200};
  uint64_t t = 1000;
  uint32_t expect[] = {100, 200, 400, 800, 1600, 1600, 1600}; /* cap: 200 × 8 */
  for (int i = 0; i < 7; i++) {
    assert_int_equal(attempt(d, &c, t, BO_CONNECT_FAIL), 1);
    assert_int_equal(d->open_ms, expect[i]);
    t = d->open_until_ms; /* half-open: the trial fails too */
  }
  assert_int_equal(d->trips, 7);
}

static void test_server_fails_trial(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("trial5xx");
  brk_config c = {.local_trip_failures = 1};
  attempt(d, &c, 10, BO_CONNECT_FAIL);
  assert_int_equal(attempt(d, &c, 1010, BO_SERVER), 1); /* 5xx fails the trial */
  assert_int_equal(d->open_ms, 2000);
  /* a neutral answer decides nothing: still half-open, the next attempt is the trial */
  breaker_attempt_start(d, 3010);
  assert_int_equal(breaker_attempt_end(d, &c, 3010, BO_NEUTRAL, 0, 0), 0);
  assert_int_equal(d->local, BRK_HALF_OPEN);
  assert_int_equal(breaker_admit(d, 3011, NULL), BR_OK);
}

static void test_rate_limit_cooldown(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("429");
  uint64_t wait = 0;
  breaker_attempt_start(d, 100);
  breaker_attempt_end(d, &defaults, 100, BO_RATE_LIMITED, 0, 2500); /* the provider's hint */
  assert_int_equal(breaker_admit(d, 100, &wait), BR_COOLING);
  assert_int_equal(wait, 2500);
  assert_int_equal(breaker_admit(d, 2600, NULL), BR_OK);
  assert_int_equal(d->local, BRK_CLOSED);
  /* no hint: 1 s, 2 s, 4 s, then capped at cooldown_ms (5 s) */
  uint64_t t = 10000, expect[] = {1000, 2000, 4000, 5000, 5000};
  d->consecutive_429 = 0;
  for (int i = 0; i < 5; i++) {
    attempt(d, &defaults, t, BO_RATE_LIMITED);
    assert_int_equal(d->cooldown_until_ms - t, expect[i]);
    t = d->cooldown_until_ms;
  }
  assert_int_equal(d->cooldowns, 6);
  attempt(d, &defaults, t, BO_SUCCESS); /* a success restarts the doubling */
  attempt(d, &defaults, t, BO_RATE_LIMITED);
  assert_int_equal(d->cooldown_until_ms - t, 1000);
}

static void test_credential(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("key");
  uint64_t wait;
  attempt(d, &defaults, 1000, BO_AUTH);
  assert_int_equal(breaker_admit(d, 2000, &wait), BR_CREDENTIAL);
  assert_int_equal(wait, BRK_CRED_RETRY_MS - 1000);
  uint64_t t = 1000 + BRK_CRED_RETRY_MS;
  assert_int_equal(breaker_admit(d, t, NULL), BR_OK);
  breaker_attempt_start(d, t); /* the one trial: the others wait for it */
  assert_int_equal(breaker_admit(d, t + 1, NULL), BR_CREDENTIAL);
  breaker_attempt_end(d, &defaults, t + 5, BO_SUCCESS, 0, 0);
  assert_int_equal(breaker_admit(d, t + 6, NULL), BR_OK);
}

static void test_admit_order_and_wait(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("order");
  uint64_t wait;
  d->cooldown_until_ms = 5000;
  d->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN;
  d->ctl_open_until_ms = 3000;
  assert_int_equal(breaker_admit(d, 1000, &wait), BR_CONTROL_OPEN); /* the most severe names it */
  assert_int_equal(wait, 4000);                                     /* usable when both are over */
  assert_int_equal(breaker_admit(d, 3000, &wait), BR_COOLING);
  assert_int_equal(wait, 2000);
  d->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_DRAINED;
  assert_int_equal(breaker_admit(d, 6000, &wait), BR_DRAINED);
  d->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN; /* share applied by the router */
  assert_int_equal(breaker_admit(d, 6000, &wait), BR_OK);
  assert_int_equal(wait, 0);
  assert_string_equal(breaker_refusal_name(BR_COOLING), "cooling");
  assert_string_equal(breaker_refusal_name(BR_LOCAL_OPEN), "local_open");
}

static void test_latency_and_p95(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("lat");
  breaker_attempt_start(d, 0);
  breaker_attempt_end(d, &defaults, 0, BO_SUCCESS, 100, 0);
  assert_true(d->lat_ewma_ms == 100);
  breaker_attempt_start(d, 0);
  breaker_attempt_end(d, &defaults, 0, BO_SUCCESS, 200, 0);
  assert_true(d->lat_ewma_ms > 119.9 && d->lat_ewma_ms < 120.1); /* 100 + 0.2 × 100 */
  /* TTFT uniform in [100, 200): p95 is 195 */
  uint64_t x = 12345;
  for (int i = 0; i < 5000; i++) {
    x = x * 6364136223846793005ULL + 1442695040888963407ULL;
    breaker_ttft(d, 100 + (double)(x >> 33) / (double)(1ULL << 31) * 100);
  }
  assert_true(d->ttft_p95_ms > 180 && d->ttft_p95_ms < 210);
  /* the estimate follows a shift */
  for (int i = 0; i < 5000; i++) breaker_ttft(d, 50);
  assert_true(d->ttft_p95_ms < 60);
}

static void test_budget(void **unused) {
  (void)unused;
  dep_state *d = breaker_get("budget");
  brk_config c = {.retry_budget_percent = 50, .retry_budget_min_per_s = 1};
  uint64_t t = 1000;
  int granted = 0;
  while (breaker_budget_take(d, &c, t)) granted++;
  assert_int_equal(granted, 10); /* a new deployment starts with the minimum bucket */
  assert_int_equal(d->budget_exhausted, 1);
  breaker_budget_deposit(d, &c, t);
  assert_int_equal(breaker_budget_take(d, &c, t), 0); /* half a token */
  breaker_budget_deposit(d, &c, t);
  assert_int_equal(breaker_budget_take(d, &c, t), 1);
  assert_int_equal(breaker_budget_take(d, &c, t + 999), 0);
  assert_int_equal(breaker_budget_take(d, &c, t + 2000), 1); /* 1/s refill */
  for (int i = 0; i < 100; i++) breaker_budget_deposit(d, &c, t + 2000);
  granted = 0;
  while (breaker_budget_take(d, &c, t + 2000)) granted++;
  assert_int_equal(granted, 10); /* capped at max(10, 1 × 10) */
  assert_int_equal(d->retries, 22);
}

static Llmesh__DeploymentHealth *health(const char *name, Llmesh__CircuitState state) {
  Llmesh__DeploymentHealth *h = calloc(1, sizeof *h);
  llmesh__deployment_health__init(h);
  h->deployment = strdup(name);
  h->state = state;
  return h;
}

static void test_apply_health(void **unused) {
  (void)unused;
  Llmesh__Snapshot pb;
  llmesh__snapshot__init(&pb);
  Llmesh__DeploymentHealth *hs[2] = {health("h1", LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN),
                                     health("h2", LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN)};
  hs[0]->open_remaining_ms = 4000;
  hs[0]->cooldown_remaining_ms = 7000;
  hs[1]->weight_milli = 300;
  hs[1]->probe_share_milli = 100;
  hs[1]->latency_ewma_ms = 250;
  hs[1]->tpm_used = 900;
  pb.health = hs;
  pb.n_health = 2;
  breaker_apply_health(&pb, 50000);
  dep_state *h1 = breaker_get("h1"), *h2 = breaker_get("h2");
  assert_int_equal(h1->ctl_state, LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN);
  assert_int_equal(h1->ctl_open_until_ms, 54000);
  assert_int_equal(h1->ctl_cooldown_until_ms, 57000);
  assert_int_equal(breaker_admit(h1, 53999, NULL), BR_CONTROL_OPEN);
  assert_int_equal(breaker_admit(h1, 54000, NULL), BR_COOLING);
  assert_int_equal(h2->ctl_weight_milli, 300);
  assert_int_equal(h2->ctl_probe_share_milli, 100);
  assert_int_equal(h2->ctl_latency_ms, 250);
  assert_int_equal(h2->ctl_tpm_used, 900);
  /* a newer health without h1: back to closed, full weight */
  pb.health = &hs[1];
  pb.n_health = 1;
  breaker_apply_health(&pb, 60000);
  assert_int_equal(h1->ctl_state, LLMESH__CIRCUIT_STATE__CIRCUIT_CLOSED);
  assert_int_equal(h1->ctl_weight_milli, 1000);
  assert_int_equal(h1->ctl_cooldown_until_ms, 0);
  assert_int_equal(breaker_admit(h1, 60000, NULL), BR_OK);
  for (int i = 0; i < 2; i++) llmesh__deployment_health__free_unpacked(hs[i], NULL);
}

static int teardown(void **unused) {
  (void)unused;
  breaker_free_all();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_get_is_stable, teardown),
      cmocka_unit_test_teardown(test_local_trip_and_trial, teardown),
      cmocka_unit_test_teardown(test_success_resets_count, teardown),
      cmocka_unit_test_teardown(test_server_run_trips, teardown),
      cmocka_unit_test_teardown(test_open_cap, teardown),
      cmocka_unit_test_teardown(test_server_fails_trial, teardown),
      cmocka_unit_test_teardown(test_rate_limit_cooldown, teardown),
      cmocka_unit_test_teardown(test_credential, teardown),
      cmocka_unit_test_teardown(test_admit_order_and_wait, teardown),
      cmocka_unit_test_teardown(test_latency_and_p95, teardown),
      cmocka_unit_test_teardown(test_budget, teardown),
      cmocka_unit_test_teardown(test_apply_health, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
