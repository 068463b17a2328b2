/* gcp_token.c — service-account JSON → RS256 JWT → OAuth2 access token, and the token
 * cache state machine (gcp_token.h). OpenSSL 3 as in integration-notes §7.3: the PEM is
 * parsed once into an EVP_PKEY, SHA-256 is fetched once per service account, JWT
 * segments are base64url without padding. */
#include "gcp_token.h"

#include <errno.h>
#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define GCP_JWT_GRANT "urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer" /* form-encoded */
#define GCP_MIN_LIFETIME_S (GCP_REFRESH_BEFORE_S + 60) /* shorter tokens would refresh in a loop */

struct gcp_sa {
  char *email;     /* client_email: JWT iss */
  char *key_id;    /* private_key_id: JWT header kid, "" when absent */
  char *token_uri; /* JWT aud and where it is exchanged */
  char *project;   /* project_id, "" when absent */
  EVP_PKEY *pkey;  /* the RSA private key, parsed once */
  EVP_MD *sha256;  /* fetched once (an implicit fetch per use locks, §7.2) */
};

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || !errlen) return;
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
}

/* ---- service account ----------------------------------------------------------------- */

static const char *str_of(json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

/* Never prompt for a passphrase: service-account keys are not encrypted. */
static int no_passphrase(char *buf, int size, int rwflag, void *u) {
  (void)buf, (void)size, (void)rwflag, (void)u;
  return 0;
}

/* https://..., or http:// to a loopback host (mock token endpoints in tests). The JWT is a
 * bearer credential for an hour: it must not travel in clear or to an unexpected host. */
static int token_uri_ok(const char *u) {
  if (!strncasecmp(u, "https://", 8)) return u[8] != '\0';
  return !strncasecmp(u, "http://127.0.0.1:", 17) || !strncasecmp(u, "http://127.0.0.1/", 17) ||
         !strncasecmp(u, "http://localhost:", 17) || !strncasecmp(u, "http://localhost/", 17) ||
         !strncasecmp(u, "http://[::1]:", 13) || !strncasecmp(u, "http://[::1]/", 13);
}

static int sa_load_key(gcp_sa *sa, json_t *pem, char *err, size_t errlen) {
  BIO *bio = BIO_new_mem_buf(json_string_value(pem), (int)json_string_length(pem));
  if (!bio) return set_err(err, errlen, "out of memory"), -ENOMEM;
  sa->pkey = PEM_read_bio_PrivateKey(bio, NULL, no_passphrase, NULL);
  BIO_free(bio);
  ERR_clear_error(); /* leave no stale error on the thread's queue (curl's TLS reads it) */
  if (!sa->pkey) {
    set_err(err, errlen, "service account private_key is not a PEM private key");
    return -EINVAL;
  }
  if (!EVP_PKEY_is_a(sa->pkey, "RSA")) {
    set_err(err, errlen, "service account private_key is not an RSA key (RS256 needs one)");
    return -EINVAL;
  }
  if (!(sa->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) {
    ERR_clear_error();
    set_err(err, errlen, "OpenSSL has no SHA256");
    return -EIO;
  }
  return 0;
}

gcp_sa *gcp_sa_parse(const char *json, size_t len, char *err, size_t errlen) {
  json_t *doc = json_loadb(json ? json : "", json ? len : 0, 0, NULL);
  gcp_sa *sa = calloc(1, sizeof *sa);
  const char *type, *email, *kid, *uri, *proj;
  json_t *pem;
  if (!sa) { set_err(err, errlen, "out of memory"); goto fail; }
  if (!json_is_object(doc)) {
    set_err(err, errlen, "service account credentials are not a JSON object");
    goto fail;
  }
  type = str_of(doc, "type");
  if (!type || strcmp(type, "service_account")) {
    set_err(err, errlen, "credentials are not a service account key (type '%.40s')",
            type ? type : "");
    goto fail;
  }
  email = str_of(doc, "client_email");
  pem = json_object_get(doc, "private_key");
  if (!email || !*email || !json_is_string(pem) || !json_string_length(pem)) {
    set_err(err, errlen, "service account key needs client_email and private_key");
    goto fail;
  }
  kid = str_of(doc, "private_key_id");
  uri = str_of(doc, "token_uri");
  proj = str_of(doc, "project_id");
  if (!uri || !*uri) uri = GCP_TOKEN_URI;
  if (!token_uri_ok(uri)) {
    set_err(err, errlen, "service account token_uri must be an https URL");
    goto fail;
  }
  if (strpbrk(email, "\"\\\r\n") || (kid && strpbrk(kid, "\"\\\r\n"))) {
    set_err(err, errlen, "service account client_email or private_key_id has invalid characters");
    goto fail;
  }
  sa->email = strdup(email);
  sa->key_id = strdup(kid ? kid : "");
  sa->token_uri = strdup(uri);
  sa->project = strdup(proj ? proj : "");
  if (!sa->email || !sa->key_id || !sa->token_uri || !sa->project) {
    set_err(err, errlen, "out of memory");
    goto fail;
  }
  if (sa_load_key(sa, pem, err, errlen)) goto fail;
  /* the PEM text lives on only in the caller's buffer: wipe the parsed copy */
  OPENSSL_cleanse((char *)json_string_value(pem), json_string_length(pem));
  json_decref(doc);
  return sa;
fail:
  if (json_is_string(pem = json_object_get(doc, "private_key")))
    OPENSSL_cleanse((char *)json_string_value(pem), json_string_length(pem));
  json_decref(doc);
  gcp_sa_free(sa);
  return NULL;
}

void gcp_sa_free(gcp_sa *sa) {
  if (!sa) return;
  EVP_PKEY_free(sa->pkey);
  EVP_MD_free(sa->sha256);
  free(sa->email);
  free(sa->key_id);
  free(sa->token_uri);
  free(sa->project);
  free(sa);
}

const char *gcp_sa_email(const gcp_sa *sa) { return sa->email; }
const char *gcp_sa_project(const gcp_sa *sa) { return sa->project; }
const char *gcp_sa_token_uri(const gcp_sa *sa) { return sa->token_uri; }

/* ---- JWT ----------------------------------------------------------------------------- */

/* Appends base64url(p[0..n)) without padding. */
static int b64url_append(buf_t *out, const unsigned char *p, size_t n) {
  size_t need = 4 * ((n + 2) / 3) + 1;
  if (n > (size_t)INT32_MAX / 2) return -ENOMEM;
  unsigned char *tmp = malloc(need);
  if (!tmp) return -ENOMEM;
  int k = EVP_EncodeBlock(tmp, p, (int)n);
  while (k > 0 && tmp[k - 1] == '=') k--;
  for (int i = 0; i < k; i++)
    if (tmp[i] == '+') tmp[i] = '-';
    else if (tmp[i] == '/') tmp[i] = '_';
  int rc = buf_append(out, tmp, (size_t)k) ? -ENOMEM : 0;
  free(tmp);
  return rc;
}

/* Appends base64url(compact JSON of j); steals j. */
static int b64url_json(buf_t *out, json_t *j) {
  char *s = j ? json_dumps(j, JSON_COMPACT) : NULL;
  int rc = s ? b64url_append(out, (const unsigned char *)s, strlen(s)) : -ENOMEM;
  free(s);
  json_decref(j);
  return rc;
}

/* RS256 = RSASSA-PKCS1-v1_5 with SHA-256 (the default padding of an RSA key). */
static int rs256_append(gcp_sa *sa, const char *in, size_t n, buf_t *out) {
  EVP_MD_CTX *mctx = EVP_MD_CTX_new();
  unsigned char *sig = NULL;
  size_t siglen = 0;
  int rc = -EIO;
  if (!mctx) return -ENOMEM;
  if (EVP_DigestSignInit(mctx, NULL, sa->sha256, NULL, sa->pkey) == 1 &&
      EVP_DigestSign(mctx, NULL, &siglen, (const unsigned char *)in, n) == 1 &&
      (sig = malloc(siglen)) &&
      EVP_DigestSign(mctx, sig, &siglen, (const unsigned char *)in, n) == 1)
    rc = b64url_append(out, sig, siglen);
  else if (siglen && !sig)
    rc = -ENOMEM;
  ERR_clear_error();
  free(sig);
  EVP_MD_CTX_free(mctx);
  return rc;
}

int gcp_jwt_build(gcp_sa *sa, uint64_t now_s, const char *scope, buf_t *out) {
  size_t start = out->len;
  json_t *hdr = json_pack("{s:s,s:s}", "alg", "RS256", "typ", "JWT");
  if (hdr && *sa->key_id && json_object_set_new(hdr, "kid", json_string(sa->key_id))) {
    json_decref(hdr);
    hdr = NULL;
  }
  json_t *claims = json_pack("{s:s,s:s,s:s,s:I,s:I}", "iss", sa->email, "scope",
                             scope ? scope : GCP_SCOPE_CLOUD, "aud", sa->token_uri, "iat",
                             (json_int_t)now_s, "exp", (json_int_t)(now_s + GCP_JWT_LIFETIME_S));
  int rc = b64url_json(out, hdr);
  if (rc) { json_decref(claims); goto fail; }
  if ((rc = buf_append(out, ".", 1) ? -ENOMEM : 0)) { json_decref(claims); goto fail; }
  if ((rc = b64url_json(out, claims))) goto fail;
  size_t signed_len = out->len - start;
  if ((rc = buf_append(out, ".", 1) ? -ENOMEM : 0)) goto fail;
  /* out->data may move while the signature is appended: sign a copy of the input */
  char *input = malloc(signed_len);
  if (!input) { rc = -ENOMEM; goto fail; }
  memcpy(input, out->data + start, signed_len);
  rc = rs256_append(sa, input, signed_len, out);
  free(input);
  if (!rc) return 0;
fail:
  out->len = start;
  return rc;
}

int gcp_token_request(gcp_sa *sa, uint64_t now_s, prov_request *out) {
  int rc = -ENOMEM;
  if (buf_append(&out->url, sa->token_uri, strlen(sa->token_uri)) || !buf_cstr(&out->url) ||
      prov_request_header(out, "content-type", "application/x-www-form-urlencoded") ||
      prov_request_header(out, "accept", "application/json") ||
      buf_printf(&out->body, "grant_type=%s&assertion=", GCP_JWT_GRANT))
    goto fail;
  /* base64url and '.' are unreserved: the JWT needs no form encoding */
  if ((rc = gcp_jwt_build(sa, now_s, GCP_SCOPE_CLOUD, &out->body))) goto fail;
  return 0;
fail:
  prov_request_free(out);
  return rc;
}

/* ---- token endpoint answer ----------------------------------------------------------- */

/* Visible ASCII only: the token goes into an Authorization header as is. */
static int token_chars_ok(const char *t) {
  for (; *t; t++)
    if ((unsigned char)*t <= 0x20 || (unsigned char)*t >= 0x7f) return 0;
  return 1;
}

int gcp_token_parse(const char *body, size_t len, uint64_t now_s, char *token, size_t cap,
                    uint64_t *expires_at_s, char *err, size_t errlen) {
  json_t *doc = json_loadb(body ? body : "", body ? len : 0, 0, NULL), *e, *exp;
  const char *tok, *type;
  int rc = -EPROTO;
  if (!json_is_object(doc)) {
    set_err(err, errlen, "token endpoint answer is not a JSON object");
    goto done;
  }
  if ((e = json_object_get(doc, "error")) && !json_is_null(e)) {
    /* OAuth2 {"error":"invalid_grant","error_description":"..."}; tolerate a
     * google.rpc.Status object as well */
    const char *code = json_is_string(e) ? json_string_value(e) : str_of(e, "status");
    const char *desc = json_is_string(e) ? str_of(doc, "error_description") : str_of(e, "message");
    set_err(err, errlen, "token endpoint refused the service account: %.64s%s%.200s",
            code ? code : "error", desc ? ": " : "", desc ? desc : "");
    rc = -EACCES;
    goto done;
  }
  tok = str_of(doc, "access_token");
  type = str_of(doc, "token_type");
  exp = json_object_get(doc, "expires_in");
  if (!tok || !*tok || !token_chars_ok(tok)) {
    set_err(err, errlen, "token endpoint answer has no usable access_token");
    goto done;
  }
  if (type && strcasecmp(type, "Bearer")) {
    set_err(err, errlen, "token endpoint answered token_type '%.32s', not Bearer", type);
    goto done;
  }
  double secs = json_is_integer(exp) ? (double)json_integer_value(exp)
                : json_is_real(exp)  ? json_real_value(exp)
                                     : -1;
  if (secs < GCP_MIN_LIFETIME_S || secs > 7 * 86400.0) {
    set_err(err, errlen, "token endpoint answer has no usable expires_in (need %d..604800 s)",
            GCP_MIN_LIFETIME_S);
    goto done;
  }
  if (strlen(tok) + 1 > cap) {
    set_err(err, errlen, "access token of %zu bytes does not fit", strlen(tok));
    rc = -ENOSPC;
    goto done;
  }
  memcpy(token, tok, strlen(tok) + 1);
  *expires_at_s = now_s + (uint64_t)secs;
  rc = 0;
done:
  json_decref(doc);
  return rc;
}

/* ---- cache --------------------------------------------------------------------------- */

void gcp_cache_init(gcp_token_cache *c) { memset(c, 0, sizeof *c); }

const char *gcp_cache_get(const gcp_token_cache *c, uint64_t now_s) {
  return c->token[0] && c->expires_at_s > now_s + GCP_MIN_VALID_S ? c->token : NULL;
}

uint64_t gcp_cache_refresh_at(const gcp_token_cache *c, uint64_t now_s) {
  (void)now_s;
  if (c->fetching) return UINT64_MAX;
  uint64_t at = 0; /* no token: at once */
  if (c->token[0] && c->expires_at_s > GCP_REFRESH_BEFORE_S)
    at = c->expires_at_s - GCP_REFRESH_BEFORE_S;
  return at > c->retry_at_s ? at : c->retry_at_s;
}

int gcp_cache_needs_refresh(const gcp_token_cache *c, uint64_t now_s) {
  return now_s >= gcp_cache_refresh_at(c, now_s);
}

int gcp_cache_fetch_begin(gcp_token_cache *c) {
  if (c->fetching) return -EBUSY;
  c->fetching = 1;
  return 0;
}

int gcp_cache_set(gcp_token_cache *c, const char *token, uint64_t expires_at_s) {
  size_t n = strlen(token);
  if (n + 1 > sizeof c->token) return -ENOSPC;
  memcpy(c->token, token, n + 1);
  c->expires_at_s = expires_at_s;
  c->fetching = 0;
  c->failures = 0;
  c->retry_at_s = 0;
  return 0;
}

void gcp_cache_fetch_failed(gcp_token_cache *c, uint64_t now_s) {
  uint64_t delay = GCP_BACKOFF_MIN_S;
  for (uint32_t i = 0; i < c->failures && delay < GCP_BACKOFF_MAX_S; i++) delay *= 2;
  if (delay > GCP_BACKOFF_MAX_S) delay = GCP_BACKOFF_MAX_S;
  c->fetching = 0;
  if (c->failures < UINT32_MAX) c->failures++;
  c->retry_at_s = now_s + delay;
}

void gcp_cache_drop(gcp_token_cache *c) {
  OPENSSL_cleanse(c->token, sizeof c->token);
  c->expires_at_s = 0;
}
