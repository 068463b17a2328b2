/* mock_vertex.c — Vertex AI: POST /v1/projects/P/locations/L/publishers/google/models/M:
 * generateContent | :streamGenerateContent (the Gemini answers), .../publishers/anthropic/
 * models/M:rawPredict | :streamRawPredict (the Anthropic answers; body without "model", with
 * "anthropic_version":"vertex-2023-10-16"). Auth: `Authorization: Bearer <token>` where the
 * token was issued by this mock's POST /token (JWT-bearer grant; the JWT's shape and claims
 * are checked, its RS256 signature is not) and has not expired or been revoked; else 401
 * google.rpc.Status UNAUTHENTICATED. POST /mock/token sets expires_in, a failure status, or
 * revokes every token issued so far. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "mock.h"
#include "util.h"

#define VERTEX_ANTHROPIC_VERSION "vertex-2023-10-16"
#define TOKEN_PREFIX "mock-token-"
#define JWT_GRANT "urn:ietf:params:oauth:grant-type:jwt-bearer"
#define SCOPE_CLOUD "https://www.googleapis.com/auth/cloud-platform"

/* Tokens this mock issued: number n (1-based) expires at exp[n-1] (unix s). Kept across
 * /mock/reset so a gateway's cached token stays valid between test cases. */
static struct {
  uint64_t *exp;      /* expiry per token number, unix s */
  uint64_t n;         /* tokens ever issued */
  uint64_t cap;       /* entries allocated in exp */
  uint64_t revoked;   /* tokens numbered <= this are refused */
  long expires_in;    /* expires_in of the next tokens, s (default 3600) */
  int fail;           /* token endpoint answers this status; 0 = works */
} T = {.expires_in = 3600};

static mock_format vx_gemini, vx_anthropic;
static mock_endpoint vx_generate, vx_stream, vx_raw;

static const char *vertex_auth(const hs_request *req, char *buf, size_t cap) {
  return hs_header_get(req, "authorization");
}

/* ".../models/claude-sonnet-4@20250514:rawPredict" → "claude-sonnet-4@20250514". */
static const char *vertex_path_model(const hs_request *req, char *buf, size_t cap) {
  const char *m = strstr(req->path, "/models/"), *colon = strrchr(req->path, ':');
  if (!m || !colon || colon < m + 8) return NULL;
  size_t n = (size_t)(colon - (m + 8));
  if (n >= cap) n = cap - 1;
  memcpy(buf, m + 8, n);
  buf[n] = '\0';
  return buf;
}

/* NULL when the bearer token is one we issued and still valid, else why not. */
static const char *token_problem(const hs_request *req, const char **reason) {
  const char *a = hs_header_get(req, "authorization");
  *reason = "CREDENTIALS_MISSING";
  if (!a || strncasecmp(a, "Bearer ", 7) != 0)
    return "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie "
           "or other valid authentication credential.";
  const char *t = a + 7;
  *reason = "ACCESS_TOKEN_TYPE_UNSUPPORTED";
  if (strncmp(t, TOKEN_PREFIX, sizeof TOKEN_PREFIX - 1) != 0)
    return "Request had invalid authentication credentials. Expected OAuth 2 access token (mock: not issued by "
           "this mock's /token).";
  char *end;
  unsigned long long n = strtoull(t + sizeof TOKEN_PREFIX - 1, &end, 10);
  if (*end || n == 0 || n > T.n)
    return "Request had invalid authentication credentials. (mock: unknown access token)";
  *reason = "ACCESS_TOKEN_EXPIRED";
  if (n <= T.revoked) return "Request had invalid authentication credentials. (mock: access token revoked)";
  if ((uint64_t)time(NULL) >= T.exp[n - 1]) return "Request had invalid authentication credentials. (mock: access token expired)";
  return NULL;
}

static int token_ok(mock_call *call) {
  const char *reason, *why = token_problem(call->req, &reason);
  if (!why) return 0;
  char d[256];
  snprintf(d, sizeof d,
           "{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"%s\",\"domain\":\"googleapis.com\","
           "\"metadata\":{\"service\":\"aiplatform.googleapis.com\"}}",
           reason);
  return gemini_refuse(call, 401, why, d);
}

static int generate_accept(mock_call *call, json_t *root) {
  return token_ok(call) < 0 ? -1 : gemini_generate_check(call, root, 0);
}

static int stream_accept(mock_call *call, json_t *root) {
  return token_ok(call) < 0 ? -1 : gemini_generate_check(call, root, 1);
}

static int raw_accept(mock_call *call, json_t *root) {
  if (token_ok(call) < 0) return -1;
  snprintf(call->request_id, sizeof call->request_id, "req_vrtx_mock_%llu", (unsigned long long)call->seq);
  if (!json_is_object(root))
    return anthropic_refuse(call, 400, "invalid_request_error", "There was an error parsing the body of your request (invalid JSON)");
  json_t *ver = json_object_get(root, "anthropic_version"), *msgs = json_object_get(root, "messages");
  if (json_object_get(root, "model"))
    return anthropic_refuse(call, 400, "invalid_request_error", "model: Extra inputs are not permitted (Vertex names the model in the URL)");
  if (!json_is_string(ver) || strcmp(json_string_value(ver), VERTEX_ANTHROPIC_VERSION) != 0)
    return anthropic_refuse(call, 400, "invalid_request_error", "anthropic_version: must be \\\"" VERTEX_ANTHROPIC_VERSION "\\\"");
  if (!json_is_integer(json_object_get(root, "max_tokens")))
    return anthropic_refuse(call, 400, "invalid_request_error", "max_tokens: Field required");
  if (!json_is_array(msgs) || !json_array_size(msgs))
    return anthropic_refuse(call, 400, "invalid_request_error", "messages: at least one message is required");
  char buf[512];
  const char *model = vertex_path_model(call->req, buf, sizeof buf);
  call->model_esc = esc_dup(model ? model : "", model ? strlen(model) : 0);
  int wants = json_is_true(json_object_get(root, "stream"));
  call->stream = strstr(call->req->path, ":streamRawPredict") ? 1 : wants;
  return 0;
}

void vertex_init(void) {
  vx_gemini = mock_gemini;
  vx_gemini.name = "vertex";
  vx_gemini.auth = vertex_auth;
  vx_anthropic = mock_anthropic;
  vx_anthropic.name = "vertex";
  vx_anthropic.auth = vertex_auth;
  vx_anthropic.path_model = vertex_path_model;
  vx_generate = (mock_endpoint){&vx_gemini, generate_accept, mock_gemini_generate.whole};
  vx_stream = (mock_endpoint){&vx_gemini, stream_accept, mock_gemini_generate.whole};
  vx_raw = (mock_endpoint){&vx_anthropic, raw_accept, mock_anthropic_messages.whole};
}

const mock_endpoint *vertex_route(const char *path) {
  if (strncmp(path, "/v1/projects/", 13) != 0) return NULL;
  const char *loc = strstr(path + 13, "/locations/"), *pub = loc ? strstr(loc + 11, "/publishers/") : NULL;
  if (!pub || loc == path + 13 || pub == loc + 11) return NULL;
  pub += 12;
  const char *colon = strrchr(pub, ':');
  if (!colon) return NULL;
  if (strncmp(pub, "google/models/", 14) == 0 && colon > pub + 14) {
    if (strcmp(colon, ":generateContent") == 0) return &vx_generate;
    if (strcmp(colon, ":streamGenerateContent") == 0) return &vx_stream;
  } else if (strncmp(pub, "anthropic/models/", 17) == 0 && colon > pub + 17) {
    if (strcmp(colon, ":rawPredict") == 0 || strcmp(colon, ":streamRawPredict") == 0) return &vx_raw;
  }
  return NULL;
}

/* ---- token endpoint ------------------------------------------------------------ */

static void oauth_error(hs_request *req, int status, const char *error, const char *desc) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"error\":\"%s\",\"error_description\":\"%s\"}", error, esc_tmp(desc, strlen(desc)));
  hs_respond(req, status, "application/json", NULL, 0, M.out.p, M.out.len);
  log_request(req, status, "token");
}

/* Form value of name, %XX and '+' decoded, into a malloc'd string; NULL if absent. */
static char *form_get(const char *body, size_t len, const char *name) {
  size_t nl = strlen(name);
  for (const char *p = body, *end = body + len; p < end;) {
    const char *amp = memchr(p, '&', (size_t)(end - p)), *e = amp ? amp : end;
    if ((size_t)(e - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
      char *o = malloc((size_t)(e - p) + 1), *w = o;
      if (!o) abort();
      for (const char *q = p + nl + 1; q < e; q++) {
        if (*q == '%' && q + 2 < e) {
          char h[3] = {q[1], q[2], 0};
          *w++ = (char)strtol(h, NULL, 16);
          q += 2;
        } else {
          *w++ = *q == '+' ? ' ' : *q;
        }
      }
      *w = '\0';
      return o;
    }
    p = amp ? amp + 1 : end;
  }
  return NULL;
}

/* base64url (no padding) of s[0..n) → JSON object, NULL if not. */
static json_t *b64url_json(const char *s, size_t n) {
  unsigned char *o = malloc(n + 1);
  if (!o) abort();
  size_t ol = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (size_t i = 0; i < n; i++) {
    char c = s[i];
    int v = c >= 'A' && c <= 'Z' ? c - 'A' : c >= 'a' && c <= 'z' ? c - 'a' + 26 : c >= '0' && c <= '9' ? c - '0' + 52
          : c == '-' ? 62 : c == '_' ? 63 : -1;
    if (v < 0) { free(o); return NULL; }
    acc = acc << 6 | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      o[ol++] = (unsigned char)(acc >> bits);
    }
  }
  json_t *j = json_loadb((const char *)o, ol, 0, NULL);
  free(o);
  if (j && !json_is_object(j)) { json_decref(j); j = NULL; }
  return j;
}

/* NULL when the JWT assertion is acceptable for this token URL, else why not. */
static const char *check_assertion(hs_request *req, const char *jwt) {
  const char *d1 = strchr(jwt, '.'), *d2 = d1 ? strchr(d1 + 1, '.') : NULL;
  if (!d1 || !d2 || strchr(d2 + 1, '.') || d1 == jwt || d2 == d1 + 1 || !d2[1])
    return "assertion is not a JWT (three base64url parts)";
  for (const char *p = d2 + 1; *p; p++)
    if (!strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", *p))
      return "JWT signature is not base64url";
  static char why[256];
  json_t *h = b64url_json(jwt, (size_t)(d1 - jwt)), *c = b64url_json(d1 + 1, (size_t)(d2 - d1 - 1));
  const char *r = NULL;
  const char *alg = json_string_value(json_object_get(h, "alg")), *iss = json_string_value(json_object_get(c, "iss"));
  const char *scope = json_string_value(json_object_get(c, "scope")), *aud = json_string_value(json_object_get(c, "aud"));
  json_t *iat = json_object_get(c, "iat"), *exp = json_object_get(c, "exp");
  long long now = (long long)time(NULL);
  const char *host = hs_header_get(req, "host");
  if (!h) r = "JWT header is not base64url JSON";
  else if (!c) r = "JWT claims are not base64url JSON";
  else if (!alg || strcmp(alg, "RS256") != 0) r = "JWT alg must be RS256";
  else if (!iss || !*iss) r = "JWT has no iss";
  else if (!scope || !strstr(scope, SCOPE_CLOUD)) r = "JWT scope must contain " SCOPE_CLOUD;
  else if (!json_is_integer(iat) || !json_is_integer(exp)) r = "JWT iat and exp must be integers";
  else if (json_integer_value(iat) > now + 300 || json_integer_value(iat) < now - 3600) r = "JWT iat is not now (clock skew > 5 min)";
  else if (json_integer_value(exp) <= json_integer_value(iat) || json_integer_value(exp) - json_integer_value(iat) > 3600 ||
           json_integer_value(exp) <= now)
    r = "JWT exp must be after iat and now, at most 3600 s after iat";
  else if (!aud) r = "JWT has no aud";
  else {
    /* aud = scheme://{Host}{path}: the URL the client used */
    const char *a = strstr(aud, "://");
    const char *ap = a ? strchr(a + 3, '/') : NULL;
    if (!a || !ap || strcmp(ap, req->path) != 0 || (host && (strlen(host) != (size_t)(ap - a - 3) ||
                                                            strncasecmp(a + 3, host, strlen(host)) != 0))) {
      snprintf(why, sizeof why, "JWT aud must be this token URL (.../%s%s), got '%.120s'", host ? host : "", req->path, aud);
      r = why;
    }
  }
  json_decref(h);
  json_decref(c);
  return r;
}

void vertex_token(hs_request *req) {
  if (T.fail) {
    if (T.fail >= 500) oauth_error(req, T.fail, "internal_failure", "Token endpoint failure (scripted by the mock)");
    else oauth_error(req, T.fail, "invalid_grant", "Invalid JWT Signature. (scripted by the mock)");
    return;
  }
  char *grant = form_get(req->body, req->body_len, "grant_type");
  char *jwt = form_get(req->body, req->body_len, "assertion");
  const char *why = NULL;
  if (!grant || strcmp(grant, JWT_GRANT) != 0) {
    oauth_error(req, 400, "unsupported_grant_type", "Invalid grant_type (mock wants " JWT_GRANT ")");
  } else if (!jwt) {
    oauth_error(req, 400, "invalid_request", "Missing required parameter: assertion");
  } else if ((why = check_assertion(req, jwt))) {
    oauth_error(req, 400, "invalid_grant", why);
  } else {
    if (T.n == T.cap) {
      T.cap = T.cap ? T.cap * 2 : 64;
      T.exp = realloc(T.exp, T.cap * sizeof *T.exp);
      if (!T.exp) abort();
    }
    T.exp[T.n++] = (uint64_t)time(NULL) + (uint64_t)T.expires_in;
    M.tokens_issued++;
    M.out.len = 0;
    ob_printf(&M.out, "{\"access_token\":\"" TOKEN_PREFIX "%llu\",\"expires_in\":%ld,\"token_type\":\"Bearer\"}",
              (unsigned long long)T.n, T.expires_in);
    hs_respond(req, 200, "application/json", NULL, 0, M.out.p, M.out.len);
    log_request(req, 200, "token");
  }
  free(grant);
  free(jwt);
}

void vertex_token_control(hs_request *req) {
  json_t *o = req->body_len ? json_loadb(req->body, req->body_len, 0, NULL) : json_object();
  json_t *ei = json_object_get(o, "expires_in"), *fail = json_object_get(o, "fail");
  const char *err = !json_is_object(o) ? "expected {\"expires_in\":N,\"fail\":0|status,\"revoke\":true}"
                    : ei && (!json_is_integer(ei) || json_integer_value(ei) < 1 || json_integer_value(ei) > 604800)
                        ? "expires_in must be 1..604800"
                    : fail && (!json_is_integer(fail) || (json_integer_value(fail) != 0 &&
                                                           (json_integer_value(fail) < 400 || json_integer_value(fail) > 599)))
                        ? "fail must be 0 or an HTTP status 400..599"
                        : NULL;
  if (err) {
    openai_error(req, 400, "invalid_request_error", "invalid_value", err, NULL, 0);
  } else {
    if (ei) T.expires_in = (long)json_integer_value(ei);
    if (fail) T.fail = (int)json_integer_value(fail);
    if (json_is_true(json_object_get(o, "revoke"))) T.revoked = T.n;
    M.out.len = 0;
    ob_printf(&M.out, "{\"expires_in\":%ld,\"fail\":%d,\"tokens_issued\":%llu}", T.expires_in, T.fail,
              (unsigned long long)M.tokens_issued);
    hs_respond(req, 200, "application/json", NULL, 0, M.out.p, M.out.len);
  }
  json_decref(o);
}

void vertex_reset(void) {
  T.expires_in = 3600;
  T.fail = 0;
  M.tokens_issued = 0;
}

void vertex_free(void) {
  free(T.exp);
  T.exp = NULL;
}
