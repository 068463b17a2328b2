/* test_snapshot_msg.c — the snapshot message the workers receive carries every routing
 * setting: built from a parsed config and from the same config read back from SQLite,
 * packed with snap_build_msg, unpacked and checked field by field. Also the prefill
 * inference per provider when model_info does not say. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "config_import.h"
#include "keys.h"
#include "llmesh.pb-c.h"
#include "snapshot.h"
#include "store.h"

static const char *routing_yaml =
    "model_list:\n"
    "  - model_name: smart\n"
    "    litellm_params: {model: openai/gpt-4o, order: 1, input_cost_per_token: 0.0000025,"
    " output_cost_per_token: 0.00001}\n"
    "  - model_name: smart\n"
    "    litellm_params: {model: anthropic/claude-3-5-sonnet, order: 2}\n"
    "    model_info: {input_cost_per_token: 0.000003, output_cost_per_token: 0.000015}\n"
    "  - model_name: smart\n"
    "    litellm_params: {model: openai/gpt-4o-mini}\n"
    "    model_info: {supports_assistant_prefill: true}\n"
    "  - model_name: small\n"
    "    litellm_params: {model: anthropic/claude-3-haiku}\n"
    "    model_info: {supports_assistant_prefill: false}\n"
    "  - model_name: long\n"
    "    litellm_params: {model: openai/gpt-4-32k}\n"
    "router_settings:\n"
    "  num_retries: 3\n"
    "  routing_strategy: latency-based-routing\n"
    "  retry_backoff: 0.2\n"
    "  retry_backoff_max: 3\n"
    "  retry_budget_percent: 15\n"
    "  retry_budget_min_per_second: 4\n"
    "  total_timeout: 45\n"
    "  max_retry_after: 6\n"
    "  local_trip_failures: 4\n"
    "  local_cooldown: 2\n"
    "  mid_stream_fallback: error\n"
    "  fallbacks: [{smart: [small]}]\n"
    "  context_window_fallbacks: [{smart: [long]}, {small: long}]\n"
    "  model_group_settings:\n"
    "    smart: {routing_strategy: cost-based-routing, mid_stream_fallback: continue, hedge: true}\n"
    "litellm_settings:\n"
    "  content_policy_fallbacks: [{smart: [small, long]}]\n";

static Llmesh__Snapshot *build(const cfg_config *c) {
  snap_meta m = {.epoch = 11, .version = 7, .telemetry_url = "tcp://127.0.0.1:1"};
  nng_msg *msg = NULL;
  assert_int_equal(snap_build_msg(c, &m, 1234, &msg), 0);
  Llmesh__Snapshot *s = llmesh__snapshot__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
  nng_msg_free(msg);
  assert_non_null(s);
  assert_int_equal(s->version, 7);
  return s;
}

static const Llmesh__Deployment *sdep(const Llmesh__Snapshot *s, const char *name) {
  for (size_t i = 0; i < s->n_deployments; i++)
    if (!strcmp(s->deployments[i]->name, name)) return s->deployments[i];
  fail_msg("no deployment %s in the snapshot", name);
  return NULL;
}

static const Llmesh__ModelGroup *sgroup(const Llmesh__Snapshot *s, const char *name) {
  for (size_t i = 0; i < s->n_groups; i++)
    if (!strcmp(s->groups[i]->name, name)) return s->groups[i];
  fail_msg("no group %s in the snapshot", name);
  return NULL;
}

static void check_routing_snapshot(const Llmesh__Snapshot *s) {
  const Llmesh__RouterSettings *r = s->router;
  assert_non_null(r);
  assert_int_equal(r->num_retries, 3);
  assert_string_equal(r->routing_strategy, "latency-based-routing");
  assert_int_equal(r->retry_backoff_ms, 200);
  assert_int_equal(r->retry_backoff_max_ms, 3000);
  assert_int_equal(r->retry_budget_percent, 15);
  assert_int_equal(r->retry_budget_min_per_s, 4);
  assert_int_equal(r->total_timeout_ms, 45000);
  assert_int_equal(r->max_retry_after_ms, 6000);
  assert_int_equal(r->local_trip_failures, 4);
  assert_int_equal(r->local_cooldown_ms, 2000);
  assert_string_equal(r->mid_stream_fallback, "error");

  const Llmesh__Deployment *d = sdep(s, "smart-1");
  assert_int_equal(d->order, 1);
  assert_true(d->input_cost_per_token == 0.0000025);
  assert_true(d->output_cost_per_token == 0.00001);
  assert_false(d->supports_prefill); /* openai, not configured */
  d = sdep(s, "smart-2");
  assert_int_equal(d->order, 2);
  assert_true(d->input_cost_per_token == 0.000003);
  assert_true(d->output_cost_per_token == 0.000015);
  assert_true(d->supports_prefill); /* anthropic, inferred */
  d = sdep(s, "smart-3");
  assert_int_equal(d->order, 0);
  assert_true(d->input_cost_per_token == 0);
  assert_true(d->supports_prefill); /* configured true beats the openai default */
  assert_false(sdep(s, "small-1")->supports_prefill); /* configured false beats anthropic */

  const Llmesh__ModelGroup *g = sgroup(s, "smart");
  assert_int_equal(g->n_fallbacks, 1);
  assert_string_equal(g->fallbacks[0], "small");
  assert_int_equal(g->n_context_window_fallbacks, 1);
  assert_string_equal(g->context_window_fallbacks[0], "long");
  assert_int_equal(g->n_content_policy_fallbacks, 2);
  assert_string_equal(g->content_policy_fallbacks[0], "small");
  assert_string_equal(g->content_policy_fallbacks[1], "long");
  assert_string_equal(g->routing_strategy, "cost-based-routing");
  assert_string_equal(g->mid_stream_fallback, "continue");
  assert_true(g->hedge);
  g = sgroup(s, "small");
  assert_int_equal(g->n_context_window_fallbacks, 1);
  assert_string_equal(g->context_window_fallbacks[0], "long");
  assert_int_equal(g->n_content_policy_fallbacks, 0);
  assert_string_equal(g->routing_strategy, ""); /* router's */
  assert_string_equal(g->mid_stream_fallback, "");
  assert_false(g->hedge);
}

static void test_snapshot_carries_routing(void **state) {
  cfg_config c;
  char err[512];
  assert_int_equal(cfg_parse_string("t.yaml", routing_yaml, strlen(routing_yaml), &c, err, sizeof err), 0);
  Llmesh__Snapshot *s = build(&c);
  check_routing_snapshot(s);
  llmesh__snapshot__free_unpacked(s, NULL);
  cfg_free(&c);
}

/* The control plane builds snapshots from database rows: the same message after a round trip. */
static void test_snapshot_after_store(void **state) {
  char dir[] = "/tmp/llmesh-snap-XXXXXX", db[64], err[512];
  assert_non_null(mkdtemp(dir));
  snprintf(db, sizeof db, "%s/llmesh.db", dir);
  keys_t keys;
  memset(keys.key, 3, sizeof keys.key);
  cfg_config a, b;
  uint64_t v;
  int changed;
  store_t *st = NULL;
  assert_int_equal(cfg_parse_string("t.yaml", routing_yaml, strlen(routing_yaml), &a, err, sizeof err), 0);
  assert_int_equal(store_open(&st, db, err, sizeof err), 0);
  assert_int_equal(store_import(st, &keys, &a, &v, &changed, err, sizeof err), 0);
  assert_int_equal(store_load(st, &keys, &b, &v, err, sizeof err), 1);
  Llmesh__Snapshot *s = build(&b);
  check_routing_snapshot(s);
  llmesh__snapshot__free_unpacked(s, NULL);
  cfg_free(&a);
  cfg_free(&b);
  store_close(st);
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  assert_int_equal(system(cmd), 0);
}

static void test_defaults_in_snapshot(void **state) {
  cfg_config c;
  char err[512];
  const char *yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: openai/x}\n";
  assert_int_equal(cfg_parse_string("t.yaml", yaml, strlen(yaml), &c, err, sizeof err), 0);
  Llmesh__Snapshot *s = build(&c);
  const Llmesh__RouterSettings *r = s->router;
  assert_string_equal(r->routing_strategy, CFG_DEFAULT_ROUTING_STRATEGY);
  assert_int_equal(r->retry_backoff_ms, CFG_DEFAULT_RETRY_BACKOFF_MS);
  assert_int_equal(r->retry_backoff_max_ms, CFG_DEFAULT_RETRY_BACKOFF_MAX_MS);
  assert_int_equal(r->retry_budget_percent, CFG_DEFAULT_RETRY_BUDGET_PERCENT);
  assert_int_equal(r->retry_budget_min_per_s, CFG_DEFAULT_RETRY_BUDGET_MIN_PER_S);
  assert_int_equal(r->total_timeout_ms, 0);
  assert_int_equal(r->max_retry_after_ms, CFG_DEFAULT_MAX_RETRY_AFTER_MS);
  assert_int_equal(r->local_trip_failures, CFG_DEFAULT_LOCAL_TRIP_FAILURES);
  assert_int_equal(r->local_cooldown_ms, CFG_DEFAULT_LOCAL_COOLDOWN_MS);
  assert_string_equal(r->mid_stream_fallback, "continue");
  assert_int_equal(s->deployments[0]->order, 0);
  assert_false(s->deployments[0]->supports_prefill);
  assert_int_equal(s->groups[0]->n_context_window_fallbacks, 0);
  assert_false(s->groups[0]->hedge);
  llmesh__snapshot__free_unpacked(s, NULL);
  cfg_free(&c);
}

/* supports_prefill unset: Anthropic, Claude on Bedrock / Vertex, DeepSeek, Mistral, Ollama. */
static void test_prefill_inference(void **state) {
  static const struct {
    const char *provider, *model;
    int want;
  } cases[] = {
      {"anthropic", "claude-3-haiku", 1},
      {"bedrock", "anthropic.claude-3-5-sonnet-20240620-v1:0", 1},
      {"bedrock", "us.anthropic.claude-3-haiku", 1},
      {"bedrock", "meta.llama3-70b-instruct-v1:0", 0},
      {"vertex_ai", "claude-3-5-sonnet-v2@20241022", 1},
      {"vertex_ai", "gemini-1.5-pro", 0},
      {"deepseek", "deepseek-chat", 1},
      {"mistral", "mistral-large-latest", 1},
      {"ollama", "llama3.1", 1},
      {"openai", "gpt-4o", 0},
      {"openai", "claude-via-proxy", 0}, /* an OpenAI-compatible proxy: the API decides, not the name */
      {"gemini", "gemini-1.5-pro", 0},
      {"groq", "llama-3.1-70b", 0},
      {"azure", "gpt-4o", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    cfg_deployment d = {.provider = (char *)cases[i].provider, .upstream_model = (char *)cases[i].model,
                        .supports_prefill = -1};
    if (snap_supports_prefill(&d) != cases[i].want)
      fail_msg("%s/%s: want %d", cases[i].provider, cases[i].model, cases[i].want);
    d.supports_prefill = !cases[i].want; /* configured always wins */
    assert_int_equal(snap_supports_prefill(&d), !cases[i].want);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_snapshot_carries_routing),
      cmocka_unit_test(test_snapshot_after_store),
      cmocka_unit_test(test_defaults_in_snapshot),
      cmocka_unit_test(test_prefill_inference),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
