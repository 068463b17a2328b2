/* test_eventstream.c — the AWS event-stream frame decoder: CRC32 check value, frames with
 * every header type, frames split at every byte and fed one byte at a time, and the
 * garbage cases (bad prelude / message CRC, absurd lengths, malformed headers). Frames are
 * built here with the same layout as vectors/bedrock/make_frames.py. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>

#include "eventstream.h"

static void put32(buf_t *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  assert_int_equal(buf_append(b, x, 4), 0);
}

static void set32(char *p, uint32_t v) {
  p[0] = (char)(v >> 24), p[1] = (char)(v >> 16), p[2] = (char)(v >> 8), p[3] = (char)v;
}

/* Appends a string header (type 7). */
static void hdr_str(buf_t *h, const char *name, const char *value) {
  unsigned char nl = (unsigned char)strlen(name), t = 7;
  size_t vl = strlen(value);
  unsigned char len[2] = {(unsigned char)(vl >> 8), (unsigned char)vl};
  assert_int_equal(buf_append(h, &nl, 1) || buf_append(h, name, nl) || buf_append(h, &t, 1) ||
                       buf_append(h, len, 2) || buf_append(h, value, vl),
                   0);
}

/* Appends a header of any type with raw value bytes. */
static void hdr_raw(buf_t *h, const char *name, unsigned char type, const void *v, size_t n) {
  unsigned char nl = (unsigned char)strlen(name);
  assert_int_equal(buf_append(h, &nl, 1) || buf_append(h, name, nl) || buf_append(h, &type, 1) ||
                       buf_append(h, v, n),
                   0);
}

static void frame(buf_t *out, const buf_t *h, const char *payload) {
  size_t pl = strlen(payload), start = out->len;
  uint32_t total = (uint32_t)(16 + h->len + pl);
  put32(out, total);
  put32(out, (uint32_t)h->len);
  put32(out, es_crc32(0, out->data + start, 8));
  assert_int_equal(buf_append(out, h->data, h->len) || buf_append(out, payload, pl), 0);
  put32(out, es_crc32(0, out->data + start, total - 4));
}

/* Three frames: plain event, one carrying every header type, one empty. */
static void sample(buf_t *s) {
  buf_t h = {0};
  hdr_str(&h, ":message-type", "event");
  hdr_str(&h, ":event-type", "messageStart");
  frame(s, &h, "{\"role\":\"assistant\"}");
  buf_reset(&h);
  static const char v8[8] = {1, 2, 3, 4, 5, 6, 7, 8}, v16[16] = {9};
  static const char bytes[] = {0, 3, 'x', 'y', 'z'}, i16[2] = {1, 2}, i32[4] = {1, 2, 3, 4};
  hdr_raw(&h, "t", 0, NULL, 0);
  hdr_raw(&h, "f", 1, NULL, 0);
  hdr_raw(&h, "b", 2, "\x7f", 1);
  hdr_raw(&h, "s", 3, i16, 2);
  hdr_raw(&h, "i", 4, i32, 4);
  hdr_raw(&h, "l", 5, v8, 8);
  hdr_raw(&h, "by", 6, bytes, sizeof bytes);
  hdr_raw(&h, "ts", 8, v8, 8);
  hdr_raw(&h, "u", 9, v16, 16);
  hdr_str(&h, ":event-type", "contentBlockDelta");
  hdr_raw(&h, ":message-type", 6, bytes, sizeof bytes); /* not a string: not found as one */
  frame(s, &h, "{\"delta\":{\"text\":\"hi\"}}");
  buf_reset(&h);
  frame(s, &h, "");
  buf_free(&h);
}

/* Decodes s fed in pieces of step bytes (0 = two pieces split at `at`); appends a
 * transcript of the frames ("event-type|payload\n") to log; returns the last rc. */
static int decode(const char *s, size_t n, size_t step, size_t at, buf_t *log) {
  es_decoder d = {0};
  int rc = ES_MORE;
  for (size_t off = 0, piece = 0; off < n && rc != ES_BAD; piece++) {
    size_t k = step ? (n - off < step ? n - off : step) : (piece == 0 ? at : n - off);
    const char *p = s + off;
    size_t left = k;
    es_frame f;
    off += k;
    while ((rc = es_next(&d, &p, &left, &f)) == ES_FRAME) {
      const char *v;
      size_t vl;
      if (es_header(&f, ":event-type", &v, &vl)) assert_int_equal(buf_append(log, v, vl), 0);
      assert_int_equal(buf_append(log, "|", 1) || buf_append(log, f.payload, f.payload_len) ||
                           buf_append(log, "\n", 1),
                       0);
    }
    if (rc == ES_MORE) assert_int_equal(left, 0);
  }
  es_decoder_free(&d);
  return rc;
}

static void test_crc32(void **st) {
  (void)st;
  assert_int_equal(es_crc32(0, "123456789", 9), 0xCBF43926u); /* the CRC-32 check value */
  assert_int_equal(es_crc32(es_crc32(0, "1234", 4), "56789", 5), 0xCBF43926u);
  assert_int_equal(es_crc32(0, "", 0), 0);
}

static void test_frames_any_split(void **st) {
  (void)st;
  buf_t s = {0}, want = {0}, got = {0};
  sample(&s);
  assert_int_equal(decode(s.data, s.len, s.len, 0, &want), ES_MORE);
  assert_non_null(buf_cstr(&want));
  assert_string_equal(want.data, "messageStart|{\"role\":\"assistant\"}\n"
                                 "contentBlockDelta|{\"delta\":{\"text\":\"hi\"}}\n"
                                 "|\n");
  for (size_t at = 0; at <= s.len; at++) {
    buf_reset(&got);
    assert_int_equal(decode(s.data, s.len, 0, at, &got), ES_MORE);
    assert_int_equal(got.len, want.len);
    assert_memory_equal(got.data, want.data, want.len);
  }
  buf_reset(&got);
  assert_int_equal(decode(s.data, s.len, 1, 0, &got), ES_MORE);
  assert_int_equal(got.len, want.len);
  assert_memory_equal(got.data, want.data, want.len);
  buf_free(&s);
  buf_free(&want);
  buf_free(&got);
}

/* Every corruption must be ES_BAD, fed whole and byte by byte, after exactly
 * frames_before good frames. */
static void expect_bad(const char *s, size_t n, size_t frames_before) {
  size_t steps[2] = {n, 1};
  for (int i = 0; i < 2; i++) {
    buf_t log = {0};
    assert_int_equal(decode(s, n, steps[i], 0, &log), ES_BAD);
    size_t lines = 0;
    for (size_t k = 0; k < log.len; k++) lines += log.data[k] == '\n';
    assert_int_equal(lines, frames_before);
    buf_free(&log);
  }
}

static void test_garbage(void **st) {
  (void)st;
  buf_t s = {0};
  sample(&s);
  uint32_t f1 = (uint32_t)((unsigned char)s.data[0] << 24 | (unsigned char)s.data[1] << 16 |
                           (unsigned char)s.data[2] << 8 | (unsigned char)s.data[3]);
  buf_t c = {0};
  /* prelude CRC of frame 2 */
  assert_int_equal(buf_append(&c, s.data, s.len), 0);
  c.data[f1 + 8] ^= 1;
  expect_bad(c.data, c.len, 1);
  /* a payload byte of frame 1 (message CRC) */
  memcpy(c.data, s.data, s.len);
  c.data[f1 - 6] ^= 0x20;
  expect_bad(c.data, c.len, 0);
  /* the message CRC itself */
  memcpy(c.data, s.data, s.len);
  c.data[f1 - 1] ^= 0x80;
  expect_bad(c.data, c.len, 0);
  /* absurd total length with a valid prelude CRC */
  memcpy(c.data, s.data, s.len);
  set32(c.data, 0xFFFFFFF0u);
  set32(c.data + 8, es_crc32(0, c.data, 8));
  expect_bad(c.data, c.len, 0);
  /* total length below the minimum */
  set32(c.data, 15);
  set32(c.data + 4, 0);
  set32(c.data + 8, es_crc32(0, c.data, 8));
  expect_bad(c.data, c.len, 0);
  /* headers longer than the frame */
  memcpy(c.data, s.data, s.len);
  set32(c.data + 4, f1);
  set32(c.data + 8, es_crc32(0, c.data, 8));
  expect_bad(c.data, c.len, 0);
  buf_free(&c);
  /* malformed headers with valid CRCs: unknown type, zero-length name, overrun */
  static const char *const bad_headers[] = {"\x01t\x0a", "\x00\x07", "\x01t\x07\x00\x09xy",
                                            "\x05:abc", "\x01t\x04\x00\x00"};
  static const size_t bad_len[] = {3, 2, 6, 5, 5};
  for (size_t i = 0; i < 5; i++) {
    buf_t h = {0}, f = {0};
    assert_int_equal(buf_append(&h, bad_headers[i], bad_len[i]), 0);
    frame(&f, &h, "{}");
    expect_bad(f.data, f.len, 0);
    buf_free(&h);
    buf_free(&f);
  }
  /* sticky: after ES_BAD nothing decodes, even a good frame */
  es_decoder d = {0};
  const char *p = "\0\0\0\0\0\0\0\0\0\0\0\0";
  size_t n = 12;
  es_frame fr;
  assert_int_equal(es_next(&d, &p, &n, &fr), ES_BAD);
  p = s.data;
  n = s.len;
  assert_int_equal(es_next(&d, &p, &n, &fr), ES_BAD);
  es_decoder_free(&d);
  buf_free(&s);
}

/* A frame cut short leaves ES_MORE with the bytes kept; freeing then does not leak. */
static void test_partial(void **st) {
  (void)st;
  buf_t s = {0};
  sample(&s);
  es_decoder d = {0};
  es_frame f;
  const char *p = s.data;
  size_t n = 20;
  assert_int_equal(es_next(&d, &p, &n, &f), ES_MORE);
  assert_int_equal(n, 0);
  assert_int_equal(d.part.len, 20);
  es_decoder_free(&d);
  buf_free(&s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_crc32),
      cmocka_unit_test(test_frames_any_split),
      cmocka_unit_test(test_garbage),
      cmocka_unit_test(test_partial),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
