/* fuzz_json_span.c — libFuzzer target for common/json_span.c, with jansson as the oracle:
 * the text is accepted exactly when jansson accepts it (up to our depth limit, jansson's
 * real overflow and its tolerance of a NUL after the value), a path taken from the first bytes finds a value exactly when jansson's
 * tree has one there, and that value's bytes parse to the same JSON as jansson's node. */
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_span.h"

static json_t *load(const char *p, size_t n, json_error_t *e) {
  size_t fl = JSON_DECODE_ANY | JSON_ALLOW_NUL;
  json_t *j = json_loadb(p, n, fl, e);
  if (!j && json_error_code(e) == json_error_numeric_overflow)
    j = json_loadb(p, n, fl | JSON_DECODE_INT_AS_REAL, e);
  return j;
}

/* Up to 3 steps from the first byte: keys "a"/"b"/"" or indices 0/1. */
static size_t make_path(uint8_t b, json_span_step *path) {
  static const char *keys[] = {"a", "b", ""};
  size_t n = b & 3;
  for (size_t i = 0; i < n; i++) {
    unsigned v = (b >> (2 + 2 * i)) & 3;
    path[i] = v < 3 ? (json_span_step){keys[v], 0} : (json_span_step){NULL, (size_t)(i & 1)};
  }
  return n;
}

static json_t *jansson_at(json_t *j, const json_span_step *path, size_t n) {
  for (size_t i = 0; i < n && j; i++)
    j = path[i].key ? (json_is_object(j) ? json_object_get(j, path[i].key) : NULL)
                    : json_array_get(j, path[i].index);
  return j;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!size) return 0;
  json_span_step path[3];
  size_t np = make_path(data[0], path);
  const char *p = (const char *)data + 1;
  size_t n = size - 1;
  json_span v;
  json_error_t e;
  json_t *j = load(p, n, &e);
  int rc = json_span_whole(p, n, &v);
  /* jansson stops at a NUL byte after a value ("6\0" loads); we reject it, as RFC 8259 does */
  int has_nul = memchr(p, 0, n) != NULL;
  if (j && rc && rc != JSON_SPAN_EDEPTH && !has_nul) abort();
  if (!j && !rc && json_error_code(&e) != json_error_numeric_overflow) abort();
  int frc = json_span_find(p, n, path, np, &v);
  if (rc && frc != rc) abort();
  if (j && !rc) {
    json_t *node = jansson_at(j, path, np);
    if (!node != (frc == JSON_SPAN_ENOENT)) abort();
    if (node) {
      if (v.p < p || v.p + v.len > p + n) abort();
      json_t *again = load(v.p, v.len, &e);
      if (!again || !json_equal(again, node)) abort();
      json_decref(again);
    }
  }
  json_decref(j);
  return 0;
}
