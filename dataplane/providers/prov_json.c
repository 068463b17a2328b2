/* prov_json.c — small jansson and error helpers (see prov_json.h). */
#include "prov_json.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

json_t *prov_field(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_null(v) ? NULL : v;
}

const char *prov_str_field(json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

void prov_drop_present(prov_request *r, json_t *req, const char *const *keys) {
  for (; *keys; keys++) {
    json_t *v = prov_field(req, *keys);
    if (v && !json_is_false(v)) prov_request_dropped(r, *keys);
  }
}

int prov_reject(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

int prov_copy_number(json_t *req, const char *from, json_t *dst, const char *to, char *err,
                     size_t errlen) {
  json_t *v = prov_field(req, from);
  if (!v) return 0;
  if (!json_is_number(v)) return prov_reject(err, errlen, "%s must be a number", from);
  return json_object_set(dst, to, v) ? -ENOMEM : 0;
}

int prov_copy_integer(json_t *req, const char *from, json_t *dst, const char *to, json_int_t min,
                      char *err, size_t errlen) {
  json_t *v = prov_field(req, from);
  if (!v) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < min)
    return prov_reject(err, errlen, "%s must be an integer >= %lld", from, (long long)min);
  return json_object_set(dst, to, v) ? -ENOMEM : 0;
}

/* ---------------------------------------------------------------- numbers and exact bytes */

json_t *prov_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err) {
  json_error_t e;
  json_t *j = json_loadb(buf, len, flags, &e);
  if (!j && json_error_code(&e) == json_error_numeric_overflow)
    j = json_loadb(buf, len, flags | JSON_DECODE_INT_AS_REAL, &e);
  if (err) *err = e;
  return j;
}

uint64_t prov_uint(const json_t *v) {
  if (json_is_integer(v)) return json_integer_value(v) > 0 ? (uint64_t)json_integer_value(v) : 0;
  double d = json_real_value(v); /* 0 for anything but a real */
  if (!(d > 0) || d != floor(d)) return 0;
  return d >= 18446744073709551616.0 ? UINT64_MAX : (uint64_t)d;
}

int prov_int(const json_t *v, json_int_t *out) {
  if (json_is_integer(v)) { *out = json_integer_value(v); return 1; }
  if (!json_is_real(v)) return 0;
  double d = json_real_value(v);
  if (d != floor(d) || d < -9223372036854775808.0 || d >= 9223372036854775808.0) return 0;
  *out = (json_int_t)d;
  return 1;
}

/* Shortest %.Ng (N = 15..17) of the real token t (n bytes) that reads back as the same
 * double, with a plain exponent ("1e-7") and a ".0" when it would read as an integer. */
static int real_shortest(buf_t *b, const char *t, size_t n) {
  char in[64], s[40];
  if (n >= sizeof in) return buf_append(b, t, n); /* jansson never writes one this long */
  memcpy(in, t, n);
  in[n] = '\0';
  double d = strtod(in, NULL);
  for (int prec = 15; prec <= 17; prec++) {
    snprintf(s, sizeof s, "%.*g", prec, d);
    if (strtod(s, NULL) == d) break;
  }
  char *e = strchr(s, 'e');
  if (!e) return buf_printf(b, "%s%s", s, strchr(s, '.') ? "" : ".0");
  char *x = e + 1;
  int neg = *x == '-';
  if (*x == '-' || *x == '+') x++;
  while (*x == '0' && x[1]) x++;
  return buf_append(b, s, (size_t)(e - s)) || buf_printf(b, "e%s%s", neg ? "-" : "", x);
}

/* Copies jansson's output, re-printing each number token outside strings that is a real. */
static int reals_shorten(buf_t *b, const char *s) {
  size_t i = 0, n = strlen(s);
  while (i < n) {
    size_t j = i;
    if (s[i] == '"') {
      for (j = i + 1; j < n && s[j] != '"'; j++)
        if (s[j] == '\\') j++;
      j = j < n ? j + 1 : n; /* past the closing quote (jansson always writes one) */
      if (buf_append(b, s + i, j - i)) return -ENOMEM;
    } else if (s[i] == '-' || (s[i] >= '0' && s[i] <= '9')) {
      while (j < n && strchr("+-.eE0123456789", s[j])) j++;
      size_t real = strcspn(s + i, ".eE") < j - i;
      if (real ? real_shortest(b, s + i, j - i) : buf_append(b, s + i, j - i)) return -ENOMEM;
    } else {
      while (j < n && s[j] != '"' && s[j] != '-' && (s[j] < '0' || s[j] > '9')) j++;
      if (buf_append(b, s + i, j - i)) return -ENOMEM;
    }
    i = j;
  }
  return 0;
}

char *prov_json_dumps(const json_t *j, size_t flags) {
  char *s = json_dumps(j, flags & ~(size_t)JSON_REAL_PRECISION(0x1F));
  if (!s || !strpbrk(s, ".eE")) return s; /* no real anywhere (keys and strings aside) */
  buf_t b = {0};
  int rc = reals_shorten(&b, s);
  free(s);
  if (rc || !buf_cstr(&b)) { buf_free(&b); return NULL; }
  return b.data;
}

json_t *prov_json_raw(const char *doc, size_t len, const json_span_step *path, size_t npath,
                      const json_t *v) {
  json_span sp;
  if (!json_span_find(doc, len, path, npath, &sp)) return json_stringn(sp.p, sp.len);
  char *s = prov_json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
  json_t *r = s ? json_string(s) : NULL;
  free(s);
  return r;
}

int prov_json_object_text(const char *text, size_t n, json_span *obj) {
  return !json_span_whole(text, n, obj) && json_span_is_object(obj);
}

json_t *prov_splice_mark(prov_splice *sp, const char *raw, size_t len) {
  if (!sp->nonce[0]) {
    unsigned char r[16] = {0};
    static unsigned long counter; /* only when getrandom fails: still unique per process */
    if (getrandom(r, sizeof r, GRND_NONBLOCK) != (ssize_t)sizeof r) {
      unsigned long mix[2] = {++counter, (unsigned long)(uintptr_t)sp};
      memcpy(r, mix, sizeof mix < sizeof r ? sizeof mix : sizeof r);
    }
    for (size_t i = 0; i < sizeof r; i++) snprintf(sp->nonce + 2 * i, 3, "%02x", r[i]);
  }
  if (sp->n == sp->cap) {
    size_t cap = sp->cap ? 2 * sp->cap : 8;
    prov_splice_mark_t *m = realloc(sp->marks, cap * sizeof *m);
    if (!m) return NULL;
    sp->marks = m;
    sp->cap = cap;
  }
  char tag[80];
  snprintf(tag, sizeof tag, "llmesh-splice:%s:%zu", sp->nonce, sp->n);
  prov_splice_mark_t *m = &sp->marks[sp->n];
  m->node = json_string(tag);
  m->raw = malloc(len ? len : 1);
  if (!m->node || !m->raw) {
    json_decref(m->node);
    free(m->raw);
    return NULL;
  }
  memcpy(m->raw, raw, len);
  m->len = len;
  sp->n++;
  return json_incref(m->node);
}

/* Where the quoted placeholder of mark k occurs in s: its offset, or -1 unless exactly once. */
static long mark_find(const prov_splice *sp, size_t k, const char *s) {
  char q[84];
  snprintf(q, sizeof q, "\"%s\"", json_string_value(sp->marks[k].node));
  const char *at = strstr(s, q);
  if (!at || strstr(at + 1, q)) return -1;
  return at - s;
}

/* Replaces node by with everywhere it occurs as a value in the tree under j. */
static int tree_replace(json_t *j, const json_t *node, json_t *with) {
  const char *key;
  json_t *v;
  size_t i;
  void *tmp;
  if (json_is_object(j)) {
    json_object_foreach_safe(j, tmp, key, v) {
      if (v == node ? json_object_set(j, key, with) : tree_replace(v, node, with)) return -ENOMEM;
    }
  } else if (json_is_array(j)) {
    json_array_foreach(j, i, v) {
      if (v == node ? json_array_set(j, i, with) : tree_replace(v, node, with)) return -ENOMEM;
    }
  }
  return 0;
}

/* The fallback: every mark parsed and put in the tree, then an ordinary dump. */
static int splice_parsed(prov_splice *sp, json_t *root, size_t flags, buf_t *out) {
  for (size_t k = 0; k < sp->n; k++) {
    json_t *obj = prov_json_loadb(sp->marks[k].raw, sp->marks[k].len, JSON_ALLOW_NUL, NULL);
    int rc = obj ? tree_replace(root, sp->marks[k].node, obj) : -EINVAL;
    json_decref(obj);
    if (rc) return rc;
  }
  char *s = prov_json_dumps(root, flags);
  int rc = !s || buf_append(out, s, strlen(s)) ? -ENOMEM : 0;
  free(s);
  return rc;
}

int prov_splice_dump(prov_splice *sp, json_t *root, size_t flags, buf_t *out) {
  char *s = prov_json_dumps(root, flags);
  if (!s) return -ENOMEM;
  long *at = sp->n ? calloc(sp->n, sizeof *at) : NULL;
  if (sp->n && !at) { free(s); return -ENOMEM; }
  int unique = 1;
  for (size_t k = 0; k < sp->n && unique; k++) unique = (at[k] = mark_find(sp, k, s)) >= 0;
  int rc = 0;
  if (!unique) {
    rc = splice_parsed(sp, root, flags, out);
  } else {
    /* marks appear in the dump in tree order, which need not be mark order */
    size_t pos = 0;
    while (!rc) {
      size_t next = (size_t)-1;
      for (size_t k = 0; k < sp->n; k++)
        if ((size_t)at[k] >= pos && (next == (size_t)-1 || at[k] < at[next])) next = k;
      if (next == (size_t)-1) break;
      size_t qlen = strlen(json_string_value(sp->marks[next].node)) + 2;
      rc = buf_append(out, s + pos, (size_t)at[next] - pos) ||
           buf_append(out, sp->marks[next].raw, sp->marks[next].len) ? -ENOMEM : 0;
      pos = (size_t)at[next] + qlen;
    }
    if (!rc && buf_append(out, s + pos, strlen(s + pos))) rc = -ENOMEM;
  }
  free(at);
  free(s);
  return rc;
}

void prov_splice_free(prov_splice *sp) {
  for (size_t k = 0; k < sp->n; k++) {
    json_decref(sp->marks[k].node);
    free(sp->marks[k].raw);
  }
  free(sp->marks);
  *sp = (prov_splice){0};
}
