/* fuzz_anthropic_ingress.c — libFuzzer target for the Anthropic ingress. The input drives
 * ai_request_to_openai (as an Anthropic body), ai_response_from_openai, ai_error_from_openai
 * and the stream translator; the stream output must not depend on where the bytes are split,
 * and whatever a finished stream wrote must be well-formed Anthropic SSE. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "anthropic_ingress.h"

static int run_stream(const char *p, size_t n, size_t cut, buf_t *out) {
  ai_stream *s = ai_stream_new("m");
  if (!s) abort();
  int rc = ai_stream_feed(s, p, cut, out);
  if (rc == AI_MORE) rc = ai_stream_feed(s, p + cut, n - cut, out);
  if (rc == AI_MORE) rc = ai_stream_end(s, out);
  ai_stream_free(s);
  return rc;
}

/* Every event is "event: NAME\ndata: JSON\n\n" with JSON an object whose type is NAME. */
static void check_sse(const buf_t *b) {
  size_t i = 0;
  while (i < b->len) {
    const char *p = b->data + i, *end = b->data + b->len;
    if ((size_t)(end - p) < 7 || memcmp(p, "event: ", 7)) abort();
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    if (!nl || (size_t)(end - nl) < 7 || memcmp(nl + 1, "data: ", 6)) abort();
    const char *d = nl + 7, *e = memchr(d, '\n', (size_t)(end - d));
    if (!e || e + 1 >= end || e[1] != '\n') abort();
    json_t *j = json_loadb(d, (size_t)(e - d), 0, NULL);
    const char *t = json_string_value(json_object_get(j, "type"));
    if (!t || strlen(t) != (size_t)(nl - p - 7) || memcmp(t, p + 7, strlen(t))) abort();
    json_decref(j);
    i = (size_t)(e + 2 - b->data);
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;

  buf_t a = {0}, b = {0};
  int ra = run_stream(p, size, size, &a), rb = run_stream(p, size, cut, &b);
  if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) abort();
  if (ra == AI_MORE) abort(); /* stream_end always decides */
  check_sse(&a);
  buf_free(&a);
  buf_free(&b);

  buf_t out = {0};
  ai_req_info info;
  char err[256];
  if (ai_request_to_openai(p, size, &out, &info, err, sizeof err) == 0) {
    json_t *j = json_loadb(out.data, out.len, 0, NULL);
    if (!json_is_object(j)) abort();
    json_decref(j);
  }
  buf_free(&out);
  ai_response_from_openai(p, size, "m", &out);
  buf_free(&out);
  ai_error_from_openai(size ? 400 + data[0] : 500, p, size, &out);
  buf_free(&out);
  return 0;
}
