/* test_prov_json.c — the exact-numbers helpers of prov_json.c: loading past int64, count
 * readers, shortest-real dumps, raw argument spans and request splicing (including the
 * fallback when a client string collides with a placeholder). */
#include <errno.h>
#include <float.h>
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "prov_json.h"

static char *dump(const char *json) {
  json_t *j = json_loads(json, JSON_DECODE_ANY, NULL);
  assert_non_null(j);
  char *s = prov_json_dumps(j, JSON_COMPACT | JSON_ENCODE_ANY | JSON_REAL_PRECISION(15));
  json_decref(j);
  assert_non_null(s);
  return s;
}

static void dumps_shortest_reals(void **st) {
  (void)st;
  char *s = dump("{\"t\":0.7,\"a\":[0.1,1e-7,1.0,100.0,1e300,-2.5e-10,0.30000000000000004,"
                 "-0.0,12],\"s\":\"0.69999999999999996 1e5\",\"k1.5\":2}");
  assert_string_equal(s, "{\"t\":0.7,\"a\":[0.1,1e-7,1.0,100.0,1e300,-2.5e-10,"
                         "0.30000000000000004,-0.0,12],\"s\":\"0.69999999999999996 1e5\","
                         "\"k1.5\":2}");
  free(s);
  s = dump("\"no \\\"reals\\\" 1.5 here\"");
  assert_string_equal(s, "\"no \\\"reals\\\" 1.5 here\"");
  free(s);
}

static void dumps_round_trip(void **st) {
  (void)st;
  uint64_t x = 88172645463325252ull;
  for (int i = 0; i < 20000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17; /* xorshift: arbitrary bit patterns */
    double d;
    memcpy(&d, &x, sizeof d);
    if (!isfinite(d)) continue;
    json_t *r = json_real(d);
    char *s = prov_json_dumps(r, JSON_ENCODE_ANY);
    assert_non_null(s);
    json_t *back = json_loads(s, JSON_DECODE_ANY, NULL);
    if (!json_is_real(back) || json_real_value(back) != d)
      fail_msg("%.17g printed as %s", d, s);
    json_decref(back);
    json_decref(r);
    free(s);
  }
}

static void loadb_survives_big_integers(void **st) {
  (void)st;
  const char *big = "{\"n\":12345678901234567890,\"usage\":{\"prompt_tokens\":7}}";
  json_error_t e;
  assert_null(json_loadb(big, strlen(big), 0, &e)); /* what jansson alone does */
  json_t *j = prov_json_loadb(big, strlen(big), 0, &e);
  assert_non_null(j);
  assert_true(json_is_real(json_object_get(j, "n")));
  assert_int_equal(prov_uint(json_object_get(json_object_get(j, "usage"), "prompt_tokens")), 7);
  json_decref(j);
  j = prov_json_loadb("{\"n\":7}", 7, 0, NULL);
  assert_true(json_is_integer(json_object_get(j, "n"))); /* no retry without an overflow */
  json_decref(j);
  assert_null(prov_json_loadb("{\"n\":", 5, 0, &e));
  assert_null(prov_json_loadb("[1e400]", 7, 0, &e)); /* real overflow: still garbage */
}

static void integer_readers(void **st) {
  (void)st;
  json_t *v[] = {json_integer(5), json_real(6.0), json_integer(-3), json_real(2.5),
                 json_string("7"), json_real(1e30), NULL};
  assert_int_equal(prov_uint(v[0]), 5);
  assert_int_equal(prov_uint(v[1]), 6);
  assert_int_equal(prov_uint(v[2]), 0);
  assert_int_equal(prov_uint(v[3]), 0);
  assert_int_equal(prov_uint(v[4]), 0);
  assert_true(prov_uint(v[5]) == UINT64_MAX);
  assert_int_equal(prov_uint(NULL), 0);
  json_int_t i = 99;
  assert_true(prov_int(v[1], &i) && i == 6);
  assert_true(prov_int(v[2], &i) && i == -3);
  assert_false(prov_int(v[3], &i));
  assert_false(prov_int(v[5], &i));
  assert_false(prov_int(v[4], &i));
  for (int k = 0; v[k]; k++) json_decref(v[k]);
}

static void raw_spans_and_fallback(void **st) {
  (void)st;
  const char *doc = "{\"a\":[{\"args\":{\"x\":0.1, \"n\":12345678901234567890}}]}";
  json_t *j = prov_json_loadb(doc, strlen(doc), 0, NULL);
  json_span_step p[] = {{"a", 0}, {NULL, 0}, {"args", 0}};
  json_t *r = prov_json_raw(doc, strlen(doc), p, 3, NULL);
  assert_string_equal(json_string_value(r), "{\"x\":0.1, \"n\":12345678901234567890}");
  json_decref(r);
  json_decref(j);
  /* deeper than json_span looks: the parsed value is dumped instead */
  size_t depth = JSON_SPAN_MAX_DEPTH + 10;
  char *deep = malloc(2 * depth + 16);
  size_t n = (size_t)sprintf(deep, "{\"v\":");
  memset(deep + n, '[', depth);
  memset(deep + n + depth, ']', depth);
  n += 2 * depth;
  deep[n++] = '}';
  json_t *dj = json_loadb(deep, n, 0, NULL);
  assert_non_null(dj);
  json_span_step q[] = {{"v", 0}};
  r = prov_json_raw(deep, n, q, 1, json_object_get(dj, "v"));
  assert_non_null(r);
  assert_int_equal(json_string_length(r), 2 * depth);
  json_decref(r);
  json_decref(dj);
  free(deep);
}

static void splice_puts_raw_text(void **st) {
  (void)st;
  prov_splice sp = {.n = 0};
  const char *a = "{\"x\":0.1,\"n\":12345678901234567890}", *b = "{ \"y\" : [1e-7] }";
  json_t *body = json_object();
  json_t *ma = prov_splice_mark(&sp, a, strlen(a)), *mb = prov_splice_mark(&sp, b, strlen(b));
  /* marks land in the tree in the opposite order of marking */
  json_object_set_new(body, "first", mb);
  json_object_set_new(body, "t", json_real(0.7));
  json_object_set_new(body, "second", json_pack("[o]", ma));
  buf_t out = {0};
  assert_int_equal(prov_splice_dump(&sp, body, JSON_COMPACT, &out), 0);
  const char *want = "{\"first\":{ \"y\" : [1e-7] },\"t\":0.7,"
                     "\"second\":[{\"x\":0.1,\"n\":12345678901234567890}]}";
  assert_int_equal(out.len, strlen(want));
  assert_memory_equal(out.data, want, out.len);
  buf_free(&out);
  json_decref(body);
  prov_splice_free(&sp);
}

static void splice_collision_falls_back(void **st) {
  (void)st;
  prov_splice sp = {.n = 0};
  const char *a = "{\"x\":0.5}";
  json_t *body = json_object(), *m = prov_splice_mark(&sp, a, strlen(a));
  json_object_set_new(body, "args", m);
  /* a client string equal to the placeholder: the splice cannot tell them apart */
  json_object_set_new(body, "user", json_string(json_string_value(m)));
  buf_t out = {0};
  assert_int_equal(prov_splice_dump(&sp, body, JSON_COMPACT, &out), 0);
  json_t *got = json_loadb(out.data, out.len, 0, NULL);
  assert_non_null(got);
  assert_true(json_is_object(json_object_get(got, "args")));
  assert_true(json_real_value(json_object_get(json_object_get(got, "args"), "x")) == 0.5);
  assert_string_equal(json_string_value(json_object_get(got, "user")),
                      json_string_value(json_object_get(body, "user")));
  json_decref(got);
  buf_free(&out);
  json_decref(body);
  prov_splice_free(&sp);
}

static void splice_nonce_differs_per_build(void **st) {
  (void)st;
  prov_splice s1 = {.n = 0}, s2 = {.n = 0};
  json_t *a = prov_splice_mark(&s1, "{}", 2), *b = prov_splice_mark(&s2, "{}", 2);
  assert_string_not_equal(json_string_value(a), json_string_value(b));
  assert_int_equal(strlen(s1.nonce), 32);
  json_decref(a);
  json_decref(b);
  prov_splice_free(&s1);
  prov_splice_free(&s2);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(dumps_shortest_reals),     cmocka_unit_test(dumps_round_trip),
      cmocka_unit_test(loadb_survives_big_integers), cmocka_unit_test(integer_readers),
      cmocka_unit_test(raw_spans_and_fallback),   cmocka_unit_test(splice_puts_raw_text),
      cmocka_unit_test(splice_collision_falls_back), cmocka_unit_test(splice_nonce_differs_per_build),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
