/* test_azure.c — golden vectors for the Azure adapter (vectors/azure/, passed as argv[1]):
 *   requests/NAME.in.json   canonical request → NAME.out.json {"url","headers","body"} or
 *                           {"error": exact client message}
 *   responses/NAME.in.json  Azure chat.completion → NAME.out.json chat.completion (json_equal)
 *                           or {"garbage": true}; usage checked against its "usage"
 *   streams/cases.json      IN.in.sse → NAME.out.sse byte for byte, fed whole, split in two
 *                           at every byte and one byte at a time; final rc, class, usage
 *   errors.json             classify_error table incl. "retry after N seconds" hints
 * Request bodies are also checked byte for byte where the adapter splices (test_splice).
 * AZURE_REGEN=1 rewrites the .out files from the adapter (review the diff before keeping). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "provider.h"
#include "vector_harness.h"

static const char *vdir;
static int regen;

static const prov_target TARGET = {
    .api_base = "https://myres.openai.azure.com",
    .api_key = "test-key-123",
    .upstream_model = "gpt4o-prod",
    .api_version = "",
};

/* The adapter as the response and stream vectors run it. */
static const vh_prov_ctx ADAPTER = {.ops = &prov_azure, .model = "my-azure", .before = NULL,
                                    .end_garbage_class = 1};

/* ---- requests ------------------------------------------------------------------------ */

static json_t *request_case(const char *name, const char *in, size_t len, void *ctx) {
  (void)name;
  (void)ctx;
  return vh_prov_request_json(&prov_azure, &TARGET, in, len, "azure.com");
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vdir, "requests", regen, request_case, vh_prov_reject_named, NULL) >= 8);
}

static void test_request_urls(void **st) {
  (void)st;
  static const struct {
    const char *base, *model, *key;
    int stream;
    const char *url; /* NULL = rejected */
    const char *version;
  } cases[] = {
      {"https://myres.openai.azure.com", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", ""},
      {"https://myres.openai.azure.com/", "gpt4o", "k", 1,
       "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2025-04-01-preview",
       "2025-04-01-preview"},
      {"https://myres.openai.azure.com/openai", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", ""},
      {"https://myres.openai.azure.com/openai/", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", ""},
      /* a pasted portal Target URI: its deployment and api-version are used */
      {"https://myres.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2025-01-01-preview",
       "gpt-4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2025-01-01-preview", ""},
      {"https://myres.openai.azure.com/openai/deployments/prod-4o", "gpt-4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21", ""},
      {"https://myres.openai.azure.com/openai/deployments/prod-4o/?api-version=2025-01-01-preview",
       "gpt-4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/prod-4o/chat/completions?api-version=2024-10-21",
       "2024-10-21"},
      /* v1 GA surface */
      {"https://myres.openai.azure.com", "gpt4o", "k", 1,
       "https://myres.openai.azure.com/openai/v1/chat/completions", "v1"},
      {"https://myres.openai.azure.com", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/v1/chat/completions?api-version=preview", "preview"},
      {"https://myres.openai.azure.com/openai/v1/", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/v1/chat/completions", ""},
      {"https://myres.openai.azure.com/openai/v1", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/v1/chat/completions", "2024-10-21"},
      {"https://myres.openai.azure.com/openai/v1?api-version=preview", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/v1/chat/completions?api-version=preview", ""},
      {"http://127.0.0.1:9000", "d", "", 0,
       "http://127.0.0.1:9000/openai/deployments/d/chat/completions?api-version=2024-10-21", ""},
      {"https://gw.example.com/azure/openai", "d.v2_x", "k", 0,
       "https://gw.example.com/azure/openai/deployments/d.v2_x/chat/completions?api-version=2024-10-21", ""},
      {"", "gpt4o", "k", 0, NULL, ""},
      {"myres.openai.azure.com", "gpt4o", "k", 0, NULL, ""},
      {"https://", "gpt4o", "k", 0, NULL, ""},
      {"https:///openai", "gpt4o", "k", 0, NULL, ""},
      {"https://myres.openai.azure.com", "", "k", 0, NULL, ""},
      {"https://myres.openai.azure.com", "a/b", "k", 0, NULL, ""},
      {"https://myres.openai.azure.com", "a?b", "k", 0, NULL, ""},
      {"https://myres.openai.azure.com/openai/deployments/", "gpt4o", "k", 0,
       "https://myres.openai.azure.com/openai/deployments/gpt4o/chat/completions?api-version=2024-10-21", ""},
      {"https://myres.openai.azure.com/openai/deployments//chat", "gpt4o", "k", 0, NULL, ""},
      {"https://myres.openai.azure.com", "gpt4o", "k", 0, NULL, "2024-10-21&x=1"},
      {"https://myres.openai.azure.com", "gpt4o", "bad\r\nx-injected: 1", 0, NULL, ""},
  };
  const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    prov_target t = {.api_base = cases[i].base, .api_key = cases[i].key,
                     .upstream_model = cases[i].model, .api_version = cases[i].version};
    prov_canon c = {body, strlen(body), cases[i].stream, 0};
    prov_request r = {0};
    char err[256] = "";
    int rc = prov_azure.build_request(&t, &c, &r, err, sizeof err);
    if (!cases[i].url) {
      if (rc != -EINVAL) fail_msg("url case %zu accepted", i);
      assert_null(strstr(err, "example"));
      assert_null(strstr(err, "azure.com"));
      continue;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(buf_cstr(&r.url), cases[i].url);
    assert_int_equal(r.nheaders, *cases[i].key ? 2 : 1); /* no key → no api-key */
    if (*cases[i].key) assert_string_equal(r.headers.data + strlen(r.headers.data) + 1, "api-key: k");
    assert_null(strstr(r.headers.data, "uthorization")); /* never both credentials */
    prov_request_free(&r);
  }
}

/* ---- responses ----------------------------------------------------------------------- */

static void test_responses(void **st) {
  (void)st;
  vh_prov_response_cases(vdir, &ADAPTER, regen, 6);
}

/* ---- streams ------------------------------------------------------------------------- */

static void test_streams(void **st) {
  (void)st;
  vh_prov_stream_cases(vdir, &ADAPTER, ".in.sse", regen, 10);
}

/* The adapter must tolerate being freed mid-stream and fed after a terminal result. */
static void test_stream_after_terminal(void **st) {
  (void)st;
  prov_canon c = {"{}", 2, 1, 1};
  buf_t out = {0};
  prov_error e = PE_NONE;
  prov_stream *s = prov_azure.stream_new(&c, "m");
  assert_int_equal(prov_azure.stream_feed(s, "data: nope\r\n\r\n", 14, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(e, PE_GARBAGE);
  assert_int_equal(prov_azure.stream_feed(s, "data: [DONE]\n\n", 14, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(prov_azure.stream_end(s, &out, NULL), PS_GARBAGE);
  assert_int_equal(out.len, 0);
  prov_azure.stream_free(s);
  s = prov_azure.stream_new(&c, "m");
  assert_int_equal(prov_azure.stream_feed(s, "data: {\"choices\":[", 19, &out, NULL, &e), PS_MORE);
  prov_azure.stream_free(s); /* freed mid-event: no leak */
  s = prov_azure.stream_new(&c, "m");
  assert_int_equal(prov_azure.stream_feed(s, "data: [DONE]\n\ndata: {}\n\n", 26, &out, NULL, &e), PS_DONE);
  assert_int_equal(prov_azure.stream_end(s, &out, NULL), PS_DONE);
  assert_int_equal(out.len, 14);
  prov_azure.stream_free(s);
  buf_free(&out);
}

/* The request body is the client's, byte for byte, with only model and (streams)
 * stream_options.include_usage spliced in. */
static void test_splice(void **st) {
  (void)st;
  static const struct {
    int stream;
    const char *in, *out;
  } cases[] = {
      {0, "{\"model\":\"alias\",\"messages\":[],\"temperature\":0.7,\"x\":1.0e-7}",
       "{\"model\":\"dep\",\"messages\":[],\"temperature\":0.7,\"x\":1.0e-7}"},
      {0, " {\n \"messages\" : [ {\"role\":\"user\",\"content\":\"{\\\"model\\\":1}\"} ] , \"model\" : \"a\" }\n",
       "{\n \"messages\" : [ {\"role\":\"user\",\"content\":\"{\\\"model\\\":1}\"} ] , \"model\" : \"dep\" }"},
      {0, "{\"messages\":[]}", "{\"model\":\"dep\",\"messages\":[]}"},
      {0, "{\"mod\\u0065l\":\"a\",\"messages\":[]}", "{\"mod\\u0065l\":\"dep\",\"messages\":[]}"},
      {0, "{\"tools\":[{\"model\":\"keep\"}],\"messages\":[],\"model\":null}",
       "{\"tools\":[{\"model\":\"keep\"}],\"messages\":[],\"model\":\"dep\"}"},
      {1, "{\"stream\":true,\"messages\":[]}",
       "{\"model\":\"dep\",\"stream_options\":{\"include_usage\":true},\"stream\":true,\"messages\":[]}"},
      {1, "{\"model\":\"a\",\"stream\":true,\"stream_options\":{},\"messages\":[]}",
       "{\"model\":\"dep\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}"},
      {1, "{\"stream_options\":{\"include_usage\":false,\"x\":1},\"model\":\"a\",\"stream\":true,\"messages\":[]}",
       "{\"stream_options\":{\"include_usage\":true,\"x\":1},\"model\":\"dep\",\"stream\":true,\"messages\":[]}"},
      {1, "{\"stream_options\":{ \"x\" : 1 },\"stream\":true,\"messages\":[]}",
       "{\"model\":\"dep\",\"stream_options\":{\"include_usage\":true, \"x\" : 1 },\"stream\":true,\"messages\":[]}"},
      {1, "{\"stream_options\":null,\"stream\":true,\"messages\":[]}",
       "{\"model\":\"dep\",\"stream_options\":{\"include_usage\":true},\"stream\":true,\"messages\":[]}"},
      {1, "{\"model\":\"a\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}",
       "{\"model\":\"dep\",\"stream\":true,\"stream_options\":{\"include_usage\":true},\"messages\":[]}"},
  };
  prov_target t = {.api_base = "https://myres.openai.azure.com", .api_key = "k",
                   .upstream_model = "dep", .api_version = ""};
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    prov_canon c = {cases[i].in, strlen(cases[i].in), cases[i].stream, 0};
    prov_request r = {0};
    char err[256] = "";
    int rc = prov_azure.build_request(&t, &c, &r, err, sizeof err);
    if (rc) fail_msg("splice case %zu: %d %s", i, rc, err);
    if (strcmp(buf_cstr(&r.body), cases[i].out))
      fail_msg("splice case %zu:\n want %s\n got  %s", i, cases[i].out, r.body.data);
    prov_request_free(&r);
  }
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_classify(void **st) {
  (void)st;
  vh_prov_error_cases(vdir, &prov_azure, 15);
  assert_int_equal(prov_azure.classify_error(429, "not json", 8, NULL), PE_RATE_LIMITED);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("azure"), &prov_azure);
  assert_ptr_equal(provider_find("Azure"), &prov_azure);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "tests/unit_providers/vectors/azure";
  regen = vh_regen_enabled("AZURE_REGEN");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_request_urls),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_after_terminal),
      cmocka_unit_test(test_splice),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
