/* test_bedrock.c — golden vectors for the Bedrock adapter (vectors/bedrock/, argv[1]):
 *   requests/NAME.in.json   canonical request, or {"target":{overrides},"request":...} →
 *                           NAME.out.json {"url","headers","body","body_sha256"} (headers incl.
 *                           the SigV4 Authorization for the pinned clock 20150830T123600Z and
 *                           the AWS example credentials) or {"error": exact client message}
 *   responses/NAME.in.json  Converse response → NAME.out.json chat.completion (json_equal) or
 *                           {"garbage": true}; usage checked against its "usage"
 *   streams/cases.json      NAME.in.bin (binary event-stream frames from make_frames.py) →
 *                           NAME.out.sse byte for byte, fed whole, split in two at every byte
 *                           and one byte at a time; final rc, class, usage
 *   errors.json             classify_error table
 * check_sigv4.py recomputes the request vectors' signatures independently (own meson test).
 * BEDROCK_REGEN=1 rewrites the .out files from the adapter (review the diff before keeping). */
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

#include "bedrock.h"
#include "sigv4.h"

#define CLOCK 1440938160u /* 20150830T123600Z, the AWS SigV4 test-suite date */

static const char *vdir;
static int regen;

static const prov_target TARGET = {
    .api_base = "",
    .api_key = "",
    .upstream_model = "anthropic.claude-3-5-sonnet-20240620-v1:0",
    .api_version = "",
    .aws_access_key_id = "AKIDEXAMPLE",
    .aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
    .aws_session_token = "",
    .aws_region = "us-east-1",
};

/* ---- files --------------------------------------------------------------------------- */

static char *slurp(const char *rel, size_t *len) {
  char path[1024];
  snprintf(path, sizeof path, "%s/%s", vdir, rel);
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

static json_t *load_json(const char *rel) {
  size_t len;
  char *s = slurp(rel, &len);
  if (!s) print_error("missing vector %s\n", rel);
  assert_non_null(s);
  json_t *j = json_loadb(s, len, 0, NULL);
  free(s);
  assert_non_null(j);
  return j;
}

static int list(const char *dir, const char *suffix, char names[][128], int max) {
  char path[1024];
  struct dirent **ents;
  snprintf(path, sizeof path, "%s/%s", vdir, dir);
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

static void canon_of(const char *body, size_t len, prov_canon *c) {
  json_t *j = json_loadb(body, len, 0, NULL);
  c->body = body;
  c->len = len;
  c->stream = json_is_true(json_object_get(j, "stream"));
  c->include_usage = json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage"));
  json_decref(j);
}

/* Neither the AWS secret nor (unless key_ok: the Bearer header) the API key shows in s. */
static void no_secret(const char *s, const prov_target *t, int key_ok) {
  if (t->aws_secret_access_key && *t->aws_secret_access_key)
    assert_null(strstr(s, t->aws_secret_access_key));
  if (!key_ok && *t->api_key) assert_null(strstr(s, t->api_key));
}

static json_t *run_request(const prov_target *t, const char *body, size_t len) {
  prov_canon c;
  prov_request r = {0};
  char err[256] = "";
  canon_of(body, len, &c);
  prov_bedrock_set_clock(CLOCK);
  int rc = prov_bedrock.build_request(t, &c, &r, err, sizeof err);
  if (rc) {
    assert_int_equal(rc, -EINVAL);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, "amazonaws"));
    assert_null(strstr(err, "127.0.0.1"));
    no_secret(err, t, 0);
    assert_int_equal(r.body.len, 0);
    return json_pack("{s:s}", "error", err);
  }
  no_secret(buf_cstr(&r.url), t, 0);
  json_t *hs = headers_json(&r), *h;
  size_t i;
  json_array_foreach(hs, i, h)
      no_secret(json_string_value(h), t, !strncmp(json_string_value(h), "authorization: Bearer ", 22));
  char hash[65];
  assert_int_equal(sigv4_sha256_hex(r.body.data, r.body.len, hash), 0);
  json_t *body_json = json_loadb(r.body.data, r.body.len, 0, NULL);
  assert_non_null(body_json);
  json_t *out = json_pack("{s:s,s:o,s:o,s:s}", "url", buf_cstr(&r.url), "headers", hs, "body",
                          body_json, "body_sha256", hash);
  prov_request_free(&r);
  return out;
}

static const char *tstr(json_t *o, const char *k, const char *dflt) {
  json_t *v = json_object_get(o, k);
  return json_is_string(v) ? json_string_value(v) : dflt;
}

static void test_requests(void **st) {
  (void)st;
  static char names[128][128];
  int n = list("requests", ".in.json", names, 128);
  assert_true(n >= 30);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len;
    snprintf(in, sizeof in, "requests/%.127s.in.json", names[i]);
    snprintf(outp, sizeof outp, "requests/%.127s.out.json", names[i]);
    char *body = slurp(in, &len);
    assert_non_null(body);
    json_t *doc = json_loadb(body, len, 0, NULL), *tg = json_object_get(doc, "target");
    prov_target t = TARGET;
    char *req = NULL;
    if (json_is_object(tg) && json_object_get(doc, "request")) {
      t.api_base = tstr(tg, "api_base", t.api_base);
      t.api_key = tstr(tg, "api_key", t.api_key);
      t.upstream_model = tstr(tg, "upstream_model", t.upstream_model);
      t.aws_access_key_id = tstr(tg, "aws_access_key_id", t.aws_access_key_id);
      t.aws_secret_access_key = tstr(tg, "aws_secret_access_key", t.aws_secret_access_key);
      t.aws_session_token = tstr(tg, "aws_session_token", t.aws_session_token);
      t.aws_region = tstr(tg, "aws_region", t.aws_region);
      req = json_dumps(json_object_get(doc, "request"), JSON_COMPACT);
    }
    json_t *got = req ? run_request(&t, req, strlen(req)) : run_request(&t, body, len);
    if (regen) spill_json(outp, got);
    json_t *want = load_json(outp);
    assert_json_same(want, got, names[i]);
    assert_int_equal(!strncmp(names[i], "reject_", 7), json_object_get(got, "error") != NULL);
    json_decref(want);
    json_decref(got);
    json_decref(doc);
    free(req);
    free(body);
  }
}

/* The target alone: URLs, auth variants, bad deployments. */
static void test_request_targets(void **st) {
  (void)st;
  static const struct {
    const char *base, *model, *akid, *secret, *region, *key;
    int stream;
    const char *url; /* NULL = rejected */
    int nheaders;
  } cases[] = {
      {"", "amazon.nova-pro-v1:0", "AKID", "s", "eu-west-3", "", 0,
       "https://bedrock-runtime.eu-west-3.amazonaws.com/model/amazon.nova-pro-v1%3A0/converse", 4},
      {"", "us.anthropic.claude-sonnet-4-20250514-v1:0", "AKID", "s", "us-west-2", "", 1,
       "https://bedrock-runtime.us-west-2.amazonaws.com/model/"
       "us.anthropic.claude-sonnet-4-20250514-v1%3A0/converse-stream", 4},
      {"", "arn:aws:bedrock:us-east-1:123456789012:inference-profile/x", "AKID", "s", "us-east-1", "",
       0, "https://bedrock-runtime.us-east-1.amazonaws.com/model/"
       "arn%3Aaws%3Abedrock%3Aus-east-1%3A123456789012%3Ainference-profile%2Fx/converse", 4},
      {"http://127.0.0.1:9000/", "m", "AKID", "s", "us-east-1", "", 0,
       "http://127.0.0.1:9000/model/m/converse", 4},
      {"HTTP://Mock.Local:8080/bedrock//", "m", "AKID", "s", "us-east-1", "", 1,
       "HTTP://mock.local:8080/bedrock/model/m/converse-stream", 4},
      {"", "m", "", "", "us-east-1", "bedrock-api-key-abc", 0,
       "https://bedrock-runtime.us-east-1.amazonaws.com/model/m/converse", 2},
      {"http://127.0.0.1:9000", "m", "", "", "", "", 0, "http://127.0.0.1:9000/model/m/converse", 1},
      {"", "m", "AKID", "s", "", "", 0, NULL, 0},
      {"", "m", "AKID", "s", "US-EAST-1", "", 0, NULL, 0},
      {"", "m", "", "", "us-east-1.evil.com/x", "k", 0, NULL, 0},
      {"http://127.0.0.1:9000", "m", "AKID", "s", "", "", 0, NULL, 0},
      {"http://127.0.0.1:9000", "m", "AKID", "", "us-east-1", "", 0, NULL, 0},
      {"127.0.0.1:9000", "m", "", "", "", "k", 0, NULL, 0},
      {"https://", "m", "", "", "", "k", 0, NULL, 0},
      {"https://user@host", "m", "", "", "", "k", 0, NULL, 0},
      {"https://host/x?y", "m", "", "", "", "k", 0, NULL, 0},
      {"", "", "AKID", "s", "us-east-1", "", 0, NULL, 0},
      {"", "a b", "AKID", "s", "us-east-1", "", 0, NULL, 0},
      {"", "m", "", "", "us-east-1", "bad\r\nx-injected: 1", 0, NULL, 0},
      {"", "m", "AK\nID", "s", "us-east-1", "", 0, NULL, 0},
  };
  const char *body = "{\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]}";
  for (size_t i = 0; i < ARRAY_SIZE(cases); i++) {
    prov_target t = {.api_base = cases[i].base, .api_key = cases[i].key,
                     .upstream_model = cases[i].model, .api_version = "",
                     .aws_access_key_id = cases[i].akid, .aws_secret_access_key = cases[i].secret,
                     .aws_session_token = "", .aws_region = cases[i].region};
    prov_canon c = {body, strlen(body), cases[i].stream, 0};
    prov_request r = {0};
    char err[256] = "";
    int rc = prov_bedrock.build_request(&t, &c, &r, err, sizeof err);
    if (!cases[i].url) {
      if (rc != -EINVAL) fail_msg("target case %zu accepted", i);
      assert_null(strstr(err, "127.0.0.1"));
      assert_null(strstr(err, "host"));
      assert_int_equal(r.url.len + r.headers.len + r.body.len, 0);
      continue;
    }
    if (rc) fail_msg("target case %zu: %s", i, err);
    assert_string_equal(buf_cstr(&r.url), cases[i].url);
    if (r.nheaders != cases[i].nheaders) fail_msg("target case %zu: %d headers", i, r.nheaders);
    prov_request_free(&r);
  }
  /* NULL aws fields (a caller that predates them) behave like "" */
  prov_target t = {.api_base = "", .api_key = "key", .upstream_model = "m", .aws_region = "us-east-1"};
  prov_canon c = {body, strlen(body), 0, 0};
  prov_request r = {0};
  char err[256];
  assert_int_equal(prov_bedrock.build_request(&t, &c, &r, err, sizeof err), 0);
  assert_non_null(memmem(r.headers.data, r.headers.len, "authorization: Bearer key", 25));
  prov_request_free(&r);
}

/* ---- responses ----------------------------------------------------------------------- */

static void test_responses(void **st) {
  (void)st;
  static char names[64][128];
  int n = list("responses", ".in.json", names, 64);
  assert_true(n >= 10);
  for (int i = 0; i < n; i++) {
    char in[512], outp[512];
    size_t len;
    snprintf(in, sizeof in, "responses/%.127s.in.json", names[i]);
    snprintf(outp, sizeof outp, "responses/%.127s.out.json", names[i]);
    char *body = slurp(in, &len);
    buf_t out = {0};
    prov_usage u = {0};
    prov_bedrock_set_clock(CLOCK);
    int rc = prov_bedrock.decode_response(body, len, "my-bedrock", &out, &u);
    json_t *got = rc == 0 ? json_loadb(out.data, out.len, 0, NULL) : json_pack("{s:b}", "garbage", 1);
    assert_non_null(got);
    if (rc) assert_int_equal(rc, PS_GARBAGE);
    if (rc) assert_int_equal(out.len, 0);
    if (regen) spill_json(outp, got);
    json_t *want = load_json(outp);
    assert_json_same(want, got, names[i]);
    json_t *wu = json_object_get(want, "usage");
    assert_int_equal(u.seen, wu != NULL);
    if (wu) {
      assert_int_equal(u.prompt_tokens, json_integer_value(json_object_get(wu, "prompt_tokens")));
      assert_int_equal(u.completion_tokens, json_integer_value(json_object_get(wu, "completion_tokens")));
      assert_int_equal(u.cached_tokens, json_integer_value(json_object_get(
                                            json_object_get(wu, "prompt_tokens_details"), "cached_tokens")));
    }
    json_decref(want);
    json_decref(got);
    buf_free(&out);
    free(body);
  }
}

/* ---- streams ------------------------------------------------------------------------- */

typedef struct run_result {
  buf_t out;      /* canonical bytes */
  int rc;         /* final: PS_DONE / PS_ERROR / PS_GARBAGE */
  prov_error cls; /* from stream_feed on PS_ERROR / PS_GARBAGE */
  prov_usage u;   /* usage as filled */
} run_result;

/* Feeds s[0..n) in pieces of `step` bytes (0 = cut at `at` into two pieces). */
static void run_stream(const char *s, size_t n, int include_usage, size_t step, size_t at,
                       run_result *r) {
  prov_canon c = {"{}", 2, 1, include_usage};
  memset(r, 0, sizeof *r);
  prov_bedrock_set_clock(CLOCK);
  prov_stream *ps = prov_bedrock.stream_new(&c, "my-bedrock");
  assert_non_null(ps);
  int rc = PS_MORE;
  r->cls = PE_NONE;
  if (step) {
    for (size_t off = 0; rc == PS_MORE && off < n; off += step)
      rc = prov_bedrock.stream_feed(ps, s + off, n - off < step ? n - off : step, &r->out, &r->u,
                                    &r->cls);
  } else {
    rc = prov_bedrock.stream_feed(ps, s, at, &r->out, &r->u, &r->cls);
    if (rc == PS_MORE) rc = prov_bedrock.stream_feed(ps, s + at, n - at, &r->out, &r->u, &r->cls);
  }
  if (rc == PS_MORE && (rc = prov_bedrock.stream_end(ps, &r->out, &r->u)) == PS_GARBAGE)
    r->cls = PE_GARBAGE; /* stream_end has no class: a cut is always garbage */
  else if (rc == PS_GARBAGE) assert_int_equal(r->cls, PE_GARBAGE);
  r->rc = rc;
  prov_bedrock.stream_free(ps);
}

static void same_run(const run_result *want, const run_result *got, const char *name,
                     const char *how, size_t at) {
  if (want->out.len != got->out.len ||
      (want->out.len && memcmp(want->out.data, got->out.data, want->out.len)) ||
      want->rc != got->rc || want->cls != got->cls || want->u.prompt_tokens != got->u.prompt_tokens ||
      want->u.completion_tokens != got->u.completion_tokens || want->u.seen != got->u.seen ||
      want->u.cache_write_tokens != got->u.cache_write_tokens) {
    print_error("%s: %s at %zu differs from the whole feed\n", name, how, at);
    fail();
  }
}

static prov_error class_named(const char *s) {
  for (int e = 0; e < PE__COUNT; e++)
    if (!strcmp(prov_error_name((prov_error)e), s)) return (prov_error)e;
  fail_msg("unknown class %s", s);
  return PE_NONE;
}

static void check_stream_case(json_t *cs) {
  const char *name = json_string_value(json_object_get(cs, "name"));
  char in[512], outp[512];
  size_t n, wlen;
  snprintf(in, sizeof in, "streams/%s.in.bin", json_string_value(json_object_get(cs, "in")));
  snprintf(outp, sizeof outp, "streams/%s.out.sse", name);
  char *s = slurp(in, &n);
  if (!s) print_error("missing %s (run make_frames.py)\n", in);
  assert_non_null(s);
  int inc = json_is_true(json_object_get(cs, "include_usage"));
  run_result whole, part;
  run_stream(s, n, inc, n ? n : 1, 0, &whole);
  if (regen) spill(outp, whole.out.data ? whole.out.data : "", whole.out.len);
  char *want = slurp(outp, &wlen);
  assert_non_null(want);
  if (wlen != whole.out.len || (wlen && memcmp(want, whole.out.data, wlen))) {
    print_error("%s: output differs\nwant:\n%s\ngot:\n%.*s\n", name, want, (int)whole.out.len,
                whole.out.data);
    fail();
  }
  if (whole.rc != json_integer_value(json_object_get(cs, "rc")))
    fail_msg("%s: rc %d", name, whole.rc);
  if (whole.rc != PS_DONE &&
      whole.cls != class_named(json_string_value(json_object_get(cs, "class"))))
    fail_msg("%s: class %s", name, prov_error_name(whole.cls));
  json_t *wu = json_object_get(cs, "usage");
  assert_int_equal(whole.u.seen, json_is_array(wu));
  if (json_is_array(wu)) {
    assert_int_equal(whole.u.prompt_tokens, json_integer_value(json_array_get(wu, 0)));
    assert_int_equal(whole.u.completion_tokens, json_integer_value(json_array_get(wu, 1)));
    assert_int_equal(whole.u.cached_tokens, json_integer_value(json_array_get(wu, 2)));
    assert_int_equal(whole.u.cache_write_tokens, json_integer_value(json_array_get(wu, 3)));
  }
  for (size_t at = 0; at <= n; at++) {
    run_stream(s, n, inc, 0, at, &part);
    same_run(&whole, &part, name, "split", at);
    buf_free(&part.out);
  }
  run_stream(s, n, inc, 1, 0, &part);
  same_run(&whole, &part, name, "byte-at-a-time", 0);
  buf_free(&part.out);
  buf_free(&whole.out);
  free(want);
  free(s);
}

static void test_streams(void **st) {
  (void)st;
  json_t *cases = load_json("streams/cases.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= 20);
  json_array_foreach(cases, i, cs) check_stream_case(cs);
  json_decref(cases);
}

/* Tolerates being freed mid-frame and fed after a terminal result. */
static void test_stream_after_terminal(void **st) {
  (void)st;
  prov_canon c = {"{}", 2, 1, 1};
  buf_t out = {0};
  prov_error e = PE_NONE;
  prov_stream *s = prov_bedrock.stream_new(&c, "m");
  static const char zeros[16] = {0};
  assert_int_equal(prov_bedrock.stream_feed(s, zeros, sizeof zeros, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(e, PE_GARBAGE);
  assert_int_equal(prov_bedrock.stream_feed(s, zeros, sizeof zeros, &out, NULL, &e), PS_GARBAGE);
  assert_int_equal(prov_bedrock.stream_end(s, &out, NULL), PS_GARBAGE);
  assert_int_equal(out.len, 0);
  prov_bedrock.stream_free(s);
  s = prov_bedrock.stream_new(&c, "m");
  assert_int_equal(prov_bedrock.stream_feed(s, "\0\0\0\x40\0\0\0\x10", 8, &out, NULL, &e), PS_MORE);
  prov_bedrock.stream_free(s); /* freed mid-frame: no leak */
  s = prov_bedrock.stream_new(&c, "m");
  assert_int_equal(prov_bedrock.stream_end(s, &out, NULL), PS_GARBAGE); /* empty body */
  prov_bedrock.stream_free(s);
  buf_free(&out);
}

/* ---- errors -------------------------------------------------------------------------- */

static void test_classify(void **st) {
  (void)st;
  json_t *cases = load_json("errors.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= 20);
  json_array_foreach(cases, i, cs) {
    json_t *b = json_object_get(cs, "body");
    char *body = json_is_string(b) ? strdup(json_string_value(b)) : json_dumps(b, JSON_COMPACT);
    uint64_t retry = 777777;
    prov_error e = prov_bedrock.classify_error((int)json_integer_value(json_object_get(cs, "status")),
                                               body, strlen(body), &retry);
    if (e != class_named(json_string_value(json_object_get(cs, "class"))) || retry != 777777u) {
      print_error("errors.json[%zu]: got %s\n", i, prov_error_name(e));
      fail();
    }
    free(body);
  }
  json_decref(cases);
  assert_int_equal(prov_bedrock.classify_error(500, NULL, 0, NULL), PE_SERVER);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("bedrock"), &prov_bedrock);
  assert_ptr_equal(provider_find("Bedrock"), &prov_bedrock);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "tests/unit_providers/vectors/bedrock";
  regen = getenv("BEDROCK_REGEN") != NULL;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_request_targets),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_after_terminal),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
