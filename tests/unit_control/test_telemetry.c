/* test_telemetry.c — telemetry deltas for the breakers: the difference between the kept
 * and the new message per deployment, accumulated until taken; a worker restart (new pid
 * or counters going down) makes the new counters the delta; a worker first heard with a
 * long uptime gives a baseline only; gauges take the largest value. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "histogram.h"
#include "telemetry.h"

typedef struct counts {
  uint64_t requests, success, server_error, rate_limited, auth_error, lat3;
  uint32_t cooldown_ms;
} counts;

/* Packs a one-deployment Telemetry message from worker id/pid and ingests it. */
static int feed(telemetry_t *t, const char *id, int pid, uint64_t seq, uint64_t uptime_ms, const char *dep,
                const counts *c) {
  Llmesh__Telemetry m = LLMESH__TELEMETRY__INIT;
  Llmesh__DeploymentStats ds = LLMESH__DEPLOYMENT_STATS__INIT, *dsp = &ds;
  uint64_t buckets[HIST_BUCKETS] = {0};
  buckets[3] = c->lat3;
  m.worker_id = (char *)id;
  m.pid = pid;
  m.seq = seq;
  m.uptime_ms = uptime_ms;
  m.n_deployments = 1;
  m.deployments = &dsp;
  ds.deployment = (char *)dep;
  ds.requests = c->requests;
  ds.success = c->success;
  ds.server_error = c->server_error;
  ds.rate_limited = c->rate_limited;
  ds.auth_error = c->auth_error;
  ds.cooldown_remaining_ms = c->cooldown_ms;
  ds.n_latency_buckets = HIST_BUCKETS;
  ds.latency_buckets = buckets;
  size_t n = llmesh__telemetry__get_packed_size(&m);
  uint8_t *buf = malloc(n);
  llmesh__telemetry__pack(&m, buf);
  const char *reason = NULL;
  int rv = telemetry_ingest(t, buf, n, 1000 * seq, &reason);
  free(buf);
  return rv;
}

static void test_delta_between_messages(void **state) {
  (void)state;
  telemetry_t t = {0};
  cbrk_delta d;
  assert_int_equal(feed(&t, "w1", 10, 1, 1000, "a", &(counts){.requests = 5, .success = 4, .server_error = 1, .lat3 = 4}), 0);
  telemetry_take(&t, "a", &d); /* a fresh worker: its counters are the delta */
  assert_int_equal(d.requests, 5);
  assert_int_equal(d.server_error, 1);
  assert_int_equal(d.latency[3], 4);
  feed(&t, "w1", 10, 2, 2000, "a", &(counts){.requests = 12, .success = 9, .server_error = 3, .lat3 = 9});
  feed(&t, "w1", 10, 3, 3000, "a", &(counts){.requests = 15, .success = 12, .server_error = 3, .lat3 = 12});
  telemetry_take(&t, "a", &d); /* two messages accumulated */
  assert_int_equal(d.requests, 10);
  assert_int_equal(d.success, 8);
  assert_int_equal(d.server_error, 2);
  assert_int_equal(d.latency[3], 8);
  telemetry_take(&t, "a", &d); /* taken: nothing left */
  assert_int_equal(d.requests, 0);
  feed(&t, "w1", 10, 4, 4000, "a", &(counts){.requests = 15, .success = 12, .server_error = 3, .lat3 = 12});
  telemetry_take(&t, "a", &d); /* same counters again: no double counting */
  assert_int_equal(d.requests, 0);
  telemetry_take(&t, "unknown", &d);
  assert_int_equal(d.requests, 0);
  telemetry_free(&t);
}

static void test_sum_over_workers(void **state) {
  (void)state;
  telemetry_t t = {0};
  cbrk_delta d;
  feed(&t, "w1", 10, 1, 500, "a", &(counts){.requests = 3, .success = 3});
  feed(&t, "w2", 11, 1, 500, "a", &(counts){.requests = 4, .server_error = 4, .cooldown_ms = 700});
  feed(&t, "w1", 10, 2, 1500, "a", &(counts){.requests = 5, .success = 5, .cooldown_ms = 300});
  telemetry_take(&t, "a", &d);
  assert_int_equal(d.requests, 9);
  assert_int_equal(d.success, 5);
  assert_int_equal(d.server_error, 4);
  assert_int_equal(d.cooldown_remaining_ms, 700); /* the largest reported */
  telemetry_free(&t);
}

static void test_restart_by_pid(void **state) {
  (void)state;
  telemetry_t t = {0};
  cbrk_delta d;
  feed(&t, "w1", 10, 1, 500, "a", &(counts){.requests = 100, .success = 100});
  telemetry_take(&t, "a", &d);
  /* same worker id, new pid, lower seq: a restart; its counters are the delta */
  assert_int_equal(feed(&t, "w1", 20, 1, 500, "a", &(counts){.requests = 7, .server_error = 7}), 0);
  telemetry_take(&t, "a", &d);
  assert_int_equal(d.requests, 7);
  assert_int_equal(d.server_error, 7);
  telemetry_free(&t);
}

static void test_restart_by_counters_going_down(void **state) {
  (void)state;
  telemetry_t t = {0};
  cbrk_delta d;
  feed(&t, "w1", 10, 1, 500, "a", &(counts){.requests = 100, .success = 100});
  telemetry_take(&t, "a", &d);
  feed(&t, "w1", 10, 2, 600, "a", &(counts){.requests = 6, .success = 2, .auth_error = 4});
  telemetry_take(&t, "a", &d);
  assert_int_equal(d.requests, 6);
  assert_int_equal(d.success, 2);
  assert_int_equal(d.auth_error, 4);
  telemetry_free(&t);
}

static void test_old_worker_gives_baseline(void **state) {
  (void)state;
  telemetry_t t = {0};
  cbrk_delta d;
  /* control restarted under a worker that ran for an hour: history is not news */
  feed(&t, "w1", 10, 3600, 3600000, "a", &(counts){.requests = 1000, .server_error = 500, .cooldown_ms = 900});
  telemetry_take(&t, "a", &d);
  assert_int_equal(d.requests, 0);
  assert_int_equal(d.server_error, 0);
  assert_int_equal(d.cooldown_remaining_ms, 900); /* gauges still count */
  feed(&t, "w1", 10, 3601, 3601000, "a", &(counts){.requests = 1010, .server_error = 501, .success = 9});
  telemetry_take(&t, "a", &d);
  assert_int_equal(d.requests, 10);
  assert_int_equal(d.server_error, 1);
  telemetry_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_delta_between_messages),
      cmocka_unit_test(test_sum_over_workers),
      cmocka_unit_test(test_restart_by_pid),
      cmocka_unit_test(test_restart_by_counters_going_down),
      cmocka_unit_test(test_old_worker_gives_baseline),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
