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
#include <dirent.h>
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

#define CREATED 1735000000u

void prov_anthropic_set_clock(int64_t now_s); /* test hook in anthropic.c */

static const char *vdir, *gdir, *adir; /* vectors of vertex, gemini, anthropic */
static int regen;

/* ---- files --------------------------------------------------------------------------- */

static char *slurp(const char *dir, const char *rel, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", dir, rel);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  buf_t b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) assert_int_equal(buf_append(&b, tmp, n), 0);
  fclose(f);
  if (len) *len = b.len;
  if (!buf_cstr(&b)) fail();
  return b.data;
}

static void spill(const char *rel, const char *data, size_t len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", vdir, rel);
  FILE *f = fopen(path, "wb");
  assert_non_null(f);
  assert_int_equal(fwrite(data, 1, len, f), len);
  fclose(f);
}

static void spill_json(const char *rel, json_t *j) {
  char *s = json_dumps(j, JSON_INDENT(1) | JSON_ENSURE_ASCII);
  buf_t b = {0};
  buf_printf(&b, "%s\n", s);
  spill(rel, b.data, b.len);
  free(s);
  buf_free(&b);
}

static json_t *load_json(const char *dir, const char *rel) {
  size_t len;
  char *s = slurp(dir, rel, &len);
  if (!s) print_error("missing vector %s/%s\n", dir, rel);
  assert_non_null(s);
  json_t *j = json_loadb(s, len, 0, NULL);
  free(s);
  assert_non_null(j);
  return j;
}

/* Sorted names in dir/sub ending in suffix, suffix stripped; returns the count. */
static int list(const char *dir, const char *sub, const char *suffix, char names[][128], int max) {
  char path[1024];
  struct dirent **ents;
  snprintf(path, sizeof path, "%s/%s", dir, sub);
  int n = scandir(path, &ents, NULL, alphasort), k = 0;
  assert_true(n >= 0);
  for (int i = 0; i < n; i++) {
    size_t l = strlen(ents[i]->d_name), sl = strlen(suffix);
    if (l > sl && !strcmp(ents[i]->d_name + l - sl, suffix) && k < max)
      snprintf(names[k++], 128, "%.*s", (int)(l - sl < 127 ? l - sl : 127), ents[i]->d_name);
    free(ents[i]);
  }
  free(ents);
  return k;
}

static void assert_json_same(json_t *want, json_t *got, const char *what) {
  if (json_equal(want, got)) return;
  char *a = json_dumps(want, JSON_COMPACT), *b = json_dumps(got, JSON_COMPACT);
  print_error("%s:\n want %s\n got  %s\n", what, a, b);
  free(a);
  free(b);
  fail();
}

static void set_clocks(void) {
  prov_gemini_set_clock(CREATED);
  prov_anthropic_set_clock(CREATED);
}

/* ---- requests ------------------------------------------------------------------------ */

static json_t *headers_json(prov_request *r) {
  json_t *a = json_array();
  size_t off = 0;
  for (int i = 0; i < r->nheaders; i++) {
    const char *h = r->headers.data + off;
    json_array_append_new(a, json_string(h));
    off += strlen(h) + 1;
  }
  return a;
}

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
    json_t *want = json_loadb(r.body.data, r.body.len, 0, NULL);
    json_t *got = json_loadb(vx->body.data, vx->body.len, 0, NULL);
    assert_non_null(want);
    assert_string_equal(json_string_value(json_object_get(want, "model")), t->upstream_model);
    json_object_del(want, "model");
    json_object_set_new(want, "anthropic_version",
                        json_string(*t->api_version ? t->api_version : VERTEX_ANTHROPIC_VERSION));
    assert_json_same(want, got, "anthropic body reuse");
    const char *first = "{\"anthropic_version\":";
    assert_memory_equal(vx->body.data, first, strlen(first));
    json_decref(want);
    json_decref(got);
  }
  prov_request_free(&r);
  /* never the direct-API credentials headers */
  json_t *h = headers_json(vx);
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
  char *body = json_is_string(bj) ? strdup(json_string_value(bj)) : json_dumps(bj, JSON_COMPACT);
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
    json_t *body_json = json_loadb(r.body.data, r.body.len, 0, NULL);
    assert_non_null(body_json);
    out = json_pack("{s:s,s:o,s:o}", "url", buf_cstr(&r.url), "headers", headers_json(&r),
                    "body", body_json);
  }
  prov_request_free(&r);
  free(body);
  return out;
}

static void test_requests(void **st) {
  (void)st;
  static char names[64][128];
  int n = list(vdir, "requests", ".in.json", names, 64);
  assert_true(n >= 12);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    snprintf(in, sizeof in, "requests/%.127s.in.json", names[i]);
    snprintf(outp, sizeof outp, "requests/%.127s.out.json", names[i]);
    json_t *vec = load_json(vdir, in);
    json_t *got = run_request(vec);
    if (regen) spill_json(outp, got);
    json_t *want = load_json(vdir, outp);
    assert_json_same(want, got, names[i]);
    assert_int_equal(!strncmp(names[i], "reject_", 7), json_object_get(got, "error") != NULL);
    json_decref(want);
    json_decref(got);
    json_decref(vec);
  }
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

static int usage_eq(const prov_usage *a, const prov_usage *b) {
  return a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
         a->cached_tokens == b->cached_tokens && a->cache_write_tokens == b->cache_write_tokens &&
         a->seen == b->seen;
}

static int decode(const provider_ops *ops, const char *body, size_t len, buf_t *out,
                  prov_usage *u) {
  set_clocks();
  return ops->decode_response(body, len, "my-model", out, u);
}

static void test_responses(void **st) {
  (void)st;
  static char names[16][128];
  int n = list(vdir, "responses", ".in.json", names, 16);
  assert_true(n >= 2);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len;
    snprintf(in, sizeof in, "responses/%.127s.in.json", names[i]);
    snprintf(outp, sizeof outp, "responses/%.127s.out.json", names[i]);
    char *body = slurp(vdir, in, &len);
    buf_t out = {0};
    prov_usage u = {0};
    assert_int_equal(decode(&prov_vertex, body, len, &out, &u), 0);
    assert_true(u.seen);
    json_t *got = json_loadb(out.data, out.len, 0, NULL);
    assert_non_null(got);
    if (regen) spill_json(outp, got);
    json_t *want = load_json(vdir, outp);
    assert_json_same(want, got, names[i]);
    json_decref(want);
    json_decref(got);
    buf_free(&out);
    free(body);
  }
}

/* Every response vector of a family decodes through prov_vertex byte for byte the same. */
static void same_decoding(const char *dir, const provider_ops *family) {
  static char names[64][128];
  int n = list(dir, "responses", ".in.json", names, 64);
  assert_true(n >= 5);
  for (int i = 0; i < n; i++) {
    char in[512];
    size_t len;
    snprintf(in, sizeof in, "responses/%.127s.in.json", names[i]);
    char *body = slurp(dir, in, &len);
    buf_t a = {0}, b = {0};
    prov_usage ua = {0}, ub = {0};
    int ra = decode(family, body, len, &a, &ua), rb = decode(&prov_vertex, body, len, &b, &ub);
    if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len)) ||
        !usage_eq(&ua, &ub)) {
      print_error("%s/%s: prov_vertex decodes differently from %s\n", dir, names[i], family->name);
      fail();
    }
    buf_free(&a);
    buf_free(&b);
    free(body);
  }
}

static void test_responses_delegate(void **st) {
  (void)st;
  same_decoding(gdir, &prov_gemini);
  same_decoding(adir, &prov_anthropic);
}

/* ---- streams ------------------------------------------------------------------------- */

typedef struct run_result {
  buf_t out;      /* canonical bytes */
  int rc;         /* final: PS_DONE / PS_ERROR / PS_GARBAGE */
  prov_error cls; /* from stream_feed */
  prov_usage u;   /* usage as filled */
} run_result;

/* Feeds s[0..n) in pieces of `step` bytes (0 = cut at `at` into two pieces). */
static void run_stream(const provider_ops *ops, const char *s, size_t n, int include_usage,
                       size_t step, size_t at, run_result *r) {
  prov_canon c = {"{}", 2, 1, include_usage};
  memset(r, 0, sizeof *r);
  set_clocks();
  prov_stream *ps = ops->stream_new(&c, "my-model");
  assert_non_null(ps);
  int rc = PS_MORE;
  if (step) {
    for (size_t off = 0; rc == PS_MORE && off < n; off += step)
      rc = ops->stream_feed(ps, s + off, n - off < step ? n - off : step, &r->out, &r->u, &r->cls);
  } else {
    rc = ops->stream_feed(ps, s, at, &r->out, &r->u, &r->cls);
    if (rc == PS_MORE) rc = ops->stream_feed(ps, s + at, n - at, &r->out, &r->u, &r->cls);
  }
  if (rc == PS_MORE) rc = ops->stream_end(ps, &r->out, &r->u);
  r->rc = rc;
  ops->stream_free(ps);
}

static int same_result(const run_result *a, const run_result *b) {
  return a->out.len == b->out.len && (!a->out.len || !memcmp(a->out.data, b->out.data, a->out.len)) &&
         a->rc == b->rc && a->cls == b->cls && usage_eq(&a->u, &b->u);
}

/* prov_vertex on s: whole, split in two at every byte and byte by byte, all identical. */
static void vertex_every_split(const char *s, size_t n, int inc, run_result *whole,
                               const char *name) {
  run_result part;
  run_stream(&prov_vertex, s, n, inc, n ? n : 1, 0, whole);
  for (size_t at = 0; at <= n; at++) {
    run_stream(&prov_vertex, s, n, inc, 0, at, &part);
    if (!same_result(whole, &part)) {
      print_error("%s: split at %zu differs from the whole feed\n", name, at);
      fail();
    }
    buf_free(&part.out);
  }
  run_stream(&prov_vertex, s, n, inc, 1, 0, &part);
  if (!same_result(whole, &part)) {
    print_error("%s: byte-by-byte feed differs from the whole feed\n", name);
    fail();
  }
  buf_free(&part.out);
}

static void test_streams(void **st) {
  (void)st;
  static char names[16][128];
  int n = list(vdir, "streams", ".in.sse", names, 16);
  assert_true(n >= 2);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len, wlen;
    snprintf(in, sizeof in, "streams/%.127s.in.sse", names[i]);
    snprintf(outp, sizeof outp, "streams/%.127s.out.sse", names[i]);
    char *s = slurp(vdir, in, &len);
    run_result whole;
    vertex_every_split(s, len, 1, &whole, names[i]);
    assert_int_equal(whole.rc, PS_DONE);
    assert_true(whole.u.seen);
    if (regen) spill(outp, whole.out.data, whole.out.len);
    char *want = slurp(vdir, outp, &wlen);
    assert_non_null(want);
    if (wlen != whole.out.len || memcmp(want, whole.out.data, wlen)) {
      print_error("%s: output differs\nwant:\n%s\ngot:\n%.*s\n", names[i], want,
                  (int)whole.out.len, whole.out.data);
      fail();
    }
    buf_free(&whole.out);
    free(want);
    free(s);
  }
}

/* Every stream vector of a family (valid, cut, in-band errors, garbage) decodes through
 * prov_vertex as through the family's adapter, at every split. */
static void same_streams(const char *dir, const provider_ops *family) {
  static char names[64][128];
  int n = list(dir, "streams", ".in.sse", names, 64);
  assert_true(n >= 5);
  for (int i = 0; i < n; i++) {
    char in[512];
    size_t len;
    snprintf(in, sizeof in, "streams/%.127s.in.sse", names[i]);
    char *s = slurp(dir, in, &len);
    for (int inc = 0; inc < 2; inc++) {
      run_result want, got;
      run_stream(family, s, len, inc, len ? len : 1, 0, &want);
      vertex_every_split(s, len, inc, &got, names[i]);
      if (!same_result(&want, &got)) {
        print_error("%s/streams/%s (include_usage %d): prov_vertex rc %d, %s rc %d\n", dir,
                    names[i], inc, got.rc, family->name, want.rc);
        fail();
      }
      buf_free(&want.out);
      buf_free(&got.out);
    }
    free(s);
  }
}

static void test_streams_delegate(void **st) {
  (void)st;
  same_streams(gdir, &prov_gemini);
  same_streams(adir, &prov_anthropic);
}

static void test_stream_edges(void **st) {
  (void)st;
  run_result r;
  /* nothing at all: cut */
  run_stream(&prov_vertex, "", 0, 0, 1, 0, &r);
  assert_int_equal(r.rc, PS_GARBAGE);
  buf_free(&r.out);
  /* only comments and blank lines, then EOF */
  const char *c = ": keep-alive\n\n: again\n";
  run_stream(&prov_vertex, c, strlen(c), 0, 1, 0, &r);
  assert_int_equal(r.rc, PS_GARBAGE);
  buf_free(&r.out);
  /* an Anthropic stream that is all one unterminated line at EOF is still Anthropic */
  const char *a = "event: message_start";
  run_stream(&prov_vertex, a, strlen(a), 0, 3, 0, &r);
  assert_int_equal(r.rc, PS_GARBAGE);
  assert_int_equal(r.out.len, 0);
  buf_free(&r.out);
}

/* ---- errors -------------------------------------------------------------------------- */

static prov_error class_named(const char *s) {
  for (int e = 0; e < PE__COUNT; e++)
    if (!strcmp(prov_error_name((prov_error)e), s)) return (prov_error)e;
  fail_msg("unknown class %s", s);
  return PE_NONE;
}

/* Body of an error vector: a string as is, JSON re-serialised, null = none. */
static char *error_body(json_t *b) {
  if (!b || json_is_null(b)) return NULL;
  return json_is_string(b) ? strdup(json_string_value(b)) : json_dumps(b, JSON_COMPACT);
}

static void test_errors(void **st) {
  (void)st;
  json_t *cases = load_json(vdir, "errors.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= 8);
  json_array_foreach(cases, i, cs) {
    char *body = error_body(json_object_get(cs, "body"));
    uint64_t retry = UINT64_MAX;
    prov_error e = prov_vertex.classify_error((int)json_integer_value(json_object_get(cs, "status")),
                                              body, body ? strlen(body) : 0, &retry);
    const char *want = json_string_value(json_object_get(cs, "class"));
    if (e != class_named(want)) fail_msg("errors.json[%zu]: %s, want %s", i, prov_error_name(e), want);
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
  json_t *g = load_json(gdir, "errors.json"), *a = load_json(adir, "classify.json"), *cs;
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
  regen = getenv("VERTEX_REGEN") && *getenv("VERTEX_REGEN") == '1';
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),         cmocka_unit_test(test_requests),
      cmocka_unit_test(test_responses),        cmocka_unit_test(test_responses_delegate),
      cmocka_unit_test(test_streams),          cmocka_unit_test(test_streams_delegate),
      cmocka_unit_test(test_stream_edges),     cmocka_unit_test(test_errors),
      cmocka_unit_test(test_errors_delegate),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
