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
#include "prov_json.h"
#include "vector_harness.h"
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

static void pin_clock(void) { prov_bedrock_set_clock(CLOCK); }

/* The adapter as the response and stream vectors run it. */
static const vh_prov_ctx ADAPTER = {.ops = &prov_bedrock, .model = "my-bedrock", .before = pin_clock,
                                    .end_garbage_class = 1};

/* ---- requests ------------------------------------------------------------------------ */

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
  vh_prov_canon_of(body, len, &c);
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
  json_t *hs = vh_prov_headers_json(&r), *h;
  size_t i;
  json_array_foreach(hs, i, h)
      no_secret(json_string_value(h), t, !strncmp(json_string_value(h), "authorization: Bearer ", 22));
  char hash[65];
  assert_int_equal(sigv4_sha256_hex(r.body.data, r.body.len, hash), 0);
  vh_check_raw("request body", r.body.data, r.body.len);
  json_t *body_json = prov_json_loadb(r.body.data, r.body.len, 0, NULL);
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

/* A vector is the canonical body, or {"target": {overrides}, "request": body}. */
static json_t *request_case(const char *name, const char *body, size_t len, void *ctx) {
  (void)name;
  (void)ctx;
  json_t *doc = prov_json_loadb(body, len, 0, NULL), *tg = json_object_get(doc, "target");
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
    req = prov_json_dumps(json_object_get(doc, "request"), JSON_COMPACT);
  }
  json_t *got = req ? run_request(&t, req, strlen(req)) : run_request(&t, body, len);
  json_decref(doc);
  free(req);
  return got;
}

static void test_requests(void **st) {
  (void)st;
  assert_true(vh_json_cases(vdir, "requests", regen, request_case, vh_prov_reject_named, NULL) >= 30);
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
  vh_prov_response_cases(vdir, &ADAPTER, regen, 10);
}

/* ---- streams ------------------------------------------------------------------------- */

static void test_streams(void **st) {
  (void)st;
  vh_prov_stream_cases(vdir, &ADAPTER, ".in.bin", regen, 20);
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
  vh_prov_error_cases(vdir, &prov_bedrock, 20);
}

static void test_registry(void **st) {
  (void)st;
  assert_ptr_equal(provider_find("bedrock"), &prov_bedrock);
  assert_ptr_equal(provider_find("Bedrock"), &prov_bedrock);
}

int main(int argc, char **argv) {
  vdir = argc > 1 ? argv[1] : "tests/unit_providers/vectors/bedrock";
  regen = vh_regen_enabled("BEDROCK_REGEN");
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
