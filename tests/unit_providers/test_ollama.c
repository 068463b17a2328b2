/* test_ollama.c — golden vectors for the Ollama adapter (vectors/ollama/, passed as argv[1]):
 *   requests/NAME.in.json   canonical request → NAME.out.json {"url","headers","body"} or
 *                           {"error": exact client message}
 *   responses/NAME.in.json  /api/chat answer ("stream":false) → NAME.out.json chat.completion
 *                           (json_equal) or {"garbage": true}; usage checked against its "usage"
 *   streams/cases.json      IN.in.ndjson → NAME.out.sse byte for byte, fed whole, split in two
 *                           at every byte and one byte at a time; final rc, class, usage
 *   errors.json             classify_error table (status + {"error":"..."} body)
 * OLLAMA_REGEN=1 rewrites the .out files from the adapter (review the diff before keeping). */
#include <dirent.h>
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

#define CREATED 1735000000u

static const char *vdir;
static int regen;

static const prov_target TARGET = {
    .api_base = "http://ollama.internal:11434",
    .api_key = "test-key-123",
    .upstream_model = "llama3.2:3b",
    .api_version = "",
};

/* ---- files --------------------------------------------------------------------------- */

static char *slurp(const char *rel, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", vdir, rel);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  buf_t b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) assert_int_equal(buf_append(&b, tmp, n), 0);
  fclose(f);
  if (len) *len = b.len;
  if (!buf_cstr(&b)) fail();
  return b.data;
}

static void spill(const char *rel, const char *data, size_t len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", vdir, rel);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void spill_json(const char *rel, json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(1) | JSON_ENSURE_ASCII);
  buf_t b = {0};
  buf_printf(&b, "%s\n", s);
  spill(rel, b.data, b.len);
  free(s);
  buf_free(&b);
}

static json_t *load_json(const char *rel) {
  size_t len;
  char *s = slurp(rel, &len);
  if (!s) print_error("missing vector %s\n", rel);
  assert_non_null(s);
  json_t *j = json_loadb(s, len, 0, NULL);
  free(s);
  assert_non_null(j);
  return j;
}

/* Sorted names in dir ending in suffix, suffix stripped; returns the count. */
static int list(const char *dir, const char *suffix, char names[][128], int max) {
  char path[1024];
  struct dirent **ents;
  snprintf(path, sizeof path, "%s/%s", vdir, dir);
  int n = scandir(path, &ents, NULL, alphasort), k = 0;
  assert_true(n >= 0);
  for (int i = 0; i < n; i++) {
    size_t l = strlen(ents[i]->d_name), sl = strlen(suffix);
    if (l > sl && !strcmp(ents[i]->d_name + l - sl, suffix) && k < max)
      snprintf(names[k++], 128, "%.*s", (int)(l - sl < 127 ? l - sl : 127), ents[i]->d_name);
    free(ents[i]);
  }
  free(ents);
  return k;
}

static void assert_json_same(json_t *want, json_t *got, const char *what) {
  if (json_equal(want, got)) return;
  char *a = json_dumps(want, JSON_COMPACT), *b = json_dumps(got, JSON_COMPACT);
  print_error("%s:\n want %s\n got  %s\n", what, a, b);
  free(a);
  free(b);
  fail();
}

/* ---- requests ------------------------------------------------------------------------ */

static json_t *headers_json(prov_request *r) {
  json_t *a = json_array();
  size_t off = 0;
  for (int i = 0; i < r->nheaders; i++) {
    const char *h = r->headers.data + off;
    json_array_append_new(a, json_string(h));
    off += strlen(h) + 1;
  }
  return a;
}

static void canon_of(const char *body, size_t len, prov_canon *c) {
  json_t *j = json_loadb(body, len, 0, NULL);
  c->body = body;
  c->len = len;
  c->stream = json_is_true(json_object_get(j, "stream"));
  c->include_usage = json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage"));
  json_decref(j);
}

static json_t *run_request(const prov_target *t, const char *body, size_t len) {
  prov_canon c;
  prov_request r = {0};
  char err[256] = "";
  canon_of(body, len, &c);
  int rc = prov_ollama.build_request(t, &c, &r, err, sizeof err);
  if (rc) {
    assert_int_equal(rc, -EINVAL);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "ollama.internal"));
    assert_null(strstr(err, t->api_key));
    assert_int_equal(r.body.len, 0);
    return json_pack("{s:s}", "error", err);
  }
  assert_null(strstr(buf_cstr(&r.url), t->api_key)); /* the key never goes in the URL */
  json_t *body_json = json_loadb(r.body.data, r.body.len, 0, NULL);
  assert_non_null(body_json);
  json_t *out = json_pack("{s:s,s:o,s:o}", "url", buf_cstr(&r.url), "headers", headers_json(&r),
                          "body", body_json);
  prov_request_free(&r);
  return out;
}

static void test_requests(void **st) {
  (void)st;
  static char names[128][128];
  int n = list("requests", ".in.json", names, 128);
  assert_true(n >= 25);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len;
    snprintf(in, sizeof in, "requests/%.127s.in.json", names[i]);
    snprintf(outp, sizeof outp, "requests/%.127s.out.json", names[i]);
    char *body = slurp(in, &len);
    assert_non_null(body);
    json_t *got = run_request(&TARGET, body, len);
    if (regen) spill_json(outp, got);
    json_t *want = load_json(outp);
    assert_json_same(want, got, names[i]);
    /* rejected vectors are named reject_*, accepted ones are not */
    assert_int_equal(!strncmp(names[i], "reject_", 7), json_object_get(got, "error") != NULL);
    json_decref(want);
    json_decref(got);
    free(body);
  }
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
  static char names[64][128];
  int n = list("responses", ".in.json", names, 64);
  assert_true(n >= 10);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len;
    snprintf(in, sizeof in, "responses/%.127s.in.json", names[i]);
    snprintf(outp, sizeof outp, "responses/%.127s.out.json", names[i]);
    char *body = slurp(in, &len);
    buf_t out = {0};
    prov_usage u = {0};
    prov_ollama_set_clock(CREATED);
    int rc = prov_ollama.decode_response(body, len, "my-ollama", &out, &u);
    json_t *got = rc == 0 ? json_loadb(out.data, out.len, 0, NULL) : json_pack("{s:b}", "garbage", 1);
    assert_non_null(got);
    if (rc) assert_int_equal(rc, PS_GARBAGE);
    if (rc) assert_int_equal(out.len, 0);
    if (regen) spill_json(outp, got);
    json_t *want = load_json(outp);
    assert_json_same(want, got, names[i]);
    json_t *wu = json_object_get(want, "usage");
    assert_int_equal(u.seen, wu != NULL);
    if (wu) {
      assert_int_equal(u.prompt_tokens, json_integer_value(json_object_get(wu, "prompt_tokens")));
      assert_int_equal(u.completion_tokens, json_integer_value(json_object_get(wu, "completion_tokens")));
      assert_int_equal(u.cached_tokens, json_integer_value(json_object_get(
                                            json_object_get(wu, "prompt_tokens_details"), "cached_tokens")));
    }
    json_decref(want);
    json_decref(got);
    buf_free(&out);
    free(body);
  }
}

/* ---- streams ------------------------------------------------------------------------- */

typedef struct run_result {
  buf_t out;      /* canonical bytes */
  int rc;         /* final: PS_DONE / PS_ERROR / PS_GARBAGE */
  prov_error cls; /* from stream_feed on PS_ERROR / PS_GARBAGE */
  prov_usage u;   /* usage as filled */
} run_result;

/* Feeds s[0..n) in pieces of `step` bytes (0 = cut at `at` into two pieces). */
static void run_stream(const char *s, size_t n, int include_usage, size_t step, size_t at,
                       run_result *r) {
  prov_canon c = {"{}", 2, 1, include_usage};
  memset(r, 0, sizeof *r);
  prov_ollama_set_clock(CREATED);
  prov_stream *ps = prov_ollama.stream_new(&c, "my-ollama");
  assert_non_null(ps);
  int rc = PS_MORE;
  r->cls = PE_NONE;
  if (step) {
    for (size_t off = 0; rc == PS_MORE && off < n; off += step)
      rc = prov_ollama.stream_feed(ps, s + off, n - off < step ? n - off : step, &r->out, &r->u,
                                   &r->cls);
  } else {
    rc = prov_ollama.stream_feed(ps, s, at, &r->out, &r->u, &r->cls);
    if (rc == PS_MORE) rc = prov_ollama.stream_feed(ps, s + at, n - at, &r->out, &r->u, &r->cls);
  }
  if (rc == PS_MORE && (rc = prov_ollama.stream_end(ps, &r->out, &r->u)) == PS_GARBAGE)
    r->cls = PE_GARBAGE; /* stream_end has no class: a cut is always garbage */
  else if (rc == PS_GARBAGE) assert_int_equal(r->cls, PE_GARBAGE);
  r->rc = rc;
  prov_ollama.stream_free(ps);
}

static void same_run(const run_result *want, const run_result *got, const char *name,
                     const char *how, size_t at) {
  if (want->out.len != got->out.len ||
      (want->out.len && memcmp(want->out.data, got->out.data, want->out.len)) ||
      want->rc != got->rc || want->cls != got->cls || want->u.prompt_tokens != got->u.prompt_tokens ||
      want->u.completion_tokens != got->u.completion_tokens || want->u.seen != got->u.seen) {
    print_error("%s: %s at %zu differs from the whole feed\n", name, how, at);
    fail();
  }
}

static prov_error class_named(const char *s) {
  for (int e = 0; e < PE__COUNT; e++)
    if (!strcmp(prov_error_name((prov_error)e), s)) return (prov_error)e;
  fail_msg("unknown class %s", s);
  return PE_NONE;
}

static void check_stream_case(json_t *cs) {
  const char *name = json_string_value(json_object_get(cs, "name"));
  char in[512], outp[512];
  size_t n, wlen;
  snprintf(in, sizeof in, "streams/%s.in.ndjson", json_string_value(json_object_get(cs, "in")));
  snprintf(outp, sizeof outp, "streams/%s.out.sse", name);
  char *s = slurp(in, &n);
  assert_non_null(s);
  int inc = json_is_true(json_object_get(cs, "include_usage"));
  run_result whole, part;
  run_stream(s, n, inc, n ? n : 1, 0, &whole);
  if (regen) spill(outp, whole.out.data ? whole.out.data : "", whole.out.len);
  char *want = slurp(outp, &wlen);
  assert_non_null(want);
  if (wlen != whole.out.len || (wlen && memcmp(want, whole.out.data, wlen))) {
    print_error("%s: output differs\nwant:\n%s\ngot:\n%.*s\n", name, want, (int)whole.out.len,
                whole.out.data);
    fail();
  }
  assert_int_equal(whole.rc, json_integer_value(json_object_get(cs, "rc")));
  if (whole.rc != PS_DONE)
    assert_int_equal(whole.cls, class_named(json_string_value(json_object_get(cs, "class"))));
  json_t *wu = json_object_get(cs, "usage");
  assert_int_equal(whole.u.seen, json_is_array(wu));
  if (json_is_array(wu)) {
    assert_int_equal(whole.u.prompt_tokens, json_integer_value(json_array_get(wu, 0)));
    assert_int_equal(whole.u.completion_tokens, json_integer_value(json_array_get(wu, 1)));
    assert_int_equal(whole.u.cached_tokens, json_integer_value(json_array_get(wu, 2)));
  }
  for (size_t at = 0; at <= n; at++) {
    run_stream(s, n, inc, 0, at, &part);
    same_run(&whole, &part, name, "split", at);
    buf_free(&part.out);
  }
  run_stream(s, n, inc, 1, 0, &part);
  same_run(&whole, &part, name, "byte-at-a-time", 0);
  buf_free(&part.out);
  buf_free(&whole.out);
  free(want);
  free(s);
}

static void test_streams(void **st) {
  (void)st;
  json_t *cases = load_json("streams/cases.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= 12);
  json_array_foreach(cases, i, cs) check_stream_case(cs);
  json_decref(cases);
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
  json_t *cases = load_json("errors.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= 12);
  json_array_foreach(cases, i, cs) {
    json_t *b = json_object_get(cs, "body");
    char *body = json_is_string(b) ? strdup(json_string_value(b)) : json_dumps(b, JSON_COMPACT);
    uint64_t retry = 777777;
    prov_error e = prov_ollama.classify_error((int)json_integer_value(json_object_get(cs, "status")),
                                              body, strlen(body), &retry);
    json_t *wr = json_object_get(cs, "retry_after_ms");
    if (e != class_named(json_string_value(json_object_get(cs, "class"))) ||
        retry != (json_is_integer(wr) ? (uint64_t)json_integer_value(wr) : 777777u)) {
      print_error("errors.json[%zu]: got %s retry %llu\n", i, prov_error_name(e),
                  (unsigned long long)retry);
      fail();
    }
    free(body);
  }
  json_decref(cases);
  assert_int_equal(prov_ollama.classify_error(500, NULL, 0, NULL), PE_SERVER);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("ollama"), &prov_ollama);
  assert_ptr_equal(provider_find("Ollama"), &prov_ollama);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "tests/unit_providers/vectors/ollama";
  regen = getenv("OLLAMA_REGEN") != NULL;
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
