/* test_gemini.c — golden vectors for the Gemini adapter (vectors/gemini/, passed as argv[1]):
 *   requests/NAME.in.json   canonical request → NAME.out.json {"url","headers","body"} or
 *                           {"error": exact client message}
 *   responses/NAME.in.json  GenerateContentResponse → NAME.out.json chat.completion (json_equal)
 *                           or {"garbage": true}; usage checked against its "usage"
 *   streams/cases.json      NAME.in.sse → NAME.out.sse byte for byte, fed whole, split in two
 *                           at every byte and one byte at a time; final rc, class, usage
 *   errors.json             classify_error table incl. RetryInfo.retryDelay
 * GEMINI_REGEN=1 rewrites the .out files from the adapter (review the diff before keeping). */
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

#include "gemini.h"
#include "vector_harness.h"

#define CREATED 1735000000u

static const char *vdir;
static int regen;

static const prov_target TARGET = {
    .api_base = "https://generativelanguage.googleapis.com/v1beta",
    .api_key = "test-key-123",
    .upstream_model = "gemini-2.5-flash",
    .api_version = "",
};

static void pin_clock(void) { prov_gemini_set_clock(CREATED); }

/* The adapter as the response and stream vectors run it. */
static const vh_prov_ctx ADAPTER = {.ops = &prov_gemini, .model = "my-gemini", .before = pin_clock,
                                    .end_garbage_class = 1};

/* ---- requests ------------------------------------------------------------------------ */

static json_t *request_case(const char *name, const char *in, size_t len, void *ctx) {
  (void)name;
  (void)ctx;
  return vh_prov_request_json(&prov_gemini, &TARGET, in, len, "googleapis");
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vdir, "requests", regen, request_case, vh_prov_reject_named, NULL) >= 30);
}

static void test_request_urls(void **st) {
  (void)st;
  static const struct {
    const char *base, *model, *key;
    int stream;
    const char *url; /* NULL = rejected */
  } cases[] = {
      {"https://generativelanguage.googleapis.com/v1beta", "gemini-2.5-flash", "k", 0,
       "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"},
      {"https://generativelanguage.googleapis.com/v1beta/", "gemini-2.5-flash", "k", 1,
       "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"},
      {"https://generativelanguage.googleapis.com", "models/gemini-2.0-flash", "k", 0,
       "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.0-flash:generateContent"},
      {"http://127.0.0.1:9000//", "g", "k", 0, "http://127.0.0.1:9000/v1beta/models/g:generateContent"},
      {"http://127.0.0.1:9000/v1", "g", "", 0, "http://127.0.0.1:9000/v1/models/g:generateContent"},
      {"", "g", "k", 0, "https://generativelanguage.googleapis.com/v1beta/models/g:generateContent"},
      {"generativelanguage.googleapis.com", "g", "k", 0, NULL},
      {"https://", "g", "k", 0, NULL},
      {"https://x.example/v1beta", "g?key=1", "k", 0, NULL},
      {"https://x.example/v1beta", "", "k", 0, NULL},
      {"https://x.example/v1beta", "g", "bad\r\nx-injected: 1", 0, NULL},
  };
  const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    prov_target t = {.api_base = cases[i].base, .api_key = cases[i].key,
                     .upstream_model = cases[i].model, .api_version = ""};
    prov_canon c = {body, strlen(body), cases[i].stream, 0};
    prov_request r = {0};
    char err[256] = "";
    int rc = prov_gemini.build_request(&t, &c, &r, err, sizeof err);
    if (!cases[i].url) {
      if (rc != -EINVAL) fail_msg("url case %zu accepted", i);
      assert_null(strstr(err, "example"));
      continue;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(buf_cstr(&r.url), cases[i].url);
    assert_int_equal(r.nheaders, *cases[i].key ? 2 : 1); /* no key → no x-goog-api-key */
    prov_request_free(&r);
  }
}

/* ---- responses ----------------------------------------------------------------------- */

static void test_responses(void **st) {
  (void)st;
  vh_prov_response_cases(vdir, &ADAPTER, regen, 10);
}

/* ---- streams ------------------------------------------------------------------------- */

static void test_streams(void **st) {
  (void)st;
  vh_prov_stream_cases(vdir, &ADAPTER, ".in.sse", regen, 12);
}

/* The adapter must tolerate being freed mid-stream and fed after a terminal result. */
static void test_stream_after_terminal(void **st) {
  (void)st;
  prov_canon c = {"{}", 2, 1, 1};
  buf_t out = {0};
  prov_error e = PE_NONE;
  prov_stream *s = prov_gemini.stream_new(&c, "m");
  assert_int_equal(prov_gemini.stream_feed(s, "data: nope\r\n\r\n", 14, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(e, PE_GARBAGE);
  assert_int_equal(prov_gemini.stream_feed(s, "data: {}\n\n", 10, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(prov_gemini.stream_end(s, &out, NULL), PS_GARBAGE);
  assert_int_equal(out.len, 0);
  prov_gemini.stream_free(s);
  s = prov_gemini.stream_new(&c, "m");
  assert_int_equal(prov_gemini.stream_feed(s, "data: {\"candidates\":[", 21, &out, NULL, &e), PS_MORE);
  prov_gemini.stream_free(s); /* freed mid-event: no leak */
  buf_free(&out);
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_classify(void **st) {
  (void)st;
  vh_prov_error_cases(vdir, &prov_gemini, 20);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("gemini"), &prov_gemini);
  assert_ptr_equal(provider_find("Gemini"), &prov_gemini);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "tests/unit_providers/vectors/gemini";
  regen = vh_regen_enabled("GEMINI_REGEN");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_request_urls),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_after_terminal),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
