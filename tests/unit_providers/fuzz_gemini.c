/* fuzz_gemini.c — libFuzzer target for the Gemini adapter: random bytes as a canonical
 * request (build_request), as a whole response (decode_response), as an error body
 * (classify_error) and as an SSE stream, which must decode the same whole and split at
 * a point chosen by the first byte. Nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemini.h"

static void run_stream(const char *p, size_t n, size_t cut, int usage, buf_t *out, int *rc) {
  prov_canon c = {"{}", 2, 1, usage};
  prov_usage u = {0};
  prov_error e = PE_NONE;
  prov_gemini_set_clock(1735000000u);
  prov_stream *s = prov_gemini.stream_new(&c, "m");
  if (!s) abort();
  *rc = prov_gemini.stream_feed(s, p, cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_gemini.stream_feed(s, p + cut, n - cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_gemini.stream_end(s, out, &u);
  prov_gemini.stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  static const prov_target t = {.api_base = "https://generativelanguage.googleapis.com/v1beta",
                                .api_key = "k", .upstream_model = "gemini-2.5-flash",
                                .api_version = ""};
  prov_canon c = {p, size, size && (data[0] & 1), size && (data[0] & 2)};
  prov_request r = {0};
  char err[256];
  prov_gemini.build_request(&t, &c, &r, err, sizeof err);
  prov_request_free(&r);

  buf_t out = {0};
  prov_usage u = {0};
  prov_gemini.decode_response(p, size, "m", &out, &u);
  uint64_t retry = 0;
  prov_gemini.classify_error(429, p, size, &retry);

  buf_t a = {0}, b = {0};
  int ra, rb;
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
  run_stream(p, size, size, 1, &a, &ra);
  run_stream(p, size, cut, 1, &b, &rb);
  if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) abort();
  buf_free(&a);
  buf_free(&b);
  buf_free(&out);
  return 0;
}
