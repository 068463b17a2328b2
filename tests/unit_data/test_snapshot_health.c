/* test_snapshot_health.c — the issue-5 snapshot fields (tiers, costs, strategies, the
 * three fallback lists, router tunables and their defaults) and how snapshot_apply hands
 * the control plane's health to the breakers: a health-only change does not rebuild. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "breaker.h"
#include "metrics.h"
#include "route.h"
#include "snapshot.h"

/* A message on the stack: deployments a (group g, tier 2), b (g, tier 0), c (group h). */
typedef struct msg {
  Llmesh__Snapshot pb;
  Llmesh__RouterSettings router;
  Llmesh__ModelGroup g, h, *groups[2];
  Llmesh__Deployment d[3], *deps[3];
  Llmesh__DeploymentHealth hl[1], *health[1];
  char *cw[1], *cp[2], *fb[1];
} msg;

static void dep_init(Llmesh__Deployment *d, const char *name, const char *group) {
  llmesh__deployment__init(d);
  d->name = (char *)name;
  d->model_group = (char *)group;
  d->provider = (char *)"openai";
  d->upstream_model = (char *)"m";
  d->api_base = (char *)"http://127.0.0.1:1/v1";
  d->weight = 1;
}

static void msg_init(msg *m) {
  memset(m, 0, sizeof *m);
  llmesh__snapshot__init(&m->pb);
  llmesh__router_settings__init(&m->router);
  llmesh__model_group__init(&m->g);
  llmesh__model_group__init(&m->h);
  m->pb.epoch = 7;
  m->pb.version = 1;
  m->pb.router = &m->router;
  m->router.routing_strategy = (char *)"least-busy";
  m->router.mid_stream_fallback = (char *)"error";
  m->router.local_trip_failures = 4;
  m->router.retry_backoff_ms = 50;
  m->router.total_timeout_ms = 30000;
  dep_init(&m->d[0], "a", "g");
  dep_init(&m->d[1], "b", "g");
  dep_init(&m->d[2], "c", "h");
  m->d[0].order = 2;
  m->d[0].input_cost_per_token = 1e-6;
  m->d[0].output_cost_per_token = 2e-6;
  m->d[0].supports_prefill = 1;
  m->d[0].tpm = 1000;
  for (int i = 0; i < 3; i++) m->deps[i] = &m->d[i];
  m->pb.deployments = m->deps;
  m->pb.n_deployments = 3;
  m->g.name = (char *)"g";
  m->g.routing_strategy = (char *)"cost-based-routing";
  m->g.hedge = 1;
  m->g.mid_stream_fallback = (char *)"continue";
  m->cw[0] = (char *)"h";
  m->cp[0] = (char *)"missing";
  m->cp[1] = (char *)"h";
  m->fb[0] = (char *)"g"; /* itself: dropped */
  m->g.context_window_fallbacks = m->cw;
  m->g.n_context_window_fallbacks = 1;
  m->g.content_policy_fallbacks = m->cp;
  m->g.n_content_policy_fallbacks = 2;
  m->g.fallbacks = m->fb;
  m->g.n_fallbacks = 1;
  m->h.name = (char *)"h";
  m->groups[0] = &m->g;
  m->groups[1] = &m->h;
  m->pb.groups = m->groups;
  m->pb.n_groups = 2;
  llmesh__deployment_health__init(&m->hl[0]);
  m->hl[0].deployment = (char *)"b";
  m->hl[0].state = LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN;
  m->hl[0].open_remaining_ms = 5000;
  m->health[0] = &m->hl[0];
  m->pb.health = m->health;
  m->pb.n_health = 1;
  m->pb.health_version = 1;
}

/* Packs m and applies it; returns snapshot_apply's result. */
static int apply(msg *m) {
  size_t len = llmesh__snapshot__get_packed_size(&m->pb);
  uint8_t *buf = malloc(len + 1);
  assert_non_null(buf);
  llmesh__snapshot__pack(&m->pb, buf);
  int rc = snapshot_apply(buf, len);
  free(buf);
  return rc;
}

static void test_fields(void **unused) {
  (void)unused;
  msg m;
  msg_init(&m);
  assert_int_equal(apply(&m), 0);
  const snapshot *s = snapshot_current();
  assert_non_null(s);
  int g = snapshot_group_find(s, "g"), h = snapshot_group_find(s, "h");
  const snap_dep *a = &s->deps[0];
  assert_string_equal(a->name, "a");
  assert_ptr_equal(a->st, breaker_get("a"));
  assert_int_equal(a->order, 2);
  assert_int_equal(a->tpm, 1000);
  assert_true(a->input_cost == 1e-6 && a->output_cost == 2e-6);
  assert_int_equal(a->supports_prefill, 1);
  assert_int_equal(s->deps[1].supports_prefill, 0);
  assert_int_equal(s->groups[g].strategy, ROUTE_COST);       /* the group's own */
  assert_int_equal(s->groups[h].strategy, ROUTE_LEAST_BUSY); /* the router's */
  assert_int_equal(s->groups[g].hedge, 1);
  assert_int_equal(s->groups[g].mid_stream_continue, 1);
  assert_int_equal(s->groups[h].mid_stream_continue, 0);
  assert_int_equal(s->groups[g].ncw_fallbacks, 1);
  assert_int_equal(s->groups[g].cw_fallbacks[0], h);
  assert_int_equal(s->groups[g].ncp_fallbacks, 1); /* unknown name dropped */
  assert_int_equal(s->groups[g].cp_fallbacks[0], h);
  assert_int_equal(s->groups[g].nfallbacks, 0);    /* itself dropped */
  assert_int_equal(s->brk.local_trip_failures, 4);
  assert_int_equal(s->retry_backoff_ms, 50);
  assert_int_equal(s->retry_backoff_max_ms, 2000);  /* default */
  assert_int_equal(s->max_retry_after_ms, 10000);   /* default */
  assert_int_equal(s->total_timeout_ms, 30000);
  snapshot_shutdown();
}

static void test_old_control_plane_defaults(void **unused) {
  (void)unused;
  msg m;
  msg_init(&m);
  m.pb.router = NULL;
  m.pb.n_groups = 0;
  m.pb.n_health = 0;
  assert_int_equal(apply(&m), 0);
  const snapshot *s = snapshot_current();
  int g = snapshot_group_find(s, "g");
  assert_int_equal(s->groups[g].strategy, ROUTE_SIMPLE_SHUFFLE);
  assert_int_equal(s->groups[g].mid_stream_continue, 1);
  assert_int_equal(s->groups[g].ncw_fallbacks, 0);
  assert_int_equal(s->retry_backoff_ms, 100);
  assert_int_equal(s->total_timeout_ms, 0);
  assert_int_equal(s->brk.local_trip_failures, 0); /* breaker.c's default */
  snapshot_shutdown();
}

static void test_health_only_update(void **unused) {
  (void)unused;
  msg m;
  msg_init(&m);
  assert_int_equal(apply(&m), 0);
  snapshot *first = snapshot_current();
  dep_state *b = breaker_get("b");
  assert_int_equal(b->ctl_state, LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN); /* a new snapshot's health */
  assert_true(b->ctl_open_until_ms > 0);
  assert_int_equal(breaker_admit(b, b->ctl_open_until_ms - 1, NULL), BR_CONTROL_OPEN);

  /* same (epoch, version), same health_version: nothing happens */
  b->ctl_weight_milli = 123;
  assert_int_equal(apply(&m), 1);
  assert_int_equal(b->ctl_weight_milli, 123);

  /* same (epoch, version), new health_version: health only, no rebuild */
  m.pb.health_version = 2;
  m.hl[0].state = LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN;
  m.hl[0].probe_share_milli = 100;
  m.hl[0].weight_milli = 500;
  assert_int_equal(apply(&m), 1);
  assert_ptr_equal(snapshot_current(), first);
  assert_int_equal(b->ctl_state, LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN);
  assert_int_equal(b->ctl_weight_milli, 500);

  /* a new version without health entries: back to closed */
  m.pb.version = 2;
  m.pb.n_health = 0;
  assert_int_equal(apply(&m), 0);
  assert_ptr_not_equal(snapshot_current(), first);
  assert_int_equal(b->ctl_state, LLMESH__CIRCUIT_STATE__CIRCUIT_CLOSED);
  assert_int_equal(b->ctl_weight_milli, 1000);
  snapshot_shutdown();
}

static int teardown(void **unused) {
  (void)unused;
  snapshot_shutdown();
  breaker_free_all();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_fields, teardown),
      cmocka_unit_test_teardown(test_old_control_plane_defaults, teardown),
      cmocka_unit_test_teardown(test_health_only_update, teardown),
  };
  int rc = cmocka_run_group_tests(tests, NULL, NULL);
  metrics_free();
  return rc;
}
