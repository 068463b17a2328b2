/* test_cloud.c — cloud credentials in the LiteLLM import: Bedrock aws_* keys (literal,
 * os.environ/, process-environment fallback), Vertex vertex_* keys (JSON literal, key
 * file, os.environ/), validation errors that never echo key material. */
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
#include "sa_key.h"

static char err[1024];

static int parse(const char *yaml, cfg_config *c) {
  err[0] = '\0';
  return cfg_parse_string("t.yaml", yaml, strlen(yaml), c, err, sizeof err);
}

static void clear_aws_env(void) {
  unsetenv("AWS_ACCESS_KEY_ID");
  unsetenv("AWS_SECRET_ACCESS_KEY");
  unsetenv("AWS_SESSION_TOKEN");
  unsetenv("AWS_REGION");
  unsetenv("AWS_DEFAULT_REGION");
}

static void test_aws_keys(void **state) {
  (void)state;
  cfg_config c;
  clear_aws_env();
  setenv("LLMESH_T_AWS_SECRET", "secret-from-env", 1);
  const char *yaml =
      "model_list:\n"
      "  - model_name: claude\n"
      "    litellm_params:\n"
      "      model: bedrock/anthropic.claude-3-5-sonnet-20240620-v1:0\n"
      "      aws_access_key_id: AKIDEXAMPLE\n"
      "      aws_secret_access_key: os.environ/LLMESH_T_AWS_SECRET\n"
      "      aws_session_token: tok-123\n"
      "      aws_region_name: eu-west-3\n"
      "  - model_name: gpt\n"
      "    litellm_params: {model: openai/gpt-4o}\n";
  assert_int_equal(parse(yaml, &c), 0);
  const cfg_deployment *d = &c.deployments[0];
  assert_string_equal(d->provider, "bedrock");
  assert_string_equal(d->upstream_model, "anthropic.claude-3-5-sonnet-20240620-v1:0");
  assert_string_equal(d->aws_access_key_id, "AKIDEXAMPLE");
  assert_string_equal(d->aws_secret_access_key, "secret-from-env");
  assert_string_equal(d->aws_session_token, "tok-123");
  assert_string_equal(d->aws_region, "eu-west-3");
  assert_int_equal(c.nwarnings, 0); /* known keys */
  d = &c.deployments[1]; /* every cloud field is "" when unused */
  assert_string_equal(d->aws_access_key_id, "");
  assert_string_equal(d->aws_secret_access_key, "");
  assert_string_equal(d->aws_region, "");
  assert_string_equal(d->gcp_credentials, "");
  assert_string_equal(d->gcp_project, "");
  cfg_free(&c);
}

static void test_aws_env_fallback(void **state) {
  (void)state;
  cfg_config c;
  clear_aws_env();
  setenv("AWS_ACCESS_KEY_ID", "ASIAENV", 1);
  setenv("AWS_SECRET_ACCESS_KEY", "env-secret", 1);
  setenv("AWS_SESSION_TOKEN", "env-session", 1);
  setenv("AWS_REGION", "us-west-2", 1);
  const char *yaml =
      "model_list:\n"
      "  - model_name: a\n"
      "    litellm_params: {model: bedrock/m1}\n"
      "  - model_name: b\n"
      "    litellm_params: {model: bedrock/m2, aws_access_key_id: AKIDOWN, aws_secret_access_key: own,"
      " aws_region_name: ap-south-1}\n"
      "  - model_name: c\n"
      "    litellm_params: {model: bedrock/m3, api_key: bedrock-api-key}\n"
      "  - model_name: d\n"
      "    litellm_params: {model: openai/gpt-4o}\n";
  assert_int_equal(parse(yaml, &c), 0);
  assert_string_equal(c.deployments[0].aws_access_key_id, "ASIAENV");
  assert_string_equal(c.deployments[0].aws_secret_access_key, "env-secret");
  assert_string_equal(c.deployments[0].aws_session_token, "env-session");
  assert_string_equal(c.deployments[0].aws_region, "us-west-2");
  /* configured keys win; the environment's session token belongs to its own key */
  assert_string_equal(c.deployments[1].aws_access_key_id, "AKIDOWN");
  assert_string_equal(c.deployments[1].aws_secret_access_key, "own");
  assert_string_equal(c.deployments[1].aws_session_token, "");
  assert_string_equal(c.deployments[1].aws_region, "ap-south-1");
  /* a Bedrock API key: no SigV4 keys from the environment, region still */
  assert_string_equal(c.deployments[2].aws_access_key_id, "");
  assert_string_equal(c.deployments[2].aws_region, "us-west-2");
  /* not bedrock: the environment is not consulted */
  assert_string_equal(c.deployments[3].aws_access_key_id, "");
  assert_string_equal(c.deployments[3].aws_region, "");
  cfg_free(&c);
  clear_aws_env();
}

static void expect_error(const char *yaml, int line, const char *want) {
  cfg_config c;
  char prefix[32];
  assert_int_equal(parse(yaml, &c), -1);
  snprintf(prefix, sizeof prefix, "t.yaml:%d: ", line);
  if (strncmp(err, prefix, strlen(prefix)) != 0 || !strstr(err, want)) {
    print_error("got '%s', want prefix '%s' and '%s'\n", err, prefix, want);
    fail();
  }
}

static void test_aws_errors(void **state) {
  (void)state;
  clear_aws_env();
  expect_error("model_list:\n"
               "  - model_name: a\n"
               "    litellm_params: {model: bedrock/m, aws_access_key_id: AKID, aws_region_name: x}\n",
               2, "aws_secret_access_key: missing");
  expect_error("model_list:\n"
               "  - model_name: a\n"
               "    litellm_params: {model: bedrock/m, aws_access_key_id: AKID, aws_secret_access_key: s}\n",
               2, "aws_region_name: missing");
  expect_error("model_list:\n"
               "  - model_name: a\n"
               "    litellm_params: {model: bedrock/m, aws_secret_access_key: os.environ/LLMESH_T_NOPE}\n",
               3, "environment variable LLMESH_T_NOPE is not set");
}

static void test_vertex_credentials(void **state) {
  (void)state;
  cfg_config c;
  char line[41], path[] = "/tmp/llmesh-sa-XXXXXX", *yaml = NULL;
  char *json = sa_key_json("svc@proj-a.iam.gserviceaccount.com", "proj-a", "https://oauth2.googleapis.com/token", line);
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  assert_int_equal(write(fd, json, strlen(json)), (ssize_t)strlen(json));
  close(fd);
  setenv("LLMESH_T_SA", json, 1);
  assert_true(asprintf(&yaml,
      "model_list:\n"
      "  - model_name: gem\n"
      "    litellm_params:\n"
      "      model: vertex_ai/gemini-1.5-pro\n"
      "      vertex_credentials: '%s'\n"
      "      vertex_location: europe-west4\n"
      "  - model_name: claude\n"
      "    litellm_params: {model: vertex_ai/claude-3-5-sonnet@20240620, vertex_project: other,"
      " vertex_credentials: %s}\n"
      "  - model_name: env\n"
      "    litellm_params: {model: vertex_ai/gemini-1.5-flash, vertex_credentials: os.environ/LLMESH_T_SA}\n",
      json, path) > 0);
  assert_int_equal(parse(yaml, &c), 0);
  for (int i = 0; i < 3; i++) {
    assert_string_equal(c.deployments[i].provider, "vertex_ai");
    assert_string_equal(c.deployments[i].gcp_credentials, json); /* the file was read */
  }
  assert_string_equal(c.deployments[0].gcp_project, "proj-a"); /* from the key */
  assert_string_equal(c.deployments[0].gcp_location, "europe-west4");
  assert_string_equal(c.deployments[1].gcp_project, "other"); /* configured wins */
  assert_string_equal(c.deployments[1].upstream_model, "claude-3-5-sonnet@20240620");
  assert_int_equal(c.nwarnings, 0);
  cfg_free(&c);
  free(yaml);
  unlink(path);
  unsetenv("LLMESH_T_SA");
  free(json);
}

static void test_vertex_errors(void **state) {
  (void)state;
  char line[41], *yaml = NULL;
  char *json = sa_key_json("svc@p.iam.gserviceaccount.com", "p", "http://evil.example.com/token", line);
  /* token_uri must be https (or loopback http): the key is refused, never quoted */
  assert_true(asprintf(&yaml, "model_list:\n  - model_name: g\n    litellm_params:\n"
                              "      model: vertex_ai/gemini-1.5-pro\n      vertex_credentials: '%s'\n", json) > 0);
  expect_error(yaml, 5, "invalid service-account key");
  assert_null(strstr(err, line));
  assert_null(strstr(err, "PRIVATE"));
  free(yaml);
  /* a key whose PEM is damaged */
  char *bad = strdup(json);
  char *p = strstr(bad, line);
  memset(p, 'A', 40);
  assert_true(asprintf(&yaml, "model_list:\n  - model_name: g\n    litellm_params:\n"
                              "      model: vertex_ai/gemini-1.5-pro\n      vertex_credentials: '%s'\n", bad) > 0);
  expect_error(yaml, 5, "invalid service-account key");
  assert_null(strstr(err, "AAAAAAAAAA"));
  free(yaml);
  free(bad);
  expect_error("model_list:\n  - model_name: g\n    litellm_params:\n"
               "      model: vertex_ai/gemini-1.5-pro\n      vertex_credentials: /nonexistent/sa.json\n",
               5, "cannot read the service-account key file '/nonexistent/sa.json'");
  expect_error("model_list:\n  - model_name: g\n    litellm_params:\n"
               "      model: vertex_ai/gemini-1.5-pro\n      vertex_credentials: '{\"type\": \"user\"}'\n",
               5, "invalid service-account key");
  free(json);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_aws_keys),          cmocka_unit_test(test_aws_env_fallback),
      cmocka_unit_test(test_aws_errors),        cmocka_unit_test(test_vertex_credentials),
      cmocka_unit_test(test_vertex_errors),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
