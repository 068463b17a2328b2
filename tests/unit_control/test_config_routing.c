/* test_config_routing.c — the routing keys of issue 5: priority tiers, prices, prefill,
 * strategies, fallbacks by error kind (router_settings and litellm_settings), retry /
 * timeout / breaker tunables, per-group settings and health checks (interval, timeout,
 * the probe's prompt and max_tokens, model_info.health_check). Every key: a valid value,
 * its default, and each invalid case with its FILE:LINE message. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "config_import.h"

static char err[1024];

static int parse(const char *yaml, cfg_config *c) {
  err[0] = '\0';
  return cfg_parse_string("t.yaml", yaml, strlen(yaml), c, err, sizeof err);
}

/* Asserts that yaml fails with a message starting "t.yaml:LINE: " and containing want. */
static void expect_error(const char *yaml, int line, const char *want) {
  cfg_config c;
  char prefix[32];
  assert_int_equal(parse(yaml, &c), -1);
  snprintf(prefix, sizeof prefix, "t.yaml:%d: ", line);
  if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, want)) {
    print_error("got '%s', want prefix '%s' and '%s'\n", err, prefix, want);
    fail();
  }
  assert_null(c.deployments); /* freed on error */
}

/* Two groups a and b on lines 1-5; tail starts at line 6. */
#define BASE "model_list:\n  - model_name: a\n    litellm_params: {model: x}\n" \
             "  - model_name: b\n    litellm_params: {model: y}\n"

static void expect_tail_error(const char *tail, int line, const char *want) {
  char yaml[2048];
  snprintf(yaml, sizeof yaml, "%s%s", BASE, tail);
  expect_error(yaml, line, want);
}

static const cfg_deployment *dep(const cfg_config *c, const char *name) {
  for (size_t i = 0; i < c->ndeployments; i++)
    if (!strcmp(c->deployments[i].name, name)) return &c->deployments[i];
  fail_msg("no deployment %s", name);
  return NULL;
}

static const cfg_group *group(const cfg_config *c, const char *name) {
  const cfg_group *g = cfg_find_group(c, name);
  if (!g) fail_msg("no group %s", name);
  return g;
}

static void test_routing_keys(void **state) {
  cfg_config c;
  const char *yaml =
      "model_list:\n"
      "  - model_name: gpt-4\n"
      "    litellm_params:\n"
      "      model: openai/gpt-4o\n"
      "      order: 1\n"
      "      input_cost_per_token: 0.0000025\n"
      "      output_cost_per_token: 1e-5\n"
      "    model_info:\n"
      "      input_cost_per_token: 9\n"           /* litellm_params wins */
      "      supports_assistant_prefill: false\n"
      "  - model_name: gpt-4\n"
      "    model_info: {input_cost_per_token: 0.000003, output_cost_per_token: 0.000015,"
      " supports_assistant_prefill: Yes}\n"       /* model_info before litellm_params */
      "    litellm_params: {model: anthropic/claude-3-5-sonnet, order: 2}\n"
      "  - model_name: gpt-3.5\n"
      "    litellm_params: {model: openai/gpt-3.5-turbo}\n"
      "  - model_name: gpt-4-32k\n"
      "    litellm_params: {model: openai/gpt-4-32k}\n"
      "router_settings:\n"
      "  routing_strategy: usage-based-routing-v2\n"
      "  retry_backoff: 0.25\n"
      "  retry_backoff_max: 4\n"
      "  retry_budget_percent: 35\n"
      "  retry_budget_min_per_second: 3\n"
      "  total_timeout: 90\n"
      "  max_retry_after: 2.5\n"
      "  local_trip_failures: 5\n"
      "  local_cooldown: 0.5\n"
      "  mid_stream_fallback: error\n"
      "  fallbacks: [{gpt-4: [gpt-3.5]}]\n"
      "  context_window_fallbacks: [{\"gpt-3.5\": [\"gpt-4-32k\"]}, {gpt-4: gpt-4-32k}]\n"
      "  model_group_settings:\n"
      "    gpt-4: {routing_strategy: cost-based-routing, mid_stream_fallback: continue, hedge: true}\n"
      "    gpt-3.5: {hedge: off}\n"
      "    gpt-4-32k:\n"
      "litellm_settings:\n"
      "  content_policy_fallbacks: [{gpt-4: [gpt-3.5, gpt-4-32k]}]\n"
      "  drop_params: true\n"
      "general_settings:\n"
      "  background_health_checks: false\n"
      "  health_check_interval: 45\n"
      "  health_check_timeout: 2.5\n";
  assert_int_equal(parse(yaml, &c), 0);
  assert_int_equal(c.nwarnings, 1); /* only drop_params */
  assert_string_equal(c.warnings[0].path, "litellm_settings.drop_params");

  const cfg_deployment *d = dep(&c, "gpt-4-1");
  assert_int_equal(d->order, 1);
  assert_true(d->input_cost_per_token == 0.0000025);
  assert_true(d->output_cost_per_token == 1e-5);
  assert_int_equal(d->supports_prefill, 0);
  d = dep(&c, "gpt-4-2");
  assert_int_equal(d->order, 2);
  assert_true(d->input_cost_per_token == 0.000003);
  assert_true(d->output_cost_per_token == 0.000015);
  assert_int_equal(d->supports_prefill, 1);

  const cfg_router *r = &c.router;
  assert_string_equal(r->routing_strategy, "usage-based-routing");
  assert_int_equal(r->retry_backoff_ms, 250);
  assert_int_equal(r->retry_backoff_max_ms, 4000);
  assert_int_equal(r->retry_budget_percent, 35);
  assert_int_equal(r->retry_budget_min_per_s, 3);
  assert_int_equal(r->total_timeout_ms, 90000);
  assert_int_equal(r->max_retry_after_ms, 2500);
  assert_int_equal(r->local_trip_failures, 5);
  assert_int_equal(r->local_cooldown_ms, 500);
  assert_string_equal(r->mid_stream_fallback, "error");
  assert_false(r->probes_enabled);
  assert_int_equal(r->probe_interval_ms, 45000);
  assert_int_equal(r->probe_timeout_ms, 2500);

  const cfg_group *g = group(&c, "gpt-4");
  assert_int_equal(g->nfallbacks, 1);
  assert_string_equal(g->fallbacks[0], "gpt-3.5");
  assert_int_equal(g->ncw_fallbacks, 1);
  assert_string_equal(g->cw_fallbacks[0], "gpt-4-32k");
  assert_int_equal(g->ncp_fallbacks, 2);
  assert_string_equal(g->cp_fallbacks[0], "gpt-3.5");
  assert_string_equal(g->cp_fallbacks[1], "gpt-4-32k");
  assert_string_equal(g->routing_strategy, "cost-based-routing");
  assert_string_equal(g->mid_stream_fallback, "continue");
  assert_true(g->hedge);
  g = group(&c, "gpt-3.5");
  assert_int_equal(g->nfallbacks, 0);
  assert_int_equal(g->ncw_fallbacks, 1);
  assert_string_equal(g->cw_fallbacks[0], "gpt-4-32k");
  assert_int_equal(g->ncp_fallbacks, 0);
  assert_null(g->routing_strategy);
  assert_null(g->mid_stream_fallback);
  assert_false(g->hedge);
  g = group(&c, "gpt-4-32k");
  assert_int_equal(g->ncw_fallbacks + g->ncp_fallbacks + g->nfallbacks, 0);
  assert_false(g->hedge);
  cfg_free(&c);
  assert_null(c.groups);
}

static void test_routing_defaults(void **state) {
  cfg_config c;
  assert_int_equal(parse(BASE, &c), 0);
  const cfg_router *r = &c.router;
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
  assert_true(r->probes_enabled);
  assert_int_equal(r->probe_interval_ms, CFG_DEFAULT_PROBE_INTERVAL_MS);
  assert_int_equal(r->probe_timeout_ms, CFG_DEFAULT_PROBE_TIMEOUT_MS);
  /* the macros are the documented numbers */
  assert_int_equal(r->probe_interval_ms, 30000);
  assert_int_equal(r->probe_timeout_ms, 10000);
  assert_string_equal(r->probe_prompt, "ping");
  assert_int_equal(r->probe_max_tokens, 1);
  for (size_t i = 0; i < c.ndeployments; i++) {
    const cfg_deployment *d = &c.deployments[i];
    assert_int_equal(d->health_check, 1);
    assert_int_equal(d->order, 0);
    assert_true(d->input_cost_per_token == 0 && d->output_cost_per_token == 0);
    assert_int_equal(d->supports_prefill, -1);
  }
  for (size_t i = 0; i < c.ngroups; i++) {
    const cfg_group *g = &c.groups[i];
    assert_int_equal(g->ncw_fallbacks + g->ncp_fallbacks, 0);
    assert_null(g->cw_fallbacks);
    assert_null(g->routing_strategy);
    assert_null(g->mid_stream_fallback);
    assert_false(g->hedge);
  }
  cfg_free(&c);

  /* cfg_init alone (store_load's starting point) has the same router defaults */
  cfg_init(&c);
  assert_int_equal(c.router.retry_backoff_max_ms, CFG_DEFAULT_RETRY_BACKOFF_MAX_MS);
  assert_int_equal(c.router.local_trip_failures, CFG_DEFAULT_LOCAL_TRIP_FAILURES);
  assert_true(c.router.probes_enabled);
  assert_int_equal(c.router.probe_timeout_ms, CFG_DEFAULT_PROBE_TIMEOUT_MS);
  assert_int_equal(c.router.probe_max_tokens, CFG_DEFAULT_PROBE_MAX_TOKENS);
  assert_null(c.router.probe_prompt); /* = the default until a parse or load fills it */
  cfg_deployment *d = cfg_add_deployment(&c);
  assert_int_equal(d->supports_prefill, -1);
  assert_int_equal(d->health_check, 1);
  d->name = strdup("n"); /* cfg_free frees what is set */
  cfg_free(&c);
}

static void test_strategies(void **state) {
  static const char *const names[][2] = {
      {"simple-shuffle", "simple-shuffle"},
      {"latency-based-routing", "latency-based-routing"},
      {"least-busy", "least-busy"},
      {"usage-based-routing", "usage-based-routing"},
      {"usage-based-routing-v2", "usage-based-routing"},
      {"cost-based-routing", "cost-based-routing"},
  };
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    char yaml[512];
    cfg_config c;
    snprintf(yaml, sizeof yaml, BASE "router_settings:\n  routing_strategy: %s\n"
             "  model_group_settings: {b: {routing_strategy: %s}}\n", names[i][0], names[i][0]);
    assert_int_equal(parse(yaml, &c), 0);
    assert_string_equal(c.router.routing_strategy, names[i][1]);
    assert_string_equal(group(&c, "b")->routing_strategy, names[i][1]);
    assert_int_equal(c.nwarnings, 0);
    cfg_free(&c);
  }
}

#define VALID_STRATEGIES \
  "(valid: simple-shuffle, latency-based-routing, least-busy, usage-based-routing, cost-based-routing)"

static void test_deployment_errors(void **state) {
  expect_error("model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n      order: 0\n",
               5, "model_list[0].litellm_params.order: must be a positive integer, got '0'");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x, order: 1.5}\n",
               3, "model_list[0].litellm_params.order: must be a positive integer");
  expect_error("model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n"
               "      input_cost_per_token: -0.1\n",
               5, "model_list[0].litellm_params.input_cost_per_token: must be a non-negative number, got '-0.1'");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x, output_cost_per_token: [1]}\n",
               3, "litellm_params.output_cost_per_token: must be a non-negative number");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n    model_info:\n"
               "      output_cost_per_token: cheap\n",
               5, "model_list[0].model_info.output_cost_per_token: must be a non-negative number, got 'cheap'");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n    model_info:\n"
               "      input_cost_per_token: .nan\n",
               5, "model_info.input_cost_per_token: must be a non-negative number");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n    model_info:\n"
               "      supports_assistant_prefill: maybe\n",
               5, "model_list[0].model_info.supports_assistant_prefill: must be true or false, got 'maybe'");
}

static void test_router_errors(void **state) {
  expect_tail_error("router_settings:\n  routing_strategy: round-robin\n", 7,
                    "router_settings.routing_strategy: unknown routing strategy 'round-robin' " VALID_STRATEGIES);
  expect_tail_error("router_settings:\n  routing_strategy: [least-busy]\n", 7,
                    "router_settings.routing_strategy: must be one of");
  expect_tail_error("router_settings:\n  retry_backoff: -1\n", 7,
                    "router_settings.retry_backoff: must be a non-negative number of seconds, got '-1'");
  expect_tail_error("router_settings:\n  retry_backoff_max: soon\n", 7,
                    "router_settings.retry_backoff_max: must be a non-negative number of seconds");
  expect_tail_error("router_settings:\n  retry_budget_percent: 101\n", 7,
                    "router_settings.retry_budget_percent: must be an integer from 0 to 100, got 101");
  expect_tail_error("router_settings:\n  retry_budget_percent: 12.5\n", 7,
                    "router_settings.retry_budget_percent: must be a non-negative integer");
  expect_tail_error("router_settings:\n  retry_budget_min_per_second: -2\n", 7,
                    "router_settings.retry_budget_min_per_second: must be a non-negative integer");
  expect_tail_error("router_settings:\n  total_timeout: forever\n", 7,
                    "router_settings.total_timeout: must be a non-negative number of seconds");
  expect_tail_error("router_settings:\n  max_retry_after: -5\n", 7,
                    "router_settings.max_retry_after: must be a non-negative number of seconds");
  expect_tail_error("router_settings:\n  local_trip_failures: 0\n", 7,
                    "router_settings.local_trip_failures: must be a positive integer, got '0'");
  expect_tail_error("router_settings:\n  local_cooldown: 0\n", 7,
                    "router_settings.local_cooldown: must be a positive number of seconds");
  expect_tail_error("router_settings:\n  mid_stream_fallback: retry\n", 7,
                    "router_settings.mid_stream_fallback: unknown value 'retry' (valid: continue, error)");
  /* a first backoff above its cap: named where it is wrong */
  expect_tail_error("router_settings:\n  retry_backoff: 3\n  retry_backoff_max: 1\n", 8,
                    "router_settings.retry_backoff_max: must not be less than retry_backoff (3 s)");
  expect_tail_error("router_settings:\n  retry_backoff: 3\n", 7,
                    "router_settings.retry_backoff: is more than retry_backoff_max (2 s by default)");
}

static void test_fallback_kind_errors(void **state) {
  expect_tail_error("router_settings:\n  context_window_fallbacks: [{a: [nope]}]\n", 7,
                    "router_settings.context_window_fallbacks[0].a: unknown model group 'nope'");
  expect_tail_error("router_settings:\n  content_policy_fallbacks:\n    - ghost: [a]\n", 8,
                    "router_settings.content_policy_fallbacks[0].ghost: unknown model group 'ghost'");
  expect_tail_error("router_settings:\n  content_policy_fallbacks: [{a: a}]\n", 7,
                    "router_settings.content_policy_fallbacks[0].a: 'a' falls back to itself");
  expect_tail_error("router_settings:\n  context_window_fallbacks: {a: b}\n", 7,
                    "router_settings.context_window_fallbacks: must be a list like");
  expect_tail_error("litellm_settings:\n  context_window_fallbacks: [{b: [zzz]}]\n", 7,
                    "litellm_settings.context_window_fallbacks[0].b: unknown model group 'zzz'");
  expect_tail_error("litellm_settings:\n  content_policy_fallbacks: [{a: {b: 1}}]\n", 7,
                    "litellm_settings.content_policy_fallbacks[0].a: must be a list of model groups");
  /* the same kind for the same group in both sections */
  expect_tail_error("router_settings:\n  context_window_fallbacks: [{a: [b]}]\n"
                    "litellm_settings:\n  context_window_fallbacks:\n    - a: [b]\n", 10,
                    "litellm_settings.context_window_fallbacks[0].a: context_window_fallbacks for 'a' given twice");
  /* different kinds for one group are independent */
  cfg_config c;
  assert_int_equal(parse(BASE "router_settings:\n  fallbacks: [{a: b}]\n  context_window_fallbacks: [{a: b}]\n"
                         "litellm_settings: {content_policy_fallbacks: [{a: b}]}\n", &c), 0);
  const cfg_group *g = group(&c, "a");
  assert_int_equal(g->nfallbacks + g->ncw_fallbacks + g->ncp_fallbacks, 3);
  cfg_free(&c);
}

static void test_group_settings_errors(void **state) {
  expect_tail_error("router_settings:\n  model_group_settings:\n    ghost: {hedge: true}\n", 8,
                    "router_settings.model_group_settings.ghost: unknown model group 'ghost'");
  expect_tail_error("router_settings:\n  model_group_settings:\n    a:\n      hedging: true\n", 9,
                    "router_settings.model_group_settings.a.hedging: unknown key (valid: routing_strategy,"
                    " mid_stream_fallback, hedge)");
  expect_tail_error("router_settings:\n  model_group_settings:\n    a: {hedge: 2}\n", 8,
                    "router_settings.model_group_settings.a.hedge: must be true or false, got '2'");
  expect_tail_error("router_settings:\n  model_group_settings:\n    b:\n      routing_strategy: fastest\n", 9,
                    "router_settings.model_group_settings.b.routing_strategy: unknown routing strategy 'fastest'");
  expect_tail_error("router_settings:\n  model_group_settings:\n    b: {mid_stream_fallback: resume}\n", 8,
                    "router_settings.model_group_settings.b.mid_stream_fallback: unknown value 'resume'");
  expect_tail_error("router_settings:\n  model_group_settings: [a]\n", 7,
                    "router_settings.model_group_settings: must be a mapping");
  expect_tail_error("router_settings:\n  model_group_settings:\n    a: true\n", 8,
                    "router_settings.model_group_settings.a: must be a mapping");
  expect_tail_error("router_settings:\n  model_group_settings:\n    a: {hedge: true}\n    a: {hedge: false}\n", 9,
                    "router_settings.model_group_settings.a: duplicate key");
}

static void test_health_check_keys(void **state) {
  expect_tail_error("general_settings:\n  background_health_checks: 2\n", 7,
                    "general_settings.background_health_checks: must be true or false, got '2'");
  expect_tail_error("general_settings:\n  health_check_interval: 0\n", 7,
                    "general_settings.health_check_interval: must be a positive number of seconds");
  expect_tail_error("general_settings:\n  health_check_timeout: -1\n", 7,
                    "general_settings.health_check_timeout: must be a positive number of seconds");
  cfg_config c;
  assert_int_equal(parse(BASE "general_settings: {background_health_checks: TRUE, health_check_interval: 0.5,"
                         " health_check_timeout: 1}\n", &c), 0);
  assert_true(c.router.probes_enabled);
  assert_int_equal(c.router.probe_interval_ms, 500);
  assert_int_equal(c.router.probe_timeout_ms, 1000);
  assert_int_equal(c.nwarnings, 0);
  cfg_free(&c);
}

static void test_probe_request_keys(void **state) {
  cfg_config c;
  assert_int_equal(parse("model_list:\n"
                         "  - model_name: a\n    litellm_params: {model: x}\n"
                         "    model_info: {health_check: false}\n"
                         "  - model_name: a\n    litellm_params: {model: y}\n"
                         "    model_info: {health_check: yes}\n"
                         "  - model_name: b\n    litellm_params: {model: z}\n"
                         "    model_info: {health_check: ~}\n"
                         "general_settings:\n"
                         "  health_check_prompt: \"are you there? \\\"quoted\\\"\\nsecond line\"\n"
                         "  health_check_max_tokens: 2\n", &c), 0);
  assert_int_equal(c.nwarnings, 0);
  assert_string_equal(c.router.probe_prompt, "are you there? \"quoted\"\nsecond line");
  assert_int_equal(c.router.probe_max_tokens, 2);
  assert_int_equal(dep(&c, "a-1")->health_check, 0);
  assert_int_equal(dep(&c, "a-2")->health_check, 1);
  assert_int_equal(dep(&c, "b-1")->health_check, 1); /* null = the default */
  cfg_free(&c);

  /* the bounds themselves are accepted; a prompt from the environment too */
  static char yaml[8192];
  char big[CFG_PROBE_PROMPT_MAX + 2];
  memset(big, 'x', sizeof big);
  big[CFG_PROBE_PROMPT_MAX] = '\0';
  snprintf(yaml, sizeof yaml, BASE "general_settings:\n  health_check_prompt: %s\n"
           "  health_check_max_tokens: 4096\n", big);
  assert_int_equal(parse(yaml, &c), 0);
  assert_int_equal(strlen(c.router.probe_prompt), CFG_PROBE_PROMPT_MAX);
  assert_int_equal(c.router.probe_max_tokens, 4096);
  cfg_free(&c);
  setenv("LLMESH_TEST_PROBE_PROMPT", "Réponds « oui » ✓", 1);
  assert_int_equal(parse(BASE "general_settings: {health_check_prompt: os.environ/LLMESH_TEST_PROBE_PROMPT,"
                         " health_check_max_tokens: 1}\n", &c), 0);
  assert_string_equal(c.router.probe_prompt, "Réponds « oui » ✓");
  assert_int_equal(c.router.probe_max_tokens, 1);
  cfg_free(&c);

  /* errors, each at its line */
  big[CFG_PROBE_PROMPT_MAX] = 'x';
  big[CFG_PROBE_PROMPT_MAX + 1] = '\0';
  snprintf(yaml, sizeof yaml, BASE "general_settings:\n  health_check_prompt: %s\n", big);
  expect_error(yaml, 7, "general_settings.health_check_prompt: is 4097 bytes, at most 4096 allowed");
  expect_tail_error("general_settings:\n  health_check_prompt: ''\n", 7,
                    "general_settings.health_check_prompt: must not be empty");
  expect_tail_error("general_settings:\n  health_check_prompt: [ping]\n", 7,
                    "general_settings.health_check_prompt: must be a string");
  static const char *const bad_utf8[] = {"\xff", "caf\xc3", "\xc0\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80"};
  for (size_t i = 0; i < sizeof bad_utf8 / sizeof bad_utf8[0]; i++) {
    setenv("LLMESH_TEST_PROBE_PROMPT", bad_utf8[i], 1);
    expect_tail_error("general_settings:\n  health_check_prompt: os.environ/LLMESH_TEST_PROBE_PROMPT\n", 7,
                      "general_settings.health_check_prompt: must be valid UTF-8");
  }
  unsetenv("LLMESH_TEST_PROBE_PROMPT");
  expect_tail_error("general_settings:\n  health_check_max_tokens: 0\n", 7,
                    "general_settings.health_check_max_tokens: must be a positive integer, got '0'");
  expect_tail_error("general_settings:\n  health_check_max_tokens: 4097\n", 7,
                    "general_settings.health_check_max_tokens: must be an integer from 1 to 4096, got 4097");
  expect_tail_error("general_settings:\n  health_check_max_tokens: 1.5\n", 7,
                    "general_settings.health_check_max_tokens: must be a positive integer, got '1.5'");
  expect_tail_error("general_settings:\n  health_check_max_tokens: two\n", 7,
                    "general_settings.health_check_max_tokens: must be a positive integer");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n    model_info:\n"
               "      health_check: sometimes\n",
               5, "model_list[0].model_info.health_check: must be true or false, got 'sometimes'");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n"
               "    model_info: {health_check: [false]}\n",
               4, "model_list[0].model_info.health_check: must be true or false");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_routing_keys),         cmocka_unit_test(test_routing_defaults),
      cmocka_unit_test(test_strategies),           cmocka_unit_test(test_deployment_errors),
      cmocka_unit_test(test_router_errors),        cmocka_unit_test(test_fallback_kind_errors),
      cmocka_unit_test(test_group_settings_errors), cmocka_unit_test(test_health_check_keys),
      cmocka_unit_test(test_probe_request_keys),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
