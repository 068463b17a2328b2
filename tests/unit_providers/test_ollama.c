/* test_ollama.c — golden vectors for the Ollama adapter (vectors/ollama/, passed as argv[1]):
 *   requests/NAME.in.json   canonical request → NAME.out.json {"url","headers","body"} or
 *                           {"error": exact client message}
 *   responses/NAME.in.json  /api/chat answer ("stream":false) → NAME.out.json chat.completion
 *                           (json_equal) or {"garbage": true}; usage checked against its "usage"
 *   streams/cases.json      IN.in.ndjson → NAME.out.sse byte for byte, fed whole, split in two
 *                           at every byte and one byte at a time; final rc, class, usage
 *   errors.json             classify_error table (status + {"error":"..."} body)
 * OLLAMA_REGEN=1 rewrites the .out files from the adapter (review the diff before keeping). */
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

#include "ollama.h"
#include "vector_harness.h"

#define CREATED 1735000000u

static const char *vdir;
static int regen;

static const prov_target TARGET = {
    .api_base = "http://ollama.internal:11434",
    .api_key = "test-key-123",
    .upstream_model = "llama3.2:3b",
    .api_version = "",
};

static void pin_clock(void) { prov_ollama_set_clock(CREATED); }

/* The adapter as the response and stream vectors run it. */
static const vh_prov_ctx ADAPTER = {.ops = &prov_ollama, .model = "my-ollama", .before = pin_clock,
                                    .end_garbage_class = 1};

/* ---- requests ------------------------------------------------------------------------ */

static json_t *request_case(const char *name, const char *in, size_t len, void *ctx) {
  (void)name;
  (void)ctx;
  return vh_prov_request_json(&prov_ollama, &TARGET, in, len, "ollama.internal");
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vdir, "requests", regen, request_case, vh_prov_reject_named, NULL) >= 25);
}

static void test_request_urls(void **st) {
  (void)st;
  static const struct {
    const char *base, *model, *key;
    int stream;
    const char *url; /* NULL = rejected */
  } cases[] = {
      {"http://localhost:11434", "llama3.2", "", 0, "http://localhost:11434/api/chat"},
      {"http://localhost:11434/", "llama3.2", "", 1, "http://localhost:11434/api/chat"},
      {"http://localhost:11434/v1", "llama3.2", "", 0, "http://localhost:11434/api/chat"},
      {"http://localhost:11434/v1/", "llama3.2", "", 0, "http://localhost:11434/api/chat"},
      {"http://localhost:11434/api", "llama3.2", "", 0, "http://localhost:11434/api/chat"},
      {"http://gpu-box:8080/ollama/", "qwen3:8b", "", 0, "http://gpu-box:8080/ollama/api/chat"},
      {"https://ollama.com", "gpt-oss:120b", "cloud-key", 0, "https://ollama.com/api/chat"},
      {"", "llama3.2", "", 0, "http://localhost:11434/api/chat"},
      {"localhost:11434", "llama3.2", "", 0, NULL},
      {"ftp://example.com", "llama3.2", "", 0, NULL},
      {"http://", "llama3.2", "", 0, NULL},
      {"http:///v1", "llama3.2", "", 0, NULL},
      {"http://example.com/?x=1", "llama3.2", "", 0, NULL},
      {"http://example.com", "", "", 0, NULL},
      {"http://example.com", "m", "bad\r\nx-injected: 1", 0, NULL},
  };
  const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    prov_target t = {.api_base = cases[i].base, .api_key = cases[i].key,
                     .upstream_model = cases[i].model, .api_version = ""};
    prov_canon c = {body, strlen(body), cases[i].stream, 0};
    prov_request r = {0};
    char err[256] = "";
    int rc = prov_ollama.build_request(&t, &c, &r, err, sizeof err);
    if (!cases[i].url) {
      if (rc != -EINVAL) fail_msg("url case %zu accepted", i);
      assert_null(strstr(err, "example"));
      continue;
    }
    assert_int_equal(rc, 0);
    assert_string_equal(buf_cstr(&r.url), cases[i].url);
    assert_int_equal(r.nheaders, *cases[i].key ? 2 : 1); /* no key → no authorization */
    if (*cases[i].key) {
      const char *h = r.headers.data + strlen(r.headers.data) + 1;
      assert_string_equal(h, "authorization: Bearer cloud-key");
    }
    /* stream is always explicit: Ollama streams unless told not to */
    json_t *b = json_loadb(r.body.data, r.body.len, 0, NULL);
    assert_true(json_is_boolean(json_object_get(b, "stream")));
    assert_int_equal(json_is_true(json_object_get(b, "stream")), cases[i].stream);
    json_decref(b);
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
  vh_prov_stream_cases(vdir, &ADAPTER, ".in.ndjson", regen, 12);
}

/* The adapter must tolerate being freed mid-stream and fed after a terminal result. */
static void test_stream_after_terminal(void **st) {
  (void)st;
  prov_canon c = {"{}", 2, 1, 1};
  buf_t out = {0};
  prov_error e = PE_NONE;
  prov_stream *s = prov_ollama.stream_new(&c, "m");
  assert_int_equal(prov_ollama.stream_feed(s, "nope\r\n", 6, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(e, PE_GARBAGE);
  assert_int_equal(prov_ollama.stream_feed(s, "{\"done\":true}\n", 14, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(prov_ollama.stream_end(s, &out, NULL), PS_GARBAGE);
  assert_int_equal(out.len, 0);
  prov_ollama.stream_free(s);
  s = prov_ollama.stream_new(&c, "m");
  assert_int_equal(prov_ollama.stream_feed(s, "{\"message\":{\"content\":\"x", 24, &out, NULL, &e), PS_MORE);
  prov_ollama.stream_free(s); /* freed mid-line: no leak */
  /* after [DONE], more bytes change nothing */
  s = prov_ollama.stream_new(&c, "m");
  static const char done[] = "{\"message\":{\"content\":\"\"},\"done\":true}\n{\"x\":";
  assert_int_equal(prov_ollama.stream_feed(s, done, sizeof done - 1, &out, NULL, &e), PS_DONE);
  size_t len = out.len;
  assert_int_equal(prov_ollama.stream_feed(s, "1}\n", 3, &out, NULL, &e), PS_DONE);
  assert_int_equal(prov_ollama.stream_end(s, &out, NULL), PS_DONE);
  assert_int_equal(out.len, len);
  prov_ollama.stream_free(s);
  buf_free(&out);
}

/* Without the test clock, tool call ids do not restart at call_0 (they must not repeat
 * across the turns of one conversation). */
static void test_tool_ids_unpinned(void **st) {
  (void)st;
  static const char body[] = "{\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":"
                             "[{\"function\":{\"name\":\"f\",\"arguments\":{}}}]},\"done\":true}";
  buf_t a = {0}, b = {0};
  prov_ollama_set_clock(0);
  assert_int_equal(prov_ollama.decode_response(body, sizeof body - 1, "m", &a, NULL), 0);
  assert_int_equal(prov_ollama.decode_response(body, sizeof body - 1, "m", &b, NULL), 0);
  json_t *ja = json_loadb(a.data, a.len, 0, NULL), *jb = json_loadb(b.data, b.len, 0, NULL);
  const char *ia = json_string_value(json_object_get(json_array_get(json_object_get(json_object_get(
      json_array_get(json_object_get(ja, "choices"), 0), "message"), "tool_calls"), 0), "id"));
  const char *ib = json_string_value(json_object_get(json_array_get(json_object_get(json_object_get(
      json_array_get(json_object_get(jb, "choices"), 0), "message"), "tool_calls"), 0), "id"));
  assert_non_null(ia);
  assert_non_null(ib);
  assert_string_not_equal(ia, ib);
  assert_string_not_equal(ia, "call_0");
  assert_int_equal(strncmp(ia, "call_", 5), 0);
  json_decref(ja);
  json_decref(jb);
  buf_free(&a);
  buf_free(&b);
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_classify(void **st) {
  (void)st;
  vh_prov_error_cases(vdir, &prov_ollama, 12);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("ollama"), &prov_ollama);
  assert_ptr_equal(provider_find("Ollama"), &prov_ollama);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "tests/unit_providers/vectors/ollama";
  regen = vh_regen_enabled("OLLAMA_REGEN");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_request_urls),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_after_terminal),
      cmocka_unit_test(test_tool_ids_unpinned),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
