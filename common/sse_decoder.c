/* sse_decoder.c — incremental SSE decoder (see sse_decoder.h). */
#include "sse_decoder.h"

#include <errno.h>
#include <string.h>

void sse_init_opts(sse_decoder *d, size_t max, unsigned flags) {
  memset(d, 0, sizeof *d);
  d->max_line = max;
  d->max_data = max;
  d->flags = flags;
}

/* The relay's historic limit counted a separator after the last data line too. */
void sse_init(sse_decoder *d) {
  sse_init_opts(d, SSE_MAX_EVENT_BYTES, 0);
  d->max_data = SSE_MAX_EVENT_BYTES - 1;
}

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

static int dispatch(sse_decoder *d, sse_event_fn cb, void *ud) {
  int rc = 0;
  if (d->has_data) {
    sse_event ev = {.event = d->event, .data = buf_cstr(&d->data), .data_len = d->data.len};
    if (ev.data) {
      d->events++;
      rc = cb(ud, &ev) ? SSE_STOPPED : 0;
    }
  }
  buf_reset(&d->data);
  d->event[0] = '\0';
  d->has_data = 0;
  return rc;
}

/* Handles one complete line (without its terminator). */
static int process_line(sse_decoder *d, const char *p, size_t n, sse_event_fn cb, void *ud) {
  if (n == 0) return dispatch(d, cb, ud);
  if (p[0] == ':') return 0; /* comment */
  const char *colon = memchr(p, ':', n);
  size_t fl = colon ? (size_t)(colon - p) : n;
  const char *v = colon ? colon + 1 : p + n;
  size_t vl = (size_t)(p + n - v);
  if (vl && v[0] == ' ') { v++; vl--; }
  if (fl == 4 && memcmp(p, "data", 4) == 0 && (colon || !(d->flags & SSE_DATA_NEEDS_COLON))) {
    if (d->data.len + (d->has_data ? 1 : 0) + vl > d->max_data) return SSE_TOO_BIG;
    if ((d->has_data && buf_append(&d->data, "\n", 1)) || buf_append(&d->data, v, vl))
      return -ENOMEM;
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

int sse_decode(sse_decoder *d, const char *p, size_t n, sse_event_fn cb, void *ud) {
  const char *end = p + n;
  if (d->last_cr && p < end) {
    if (*p == '\n') p++;
    d->last_cr = 0;
  }
  while (p < end) {
    const char *eol = find_eol(p, (size_t)(end - p));
    size_t k = (size_t)((eol ? eol : end) - p);
    if (d->line.len + k > d->max_line && (!eol || (d->flags & SSE_LIMIT_ALL_LINES)))
      return SSE_TOO_BIG;
    if (!eol) /* partial line: keep it for the next chunk */
      return buf_append(&d->line, p, k) ? -ENOMEM : 0;
    int rc;
    if (d->line.len) {
      if (buf_append(&d->line, p, k)) return -ENOMEM;
      rc = process_line(d, d->line.data, d->line.len, cb, ud);
      buf_reset(&d->line);
    } else {
      rc = process_line(d, p, k, cb, ud);
    }
    p = eol + 1;
    if (*eol == '\r') {
      if (p < end) { if (*p == '\n') p++; }
      else d->last_cr = 1;
    }
    if (rc) return rc;
  }
  return 0;
}

int sse_flush_line(sse_decoder *d, sse_event_fn cb, void *ud) {
  if (!d->line.len) return 0;
  int rc = process_line(d, d->line.data, d->line.len, cb, ud);
  buf_reset(&d->line);
  return rc;
}

int sse_finish(sse_decoder *d, sse_event_fn cb, void *ud) {
  int rc = sse_flush_line(d, cb, ud);
  return rc ? rc : dispatch(d, cb, ud);
}

/* sse_feed()'s void callbacks, behind sse_decode()'s stopping ones. */
struct feed_ctx {
  sse_event_cb cb; /* the caller's callback */
  void *ud;        /* and its argument */
};

static int feed_event(void *ud, const sse_event *ev) {
  struct feed_ctx *f = ud;
  f->cb(f->ud, ev);
  return 0;
}

int sse_feed(sse_decoder *d, const char *p, size_t n, sse_event_cb cb, void *ud) {
  if (d->error) return -1;
  struct feed_ctx f = {cb, ud};
  if (sse_decode(d, p, n, feed_event, &f)) {
    d->error = 1;
    return -1;
  }
  return 0;
}

int sse_frame(buf_t *out, const char *event, const char *data, size_t len) {
  if (event && *event &&
      (BUF_LIT(out, "event: ") || buf_append(out, event, strlen(event)) || BUF_LIT(out, "\n")))
    return -ENOMEM;
  for (;;) { /* a newline inside data would end the data line: split it */
    const char *nl = memchr(data, '\n', len);
    size_t k = nl ? (size_t)(nl - data) : len;
    if (BUF_LIT(out, "data: ") || buf_append(out, data, k) || BUF_LIT(out, "\n")) return -ENOMEM;
    if (!nl) break;
    data += k + 1;
    len -= k + 1;
  }
  return BUF_LIT(out, "\n") ? -ENOMEM : 0;
}
