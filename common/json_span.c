/* json_span.c — validating JSON scanner and path lookup over raw bytes (see json_span.h).
 *
 * One recursive-descent pass: values are validated as they are skipped, and a lookup walks
 * the same grammar, remembering the span of the last member or element that matches each
 * step. Recursion is bounded by JSON_SPAN_MAX_DEPTH. */
#include "json_span.h"

#include <string.h>

typedef struct scan {
  const char *s; /* text */
  size_t len;    /* bytes in s */
  size_t pos;    /* next byte to read */
} scan;

static void ws(scan *x) {
  while (x->pos < x->len) {
    char c = x->s[x->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    x->pos++;
  }
}

static int peek(const scan *x) { return x->pos < x->len ? (unsigned char)x->s[x->pos] : -1; }

/* Continuation byte in [lo, hi] at s[pos]. */
static int cont(const scan *x, size_t at, unsigned lo, unsigned hi) {
  if (at >= x->len) return 0;
  unsigned c = (unsigned char)x->s[at];
  return c >= lo && c <= hi;
}

/* One multi-byte UTF-8 sequence at x->pos (well-formed: no overlongs, no surrogates). */
static int utf8(scan *x) {
  unsigned c = (unsigned char)x->s[x->pos];
  size_t p = x->pos;
  int n;
  unsigned lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 1;
  else if (c == 0xE0) { n = 2; lo = 0xA0; }
  else if (c == 0xED) { n = 2; hi = 0x9F; }
  else if (c >= 0xE1 && c <= 0xEF) n = 2;
  else if (c == 0xF0) { n = 3; lo = 0x90; }
  else if (c == 0xF4) { n = 3; hi = 0x8F; }
  else if (c >= 0xF1 && c <= 0xF3) n = 3;
  else return JSON_SPAN_EINVAL;
  if (!cont(x, p + 1, lo, hi)) return JSON_SPAN_EINVAL;
  for (int i = 2; i <= n; i++)
    if (!cont(x, p + (size_t)i, 0x80, 0xBF)) return JSON_SPAN_EINVAL;
  x->pos = p + (size_t)n + 1;
  return 0;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Four hex digits at s[at] → *v; 0 or -1. */
static int hex4(const char *s, size_t len, size_t at, unsigned *v) {
  if (at + 4 > len) return -1;
  *v = 0;
  for (int i = 0; i < 4; i++) {
    int h = hexval((unsigned char)s[at + (size_t)i]);
    if (h < 0) return -1;
    *v = *v << 4 | (unsigned)h;
  }
  return 0;
}

/* \uXXXX at x->pos (just past the 'u'); a high surrogate must be followed by a low one. */
static int escape_u(scan *x) {
  unsigned v, lo;
  if (hex4(x->s, x->len, x->pos, &v)) return JSON_SPAN_EINVAL;
  x->pos += 4;
  if (v >= 0xDC00 && v <= 0xDFFF) return JSON_SPAN_EINVAL; /* lone low surrogate */
  if (v < 0xD800 || v > 0xDBFF) return 0;
  if (x->pos + 2 > x->len || x->s[x->pos] != '\\' || x->s[x->pos + 1] != 'u' ||
      hex4(x->s, x->len, x->pos + 2, &lo) || lo < 0xDC00 || lo > 0xDFFF)
    return JSON_SPAN_EINVAL;
  x->pos += 6;
  return 0;
}

/* A string at x->pos ('"'); *body and *blen name the bytes between the quotes. */
static int string(scan *x, size_t *body, size_t *blen) {
  x->pos++;
  size_t start = x->pos;
  for (;;) {
    int c = peek(x);
    if (c < 0x20) return JSON_SPAN_EINVAL; /* end of text, or an unescaped control byte */
    if (c == '"') break;
    if (c >= 0x80) {
      if (utf8(x)) return JSON_SPAN_EINVAL;
      continue;
    }
    x->pos++;
    if (c != '\\') continue;
    c = peek(x);
    x->pos++;
    if (c == 'u') {
      if (escape_u(x)) return JSON_SPAN_EINVAL;
    } else if (c <= 0 || !strchr("\"\\/bfnrt", c)) { /* strchr finds the NUL terminator */
      return JSON_SPAN_EINVAL;
    }
  }
  if (body) *body = start;
  if (blen) *blen = x->pos - start;
  x->pos++;
  return 0;
}

static int digits(scan *x) {
  size_t p = x->pos;
  while (x->pos < x->len && x->s[x->pos] >= '0' && x->s[x->pos] <= '9') x->pos++;
  return x->pos > p ? 0 : JSON_SPAN_EINVAL;
}

/* -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? */
static int number(scan *x) {
  if (peek(x) == '-') x->pos++;
  if (peek(x) == '0') x->pos++;
  else if (digits(x)) return JSON_SPAN_EINVAL;
  if (peek(x) == '.') {
    x->pos++;
    if (digits(x)) return JSON_SPAN_EINVAL;
  }
  if (peek(x) == 'e' || peek(x) == 'E') {
    x->pos++;
    if (peek(x) == '+' || peek(x) == '-') x->pos++;
    if (digits(x)) return JSON_SPAN_EINVAL;
  }
  return 0;
}

static int literal(scan *x, const char *word) {
  size_t n = strlen(word);
  if (x->len - x->pos < n || memcmp(x->s + x->pos, word, n)) return JSON_SPAN_EINVAL;
  x->pos += n;
  return 0;
}

size_t json_span_utf8_put(unsigned long cp, unsigned char *out) {
  if (cp < 0x80) { out[0] = (unsigned char)cp; return 1; }
  if (cp < 0x800) {
    out[0] = (unsigned char)(0xC0 | cp >> 6);
    out[1] = (unsigned char)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (unsigned char)(0xE0 | cp >> 12);
    out[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
    out[2] = (unsigned char)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (unsigned char)(0xF0 | cp >> 18);
  out[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
  out[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
  out[3] = (unsigned char)(0x80 | (cp & 0x3F));
  return 4;
}

/* Decodes one escape at s[i] ('\\'), already validated; bytes into out, *i moves past it. */
static size_t unescape(const char *s, size_t len, size_t *i, unsigned char *out) {
  char c = s[*i + 1];
  *i += 2;
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  if (c != 'u') {
    out[0] = (unsigned char)to[strchr(from, c) - from];
    return 1;
  }
  unsigned v = 0, lo = 0; /* hex4 cannot fail here (validated), but -O3 cannot know */
  hex4(s, len, *i, &v);
  *i += 4;
  unsigned long cp = v;
  if (v >= 0xD800 && v <= 0xDBFF) {
    hex4(s, len, *i + 2, &lo);
    *i += 6;
    cp = 0x10000 + ((unsigned long)(v - 0xD800) << 10) + (lo - 0xDC00);
  }
  return json_span_utf8_put(cp, out);
}

/* The validated string body s[0..n) unescaped equals key. */
static int key_equal(const char *s, size_t n, const char *key) {
  size_t i = 0, k = 0, klen = strlen(key);
  while (i < n) {
    unsigned char buf[4];
    size_t m;
    if (s[i] == '\\') {
      m = unescape(s, n, &i, buf);
    } else {
      buf[0] = (unsigned char)s[i++];
      m = 1;
    }
    if (klen - k < m || memcmp(key + k, buf, m)) return 0;
    k += m;
  }
  return k == klen;
}

/* Scans one value at x->pos (whitespace skipped first). With npath == 0 the value's span
 * goes to *hit; otherwise the step path[0] is followed and *found tells whether the last
 * matching member/element resolved the rest of the path. */
static int value(scan *x, int depth, const json_span_step *path, size_t npath, json_span *hit,
                 int *found);

static int object(scan *x, int depth, const json_span_step *path, size_t npath, json_span *hit,
                  int *found) {
  x->pos++;
  ws(x);
  if (peek(x) == '}') { x->pos++; return 0; }
  for (;;) {
    size_t kb, kn;
    int rc;
    if (peek(x) != '"' || string(x, &kb, &kn)) return JSON_SPAN_EINVAL;
    ws(x);
    if (peek(x) != ':') return JSON_SPAN_EINVAL;
    x->pos++;
    if (npath && path[0].key && key_equal(x->s + kb, kn, path[0].key)) {
      json_span h = {0};
      int f = 0;
      if ((rc = value(x, depth + 1, path + 1, npath - 1, &h, &f))) return rc;
      *found = f; /* a later duplicate replaces an earlier one, hit or miss */
      if (f) *hit = h;
    } else if ((rc = value(x, depth + 1, NULL, 0, NULL, NULL))) {
      return rc;
    }
    ws(x);
    int c = peek(x);
    x->pos++;
    if (c == '}') return 0;
    if (c != ',') return JSON_SPAN_EINVAL;
    ws(x);
  }
}

static int array(scan *x, int depth, const json_span_step *path, size_t npath, json_span *hit,
                 int *found) {
  x->pos++;
  ws(x);
  if (peek(x) == ']') { x->pos++; return 0; }
  for (size_t i = 0;; i++) {
    int rc;
    if (npath && !path[0].key && path[0].index == i) {
      rc = value(x, depth + 1, path + 1, npath - 1, hit, found);
    } else {
      rc = value(x, depth + 1, NULL, 0, NULL, NULL);
    }
    if (rc) return rc;
    ws(x);
    int c = peek(x);
    x->pos++;
    if (c == ']') return 0;
    if (c != ',') return JSON_SPAN_EINVAL;
  }
}

static int value(scan *x, int depth, const json_span_step *path, size_t npath, json_span *hit,
                 int *found) {
  ws(x);
  size_t start = x->pos;
  int c = peek(x), rc;
  if ((c == '{' || c == '[') && depth >= JSON_SPAN_MAX_DEPTH) return JSON_SPAN_EDEPTH;
  if (c == '{') rc = object(x, depth, path, npath, hit, found);
  else if (c == '[') rc = array(x, depth, path, npath, hit, found);
  else if (c == '"') rc = string(x, NULL, NULL);
  else if (c == '-' || (c >= '0' && c <= '9')) rc = number(x);
  else if (c == 't') rc = literal(x, "true");
  else if (c == 'f') rc = literal(x, "false");
  else if (c == 'n') rc = literal(x, "null");
  else rc = JSON_SPAN_EINVAL;
  if (rc || npath || !hit) return rc;
  *hit = (json_span){x->s + start, x->pos - start};
  *found = 1;
  return 0;
}

int json_span_skip(const char *s, size_t len, size_t pos, size_t *end) {
  if (!s || pos > len) return JSON_SPAN_EINVAL;
  scan x = {s, len, pos};
  int rc = value(&x, 0, NULL, 0, NULL, NULL);
  if (!rc && end) *end = x.pos;
  return rc;
}

int json_span_find(const char *s, size_t len, const json_span_step *path, size_t npath,
                   json_span *out) {
  if (!s) return JSON_SPAN_EINVAL;
  scan x = {s, len, 0};
  json_span hit = {0};
  int found = 0;
  int rc = value(&x, 0, path, npath, &hit, &found);
  if (rc) return rc;
  ws(&x);
  if (x.pos != len) return JSON_SPAN_EINVAL;
  if (!found) return JSON_SPAN_ENOENT;
  if (out) *out = hit;
  return 0;
}

int json_span_whole(const char *s, size_t len, json_span *out) {
  return json_span_find(s, len, NULL, 0, out);
}

int json_span_is_object(const json_span *v) { return v && v->len && v->p[0] == '{'; }

int json_span_is_array(const json_span *v) { return v && v->len && v->p[0] == '['; }
