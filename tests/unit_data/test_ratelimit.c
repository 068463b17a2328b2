/* test_ratelimit.c — provider reset hints (ratelimit.h) in the formats of
 * ../shared/docs/provider-wire-formats.md §2.7 (OpenAI, Groq) and §4.7 (Anthropic). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "ratelimit.h"

#define NOW_WALL 1748779200000ull /* 2025-06-01T12:00:00Z */

static void feed(ratelimit_hint *h, const char *name, const char *value) {
  ratelimit_header(h, name, strlen(name), value, strlen(value), NOW_WALL);
}

static uint64_t go(const char *s) {
  uint64_t ms = 12345;
  assert_int_equal(ratelimit_parse_go_duration(s, strlen(s), &ms), 0);
  return ms;
}

static void test_go_durations(void **unused) {
  (void)unused;
  assert_int_equal(go("1s"), 1000);
  assert_int_equal(go("12ms"), 12);
  assert_int_equal(go("20ms"), 20);
  assert_int_equal(go("6m0s"), 360000);
  assert_int_equal(go("1h2m3.5s"), 3723500);
  assert_int_equal(go("2m59.5s"), 179500);
  assert_int_equal(go("7.66s"), 7660);
  assert_int_equal(go("0s"), 0);
  assert_int_equal(go("1500us"), 2); /* rounded up */
  uint64_t ms;
  const char *bad[] = {"", "s", "1", "1x", "1s2", "-1s", "abc"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_not_equal(ratelimit_parse_go_duration(bad[i], strlen(bad[i]), &ms), 0);
}

static void test_timestamps(void **unused) {
  (void)unused;
  uint64_t t;
  const char *a = "2025-06-01T12:00:30Z";
  assert_int_equal(ratelimit_parse_rfc3339(a, strlen(a), &t), 0);
  assert_int_equal(t, 1748779230000ull);
  const char *b = "2025-06-01T14:00:30.25+02:00";
  assert_int_equal(ratelimit_parse_rfc3339(b, strlen(b), &t), 0);
  assert_int_equal(t, 1748779230250ull);
  const char *c = "Wed, 21 Oct 2015 07:28:00 GMT";
  assert_int_equal(ratelimit_parse_http_date(c, strlen(c), &t), 0);
  assert_int_equal(t, 1445412480000ull);
  const char *bad[] = {"2025-06-01", "2025-13-01T00:00:00Z", "2025-06-01T12:00:30", "yesterday"};
  for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
    assert_int_not_equal(ratelimit_parse_rfc3339(bad[i], strlen(bad[i]), &t), 0);
  assert_int_not_equal(ratelimit_parse_http_date("Wed, 21 Foo 2015 07:28:00 GMT", 29, &t), 0);
}

static void test_retry_after_wins(void **unused) {
  (void)unused;
  ratelimit_hint h = {0};
  assert_int_equal(ratelimit_wait_ms(&h), 0);
  feed(&h, "x-ratelimit-reset-tokens", "6m0s");
  assert_int_equal(ratelimit_wait_ms(&h), 360000);
  feed(&h, "Retry-After", " 2 \r\n"); /* case, blanks and CR LF as curl hands them over */
  assert_int_equal(ratelimit_wait_ms(&h), 2000);
  feed(&h, "retry-after-ms", "1500.5");
  assert_int_equal(ratelimit_wait_ms(&h), 1501); /* the precise one wins */

  ratelimit_hint d = {0};
  feed(&d, "retry-after", "Sun, 01 Jun 2025 12:00:07 GMT");
  assert_int_equal(ratelimit_wait_ms(&d), 7000);
  ratelimit_hint past = {0};
  feed(&past, "retry-after", "Wed, 21 Oct 2015 07:28:00 GMT");
  feed(&past, "x-ratelimit-reset-requests", "1s");
  assert_int_equal(ratelimit_wait_ms(&past), 0); /* present, already over */
  ratelimit_hint junk = {0};
  feed(&junk, "retry-after", "soon");
  feed(&junk, "x-ratelimit-reset-requests", "1s");
  assert_int_equal(ratelimit_wait_ms(&junk), 1000); /* garbage is ignored */
}

static void test_openai_exhausted_limit(void **unused) {
  (void)unused;
  /* requests run out in 1 s, tokens in 6 min: without remaining counts the largest wins */
  ratelimit_hint h = {0};
  feed(&h, "x-ratelimit-reset-requests", "1s");
  feed(&h, "x-ratelimit-reset-tokens", "6m0s");
  assert_int_equal(ratelimit_wait_ms(&h), 360000);
  /* ... but the limit that is actually exhausted decides */
  feed(&h, "x-ratelimit-remaining-requests", "0");
  feed(&h, "x-ratelimit-remaining-tokens", "29500");
  assert_int_equal(ratelimit_wait_ms(&h), 1000);
  feed(&h, "unrelated", "5");
  assert_int_equal(ratelimit_wait_ms(&h), 1000);
}

static void test_anthropic(void **unused) {
  (void)unused;
  ratelimit_hint h = {0};
  feed(&h, "anthropic-ratelimit-requests-reset", "2025-06-01T12:00:30Z");
  feed(&h, "anthropic-ratelimit-tokens-reset", "2025-06-01T12:00:05Z");
  feed(&h, "anthropic-ratelimit-input-tokens-reset", "2025-06-01T12:00:04Z");
  feed(&h, "anthropic-ratelimit-output-tokens-reset", "2025-06-01T11:59:00Z"); /* past */
  assert_int_equal(ratelimit_wait_ms(&h), 30000);
  feed(&h, "anthropic-ratelimit-input-tokens-remaining", "0");
  feed(&h, "anthropic-ratelimit-requests-remaining", "49");
  assert_int_equal(ratelimit_wait_ms(&h), 4000);
  feed(&h, "retry-after", "9");
  assert_int_equal(ratelimit_wait_ms(&h), 9000);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_go_durations), cmocka_unit_test(test_timestamps),
      cmocka_unit_test(test_retry_after_wins), cmocka_unit_test(test_openai_exhausted_limit),
      cmocka_unit_test(test_anthropic),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
