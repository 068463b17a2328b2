/* test_route.c — weights (statistically, seeded), exclusions, different-provider
 * preference, fallback order; built through snapshot_build from a protobuf message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

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
    assert_string_equal(name_of(s, route_pick(&rs, s, &rng, 0)), "c");
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

static int teardown(void **st) {
  (void)st;
  metrics_free();
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_weights), cmocka_unit_test(test_exclusion_and_budget),
      cmocka_unit_test(test_different_provider), cmocka_unit_test(test_fallbacks),
      cmocka_unit_test(test_unsupported_family),
  };
  return cmocka_run_group_tests(tests, NULL, teardown);
}
