/* test_sse.c — SSE decoder: every split point gives the same events; CRLF and CR;
 * comments; multi-line data; [DONE]; usage extraction. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "sse.h"

typedef struct collected {
  buf_t all;   /* "event|data\n" per event */
  int n;       /* events */
  int done;    /* [DONE] seen */
} collected;

static void on_ev(void *ud, const sse_event *ev) {
  collected *c = ud;
  c->n++;
  c->done |= sse_is_done(ev);
  buf_printf(&c->all, "%s|", ev->event);
  buf_append(&c->all, ev->data, ev->data_len);
  buf_append(&c->all, "\n", 1);
}

static const char STREAM[] =
    ": OPENROUTER PROCESSING\n\n"
    "data: {\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n\n"
    "event: note\r\ndata: line one\r\ndata: line two\r\nid: 7\r\nretry: 10\r\n\r\n"
    "data:nospace\r\r"
    "data: {\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17}}\n\n"
    "data: [DONE]\n\n";

static void feed_split(const char *s, size_t n, size_t at, size_t at2, collected *c) {
  sse_decoder d;
  sse_init(&d);
  assert_int_equal(sse_feed(&d, s, at, on_ev, c), 0);
  assert_int_equal(sse_feed(&d, s + at, at2 - at, on_ev, c), 0);
  assert_int_equal(sse_feed(&d, s + at2, n - at2, on_ev, c), 0);
  sse_free(&d);
}

static void test_whole(void **st) {
  (void)st;
  collected c = {0};
  feed_split(STREAM, sizeof STREAM - 1, 0, 0, &c);
  const char *want =
      "|{\"choices\":[{\"delta\":{\"content\":\"Hel\"}}],\"usage\":null}\n"
      "note|line one\nline two\n"
      "|nospace\n"
      "|{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,\"total_tokens\":17}}\n"
      "|[DONE]\n";
  assert_int_equal(c.n, 5);
  assert_true(c.done);
  assert_int_equal(c.all.len, strlen(want));
  assert_memory_equal(c.all.data, want, c.all.len);
  buf_free(&c.all);
}

static void test_every_split(void **st) {
  (void)st;
  size_t n = sizeof STREAM - 1;
  collected ref = {0};
  feed_split(STREAM, n, 0, 0, &ref);
  for (size_t a = 0; a <= n; a++) {
    for (size_t b = a; b <= n; b += (b < a + 4 ? 1 : 7)) { /* all single splits, many doubles */
      collected c = {0};
      feed_split(STREAM, n, a, b, &c);
      if (c.all.len != ref.all.len || memcmp(c.all.data, ref.all.data, c.all.len) != 0)
        fail_msg("split at %zu,%zu differs", a, b);
      buf_free(&c.all);
    }
  }
  /* one byte at a time */
  sse_decoder d;
  collected c = {0};
  sse_init(&d);
  for (size_t i = 0; i < n; i++) sse_feed(&d, STREAM + i, 1, on_ev, &c);
  assert_int_equal(c.all.len, ref.all.len);
  assert_memory_equal(c.all.data, ref.all.data, c.all.len);
  sse_free(&d);
  buf_free(&c.all);
  buf_free(&ref.all);
}

static void test_no_done_and_empty(void **st) {
  (void)st;
  collected c = {0};
  const char *s = "data: {\"a\":1}\n\ndata: [DONE] \n\n: comment only\n\nevent: x\n\n";
  sse_decoder d;
  sse_init(&d);
  sse_feed(&d, s, strlen(s), on_ev, &c);
  assert_int_equal(c.n, 2);   /* an event with no data is not dispatched */
  assert_false(c.done);       /* "[DONE] " is not the terminator */
  /* an unterminated event is never dispatched */
  sse_feed(&d, "data: partial", 13, on_ev, &c);
  assert_int_equal(c.n, 2);
  sse_free(&d);
  buf_free(&c.all);
}

static void test_usage(void **st) {
  (void)st;
  uint64_t p = 0, q = 0;
  const char *u = "{\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}";
  assert_int_equal(sse_usage(u, strlen(u), &p, &q), 0);
  assert_int_equal(p, 12);
  assert_int_equal(q, 5);
  const char *nul = "{\"choices\":[{\"delta\":{\"content\":\"\\\"usage\\\":{\"}}],\"usage\":null}";
  assert_int_equal(sse_usage(nul, strlen(nul), &p, &q), -1);
  const char *nested = "{\"x\":{\"usage\":{\"prompt_tokens\":1}}}";
  assert_int_equal(sse_usage(nested, strlen(nested), &p, &q), -1);
  assert_int_equal(sse_usage("[DONE]", 6, &p, &q), -1);
}

static void test_limit(void **st) {
  (void)st;
  sse_decoder d;
  collected c = {0};
  sse_init(&d);
  size_t n = SSE_MAX_EVENT_BYTES / 4 + 1;
  char *big = malloc(n);
  memset(big, 'x', n);
  int rc = 0;
  for (int i = 0; i < 5 && rc == 0; i++) rc = sse_feed(&d, big, n, on_ev, &c);
  assert_int_equal(rc, -1);
  free(big);
  sse_free(&d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_whole), cmocka_unit_test(test_every_split),
      cmocka_unit_test(test_no_done_and_empty), cmocka_unit_test(test_usage),
      cmocka_unit_test(test_limit),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
