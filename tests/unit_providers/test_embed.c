/* test_embed.c — golden vectors for the Azure and Ollama embeddings adapters
 * (vectors/embed/, passed as argv[1]):
 *   requests.json   [{name, provider, target, body (raw text), expect}] through the family's
 *                   build_embeddings: expect {"url","headers":[…],"body": exact text} or
 *                   {"error": exact client message} (-EINVAL, nothing left in the request)
 *   responses.json  [{name, provider, model, in (raw text), out | raw | garbage, usage,
 *                   base64?}] through decode_embeddings: out compared with json_equal, raw byte
 *                   for byte (Azure splices, never re-dumps); usage = prompt_tokens; base64 =
 *                   the list after prov_embeddings_base64 (what a client asking
 *                   encoding_format "base64" gets), compared with json_equal.
 * Also: every family with an ops entry here reaches the functions through provider_find. */
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

static const char *str(const json_t *o, const char *key) {
  const char *s = json_string_value(json_object_get(o, key));
  return s ? s : "";
}

static const provider_ops *ops_of(const json_t *c) {
  const provider_ops *ops = provider_find(str(c, "provider"));
  assert_non_null(ops);
  assert_non_null(ops->build_embeddings);
  assert_non_null(ops->decode_embeddings);
  return ops;
}

static void check_request(const json_t *c) {
  const char *name = str(c, "name"), *body = str(c, "body");
  const json_t *tj = json_object_get(c, "target"), *want = json_object_get(c, "expect");
  prov_target t = {.api_base = str(tj, "api_base"), .api_key = str(tj, "api_key"),
                   .upstream_model = str(tj, "upstream_model"),
                   .api_version = str(tj, "api_version")};
  prov_request r = {0};
  char err[256] = "";
  int rc = ops_of(c)->build_embeddings(&t, body, strlen(body), &r, err, sizeof err);
  if (json_object_get(want, "error")) {
    if (rc != -EINVAL || strcmp(err, str(want, "error")))
      fail_msg("%s: rc %d err '%s', want -EINVAL '%s'", name, rc, err, str(want, "error"));
    assert_int_equal(r.url.len + r.body.len + r.headers.len, 0);
    return;
  }
  if (rc) fail_msg("%s: rc %d (%s)", name, rc, err);
  assert_non_null(buf_cstr(&r.url));
  if (strcmp(r.url.data, str(want, "url")))
    fail_msg("%s: url %s, want %s", name, r.url.data, str(want, "url"));
  const json_t *hs = json_object_get(want, "headers");
  if ((size_t)r.nheaders != json_array_size(hs))
    fail_msg("%s: %d headers, want %zu", name, r.nheaders, json_array_size(hs));
  const char *h = r.headers.data;
  for (int i = 0; i < r.nheaders; h += strlen(h) + 1, i++)
    if (strcmp(h, json_string_value(json_array_get(hs, (size_t)i))))
      fail_msg("%s: header %d '%s', want '%s'", name, i, h,
               json_string_value(json_array_get(hs, (size_t)i)));
  const char *wb = str(want, "body");
  if (r.body.len != strlen(wb) || memcmp(r.body.data, wb, r.body.len))
    fail_msg("%s: body %.*s\n want %s", name, (int)r.body.len, r.body.data, wb);
  prov_request_free(&r);
}

static void check_response(const json_t *c) {
  const char *name = str(c, "name"), *in = str(c, "in");
  buf_t out = {0};
  prov_usage u = {0};
  if (buf_append(&out, "X", 1)) fail(); /* decoders append: what is there must survive */
  int rc = ops_of(c)->decode_embeddings(in, strlen(in), str(c, "model"), &out, &u);
  if (json_is_true(json_object_get(c, "garbage"))) {
    if (rc != PS_GARBAGE) fail_msg("%s: rc %d, want PS_GARBAGE", name, rc);
    assert_int_equal(out.len, 1);
    buf_free(&out);
    return;
  }
  if (rc) fail_msg("%s: rc %d", name, rc);
  assert_int_equal(out.data[0], 'X');
  const char *got = out.data + 1;
  size_t gn = out.len - 1;
  const json_t *raw = json_object_get(c, "raw");
  if (raw && (gn != json_string_length(raw) || memcmp(got, json_string_value(raw), gn)))
    fail_msg("%s: %.*s\n want %s", name, (int)gn, got, json_string_value(raw));
  json_t *doc = json_loadb(got, gn, 0, NULL);
  if (!doc) fail_msg("%s: not JSON: %.*s", name, (int)gn, got);
  const json_t *want = json_object_get(c, "out");
  if (want) vh_assert_json_equal((json_t *)want, doc, name);
  json_decref(doc);
  assert_int_equal(u.seen, 1);
  assert_int_equal(u.prompt_tokens, json_integer_value(json_object_get(c, "usage")));
  assert_int_equal(u.completion_tokens, 0);
  const json_t *b64 = json_object_get(c, "base64");
  if (b64) {
    buf_t b = {0};
    assert_int_equal(prov_embeddings_base64(got, gn, &b), 0);
    json_t *bd = json_loadb(b.data, b.len, 0, NULL);
    if (!bd) fail_msg("%s: base64 output is not JSON: %.*s", name, (int)b.len, b.data);
    vh_assert_json_equal((json_t *)b64, bd, name);
    json_decref(bd);
    buf_free(&b);
  }
  buf_free(&out);
}

static void run_all(const char *file, void (*fn)(const json_t *)) {
  json_t *cases = vh_load_json(vdir, file), *c;
  size_t i;
  assert_true(json_array_size(cases) > 0);
  json_array_foreach(cases, i, c) fn(c);
  json_decref(cases);
}

static void test_requests(void **st) { (void)st; run_all("requests.json", check_request); }
static void test_responses(void **st) { (void)st; run_all("responses.json", check_response); }

/* Many inputs and a long body: no size assumptions in either builder. */
static void test_large(void **st) {
  (void)st;
  buf_t body = {0};
  assert_int_equal(buf_printf(&body, "{\"model\":\"m\",\"input\":["), 0);
  for (int i = 0; i < 2048; i++) assert_int_equal(buf_printf(&body, "%s\"text %d\"", i ? "," : "", i), 0);
  assert_int_equal(buf_printf(&body, "]}"), 0);
  prov_target t = {.api_base = "http://h:1", .api_key = "", .upstream_model = "m2",
                   .api_version = ""};
  char err[128];
  prov_request r = {0};
  assert_int_equal(prov_ollama.build_embeddings(&t, body.data, body.len, &r, err, sizeof err), 0);
  json_t *d = json_loadb(r.body.data, r.body.len, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(d, "input")), 2048);
  json_decref(d);
  prov_request_free(&r);
  t.api_base = "https://r.openai.azure.com";
  assert_int_equal(prov_azure.build_embeddings(&t, body.data, body.len, &r, err, sizeof err), 0);
  assert_int_equal(r.body.len, body.len + 1); /* "m" → "m2", nothing else touched */
  prov_request_free(&r);
  assert_int_equal(buf_printf(&body, "x"), 0); /* 2049 inputs: over the limit for Ollama */
  body.len = 0;
  assert_int_equal(buf_printf(&body, "{\"input\":["), 0);
  for (int i = 0; i < 2049; i++) assert_int_equal(buf_printf(&body, "%s\"t\"", i ? "," : ""), 0);
  assert_int_equal(buf_printf(&body, "]}"), 0);
  t.api_base = "http://h:1";
  assert_int_equal(prov_ollama.build_embeddings(&t, body.data, body.len, &r, err, sizeof err),
                   -EINVAL);
  buf_free(&body);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "vectors/embed";
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_large),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
