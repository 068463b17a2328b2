/* midstream.c — mid-stream continuation: tracker, request builder, splicer (see midstream.h).
 *
 * The tracker reads the common text chunk in one validating pass (track_fast); any other
 * event is scanned once at the top level with json_span_skip (which validates each value)
 * and once more inside `choices`/`usage`. Nothing is re-serialised: outputs are the input
 * bytes with a few raw spans replaced (ids, counters, a whitespace prefix deleted). */
#include "midstream.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_span.h"
#include "sse_decoder.h"

/* ---- raw JSON helpers ------------------------------------------------------------------ */

static size_t skip_ws(const char *s, size_t len, size_t p) {
  while (p < len && (s[p] == ' ' || s[p] == '\t' || s[p] == '\n' || s[p] == '\r')) p++;
  return p;
}

/* Walks the members of an object or the elements of an array, validating each value. */
typedef struct seq {
  const char *s; /* text */
  size_t len;    /* bytes in s */
  size_t pos;    /* next byte to look at */
  char close;    /* '}' or ']' */
  int first;     /* no member read yet */
} seq;

/* v must start (after whitespace) with '{' (close '}') or '[' (close ']'). */
static int seq_open(seq *q, const char *s, size_t len, char close) {
  size_t p = skip_ws(s, len, 0);
  if (p >= len || s[p] != (close == '}' ? '{' : '[')) return -1;
  *q = (seq){s, len, p + 1, close, 1};
  return 0;
}

/* Next member (key set: objects) or element. Returns 1, 0 at the end (pos past the close),
 * or -1 when the text is not valid JSON there. */
static int seq_next(seq *q, json_span *key, json_span *val) {
  size_t p = skip_ws(q->s, q->len, q->pos), e;
  if (p >= q->len) return -1;
  if (q->s[p] == q->close) {
    q->pos = p + 1;
    return 0;
  }
  if (!q->first) {
    if (q->s[p] != ',') return -1;
    p = skip_ws(q->s, q->len, p + 1);
  }
  q->first = 0;
  if (q->close == '}') {
    if (p >= q->len || q->s[p] != '"' || json_span_skip(q->s, q->len, p, &e)) return -1;
    *key = (json_span){q->s + p, e - p};
    p = skip_ws(q->s, q->len, e);
    if (p >= q->len || q->s[p] != ':') return -1;
    p++;
  }
  p = skip_ws(q->s, q->len, p);
  if (json_span_skip(q->s, q->len, p, &e)) return -1;
  *val = (json_span){q->s + p, e - p};
  q->pos = e;
  return 1;
}

static int hexval(int c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

static unsigned hex4(const char *p) {
  unsigned v = 0;
  for (int i = 0; i < 4; i++) v = v << 4 | (unsigned)hexval((unsigned char)p[i]);
  return v;
}

/* One unit of a validated string body b[*i..n): an escape or one whole UTF-8 character.
 * Its decoded bytes go to o (4 bytes room); *i moves past it. Returns the byte count. */
static size_t unit_next(const char *b, size_t n, size_t *i, unsigned char *o) {
  unsigned char c = (unsigned char)b[*i];
  if (c != '\\') {
    size_t k = c < 0x80 ? 1 : c < 0xE0 ? 2 : c < 0xF0 ? 3 : 4;
    if (k > n - *i) k = n - *i;
    memcpy(o, b + *i, k);
    *i += k;
    return k;
  }
  char e = b[*i + 1];
  *i += 2;
  static const char from[] = "\"\\/bfnrt", to[] = "\"\\/\b\f\n\r\t";
  if (e != 'u') {
    o[0] = (unsigned char)to[strchr(from, e) - from];
    return 1;
  }
  unsigned long cp = hex4(b + *i);
  *i += 4;
  if (cp >= 0xD800 && cp <= 0xDBFF) { /* validated: a low surrogate escape follows */
    cp = 0x10000 + ((cp - 0xD800) << 10) + (hex4(b + *i + 2) - 0xDC00);
    *i += 6;
  }
  return json_span_utf8_put(cp, o);
}

/* Appends the unescaped body of the validated string v to out. */
static int str_decode(const json_span *v, buf_t *out) {
  const char *b = v->p + 1;
  size_t n = v->len - 2, i = 0, run = 0;
  while (i < n) {
    if (b[i] != '\\') {
      i++;
      continue;
    }
    if (buf_append(out, b + run, i - run)) return -ENOMEM;
    unsigned char u[4];
    size_t k = unit_next(b, n, &i, u);
    if (buf_append(out, u, k)) return -ENOMEM;
    run = i;
  }
  return buf_append(out, b + run, n - run) ? -ENOMEM : 0;
}

/* The member name k (a validated string span) is name. */
static int key_is(const json_span *k, const char *name) {
  const char *b = k->p + 1;
  size_t n = k->len - 2, nl = strlen(name);
  if (!memchr(b, '\\', n)) return n == nl && memcmp(b, name, n) == 0;
  size_t i = 0, at = 0;
  while (i < n) {
    unsigned char u[4];
    size_t m = unit_next(b, n, &i, u);
    if (nl - at < m || memcmp(name + at, u, m)) return 0;
    at += m;
  }
  return at == nl;
}

static int is_lit(const json_span *v, const char *lit) {
  size_t n = strlen(lit);
  return v->len == n && memcmp(v->p, lit, n) == 0;
}

static int is_string(const json_span *v) { return v->len && v->p[0] == '"'; }

/* null, "", [] or {}: carries nothing for the client. */
static int is_blank(const json_span *v) {
  if (!v->len || is_lit(v, "null") || is_lit(v, "\"\"")) return 1;
  if (v->p[0] != '[' && v->p[0] != '{') return 0;
  return skip_ws(v->p, v->len, 1) == v->len - 1;
}

/* Unsigned integer value (at most 19 digits). Returns 0 or -1. */
static int span_uint(const json_span *v, uint64_t *out) {
  uint64_t x = 0;
  if (!v->len || v->len > 19) return -1;
  for (size_t i = 0; i < v->len; i++) {
    if (v->p[i] < '0' || v->p[i] > '9') return -1;
    x = x * 10 + (uint64_t)(v->p[i] - '0');
  }
  *out = x;
  return 0;
}

static int is_done(const char *data, size_t n) { return n == 6 && memcmp(data, "[DONE]", 6) == 0; }

/* The top-level members of a chunk we look at; len 0 = absent (the last duplicate wins). */
typedef struct chunk_view {
  json_span id, created, model, choices, usage, error;
} chunk_view;

/* Scans a whole event's data: one JSON object, nothing after it. Returns 0 or -EINVAL. */
static int chunk_scan(const char *data, size_t n, chunk_view *cv) {
  seq q;
  json_span k, v;
  int rc;
  memset(cv, 0, sizeof *cv);
  if (seq_open(&q, data, n, '}')) return -EINVAL;
  while ((rc = seq_next(&q, &k, &v)) == 1) {
    if (key_is(&k, "id")) cv->id = v;
    else if (key_is(&k, "created")) cv->created = v;
    else if (key_is(&k, "model")) cv->model = v;
    else if (key_is(&k, "choices")) cv->choices = v;
    else if (key_is(&k, "usage")) cv->usage = v;
    else if (key_is(&k, "error")) cv->error = v;
  }
  if (rc < 0 || skip_ws(data, n, q.pos) != n) return -EINVAL;
  return 0;
}

/* ---- tracker ------------------------------------------------------------------------- */

void midstream_tracker_init(midstream_tracker *t) {
  memset(t, 0, sizeof *t);
  t->continuable = 1;
}

void midstream_tracker_free(midstream_tracker *t) { buf_free(&t->text); }

/* Continuing would no longer be faithful: for good, and the text is not needed any more. */
static void tracker_off(midstream_tracker *t, const char *why) {
  if (t->continuable) t->why_not = why;
  t->continuable = 0;
  buf_free(&t->text);
}

static int non_empty(const json_span *v) { return v->len && !is_blank(v); }

/* Keeps the stream's identity: the first non-empty id (with its created), model. */
static void remember_ids(midstream_tracker *t, const chunk_view *cv) {
  int have_real = t->id_len && !is_lit(&(json_span){t->id, t->id_len}, "\"\"");
  if (!have_real && cv->id.len && !is_lit(&cv->id, "null") && cv->id.len <= sizeof t->id &&
      (non_empty(&cv->id) || !t->id_len)) {
    memcpy(t->id, cv->id.p, cv->id.len);
    t->id_len = cv->id.len;
    t->created_len = 0;
    if (cv->created.len && cv->created.len <= sizeof t->created) {
      memcpy(t->created, cv->created.p, cv->created.len);
      t->created_len = cv->created.len;
    }
  }
  if (!t->model_len && non_empty(&cv->model) && cv->model.len <= sizeof t->model) {
    memcpy(t->model, cv->model.p, cv->model.len);
    t->model_len = cv->model.len;
  }
}

/* A delta of choice 0: its content is appended; tool calls and refusals end continuability. */
static int track_delta(midstream_tracker *t, const json_span *delta) {
  seq q;
  json_span k, v, content = {0};
  if (seq_open(&q, delta->p, delta->len, '}')) return 0; /* null or not an object */
  while (seq_next(&q, &k, &v) == 1) {
    if (key_is(&k, "content")) content = v;
    else if ((key_is(&k, "tool_calls") || key_is(&k, "function_call")) && !is_blank(&v))
      tracker_off(t, "tool_calls");
    else if (key_is(&k, "refusal") && !is_blank(&v))
      tracker_off(t, "refusal");
  }
  if (!content.len || is_lit(&content, "null") || !t->continuable) return 0;
  if (!is_string(&content)) {
    tracker_off(t, "content_not_text");
    return 0;
  }
  if (str_decode(&content, &t->text)) {
    tracker_off(t, "out_of_memory");
    return -ENOMEM;
  }
  if (t->text.len > MIDSTREAM_MAX_TEXT) tracker_off(t, "text_cap");
  return 0;
}

/* A string finish_reason of choice 0 is kept (raw: finish reasons are plain words). */
static void keep_finish(midstream_tracker *t, const json_span *finish) {
  if (!is_string(finish) || finish->len <= 2) return;
  size_t n = finish->len - 2 < sizeof t->finish_reason - 1 ? finish->len - 2
                                                          : sizeof t->finish_reason - 1;
  memcpy(t->finish_reason, finish->p + 1, n);
  t->finish_reason[n] = '\0';
}

static int track_choice(midstream_tracker *t, const json_span *choice) {
  seq q;
  json_span k, v, delta = {0}, finish = {0};
  if (seq_open(&q, choice->p, choice->len, '}')) return 0;
  while (seq_next(&q, &k, &v) == 1) {
    if (key_is(&k, "index") && !is_lit(&v, "0")) tracker_off(t, "choice_index");
    else if (key_is(&k, "logprobs") && !is_blank(&v)) tracker_off(t, "logprobs");
    else if (key_is(&k, "delta")) delta = v;
    else if (key_is(&k, "finish_reason")) finish = v;
  }
  keep_finish(t, &finish);
  return delta.len ? track_delta(t, &delta) : 0;
}

int midstream_track_full(midstream_tracker *t, const char *data, size_t n) {
  chunk_view cv;
  seq q;
  json_span k, v;
  if (is_done(data, n)) return MIDSTREAM_EV_DONE;
  if (chunk_scan(data, n, &cv)) return -EINVAL;
  if (cv.error.len && !is_lit(&cv.error, "null")) return MIDSTREAM_EV_ERROR;
  t->chunks++;
  remember_ids(t, &cv);
  if (!cv.choices.len || seq_open(&q, cv.choices.p, cv.choices.len, ']')) return MIDSTREAM_EV_CHUNK;
  while (seq_next(&q, &k, &v) == 1)
    if (track_choice(t, &v)) return -ENOMEM;
  return MIDSTREAM_EV_CHUNK;
}

/* ---- tracker fast path: the common chunk ----------------------------------------------
 * Nearly every event of a stream is a text delta of one choice:
 *   {"id":..,"object":..,"created":..,"model":..,"choices":[{"index":0,"delta":{"content":
 *   "..."},"finish_reason":null}]}
 * The full scan validates each nested level again when it descends into it (the content
 * string four times) and compares every key by name with strlen. The fast path walks the
 * event once, validating as it goes, and descends in place. It only accepts what it can
 * decide exactly like the full scan: plain ASCII keys without escapes, no repeated key that
 * matters, at most one choice with index 0, no error member, no tool call, function call,
 * refusal or logprobs, content a string or null, containers it skips shorter than
 * FAST_MAX_SKIP (so nesting depth cannot differ from the full scan's limit). Anything else
 * (and anything invalid) declines before touching the tracker, and the full scan decides. */

#define FAST_MAX_SKIP 256 /* bytes: longest container the fast path skips (depth < 128) */

typedef struct fast_cur {
  const char *s; /* event data */
  size_t n;      /* bytes in s */
  size_t p;      /* next byte */
} fast_cur;

/* What the fast path found; len 0 = absent. */
typedef struct fast_view {
  json_span id, created, model; /* top-level members */
  json_span finish, content;    /* choice 0's finish_reason and delta.content */
  int content_plain;            /* content has no escape: its body is the text as is */
  unsigned seen;                /* FV_* bits: members met, to decline repeats */
} fast_view;

enum { /* fast_view.seen bits */
  FV_ID = 1u << 0, FV_CREATED = 1u << 1, FV_MODEL = 1u << 2, FV_CHOICES = 1u << 3,
  FV_INDEX = 1u << 4, FV_LOGPROBS = 1u << 5, FV_DELTA = 1u << 6, FV_FINISH = 1u << 7,
  FV_CONTENT = 1u << 8, FV_TOOLS = 1u << 9, FV_FUNCTION = 1u << 10, FV_REFUSAL = 1u << 11,
};

static void fast_ws(fast_cur *c) {
  while (c->p < c->n && (c->s[c->p] == ' ' || c->s[c->p] == '\t' || c->s[c->p] == '\n' ||
                         c->s[c->p] == '\r'))
    c->p++;
}

/* Bytes a string may hold as they are that stand for themselves: printable ASCII but '"'
 * and '\\'. A table test per byte is the whole inner loop of the common chunk. */
static const unsigned char fast_plain[256] = {
    [0x20] = 1, [0x21] = 1, [0x23 ... 0x5B] = 1, [0x5D ... 0x7F] = 1,
};

/* A string at c->p ('"'). *plain: no escape and ASCII only (its body is its text).
 * Anything else is validated by json_span_skip. Returns 0 or -1. */
static int fast_string(fast_cur *c, json_span *v, int *plain) {
  const unsigned char *s = (const unsigned char *)c->s;
  size_t i = c->p + 1, e;
  while (i < c->n && fast_plain[s[i]]) i++;
  if (i < c->n && s[i] == '"') {
    *v = (json_span){c->s + c->p, i + 1 - c->p};
    *plain = 1;
    c->p = i + 1;
    return 0;
  }
  if (i >= c->n || s[i] < 0x20 || json_span_skip(c->s, c->n, c->p, &e)) return -1;
  *v = (json_span){c->s + c->p, e - c->p};
  *plain = 0;
  c->p = e;
  return 0;
}

/* A number that is a plain non-negative integer ("0", "1795713260") or null: the scalars of
 * the common chunk, without json_span_skip's call. 1 = done (*end set), 0 = not that. */
static int fast_scalar(const fast_cur *c, size_t *end) {
  const char *s = c->s + c->p;
  size_t left = c->n - c->p, i = 0;
  if (left >= 4 && !memcmp(s, "null", 4)) i = 4;
  else if (s[0] == '0') i = 1;
  else
    while (i < left && s[i] >= '0' && s[i] <= '9') i++;
  if (!i || (i < left && ((s[i] >= '0' && s[i] <= '9') || s[i] == '.' || s[i] == 'e' ||
                          s[i] == 'E' || (s[i] >= 'a' && s[i] <= 'z'))))
    return 0; /* a longer number or word: json_span_skip decides */
  *end = c->p + i;
  return 1;
}

/* Any value at c->p (whitespace skipped); nested (below the top level): containers only up
 * to FAST_MAX_SKIP bytes. */
static int fast_value(fast_cur *c, json_span *v, int nested) {
  int plain;
  size_t e;
  fast_ws(c);
  if (c->p >= c->n) return -1;
  if (c->s[c->p] == '"') return fast_string(c, v, &plain);
  if (!fast_scalar(c, &e) && json_span_skip(c->s, c->n, c->p, &e)) return -1;
  if (nested && (c->s[c->p] == '{' || c->s[c->p] == '[') && e - c->p >= FAST_MAX_SKIP) return -1;
  *v = (json_span){c->s + c->p, e - c->p};
  c->p = e;
  return 0;
}

/* One member's value, the cursor at it: consumes it. Returns 0 or -1 (decline). */
typedef int (*fast_member_fn)(fast_cur *c, const char *key, size_t klen, fast_view *fv);

/* The object at c->p (whitespace skipped): each member's plain key to fn. */
static int fast_object(fast_cur *c, fast_member_fn fn, fast_view *fv) {
  json_span k;
  int plain;
  fast_ws(c);
  if (c->p >= c->n || c->s[c->p] != '{') return -1;
  c->p++;
  fast_ws(c);
  if (c->p < c->n && c->s[c->p] == '}') { c->p++; return 0; }
  for (;;) {
    if (c->p >= c->n || c->s[c->p] != '"' || fast_string(c, &k, &plain) || !plain) return -1;
    fast_ws(c);
    if (c->p >= c->n || c->s[c->p] != ':') return -1;
    c->p++;
    fast_ws(c);
    if (fn(c, k.p + 1, k.len - 2, fv)) return -1;
    fast_ws(c);
    if (c->p >= c->n) return -1;
    if (c->s[c->p++] == '}') return 0;
    if (c->s[c->p - 1] != ',') return -1;
    fast_ws(c);
  }
}

static int key_eq(const char *k, size_t kl, const char *lit, size_t ll) {
  return kl == ll && memcmp(k, lit, ll) == 0;
}
#define KEY(lit) key_eq(key, klen, lit, sizeof lit - 1)

/* A member met once: sets bit b, declines a repeat. */
static int once(fast_view *fv, unsigned b) {
  if (fv->seen & b) return -1;
  fv->seen |= b;
  return 0;
}

static int fast_delta_member(fast_cur *c, const char *key, size_t klen, fast_view *fv) {
  json_span v;
  if (KEY("content")) {
    if (once(fv, FV_CONTENT) || c->p >= c->n) return -1;
    if (c->s[c->p] == '"') return fast_string(c, &fv->content, &fv->content_plain);
    return fast_value(c, &v, 1) || !is_lit(&v, "null") ? -1 : 0; /* not text: the full scan */
  }
  unsigned b = KEY("tool_calls") ? FV_TOOLS : KEY("function_call") ? FV_FUNCTION
             : KEY("refusal")    ? FV_REFUSAL : 0;
  if (b && once(fv, b)) return -1;
  if (fast_value(c, &v, 1)) return -1;
  return b && !is_blank(&v) ? -1 : 0;
}

static int fast_choice_member(fast_cur *c, const char *key, size_t klen, fast_view *fv) {
  json_span v;
  if (KEY("delta")) return once(fv, FV_DELTA) || fast_object(c, fast_delta_member, fv);
  if (KEY("index")) return once(fv, FV_INDEX) || fast_value(c, &v, 1) || !is_lit(&v, "0");
  if (KEY("logprobs")) return once(fv, FV_LOGPROBS) || fast_value(c, &v, 1) || !is_blank(&v);
  if (KEY("finish_reason")) return once(fv, FV_FINISH) || fast_value(c, &fv->finish, 1);
  return fast_value(c, &v, 1);
}

/* choices: [] or [one choice object]. */
static int fast_choices(fast_cur *c, fast_view *fv) {
  if (c->p >= c->n || c->s[c->p] != '[') return -1;
  c->p++;
  fast_ws(c);
  if (c->p < c->n && c->s[c->p] == ']') { c->p++; return 0; }
  if (fast_object(c, fast_choice_member, fv)) return -1;
  fast_ws(c);
  return c->p < c->n && c->s[c->p++] == ']' ? 0 : -1;
}

static int fast_top_member(fast_cur *c, const char *key, size_t klen, fast_view *fv) {
  json_span v;
  if (KEY("choices")) return once(fv, FV_CHOICES) || fast_choices(c, fv);
  if (KEY("id")) return once(fv, FV_ID) || fast_value(c, &fv->id, 0);
  if (KEY("created")) return once(fv, FV_CREATED) || fast_value(c, &fv->created, 0);
  if (KEY("model")) return once(fv, FV_MODEL) || fast_value(c, &fv->model, 0);
  if (KEY("error")) return -1; /* the full scan tells an error event from error: null */
  return fast_value(c, &v, 0);
}
#undef KEY

/* Tracks a common chunk. Returns MIDSTREAM_EV_CHUNK, -ENOMEM, or 1 when it declined (the
 * tracker untouched). */
static int track_fast(midstream_tracker *t, const char *data, size_t n) {
  fast_view fv;
  fast_cur c = {data, n, 0};
  memset(&fv, 0, sizeof fv);
  if (fast_object(&c, fast_top_member, &fv)) return 1;
  fast_ws(&c);
  if (c.p != n) return 1;
  t->chunks++;
  remember_ids(t, &(chunk_view){.id = fv.id, .created = fv.created, .model = fv.model});
  keep_finish(t, &fv.finish);
  if (!fv.content.len || !t->continuable) return MIDSTREAM_EV_CHUNK;
  int rc = fv.content_plain ? buf_append(&t->text, fv.content.p + 1, fv.content.len - 2)
                            : str_decode(&fv.content, &t->text);
  if (rc) {
    tracker_off(t, "out_of_memory");
    return -ENOMEM;
  }
  if (t->text.len > MIDSTREAM_MAX_TEXT) tracker_off(t, "text_cap");
  return MIDSTREAM_EV_CHUNK;
}

int midstream_track(midstream_tracker *t, const char *data, size_t n) {
  if (n && data[0] == '{') {
    int rc = track_fast(t, data, n);
    if (rc != 1) return rc;
  }
  return midstream_track_full(t, data, n);
}

uint64_t midstream_delivered_tokens(const midstream_tracker *t) {
  return (t->text.len + MIDSTREAM_BYTES_PER_TOKEN - 1) / MIDSTREAM_BYTES_PER_TOKEN;
}

/* ---- continuation request -------------------------------------------------------------- */

/* Bytes of whitespace ending s[0..n): ASCII and Unicode white space (what Python's
 * str.isspace() accepts, so Anthropic's check cannot see any left). Cutting more than a
 * provider would reject is harmless: the cut text was already delivered. */
static size_t trailing_ws(const char *s, size_t n) {
  static const char *const wide[] = {
      "\xC2\x85", "\xC2\xA0", "\xE1\x9A\x80", "\xE2\x80\xA8", "\xE2\x80\xA9", "\xE2\x80\xAF",
      "\xE2\x81\x9F", "\xE3\x80\x80",
  };
  size_t end = n;
  for (;;) {
    unsigned char c = end ? (unsigned char)s[end - 1] : 0;
    if (end && ((c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20))) {
      end--;
      continue;
    }
    /* U+2000..U+200A */
    if (end >= 3 && !memcmp(s + end - 3, "\xE2\x80", 2) && c >= 0x80 && c <= 0x8A) {
      end -= 3;
      continue;
    }
    size_t i;
    for (i = 0; i < ARRAY_SIZE(wide); i++) {
      size_t l = strlen(wide[i]);
      if (end >= l && !memcmp(s + end - l, wide[i], l)) break;
    }
    if (i == ARRAY_SIZE(wide)) return n - end;
    end -= strlen(wide[i]);
  }
}

/* The request members the continuation depends on. */
typedef struct body_view {
  json_span messages, n, stream; /* len 0 = absent; the last duplicate wins (as in jansson) */
} body_view;

static int body_scan(const char *body, size_t len, body_view *bv) {
  seq q;
  json_span k, v;
  int rc;
  memset(bv, 0, sizeof *bv);
  if (seq_open(&q, body, len, '}')) return -EINVAL;
  while ((rc = seq_next(&q, &k, &v)) == 1) {
    if (key_is(&k, "messages")) bv->messages = v;
    else if (key_is(&k, "n")) bv->n = v;
    else if (key_is(&k, "stream")) bv->stream = v;
  }
  if (rc < 0 || skip_ws(body, len, q.pos) != len) return -EINVAL;
  if (!bv->messages.len || bv->messages.p[0] != '[') return -EINVAL;
  if (bv->n.len && !is_lit(&bv->n, "1") && !is_lit(&bv->n, "null")) return -EINVAL;
  if (!is_lit(&bv->stream, "true")) return -EINVAL;
  return 0;
}

int midstream_build_request(const char *body, size_t len, midstream_tracker *t, int prefill,
                            buf_t *out) {
  body_view bv;
  buf_reset(out);
  if (!t->continuable || !body || body_scan(body, len, &bv)) return -EINVAL;
  const char *text = t->text.data;
  size_t ws = trailing_ws(text, t->text.len), keep = t->text.len - ws;
  t->ws_cut = prefill ? ws : 0;
  if (!prefill && keep) keep = t->text.len; /* the instruction variant sends the text whole */
  if (!keep) /* nothing said yet (or only white space): the original request starts over */
    return buf_append(out, body, len) ? -ENOMEM : 0;
  size_t close = (size_t)(bv.messages.p - body) + bv.messages.len - 1; /* its ']' */
  int has_items = skip_ws(bv.messages.p, bv.messages.len, 1) != bv.messages.len - 1;
  if (buf_append(out, body, close) || (has_items && BUF_LIT(out, ",")) ||
      BUF_LIT(out, "{\"role\":\"assistant\",\"content\":") || buf_json_quote(out, text, keep) ||
      BUF_LIT(out, "}"))
    return -ENOMEM;
  if (!prefill && BUF_LIT(out, ",{\"role\":\"user\",\"content\":\"" MIDSTREAM_CONTINUE_PROMPT "\"}"))
    return -ENOMEM;
  return buf_append(out, body + close, len - close) ? -ENOMEM : 0;
}

/* ---- splicer ------------------------------------------------------------------------- */

int midstream_splice_init(midstream_splicer *s, midstream_tracker *t, uint64_t delivered_tokens) {
  memset(s, 0, sizeof *s);
  memcpy(s->id, t->id, t->id_len);
  s->id_len = t->id_len;
  memcpy(s->created, t->created, t->created_len);
  s->created_len = t->created_len;
  s->delivered_tokens = delivered_tokens;
  s->track = t;
  if (t->ws_cut && t->ws_cut <= t->text.len &&
      buf_append(&s->ws, t->text.data + t->text.len - t->ws_cut, t->ws_cut))
    return -ENOMEM;
  s->strip_over = s->ws.len == 0;
  return 0;
}

void midstream_splice_free(midstream_splicer *s) {
  buf_free(&s->ws);
  buf_free(&s->scratch);
}

#define SPLICE_MAX_EDITS 6

/* One replacement of raw bytes in the event's data. */
typedef struct edit {
  const char *p;   /* first byte replaced */
  size_t len;      /* bytes replaced */
  const char *rep; /* replacement (points into num for counters) */
  size_t rep_len;  /* bytes in rep */
  char num[24];    /* a rewritten counter */
} edit;

typedef struct edits {
  edit e[SPLICE_MAX_EDITS];
  int n;
} edits;

static void edit_add(edits *ed, const char *p, size_t len, const char *rep, size_t rep_len) {
  if (ed->n == SPLICE_MAX_EDITS) return; /* cannot happen: one per rewritten field */
  ed->e[ed->n++] = (edit){.p = p, .len = len, .rep = rep, .rep_len = rep_len};
}

static void edit_counter(edits *ed, const json_span *v, uint64_t x) {
  if (ed->n == SPLICE_MAX_EDITS) return;
  edit *e = &ed->e[ed->n++];
  *e = (edit){.p = v->p, .len = v->len};
  e->rep_len = (size_t)snprintf(e->num, sizeof e->num, "%" PRIu64, x);
  e->rep = e->num;
}

/* usage.completion_tokens and total_tokens grow by the delivered estimate. */
static void splice_usage(midstream_splicer *s, const json_span *usage, edits *ed) {
  seq q;
  json_span k, v;
  uint64_t x;
  if (seq_open(&q, usage->p, usage->len, '}')) return;
  while (seq_next(&q, &k, &v) == 1) {
    if ((key_is(&k, "completion_tokens") || key_is(&k, "total_tokens")) && !span_uint(&v, &x))
      edit_counter(ed, &v, x > UINT64_MAX - s->delivered_tokens ? UINT64_MAX
                                                                 : x + s->delivered_tokens);
  }
}

/* The first content's leading white space that was cut from the prefill: matched unit by
 * unit (escapes decoded), across contents until it is all matched or a unit differs.
 * Returns the raw bytes of the string body to delete. */
static size_t strip_prefix(midstream_splicer *s, const json_span *str) {
  const char *b = str->p + 1;
  size_t n = str->len - 2, i = 0;
  while (i < n && s->ws_pos < s->ws.len) {
    unsigned char u[4];
    size_t j = i, k = unit_next(b, n, &j, u);
    if (k > s->ws.len - s->ws_pos || memcmp(u, s->ws.data + s->ws_pos, k)) {
      s->strip_over = 1;
      return i;
    }
    s->ws_pos += k;
    i = j;
  }
  if (s->ws_pos == s->ws.len) s->strip_over = 1;
  return i;
}

/* Delta of one choice: strips the whitespace prefix (choice 0). *empty: nothing for the
 * client in it besides the role. */
static void splice_delta(midstream_splicer *s, const json_span *delta, int first_choice,
                         edits *ed, int *empty) {
  seq q;
  json_span k, v;
  if (seq_open(&q, delta->p, delta->len, '}')) {
    if (!is_blank(delta)) *empty = 0;
    return;
  }
  while (seq_next(&q, &k, &v) == 1) {
    if (key_is(&k, "role")) continue;
    if (key_is(&k, "content") && is_string(&v) && v.len > 2 && first_choice && !s->strip_over) {
      size_t cut = strip_prefix(s, &v);
      if (cut) edit_add(ed, v.p + 1, cut, "", 0);
      if (cut < v.len - 2) *empty = 0;
      continue;
    }
    if (!is_blank(&v)) *empty = 0;
  }
}

static void splice_choice(midstream_splicer *s, const json_span *choice, int nth, edits *ed,
                          int *empty) {
  seq q;
  json_span k, v, delta = {0}, index = {0};
  if (seq_open(&q, choice->p, choice->len, '}')) {
    *empty = 0;
    return;
  }
  while (seq_next(&q, &k, &v) == 1) {
    if (key_is(&k, "delta")) delta = v;
    else if (key_is(&k, "index")) index = v;
    else if (!is_blank(&v)) *empty = 0; /* finish_reason, logprobs, filter results... */
  }
  int first = index.len ? is_lit(&index, "0") : nth == 0;
  if (delta.len) splice_delta(s, &delta, first, ed, empty);
}

static int cmp_edit(const void *a, const void *b) {
  const edit *x = a, *y = b;
  return x->p < y->p ? -1 : x->p > y->p;
}

/* data with the edits applied → s->scratch. */
static int apply_edits(midstream_splicer *s, const char *data, size_t n, edits *ed) {
  const char *cur = data;
  buf_reset(&s->scratch);
  qsort(ed->e, (size_t)ed->n, sizeof ed->e[0], cmp_edit);
  for (int i = 0; i < ed->n; i++) {
    if (buf_append(&s->scratch, cur, (size_t)(ed->e[i].p - cur)) ||
        buf_append(&s->scratch, ed->e[i].rep, ed->e[i].rep_len))
      return -ENOMEM;
    cur = ed->e[i].p + ed->e[i].len;
  }
  return buf_append(&s->scratch, cur, (size_t)(data + n - cur)) ? -ENOMEM : 0;
}

/* Writes data to the client's bytes and to the tracker. */
static int emit(midstream_splicer *s, const char *event, const char *data, size_t n, buf_t *out,
                int kind) {
  if (sse_frame(out, event, data, n)) return -ENOMEM;
  s->events_out++;
  if (s->track && midstream_track(s->track, data, n) == -ENOMEM) return -ENOMEM;
  return kind;
}

int midstream_splice(midstream_splicer *s, const char *event, const char *data, size_t n,
                     buf_t *out) {
  chunk_view cv;
  seq q;
  json_span k, v;
  edits ed = {.n = 0};
  if (is_done(data, n)) return emit(s, event, data, n, out, MIDSTREAM_EV_DONE);
  if (chunk_scan(data, n, &cv)) return -EINVAL;
  if (cv.error.len && !is_lit(&cv.error, "null"))
    return emit(s, event, data, n, out, MIDSTREAM_EV_ERROR);
  if (s->id_len && cv.id.len) edit_add(&ed, cv.id.p, cv.id.len, s->id, s->id_len);
  if (s->created_len && cv.created.len)
    edit_add(&ed, cv.created.p, cv.created.len, s->created, s->created_len);
  int has_usage = cv.usage.len && !is_blank(&cv.usage);
  if (has_usage) splice_usage(s, &cv.usage, &ed);
  int nth = 0, empty = 1;
  if (cv.choices.len && !seq_open(&q, cv.choices.p, cv.choices.len, ']'))
    for (; seq_next(&q, &k, &v) == 1; nth++) splice_choice(s, &v, nth, &ed, &empty);
  if (nth && empty && !has_usage) return MIDSTREAM_EV_DROPPED;
  if (apply_edits(s, data, n, &ed)) return -ENOMEM;
  return emit(s, event, s->scratch.data, s->scratch.len, out, MIDSTREAM_EV_CHUNK);
}
