/* test_anthropic_ingress.c — Anthropic ingress golden vectors and round trip.
 *
 * argv[1] is the vectors directory:
 *   requests/NAME.in.json   Anthropic request bytes (may be malformed on purpose)
 *   requests/NAME.out.json  {"openai": <OpenAI body>, "info": {stream, model, ntools, dropped}}
 *                           | {"error": <exact message>}
 *   responses/NAME.in.json  chat.completion; NAME.out.json {"rc": n, "message": <Anthropic>}
 *   streams/NAME.in.sse     OpenAI SSE bytes; NAME.out.sse the exact Anthropic SSE bytes;
 *   streams/NAME.meta.json  {"rc": "done" | "error" | "garbage"}
 *   errors.json             [[status, OpenAI body or null, Anthropic body], ...]
 *   roundtrip/NAME.json     Anthropic request that must survive ingress → prov_anthropic
 * Every stream is also fed split in two at every byte and one byte at a time; the output
 * must be byte-identical. JSON is compared with json_equal, SSE byte for byte.
 * AI_REGEN=1 rewrites the .out files from the code (then review the diff by hand). */
#include <errno.h>
#include <jansson.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "anthropic_ingress.h"
#include "provider.h"
#include "prov_json.h"
#include "vector_harness.h"

static const char *vec_dir;
static int regen;

/* "sub/NAME+suffix", relative to vec_dir. */
static char *path_of(const char *sub, const char *name, const char *suffix) {
  char *p = NULL;
  assert_true(asprintf(&p, "%s/%s%s", sub, name, suffix) > 0);
  return p;
}

/* ------------------------------------------------------------ requests */

static json_t *run_request_case(const char *name, const char *in, size_t len, void *ctx) {
  (void)ctx;
  buf_t out = {0};
  ai_req_info info;
  char err[256] = "";
  int rc = ai_request_to_openai(in, len, &out, &info, err, sizeof err);
  if (rc != 0 && rc != -EINVAL) fail_msg("%s: rc %d", name, rc);
  json_t *got = rc ? json_pack("{s:s}", "error", err) : json_object();
  if (!rc) {
    vh_check_raw(name, out.data, out.len);
    json_t *body = prov_json_loadb(out.data, out.len, 0, NULL);
    if (!body) fail_msg("%s: output is not JSON", name);
    json_object_set_new(got, "openai", body);
    json_object_set_new(got, "info", json_pack("{s:b,s:s,s:i,s:s}", "stream", info.stream, "model",
                                               info.model, "ntools", info.ntools, "dropped",
                                               info.dropped));
  } else {
    assert_int_equal(out.len, 0);
    /* client-facing: never a URL */
    assert_null(strstr(err, "http"));
  }
  buf_free(&out);
  return got;
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vec_dir, "requests", regen, run_request_case, NULL, NULL) >= 14);
}

/* ------------------------------------------------------------ responses */

static json_t *run_response_case(const char *name, const char *in, size_t len, void *ctx) {
  (void)ctx;
  buf_t out = {0};
  int rc = ai_response_from_openai(in, len, "claude-alias", &out);
  if (rc < 0) fail_msg("%s: ai_response_from_openai %d", name, rc);
  vh_check_raw(name, out.data, out.len);
  json_t *msg = prov_json_loadb(out.data, out.len, 0, NULL);
  if (!msg) fail_msg("%s: output is not JSON: %.*s", name, (int)out.len, out.data);
  buf_free(&out);
  return json_pack("{s:i,s:o}", "rc", rc, "message", msg);
}

static void test_responses(void **st) {
  (void)st;
  assert_true(vh_json_cases(vec_dir, "responses", regen, run_response_case, NULL, NULL) >= 4);
}

static void test_response_garbage(void **st) {
  (void)st;
  static const char *bad[] = {"", "not json", "[]", "{\"object\":\"chat.completion\"}",
                              "{\"choices\":[]}", "{\"choices\":[{\"message\":\"x\"}]}",
                              "{\"error\":{\"message\":\"boom\"}}"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    buf_t out = {0};
    assert_int_equal(ai_response_from_openai(bad[i], strlen(bad[i]), "m", &out), -EINVAL);
    assert_int_equal(out.len, 0);
    buf_free(&out);
  }
}

/* ------------------------------------------------------------ streams */

/* One translator run over a stream (vh_feed_ops). */
typedef struct stream_run {
  ai_stream *s; /* NULL once ended */
  buf_t out;    /* Anthropic SSE written */
  int rc;       /* final result */
} stream_run;

static void *run_new(void *ctx) {
  (void)ctx;
  stream_run *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->rc = AI_MORE;
  r->s = ai_stream_new("claude-alias");
  assert_non_null(r->s);
  return r;
}

static int run_feed(void *p, const char *in, size_t n) {
  stream_run *r = p;
  r->rc = ai_stream_feed(r->s, in, n, &r->out);
  return r->rc == AI_MORE;
}

static void run_end(void *p) {
  stream_run *r = p;
  if (r->rc == AI_MORE) r->rc = ai_stream_end(r->s, &r->out);
  ai_stream_free(r->s);
  r->s = NULL;
}

static void run_free(void *p) {
  stream_run *r = p;
  if (r->s) ai_stream_free(r->s);
  buf_free(&r->out);
  free(r);
}

static int run_same(const void *pa, const void *pb) {
  const stream_run *a = pa, *b = pb;
  return a->rc == b->rc && a->out.len == b->out.len &&
         (!a->out.len || !memcmp(a->out.data, b->out.data, a->out.len));
}

static const vh_feed_ops RUN_OPS = {run_new, run_feed, run_end, run_free, run_same};

static int rc_of(const char *s) {
  if (!strcmp(s, "done")) return AI_DONE;
  if (!strcmp(s, "error")) return AI_ERROR;
  if (!strcmp(s, "garbage")) return AI_GARBAGE;
  fail_msg("bad rc %s", s);
  return 0;
}

/* Structural rules of Anthropic's event order, checked on every golden output. */
static void check_order(const char *name, const buf_t *b, int rc) {
  const char *p = b->data, *end = b->data + b->len;
  int started = 0, open = -1, next = 0, delta = 0, stopped = 0, errored = 0;
  while (p < end) {
    const char *nl = memchr(p, '\n', (size_t)(end - p));
    assert_non_null(nl);
    assert_memory_equal(p, "event: ", 7);
    char ev[32] = "";
    snprintf(ev, sizeof ev, "%.*s", (int)(nl - p - 7), p + 7);
    const char *d = nl + 7, *e = strstr(d, "\n\n");
    assert_non_null(e);
    json_t *j = json_loadb(d, (size_t)(e - d), 0, NULL);
    if (!j) fail_msg("%s: bad data line %.*s", name, (int)(e - d), d);
    if (strcmp(json_string_value(json_object_get(j, "type")), ev)) fail_msg("%s: type != event", name);
    int idx = (int)json_integer_value(json_object_get(j, "index"));
    if (stopped || errored) fail_msg("%s: event %s after the end", name, ev);
    if (!strcmp(ev, "error")) errored = 1;
    else if (!strcmp(ev, "message_start")) { if (started) fail_msg("%s: 2 starts", name); started = 1; }
    else if (!started) fail_msg("%s: %s before message_start", name, ev);
    else if (!strcmp(ev, "content_block_start")) {
      if (open >= 0 || idx != next || delta) fail_msg("%s: bad block start %d", name, idx);
      open = idx; next++;
    } else if (!strcmp(ev, "content_block_delta")) {
      if (idx != open) fail_msg("%s: delta for %d, open %d", name, idx, open);
    } else if (!strcmp(ev, "content_block_stop")) {
      if (idx != open) fail_msg("%s: stop for %d, open %d", name, idx, open);
      open = -1;
    } else if (!strcmp(ev, "message_delta")) {
      if (open >= 0) fail_msg("%s: message_delta with an open block", name);
      delta = 1;
    } else if (!strcmp(ev, "message_stop")) {
      if (!delta) fail_msg("%s: message_stop without message_delta", name);
      stopped = 1;
    } else fail_msg("%s: unknown event %s", name, ev);
    json_decref(j);
    p = e + 2;
  }
  if (rc == AI_DONE && !stopped) fail_msg("%s: done without message_stop", name);
  if (rc < 0 && !errored) fail_msg("%s: failure without an error event", name);
}

static void run_stream_case(const char *name, void *ctx) {
  (void)ctx;
  char *ip = path_of("streams", name, ".in.sse"), *op = path_of("streams", name, ".out.sse");
  char *mp = path_of("streams", name, ".meta.json");
  size_t len, wlen;
  char *in = vh_read_file(vec_dir, ip, &len);
  assert_non_null(in);
  json_t *meta = vh_load_json(vec_dir, mp);
  int want_rc = rc_of(json_string_value(json_object_get(meta, "rc")));
  stream_run *whole = vh_feed_whole(&RUN_OPS, NULL, in, len);
  if (regen) vh_write_file(vec_dir, op, whole->out.data, whole->out.len);
  char *want = vh_read_file(vec_dir, op, &wlen);
  assert_non_null(want);
  vh_assert_bytes_equal(want, wlen, whole->out.data, whole->out.len, name);
  if (whole->rc != want_rc) fail_msg("%s: rc %d, want %d", name, whole->rc, want_rc);
  check_order(name, &whole->out, whole->rc);
  vh_feed_splits(&RUN_OPS, NULL, in, len, whole, name);
  RUN_OPS.free(whole);
  json_decref(meta);
  free(in);
  free(want);
  free(ip);
  free(op);
  free(mp);
}

static void test_streams(void **st) {
  (void)st;
  assert_true(vh_each_case(vec_dir, "streams", ".in.sse", run_stream_case, NULL) >= 8);
}

/* After the terminal event the translator is sticky: later bytes change nothing. */
static void test_stream_sticky(void **st) {
  (void)st;
  static const char s1[] =
      "data: {\"id\":\"c1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"hi\"},"
      "\"finish_reason\":\"stop\"}]}\n\ndata: [DONE]\n\n";
  ai_stream *s = ai_stream_new("m");
  buf_t out = {0};
  assert_int_equal(ai_stream_feed(s, s1, sizeof s1 - 1, &out), AI_DONE);
  size_t n = out.len;
  assert_int_equal(ai_stream_feed(s, s1, sizeof s1 - 1, &out), AI_DONE);
  assert_int_equal(ai_stream_end(s, &out), AI_DONE);
  assert_int_equal(out.len, n);
  ai_stream_free(s);
  /* an error is sticky too, and a cut after it adds nothing */
  static const char s2[] = "data: {\"error\":{\"message\":\"x\"}}\n\ndata: {\"id\":\"c\"}\n\n";
  s = ai_stream_new("m");
  buf_reset(&out);
  assert_int_equal(ai_stream_feed(s, s2, sizeof s2 - 1, &out), AI_ERROR);
  n = out.len;
  assert_int_equal(ai_stream_end(s, &out), AI_ERROR);
  assert_int_equal(out.len, n);
  ai_stream_free(s);
  buf_free(&out);
}

/* An empty upstream (EOF at once) is a cut: an error event, no message_stop. */
static void test_stream_empty(void **st) {
  (void)st;
  ai_stream *s = ai_stream_new("m");
  buf_t out = {0};
  assert_int_equal(ai_stream_end(s, &out), AI_GARBAGE);
  assert_non_null(buf_cstr(&out));
  assert_string_equal(out.data, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":"
                                "\"api_error\",\"message\":\"The upstream stream ended before the "
                                "answer was complete.\"}}\n\n");
  ai_stream_free(s);
  buf_free(&out);
}

/* ------------------------------------------------------------ errors */

static void test_errors(void **st) {
  (void)st;
  json_t *cases = vh_load_json(vec_dir, "errors.json");
  assert_true(json_array_size(cases) >= 12);
  size_t i;
  json_t *cs;
  json_array_foreach(cases, i, cs) {
    int status = (int)json_integer_value(json_array_get(cs, 0));
    json_t *body = json_array_get(cs, 1);
    const char *b = json_is_string(body) ? json_string_value(body) : NULL;
    buf_t out = {0};
    assert_int_equal(ai_error_from_openai(status, b, b ? strlen(b) : 0, &out), 0);
    json_t *got = json_loadb(out.data, out.len, 0, NULL);
    char what[64];
    snprintf(what, sizeof what, "errors.json case %zu (%d)", i, status);
    vh_assert_json_equal(json_array_get(cs, 2), got, what);
    json_decref(got);
    buf_free(&out);
  }
  json_decref(cases);
}

/* ------------------------------------------------------------ round trip */

/* Anthropic's equivalent spellings folded to one: content strings → one text block,
 * system blocks without cache_control → joined string, text-only tool results → string,
 * is_error false dropped. */
static void normalise(json_t *req) {
  json_t *sys = json_object_get(req, "system");
  if (json_is_array(sys)) {
    int cached = 0;
    size_t i;
    json_t *b;
    json_array_foreach(sys, i, b) cached |= json_object_get(b, "cache_control") != NULL;
    if (!cached) {
      buf_t s = {0};
      json_array_foreach(sys, i, b) {
        if (i) assert_int_equal(buf_append(&s, "\n\n", 2), 0);
        const char *t = json_string_value(json_object_get(b, "text"));
        assert_int_equal(buf_append(&s, t, strlen(t)), 0);
      }
      json_object_set_new(req, "system", json_stringn(s.data ? s.data : "", s.len));
      buf_free(&s);
    }
  }
  size_t i;
  json_t *m;
  json_array_foreach(json_object_get(req, "messages"), i, m) {
    json_t *c = json_object_get(m, "content");
    if (json_is_string(c))
      json_object_set_new(m, "content", json_pack("[{s:s,s:O}]", "type", "text", "text", c));
    size_t k;
    json_t *b;
    json_array_foreach(json_object_get(m, "content"), k, b) {
      if (json_is_false(json_object_get(b, "is_error"))) json_object_del(b, "is_error");
      json_t *tc = json_object_get(b, "content");
      if (json_is_array(tc) && json_array_size(tc) == 1 &&
          !strcmp(json_string_value(json_object_get(json_array_get(tc, 0), "type")), "text"))
        json_object_set(b, "content", json_object_get(json_array_get(tc, 0), "text"));
    }
  }
}

static void run_roundtrip_case(const char *name, void *ctx) {
  (void)ctx;
  char *ip = path_of("roundtrip", name, ".json");
  size_t len;
  char *in = vh_read_file(vec_dir, ip, &len);
  buf_t oai = {0};
  ai_req_info info;
  char err[256] = "";
  if (ai_request_to_openai(in, len, &oai, &info, err, sizeof err))
    fail_msg("%s: ingress failed: %s", name, err);
  prov_target t = {.api_base = "https://api.anthropic.com/v1", .api_key = "k",
                   .upstream_model = info.model, .api_version = ""};
  prov_canon c = {.body = oai.data, .len = oai.len, .stream = info.stream,
                  .include_usage = info.stream};
  prov_request r = {0};
  if (prov_anthropic.build_request(&t, &c, &r, err, sizeof err))
    fail_msg("%s: adapter failed: %s", name, err);
  json_t *back = json_loadb(r.body.data, r.body.len, 0, NULL), *orig = json_loadb(in, len, 0, NULL);
  assert_non_null(back);
  assert_non_null(orig);
  normalise(orig);
  normalise(back);
  vh_assert_json_equal(orig, back, name);
  json_decref(back);
  json_decref(orig);
  prov_request_free(&r);
  buf_free(&oai);
  free(in);
  free(ip);
}

static void test_roundtrip(void **st) {
  (void)st;
  assert_true(vh_each_case(vec_dir, "roundtrip", ".json", run_roundtrip_case, NULL) >= 5);
}

int main(int argc, char **argv) {
  vec_dir = argc > 1 ? argv[1] : getenv("INGRESS_VECTORS");
  if (!vec_dir) {
    fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
    return 2;
  }
  regen = vh_regen_enabled("AI_REGEN");
  vh_json_out_flags = JSON_INDENT(2) | JSON_REAL_PRECISION(15);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_response_garbage),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_sticky),
      cmocka_unit_test(test_stream_empty),
      cmocka_unit_test(test_errors),
      cmocka_unit_test(test_roundtrip),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
