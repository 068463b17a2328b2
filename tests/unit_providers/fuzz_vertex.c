/* fuzz_vertex.c — libFuzzer target for the Vertex AI adapter: random bytes as a canonical
 * request for a Gemini and a Claude model (build_request), as a whole response
 * (decode_response: the family is told from the body), as an error body, and as a stream
 * whose family is sniffed from its first deciding line; the stream must decode the same
 * whole and split at a point chosen by the first byte (the split may fall before, inside
 * or after the deciding line). Nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gemini.h"
#include "vertex.h"

void prov_anthropic_set_clock(int64_t now_s); /* anthropic.c: pins created for the test */

static void run_stream(const char *p, size_t n, size_t cut, int usage, buf_t *out, int *rc) {
  prov_canon c = {"{}", 2, 1, usage};
  prov_usage u = {0};
  prov_error e = PE_NONE;
  prov_gemini_set_clock(1735000000u);
  prov_anthropic_set_clock(1735000000);
  prov_stream *s = prov_vertex.stream_new(&c, "m");
  if (!s) abort();
  *rc = prov_vertex.stream_feed(s, p, cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_vertex.stream_feed(s, p + cut, n - cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_vertex.stream_end(s, out, &u);
  prov_vertex.stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  static const prov_target gem = {.api_base = "", .api_key = "", .upstream_model = "gemini-2.5-flash",
                                  .api_version = "", .gcp_project = "p-1", .gcp_location = "us-central1",
                                  .access_token = "tok"};
  static const prov_target cla = {.api_base = "", .api_key = "", .upstream_model = "claude-sonnet-4@20250514",
                                  .api_version = "", .gcp_project = "p-1", .gcp_location = "global",
                                  .access_token = "tok"};
  prov_canon c = {p, size, size && (data[0] & 1), size && (data[0] & 2)};
  prov_request r = {0};
  char err[256];
  prov_vertex.build_request(size && (data[0] & 4) ? &cla : &gem, &c, &r, err, sizeof err);
  prov_request_free(&r);
  char m[64];
  size_t mn = size < sizeof m ? size : sizeof m - 1;
  memcpy(m, p, mn);
  m[mn] = '\0';
  if (!vertex_family_ops(vertex_family_of(m))) abort();

  buf_t out = {0};
  prov_usage u = {0};
  prov_vertex.decode_response(p, size, "m", &out, &u);
  uint64_t retry = 0;
  prov_vertex.classify_error(429, p, size, &retry);
  prov_vertex.classify_error(400, p, size, &retry);

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
