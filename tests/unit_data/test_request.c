/* test_request.c — the request body scanner: validity corpus, model span and rewrite,
 * stream flag, duplicates, depth. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "request.h"

static int parse(const char *s, req_info *ri) { return req_parse(s, strlen(s), ri); }

static void test_valid_corpus(void **st) {
  (void)st;
  static const char *valid[] = {
      "0", "-0", "1.5e10", "-12.25E-3", "true", "false", "null", "\"\"", "\"a\\u00e9\\n\"",
      "[]", "[1,2,[3,{}]]", "{}", " { \"a\" : [ 1 , \"x\" ] } ", "\"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\"",
      "{\"a\":{\"b\":{\"c\":null}}}", "\"\\ud83d\\ude00\"", "1e+2"};
  static const char *invalid[] = {
      "", " ", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "01", "1.", ".5", "+1", "-",
      "1e", "tru", "nul", "\"abc", "\"\\x\"", "\"\\u12g4\"", "\"a\tb\"", "[1 2]", "{\"a\":1}x",
      "\"\xc3\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf5\x80\x80\x80\"", "'a'", "[", "1 2",
      "{\"a\":}", "{,}", "NaN", "\"\x01\""};
  for (size_t i = 0; i < sizeof valid / sizeof *valid; i++)
    if (!req_json_valid(valid[i], strlen(valid[i]))) fail_msg("should be valid: %s", valid[i]);
  for (size_t i = 0; i < sizeof invalid / sizeof *invalid; i++)
    if (req_json_valid(invalid[i], strlen(invalid[i]))) fail_msg("should be invalid: %s", invalid[i]);
}

static void test_model_and_stream(void **st) {
  (void)st;
  req_info ri;
  const char *b = "{\"messages\":[{\"model\":\"inner\"}],\"model\" : \"gpt-4\", \"stream\":true}";
  assert_int_equal(parse(b, &ri), REQ_OK);
  assert_string_equal(ri.model, "gpt-4");
  assert_int_equal(ri.stream, 1);
  assert_memory_equal(b + ri.model_off, "\"gpt-4\"", ri.model_len);

  assert_int_equal(parse("{\"model\":\"m\",\"stream\":false}", &ri), REQ_OK);
  assert_int_equal(ri.stream, 0);
  assert_int_equal(parse("{\"model\":\"m\"}", &ri), REQ_OK);
  assert_int_equal(ri.stream, 0);
  assert_int_equal(parse("{\"model\":\"m\",\"stream\":null}", &ri), REQ_OK);
  assert_int_equal(parse("{\"model\":\"m\",\"stream\":\"yes\"}", &ri), REQ_ESTREAM);
  assert_int_equal(parse("{\"model\":\"m\",\"stream\":1}", &ri), REQ_ESTREAM);
  /* nested "stream" keys are not the flag */
  assert_int_equal(parse("{\"model\":\"m\",\"x\":{\"stream\":true}}", &ri), REQ_OK);
  assert_int_equal(ri.stream, 0);
}

static void test_model_errors(void **st) {
  (void)st;
  req_info ri;
  assert_int_equal(parse("{\"messages\":[]}", &ri), REQ_ENOMODEL);
  assert_int_equal(parse("{\"x\":{\"model\":\"a\"}}", &ri), REQ_ENOMODEL);
  assert_int_equal(parse("{\"model\":5}", &ri), REQ_EMODELTYPE);
  assert_int_equal(parse("{\"model\":null}", &ri), REQ_EMODELTYPE);
  assert_int_equal(parse("{\"model\":\"\"}", &ri), REQ_EMODELTYPE);
  assert_int_equal(parse("{\"model\":\"a\\u0000b\"}", &ri), REQ_EMODELTYPE);
  assert_int_equal(parse("{\"model\":\"a\",\"model\":\"b\"}", &ri), REQ_EDUPMODEL);
  /* an escaped key is the same key to the upstream */
  assert_int_equal(parse("{\"model\":\"a\",\"mod\\u0065l\":\"b\"}", &ri), REQ_EDUPMODEL);
  assert_int_equal(parse("{\"model\":\"a\",\"model\":5}", &ri), REQ_EDUPMODEL);
  assert_int_equal(parse("[1]", &ri), REQ_EOBJECT);
  assert_int_equal(parse("\"model\"", &ri), REQ_EOBJECT);
  assert_int_equal(parse("{\"model\":\"a\"", &ri), REQ_EJSON);
  assert_int_equal(parse("{\"model\":\"a\"} {}", &ri), REQ_EJSON);
  assert_int_equal(parse("{\"model\":\"a\",\"x\":[1,]}", &ri), REQ_EJSON);
  assert_int_equal(parse("", &ri), REQ_EJSON);
  char longm[400];
  memset(longm, 0, sizeof longm);
  strcpy(longm, "{\"model\":\"");
  memset(longm + 10, 'x', 300);
  strcat(longm, "\"}");
  assert_int_equal(parse(longm, &ri), REQ_EMODELTYPE);
}

static void test_depth(void **st) {
  (void)st;
  req_info ri;
  char b[2000];
  size_t n = 0;
  n += (size_t)sprintf(b, "{\"model\":\"m\",\"x\":");
  for (int i = 0; i < 126; i++) b[n++] = '[';
  for (int i = 0; i < 126; i++) b[n++] = ']';
  b[n++] = '}';
  b[n] = 0;
  assert_int_equal(parse(b, &ri), REQ_OK); /* 127 levels incl. the top object */
  n = (size_t)sprintf(b, "{\"model\":\"m\",\"x\":");
  for (int i = 0; i < 128; i++) b[n++] = '[';
  for (int i = 0; i < 128; i++) b[n++] = ']';
  b[n++] = '}';
  b[n] = 0;
  assert_int_equal(parse(b, &ri), REQ_EDEPTH);
  char deep[100001];
  memset(deep, '[', 100000);
  deep[100000] = 0;
  assert_false(req_json_valid(deep, 100000)); /* no stack overflow */
}

static void test_rewrite(void **st) {
  (void)st;
  req_info ri;
  buf_t out = {0};
  const char *b = "{ \"messages\":[{\"role\":\"user\",\"content\":\"model\"}],\n \"model\":\t\"gp\\u0074-4\" ,\"temperature\":0.7}";
  assert_int_equal(parse(b, &ri), REQ_OK);
  assert_string_equal(ri.model, "gpt-4");
  assert_int_equal(req_rewrite_model(&out, b, strlen(b), &ri, "up/\"quoted\"\\x\n"), 0);
  const char *want = "{ \"messages\":[{\"role\":\"user\",\"content\":\"model\"}],\n \"model\":\t\"up/\\\"quoted\\\"\\\\x\\u000a\" ,\"temperature\":0.7}";
  assert_int_equal(out.len, strlen(want));
  assert_memory_equal(out.data, want, out.len);
  /* the result is still valid and carries the new model */
  req_info r2;
  assert_int_equal(req_parse(out.data, out.len, &r2), REQ_OK);
  assert_string_equal(r2.model, "up/\"quoted\"\\x\n");
  /* unicode escapes in the model decode to UTF-8 */
  assert_int_equal(parse("{\"model\":\"caf\\u00e9 \\ud83d\\ude00\"}", &ri), REQ_OK);
  assert_string_equal(ri.model, "caf\xc3\xa9 \xf0\x9f\x98\x80");
  buf_free(&out);
}

static void test_find_and_uint(void **st) {
  (void)st;
  const char *j = "{\"a\":{\"usage\":1},\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}";
  size_t o, l;
  uint64_t v;
  assert_int_equal(req_json_find(j, strlen(j), "usage", &o, &l), 0);
  assert_int_equal(j[o], '{');
  assert_int_equal(req_json_find(j + o, l, "completion_tokens", &o, &l), 0);
  assert_int_equal(req_json_find(j, strlen(j), "nope", &o, &l), -1);
  assert_int_equal(req_json_uint("123", 3, &v), 0);
  assert_int_equal(v, 123);
  assert_int_equal(req_json_uint("1.5", 3, &v), -1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_valid_corpus), cmocka_unit_test(test_model_and_stream),
      cmocka_unit_test(test_model_errors), cmocka_unit_test(test_depth),
      cmocka_unit_test(test_rewrite),      cmocka_unit_test(test_find_and_uint),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
