/* test_vertex.c — the Vertex AI adapter (prov_vertex). argv: vectors/vertex, vectors/gemini,
 * vectors/anthropic.
 *   vertex/requests/NAME.in.json  {"target":{...prov_target fields},"body":{canonical}} →
 *                                 NAME.out.json {"url","headers","body"} or {"error"}; every
 *                                 accepted body is also checked against the family adapter's
 *                                 own (byte for byte for Gemini; for Claude minus "model",
 *                                 plus "anthropic_version" first)
 *   vertex/responses/NAME.in.json whole answers → NAME.out.json (smoke: decoding delegates)
 *   vertex/streams/NAME.in.sse    → NAME.out.sse, include_usage on, every split
 *   vertex/errors.json            classify_error table (both error dialects on Vertex)
 * Delegation is checked wholesale: every response and stream vector of the Gemini and
 * Anthropic adapters decodes through prov_vertex exactly as through its own adapter, and
 * every Gemini error vector / Anthropic-shaped Anthropic error vector classifies the same.
 * VERTEX_REGEN=1 rewrites the vertex .out files (review the diff before keeping). */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>
#include <jansson.h>

#include "gemini.h"
#include "vertex.h"
#include "prov_json.h"
#include "vector_harness.h"

#define CREATED 1735000000u

void prov_anthropic_set_clock(int64_t now_s); /* test hook in anthropic.c */

static const char *vdir, *gdir, *adir; /* vectors of vertex, gemini, anthropic */
static int regen;

static void set_clocks(void) {
  prov_gemini_set_clock(CREATED);
  prov_anthropic_set_clock(CREATED);
}

/* ---- requests ------------------------------------------------------------------------ */

static const char *tstr(json_t *t, const char *k) {
  const char *s = json_string_value(json_object_get(t, k));
  return s ? s : "";
}

/* The family adapter's own body for the same request, as Vertex must send it. */
static void check_reuse(const prov_target *t, const prov_canon *c, prov_request *vx) {
  vertex_family fam = vertex_family_of(t->upstream_model);
  prov_target inner = {.api_base = "https://example.invalid/v1", .api_key = "",
                       .upstream_model = t->upstream_model, .api_version = ""};
  prov_request r = {0};
  char err[256];
  assert_int_equal(vertex_family_ops(fam)->build_request(&inner, c, &r, err, sizeof err), 0);
  if (fam == VERTEX_GEMINI) {
    assert_int_equal(r.body.len, vx->body.len);
    assert_memory_equal(r.body.data, vx->body.data, r.body.len);
  } else {
    /* byte for byte: the family's body with "model" replaced by anthropic_version in front
     * (never re-dumped, so spliced tool arguments and reals stay as the client wrote them) */
    buf_t want = {0}, head = {0};
    const char *ver = *t->api_version ? t->api_version : VERTEX_ANTHROPIC_VERSION;
    assert_int_equal(BUF_LIT(&head, "{\"model\":") ||
                     buf_json_quote(&head, t->upstream_model, strlen(t->upstream_model)) ||
                     BUF_LIT(&head, ","), 0);
    assert_true(r.body.len > head.len && !memcmp(r.body.data, head.data, head.len));
    assert_int_equal(BUF_LIT(&want, "{\"anthropic_version\":") ||
                     buf_json_quote(&want, ver, strlen(ver)) || BUF_LIT(&want, ",") ||
                     buf_append(&want, r.body.data + head.len, r.body.len - head.len), 0);
    vh_assert_bytes_equal(want.data, want.len, vx->body.data, vx->body.len, "anthropic body reuse");
    buf_free(&want);
    buf_free(&head);
  }
  prov_request_free(&r);
  /* never the direct-API credentials headers */
  json_t *h = vh_prov_headers_json(vx);
  size_t i;
  json_t *v;
  json_array_foreach(h, i, v) {
    const char *s = json_string_value(v);
    assert_true(strncmp(s, "x-goog-api-key", 14) && strncmp(s, "x-api-key", 9) &&
                strncmp(s, "anthropic-version", 17));
  }
  json_decref(h);
}

static json_t *run_request(json_t *vec) {
  json_t *tj = json_object_get(vec, "target");
  prov_target t = {.api_base = tstr(tj, "api_base"), .api_key = tstr(tj, "api_key"),
                   .upstream_model = tstr(tj, "upstream_model"),
                   .api_version = tstr(tj, "api_version"), .gcp_project = tstr(tj, "gcp_project"),
                   .gcp_location = tstr(tj, "gcp_location"),
                   .access_token = tstr(tj, "access_token")};
  json_t *bj = json_object_get(vec, "body");
  char *body = json_is_string(bj) ? strdup(json_string_value(bj)) : prov_json_dumps(bj, JSON_COMPACT);
  prov_canon c = {body, strlen(body), json_is_true(json_object_get(bj, "stream")),
                  json_is_true(json_object_get(json_object_get(bj, "stream_options"),
                                               "include_usage"))};
  prov_request r = {0};
  char err[256] = "";
  json_t *out;
  int rc = prov_vertex.build_request(&t, &c, &r, err, sizeof err);
  if (rc) {
    assert_int_equal(rc, -EINVAL);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "googleapis"));
    assert_null(strstr(err, "127.0.0.1"));
    if (*t.access_token) assert_null(strstr(err, t.access_token));
    assert_int_equal(r.body.len, 0);
    assert_int_equal(r.url.len, 0);
    out = json_pack("{s:s}", "error", err);
  } else {
    check_reuse(&t, &c, &r);
    vh_check_raw("request body", r.body.data, r.body.len);
    json_t *body_json = prov_json_loadb(r.body.data, r.body.len, 0, NULL);
    assert_non_null(body_json);
    out = json_pack("{s:s,s:o,s:o}", "url", buf_cstr(&r.url), "headers", vh_prov_headers_json(&r),
                    "body", body_json);
  }
  prov_request_free(&r);
  free(body);
  return out;
}

static json_t *request_case(const char *name, const char *in, size_t len, void *ctx) {
  (void)ctx;
  json_t *vec = prov_json_loadb(in, len, 0, NULL);
  if (!vec) fail_msg("%s: vector is not JSON", name);
  json_t *got = run_request(vec);
  json_decref(vec);
  return got;
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vdir, "requests", regen, request_case, vh_prov_reject_named, NULL) >= 12);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("vertex_ai"), &prov_vertex);
  assert_int_equal(vertex_family_of("claude-sonnet-4-5@20250929"), VERTEX_ANTHROPIC);
  assert_int_equal(vertex_family_of("gemini-2.5-pro"), VERTEX_GEMINI);
  assert_int_equal(vertex_family_of(NULL), VERTEX_GEMINI);
  assert_null(prov_vertex.build_embeddings); /* Vertex embeddings are :predict: not done */
}

/* ---- responses ----------------------------------------------------------------------- */

static int decode(const provider_ops *ops, const char *body, size_t len, buf_t *out,
                  prov_usage *u) {
  set_clocks();
  return ops->decode_response(body, len, "my-model", out, u);
}

static json_t *response_case(const char *name, const char *body, size_t len, void *ctx) {
  (void)ctx;
  buf_t out = {0};
  prov_usage u = {0};
  assert_int_equal(decode(&prov_vertex, body, len, &out, &u), 0);
  assert_true(u.seen);
  vh_check_raw(name, out.data, out.len);
  json_t *got = prov_json_loadb(out.data, out.len, 0, NULL);
  if (!got) fail_msg("%s: output is not JSON", name);
  buf_free(&out);
  return got;
}

static void test_responses(void **st) {
  (void)st;
  assert_true(vh_json_cases(vdir, "responses", regen, response_case, NULL, NULL) >= 2);
}

/* Every response vector of a family decodes through prov_vertex byte for byte the same. */
static void same_decoding(const char *dir, const provider_ops *family) {
  char **names;
  int n = (int)vh_list_cases(dir, "responses", ".in.json", &names);
  assert_true(n >= 5);
  for (int i = 0; i < n; i++) {
    char in[512];
    size_t len;
    snprintf(in, sizeof in, "responses/%.127s.in.json", names[i]);
    char *body = vh_read_file(dir, in, &len);
    buf_t a = {0}, b = {0};
    prov_usage ua = {0}, ub = {0};
    int ra = decode(family, body, len, &a, &ua), rb = decode(&prov_vertex, body, len, &b, &ub);
    if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)) ||
        !vh_prov_usage_equal(&ua, &ub)) {
      print_error("%s/%s: prov_vertex decodes differently from %s\n", dir, names[i], family->name);
      fail();
    }
    buf_free(&a);
    buf_free(&b);
    free(body);
  }
  vh_free_names(names, (size_t)n);
}

static void test_responses_delegate(void **st) {
  (void)st;
  same_decoding(gdir, &prov_gemini);
  same_decoding(adir, &prov_anthropic);
}

/* ---- streams ------------------------------------------------------------------------- */

/* A finished run of s through ops (all the adapters' clocks pinned, "my-model"). */
static vh_prov_run *run_stream(const provider_ops *ops, const char *s, size_t n, int include_usage,
                               size_t step) {
  const vh_prov_ctx ctx = {.ops = ops, .model = "my-model", .include_usage = include_usage,
                           .before = set_clocks};
  return step ? vh_feed_steps(&vh_prov_feed, (void *)&ctx, s, n, step)
              : vh_feed_whole(&vh_prov_feed, (void *)&ctx, s, n);
}

/* prov_vertex on s: whole, split in two at every byte and byte by byte, all identical. */
static vh_prov_run *vertex_every_split(const char *s, size_t n, int inc, const char *name) {
  const vh_prov_ctx ctx = {.ops = &prov_vertex, .model = "my-model", .include_usage = inc,
                           .before = set_clocks};
  vh_prov_run *whole = vh_feed_whole(&vh_prov_feed, (void *)&ctx, s, n);
  vh_feed_splits(&vh_prov_feed, (void *)&ctx, s, n, whole, name);
  return whole;
}

static void test_streams(void **st) {
  (void)st;
  char **names;
  int n = (int)vh_list_cases(vdir, "streams", ".in.sse", &names);
  assert_true(n >= 2);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len, wlen;
    snprintf(in, sizeof in, "streams/%.127s.in.sse", names[i]);
    snprintf(outp, sizeof outp, "streams/%.127s.out.sse", names[i]);
    char *s = vh_read_file(vdir, in, &len);
    assert_non_null(s);
    vh_prov_run *whole = vertex_every_split(s, len, 1, names[i]);
    assert_int_equal(whole->rc, PS_DONE);
    assert_true(whole->u.seen);
    if (regen) vh_write_file(vdir, outp, whole->out.data, whole->out.len);
    char *want = vh_read_file(vdir, outp, &wlen);
    assert_non_null(want);
    vh_assert_bytes_equal(want, wlen, whole->out.data, whole->out.len, names[i]);
    vh_prov_feed.free(whole);
    free(want);
    free(s);
  }
  vh_free_names(names, (size_t)n);
}

/* Every stream vector of a family (valid, cut, in-band errors, garbage) decodes through
 * prov_vertex as through the family's adapter, at every split. */
static void same_streams(const char *dir, const provider_ops *family) {
  char **names;
  int n = (int)vh_list_cases(dir, "streams", ".in.sse", &names);
  assert_true(n >= 5);
  for (int i = 0; i < n; i++) {
    char in[512];
    size_t len;
    snprintf(in, sizeof in, "streams/%.127s.in.sse", names[i]);
    char *s = vh_read_file(dir, in, &len);
    for (int inc = 0; inc < 2; inc++) {
      vh_prov_run *want = run_stream(family, s, len, inc, 0);
      vh_prov_run *got = vertex_every_split(s, len, inc, names[i]);
      if (!vh_prov_feed.same(want, got)) {
        print_error("%s/streams/%s (include_usage %d): prov_vertex rc %d, %s rc %d\n", dir,
                    names[i], inc, got->rc, family->name, want->rc);
        fail();
      }
      vh_prov_feed.free(want);
      vh_prov_feed.free(got);
    }
    free(s);
  }
  vh_free_names(names, (size_t)n);
}

static void test_streams_delegate(void **st) {
  (void)st;
  same_streams(gdir, &prov_gemini);
  same_streams(adir, &prov_anthropic);
}

static void test_stream_edges(void **st) {
  (void)st;
  vh_prov_run *r;
  /* nothing at all: cut */
  r = run_stream(&prov_vertex, "", 0, 0, 1);
  assert_int_equal(r->rc, PS_GARBAGE);
  vh_prov_feed.free(r);
  /* only comments and blank lines, then EOF */
  const char *c = ": keep-alive\n\n: again\n";
  r = run_stream(&prov_vertex, c, strlen(c), 0, 1);
  assert_int_equal(r->rc, PS_GARBAGE);
  vh_prov_feed.free(r);
  /* an Anthropic stream that is all one unterminated line at EOF is still Anthropic */
  const char *a = "event: message_start";
  r = run_stream(&prov_vertex, a, strlen(a), 0, 3);
  assert_int_equal(r->rc, PS_GARBAGE);
  assert_int_equal(r->out.len, 0);
  vh_prov_feed.free(r);
}

/* ---- errors -------------------------------------------------------------------------- */

/* Body of an error vector: a string as is, JSON re-serialised, null = none. */
static char *error_body(json_t *b) {
  if (!b || json_is_null(b)) return NULL;
  return json_is_string(b) ? strdup(json_string_value(b)) : json_dumps(b, JSON_COMPACT);
}

static void test_errors(void **st) {
  (void)st;
  json_t *cases = vh_load_json(vdir, "errors.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= 8);
  json_array_foreach(cases, i, cs) {
    char *body = error_body(json_object_get(cs, "body"));
    uint64_t retry = UINT64_MAX;
    prov_error e = prov_vertex.classify_error((int)json_integer_value(json_object_get(cs, "status")),
                                              body, body ? strlen(body) : 0, &retry);
    const char *want = json_string_value(json_object_get(cs, "class"));
    if (e != vh_prov_class_named(want)) fail_msg("errors.json[%zu]: %s, want %s", i, prov_error_name(e), want);
    json_t *ra = json_object_get(cs, "retry_after_ms");
    assert_int_equal(retry, ra ? (uint64_t)json_integer_value(ra) : UINT64_MAX);
    free(body);
  }
  json_decref(cases);
}

/* Gemini's table whole; Anthropic's entries whose body is an Anthropic error object (a bare
 * or HTML body cannot tell the family and is classified as google.rpc.Status). */
static void test_errors_delegate(void **st) {
  (void)st;
  json_t *g = vh_load_json(gdir, "errors.json"), *a = vh_load_json(adir, "classify.json"), *cs;
  size_t i, checked = 0;
  json_array_foreach(g, i, cs) {
    char *body = error_body(json_object_get(cs, "body"));
    int status = (int)json_integer_value(json_object_get(cs, "status"));
    uint64_t r1 = 7, r2 = 7;
    assert_int_equal(prov_vertex.classify_error(status, body, body ? strlen(body) : 0, &r1),
                     prov_gemini.classify_error(status, body, body ? strlen(body) : 0, &r2));
    assert_int_equal(r1, r2);
    free(body);
  }
  json_array_foreach(a, i, cs) {
    int status = (int)json_integer_value(json_array_get(cs, 0));
    const char *body = json_string_value(json_array_get(cs, 1));
    json_t *doc = body ? json_loads(body, 0, NULL) : NULL;
    int anth = json_is_string(json_object_get(json_object_get(doc, "error"), "type"));
    json_decref(doc);
    if (!anth) continue;
    uint64_t r1 = 7, r2 = 7;
    assert_int_equal(prov_vertex.classify_error(status, body, strlen(body), &r1),
                     prov_anthropic.classify_error(status, body, strlen(body), &r2));
    assert_int_equal(r1, r2);
    checked++;
  }
  assert_true(checked >= 5);
  json_decref(g);
  json_decref(a);
}

int main(int argc, char **argv) {
  if (argc < 4) {
    fprintf(stderr, "usage: %s VERTEX_VECTORS GEMINI_VECTORS ANTHROPIC_VECTORS\n", argv[0]);
    return 2;
  }
  vdir = argv[1];
  gdir = argv[2];
  adir = argv[3];
  regen = vh_regen_enabled("VERTEX_REGEN");
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),         cmocka_unit_test(test_requests),
      cmocka_unit_test(test_responses),        cmocka_unit_test(test_responses_delegate),
      cmocka_unit_test(test_streams),          cmocka_unit_test(test_streams_delegate),
      cmocka_unit_test(test_stream_edges),     cmocka_unit_test(test_errors),
      cmocka_unit_test(test_errors_delegate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
