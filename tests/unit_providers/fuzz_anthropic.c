/* fuzz_anthropic.c — libFuzzer target for the Anthropic adapter. The input drives
 * build_request (as an OpenAI body), decode_response, classify_error and the stream
 * decoder; the stream output must not depend on where the bytes are split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "provider.h"

void prov_anthropic_set_clock(int64_t now_s); /* test hook in anthropic.c */

static void run_stream(const char *p, size_t n, size_t cut, int iu, buf_t *out, int *rc) {
  prov_canon c = {.stream = 1, .include_usage = iu};
  prov_stream *s = prov_anthropic.stream_new(&c, "m");
  prov_usage u = {0};
  prov_error e = PE_NONE;
  if (!s) abort();
  *rc = prov_anthropic.stream_feed(s, p, cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_anthropic.stream_feed(s, p + cut, n - cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_anthropic.stream_end(s, out, &u);
  prov_anthropic.stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
  int iu = size > 1 && (data[1] & 1);
  prov_anthropic_set_clock(1735000000); /* both runs must see the same "created" */

  buf_t a = {0}, b = {0};
  int ra, rb;
  run_stream(p, size, size, iu, &a, &ra);
  run_stream(p, size, cut, iu, &b, &rb);
  if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) abort();
  buf_free(&a);
  buf_free(&b);

  prov_target t = {.api_base = "https://api.anthropic.com/v1", .api_key = "k",
                   .upstream_model = "claude-3-5-haiku", .api_version = ""};
  prov_canon c = {.body = p, .len = size, .stream = iu};
  prov_request r = {0};
  char err[128];
  prov_anthropic.build_request(&t, &c, &r, err, sizeof err);
  prov_request_free(&r);

  buf_t out = {0};
  prov_usage u = {0};
  prov_anthropic.decode_response(p, size, "m", &out, &u);
  buf_free(&out);
  uint64_t retry = 0;
  prov_anthropic.classify_error(size ? 400 + data[0] : 500, p, size, &retry);
  return 0;
}
