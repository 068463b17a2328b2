/* test_log_histogram.c — common/log.c JSON escaping and common/histogram.c quantiles. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "histogram.h"
#include "log.h"

static void escape_specials(void **state) {
  char out[128];
  const char in[] = "a\"b\\c\nd\re\tf\x01g\x7f";
  size_t n = log_json_escape(out, sizeof out, in, sizeof in - 1);
  assert_string_equal(out, "a\\\"b\\\\c\\nd\\re\\tf\\u0001g\\u007f");
  assert_int_equal(n, strlen(out));
}

static void escape_utf8_passthrough(void **state) {
  char out[64];
  const char in[] = "h\xc3\xa9llo \xe2\x82\xac";
  log_json_escape(out, sizeof out, in, sizeof in - 1);
  assert_string_equal(out, in);
}

static void escape_embedded_nul(void **state) {
  char out[64];
  log_json_escape(out, sizeof out, "a\0b", 3);
  assert_string_equal(out, "a\\u0000b");
}

static void escape_truncates_safely(void **state) {
  char out[8];
  memset(out, 'X', sizeof out);
  size_t n = log_json_escape(out, sizeof out, "abcdefghijkl", 12);
  assert_true(n <= 7);
  assert_int_equal(out[n], '\0');
  /* an escape sequence is never cut in half */
  n = log_json_escape(out, 6, "abcd\"", 5);
  assert_string_equal(out, "abcd");
  assert_int_equal(n, 4);
  assert_int_equal(log_json_escape(out, 0, "a", 1), 0);
}

static void hist_buckets(void **state) {
  hist_t h;
  memset(&h, 0, sizeof h);
  hist_add(&h, 0.5);    /* <= 1 */
  hist_add(&h, 1.0);    /* <= 1 (inclusive) */
  hist_add(&h, 3);      /* <= 5 */
  hist_add(&h, 1e9);    /* +Inf */
  assert_int_equal(h.counts[0], 2);
  assert_int_equal(h.counts[2], 1);
  assert_int_equal(h.counts[HIST_BUCKETS - 1], 1);
  assert_int_equal(h.total, 4);
  assert_true(h.sum_ms > 1e9);
}

static void hist_quantiles(void **state) {
  uint64_t counts[HIST_BUCKETS] = {0};
  assert_true(hist_quantile(counts, HIST_BUCKETS, 0.5) == 0.0); /* empty */
  /* 100 samples in (10, 25] ms: interpolation inside the bucket */
  counts[4] = 100;
  double p50 = hist_quantile(counts, HIST_BUCKETS, 0.5);
  double p99 = hist_quantile(counts, HIST_BUCKETS, 0.99);
  assert_true(p50 > 17.4 && p50 < 17.6);
  assert_true(p99 > 24.8 && p99 <= 25.0);
  /* mixed: 90 fast (<= 1 ms), 10 slow (500, 1000] → p50 fast, p99 slow */
  memset(counts, 0, sizeof counts);
  counts[0] = 90;
  counts[9] = 10;
  assert_true(hist_quantile(counts, HIST_BUCKETS, 0.5) <= 1.0);
  double s = hist_quantile(counts, HIST_BUCKETS, 0.99);
  assert_true(s > 500 && s <= 1000);
  /* monotone in q */
  double prev = 0;
  for (double q = 0.05; q <= 1.0; q += 0.05) {
    double v = hist_quantile(counts, HIST_BUCKETS, q);
    assert_true(v >= prev);
    prev = v;
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(escape_specials),       cmocka_unit_test(escape_utf8_passthrough),
      cmocka_unit_test(escape_embedded_nul),   cmocka_unit_test(escape_truncates_safely),
      cmocka_unit_test(hist_buckets),          cmocka_unit_test(hist_quantiles),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
