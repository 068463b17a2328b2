/* test_anthropic.c — Anthropic adapter golden vectors.
 *
 * argv[1] is vectors/anthropic:
 *   requests/NAME.in.json   {"target": {...overrides}, "request": <OpenAI body>}
 *   requests/NAME.out.json  {"url", "headers": [...], "body": <Anthropic body>} | {"error": msg}
 *   responses/NAME.in.json  Anthropic message body; NAME.out.json the exact chat.completion
 *   streams/NAME.in.sse     Anthropic SSE bytes; NAME.out.sse the exact OpenAI SSE bytes;
 *   streams/NAME.meta.json  {"include_usage", "rc": done|error|garbage, "error": class,
 *                            "usage": {prompt, completion, cached, cache_write}}
 *   classify.json           [[status, body or null, class name], ...]
 * ANTHROPIC_REGEN=1 rewrites the request and response .out files (review the diff).
 * Every stream is also fed split in two at every byte and one byte at a time; the
 * output must be byte-identical. "created" is pinned with prov_anthropic_set_clock. */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "prov_json.h"
#include "provider.h"
#include "vector_harness.h"

void prov_anthropic_set_clock(int64_t now_s); /* test hook in anthropic.c */

#define FIXED_NOW 1735000000

static const char *vec_dir;

static const provider_ops *ops(void) { return &prov_anthropic; }

static char *path_of(const char *sub, const char *name, const char *suffix) {
  char *p = NULL;
  assert_true(asprintf(&p, "%s/%s%s", sub, name, suffix) > 0);
  return p;
}

/* ------------------------------------------------------------ requests */

static const char *tstr(json_t *target, const char *key, const char *dflt) {
  json_t *v = json_object_get(target, key);
  return json_is_string(v) ? json_string_value(v) : dflt;
}

/* {"url", "headers", "body"} of the built request, or {"error": message}. */
static json_t *run_request_case(const char *name, const char *bytes, size_t len, void *ctx) {
  (void)ctx;
  json_t *in = prov_json_loadb(bytes, len, 0, NULL);
  if (!in) fail_msg("%s: vector is not JSON", name);
  json_t *target = json_object_get(in, "target"), *req = json_object_get(in, "request");
  assert_non_null(req);
  prov_target t = {
      .api_base = tstr(target, "api_base", "https://api.anthropic.com/v1"),
      .api_key = tstr(target, "api_key", "sk-ant-test"),
      .upstream_model = tstr(target, "upstream_model", "claude-sonnet-4-5"),
      .api_version = tstr(target, "api_version", ""),
  };
  char *body = prov_json_dumps(req, JSON_COMPACT); /* reals as a client writes them: 0.7 */
  json_t *so = json_object_get(req, "stream_options");
  prov_canon c = {.body = body, .len = strlen(body),
                  .stream = json_is_true(json_object_get(req, "stream")),
                  .include_usage = json_is_true(json_object_get(so, "include_usage"))};
  prov_request r = {0};
  char err[256] = "";
  int rc = ops()->build_request(&t, &c, &r, err, sizeof err);
  json_t *got;
  if (rc == -EINVAL) {
    assert_int_equal(r.body.len, 0);
    got = json_pack("{s:s}", "error", err);
  } else {
    if (rc != 0) fail_msg("%s: build_request failed %d: %s", name, rc, err);
    json_error_t je;
    vh_check_raw(name, r.body.data, r.body.len);
    json_t *b = prov_json_loadb(r.body.data, r.body.len, 0, &je);
    if (!b) fail_msg("%s: body is not JSON: %s", name, je.text);
    got = json_pack("{s:s,s:o,s:o}", "url", buf_cstr(&r.url), "headers", vh_prov_headers_json(&r),
                    "body", b);
  }
  prov_request_free(&r);
  free(body);
  json_decref(in);
  return got;
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vec_dir, "requests", vh_regen_enabled("ANTHROPIC_REGEN"), run_request_case, NULL, NULL) >= 18);
}

/* ------------------------------------------------------------ responses */

static void expect_usage(const char *name, json_t *u, const prov_usage *got) {
  if (!u) return;
  json_t *d = json_object_get(u, "prompt_tokens_details");
  if (!json_object_get(u, "prompt_tokens")) { /* meta form */
    assert_int_equal(got->prompt_tokens, json_integer_value(json_object_get(u, "prompt")));
    assert_int_equal(got->completion_tokens, json_integer_value(json_object_get(u, "completion")));
    assert_int_equal(got->cached_tokens, json_integer_value(json_object_get(u, "cached")));
    assert_int_equal(got->cache_write_tokens,
                     json_integer_value(json_object_get(u, "cache_write")));
  } else {
    assert_int_equal(got->prompt_tokens, json_integer_value(json_object_get(u, "prompt_tokens")));
    assert_int_equal(got->completion_tokens,
                     json_integer_value(json_object_get(u, "completion_tokens")));
    assert_int_equal(got->cached_tokens, json_integer_value(json_object_get(d, "cached_tokens")));
  }
  if (!got->seen) fail_msg("%s: usage not marked seen", name);
}

static json_t *run_response_case(const char *name, const char *in, size_t len, void *ctx) {
  buf_t out = {0};
  prov_usage *u = ctx;
  memset(u, 0, sizeof *u);
  int rc = ops()->decode_response(in, len, "claude-sonnet", &out, u);
  if (rc) fail_msg("%s: decode_response %d", name, rc);
  vh_check_raw(name, out.data, out.len);
  json_t *got = prov_json_loadb(out.data, out.len, 0, NULL);
  assert_non_null(got);
  buf_free(&out);
  return got;
}

static void check_response_usage(const char *name, json_t *want, json_t *got, void *ctx) {
  (void)got;
  expect_usage(name, json_object_get(want, "usage"), ctx);
}

static void test_responses(void **st) {
  (void)st;
  prov_usage u;
  assert_true(vh_json_cases(vec_dir, "responses", vh_regen_enabled("ANTHROPIC_REGEN"), run_response_case, check_response_usage, &u) >=
              4);
}

static void test_response_garbage(void **st) {
  (void)st;
  static const char *bad[] = {"", "not json", "[]", "{\"type\":\"message\"}",
                              "{\"content\":{}}", "{\"content\":[{\"type\":\"text\"}"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    buf_t out = {0};
    prov_usage u = {0};
    assert_int_equal(ops()->decode_response(bad[i], strlen(bad[i]), "m", &out, &u), PS_GARBAGE);
    assert_int_equal(out.len, 0);
    assert_int_equal(u.seen, 0);
    buf_free(&out);
  }
}

/* ------------------------------------------------------------ streams */

static int rc_of(const char *s) {
  if (!strcmp(s, "done")) return PS_DONE;
  if (!strcmp(s, "error")) return PS_ERROR;
  if (!strcmp(s, "garbage")) return PS_GARBAGE;
  fail_msg("bad rc %s", s);
  return 0;
}

static void run_stream_case(const char *name, void *ctx) {
  (void)ctx;
  char *ip = path_of("streams", name, ".in.sse"), *op = path_of("streams", name, ".out.sse");
  char *mp = path_of("streams", name, ".meta.json");
  size_t len, wlen;
  char *in = vh_read_file(vec_dir, ip, &len), *want = vh_read_file(vec_dir, op, &wlen);
  assert_non_null(in);
  assert_non_null(want);
  json_t *meta = vh_load_json(vec_dir, mp);
  const vh_prov_ctx sctx = {.ops = ops(), .model = "claude-sonnet",
                            .include_usage = json_is_true(json_object_get(meta, "include_usage"))};
  int want_rc = rc_of(json_string_value(json_object_get(meta, "rc")));
  vh_prov_run *whole = vh_feed_whole(&vh_prov_feed, (void *)&sctx, in, len);
  vh_assert_bytes_equal(want, wlen, whole->out.data, whole->out.len, name);
  if (whole->rc != want_rc) fail_msg("%s: rc %d, want %d", name, whole->rc, want_rc);
  const char *werr = json_string_value(json_object_get(meta, "error"));
  if (werr && strcmp(prov_error_name(whole->cls), werr))
    fail_msg("%s: error class %s, want %s", name, prov_error_name(whole->cls), werr);
  expect_usage(name, json_object_get(meta, "usage"), &whole->u);
  vh_feed_splits(&vh_prov_feed, (void *)&sctx, in, len, whole, name);
  vh_prov_feed.free(whole);
  json_decref(meta);
  free(in);
  free(want);
  free(ip);
  free(op);
  free(mp);
}

static void test_streams(void **st) {
  (void)st;
  assert_true(vh_each_case(vec_dir, "streams", ".in.sse", run_stream_case, NULL) >= 8);
}

/* After the terminal event the decoder is sticky: later bytes change nothing. */
static void test_stream_sticky(void **st) {
  (void)st;
  static const char s1[] =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
      "\"usage\":{\"input_tokens\":3}}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
  prov_canon c = {.stream = 1};
  prov_stream *s = ops()->stream_new(&c, "m");
  buf_t out = {0};
  prov_error err = PE_NONE;
  assert_int_equal(ops()->stream_feed(s, s1, sizeof s1 - 1, &out, NULL, &err), PS_DONE);
  size_t n = out.len;
  assert_int_equal(ops()->stream_feed(s, s1, sizeof s1 - 1, &out, NULL, &err), PS_DONE);
  assert_int_equal(ops()->stream_end(s, &out, NULL), PS_DONE);
  assert_int_equal(out.len, n);
  assert_int_equal(err, PE_NONE);
  ops()->stream_free(s);
  buf_free(&out);
}

/* ------------------------------------------------------------ errors */

static void test_classify(void **st) {
  (void)st;
  json_t *cases = vh_load_json(vec_dir, "classify.json");
  assert_true(json_array_size(cases) >= 12);
  size_t i;
  json_t *cs;
  json_array_foreach(cases, i, cs) {
    int status = (int)json_integer_value(json_array_get(cs, 0));
    json_t *body = json_array_get(cs, 1);
    const char *want = json_string_value(json_array_get(cs, 2));
    const char *b = json_is_string(body) ? json_string_value(body) : NULL;
    uint64_t retry = 77;
    prov_error e = ops()->classify_error(status, b, b ? strlen(b) : 0, &retry);
    if (strcmp(prov_error_name(e), want))
      fail_msg("classify case %zu (%d %s): %s, want %s", i, status, b ? b : "(null)",
               prov_error_name(e), want);
    assert_int_equal(retry, 77);
  }
  json_decref(cases);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("anthropic"), &prov_anthropic);
  assert_ptr_equal(provider_find("Anthropic"), &prov_anthropic);
}

int main(int argc, char **argv) {
  vec_dir = argc > 1 ? argv[1] : getenv("ANTHROPIC_VECTORS");
  if (!vec_dir) {
    fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
    return 2;
  }
  prov_anthropic_set_clock(FIXED_NOW);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_response_garbage),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_sticky),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
