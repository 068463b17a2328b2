/* test_route.c — weights (statistically, seeded), exclusions, different-provider
 * preference, fallback order; built through snapshot_build from a protobuf message. */
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

static uint64_t splitmix(void *ctx) {
  uint64_t *x = ctx, z = (*x += 0x9E3779B97F4A7C15ULL);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
  return z ^ (z >> 31);
}

static char *dupstr(const char *s) { return strdup(s); }

/* Builds a snapshot: deps as "name,group,provider,weight" strings; fallbacks for g. */
static snapshot *make(const char **deps, int nd, const char *g, const char **fbs, int nfb,
                      uint32_t retries) {
  Llmesh__Snapshot *pb = calloc(1, sizeof *pb);
  llmesh__snapshot__init(pb);
  pb->version = 1;
  pb->router = calloc(1, sizeof *pb->router);
  llmesh__router_settings__init(pb->router);
  pb->router->num_retries = retries;
  pb->deployments = calloc((size_t)nd, sizeof *pb->deployments);
  for (int i = 0; i < nd; i++) {
    Llmesh__Deployment *d = calloc(1, sizeof *d);
    llmesh__deployment__init(d);
    char tmp[128], *p = tmp;
    strcpy(tmp, deps[i]);
    d->name = dupstr(strsep(&p, ","));
    d->model_group = dupstr(strsep(&p, ","));
    d->provider = dupstr(strsep(&p, ","));
    d->weight = (uint32_t)atoi(strsep(&p, ","));
    d->upstream_model = dupstr("m");
    d->api_base = dupstr("http://127.0.0.1:1/v1");
    d->api_key = dupstr("");
    pb->deployments[pb->n_deployments++] = d;
  }
  if (g) {
    pb->groups = calloc(1, sizeof *pb->groups);
    Llmesh__ModelGroup *mg = calloc(1, sizeof *mg);
    llmesh__model_group__init(mg);
    mg->name = dupstr(g);
    mg->fallbacks = calloc((size_t)nfb + 1, sizeof(char *));
    for (int i = 0; i < nfb; i++) mg->fallbacks[mg->n_fallbacks++] = dupstr(fbs[i]);
    pb->groups[pb->n_groups++] = mg;
  }
  /* free_unpacked frees with the default allocator: everything above is malloc'd */
  snapshot *s = snapshot_build(pb);
  assert_non_null(s);
  return s;
}

static const char *name_of(const snapshot *s, int i) { return i < 0 ? "-" : s->deps[i].name; }

static void test_weights(void **st) {
  (void)st;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,3", "c,g,mistral,6"};
  snapshot *s = make(deps, 3, NULL, NULL, 0, 0);
  uint64_t seed = 42;
  route_rng rng = {splitmix, &seed};
  int counts[3] = {0};
  int g = snapshot_group_find(s, "g");
  assert_true(g >= 0);
  for (int i = 0; i < 100000; i++) {
    route_state rs;
    route_init(&rs, s, g);
    counts[route_pick(&rs, s, &rng, 0)]++;
  }
  /* expected 10%, 30%, 60%: allow ±1.5 points */
  assert_in_range(counts[0], 8500, 11500);
  assert_in_range(counts[1], 28500, 31500);
  assert_in_range(counts[2], 58500, 61500);
  snapshot_unref(s);
}

static void test_exclusion_and_budget(void **st) {
  (void)st;
  const char *deps[] = {"a,g,openai,1", "b,g,openai,1", "c,g,openai,1"};
  snapshot *s = make(deps, 3, NULL, NULL, 0, 5);
  uint64_t seed = 7;
  route_rng rng = {splitmix, &seed};
  route_state rs;
  route_init(&rs, s, 0);
  int seen[3] = {0};
  for (int i = 0; i < 3; i++) {
    int d = route_pick(&rs, s, &rng, 0);
    assert_true(d >= 0);
    assert_int_equal(seen[d], 0); /* never the same deployment twice */
    seen[d] = 1;
    route_failed(&rs, s, d, 0);
  }
  assert_int_equal(route_pick(&rs, s, &rng, 0), -1);
  snapshot_unref(s);

  /* num_retries = 1: two attempts in the group, however many deployments */
  s = make(deps, 3, NULL, NULL, 0, 1);
  route_init(&rs, s, 0);
  assert_true(route_pick(&rs, s, &rng, 0) >= 0);
  assert_true(route_pick(&rs, s, &rng, 0) >= 0);
  assert_int_equal(route_pick(&rs, s, &rng, 0), -1);
  snapshot_unref(s);
}

static void test_different_provider(void **st) {
  (void)st;
  /* after an openai failure, the groq deployment is chosen even with a tiny weight */
  const char *deps[] = {"a,g,openai,1000", "b,g,openai,1000", "c,g,groq,1"};
  snapshot *s = make(deps, 3, NULL, NULL, 0, 3);
  uint64_t seed = 1;
  route_rng rng = {splitmix, &seed};
  for (int i = 0; i < 200; i++) {
    route_state rs;
    route_init(&rs, s, 0);
    int d = route_pick(&rs, s, &rng, 0);
    if (strcmp(name_of(s, d), "c") == 0) continue; /* rare first pick */
    route_failed(&rs, s, d, 0);
    /* a fake clock that lets the retry budget refill (10 tokens/s) */
    assert_string_equal(name_of(s, route_pick(&rs, s, &rng, 1000 + (uint64_t)i * 1000)), "c");
  }
  snapshot_unref(s);
}

/* A family without an adapter (cohere, sagemaker) is never picked; a group of only those
 * has nothing to try (503). An adapter family (anthropic) is routable. */
static void test_unsupported_family(void **st) {
  (void)st;
  const char *deps[] = {"az,g,cohere,1000", "br,g,sagemaker,1000", "oa,g,openai,1", "an,h,anthropic,1",
                        "x,u,replicate,1"};
  snapshot *s = make(deps, 5, NULL, NULL, 0, 5);
  uint64_t seed = 7;
  route_rng rng = {splitmix, &seed};
  assert_true(s->deps[0].unsupported && s->deps[1].unsupported && s->deps[4].unsupported);
  assert_false(s->deps[2].unsupported || s->deps[3].unsupported);
  assert_non_null(s->deps[3].ops);
  assert_null(s->deps[2].ops);
  for (int i = 0; i < 50; i++) {
    route_state rs;
    route_init(&rs, s, snapshot_group_find(s, "g"));
    assert_string_equal(name_of(s, route_pick(&rs, s, &rng, 0)), "oa");
    assert_int_equal(route_pick(&rs, s, &rng, 0), -1);
  }
  route_state rs;
  route_init(&rs, s, snapshot_group_find(s, "u"));
  assert_int_equal(route_pick(&rs, s, &rng, 0), -1);
  route_init(&rs, s, snapshot_group_find(s, "h"));
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, 0)), "an");
  snapshot_unref(s);
}

static void test_fallbacks(void **st) {
  (void)st;
  const char *deps[] = {"a1,a,openai,1", "b1,b,openai,1", "c1,c,groq,1", "c2,c,groq,1"};
  const char *fbs[] = {"c", "missing", "b", "a"};
  snapshot *s = make(deps, 4, "a", fbs, 4, 1);
  uint64_t seed = 3;
  route_rng rng = {splitmix, &seed};
  route_state rs;
  route_init(&rs, s, snapshot_group_find(s, "a"));
  const char *order[6];
  for (int i = 0; i < 6; i++) {
    int d = route_pick(&rs, s, &rng, 0);
    order[i] = name_of(s, d);
    if (d >= 0) route_failed(&rs, s, d, 0);
  }
  assert_string_equal(order[0], "a1");              /* primary group first */
  assert_true(order[1][0] == 'c' && order[2][0] == 'c'); /* then fallback c, its budget of 2 */
  assert_string_equal(order[3], "b1");              /* unknown group skipped, then b */
  assert_string_equal(order[4], "-");               /* a is not tried again */
  snapshot_unref(s);
}

/* ---- issue 5: breakers, tiers, strategies, budgets, re-tries, diverts ---------------- */

#define T0 100000 /* the fake loop clock of these tests, ms */

static int idx_of(const snapshot *s, const char *name) {
  for (int i = 0; i < s->ndeps; i++)
    if (!strcmp(s->deps[i].name, name)) return i;
  fail_msg("no deployment %s", name);
  return -1;
}

static dep_state *st_of(const snapshot *s, const char *name) { return s->deps[idx_of(s, name)].st; }

/* First picks of n fresh requests in group g: counts per deployment index. */
static void first_picks(const snapshot *s, int g, route_rng *rng, int n, int *counts) {
  for (int i = 0; i < n; i++) {
    route_state rs;
    route_init(&rs, s, g);
    int d = route_pick(&rs, s, rng, T0);
    assert_true(d >= 0);
    counts[d]++;
  }
}

static void test_refusals(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1", "c,g,mistral,1", "d,g,xai,1"};
  snapshot *s = make(deps, 4, NULL, NULL, 0, 3);
  uint64_t seed = 5;
  route_rng rng = {splitmix, &seed};
  st_of(s, "a")->local = BRK_OPEN;
  st_of(s, "a")->open_until_ms = T0 + 800;
  st_of(s, "b")->cooldown_until_ms = T0 + 300;
  st_of(s, "c")->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_DRAINED;
  st_of(s, "d")->cred_failed_until_ms = T0 + 5000;
  route_state rs;
  route_init(&rs, s, 0);
  assert_int_equal(route_pick(&rs, s, &rng, T0), -1);
  assert_int_equal(rs.refused[BR_LOCAL_OPEN], 1);
  assert_int_equal(rs.refused[BR_COOLING], 1);
  assert_int_equal(rs.refused[BR_DRAINED], 1);
  assert_int_equal(rs.refused[BR_CREDENTIAL], 1);
  assert_int_equal(rs.soonest_ms, 300);
  assert_int_equal(rs.ntried, 0);
  /* the cooldown is over: b, and the refusals are counted afresh per pick */
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0 + 300)), "b");
  assert_int_equal(rs.refused[BR_COOLING], 0);
  assert_int_equal(rs.refused[BR_LOCAL_OPEN], 1);
  assert_int_equal(rs.soonest_ms, 500);
  assert_false(rs.is_retry);
  snapshot_unref(s);
}

static void test_tiers(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,100", "c,g,mistral,100", "e,g,xai,100"};
  snapshot *s = make(deps, 4, NULL, NULL, 0, 3);
  uint64_t seed = 9;
  route_rng rng = {splitmix, &seed};
  s->deps[idx_of(s, "a")].order = 1;
  s->deps[idx_of(s, "b")].order = 2;
  s->deps[idx_of(s, "e")].order = 2; /* c: 0 = after every numbered tier */
  int counts[4] = {0};
  first_picks(s, 0, &rng, 200, counts);
  assert_int_equal(counts[idx_of(s, "a")], 200); /* the lowest tier wins whatever the weights */
  st_of(s, "a")->cooldown_until_ms = T0 + 1;
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 400, counts);
  assert_int_equal(counts[idx_of(s, "c")], 0);
  assert_in_range(counts[idx_of(s, "b")], 120, 280); /* tier 2 shared */
  assert_int_equal(counts[idx_of(s, "b")] + counts[idx_of(s, "e")], 400);
  st_of(s, "b")->local = BRK_OPEN, st_of(s, "b")->open_until_ms = T0 + 1;
  st_of(s, "e")->local = BRK_OPEN, st_of(s, "e")->open_until_ms = T0 + 1;
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 50, counts);
  assert_int_equal(counts[idx_of(s, "c")], 50);
  /* the order is per attempt: after a fails, b/e (tier 2) come before c */
  st_of(s, "a")->cooldown_until_ms = 0;
  st_of(s, "b")->local = BRK_CLOSED, st_of(s, "e")->local = BRK_CLOSED;
  route_state rs;
  route_init(&rs, s, 0);
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0)), "a");
  route_failed(&rs, s, idx_of(s, "a"), 0);
  int d = route_pick(&rs, s, &rng, T0);
  assert_true(!strcmp(name_of(s, d), "b") || !strcmp(name_of(s, d), "e"));
  assert_true(rs.is_retry);
  snapshot_unref(s);
}

static void test_shuffle_control_weight(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1"};
  snapshot *s = make(deps, 2, NULL, NULL, 0, 0);
  uint64_t seed = 11;
  route_rng rng = {splitmix, &seed};
  int a = idx_of(s, "a"), counts[2] = {0};
  st_of(s, "a")->ctl_weight_milli = 250; /* 250 : 1000 → 20 % */
  first_picks(s, 0, &rng, 20000, counts);
  assert_in_range(counts[a], 3600, 4400);
  st_of(s, "a")->ctl_weight_milli = 1000;
  st_of(s, "a")->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN;
  st_of(s, "a")->ctl_probe_share_milli = 100; /* 10 % of its 50 % → 5 % */
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 20000, counts);
  assert_in_range(counts[a], 850, 1150);
  snapshot_unref(s);
}

/* Half-open admission is a per-pick draw, not a weight: when every deployment is
 * half-open, each still gets only its probe share, and the rest of the picks find nothing
 * (refused as control_open) instead of sending everything to the half-open ones. */
static void test_half_open_probe_share(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1"};
  snapshot *s = make(deps, 2, NULL, NULL, 0, 0);
  uint64_t seed = 17;
  route_rng rng = {splitmix, &seed};
  int counts[2] = {0}, none = 0, refused = 0;
  for (int i = 0; i < 2; i++) {
    s->deps[i].st->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN;
    s->deps[i].st->ctl_probe_share_milli = 100;
  }
  for (int i = 0; i < 20000; i++) {
    route_state rs;
    route_init(&rs, s, 0);
    int d = route_pick(&rs, s, &rng, T0);
    if (d < 0) {
      none++;
      refused += rs.refused[BR_CONTROL_OPEN];
      assert_int_equal(rs.probe_held, rs.refused[BR_CONTROL_OPEN]);
      assert_int_equal(rs.soonest_ms, 0); /* no known reopen time */
    } else {
      counts[d]++;
    }
  }
  /* each: 10 % × (90 % alone + 10 % × half of both) = 9.5 %; nothing: 81 % */
  assert_in_range(counts[0], 1650, 2150);
  assert_in_range(counts[1], 1650, 2150);
  assert_in_range(none, 15800, 16600);
  assert_int_equal(refused, 2 * none);
  /* a full share (or a closed circuit) is never held back */
  st_of(s, "a")->ctl_probe_share_milli = 1000;
  st_of(s, "b")->ctl_state = LLMESH__CIRCUIT_STATE__CIRCUIT_CLOSED;
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 2000, counts);
  assert_int_equal(counts[0] + counts[1], 2000);
  assert_in_range(counts[0], 850, 1150);
  snapshot_unref(s);
}

static void test_power_of_two(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1"};
  snapshot *s = make(deps, 2, NULL, NULL, 0, 0);
  uint64_t seed = 13;
  route_rng rng = {splitmix, &seed};
  int counts[2] = {0};
  st_of(s, "a")->in_flight = 5; /* a wins only when both draws are a: 25 % */
  first_picks(s, 0, &rng, 20000, counts);
  assert_in_range(counts[idx_of(s, "a")], 4500, 5500);
  snapshot_unref(s);
}

static void test_latency_strategy(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1", "c,g,mistral,1"};
  snapshot *s = make(deps, 3, NULL, NULL, 0, 0);
  uint64_t seed = 17;
  route_rng rng = {splitmix, &seed};
  s->groups[0].strategy = ROUTE_LATENCY;
  st_of(s, "a")->lat_ewma_ms = 100;
  st_of(s, "b")->lat_ewma_ms = 109; /* within 10 % */
  st_of(s, "c")->lat_ewma_ms = 111;
  int counts[3] = {0};
  first_picks(s, 0, &rng, 2000, counts);
  assert_int_equal(counts[idx_of(s, "c")], 0);
  assert_in_range(counts[idx_of(s, "a")], 800, 1200);
  /* no local sample: the control plane's EWMA */
  st_of(s, "a")->lat_ewma_ms = 0;
  st_of(s, "a")->ctl_latency_ms = 50;
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 200, counts);
  assert_int_equal(counts[idx_of(s, "a")], 200);
  snapshot_unref(s);
}

static void test_least_busy(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,10", "b,g,groq,1", "c,g,mistral,1"};
  snapshot *s = make(deps, 3, NULL, NULL, 0, 0);
  uint64_t seed = 19;
  route_rng rng = {splitmix, &seed};
  s->groups[0].strategy = ROUTE_LEAST_BUSY;
  st_of(s, "a")->in_flight = 2;
  st_of(s, "b")->in_flight = 1;
  st_of(s, "c")->in_flight = 1;
  int counts[3] = {0};
  first_picks(s, 0, &rng, 2000, counts);
  assert_int_equal(counts[idx_of(s, "a")], 0); /* its weight does not help it */
  assert_in_range(counts[idx_of(s, "b")], 850, 1150);
  snapshot_unref(s);
}

static void test_usage_strategy(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,10", "b,g,groq,1", "c,g,mistral,1"};
  snapshot *s = make(deps, 3, NULL, NULL, 0, 0);
  uint64_t seed = 23;
  route_rng rng = {splitmix, &seed};
  s->groups[0].strategy = ROUTE_USAGE;
  int counts[3] = {0};
  first_picks(s, 0, &rng, 3000, counts); /* no limits anywhere: weighted */
  assert_in_range(counts[idx_of(s, "a")], 2300, 2700);
  s->deps[idx_of(s, "a")].tpm = 1000;
  st_of(s, "a")->ctl_tpm_used = 900;   /* 90 % */
  s->deps[idx_of(s, "b")].rpm = 100;
  st_of(s, "b")->ctl_rpm_used = 10;    /* 10 % */
  s->deps[idx_of(s, "c")].tpm = 100;
  st_of(s, "c")->ctl_tpm_used = 50;    /* 50 % */
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 300, counts);
  assert_int_equal(counts[idx_of(s, "b")], 300);
  snapshot_unref(s);
}

static void test_cost_strategy(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1", "c,g,mistral,100", "e,g,xai,1"};
  snapshot *s = make(deps, 4, NULL, NULL, 0, 0);
  uint64_t seed = 29;
  route_rng rng = {splitmix, &seed};
  s->groups[0].strategy = ROUTE_COST;
  s->deps[idx_of(s, "a")].input_cost = 3e-6;
  s->deps[idx_of(s, "b")].input_cost = 1e-6;
  s->deps[idx_of(s, "b")].output_cost = 1e-6;
  s->deps[idx_of(s, "e")].output_cost = 2e-6; /* the same total as b: a tie */
  int counts[4] = {0};
  first_picks(s, 0, &rng, 1000, counts);
  assert_int_equal(counts[idx_of(s, "a")] + counts[idx_of(s, "c")], 0);
  assert_in_range(counts[idx_of(s, "b")], 400, 600);
  st_of(s, "b")->cooldown_until_ms = T0 + 1;
  st_of(s, "e")->cooldown_until_ms = T0 + 1;
  memset(counts, 0, sizeof counts);
  first_picks(s, 0, &rng, 100, counts);
  assert_int_equal(counts[idx_of(s, "a")], 100); /* unknown cost (c) last */
  snapshot_unref(s);
}

static void test_retry_budget(void **unused) {
  (void)unused;
  const char *deps[] = {"a,g,openai,1", "b,g,groq,1"};
  snapshot *s = make(deps, 2, NULL, NULL, 0, 3);
  uint64_t seed = 31;
  route_rng rng = {splitmix, &seed};
  s->deps[idx_of(s, "a")].order = 1;
  dep_state *a = st_of(s, "a"), *b = st_of(s, "b");
  b->budget_tokens = 0;
  b->budget_last_ms = T0;
  route_state rs;
  route_init(&rs, s, 0);
  double before = a->budget_tokens;
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0)), "a");
  assert_true(a->budget_tokens > before); /* a first attempt deposits */
  route_failed(&rs, s, idx_of(s, "a"), 0);
  assert_int_equal(route_pick(&rs, s, &rng, T0), -1); /* b has no token */
  assert_int_equal(rs.budget_refused, 1);
  assert_int_equal(b->budget_exhausted, 1);
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0 + 100)), "b"); /* 10/s refill */
  assert_true(rs.is_retry);
  assert_int_equal(rs.budget_refused, 0);
  assert_int_equal(b->retries, 1);
  snapshot_unref(s);
}

static void test_retry_same_deployment(void **unused) {
  (void)unused;
  const char *one[] = {"a,g,openai,1"};
  snapshot *s = make(one, 1, NULL, NULL, 0, 3);
  uint64_t seed = 37;
  route_rng rng = {splitmix, &seed};
  route_state rs;
  /* a silent timeout / connect failure: never the same route again */
  route_init(&rs, s, 0);
  assert_int_equal(route_pick(&rs, s, &rng, T0), 0);
  route_failed(&rs, s, 0, 0);
  assert_int_equal(route_pick(&rs, s, &rng, T0), -1);
  /* a 5xx: re-tried after a jittered, doubling backoff (100, 200, 400 ms caps) */
  uint32_t max[3] = {0};
  for (int i = 0; i < 300; i++) {
    route_init(&rs, s, 0);
    assert_int_equal(route_pick(&rs, s, &rng, T0 + (uint64_t)i * 1000), 0);
    assert_int_equal(rs.backoff_ms, 0);
    for (int k = 0; k < 3; k++) {
      route_failed(&rs, s, 0, 1);
      assert_int_equal(route_pick(&rs, s, &rng, T0 + (uint64_t)i * 1000), 0);
      assert_in_range(rs.backoff_ms, 1, 100u << k);
      if (rs.backoff_ms > max[k]) max[k] = rs.backoff_ms;
    }
    route_failed(&rs, s, 0, 1);
    assert_int_equal(route_pick(&rs, s, &rng, T0), -1); /* 1 + num_retries attempts */
  }
  assert_true(max[0] > 50 && max[1] > 150 && max[2] > 300);
  snapshot_unref(s);

  /* an untried deployment comes first, and the budget applies to re-tries too */
  const char *two[] = {"a,g,openai,1", "b,g,groq,1"};
  s = make(two, 2, NULL, NULL, 0, 3);
  route_init(&rs, s, 0);
  int first = route_pick(&rs, s, &rng, T0);
  route_failed(&rs, s, first, 1);
  int second = route_pick(&rs, s, &rng, T0);
  assert_int_not_equal(second, first);
  assert_int_equal(rs.backoff_ms, 0);
  route_failed(&rs, s, second, 0);
  s->deps[first].st->budget_tokens = 0;
  s->deps[first].st->budget_last_ms = T0;
  assert_int_equal(route_pick(&rs, s, &rng, T0), -1);
  assert_int_equal(rs.budget_refused, 1);
  assert_int_equal(route_pick(&rs, s, &rng, T0 + 1000), first);
  assert_true(rs.backoff_ms >= 1);
  snapshot_unref(s);
}

static int *ints(int a) {
  int *p = malloc(sizeof *p);
  *p = a;
  return p;
}

static void test_divert(void **unused) {
  (void)unused;
  const char *deps[] = {"a1,a,openai,1", "b1,b,openai,1", "c1,c,groq,1", "d1,d,xai,1"};
  const char *fbs[] = {"b"};
  snapshot *s = make(deps, 4, "a", fbs, 1, 0);
  uint64_t seed = 41;
  route_rng rng = {splitmix, &seed};
  int a = snapshot_group_find(s, "a"), c = snapshot_group_find(s, "c"), d = snapshot_group_find(s, "d");
  s->groups[a].cw_fallbacks = ints(c), s->groups[a].ncw_fallbacks = 1;
  s->groups[c].cp_fallbacks = ints(d), s->groups[c].ncp_fallbacks = 1;
  route_state rs;
  route_init(&rs, s, a);
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0)), "a1");
  assert_int_equal(route_divert(&rs, s, ROUTE_DIVERT_CONTENT_POLICY), -1); /* a has none */
  assert_int_equal(route_divert(&rs, s, ROUTE_DIVERT_CONTEXT_WINDOW), 0);
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0)), "c1"); /* not b: the general chain is gone */
  assert_int_equal(route_divert(&rs, s, ROUTE_DIVERT_CONTEXT_WINDOW), -1);
  assert_int_equal(route_divert(&rs, s, ROUTE_DIVERT_CONTENT_POLICY), 0); /* c's own list */
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0)), "d1");
  assert_int_equal(route_pick(&rs, s, &rng, T0), -1);
  /* without a divert, the general fallbacks */
  route_init(&rs, s, a);
  route_pick(&rs, s, &rng, T0);
  assert_string_equal(name_of(s, route_pick(&rs, s, &rng, T0)), "b1");
  snapshot_unref(s);
}

static void test_strategy_names(void **unused) {
  (void)unused;
  assert_int_equal(route_strategy_parse("latency-based-routing"), ROUTE_LATENCY);
  assert_int_equal(route_strategy_parse("usage-based-routing-v2"), ROUTE_USAGE);
  assert_int_equal(route_strategy_parse("cost-based-routing"), ROUTE_COST);
  assert_int_equal(route_strategy_parse("least-busy"), ROUTE_LEAST_BUSY);
  assert_int_equal(route_strategy_parse(""), ROUTE_SIMPLE_SHUFFLE);
  assert_int_equal(route_strategy_parse(NULL), ROUTE_SIMPLE_SHUFFLE);
  assert_string_equal(route_strategy_name(ROUTE_COST), "cost-based-routing");
}

static int teardown(void **st) {
  (void)st;
  breaker_free_all(); /* every test builds its own snapshot: fresh breaker states */
  return 0;
}

static int group_teardown(void **st) {
  (void)st;
  metrics_free();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_teardown(test_weights, teardown),
      cmocka_unit_test_teardown(test_exclusion_and_budget, teardown),
      cmocka_unit_test_teardown(test_different_provider, teardown),
      cmocka_unit_test_teardown(test_fallbacks, teardown),
      cmocka_unit_test_teardown(test_unsupported_family, teardown),
      cmocka_unit_test_teardown(test_refusals, teardown),
      cmocka_unit_test_teardown(test_tiers, teardown),
      cmocka_unit_test_teardown(test_shuffle_control_weight, teardown),
      cmocka_unit_test_teardown(test_half_open_probe_share, teardown),
      cmocka_unit_test_teardown(test_power_of_two, teardown),
      cmocka_unit_test_teardown(test_latency_strategy, teardown),
      cmocka_unit_test_teardown(test_least_busy, teardown),
      cmocka_unit_test_teardown(test_usage_strategy, teardown),
      cmocka_unit_test_teardown(test_cost_strategy, teardown),
      cmocka_unit_test_teardown(test_retry_budget, teardown),
      cmocka_unit_test_teardown(test_retry_same_deployment, teardown),
      cmocka_unit_test_teardown(test_divert, teardown),
      cmocka_unit_test_teardown(test_strategy_names, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, group_teardown);
}
