/* sse.c — incremental SSE decoder and OpenAI chunk helpers (see sse.h). */
#include "sse.h"

#include <string.h>

#include "request.h"

void sse_init(sse_decoder *d) { memset(d, 0, sizeof *d); }

void sse_reset(sse_decoder *d) {
  buf_reset(&d->line);
  buf_reset(&d->data);
  d->event[0] = '\0';
  d->has_data = 0;
  d->last_cr = 0;
  d->error = 0;
}

void sse_free(sse_decoder *d) {
  buf_free(&d->line);
  buf_free(&d->data);
}

static void dispatch(sse_decoder *d, sse_event_cb cb, void *ud) {
  if (d->has_data) {
    size_t n = d->data.len;
    if (n && d->data.data[n - 1] == '\n') n--; /* the last data line's separator */
    d->data.len = n;
    sse_event ev = {.event = d->event, .data = buf_cstr(&d->data), .data_len = n};
    if (ev.data) {
      d->events++;
      cb(ud, &ev);
    }
  }
  buf_reset(&d->data);
  d->event[0] = '\0';
  d->has_data = 0;
}

/* Handles one complete line (without its terminator). */
static int process_line(sse_decoder *d, const char *p, size_t n, sse_event_cb cb, void *ud) {
  if (n == 0) { dispatch(d, cb, ud); return 0; }
  if (p[0] == ':') return 0; /* comment */
  const char *colon = memchr(p, ':', n);
  size_t fl = colon ? (size_t)(colon - p) : n;
  const char *v = colon ? colon + 1 : p + n;
  size_t vl = (size_t)(p + n - v);
  if (vl && v[0] == ' ') { v++; vl--; }
  if (fl == 4 && memcmp(p, "data", 4) == 0) {
    if (d->data.len + vl + 1 > SSE_MAX_EVENT_BYTES) return -1;
    if (buf_append(&d->data, v, vl) || buf_append(&d->data, "\n", 1)) return -1;
    d->has_data = 1;
  } else if (fl == 5 && memcmp(p, "event", 5) == 0) {
    if (vl >= sizeof d->event) vl = sizeof d->event - 1;
    memcpy(d->event, v, vl);
    d->event[vl] = '\0';
  }
  return 0; /* id, retry and unknown fields are ignored */
}

/* First CR or LF in p[0..n), or NULL. */
static const char *find_eol(const char *p, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (p[i] == '\n' || p[i] == '\r') return p + i;
  return NULL;
}

int sse_feed(sse_decoder *d, const char *p, size_t n, sse_event_cb cb, void *ud) {
  const char *end = p + n;
  if (d->error) return -1;
  if (d->last_cr && p < end) {
    if (*p == '\n') p++;
    d->last_cr = 0;
  }
  while (p < end) {
    const char *eol = find_eol(p, (size_t)(end - p));
    if (!eol) { /* partial line: keep it for the next chunk */
      if (d->line.len + (size_t)(end - p) > SSE_MAX_EVENT_BYTES ||
          buf_append(&d->line, p, (size_t)(end - p))) {
        d->error = 1;
        return -1;
      }
      return 0;
    }
    int rc;
    if (d->line.len) {
      if (buf_append(&d->line, p, (size_t)(eol - p))) { d->error = 1; return -1; }
      rc = process_line(d, d->line.data, d->line.len, cb, ud);
      buf_reset(&d->line);
    } else {
      rc = process_line(d, p, (size_t)(eol - p), cb, ud);
    }
    if (rc) { d->error = 1; return -1; }
    p = eol + 1;
    if (*eol == '\r') {
      if (p < end) { if (*p == '\n') p++; }
      else d->last_cr = 1;
    }
  }
  return 0;
}

int sse_is_done(const sse_event *ev) {
  return ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0;
}

int sse_usage(const char *json, size_t n, uint64_t *prompt, uint64_t *completion) {
  size_t uo, ul, vo, vl;
  if (!memmem(json, n, "\"usage\"", 7)) return -1;
  if (req_json_find(json, n, "usage", &uo, &ul) || json[uo] != '{') return -1;
  const char *u = json + uo;
  uint64_t pt = 0, ct = 0;
  if (req_json_find(u, ul, "prompt_tokens", &vo, &vl) == 0) req_json_uint(u + vo, vl, &pt);
  if (req_json_find(u, ul, "completion_tokens", &vo, &vl) == 0) req_json_uint(u + vo, vl, &ct);
  *prompt = pt;
  *completion = ct;
  return 0;
}
