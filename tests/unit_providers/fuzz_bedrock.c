/* fuzz_bedrock.c — libFuzzer target for the Bedrock adapter: random bytes as a canonical
 * request (build_request, SigV4 signing included), as a whole Converse response, as an
 * error body, and as an event stream, which must decode the same whole and split at a
 * point chosen by the first byte; the raw frame decoder is also fed byte by byte. Nothing
 * may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bedrock.h"
#include "eventstream.h"

static void run_stream(const char *p, size_t n, size_t cut, int usage, buf_t *out, int *rc) {
  prov_canon c = {"{}", 2, 1, usage};
  prov_usage u = {0};
  prov_error e = PE_NONE;
  prov_bedrock_set_clock(1440938160u);
  prov_stream *s = prov_bedrock.stream_new(&c, "m");
  if (!s) abort();
  *rc = prov_bedrock.stream_feed(s, p, cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_bedrock.stream_feed(s, p + cut, n - cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_bedrock.stream_end(s, out, &u);
  prov_bedrock.stream_free(s);
}

/* Frames seen feeding p one byte at a time must equal those seen feeding it whole. */
static size_t count_frames(const char *p, size_t n, size_t step) {
  es_decoder d = {0};
  size_t frames = 0;
  for (size_t off = 0; off < n;) {
    size_t k = n - off < step ? n - off : step;
    const char *q = p + off;
    size_t left = k;
    es_frame f;
    int rc;
    off += k;
    while ((rc = es_next(&d, &q, &left, &f)) == ES_FRAME) {
      const char *v;
      size_t vl;
      es_header(&f, ":event-type", &v, &vl);
      frames++;
    }
    if (rc == ES_BAD) break;
  }
  es_decoder_free(&d);
  return frames;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  static const prov_target t = {.api_base = "",
                                .api_key = "",
                                .upstream_model = "anthropic.claude-3-5-sonnet-20240620-v1:0",
                                .api_version = "",
                                .aws_access_key_id = "AKIDEXAMPLE",
                                .aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                .aws_session_token = "tok",
                                .aws_region = "us-east-1"};
  prov_canon c = {p, size, size && (data[0] & 1), size && (data[0] & 2)};
  prov_request r = {0};
  char err[256];
  prov_bedrock_set_clock(1440938160u);
  prov_bedrock.build_request(&t, &c, &r, err, sizeof err);
  prov_request_free(&r);

  buf_t out = {0};
  prov_usage u = {0};
  prov_bedrock.decode_response(p, size, "m", &out, &u);
  uint64_t retry = 0;
  prov_bedrock.classify_error(400, p, size, &retry);

  buf_t a = {0}, b = {0};
  int ra, rb;
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
  run_stream(p, size, size, 1, &a, &ra);
  run_stream(p, size, cut, 1, &b, &rb);
  if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) abort();
  if (count_frames(p, size, size ? size : 1) != count_frames(p, size, 1)) abort();
  buf_free(&a);
  buf_free(&b);
  buf_free(&out);
  return 0;
}
