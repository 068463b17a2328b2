/* test_anthropic.c — Anthropic adapter golden vectors.
 *
 * argv[1] is vectors/anthropic:
 *   requests/NAME.in.json   {"target": {...overrides}, "request": <OpenAI body>}
 *   requests/NAME.out.json  {"url", "headers": [...], "body": <Anthropic body>} | {"error": msg}
 *   responses/NAME.in.json  Anthropic message body; NAME.out.json the exact chat.completion
 *   streams/NAME.in.sse     Anthropic SSE bytes; NAME.out.sse the exact OpenAI SSE bytes;
 *   streams/NAME.meta.json  {"include_usage", "rc": done|error|garbage, "error": class,
 *                            "usage": {prompt, completion, cached, cache_write}}
 *   classify.json           [[status, body or null, class name], ...]
 * Every stream is also fed split in two at every byte and one byte at a time; the
 * output must be byte-identical. "created" is pinned with prov_anthropic_set_clock. */
#include <dirent.h>
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

#include "provider.h"

void prov_anthropic_set_clock(int64_t now_s); /* test hook in anthropic.c */

#define FIXED_NOW 1735000000

static const char *vec_dir;

static const provider_ops *ops(void) { return &prov_anthropic; }

/* ------------------------------------------------------------ file helpers */

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  buf_t b = {0};
  char tmp[4096];
  size_t n;
  while ((n = fread(tmp, 1, sizeof tmp, f)) > 0) assert_int_equal(buf_append(&b, tmp, n), 0);
  fclose(f);
  assert_non_null(buf_cstr(&b));
  if (len) *len = b.len;
  return b.data;
}

static json_t *load_json(const char *path) {
  json_error_t je;
  json_t *j = json_load_file(path, JSON_DECODE_ANY, &je);
  if (!j) fail_msg("%s: %s (line %d)", path, je.text, je.line);
  return j;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Case names in dir with the given suffix, sorted; returns the count. */
static size_t list_cases(const char *dir, const char *suffix, char ***names) {
  DIR *d = opendir(dir);
  if (!d) fail_msg("cannot open %s: %s", dir, strerror(errno));
  size_t n = 0, cap = 0, sl = strlen(suffix);
  char **v = NULL;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l <= sl || strcmp(de->d_name + l - sl, suffix)) continue;
    if (n == cap) v = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v);
    v[n++] = strndup(de->d_name, l - sl);
  }
  closedir(d);
  qsort(v, n, sizeof *v, cmp_str);
  *names = v;
  return n;
}

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

static char *path_of(const char *sub, const char *name, const char *suffix) {
  char *p = NULL;
  assert_true(asprintf(&p, "%s/%s/%s%s", vec_dir, sub, name, suffix) > 0);
  return p;
}

static void expect_json(const char *what, json_t *want, json_t *got) {
  if (json_equal(want, got)) return;
  char *w = json_dumps(want, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  char *g = json_dumps(got, JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY);
  print_error("%s\n want: %s\n  got: %s\n", what, w, g);
  free(w);
  free(g);
  fail();
}

/* ------------------------------------------------------------ requests */

static const char *tstr(json_t *target, const char *key, const char *dflt) {
  json_t *v = json_object_get(target, key);
  return json_is_string(v) ? json_string_value(v) : dflt;
}

static void run_request_case(const char *name) {
  char *ip = path_of("requests", name, ".in.json"), *op = path_of("requests", name, ".out.json");
  json_t *in = load_json(ip), *want = load_json(op);
  json_t *target = json_object_get(in, "target"), *req = json_object_get(in, "request");
  assert_non_null(req);
  prov_target t = {
      .api_base = tstr(target, "api_base", "https://api.anthropic.com/v1"),
      .api_key = tstr(target, "api_key", "sk-ant-test"),
      .upstream_model = tstr(target, "upstream_model", "claude-sonnet-4-5"),
      .api_version = tstr(target, "api_version", ""),
  };
  char *body = json_dumps(req, JSON_COMPACT);
  json_t *so = json_object_get(req, "stream_options");
  prov_canon c = {.body = body, .len = strlen(body),
                  .stream = json_is_true(json_object_get(req, "stream")),
                  .include_usage = json_is_true(json_object_get(so, "include_usage"))};
  prov_request r = {0};
  char err[256] = "";
  int rc = ops()->build_request(&t, &c, &r, err, sizeof err);
  json_t *werr = json_object_get(want, "error");
  if (werr) {
    if (rc != -EINVAL) fail_msg("%s: want -EINVAL, got %d", name, rc);
    if (strcmp(err, json_string_value(werr)))
      fail_msg("%s: error message\n want: %s\n  got: %s", name, json_string_value(werr), err);
    assert_int_equal(r.body.len, 0);
  } else {
    if (rc != 0) fail_msg("%s: build_request failed %d: %s", name, rc, err);
    const char *url = buf_cstr(&r.url);
    if (strcmp(url, json_string_value(json_object_get(want, "url"))))
      fail_msg("%s: url %s", name, url);
    json_t *hdrs = json_array();
    const char *h = r.headers.data;
    for (int i = 0; i < r.nheaders; i++, h += strlen(h) + 1) json_array_append_new(hdrs, json_string(h));
    expect_json(name, json_object_get(want, "headers"), hdrs);
    json_decref(hdrs);
    json_error_t je;
    json_t *got = json_loadb(r.body.data, r.body.len, 0, &je);
    if (!got) fail_msg("%s: body is not JSON: %s", name, je.text);
    expect_json(name, json_object_get(want, "body"), got);
    json_decref(got);
  }
  prov_request_free(&r);
  free(body);
  json_decref(in);
  json_decref(want);
  free(ip);
  free(op);
}

static void test_requests(void **st) {
  (void)st;
  char dir[4096], **names;
  snprintf(dir, sizeof dir, "%s/requests", vec_dir);
  size_t n = list_cases(dir, ".in.json", &names);
  assert_true(n >= 18);
  for (size_t i = 0; i < n; i++) run_request_case(names[i]);
  free_names(names, n);
}

/* ------------------------------------------------------------ responses */

static void expect_usage(const char *name, json_t *u, const prov_usage *got) {
  if (!u) return;
  json_t *d = json_object_get(u, "prompt_tokens_details");
  if (!json_object_get(u, "prompt_tokens")) { /* meta form */
    assert_int_equal(got->prompt_tokens, json_integer_value(json_object_get(u, "prompt")));
    assert_int_equal(got->completion_tokens, json_integer_value(json_object_get(u, "completion")));
    assert_int_equal(got->cached_tokens, json_integer_value(json_object_get(u, "cached")));
    assert_int_equal(got->cache_write_tokens,
                     json_integer_value(json_object_get(u, "cache_write")));
  } else {
    assert_int_equal(got->prompt_tokens, json_integer_value(json_object_get(u, "prompt_tokens")));
    assert_int_equal(got->completion_tokens,
                     json_integer_value(json_object_get(u, "completion_tokens")));
    assert_int_equal(got->cached_tokens, json_integer_value(json_object_get(d, "cached_tokens")));
  }
  if (!got->seen) fail_msg("%s: usage not marked seen", name);
}

static void run_response_case(const char *name) {
  char *ip = path_of("responses", name, ".in.json"), *op = path_of("responses", name, ".out.json");
  size_t len;
  char *in = slurp(ip, &len);
  assert_non_null(in);
  json_t *want = load_json(op);
  buf_t out = {0};
  prov_usage u = {0};
  int rc = ops()->decode_response(in, len, "claude-sonnet", &out, &u);
  if (rc) fail_msg("%s: decode_response %d", name, rc);
  json_t *got = json_loadb(out.data, out.len, 0, NULL);
  assert_non_null(got);
  expect_json(name, want, got);
  expect_usage(name, json_object_get(want, "usage"), &u);
  json_decref(got);
  json_decref(want);
  buf_free(&out);
  free(in);
  free(ip);
  free(op);
}

static void test_responses(void **st) {
  (void)st;
  char dir[4096], **names;
  snprintf(dir, sizeof dir, "%s/responses", vec_dir);
  size_t n = list_cases(dir, ".in.json", &names);
  assert_true(n >= 4);
  for (size_t i = 0; i < n; i++) run_response_case(names[i]);
  free_names(names, n);
}

static void test_response_garbage(void **st) {
  (void)st;
  static const char *bad[] = {"", "not json", "[]", "{\"type\":\"message\"}",
                              "{\"content\":{}}", "{\"content\":[{\"type\":\"text\"}"};
  for (size_t i = 0; i < ARRAY_SIZE(bad); i++) {
    buf_t out = {0};
    prov_usage u = {0};
    assert_int_equal(ops()->decode_response(bad[i], strlen(bad[i]), "m", &out, &u), PS_GARBAGE);
    assert_int_equal(out.len, 0);
    assert_int_equal(u.seen, 0);
    buf_free(&out);
  }
}

/* ------------------------------------------------------------ streams */

typedef struct stream_run {
  buf_t out;        /* canonical SSE written */
  int rc;           /* final result */
  prov_error err;   /* error class reported by feed */
  prov_usage usage; /* usage reported */
} stream_run;

/* Feeds in pieces of at most `step` bytes (0 = cut once at `cut`). */
static void stream_drive(const char *in, size_t len, int include_usage, size_t cut, size_t step,
                         stream_run *r) {
  prov_canon c = {.stream = 1, .include_usage = include_usage};
  prov_stream *s = ops()->stream_new(&c, "claude-sonnet");
  assert_non_null(s);
  memset(r, 0, sizeof *r);
  r->rc = PS_MORE;
  size_t off = 0;
  while (off < len && r->rc == PS_MORE) {
    size_t n = step ? step : (off < cut ? cut - off : len - off);
    if (n > len - off) n = len - off;
    r->rc = ops()->stream_feed(s, in + off, n, &r->out, &r->usage, &r->err);
    off += n;
  }
  if (r->rc == PS_MORE) r->rc = ops()->stream_end(s, &r->out, &r->usage);
  ops()->stream_free(s);
}

static int rc_of(const char *s) {
  if (!strcmp(s, "done")) return PS_DONE;
  if (!strcmp(s, "error")) return PS_ERROR;
  if (!strcmp(s, "garbage")) return PS_GARBAGE;
  fail_msg("bad rc %s", s);
  return 0;
}

static void expect_same(const char *name, const char *how, const stream_run *a, const stream_run *b) {
  if (a->rc != b->rc || a->err != b->err || a->out.len != b->out.len ||
      (a->out.len && memcmp(a->out.data, b->out.data, a->out.len)))
    fail_msg("%s: output differs when fed %s", name, how);
  assert_memory_equal(&a->usage, &b->usage, sizeof a->usage);
}

static void run_stream_case(const char *name) {
  char *ip = path_of("streams", name, ".in.sse"), *op = path_of("streams", name, ".out.sse");
  char *mp = path_of("streams", name, ".meta.json");
  size_t len, wlen;
  char *in = slurp(ip, &len), *want = slurp(op, &wlen);
  assert_non_null(in);
  assert_non_null(want);
  json_t *meta = load_json(mp);
  int iu = json_is_true(json_object_get(meta, "include_usage"));
  int want_rc = rc_of(json_string_value(json_object_get(meta, "rc")));
  stream_run whole;
  stream_drive(in, len, iu, len, 0, &whole);
  if (whole.out.len != wlen || (wlen && memcmp(whole.out.data, want, wlen))) {
    print_error("%s: want\n%.*s\n got\n%.*s\n", name, (int)wlen, want, (int)whole.out.len,
                whole.out.data);
    fail();
  }
  if (whole.rc != want_rc) fail_msg("%s: rc %d, want %d", name, whole.rc, want_rc);
  const char *werr = json_string_value(json_object_get(meta, "error"));
  if (werr && strcmp(prov_error_name(whole.err), werr))
    fail_msg("%s: error class %s, want %s", name, prov_error_name(whole.err), werr);
  expect_usage(name, json_object_get(meta, "usage"), &whole.usage);
  for (size_t cut = 0; cut <= len; cut++) {
    stream_run part;
    stream_drive(in, len, iu, cut, 0, &part);
    char how[64];
    snprintf(how, sizeof how, "split at byte %zu", cut);
    expect_same(name, how, &whole, &part);
    buf_free(&part.out);
  }
  stream_run bytes;
  stream_drive(in, len, iu, 0, 1, &bytes);
  expect_same(name, "one byte at a time", &whole, &bytes);
  buf_free(&bytes.out);
  buf_free(&whole.out);
  json_decref(meta);
  free(in);
  free(want);
  free(ip);
  free(op);
  free(mp);
}

static void test_streams(void **st) {
  (void)st;
  char dir[4096], **names;
  snprintf(dir, sizeof dir, "%s/streams", vec_dir);
  size_t n = list_cases(dir, ".in.sse", &names);
  assert_true(n >= 8);
  for (size_t i = 0; i < n; i++) run_stream_case(names[i]);
  free_names(names, n);
}

/* After the terminal event the decoder is sticky: later bytes change nothing. */
static void test_stream_sticky(void **st) {
  (void)st;
  static const char s1[] =
      "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\","
      "\"usage\":{\"input_tokens\":3}}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
  prov_canon c = {.stream = 1};
  prov_stream *s = ops()->stream_new(&c, "m");
  buf_t out = {0};
  prov_error err = PE_NONE;
  assert_int_equal(ops()->stream_feed(s, s1, sizeof s1 - 1, &out, NULL, &err), PS_DONE);
  size_t n = out.len;
  assert_int_equal(ops()->stream_feed(s, s1, sizeof s1 - 1, &out, NULL, &err), PS_DONE);
  assert_int_equal(ops()->stream_end(s, &out, NULL), PS_DONE);
  assert_int_equal(out.len, n);
  assert_int_equal(err, PE_NONE);
  ops()->stream_free(s);
  buf_free(&out);
}

/* ------------------------------------------------------------ errors */

static void test_classify(void **st) {
  (void)st;
  char path[4096];
  snprintf(path, sizeof path, "%s/classify.json", vec_dir);
  json_t *cases = load_json(path);
  assert_true(json_array_size(cases) >= 12);
  size_t i;
  json_t *cs;
  json_array_foreach(cases, i, cs) {
    int status = (int)json_integer_value(json_array_get(cs, 0));
    json_t *body = json_array_get(cs, 1);
    const char *want = json_string_value(json_array_get(cs, 2));
    const char *b = json_is_string(body) ? json_string_value(body) : NULL;
    uint64_t retry = 77;
    prov_error e = ops()->classify_error(status, b, b ? strlen(b) : 0, &retry);
    if (strcmp(prov_error_name(e), want))
      fail_msg("classify case %zu (%d %s): %s, want %s", i, status, b ? b : "(null)",
               prov_error_name(e), want);
    assert_int_equal(retry, 77);
  }
  json_decref(cases);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("anthropic"), &prov_anthropic);
  assert_ptr_equal(provider_find("Anthropic"), &prov_anthropic);
}

int main(int argc, char **argv) {
  vec_dir = argc > 1 ? argv[1] : getenv("ANTHROPIC_VECTORS");
  if (!vec_dir) {
    fprintf(stderr, "usage: %s VECTORS_DIR\n", argv[0]);
    return 2;
  }
  prov_anthropic_set_clock(FIXED_NOW);
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_registry),
      cmocka_unit_test(test_requests),
      cmocka_unit_test(test_responses),
      cmocka_unit_test(test_response_garbage),
      cmocka_unit_test(test_streams),
      cmocka_unit_test(test_stream_sticky),
      cmocka_unit_test(test_classify),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
