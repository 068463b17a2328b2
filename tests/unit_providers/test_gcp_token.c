/* test_gcp_token.c — service-account tokens (gcp_token.h). A throwaway RSA-2048 key is
 * generated at run time and embedded in a service-account JSON; JWTs are decoded and their
 * RS256 signature verified with the public half (EVP_DigestVerify). The cache runs on a
 * fixed clock through its whole life: fresh, proactive refresh window, expiry, backoff. */
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
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "gcp_token.h"

#define NOW 1700000000u /* a fixed wall clock, s */

static EVP_PKEY *key;      /* the throwaway RSA key */
static char *key_pem;      /* its PKCS#8 PEM */
static char *sa_json;      /* a full service-account JSON around it */

static char *pem_of(EVP_PKEY *k) {
  BIO *b = BIO_new(BIO_s_mem());
  assert_non_null(b);
  assert_int_equal(PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL), 1);
  char *p;
  long n = BIO_get_mem_data(b, &p);
  char *s = strndup(p, (size_t)n);
  BIO_free(b);
  return s;
}

/* A service-account JSON; fields NULL are left out. Caller frees. */
static char *sa_with(const char *type, const char *email, const char *pem, const char *kid,
                     const char *uri, const char *project) {
  json_t *o = json_object();
  if (type) json_object_set_new(o, "type", json_string(type));
  if (project) json_object_set_new(o, "project_id", json_string(project));
  if (kid) json_object_set_new(o, "private_key_id", json_string(kid));
  if (pem) json_object_set_new(o, "private_key", json_string(pem));
  if (email) json_object_set_new(o, "client_email", json_string(email));
  json_object_set_new(o, "client_id", json_string("1234567890"));
  json_object_set_new(o, "auth_uri", json_string("https://accounts.google.com/o/oauth2/auth"));
  if (uri) json_object_set_new(o, "token_uri", json_string(uri));
  char *s = json_dumps(o, JSON_INDENT(2));
  json_decref(o);
  return s;
}

static int setup(void **st) {
  (void)st;
  key = EVP_RSA_gen(2048);
  if (!key) return -1;
  key_pem = pem_of(key);
  sa_json = sa_with("service_account", "llmesh@my-proj-123.iam.gserviceaccount.com", key_pem,
                    "0123456789abcdef0123456789abcdef01234567", "https://oauth2.googleapis.com/token",
                    "my-proj-123");
  return 0;
}

static int teardown(void **st) {
  (void)st;
  EVP_PKEY_free(key);
  free(key_pem);
  free(sa_json);
  return 0;
}

static gcp_sa *parse_ok(const char *json) {
  char err[256] = "";
  gcp_sa *sa = gcp_sa_parse(json, strlen(json), err, sizeof err);
  if (!sa) fail_msg("gcp_sa_parse: %s", err);
  return sa;
}

/* ---- base64url ----------------------------------------------------------------------- */

/* Decodes a base64url segment (no padding, no '+' '/' '='), NUL-terminated. */
static unsigned char *b64url_decode(const char *s, size_t n, size_t *out_len) {
  char *t = calloc(n + 4, 1);
  size_t i;
  for (i = 0; i < n; i++) {
    assert_true(s[i] != '+' && s[i] != '/' && s[i] != '=');
    t[i] = s[i] == '-' ? '+' : s[i] == '_' ? '/' : s[i];
  }
  while (i % 4) t[i++] = '=';
  unsigned char *out = malloc(i + 1);
  int k = EVP_DecodeBlock(out, (unsigned char *)t, (int)i);
  assert_true(k >= 0);
  size_t pad = (n % 4 == 2) ? 2 : (n % 4 == 3) ? 1 : 0; /* EVP_DecodeBlock keeps pad bytes */
  *out_len = (size_t)k - pad;
  out[*out_len] = '\0';
  free(t);
  return out;
}

/* Splits a JWT into header/claims JSON and checks its RS256 signature against pub. */
static int jwt_verify(const char *jwt, EVP_PKEY *pub, json_t **hdr, json_t **claims) {
  const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  assert_non_null(d2);
  assert_null(strchr(d2 + 1, '.'));
  size_t hl, cl, sl;
  unsigned char *h = b64url_decode(jwt, (size_t)(d1 - jwt), &hl);
  unsigned char *c = b64url_decode(d1 + 1, (size_t)(d2 - d1 - 1), &cl);
  unsigned char *sig = b64url_decode(d2 + 1, strlen(d2 + 1), &sl);
  *hdr = json_loadb((char *)h, hl, 0, NULL);
  *claims = json_loadb((char *)c, cl, 0, NULL);
  assert_non_null(*hdr);
  assert_non_null(*claims);
  assert_int_equal(sl, 256); /* RSA-2048 */
  EVP_MD_CTX *m = EVP_MD_CTX_new();
  assert_int_equal(EVP_DigestVerifyInit(m, NULL, EVP_sha256(), NULL, pub), 1);
  int ok = EVP_DigestVerify(m, sig, sl, (const unsigned char *)jwt, (size_t)(d2 - jwt));
  EVP_MD_CTX_free(m);
  ERR_clear_error();
  free(h);
  free(c);
  free(sig);
  return ok == 1;
}

/* ---- service account ----------------------------------------------------------------- */

static void test_sa_parse(void **st) {
  (void)st;
  gcp_sa *sa = parse_ok(sa_json);
  assert_string_equal(gcp_sa_email(sa), "llmesh@my-proj-123.iam.gserviceaccount.com");
  assert_string_equal(gcp_sa_project(sa), "my-proj-123");
  assert_string_equal(gcp_sa_token_uri(sa), "https://oauth2.googleapis.com/token");
  gcp_sa_free(sa);
  /* token_uri and project_id absent: defaults */
  char *j = sa_with("service_account", "a@b.iam.gserviceaccount.com", key_pem, "k1", NULL, NULL);
  sa = parse_ok(j);
  assert_string_equal(gcp_sa_token_uri(sa), GCP_TOKEN_URI);
  assert_string_equal(gcp_sa_project(sa), "");
  gcp_sa_free(sa);
  free(j);
  /* a loopback mock token endpoint over http is allowed */
  j = sa_with("service_account", "a@b", key_pem, "k1", "http://127.0.0.1:9200/token", "p");
  sa = parse_ok(j);
  assert_string_equal(gcp_sa_token_uri(sa), "http://127.0.0.1:9200/token");
  gcp_sa_free(sa);
  free(j);
}

static void expect_reject(const char *json, const char *msg_part) {
  char err[256] = "";
  gcp_sa *sa = gcp_sa_parse(json, json ? strlen(json) : 0, err, sizeof err);
  assert_null(sa);
  if (!strstr(err, msg_part)) fail_msg("error '%s' lacks '%s'", err, msg_part);
  /* never any key material in the message */
  assert_null(strstr(err, "PRIVATE KEY"));
  assert_null(strstr(err, "MII"));
}

static void test_sa_reject(void **st) {
  (void)st;
  expect_reject("", "not a JSON object");
  expect_reject("[1]", "not a JSON object");
  char *j = sa_with("authorized_user", "a@b", key_pem, "k", NULL, NULL);
  expect_reject(j, "not a service account key (type 'authorized_user')");
  free(j);
  j = sa_with(NULL, "a@b", key_pem, "k", NULL, NULL);
  expect_reject(j, "not a service account key");
  free(j);
  j = sa_with("service_account", NULL, key_pem, "k", NULL, NULL);
  expect_reject(j, "needs client_email and private_key");
  free(j);
  j = sa_with("service_account", "a@b", NULL, "k", NULL, NULL);
  expect_reject(j, "needs client_email and private_key");
  free(j);
  /* a damaged PEM: the message says so without quoting it */
  char *bad = strdup(key_pem);
  memcpy(bad + 40, "!!!!", 4);
  j = sa_with("service_account", "a@b", bad, "k", NULL, NULL);
  expect_reject(j, "not a PEM private key");
  free(j);
  free(bad);
  j = sa_with("service_account", "a@b", "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC", "k", NULL, NULL);
  expect_reject(j, "not a PEM private key");
  free(j);
  /* an EC key cannot sign RS256 */
  EVP_PKEY *ec = EVP_EC_gen("P-256");
  assert_non_null(ec);
  char *ecpem = pem_of(ec);
  j = sa_with("service_account", "a@b", ecpem, "k", NULL, NULL);
  expect_reject(j, "not an RSA key");
  free(j);
  free(ecpem);
  EVP_PKEY_free(ec);
  /* the signed assertion must not go in clear or to a non-loopback http host */
  j = sa_with("service_account", "a@b", key_pem, "k", "http://oauth2.example.com/token", NULL);
  expect_reject(j, "token_uri must be an https URL");
  free(j);
  j = sa_with("service_account", "a@b", key_pem, "k", "http://127.0.0.1.evil.example/token", NULL);
  expect_reject(j, "token_uri must be an https URL");
  free(j);
  j = sa_with("service_account", "a\"b@c", key_pem, "k", NULL, NULL);
  expect_reject(j, "invalid characters");
  free(j);
  assert_int_equal(ERR_peek_error(), 0); /* no stale OpenSSL errors left behind */
}

/* ---- JWT ----------------------------------------------------------------------------- */

static void test_jwt(void **st) {
  (void)st;
  gcp_sa *sa = parse_ok(sa_json);
  buf_t out = {0};
  assert_int_equal(buf_append(&out, "prefix:", 7), 0); /* appends after what is there */
  assert_int_equal(gcp_jwt_build(sa, NOW, NULL, &out), 0);
  assert_memory_equal(out.data, "prefix:", 7);
  const char *jwt = buf_cstr(&out) + 7;
  for (const char *p = jwt; *p; p++)
    assert_true((*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                *p == '-' || *p == '_' || *p == '.');
  json_t *hdr, *claims;
  assert_true(jwt_verify(jwt, key, &hdr, &claims));
  /* header: exactly alg, typ, kid */
  json_t *want_hdr = json_pack("{s:s,s:s,s:s}", "alg", "RS256", "typ", "JWT", "kid",
                               "0123456789abcdef0123456789abcdef01234567");
  assert_true(json_equal(hdr, want_hdr));
  json_t *want = json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss",
                           "llmesh@my-proj-123.iam.gserviceaccount.com", "scope",
                           "https://www.googleapis.com/auth/cloud-platform", "aud",
                           "https://oauth2.googleapis.com/token", "iat", (json_int_t)NOW, "exp",
                           (json_int_t)NOW + 3600);
  if (!json_equal(claims, want)) {
    char *s = json_dumps(claims, 0);
    fail_msg("claims: %s", s);
  }
  json_decref(want_hdr);
  json_decref(want);
  json_decref(hdr);
  json_decref(claims);

  /* RS256 (PKCS#1 v1.5) is deterministic: the same input signs the same */
  buf_t again = {0};
  assert_int_equal(gcp_jwt_build(sa, NOW, NULL, &again), 0);
  assert_string_equal(buf_cstr(&again), jwt);
  buf_free(&again);

  /* other claims under this signature, or another key, fail verification */
  buf_t later = {0};
  assert_int_equal(gcp_jwt_build(sa, NOW + 1, NULL, &later), 0);
  const char *sig = strrchr(jwt, '.'), *lsig = strrchr(buf_cstr(&later), '.');
  later.len = (size_t)(lsig - later.data);
  assert_int_equal(buf_append(&later, sig, strlen(sig)), 0);
  assert_false(jwt_verify(buf_cstr(&later), key, &hdr, &claims));
  assert_int_equal(json_integer_value(json_object_get(claims, "iat")), NOW + 1);
  json_decref(hdr);
  json_decref(claims);
  buf_free(&later);
  EVP_PKEY *other = EVP_RSA_gen(2048);
  assert_false(jwt_verify(jwt, other, &hdr, &claims));
  json_decref(hdr);
  json_decref(claims);
  EVP_PKEY_free(other);

  /* a custom scope; no private_key_id → no kid */
  char *j = sa_with("service_account", "x@y", key_pem, NULL, NULL, NULL);
  gcp_sa *nokid = parse_ok(j);
  buf_reset(&out);
  assert_int_equal(gcp_jwt_build(nokid, NOW, "https://www.googleapis.com/auth/x", &out), 0);
  assert_true(jwt_verify(buf_cstr(&out), key, &hdr, &claims));
  assert_null(json_object_get(hdr, "kid"));
  assert_int_equal(json_object_size(hdr), 2);
  assert_string_equal(json_string_value(json_object_get(claims, "scope")),
                      "https://www.googleapis.com/auth/x");
  json_decref(hdr);
  json_decref(claims);
  gcp_sa_free(nokid);
  free(j);
  buf_free(&out);
  gcp_sa_free(sa);
}

static void test_token_request(void **st) {
  (void)st;
  gcp_sa *sa = parse_ok(sa_json);
  prov_request r = {0};
  assert_int_equal(gcp_token_request(sa, NOW, &r), 0);
  assert_string_equal(buf_cstr(&r.url), "https://oauth2.googleapis.com/token");
  assert_int_equal(r.nheaders, 2);
  assert_string_equal(r.headers.data, "content-type: application/x-www-form-urlencoded");
  assert_string_equal(r.headers.data + strlen(r.headers.data) + 1, "accept: application/json");
  const char *prefix =
      "grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion=";
  const char *body = buf_cstr(&r.body);
  assert_memory_equal(body, prefix, strlen(prefix));
  json_t *hdr, *claims;
  assert_true(jwt_verify(body + strlen(prefix), key, &hdr, &claims));
  assert_string_equal(json_string_value(json_object_get(claims, "aud")), gcp_sa_token_uri(sa));
  assert_string_equal(json_string_value(json_object_get(claims, "scope")), GCP_SCOPE_CLOUD);
  json_decref(hdr);
  json_decref(claims);
  prov_request_free(&r);
  gcp_sa_free(sa);
}

/* ---- token endpoint answers ---------------------------------------------------------- */

static void test_token_parse(void **st) {
  (void)st;
  char tok[GCP_TOKEN_MAX], err[256];
  uint64_t exp = 0;
  const char *ok = "{\"access_token\":\"ya29.c.b0AXv0zTNs-abc_123\",\"expires_in\":3599,"
                   "\"token_type\":\"Bearer\"}";
  assert_int_equal(gcp_token_parse(ok, strlen(ok), NOW, tok, sizeof tok, &exp, err, sizeof err), 0);
  assert_string_equal(tok, "ya29.c.b0AXv0zTNs-abc_123");
  assert_int_equal(exp, NOW + 3599);
  /* token_type may be absent or any case */
  const char *lower = "{\"access_token\":\"t\",\"expires_in\":3600,\"token_type\":\"bearer\"}";
  assert_int_equal(gcp_token_parse(lower, strlen(lower), NOW, tok, sizeof tok, &exp, NULL, 0), 0);
  const char *notype = "{\"access_token\":\"t2\",\"expires_in\":3600.0}";
  assert_int_equal(gcp_token_parse(notype, strlen(notype), NOW, tok, sizeof tok, &exp, NULL, 0), 0);
  assert_string_equal(tok, "t2");
  assert_int_equal(exp, NOW + 3600);

  static const struct {
    const char *body;
    int rc;
    const char *msg; /* part of err */
  } bad[] = {
      {"{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT Signature.\"}", -EACCES,
       "invalid_grant: Invalid JWT Signature."},
      {"{\"error\":\"invalid_grant\",\"error_description\":\"Invalid JWT: Token must be a short-lived "
       "token (60 minutes) and in a reasonable timeframe. Check your iat and exp values\"}",
       -EACCES, "Check your iat"},
      {"{\"error\":\"unauthorized_client\"}", -EACCES, "unauthorized_client"},
      {"{\"error\":{\"code\":403,\"message\":\"denied\",\"status\":\"PERMISSION_DENIED\"}}", -EACCES,
       "PERMISSION_DENIED: denied"},
      {"<html>502 Bad Gateway</html>", -EPROTO, "not a JSON object"},
      {"", -EPROTO, "not a JSON object"},
      {"{\"expires_in\":3600}", -EPROTO, "no usable access_token"},
      {"{\"access_token\":\"\",\"expires_in\":3600}", -EPROTO, "no usable access_token"},
      {"{\"access_token\":\"a b\",\"expires_in\":3600}", -EPROTO, "no usable access_token"},
      {"{\"access_token\":\"a\\r\\nx: y\",\"expires_in\":3600}", -EPROTO, "no usable access_token"},
      {"{\"access_token\":\"a\",\"expires_in\":3600,\"token_type\":\"MAC\"}", -EPROTO, "not Bearer"},
      {"{\"access_token\":\"a\"}", -EPROTO, "expires_in"},
      {"{\"access_token\":\"a\",\"expires_in\":\"3600\"}", -EPROTO, "expires_in"},
      {"{\"access_token\":\"a\",\"expires_in\":-5}", -EPROTO, "expires_in"},
      {"{\"access_token\":\"a\",\"expires_in\":300}", -EPROTO, "expires_in"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    err[0] = '\0';
    strcpy(tok, "unchanged");
    exp = 42;
    int rc = gcp_token_parse(bad[i].body, strlen(bad[i].body), NOW, tok, sizeof tok, &exp, err,
                             sizeof err);
    if (rc != bad[i].rc || !strstr(err, bad[i].msg))
      fail_msg("case %zu: rc %d err '%s'", i, rc, err);
    assert_string_equal(tok, "unchanged");
    assert_int_equal(exp, 42);
  }
  /* does not fit: -ENOSPC, nothing written */
  char small[4] = "xyz";
  assert_int_equal(gcp_token_parse(ok, strlen(ok), NOW, small, sizeof small, &exp, err, sizeof err),
                   -ENOSPC);
  assert_string_equal(small, "xyz");
}

/* ---- cache timeline ------------------------------------------------------------------ */

static void test_cache(void **st) {
  (void)st;
  gcp_token_cache c;
  gcp_cache_init(&c);
  uint64_t t = NOW;
  /* empty: no token, refresh at once, single flight */
  assert_null(gcp_cache_get(&c, t));
  assert_true(gcp_cache_needs_refresh(&c, t));
  assert_true(gcp_cache_refresh_at(&c, t) <= t);
  assert_int_equal(gcp_cache_fetch_begin(&c), 0);
  assert_int_equal(gcp_cache_fetch_begin(&c), -EBUSY);
  assert_false(gcp_cache_needs_refresh(&c, t));
  assert_int_equal(gcp_cache_refresh_at(&c, t), UINT64_MAX);
  /* the fetch fails: backoff 1 s, 2 s, 4 s ... capped at 60 s */
  gcp_cache_fetch_failed(&c, t);
  assert_null(gcp_cache_get(&c, t));
  assert_false(gcp_cache_needs_refresh(&c, t));
  assert_int_equal(gcp_cache_refresh_at(&c, t), t + 1);
  assert_true(gcp_cache_needs_refresh(&c, t + 1));
  uint64_t want[] = {2, 4, 8, 16, 32, 60, 60};
  for (size_t i = 0; i < ARRAY_SIZE(want); i++) {
    assert_int_equal(gcp_cache_fetch_begin(&c), 0);
    gcp_cache_fetch_failed(&c, t);
    assert_int_equal(gcp_cache_refresh_at(&c, t), t + want[i]);
  }
  /* success: fresh token valid for an hour, backoff cleared */
  assert_int_equal(gcp_cache_fetch_begin(&c), 0);
  assert_int_equal(gcp_cache_set(&c, "ya29.one", t + 3600), 0);
  assert_int_equal(c.failures, 0);
  assert_string_equal(gcp_cache_get(&c, t), "ya29.one");
  assert_false(gcp_cache_needs_refresh(&c, t));
  assert_int_equal(gcp_cache_refresh_at(&c, t), t + 3600 - GCP_REFRESH_BEFORE_S);
  assert_false(gcp_cache_needs_refresh(&c, t + 2999));
  /* proactive window (exp - 600 s): refresh while the token is still handed out */
  assert_true(gcp_cache_needs_refresh(&c, t + 3000));
  assert_string_equal(gcp_cache_get(&c, t + 3000), "ya29.one");
  assert_int_equal(gcp_cache_fetch_begin(&c), 0);
  /* that refresh fails: the old token keeps serving, retry after the backoff */
  gcp_cache_fetch_failed(&c, t + 3000);
  assert_string_equal(gcp_cache_get(&c, t + 3000), "ya29.one");
  assert_false(gcp_cache_needs_refresh(&c, t + 3000));
  assert_true(gcp_cache_needs_refresh(&c, t + 3001));
  /* the margin: with GCP_MIN_VALID_S or less left, the token is not handed out */
  assert_string_equal(gcp_cache_get(&c, t + 3600 - GCP_MIN_VALID_S - 1), "ya29.one");
  assert_null(gcp_cache_get(&c, t + 3600 - GCP_MIN_VALID_S));
  assert_null(gcp_cache_get(&c, t + 3600));
  assert_null(gcp_cache_get(&c, t + 99999));
  assert_true(gcp_cache_needs_refresh(&c, t + 3600));
  /* a later success replaces it */
  assert_int_equal(gcp_cache_fetch_begin(&c), 0);
  assert_int_equal(gcp_cache_set(&c, "ya29.two", t + 3400 + 3600), 0);
  assert_string_equal(gcp_cache_get(&c, t + 3400), "ya29.two");
  assert_false(gcp_cache_needs_refresh(&c, t + 3400));
  /* a token that does not fit leaves the cache as it was */
  char *huge = malloc(GCP_TOKEN_MAX + 1);
  memset(huge, 'a', GCP_TOKEN_MAX);
  huge[GCP_TOKEN_MAX] = '\0';
  assert_int_equal(gcp_cache_set(&c, huge, t + 9999), -ENOSPC);
  assert_string_equal(gcp_cache_get(&c, t + 3400), "ya29.two");
  free(huge);
  /* a 401 on a still-valid token: dropped, refresh at once */
  gcp_cache_drop(&c);
  assert_null(gcp_cache_get(&c, t + 3400));
  assert_true(gcp_cache_needs_refresh(&c, t + 3400));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sa_parse),  cmocka_unit_test(test_sa_reject),
      cmocka_unit_test(test_jwt),       cmocka_unit_test(test_token_request),
      cmocka_unit_test(test_token_parse), cmocka_unit_test(test_cache),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
