/* test_config.c — LiteLLM YAML import: good configs, defaults, names, fallbacks,
 * every fatal error with its line, unknown-key warnings, os.environ/ resolution. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/sha.h>

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

static const cfg_deployment *dep(const cfg_config *c, const char *name) {
  for (size_t i = 0; i < c->ndeployments; i++)
    if (!strcmp(c->deployments[i].name, name)) return &c->deployments[i];
  fail_msg("no deployment %s", name);
  return NULL;
}

static void test_good_config(void **state) {
  cfg_config c;
  setenv("LLMESH_TEST_OPENAI", "sk-from-env", 1);
  const char *yaml =
      "model_list:\n"
      "  - model_name: gpt-4\n"
      "    litellm_params:\n"
      "      model: openai/gpt-4o\n"
      "      api_base: http://127.0.0.1:9001/v1\n"
      "      api_key: os.environ/LLMESH_TEST_OPENAI\n"
      "      weight: 5\n"
      "      timeout: 1.5\n"
      "      stream_timeout: 2\n"
      "      connect_timeout: 0.25\n"
      "      rpm: 100\n"
      "      tpm: 5000\n"
      "      api_version: '2024-01-01'\n"
      "  - model_name: gpt-4\n"
      "    params:\n"                       /* alias */
      "      model: gpt-4o-mini\n"          /* no prefix → openai */
      "  - model_name: claude\n"
      "    litellm_params: {model: anthropic/claude-3-5-sonnet, api_key: sk-literal}\n"
      "    model_info: {id: claude-primary}\n"
      "  - model_name: fast\n"
      "    litellm_params: {model: openrouter/meta/llama-3}\n"
      "router_settings:\n"
      "  num_retries: 4\n"
      "  timeout: 30\n"
      "  allowed_fails: 7\n"
      "  cooldown_time: 12.5\n"
      "  routing_strategy: simple-shuffle\n"
      "  fallbacks: [{\"gpt-4\": [\"claude\", \"fast\"]}, {claude: fast}]\n"
      "general_settings: {master_key: sk-master}\n";
  assert_int_equal(parse(yaml, &c), 0);
  assert_int_equal(c.ndeployments, 4);
  assert_int_equal(c.nwarnings, 0);

  const cfg_deployment *d = dep(&c, "gpt-4-1");
  assert_string_equal(d->model_group, "gpt-4");
  assert_string_equal(d->provider, "openai");
  assert_string_equal(d->upstream_model, "gpt-4o");
  assert_string_equal(d->api_base, "http://127.0.0.1:9001/v1");
  assert_string_equal(d->api_key, "sk-from-env");
  assert_string_equal(d->api_version, "2024-01-01");
  assert_int_equal(d->weight, 5);
  assert_int_equal(d->timeout_ms, 1500);
  assert_int_equal(d->stream_timeout_ms, 2000);
  assert_int_equal(d->connect_timeout_ms, 250);
  assert_int_equal(d->rpm, 100);
  assert_int_equal(d->tpm, 5000);
  assert_int_equal(d->line, 2);

  d = dep(&c, "gpt-4-2"); /* defaults */
  assert_string_equal(d->provider, "openai");
  assert_string_equal(d->upstream_model, "gpt-4o-mini");
  assert_string_equal(d->api_base, "https://api.openai.com/v1");
  assert_string_equal(d->api_key, "");
  assert_int_equal(d->weight, 1);
  assert_int_equal(d->timeout_ms, 30000); /* router timeout */
  assert_int_equal(d->stream_timeout_ms, 0);
  assert_int_equal(d->connect_timeout_ms, 5000);

  d = dep(&c, "claude-primary");
  assert_string_equal(d->provider, "anthropic");
  assert_string_equal(d->upstream_model, "claude-3-5-sonnet");
  assert_string_equal(d->api_key, "sk-literal");

  d = dep(&c, "fast-1"); /* only the first '/' splits */
  assert_string_equal(d->provider, "openrouter");
  assert_string_equal(d->upstream_model, "meta/llama-3");

  assert_int_equal(c.ngroups, 3);
  assert_string_equal(c.groups[0].name, "gpt-4");
  assert_int_equal(c.groups[0].nfallbacks, 2);
  assert_string_equal(c.groups[0].fallbacks[0], "claude");
  assert_string_equal(c.groups[0].fallbacks[1], "fast");
  assert_int_equal(cfg_find_group(&c, "claude")->nfallbacks, 1);
  assert_int_equal(cfg_find_group(&c, "fast")->nfallbacks, 0);

  assert_int_equal(c.router.num_retries, 4);
  assert_int_equal(c.router.timeout_ms, 30000);
  assert_int_equal(c.router.allowed_fails, 7);
  assert_int_equal(c.router.cooldown_ms, 12500);
  assert_string_equal(c.router.routing_strategy, "simple-shuffle");

  uint8_t want[32];
  SHA256((const unsigned char *)"sk-master", 9, want);
  assert_true(c.has_master_key);
  assert_memory_equal(c.master_key_sha256, want, 32);
  cfg_free(&c);
  assert_null(c.deployments);
}

static void test_router_defaults(void **state) {
  cfg_config c;
  assert_int_equal(parse("model_list:\n  - model_name: a\n    litellm_params: {model: groq/llama}\n", &c), 0);
  assert_int_equal(c.router.num_retries, 2);
  assert_int_equal(c.router.timeout_ms, 600000);
  assert_int_equal(c.router.allowed_fails, 3);
  assert_int_equal(c.router.cooldown_ms, 5000);
  assert_string_equal(c.router.routing_strategy, "simple-shuffle");
  assert_int_equal(c.deployments[0].timeout_ms, 600000);
  assert_string_equal(c.deployments[0].api_base, "https://api.groq.com/openai/v1");
  assert_false(c.has_master_key);
  cfg_free(&c);
}

static void test_unknown_keys_warn(void **state) {
  cfg_config c;
  const char *yaml =
      "model_list:\n"
      "  - model_name: a\n"
      "    litellm_params:\n"
      "      model: openai/x\n"
      "      foo: 1\n"                   /* line 5 */
      "    extra: true\n"                /* line 6 */
      "    model_info: {id: x1, mode: chat}\n" /* line 7 */
      "router_settings: {routing_strategy: least-busy, redis_host: r}\n" /* line 8 */
      "litellm_settings:\n"
      "  drop_params: true\n"            /* line 10 */
      "mystery: 3\n";                    /* line 11 */
  assert_int_equal(parse(yaml, &c), 0);
  assert_int_equal(c.ndeployments, 1);
  const struct { int line; const char *path; } want[] = {
      {5, "model_list[0].litellm_params.foo"}, {6, "model_list[0].extra"},
      {7, "model_list[0].model_info.mode"}, {8, "router_settings.redis_host"}, {10, "litellm_settings.drop_params"}, {11, "mystery"}};
  assert_int_equal(c.nwarnings, sizeof want / sizeof want[0]);
  for (size_t i = 0; i < c.nwarnings; i++) {
    assert_string_equal(c.warnings[i].path, want[i].path);
    assert_int_equal(c.warnings[i].line, want[i].line);
    char prefix[64];
    snprintf(prefix, sizeof prefix, "t.yaml:%d: %s: ", want[i].line, want[i].path);
    assert_true(strncmp(c.warnings[i].message, prefix, strlen(prefix)) == 0);
  }
  assert_string_equal(c.router.routing_strategy, "least-busy"); /* a valid strategy: no warning */
  cfg_free(&c);
}

static void test_env_resolution(void **state) {
  cfg_config c;
  unsetenv("LLMESH_TEST_UNSET");
  setenv("LLMESH_TEST_MASTER", "sk-env-master", 1);
  setenv("LLMESH_TEST_OVERRIDE", "from-process", 1);
  const char *yaml =
      "environment_variables:\n"
      "  LLMESH_TEST_BASE: http://127.0.0.1:9100/v1\n"
      "  LLMESH_TEST_OVERRIDE: from-config\n"
      "model_list:\n"
      "  - model_name: a\n"
      "    litellm_params: {model: x, api_base: os.environ/LLMESH_TEST_BASE,"
      " api_key: os.environ/LLMESH_TEST_OVERRIDE}\n"
      "general_settings: {master_key: os.environ/LLMESH_TEST_MASTER}\n";
  assert_int_equal(parse(yaml, &c), 0);
  assert_string_equal(c.deployments[0].api_base, "http://127.0.0.1:9100/v1");
  assert_string_equal(c.deployments[0].api_key, "from-config");
  uint8_t want[32];
  SHA256((const unsigned char *)"sk-env-master", 13, want);
  assert_memory_equal(c.master_key_sha256, want, 32);
  cfg_free(&c);

  expect_error("model_list:\n"
               "  - model_name: a\n"
               "    litellm_params:\n"
               "      model: x\n"
               "      api_key: os.environ/LLMESH_TEST_UNSET\n",
               5, "model_list[0].litellm_params.api_key: environment variable LLMESH_TEST_UNSET is not set");
  expect_error("model_list: []\n"
               "general_settings:\n"
               "  master_key: os.environ/LLMESH_TEST_UNSET\n",
               3, "general_settings.master_key: environment variable LLMESH_TEST_UNSET is not set");
}

static void test_errors(void **state) {
  expect_error("model_list:\n  - litellm_params: {model: x}\n", 2, "model_list[0].model_name: missing");
  expect_error("model_list:\n  - model_name: a\n    params: {model: x}\n  - model_name: b\n"
               "    litellm_params:\n      api_base: y\n",
               5, "model_list[1].litellm_params.model: missing");
  expect_error("model_list:\n  - model_name: a\n", 2, "model_list[0].litellm_params.model: missing");
  expect_error("model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n      weight: 0\n",
               5, "model_list[0].litellm_params.weight: must be a positive integer");
  expect_error("model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n      weight: 1.5\n",
               5, "weight: must be a positive integer");
  expect_error("model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n      weight: [1]\n",
               5, "weight: must be a positive integer");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x, timeout: -1}\n",
               3, "timeout: must be a positive number of seconds");
  expect_error("model_list:\n  - model_name: [a]\n    litellm_params: {model: x}\n",
               2, "model_list[0].model_name: must be a string");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: openai/}\n",
               3, "model: expected 'provider/model'");
  expect_error("model_list: {a: 1}\n", 1, "model_list: must be a list");
  expect_error("router_settings: {}\n", 1, "model_list: missing");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n"
               "router_settings:\n  fallbacks: [{a: [nope]}]\n",
               5, "router_settings.fallbacks[0].a: unknown model group 'nope'");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n"
               "router_settings:\n  fallbacks:\n    - ghost: [a]\n",
               6, "router_settings.fallbacks[0].ghost: unknown model group 'ghost'");
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n"
               "router_settings:\n  num_retries: lots\n",
               5, "router_settings.num_retries: must be a non-negative integer");
  /* names must be unique: an explicit id colliding with a generated name */
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x}\n"
               "  - model_name: b\n    litellm_params: {model: y}\n    model_info: {id: a-1}\n",
               4, "deployment name 'a-1' is already used (line 2)");
  expect_error("model_list:\n  - model_name: a\n    model_name: b\n    litellm_params: {model: x}\n",
               3, "model_list[0].model_name: duplicate key");
}

static void test_yaml_syntax_error(void **state) {
  cfg_config c;
  expect_error("model_list:\n  - model_name: a\n   bad: indent\n", 3, "yaml: ");
  /* an unclosed flow mapping is noticed at the end; the message names where it began */
  assert_int_equal(parse("model_list:\n  - model_name: a\n    litellm_params: {model: x\n  - oops\n", &c), -1);
  assert_non_null(strstr(err, "t.yaml:5: yaml: "));
  assert_non_null(strstr(err, "started at line 3"));
  expect_error("model_list:\n  - model_name: \"a\n", 3, "yaml: found unexpected end of stream while scanning a quoted scalar started at line 2");
}

static void test_file_errors(void **state) {
  cfg_config c;
  char dir[] = "/tmp/llmesh-cfg-XXXXXX", path[64];
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/missing.yaml", dir);
  assert_int_equal(cfg_parse_file(path, &c, err, sizeof err), -1);
  assert_non_null(strstr(err, path));
  snprintf(path, sizeof path, "%s/bad.yaml", dir);
  FILE *f = fopen(path, "w");
  fputs("model_list:\n  - model_name: a\n    litellm_params:\n      model: x\n      weight: -3\n", f);
  fclose(f);
  assert_int_equal(cfg_parse_file(path, &c, err, sizeof err), -1);
  char want[128];
  snprintf(want, sizeof want, "%s:5: model_list[0].litellm_params.weight:", path);
  assert_true(strncmp(err, want, strlen(want)) == 0);
  unlink(path);
  rmdir(dir);
}

/* The exact mixed config of the provider brief: no prefixes, families from api_base. */
static void test_provider_inference_mixed(void **state) {
  cfg_config c;
  const char *yaml =
      "model_list:\n"
      "  - {model_name: gpt-4, litellm_params: {model: gpt-4, api_base: https://api.openai.com/v1, weight: 5}}\n"
      "  - {model_name: gpt-4, litellm_params: {model: claude-3-5-sonnet-20240620, api_base: https://api.anthropic.com, weight: 3}}\n"
      "  - {model_name: gpt-4, litellm_params: {model: gemini-1.5-pro, api_base: https://generativelanguage.googleapis.com, weight: 2}}\n";
  assert_int_equal(parse(yaml, &c), 0);
  assert_int_equal(c.ndeployments, 3);
  assert_string_equal(dep(&c, "gpt-4-1")->provider, "openai");
  assert_string_equal(dep(&c, "gpt-4-1")->upstream_model, "gpt-4");
  assert_int_equal(dep(&c, "gpt-4-1")->weight, 5);
  assert_string_equal(dep(&c, "gpt-4-2")->provider, "anthropic");
  assert_string_equal(dep(&c, "gpt-4-2")->upstream_model, "claude-3-5-sonnet-20240620");
  assert_string_equal(dep(&c, "gpt-4-2")->api_base, "https://api.anthropic.com");
  assert_int_equal(dep(&c, "gpt-4-2")->weight, 3);
  assert_string_equal(dep(&c, "gpt-4-3")->provider, "gemini");
  assert_string_equal(dep(&c, "gpt-4-3")->upstream_model, "gemini-1.5-pro");
  assert_int_equal(dep(&c, "gpt-4-3")->weight, 2);
  cfg_free(&c);
}

/* Explicit key > prefix > api_base host > model name > openai; defaults per family. */
static void test_provider_inference_rules(void **state) {
  cfg_config c;
  const char *yaml =
      "model_list:\n"
      "  - {model_name: a, litellm_params: {model: anthropic/claude-3-haiku}}\n"
      "  - {model_name: b, litellm_params: {model: claude-3-haiku}}\n"
      "  - {model_name: c, litellm_params: {model: gemini-1.5-flash}}\n"
      "  - {model_name: d, litellm_params: {model: gpt-4o, api_base: 'https://me.openai.azure.com/', api_version: '2024-06-01'}}\n"
      "  - {model_name: e, litellm_params: {model: llama3, api_base: 'http://localhost:11434'}}\n"
      "  - {model_name: f, litellm_params: {model: claude-mock, api_base: 'http://127.0.0.1:9/v1', provider: openai}}\n"
      "  - {model_name: g, litellm_params: {model: meta-llama/Llama-3-8b, custom_llm_provider: together_ai}}\n"
      "  - {model_name: h, litellm_params: {model: gemini/gemini-pro, custom_llm_provider: Gemini}}\n"
      "  - {model_name: i, litellm_params: {model: my-model, api_base: 'http://10.0.0.1:8000/v1'}}\n"
      "  - {model_name: j, litellm_params: {model: claude-x, api_base: 'https://generativelanguage.googleapis.com'}}\n";
  assert_int_equal(parse(yaml, &c), 0);
  assert_string_equal(dep(&c, "a-1")->provider, "anthropic");
  assert_string_equal(dep(&c, "a-1")->upstream_model, "claude-3-haiku");
  assert_string_equal(dep(&c, "a-1")->api_base, "https://api.anthropic.com/v1");
  assert_string_equal(dep(&c, "b-1")->provider, "anthropic");
  assert_string_equal(dep(&c, "b-1")->api_base, "https://api.anthropic.com/v1");
  assert_string_equal(dep(&c, "c-1")->provider, "gemini");
  assert_string_equal(dep(&c, "c-1")->api_base, "https://generativelanguage.googleapis.com/v1beta");
  assert_string_equal(dep(&c, "d-1")->provider, "azure");
  assert_string_equal(dep(&c, "d-1")->api_version, "2024-06-01");
  assert_string_equal(dep(&c, "e-1")->provider, "ollama");
  assert_string_equal(dep(&c, "f-1")->provider, "openai");
  assert_string_equal(dep(&c, "f-1")->upstream_model, "claude-mock");
  assert_string_equal(dep(&c, "g-1")->provider, "together_ai");
  assert_string_equal(dep(&c, "g-1")->upstream_model, "meta-llama/Llama-3-8b");
  assert_string_equal(dep(&c, "h-1")->provider, "gemini");
  assert_string_equal(dep(&c, "h-1")->upstream_model, "gemini-pro");
  assert_string_equal(dep(&c, "i-1")->provider, "openai");
  assert_string_equal(dep(&c, "i-1")->api_base, "http://10.0.0.1:8000/v1");
  assert_string_equal(dep(&c, "j-1")->provider, "gemini"); /* host beats the model name */
  cfg_free(&c);
  expect_error("model_list:\n  - model_name: a\n    litellm_params: {model: x, provider: ''}\n", 3,
               "provider: must not be empty");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_good_config),      cmocka_unit_test(test_router_defaults),
      cmocka_unit_test(test_unknown_keys_warn), cmocka_unit_test(test_env_resolution),
      cmocka_unit_test(test_errors),           cmocka_unit_test(test_yaml_syntax_error),
      cmocka_unit_test(test_file_errors),
      cmocka_unit_test(test_provider_inference_mixed),
      cmocka_unit_test(test_provider_inference_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
