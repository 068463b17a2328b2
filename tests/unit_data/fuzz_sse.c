/* fuzz_sse.c — libFuzzer target for the SSE decoder: the events must not depend on
 * where the input is split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sse.h"

static void collect(void *ud, const sse_event *ev) {
  buf_t *b = ud;
  uint64_t p, c;
  sse_usage(ev->data, ev->data_len, &p, &c);
  buf_append(b, ev->event, strlen(ev->event));
  buf_append(b, "|", 1);
  buf_append(b, ev->data, ev->data_len);
  buf_append(b, "\0", 1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  sse_decoder d1, d2;
  buf_t a = {0}, b = {0};
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
  sse_init(&d1);
  sse_init(&d2);
  int r1 = sse_feed(&d1, p, size, collect, &a);
  int r2 = sse_feed(&d2, p, cut, collect, &b);
  if (r2 == 0) r2 = sse_feed(&d2, p + cut, size - cut, collect, &b);
  if (r1 == 0 && r2 == 0 && (a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)))) abort();
  sse_free(&d1);
  sse_free(&d2);
  buf_free(&a);
  buf_free(&b);
  return 0;
}
