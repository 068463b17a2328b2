/* test_dropped.c — prov_request.dropped: every adapter lists exactly the top-level fields
 * its table says it drops, and only when the request carries them (fields_dropped log). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "provider.h"

static const char with_fields[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],"
    "\"seed\":7,\"logit_bias\":{\"50256\":-100},\"user\":\"u-1\",\"temperature\":0.5}";
static const char without_fields[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}],\"temperature\":0.5,"
    "\"seed\":null,\"logprobs\":false}";

static void check(const provider_ops *ops, const char *model, const char *body,
                  const char *want) {
  prov_target t = {.api_base = "http://127.0.0.1:9", .api_key = "k", .upstream_model = model,
                   .api_version = "", .aws_region = "us-east-1", .gcp_project = "p",
                   .gcp_location = "us-central1", .access_token = "tok"};
  prov_canon c = {body, strlen(body), 0, 0};
  prov_request r = {0};
  char err[256] = "";
  int rc = ops->build_request(&t, &c, &r, err, sizeof err);
  if (rc) fprintf(stderr, "%s: %d %s\n", ops->name, rc, err);
  assert_int_equal(rc, 0);
  assert_string_equal(r.dropped, want);
  assert_null(strstr(r.dropped, "temperature"));
  prov_request_free(&r);
  assert_string_equal(r.dropped, "");
}

static void test_adapters(void **state) {
  (void)state;
  check(&prov_anthropic, "claude-3-5-haiku", with_fields, "seed,logit_bias");
  check(&prov_gemini, "gemini-2.0-flash", with_fields, "logit_bias,user");
  check(&prov_ollama, "llama3", with_fields, "logit_bias,user");
  check(&prov_bedrock, "anthropic.claude-3-haiku", with_fields, "seed,logit_bias,user");
  check(&prov_azure, "gpt-4o", with_fields, "");
  check(&prov_vertex, "gemini-2.0-flash", with_fields, "logit_bias,user");
  check(&prov_vertex, "claude-3-5-haiku", with_fields, "seed,logit_bias");
}

static void test_none(void **state) {
  (void)state;
  const provider_ops *all[] = {&prov_anthropic, &prov_gemini, &prov_ollama, &prov_bedrock,
                               &prov_azure, &prov_vertex};
  for (size_t i = 0; i < sizeof all / sizeof *all; i++)
    check(all[i], "m-1", without_fields, "");
}

static void test_helper(void **state) {
  (void)state;
  prov_request r = {0};
  prov_request_dropped(&r, "seed");
  prov_request_dropped(&r, "se");
  prov_request_dropped(&r, "seed");
  prov_request_dropped(&r, "");
  assert_string_equal(r.dropped, "seed,se");
  char name[100];
  memset(name, 'x', sizeof name - 1);
  name[sizeof name - 1] = '\0';
  for (int i = 0; i < 5; i++) {
    name[0] = (char)('a' + i);
    prov_request_dropped(&r, name); /* 2 fit whole, the rest are left out */
  }
  size_t n = strlen(r.dropped);
  assert_true(n < sizeof r.dropped);
  assert_int_equal(n, strlen("seed,se") + 2 * 100);
  assert_int_equal(r.dropped[n - 1], 'x');
  prov_request_free(&r);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_adapters),
      cmocka_unit_test(test_none),
      cmocka_unit_test(test_helper),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
