/* request.c — one-pass JSON scanner for request bodies (see request.h).
 *
 * Recursive descent bounded by REQ_MAX_DEPTH; strings are checked for escapes, control
 * characters and UTF-8 well-formedness, numbers against the JSON grammar. Keys are
 * compared after unescaping, so "mod\u0065l" is the model key as the upstream sees it. */
#include "request.h"

#include <errno.h>
#include <string.h>

typedef struct scanner {
  const char *p; /* input */
  size_t n;      /* input bytes */
  size_t i;      /* cursor */
  int depth;     /* current nesting */
} scanner;

static int scan_value(scanner *s);

static void skip_ws(scanner *s) {
  while (s->i < s->n) {
    char c = s->p[s->i];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
    s->i++;
  }
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Length of a well-formed UTF-8 sequence starting at p (n bytes left), 0 if invalid. */
static size_t utf8_len(const unsigned char *p, size_t n) {
  unsigned c = p[0];
  if (c >= 0xc2 && c <= 0xdf) return (n >= 2 && (p[1] & 0xc0) == 0x80) ? 2 : 0;
  if (c >= 0xe0 && c <= 0xef) {
    if (n < 3 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80) return 0;
    if (c == 0xe0 && p[1] < 0xa0) return 0;  /* overlong */
    if (c == 0xed && p[1] >= 0xa0) return 0; /* UTF-16 surrogate */
    return 3;
  }
  if (c >= 0xf0 && c <= 0xf4) {
    if (n < 4 || (p[1] & 0xc0) != 0x80 || (p[2] & 0xc0) != 0x80 || (p[3] & 0xc0) != 0x80) return 0;
    if (c == 0xf0 && p[1] < 0x90) return 0;  /* overlong */
    if (c == 0xf4 && p[1] >= 0x90) return 0; /* > U+10FFFF */
    return 4;
  }
  return 0;
}

/* Scans a string at the cursor (which is on the opening quote). On success the cursor
 * is past the closing quote; *esc tells whether the string holds escapes. */
static int scan_string(scanner *s, int *esc) {
  const unsigned char *p = (const unsigned char *)s->p;
  size_t i = s->i + 1;
  *esc = 0;
  while (i < s->n) {
    unsigned c = p[i];
    if (c == '"') { s->i = i + 1; return 0; }
    if (c == '\\') {
      *esc = 1;
      if (i + 1 >= s->n) return REQ_EJSON;
      c = p[i + 1];
      if (c == 'u') {
        if (i + 6 > s->n) return REQ_EJSON;
        for (int k = 2; k < 6; k++)
          if (hexval((char)p[i + k]) < 0) return REQ_EJSON;
        i += 6;
      } else if (c == '"' || c == '\\' || c == '/' || c == 'b' || c == 'f' || c == 'n' ||
                 c == 'r' || c == 't') {
        i += 2;
      } else {
        return REQ_EJSON;
      }
    } else if (c < 0x20) {
      return REQ_EJSON;
    } else if (c < 0x80) {
      i++;
    } else {
      size_t l = utf8_len(p + i, s->n - i);
      if (!l) return REQ_EJSON;
      i += l;
    }
  }
  return REQ_EJSON;
}

static size_t put_utf8(char *o, uint32_t cp) {
  if (cp < 0x80) { o[0] = (char)cp; return 1; }
  if (cp < 0x800) { o[0] = (char)(0xc0 | (cp >> 6)); o[1] = (char)(0x80 | (cp & 0x3f)); return 2; }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12)); o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f)); return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18)); o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f)); o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

static uint32_t hex4(const char *p) {
  return (uint32_t)(hexval(p[0]) << 12 | hexval(p[1]) << 8 | hexval(p[2]) << 4 | hexval(p[3]));
}

/* Decodes the inside of an already validated JSON string (p[0..n), no quotes) into out
 * (cap bytes, NUL-terminated). Returns the decoded length or -1 if it does not fit or
 * holds a NUL character. */
static long unescape(const char *p, size_t n, char *out, size_t cap) {
  size_t o = 0;
  for (size_t i = 0; i < n;) {
    char tmp[4];
    size_t tl;
    if (p[i] != '\\') { tmp[0] = p[i++]; tl = 1; }
    else {
      char c = p[i + 1];
      i += 2;
      switch (c) {
        case 'b': tmp[0] = '\b'; tl = 1; break;
        case 'f': tmp[0] = '\f'; tl = 1; break;
        case 'n': tmp[0] = '\n'; tl = 1; break;
        case 'r': tmp[0] = '\r'; tl = 1; break;
        case 't': tmp[0] = '\t'; tl = 1; break;
        case 'u': {
          uint32_t cp = hex4(p + i);
          i += 4;
          if (cp >= 0xd800 && cp < 0xdc00 && i + 6 <= n && p[i] == '\\' && p[i + 1] == 'u') {
            uint32_t lo = hex4(p + i + 2);
            if (lo >= 0xdc00 && lo < 0xe000) {
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
              i += 6;
            }
          }
          if (cp == 0) return -1;
          tl = put_utf8(tmp, cp);
          break;
        }
        default: tmp[0] = c; tl = 1; break; /* " \ / */
      }
    }
    if (o + tl >= cap) return -1;
    memcpy(out + o, tmp, tl);
    o += tl;
  }
  out[o] = '\0';
  return (long)o;
}

static int scan_number(scanner *s) {
  const char *p = s->p;
  size_t i = s->i, n = s->n;
  if (i < n && p[i] == '-') i++;
  if (i >= n) return REQ_EJSON;
  if (p[i] == '0') i++;
  else if (p[i] >= '1' && p[i] <= '9') { while (i < n && p[i] >= '0' && p[i] <= '9') i++; }
  else return REQ_EJSON;
  if (i < n && p[i] == '.') {
    i++;
    if (i >= n || p[i] < '0' || p[i] > '9') return REQ_EJSON;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
  }
  if (i < n && (p[i] == 'e' || p[i] == 'E')) {
    i++;
    if (i < n && (p[i] == '+' || p[i] == '-')) i++;
    if (i >= n || p[i] < '0' || p[i] > '9') return REQ_EJSON;
    while (i < n && p[i] >= '0' && p[i] <= '9') i++;
  }
  s->i = i;
  return 0;
}

static int scan_literal(scanner *s, const char *lit, size_t l) {
  if (s->n - s->i < l || memcmp(s->p + s->i, lit, l) != 0) return REQ_EJSON;
  s->i += l;
  return 0;
}

/* Scans "key" ws ':' ws at the cursor; gives the key's inner span. */
static int scan_key(scanner *s, size_t *koff, size_t *klen, int *esc) {
  if (s->i >= s->n || s->p[s->i] != '"') return REQ_EJSON;
  size_t start = s->i;
  int rc = scan_string(s, esc);
  if (rc) return rc;
  *koff = start + 1;
  *klen = s->i - start - 2;
  skip_ws(s);
  if (s->i >= s->n || s->p[s->i] != ':') return REQ_EJSON;
  s->i++;
  skip_ws(s);
  return 0;
}

/* After a member or element: ',' continues (returns 1), close ends (returns 0). */
static int scan_sep(scanner *s, char close) {
  skip_ws(s);
  if (s->i >= s->n) return REQ_EJSON;
  char c = s->p[s->i++];
  if (c == ',') { skip_ws(s); return 1; }
  return c == close ? 0 : REQ_EJSON;
}

static int scan_object(scanner *s) {
  if (++s->depth > REQ_MAX_DEPTH) return REQ_EDEPTH;
  s->i++; /* '{' */
  skip_ws(s);
  if (s->i < s->n && s->p[s->i] == '}') { s->i++; s->depth--; return 0; }
  for (;;) {
    size_t ko, kl;
    int esc, rc = scan_key(s, &ko, &kl, &esc);
    if (rc || (rc = scan_value(s))) return rc;
    if ((rc = scan_sep(s, '}')) < 0) return rc;
    if (rc == 0) break;
  }
  s->depth--;
  return 0;
}

static int scan_array(scanner *s) {
  if (++s->depth > REQ_MAX_DEPTH) return REQ_EDEPTH;
  s->i++; /* '[' */
  skip_ws(s);
  if (s->i < s->n && s->p[s->i] == ']') { s->i++; s->depth--; return 0; }
  for (;;) {
    int rc = scan_value(s);
    if (rc) return rc;
    if ((rc = scan_sep(s, ']')) < 0) return rc;
    if (rc == 0) break;
  }
  s->depth--;
  return 0;
}

static int scan_value(scanner *s) {
  int esc;
  if (s->i >= s->n) return REQ_EJSON;
  switch (s->p[s->i]) {
    case '{': return scan_object(s);
    case '[': return scan_array(s);
    case '"': return scan_string(s, &esc);
    case 't': return scan_literal(s, "true", 4);
    case 'f': return scan_literal(s, "false", 5);
    case 'n': return scan_literal(s, "null", 4);
    default: return scan_number(s);
  }
}

/* Compares a raw key span with name, unescaping only when needed. */
static int key_is(const char *p, size_t len, int esc, const char *name) {
  size_t nl = strlen(name);
  if (!esc) return len == nl && memcmp(p, name, nl) == 0;
  char tmp[32];
  long l = unescape(p, len, tmp, sizeof tmp);
  return l == (long)nl && memcmp(tmp, name, nl) == 0;
}

int req_parse(const char *body, size_t len, req_info *out) {
  scanner s = {.p = body, .n = len};
  int have_model = 0, rc;
  memset(out, 0, offsetof(req_info, model));
  out->model[0] = '\0';
  out->model_name_len = 0;
  out->stream = 0;
  skip_ws(&s);
  if (s.i >= s.n) return REQ_EJSON;
  if (s.p[s.i] != '{') {
    rc = scan_value(&s);
    if (rc) return rc;
    skip_ws(&s);
    return s.i == s.n ? REQ_EOBJECT : REQ_EJSON;
  }
  s.depth = 1;
  s.i++;
  skip_ws(&s);
  if (s.i < s.n && s.p[s.i] == '}') s.i++;
  else for (;;) {
    size_t ko, kl, vo;
    int esc;
    if ((rc = scan_key(&s, &ko, &kl, &esc))) return rc;
    vo = s.i;
    if (key_is(body + ko, kl, esc, "model")) {
      if (have_model) return REQ_EDUPMODEL;
      have_model = 1;
      if (vo >= s.n) return REQ_EJSON;
      if (body[vo] != '"') {
        if ((rc = scan_value(&s))) return rc;
        have_model = -1; /* present but not a string: report once the JSON is known valid */
      } else {
        int vesc;
        if ((rc = scan_string(&s, &vesc))) return rc;
        out->model_off = vo;
        out->model_len = s.i - vo;
        long ml = unescape(body + vo + 1, out->model_len - 2, out->model, sizeof out->model);
        if (ml <= 0) have_model = -1;
        else out->model_name_len = (size_t)ml;
      }
    } else if (key_is(body + ko, kl, esc, "stream")) {
      if ((rc = scan_value(&s))) return rc;
      if (s.i - vo == 4 && memcmp(body + vo, "true", 4) == 0) out->stream = 1;
      else if (s.i - vo == 5 && memcmp(body + vo, "false", 5) == 0) out->stream = 0;
      else if (s.i - vo == 4 && memcmp(body + vo, "null", 4) == 0) out->stream = 0;
      else return REQ_ESTREAM;
    } else if ((rc = scan_value(&s))) {
      return rc;
    }
    if ((rc = scan_sep(&s, '}')) < 0) return rc;
    if (rc == 0) break;
  }
  skip_ws(&s);
  if (s.i != s.n) return REQ_EJSON;
  if (have_model == 0) return REQ_ENOMODEL;
  if (have_model < 0) return REQ_EMODELTYPE;
  return REQ_OK;
}

const char *req_strerror(int err) {
  switch (err) {
    case REQ_OK: return "ok";
    case REQ_EJSON: return "The request body is not valid JSON.";
    case REQ_EOBJECT: return "The request body must be a JSON object.";
    case REQ_ENOMODEL: return "The request body must contain a 'model' field.";
    case REQ_EMODELTYPE: return "'model' must be a non-empty string of at most 256 bytes.";
    case REQ_EDUPMODEL: return "The request body contains 'model' more than once.";
    case REQ_EDEPTH: return "The request body is nested too deeply.";
    case REQ_ESTREAM: return "'stream' must be a boolean.";
    default: return "The request body is invalid.";
  }
}

int req_json_quote(buf_t *out, const char *s, size_t n) {
  char tmp[256];
  if (buf_append(out, "\"", 1)) return -ENOMEM;
  /* log_json_escape would do, but a request must never be truncated: escape in slices. */
  size_t i = 0;
  while (i < n) {
    size_t o = 0;
    while (i < n && o + 7 < sizeof tmp) {
      unsigned char c = (unsigned char)s[i++];
      if (c == '"' || c == '\\') { tmp[o++] = '\\'; tmp[o++] = (char)c; }
      else if (c < 0x20) {
        static const char hex[] = "0123456789abcdef";
        memcpy(tmp + o, "\\u00", 4);
        tmp[o + 4] = hex[c >> 4];
        tmp[o + 5] = hex[c & 15];
        o += 6;
      } else tmp[o++] = (char)c;
    }
    if (buf_append(out, tmp, o)) return -ENOMEM;
  }
  return buf_append(out, "\"", 1);
}

int req_rewrite_model(buf_t *out, const char *body, size_t len, const req_info *ri,
                      const char *model) {
  buf_reset(out);
  if (buf_append(out, body, ri->model_off)) return -ENOMEM;
  if (req_json_quote(out, model, strlen(model))) return -ENOMEM;
  size_t tail = ri->model_off + ri->model_len;
  return buf_append(out, body + tail, len - tail);
}

int req_json_valid(const char *p, size_t n) {
  scanner s = {.p = p, .n = n};
  skip_ws(&s);
  if (scan_value(&s)) return 0;
  skip_ws(&s);
  return s.i == s.n;
}

int req_json_find(const char *p, size_t n, const char *key, size_t *voff, size_t *vlen) {
  scanner s = {.p = p, .n = n};
  skip_ws(&s);
  if (s.i >= s.n || p[s.i] != '{') return -1;
  s.depth = 1;
  s.i++;
  skip_ws(&s);
  if (s.i < s.n && p[s.i] == '}') return -1;
  for (;;) {
    size_t ko, kl, vo;
    int esc;
    if (scan_key(&s, &ko, &kl, &esc)) return -1;
    vo = s.i;
    if (scan_value(&s)) return -1;
    if (key_is(p + ko, kl, esc, key)) {
      *voff = vo;
      *vlen = s.i - vo;
      return 0;
    }
    int rc = scan_sep(&s, '}');
    if (rc <= 0) return -1;
  }
}

int req_json_uint(const char *p, size_t n, uint64_t *out) {
  uint64_t v = 0;
  if (n == 0 || n > 19) return -1;
  for (size_t i = 0; i < n; i++) {
    if (p[i] < '0' || p[i] > '9') return -1;
    v = v * 10 + (uint64_t)(p[i] - '0');
  }
  *out = v;
  return 0;
}
