/* fuzz_midstream.c — libFuzzer target for mid-stream continuation. The input is an SSE
 * stream: events named "c" are the continuation (spliced), "b" events are tried as request
 * bodies, all others were relayed to the client (tracked). Checks: a built request is valid
 * JSON carrying the delivered text; every spliced chunk is still valid JSON; the output does
 * not depend on where the bytes were split. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "json_span.h"
#include "midstream.h"
#include "sse_decoder.h"

static const char BODY[] =
    "{\"model\":\"m\",\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"q\"}]}],"
    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

typedef struct run {
  midstream_tracker t;
  midstream_splicer s;
  int splicing;  /* the continuation started */
  int prefill;   /* variant of the continuation request */
  buf_t body;    /* a built request */
  buf_t out;     /* everything the splicer wrote */
} run;

static void check_json(const char *p, size_t n) {
  json_span all;
  if (json_span_whole(p, n, &all)) abort();
}

/* A request built from t must be JSON and carry the text (minus a prefill's cut). */
static void check_request(run *r, const char *body, size_t n) {
  size_t have = r->t.text.len;
  const char *text = r->t.text.data;
  int rc = midstream_build_request(body, n, &r->t, r->prefill, &r->body);
  if (rc) return;
  check_json(r->body.data, r->body.len);
  if (r->t.ws_cut > have) abort();
  size_t keep = have - r->t.ws_cut;
  if (keep && r->body.len == n) abort();
  if (!keep) return;
  buf_t q = {0};
  if (buf_json_quote(&q, text, keep) == 0 && !memmem(r->body.data, r->body.len, q.data, q.len))
    abort();
  buf_free(&q);
}

static void on_event(void *ud, const sse_event *ev) {
  run *r = ud;
  if (strcmp(ev->event, "b") == 0) {
    check_request(r, ev->data, ev->data_len);
    return;
  }
  if (strcmp(ev->event, "c") != 0) {
    if (!r->splicing) midstream_track(&r->t, ev->data, ev->data_len);
    return;
  }
  if (!r->splicing) {
    check_request(r, BODY, sizeof BODY - 1);
    if (midstream_splice_init(&r->s, &r->t, midstream_delivered_tokens(&r->t))) abort();
    r->splicing = 1;
  }
  size_t before = r->out.len;
  int rc = midstream_splice(&r->s, ev->event, ev->data, ev->data_len, &r->out);
  if (rc == MIDSTREAM_EV_CHUNK || rc == MIDSTREAM_EV_ERROR) {
    /* the written event, decoded again, is one valid JSON object */
    buf_t data = {0};
    const char *p = r->out.data + before, *end = r->out.data + r->out.len;
    while (p < end) {
      const char *nl = memchr(p, '\n', (size_t)(end - p));
      if (!nl) abort();
      if (nl - p > 6 && memcmp(p, "data: ", 6) == 0) {
        if (data.len) buf_append(&data, "\n", 1);
        buf_append(&data, p + 6, (size_t)(nl - p - 6));
      }
      p = nl + 1;
    }
    check_json(data.data, data.len);
    buf_free(&data);
  } else if (rc < 0 && r->out.len != before) {
    abort();
  }
}

static void go(run *r, const uint8_t *in, size_t n, size_t cut) {
  sse_decoder d;
  memset(r, 0, sizeof *r);
  midstream_tracker_init(&r->t);
  r->prefill = n && (in[0] & 1);
  sse_init_opts(&d, 1u << 20, 0);
  if (sse_feed(&d, (const char *)in, cut, on_event, r) == 0)
    sse_feed(&d, (const char *)in + cut, n - cut, on_event, r);
  sse_free(&d);
}

static void done(run *r) {
  if (r->splicing) midstream_splice_free(&r->s);
  midstream_tracker_free(&r->t);
  buf_free(&r->body);
  buf_free(&r->out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static run a, b;
  size_t cut = size ? (size_t)data[size - 1] * 7 % (size + 1) : 0;
  go(&a, data, size, size);
  go(&b, data, size, cut);
  if (a.out.len != b.out.len || (a.out.len && memcmp(a.out.data, b.out.data, a.out.len))) abort();
  if (a.t.continuable != b.t.continuable || a.t.text.len != b.t.text.len) abort();
  done(&a);
  done(&b);
  return 0;
}
