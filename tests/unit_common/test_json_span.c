/* test_json_span.c — common/json_span.c: validation against RFC 8259 (numbers, escapes,
 * UTF-8, nesting), whole-value spans, and path lookups (escaped keys, duplicates: last wins,
 * arrays, misses). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "json_span.h"

#define K(k) {(k), 0}
#define I(i) {NULL, (i)}

static int whole(const char *s, json_span *v) { return json_span_whole(s, strlen(s), v); }

static void accepts_valid_values(void **state) {
  (void)state;
  static const char *ok[] = {
      "0", "-0", "12345678901234567890", "0.1", "1e-7", "-1.5E+300", "1e999", "true", "false",
      "null", "\"\"", "\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\"", "\"\\u0000\"", "\"\\uD83D\\uDE00\"",
      "\"h\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"", "[]", "{}", " [ 1 , [ 2 , [ ] ] ] ",
      "{\"a\":{\"b\":[1,{\"c\":null}]},\"d\":\"e\"}", "\t\r\n{ \"k\" : 1 }\n",
  };
  for (size_t i = 0; i < sizeof ok / sizeof *ok; i++) {
    json_span v;
    if (whole(ok[i], &v)) fail_msg("rejected %s", ok[i]);
  }
}

static void rejects_invalid_values(void **state) {
  (void)state;
  static const char *bad[] = {
      "", " ", "01", "-", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "Infinity", "tru",
      "nul", "\"abc", "\"a\nb\"", "\"\\x\"", "\"\\u12\"", "\"\\uD800\"", "\"\\uDC00\"",
      "\"\\uD800\\u0041\"", "\"\xc3\"", "\"\xc0\xaf\"", "\"\xed\xa0\x80\"", "\"\xf5\x80\x80\x80\"",
      "\"\xe0\x80\xaf\"", "[1,]", "[,1]", "{\"a\":1,}", "{\"a\" 1}", "{a:1}", "{\"a\":}", "[1 2]",
      "1 2", "{} x", "[", "{", "{\"a\":1", "'a'", "[1]]",
  };
  static const char nul_escape[] = "\"\\\0\""; /* "\<NUL>": found by the fuzzer */
  json_span v0;
  assert_int_equal(json_span_whole(nul_escape, sizeof nul_escape - 1, &v0), JSON_SPAN_EINVAL);
  static const char nul_after[] = "6\0"; /* jansson stops at the NUL; RFC 8259 does not */
  assert_int_equal(json_span_whole(nul_after, sizeof nul_after - 1, &v0), JSON_SPAN_EINVAL);
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
    json_span v;
    int rc = whole(bad[i], &v);
    if (rc != JSON_SPAN_EINVAL) fail_msg("accepted or misclassified \"%s\": %d", bad[i], rc);
  }
}

static void whole_span_excludes_whitespace(void **state) {
  (void)state;
  const char *s = "  {\"x\":0.1, \"n\":12345678901234567890}\n ";
  json_span v;
  assert_int_equal(whole(s, &v), 0);
  assert_ptr_equal(v.p, s + 2);
  assert_int_equal(v.len, strlen("{\"x\":0.1, \"n\":12345678901234567890}"));
  assert_true(json_span_is_object(&v));
  assert_false(json_span_is_array(&v));
}

static void skip_reports_end(void **state) {
  (void)state;
  const char *s = "[1, {\"a\": \"]\"}] trailing";
  size_t end = 0;
  assert_int_equal(json_span_skip(s, strlen(s), 0, &end), 0);
  assert_int_equal(end, strlen("[1, {\"a\": \"]\"}]"));
  assert_int_equal(json_span_skip(s, strlen(s), 2, &end), JSON_SPAN_EINVAL); /* ",": no value */
  assert_int_equal(json_span_skip(s, strlen(s), 4, &end), 0);
  assert_int_equal(end, strlen("[1, {\"a\": \"]\"}"));
}

static void depth_is_limited(void **state) {
  (void)state;
  size_t n = JSON_SPAN_MAX_DEPTH;
  char *s = malloc(2 * n + 2);
  memset(s, '[', n);
  memset(s + n, ']', n);
  json_span v;
  assert_int_equal(json_span_whole(s, 2 * n, &v), 0); /* exactly the limit */
  memset(s, '[', n + 1);
  memset(s + n + 1, ']', n + 1);
  assert_int_equal(json_span_whole(s, 2 * n + 2, &v), JSON_SPAN_EDEPTH);
  free(s);
}

static void assert_found(const char *s, const json_span_step *path, size_t n, const char *want) {
  json_span v = {0};
  int rc = json_span_find(s, strlen(s), path, n, &v);
  if (rc) fail_msg("%s: rc %d, want %s", s, rc, want);
  if (v.len != strlen(want) || memcmp(v.p, want, v.len))
    fail_msg("%s: got %.*s, want %s", s, (int)v.len, v.p, want);
}

static void find_follows_keys_and_indices(void **state) {
  (void)state;
  const char *s = "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"hi\"},"
                  "{\"functionCall\":{\"name\":\"f\",\"args\":{\"x\":0.1, \"n\":12345678901234567890,"
                  "\"a\":[[1,2],[3]]}}}]}}]}";
  json_span_step p[] = {K("candidates"), I(0), K("content"), K("parts"), I(1),
                        K("functionCall"), K("args")};
  assert_found(s, p, 7, "{\"x\":0.1, \"n\":12345678901234567890,\"a\":[[1,2],[3]]}");
  json_span_step q[] = {K("candidates"), I(0), K("content"), K("parts"), I(0), K("text")};
  assert_found(s, q, 6, "\"hi\"");
  json_span_step miss1[] = {K("candidates"), I(1)};
  json_span_step miss2[] = {K("candidates"), I(0), K("content"), K("parts"), I(0), K("text"),
                            K("deeper")};
  json_span_step miss3[] = {K("candidates"), K("content")};
  json_span v;
  assert_int_equal(json_span_find(s, strlen(s), miss1, 2, &v), JSON_SPAN_ENOENT);
  assert_int_equal(json_span_find(s, strlen(s), miss2, 7, &v), JSON_SPAN_ENOENT);
  assert_int_equal(json_span_find(s, strlen(s), miss3, 2, &v), JSON_SPAN_ENOENT);
  assert_found(s, NULL, 0, s);
}

static void find_unescapes_keys(void **state) {
  (void)state;
  json_span_step p[] = {K("ab")};
  assert_found("{\"a\\u0062\":1}", p, 1, "1");
  json_span_step e[] = {K("\xc3\xa9\xf0\x9f\x98\x80")};
  assert_found("{\"\\u00e9\\ud83d\\ude00\":2,\"x\":3}", e, 1, "2");
  json_span_step nl[] = {K("a\nb/")};
  assert_found("{\"a\\nb\\/\":4}", nl, 1, "4");
  json_span_step pre[] = {K("a")};
  json_span v;
  const char *s = "{\"ab\":1,\"\":2}";
  assert_int_equal(json_span_find(s, strlen(s), pre, 1, &v), JSON_SPAN_ENOENT);
  const char *nul = "{\"a\\u0000\":1}"; /* a key with a NUL never equals a C string */
  assert_int_equal(json_span_find(nul, strlen(nul), pre, 1, &v), JSON_SPAN_ENOENT);
}

static void find_last_duplicate_wins(void **state) {
  (void)state;
  json_span_step p[] = {K("a")};
  assert_found("{\"a\":1,\"b\":2,\"a\":[3]}", p, 1, "[3]");
  json_span_step q[] = {K("a"), K("x")};
  const char *s = "{\"a\":{\"x\":1},\"a\":{\"y\":2}}"; /* the later "a" has no x: a miss */
  json_span v;
  assert_int_equal(json_span_find(s, strlen(s), q, 2, &v), JSON_SPAN_ENOENT);
  assert_found("{\"a\":{\"y\":2},\"a\":{\"x\":5}}", q, 2, "5");
}

static void find_validates_whole_text(void **state) {
  (void)state;
  json_span_step p[] = {K("a")};
  json_span v;
  const char *after = "{\"a\":1,\"b\":01}"; /* the hit is fine, the rest is not */
  assert_int_equal(json_span_find(after, strlen(after), p, 1, &v), JSON_SPAN_EINVAL);
  const char *trail = "{\"a\":1} {}";
  assert_int_equal(json_span_find(trail, strlen(trail), p, 1, &v), JSON_SPAN_EINVAL);
  assert_int_equal(json_span_find(NULL, 0, p, 1, &v), JSON_SPAN_EINVAL);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(accepts_valid_values),
      cmocka_unit_test(rejects_invalid_values),
      cmocka_unit_test(whole_span_excludes_whitespace),
      cmocka_unit_test(skip_reports_end),
      cmocka_unit_test(depth_is_limited),
      cmocka_unit_test(find_follows_keys_and_indices),
      cmocka_unit_test(find_unescapes_keys),
      cmocka_unit_test(find_last_duplicate_wins),
      cmocka_unit_test(find_validates_whole_text),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
