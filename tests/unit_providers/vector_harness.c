/* vector_harness.c — see vector_harness.h. */
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

#include "prov_json.h"
#include "vector_harness.h"

static void path_of(char *path, size_t cap, const char *dir, const char *rel) {
  int n = dir ? snprintf(path, cap, "%s/%s", dir, rel) : snprintf(path, cap, "%s", rel);
  if (n < 0 || (size_t)n >= cap) fail_msg("path too long: %s/%s", dir ? dir : "", rel);
}

char *vh_read_file(const char *dir, const char *rel, size_t *len) {
  char path[4096];
  path_of(path, sizeof path, dir, rel);
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  size_t cap = 4096, n = 0, got;
  char *b = malloc(cap + 1);
  assert_non_null(b);
  while ((got = fread(b + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      b = realloc(b, (cap *= 2) + 1);
      assert_non_null(b);
    }
  }
  assert_false(ferror(f));
  fclose(f);
  b[n] = '\0';
  if (len) *len = n;
  return b;
}

void vh_write_file(const char *dir, const char *rel, const void *data, size_t len) {
  char path[4096];
  path_of(path, sizeof path, dir, rel);
  FILE *f = fopen(path, "wb");
  if (!f) fail_msg("cannot write %s: %s", path, strerror(errno));
  assert_int_equal(fwrite(data ? data : "", 1, len, f), len);
  assert_int_equal(fclose(f), 0);
}

void vh_write_json(const char *dir, const char *rel, json_t *j, size_t flags) {
  char *s = prov_json_dumps(j, flags | JSON_ENCODE_ANY); /* reals as the adapters print them */
  assert_non_null(s);
  size_t n = strlen(s);
  s = realloc(s, n + 2);
  assert_non_null(s);
  s[n] = '\n';
  vh_write_file(dir, rel, s, n + 1);
  free(s);
}

json_t *vh_load_json(const char *dir, const char *rel) {
  size_t len;
  char *s = vh_read_file(dir, rel, &len);
  if (!s) fail_msg("missing vector %s%s%s", dir ? dir : "", dir ? "/" : "", rel);
  json_error_t je;
  json_t *j = prov_json_loadb(s, len, JSON_DECODE_ANY, &je);
  free(s);
  if (!j) fail_msg("%s%s%s: %s (line %d)", dir ? dir : "", dir ? "/" : "", rel, je.text, je.line);
  return j;
}

void vh_assert_json_equal(json_t *want, json_t *got, const char *what) {
  if (want && got && json_equal(want, got)) return;
  size_t fl = JSON_COMPACT | JSON_SORT_KEYS | JSON_ENCODE_ANY;
  char *w = want ? json_dumps(want, fl) : NULL, *g = got ? json_dumps(got, fl) : NULL;
  print_error("%s:\n want %s\n got  %s\n", what, w ? w : "(null)", g ? g : "(null)");
  free(w);
  free(g);
  fail();
}

void vh_assert_bytes_equal(const char *want, size_t wlen, const char *got, size_t glen,
                           const char *what) {
  if (wlen == glen && (!wlen || !memcmp(want, got, wlen))) return;
  print_error("%s: output differs\nwant:\n%.*s\ngot:\n%.*s\n", what, (int)wlen, want ? want : "",
              (int)glen, got ? got : "");
  fail();
}

int vh_regen_enabled(const char *env) {
  const char *v = getenv(env);
  return v && *v && strcmp(v, "0");
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

size_t vh_list_cases(const char *dir, const char *sub, const char *suffix, char ***names) {
  char path[4096];
  path_of(path, sizeof path, dir, sub);
  DIR *d = opendir(path);
  if (!d) fail_msg("cannot open %s: %s", path, strerror(errno));
  size_t n = 0, cap = 0, sl = strlen(suffix);
  char **v = NULL;
  struct dirent *de;
  while ((de = readdir(d))) {
    size_t l = strlen(de->d_name);
    if (l <= sl || strcmp(de->d_name + l - sl, suffix)) continue;
    if (n == cap) {
      v = realloc(v, (cap = cap ? cap * 2 : 16) * sizeof *v);
      assert_non_null(v);
    }
    v[n++] = strndup(de->d_name, l - sl);
  }
  closedir(d);
  if (n) qsort(v, n, sizeof *v, cmp_str);
  *names = v;
  return n;
}

void vh_free_names(char **names, size_t n) {
  for (size_t i = 0; i < n; i++) free(names[i]);
  free(names);
}

size_t vh_each_case(const char *dir, const char *sub, const char *suffix,
                    void (*fn)(const char *name, void *ctx), void *ctx) {
  char **names;
  size_t n = vh_list_cases(dir, sub, suffix, &names);
  for (size_t i = 0; i < n; i++) fn(names[i], ctx);
  vh_free_names(names, n);
  return n;
}

size_t vh_json_out_flags = VH_JSON_OUT;

/* The current case's NAME.raw (NULL when it has none) and whether a runner checked it. */
static char *raw_want;
static int raw_checked;

static void raw_load(const char *dir, const char *rel) {
  size_t n;
  free(raw_want);
  raw_want = vh_read_file(dir, rel, &n);
  raw_checked = 0;
}

void vh_check_raw(const char *what, const char *bytes, size_t n) {
  if (!raw_want) return;
  raw_checked = 1;
  for (char *line = raw_want; *line;) {
    size_t ll = strcspn(line, "\n");
    int found = 0;
    for (size_t i = 0; ll && i + ll <= n && !found; i++) found = !memcmp(bytes + i, line, ll);
    if (ll && !found)
      fail_msg("%s: raw output lacks %.*s\n got %.*s", what, (int)ll, line, (int)n, bytes);
    line += ll + (line[ll] == '\n');
  }
}

static void raw_done(const char *name) {
  if (raw_want && !raw_checked) fail_msg("%s: has a .raw file but its runner never checked it", name);
  free(raw_want);
  raw_want = NULL;
}

size_t vh_json_cases(const char *dir, const char *sub, int regen, vh_json_run run,
                     vh_json_check check, void *ctx) {
  char **names;
  size_t n = vh_list_cases(dir, sub, ".in.json", &names);
  for (size_t i = 0; i < n; i++) {
    char in[4096], outp[4096];
    size_t len;
    snprintf(in, sizeof in, "%s/%s.in.json", sub, names[i]);
    snprintf(outp, sizeof outp, "%s/%s.out.json", sub, names[i]);
    char *body = vh_read_file(dir, in, &len);
    if (!body) fail_msg("cannot read %s/%s", dir, in);
    snprintf(in, sizeof in, "%s/%s.raw", sub, names[i]);
    raw_load(dir, in);
    json_t *got = run(names[i], body, len, ctx);
    if (!got) fail_msg("%s: no result", names[i]);
    raw_done(names[i]);
    if (regen) vh_write_json(dir, outp, got, vh_json_out_flags);
    json_t *want = vh_load_json(dir, outp);
    vh_assert_json_equal(want, got, names[i]);
    if (check) check(names[i], want, got, ctx);
    json_decref(want);
    json_decref(got);
    free(body);
  }
  vh_free_names(names, n);
  return n;
}

/* Feeds s[0..n): step > 0 in pieces of step bytes; step == 0 in two pieces cut at `at`. */
static void *feed(const vh_feed_ops *ops, void *ctx, const char *s, size_t n, size_t step,
                  size_t at) {
  void *run = ops->new(ctx);
  assert_non_null(run);
  if (step) {
    int more = 1;
    for (size_t off = 0; more && off < n; off += step)
      more = ops->feed(run, s + off, n - off < step ? n - off : step);
  } else if (ops->feed(run, s, at)) {
    ops->feed(run, s + at, n - at);
  }
  ops->end(run);
  return run;
}

void *vh_feed_whole(const vh_feed_ops *ops, void *ctx, const char *s, size_t n) {
  return feed(ops, ctx, s, n, n ? n : 1, 0);
}

void *vh_feed_steps(const vh_feed_ops *ops, void *ctx, const char *s, size_t n, size_t step) {
  assert_true(step > 0);
  return feed(ops, ctx, s, n, step, 0);
}

void vh_feed_splits(const vh_feed_ops *ops, void *ctx, const char *s, size_t n,
                    const void *whole, const char *name) {
  for (size_t at = 0; at <= n; at++) {
    void *part = feed(ops, ctx, s, n, 0, at);
    int same = ops->same(whole, part);
    ops->free(part);
    if (!same) fail_msg("%s: split at byte %zu differs from the whole feed", name, at);
  }
  void *part = feed(ops, ctx, s, n, 1, 0);
  int same = ops->same(whole, part);
  ops->free(part);
  if (!same) fail_msg("%s: one byte at a time differs from the whole feed", name);
}

/* ---- provider adapters --------------------------------------------------------------- */

static void *prov_new(void *ctx) {
  vh_prov_run *r = calloc(1, sizeof *r);
  assert_non_null(r);
  r->ctx = *(const vh_prov_ctx *)ctx;
  r->rc = PS_MORE;
  r->cls = PE_NONE;
  prov_canon c = {"{}", 2, 1, r->ctx.include_usage};
  if (r->ctx.before) r->ctx.before();
  r->ps = r->ctx.ops->stream_new(&c, r->ctx.model);
  assert_non_null(r->ps);
  return r;
}

static int prov_feed(void *p, const char *s, size_t n) {
  vh_prov_run *r = p;
  r->rc = r->ctx.ops->stream_feed(r->ps, s, n, &r->out, &r->u, &r->cls);
  return r->rc == PS_MORE;
}

static void prov_end(void *p) {
  vh_prov_run *r = p;
  if (r->rc == PS_MORE) {
    r->rc = r->ctx.ops->stream_end(r->ps, &r->out, &r->u);
    if (r->rc == PS_GARBAGE && r->ctx.end_garbage_class) r->cls = PE_GARBAGE;
  } else if (r->rc == PS_GARBAGE && r->ctx.end_garbage_class) {
    assert_int_equal(r->cls, PE_GARBAGE);
  }
  r->ctx.ops->stream_free(r->ps);
  r->ps = NULL;
}

static void prov_free(void *p) {
  vh_prov_run *r = p;
  if (r->ps) r->ctx.ops->stream_free(r->ps);
  buf_free(&r->out);
  free(r);
}

int vh_prov_usage_equal(const prov_usage *a, const prov_usage *b) {
  return a->prompt_tokens == b->prompt_tokens && a->completion_tokens == b->completion_tokens &&
         a->cached_tokens == b->cached_tokens && a->cache_write_tokens == b->cache_write_tokens &&
         a->seen == b->seen;
}

static int prov_same(const void *pa, const void *pb) {
  const vh_prov_run *a = pa, *b = pb;
  return a->out.len == b->out.len && (!a->out.len || !memcmp(a->out.data, b->out.data, a->out.len)) &&
         a->rc == b->rc && a->cls == b->cls && vh_prov_usage_equal(&a->u, &b->u);
}

const vh_feed_ops vh_prov_feed = {prov_new, prov_feed, prov_end, prov_free, prov_same};

prov_error vh_prov_class_named(const char *name) {
  for (int e = 0; e < PE__COUNT; e++)
    if (name && !strcmp(prov_error_name((prov_error)e), name)) return (prov_error)e;
  fail_msg("unknown class %s", name ? name : "(null)");
  return PE_NONE;
}

json_t *vh_prov_headers_json(const prov_request *r) {
  json_t *a = json_array();
  const char *h = r->headers.data;
  for (int i = 0; i < r->nheaders; i++, h += strlen(h) + 1)
    json_array_append_new(a, json_string(h));
  return a;
}

void vh_prov_canon_of(const char *body, size_t len, prov_canon *c) {
  json_t *j = json_loadb(body, len, 0, NULL);
  c->body = body;
  c->len = len;
  c->stream = json_is_true(json_object_get(j, "stream"));
  c->include_usage =
      json_is_true(json_object_get(json_object_get(j, "stream_options"), "include_usage"));
  json_decref(j);
}

void vh_prov_reject_named(const char *name, json_t *want, json_t *got, void *ctx) {
  (void)want;
  (void)ctx;
  if (!strncmp(name, "reject_", 7) != (json_object_get(got, "error") != NULL))
    fail_msg("%s: %s", name, json_object_get(got, "error") ? "rejected but not named reject_*"
                                                           : "named reject_* but accepted");
}

json_t *vh_prov_request_json(const provider_ops *ops, const prov_target *t, const char *body,
                             size_t len, const char *host) {
  prov_canon c;
  prov_request r = {0};
  char err[256] = "";
  vh_prov_canon_of(body, len, &c);
  int rc = ops->build_request(t, &c, &r, err, sizeof err);
  if (rc) {
    assert_int_equal(rc, -EINVAL);
    assert_true(strlen(err) > 0);
    assert_null(strstr(err, host));
    assert_null(strstr(err, t->api_key));
    assert_int_equal(r.body.len, 0);
    return json_pack("{s:s}", "error", err);
  }
  assert_null(strstr(buf_cstr(&r.url), t->api_key)); /* the key never goes in the URL */
  vh_check_raw("request body", r.body.data, r.body.len);
  json_t *body_json = prov_json_loadb(r.body.data, r.body.len, 0, NULL);
  assert_non_null(body_json);
  json_t *out = json_pack("{s:s,s:o,s:o}", "url", buf_cstr(&r.url), "headers",
                          vh_prov_headers_json(&r), "body", body_json);
  prov_request_free(&r);
  return out;
}

void vh_prov_error_cases(const char *dir, const provider_ops *ops, size_t min_cases) {
  json_t *cases = vh_load_json(dir, "errors.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= min_cases);
  json_array_foreach(cases, i, cs) {
    json_t *b = json_object_get(cs, "body");
    char *body = json_is_string(b) ? strdup(json_string_value(b)) : json_dumps(b, JSON_COMPACT);
    assert_non_null(body);
    uint64_t retry = 777777;
    prov_error e = ops->classify_error((int)json_integer_value(json_object_get(cs, "status")), body,
                                       strlen(body), &retry);
    json_t *wr = json_object_get(cs, "retry_after_ms");
    if (e != vh_prov_class_named(json_string_value(json_object_get(cs, "class"))) ||
        retry != (json_is_integer(wr) ? (uint64_t)json_integer_value(wr) : 777777u)) {
      print_error("errors.json[%zu]: got %s retry %llu\n", i, prov_error_name(e),
                  (unsigned long long)retry);
      fail();
    }
    free(body);
  }
  json_decref(cases);
  assert_int_equal(ops->classify_error(500, NULL, 0, NULL), PE_SERVER);
}

typedef struct response_case {
  const vh_prov_ctx *ctx;
  prov_usage u;
} response_case;

static json_t *response_run(const char *name, const char *in, size_t len, void *p) {
  response_case *rc_ = p;
  buf_t out = {0};
  memset(&rc_->u, 0, sizeof rc_->u);
  if (rc_->ctx->before) rc_->ctx->before();
  int rc = rc_->ctx->ops->decode_response(in, len, rc_->ctx->model, &out, &rc_->u);
  if (rc == 0) vh_check_raw(name, out.data, out.len);
  json_t *got = rc == 0 ? prov_json_loadb(out.data, out.len, 0, NULL)
                        : json_pack("{s:b}", "garbage", 1);
  if (!got) fail_msg("%s: output is not JSON: %.*s", name, (int)out.len, out.data);
  if (rc) assert_int_equal(rc, PS_GARBAGE);
  if (rc) assert_int_equal(out.len, 0);
  buf_free(&out);
  return got;
}

static void response_check(const char *name, json_t *want, json_t *got, void *p) {
  (void)name;
  (void)got;
  const prov_usage *u = &((response_case *)p)->u;
  json_t *wu = json_object_get(want, "usage");
  assert_int_equal(u->seen, wu != NULL);
  if (wu) {
    assert_int_equal(u->prompt_tokens, json_integer_value(json_object_get(wu, "prompt_tokens")));
    assert_int_equal(u->completion_tokens,
                     json_integer_value(json_object_get(wu, "completion_tokens")));
    assert_int_equal(u->cached_tokens,
                     json_integer_value(json_object_get(json_object_get(wu, "prompt_tokens_details"),
                                                        "cached_tokens")));
  }
}

void vh_prov_response_cases(const char *dir, const vh_prov_ctx *ctx, int regen, size_t min_cases) {
  response_case rc = {ctx, {0}};
  assert_true(vh_json_cases(dir, "responses", regen, response_run, response_check, &rc) >= min_cases);
}

static void prov_stream_case(const char *dir, const vh_prov_ctx *base, const char *in_ext,
                             int regen, json_t *cs) {
  const char *name = json_string_value(json_object_get(cs, "name"));
  assert_non_null(name);
  char in[512], outp[512];
  size_t n, wlen;
  snprintf(in, sizeof in, "streams/%s%s", json_string_value(json_object_get(cs, "in")), in_ext);
  snprintf(outp, sizeof outp, "streams/%s.out.sse", name);
  char *s = vh_read_file(dir, in, &n);
  if (!s) fail_msg("%s: missing %s/%s", name, dir, in);
  vh_prov_ctx ctx = *base;
  ctx.include_usage = json_is_true(json_object_get(cs, "include_usage"));
  vh_prov_run *whole = vh_feed_whole(&vh_prov_feed, &ctx, s, n);
  if (regen) vh_write_file(dir, outp, whole->out.data, whole->out.len);
  char *want = vh_read_file(dir, outp, &wlen);
  if (!want) fail_msg("%s: missing %s/%s", name, dir, outp);
  vh_assert_bytes_equal(want, wlen, whole->out.data, whole->out.len, name);
  if (whole->rc != json_integer_value(json_object_get(cs, "rc")))
    fail_msg("%s: rc %d", name, whole->rc);
  if (whole->rc != PS_DONE &&
      whole->cls != vh_prov_class_named(json_string_value(json_object_get(cs, "class"))))
    fail_msg("%s: class %s", name, prov_error_name(whole->cls));
  json_t *wu = json_object_get(cs, "usage");
  assert_int_equal(whole->u.seen, json_is_array(wu));
  if (json_is_array(wu)) {
    assert_int_equal(whole->u.prompt_tokens, json_integer_value(json_array_get(wu, 0)));
    assert_int_equal(whole->u.completion_tokens, json_integer_value(json_array_get(wu, 1)));
    assert_int_equal(whole->u.cached_tokens, json_integer_value(json_array_get(wu, 2)));
    if (json_array_size(wu) > 3)
      assert_int_equal(whole->u.cache_write_tokens, json_integer_value(json_array_get(wu, 3)));
  }
  vh_feed_splits(&vh_prov_feed, &ctx, s, n, whole, name);
  vh_prov_feed.free(whole);
  free(want);
  free(s);
}

void vh_prov_stream_cases(const char *dir, const vh_prov_ctx *base, const char *in_ext,
                          int regen, size_t min_cases) {
  json_t *cases = vh_load_json(dir, "streams/cases.json"), *cs;
  size_t i;
  assert_true(json_array_size(cases) >= min_cases);
  json_array_foreach(cases, i, cs) prov_stream_case(dir, base, in_ext, regen, cs);
  json_decref(cases);
}
