/* azure.c — Azure OpenAI adapter. The body is OpenAI's, so this adapter is a near
 * passthrough: request and answers are copied byte for byte except for a few spliced
 * values (no re-serialisation: numbers, key order and unknown fields survive as sent).
 *
 * URL (api_base like https://myres.openai.azure.com; trailing '/' ignored):
 *   classic  {root}/openai/deployments/{deployment}/chat/completions?api-version={v}
 *            v = t->api_version, else an api-version found in a pasted api_base query,
 *            else AZURE_DEFAULT_VERSION (2024-10-21, the current GA).
 *   v1       {root}/openai/v1/chat/completions when api_version is "v1", or
 *            ...?api-version=preview when it is "preview" (Azure's v1 preview features),
 *            or when api_base itself ends in /openai/v1 (the base_url Azure documents for
 *            stock OpenAI clients; a dated api_version is then ignored). Model in the body.
 *   api_base may be a bare resource URL, end in /openai, or be a pasted portal "Target
 *   URI" (…/openai/deployments/{name}/chat/completions?api-version=…): everything from
 *   /openai on is rebuilt. A deployment named in api_base wins over upstream_model (the
 *   operator pasted that exact deployment); otherwise upstream_model is the deployment.
 *   Deployment names must be [A-Za-z0-9._-]+ and api-versions [A-Za-z0-9.-]+ (they go in
 *   the URL; anything else is a 400 that names neither).
 * Headers: content-type: application/json; api-key: <key> when a key is set. Never
 *   Authorization (Azure rejects requests carrying both; Entra ID tokens are not supported).
 *
 * Request body: the canonical body as sent, with two splices:
 *   model        set to the deployment name (required by the v1 surface; informational and
 *                ignored by the classic one, where it would otherwise leak the client's
 *                alias upstream); inserted when absent.
 *   stream_options.include_usage  forced true when streaming, so every stream is metered;
 *                the usage-only chunk is dropped again for clients that did not ask for it
 *                (their chunks still carry "usage":null, which OpenAI clients ignore).
 *   Everything else (tools, response_format, logprobs, n, ...) passes through: Azure speaks
 *   the same dialect and answers 400 for what a deployment does not support. Nothing is
 *   dropped, so prov_request.dropped stays "" (other adapters' dropped fields are logged by
 *   the worker as a `fields_dropped` warning).
 *
 * Whole answers: the chat.completion as Azure sent it, with `model` set to the name the
 *   caller reports (Azure puts the underlying model version there). prompt_filter_results and
 *   choices[].content_filter_results are kept: extra fields OpenAI clients ignore, and the
 *   only record of why a choice ended with finish_reason "content_filter". An answer that is
 *   not an object with a choices array is PS_GARBAGE.
 *
 * Streams: OpenAI SSE, re-framed as canonical "data: {…}\n\n" events; each event's JSON is
 *   parsed once (to look at it) and written back as received with only `model` spliced.
 *   Dropped: chunks with "choices":[] and no usage (Azure's first prompt_filter_results
 *   annotation, whose id/model/object are "" and created 0 — clients that index choices[0]
 *   choke on it), and choices without a delta (asynchronous-filter annotations carrying only
 *   content_filter_results/offsets; a chunk left with no choice is dropped, one with a
 *   finish_reason keeps its choice with "delta":{}). The usage chunk is forwarded only when
 *   the client asked (include_usage). data: [DONE] → PS_DONE (also when only the final blank
 *   line is missing at EOF); EOF before it → PS_GARBAGE; data: {"error":{…}} → OpenAI error
 *   event (message without URLs, at most ~300 bytes) + PS_ERROR with its class.
 *
 * Errors (classify_error; the retry-after / retry-after-ms headers are read by the caller):
 *   429 or code "429"/rate_limit_exceeded/insufficient_quota → rate_limited (a "retry after
 *   N seconds" in the message fills retry_after_ms); 401/403 → auth; code content_filter or
 *   innererror.code ResponsibleAIPolicyViolation → content_policy; code
 *   context_length_exceeded or "maximum context length" → context_length_exceeded; 404,
 *   DeploymentNotFound, OperationNotSupported (the deployment's model cannot chat) →
 *   not_found; 408/504 → timeout; 503 → overloaded; other 5xx → server; other 4xx →
 *   bad_request.
 *
 * Embeddings (azure_embed.c) use the same URL rules with "embeddings" for
 * "chat/completions" (azure_url) and the same model splice (azure_copy_with_model). */
#include <ctype.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "azure.h"
#include "prov_json.h"
#include "sse_decoder.h"

#define AZURE_DEFAULT_VERSION "2024-10-21"
#define AZURE_MAX_EVENT (16u << 20) /* bytes of one SSE line or event: beyond that, garbage */
#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* ---- JSON text scanning ------------------------------------------------------------
 * Finds members of an object in JSON text so values can be spliced without a dump. The
 * text has been accepted by jansson first; the scanner only has to be bounds-safe. */

static size_t az_ws(const char *p, size_t n, size_t i) {
  while (i < n && (p[i] == ' ' || p[i] == '\t' || p[i] == '\r' || p[i] == '\n')) i++;
  return i;
}

/* i at '"': index after the closing quote (n if unterminated). */
static size_t az_skip_string(const char *p, size_t n, size_t i) {
  for (i++; i < n; i++) {
    if (p[i] == '\\') i++;
    else if (p[i] == '"') return i + 1;
  }
  return n;
}

/* i at a value: index after it. */
static size_t az_skip_value(const char *p, size_t n, size_t i) {
  if (i >= n) return n;
  if (p[i] == '"') return az_skip_string(p, n, i);
  if (p[i] == '{' || p[i] == '[') {
    size_t depth = 0;
    while (i < n) {
      char ch = p[i];
      if (ch == '"') { i = az_skip_string(p, n, i); continue; }
      if (ch == '{' || ch == '[') depth++;
      else if ((ch == '}' || ch == ']') && --depth == 0) return i + 1;
      i++;
    }
    return n;
  }
  while (i < n && !strchr(",}] \t\r\n", p[i])) i++;
  return i;
}

/* Does the raw key text k[0..kn) (between quotes, escapes undecoded) spell `key`? */
static int az_key_is(const char *k, size_t kn, const char *key) {
  if (!memchr(k, '\\', kn)) return kn == strlen(key) && !memcmp(k, key, kn);
  json_t *s = json_loadb(k - 1, kn + 2, JSON_DECODE_ANY, NULL); /* rare: escaped key */
  int same = json_is_string(s) && !strcmp(json_string_value(s), key);
  json_decref(s);
  return same;
}

/* In the object starting at p[obj] ('{'), the value of the last member named key:
 * [*voff, *vend) delimits it. Returns 0, or -1 when absent (or not an object). */
static int az_member(const char *p, size_t n, size_t obj, const char *key, size_t *voff,
                     size_t *vend) {
  int found = -1;
  size_t i = az_ws(p, n, obj);
  if (i >= n || p[i] != '{') return -1;
  i = az_ws(p, n, i + 1);
  while (i < n && p[i] == '"') {
    size_t ke = az_skip_string(p, n, i);
    if (ke >= n) return -1;
    int match = az_key_is(p + i + 1, ke - i - 2, key);
    i = az_ws(p, n, ke);
    if (i >= n || p[i] != ':') return -1;
    size_t vo = az_ws(p, n, i + 1), ve = az_skip_value(p, n, vo);
    if (match) { *voff = vo; *vend = ve; found = 0; }
    i = az_ws(p, n, ve);
    if (i < n && p[i] == ',') i = az_ws(p, n, i + 1);
    else break;
  }
  return found;
}

/* Index just after the '{' of the object at p[obj], and whether the object is empty. */
static size_t az_obj_open(const char *p, size_t n, size_t obj, int *empty) {
  size_t i = az_ws(p, n, obj) + 1;
  *empty = az_ws(p, n, i) < n && p[az_ws(p, n, i)] == '}';
  return i;
}


/* One splice: replace p[off..end) by text (end == off: insert). */
typedef struct az_edit {
  size_t off;     /* byte offset in the source */
  size_t end;     /* end of the replaced bytes */
  buf_t text;     /* replacement */
} az_edit;

/* Appends p[from..to) with the edits (sorted by off, non-overlapping) applied. */
static int az_apply(buf_t *out, const char *p, size_t from, size_t to, az_edit *e, int ne) {
  size_t at = from;
  for (int k = 0; k < ne; k++) {
    if (buf_append(out, p + at, e[k].off - at) || buf_append(out, e[k].text.data, e[k].text.len))
      return -ENOMEM;
    at = e[k].end;
  }
  return buf_append(out, p + at, to - at) ? -ENOMEM : 0;
}

/* Edit setting top-level "model" of the object at p[obj] to model. */
static int az_model_edit(const char *p, size_t n, size_t obj, const char *model, az_edit *e) {
  size_t vo, ve;
  int empty;
  memset(e, 0, sizeof *e);
  if (az_member(p, n, obj, "model", &vo, &ve) == 0) {
    e->off = vo;
    e->end = ve;
    return buf_json_quote(&e->text, model, strlen(model));
  }
  e->off = e->end = az_obj_open(p, n, obj, &empty);
  if (LIT(&e->text, "\"model\":") || buf_json_quote(&e->text, model, strlen(model)) ||
      (!empty && LIT(&e->text, ",")))
    return -ENOMEM;
  return 0;
}

/* Edit forcing stream_options.include_usage to true. */
static int az_usage_edit(const char *p, size_t n, size_t obj, az_edit *e) {
  size_t vo, ve, io, ie;
  int empty;
  memset(e, 0, sizeof *e);
  if (az_member(p, n, obj, "stream_options", &vo, &ve)) { /* absent: add it */
    e->off = e->end = az_obj_open(p, n, obj, &empty);
    return LIT(&e->text, "\"stream_options\":{\"include_usage\":true}") ||
           (!empty && LIT(&e->text, ","));
  }
  if (p[vo] != '{') { /* null or junk: replace */
    e->off = vo;
    e->end = ve;
    return LIT(&e->text, "{\"include_usage\":true}");
  }
  if (az_member(p, n, vo, "include_usage", &io, &ie) == 0) {
    e->off = io;
    e->end = ie;
    return LIT(&e->text, "true");
  }
  e->off = e->end = az_obj_open(p, n, vo, &empty);
  return LIT(&e->text, "\"include_usage\":true") || (!empty && LIT(&e->text, ","));
}

/* ---- request ----------------------------------------------------------------------- */

static int az_reject(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static int az_reject(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

static int az_name_ok(const char *s, size_t n, const char *extra) {
  if (!n) return 0;
  for (size_t i = 0; i < n; i++)
    if (!isalnum((unsigned char)s[i]) && !strchr(extra, s[i])) return 0;
  return 1;
}

/* Finds needle in s[0..n). */
static const char *az_find(const char *s, size_t n, const char *needle) {
  size_t m = strlen(needle);
  for (size_t i = 0; i + m <= n; i++)
    if (!memcmp(s + i, needle, m)) return s + i;
  return NULL;
}

typedef struct az_route {
  buf_t url;            /* full URL */
  char deployment[128]; /* deployment name (path or body model) */
} az_route;

/* op: the path after the deployment (classic) or after /openai/v1, e.g. "chat/completions". */
static int az_build_url(const prov_target *t, const char *op, az_route *r, char *err,
                        size_t errlen) {
  const char *base = t->api_base ? t->api_base : "";
  const char *ver = t->api_version && *t->api_version ? t->api_version : NULL;
  size_t n = strcspn(base, "?#");
  const char *host = strstr(base, "://");
  if (strncasecmp(base, "https://", 8) && strncasecmp(base, "http://", 7))
    return az_reject(err, errlen, "the deployment's api_base must be the http(s) endpoint of "
                                  "an Azure OpenAI resource");
  host += 3;
  const char *q = base[n] == '?' ? base + n : NULL, *qv;
  char qver[64] = "";
  if (q && ((qv = strstr(q, "?api-version=")) || (qv = strstr(q, "&api-version=")))) {
    qv += 13;
    size_t k = strcspn(qv, "&#");
    if (k < sizeof qver) snprintf(qver, sizeof qver, "%.*s", (int)k, qv);
  }
  if (!ver && *qver) ver = qver;
  while (n > (size_t)(host - base) && base[n - 1] == '/') n--;
  if (n == (size_t)(host - base) || *host == '/')
    return az_reject(err, errlen, "the deployment's api_base has no host");
  size_t root = n;
  const char *dep = NULL;
  size_t dlen = 0;
  int v1 = ver && (!strcmp(ver, "v1") || !strcmp(ver, "preview"));
  const char *o = az_find(host, (size_t)(base + n - host), "/openai");
  if (o && (o[7] == '/' || o + 7 == base + n)) {
    root = (size_t)(o - base);
    const char *rest = o + 7;
    size_t rn = (size_t)(base + n - rest);
    if (rn >= 13 && !memcmp(rest, "/deployments/", 13)) {
      dep = rest + 13;
      dlen = strcspn(dep, "/?#");
      if (dep + dlen > base + n) dlen = (size_t)(base + n - dep);
    } else if ((rn == 3 || (rn > 3 && rest[3] == '/')) && !memcmp(rest, "/v1", 3)) {
      v1 = 1;
      if (!ver || strcmp(ver, "preview")) ver = "v1";
    }
  }
  if (!dep) {
    dep = t->upstream_model ? t->upstream_model : "";
    dlen = strlen(dep);
  }
  if (!az_name_ok(dep, dlen, "._-") || dlen >= sizeof r->deployment)
    return az_reject(err, errlen, "the deployment's Azure deployment name is not valid");
  snprintf(r->deployment, sizeof r->deployment, "%.*s", (int)dlen, dep);
  if (!ver) ver = AZURE_DEFAULT_VERSION;
  if (!az_name_ok(ver, strlen(ver), ".-"))
    return az_reject(err, errlen, "the deployment's Azure api-version is not valid");
  if (buf_append(&r->url, base, root)) return -ENOMEM;
  int rc = v1 ? buf_printf(&r->url, "/openai/v1/%s%s", op,
                           !strcmp(ver, "preview") ? "?api-version=preview" : "")
              : buf_printf(&r->url, "/openai/deployments/%s/%s?api-version=%s", r->deployment,
                           op, ver);
  return rc || !buf_cstr(&r->url) ? -ENOMEM : 0;
}

static int az_build_request(const prov_target *t, const prov_canon *c, prov_request *out,
                            char *err, size_t errlen) {
  az_route r = {0};
  az_edit e[2] = {0};
  int ne = 0, rc;
  const char *key = t->api_key ? t->api_key : "";
  json_t *doc = c->body ? json_loadb(c->body, c->len, 0, NULL) : NULL;
  if (!json_is_object(doc)) {
    rc = az_reject(err, errlen, "request body must be a JSON object");
    goto done;
  }
  if (!json_is_array(json_object_get(doc, "messages"))) { /* also: the object is not empty */
    rc = az_reject(err, errlen, "messages must be an array");
    goto done;
  }
  if (strpbrk(key, "\r\n")) {
    rc = az_reject(err, errlen, "the deployment's credential is not valid");
    goto done;
  }
  if ((rc = az_build_url(t, "chat/completions", &r, err, errlen))) goto done;
  size_t obj = az_ws(c->body, c->len, 0), end = c->len;
  while (end > obj && strchr(" \t\r\n", c->body[end - 1])) end--;
  if ((rc = az_model_edit(c->body, c->len, obj, r.deployment, &e[ne++]))) goto done;
  if (c->stream && (rc = az_usage_edit(c->body, c->len, obj, &e[ne++]) ? -ENOMEM : 0)) goto done;
  if (ne == 2 && e[1].off < e[0].off) { az_edit tmp = e[0]; e[0] = e[1]; e[1] = tmp; }
  rc = -ENOMEM;
  if (az_apply(&out->body, c->body, obj, end, e, ne)) goto done;
  if (prov_request_header(out, "content-type", "application/json")) goto done;
  if (*key && prov_request_header(out, "api-key", key)) goto done;
  out->url = r.url;
  r.url = (buf_t){0};
  rc = 0;
done:
  for (int k = 0; k < 2; k++) buf_free(&e[k].text);
  buf_free(&r.url);
  json_decref(doc);
  if (rc) prov_request_free(out);
  return rc;
}

/* ---- errors ------------------------------------------------------------------------ */

static const char *az_str(const json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

static int az_is(const char *a, const char *b) { return a && !strcasecmp(a, b); }

/* "... Please retry after 6 seconds ..." → ms. */
static void az_retry_hint(const char *msg, uint64_t *retry_after_ms) {
  const char *p = msg ? strcasestr(msg, "retry after ") : NULL;
  if (!p || !retry_after_ms) return;
  p += 12;
  uint64_t v = 0;
  int digits = 0;
  for (; *p >= '0' && *p <= '9' && digits < 9; p++, digits++) v = v * 10 + (uint64_t)(*p - '0');
  while (*p == ' ') p++;
  if (!digits) return;
  if (!strncasecmp(p, "millisecond", 11)) *retry_after_ms = v;
  else if (!strncasecmp(p, "second", 6)) *retry_after_ms = v * 1000;
}

/* Class of an Azure/OpenAI error object answered with HTTP status http (0 = in-band). */
static prov_error az_error_class(int http, const json_t *e, uint64_t *retry_after_ms) {
  const json_t *cv = json_object_get(e, "code");
  char num[24] = "";
  if (json_is_integer(cv)) snprintf(num, sizeof num, "%lld", (long long)json_integer_value(cv));
  const char *code = json_is_string(cv) ? json_string_value(cv) : num;
  const char *type = az_str(e, "type"), *msg = az_str(e, "message");
  const char *inner = az_str(json_object_get(e, "innererror"), "code");
  if (!msg) msg = "";
  if (http == 0) http = (int)json_integer_value(json_object_get(e, "status"));
  if (http == 0 && code[0] >= '1' && code[0] <= '5' && strlen(code) == 3) http = atoi(code);
  if (http == 429 || az_is(code, "rate_limit_exceeded") || az_is(code, "insufficient_quota") ||
      az_is(type, "rate_limit_exceeded") || az_is(code, "RateLimitReached")) {
    az_retry_hint(msg, retry_after_ms);
    return PE_RATE_LIMITED;
  }
  if (http == 401 || http == 403 || az_is(code, "invalid_api_key") ||
      az_is(code, "PermissionDenied") || az_is(code, "Unauthorized"))
    return PE_AUTH;
  if (az_is(code, "content_filter") || az_is(inner, "ResponsibleAIPolicyViolation"))
    return PE_CONTENT_POLICY;
  if (az_is(code, "context_length_exceeded") || strstr(msg, "maximum context length"))
    return PE_CONTEXT_LENGTH;
  if (http == 404 || az_is(code, "DeploymentNotFound") || az_is(code, "OperationNotSupported") ||
      az_is(code, "model_not_found") || az_is(code, "NotFound"))
    return PE_NOT_FOUND;
  if (http == 408 || http == 504 || az_is(code, "timeout")) return PE_TIMEOUT;
  if (http == 503 || az_is(code, "ServiceUnavailable")) return PE_OVERLOADED;
  if (http >= 500 || http == 0) return PE_SERVER;
  if (http >= 400) return PE_BAD_REQUEST;
  return PE_GARBAGE; /* a non-error status is not an error answer we understand */
}

static prov_error az_classify_error(int status, const char *body, size_t len,
                                    uint64_t *retry_after_ms) {
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL;
  const json_t *e = json_object_get(doc, "error");
  prov_error cls = az_error_class(status ? status : 500, json_is_object(e) ? e : NULL,
                                  retry_after_ms);
  json_decref(doc);
  return cls;
}

/* ---- whole answers ----------------------------------------------------------------- */

static uint64_t az_count(const json_t *o, const char *key) {
  return prov_uint(json_object_get(o, key));
}

/* Reads an OpenAI usage object; 0 if there is none. */
static int az_read_usage(const json_t *u, prov_usage *out) {
  if (!json_is_object(u) || !out) return json_is_object(u);
  out->prompt_tokens = az_count(u, "prompt_tokens");
  out->completion_tokens = az_count(u, "completion_tokens");
  out->cached_tokens = az_count(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
  out->cache_write_tokens = 0;
  out->seen = 1;
  return 1;
}

/* Appends the JSON object text p[0..n) with its top-level model set to model. */
static int az_copy_with_model(buf_t *out, const char *p, size_t n, const char *model) {
  size_t obj = az_ws(p, n, 0), end = n;
  while (end > obj && strchr(" \t\r\n", p[end - 1])) end--;
  az_edit e;
  int rc = az_model_edit(p, n, obj, model, &e);
  if (!rc) rc = az_apply(out, p, obj, end, &e, 1);
  buf_free(&e.text);
  return rc;
}

int azure_url(const prov_target *t, const char *op, buf_t *url, char *deployment, size_t dlen,
              char *err, size_t errlen) {
  az_route r = {0};
  int rc = az_build_url(t, op, &r, err, errlen);
  if (!rc) {
    if (deployment && dlen) snprintf(deployment, dlen, "%s", r.deployment);
    *url = r.url;
    r.url = (buf_t){0};
  }
  buf_free(&r.url);
  return rc;
}

int azure_copy_with_model(buf_t *out, const char *json, size_t len, const char *model) {
  return az_copy_with_model(out, json, len, model ? model : "");
}

static int az_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                              prov_usage *usage) {
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL;
  int rc = PS_GARBAGE;
  if (json_is_object(doc) && !json_object_get(doc, "error") &&
      json_is_array(json_object_get(doc, "choices"))) {
    size_t mark = out->len;
    if (az_copy_with_model(out, body, len, model ? model : "") == 0) {
      az_read_usage(json_object_get(doc, "usage"), usage);
      rc = 0;
    } else {
      out->len = mark;
    }
  }
  json_decref(doc);
  return rc;
}

/* ---- streams ----------------------------------------------------------------------- */

struct prov_stream {
  sse_decoder sse;   /* SSE framing: data: lines only, every line within AZURE_MAX_EVENT */
  buf_t *out;        /* where chunks go during a feed */
  int rc;            /* PS_MORE while open; else the terminal result (sticky) */
  prov_error cls;    /* class of a terminal PS_ERROR / PS_GARBAGE */
  int include_usage; /* the client asked for the usage chunk */
  char *model;       /* model name to report */
  prov_usage usage;  /* last usage seen */
};

static prov_stream *az_stream_new(const prov_canon *c, const char *model) {
  prov_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->model = strdup(model ? model : "");
  if (!s->model) return free(s), NULL;
  s->include_usage = c ? c->include_usage : 0;
  sse_init_opts(&s->sse, AZURE_MAX_EVENT, SSE_DATA_NEEDS_COLON | SSE_LIMIT_ALL_LINES);
  return s;
}

static void az_stream_free(prov_stream *s) {
  if (!s) return;
  sse_free(&s->sse);
  free(s->model);
  free(s);
}

static int az_fail(prov_stream *s) {
  s->cls = PE_GARBAGE;
  return s->rc = PS_GARBAGE;
}

static const char *const az_error_type[PE__COUNT][2] = {
    [PE_NONE] = {"server_error", "upstream_error"},
    [PE_RATE_LIMITED] = {"rate_limit_error", "rate_limit_exceeded"},
    [PE_OVERLOADED] = {"server_error", "overloaded"},
    [PE_AUTH] = {"authentication_error", "invalid_api_key"},
    [PE_BAD_REQUEST] = {"invalid_request_error", "invalid_request"},
    [PE_CONTEXT_LENGTH] = {"invalid_request_error", "context_length_exceeded"},
    [PE_CONTENT_POLICY] = {"invalid_request_error", "content_filter"},
    [PE_NOT_FOUND] = {"invalid_request_error", "model_not_found"},
    [PE_SERVER] = {"server_error", "server_error"},
    [PE_TIMEOUT] = {"server_error", "timeout"},
    [PE_GARBAGE] = {"server_error", "upstream_garbage"},
};

/* Upstream message with URLs cut, at most ~300 bytes, cut on a UTF-8 boundary. */
static int az_safe_message(buf_t *b, const char *msg) {
  if (!msg || !*msg) msg = "upstream provider error";
  buf_t t = {0};
  int rc = 0;
  for (const char *p = msg; !rc && *p && (t.len < 300 || ((unsigned char)*p & 0xC0) == 0x80);) {
    if (!strncasecmp(p, "http://", 7) || !strncasecmp(p, "https://", 8)) {
      rc = LIT(&t, "<url>");
      p += strcspn(p, " \t\r\n\"'()<>");
    } else {
      rc = buf_append(&t, p++, 1);
    }
  }
  if (!rc) rc = buf_json_quote(b, t.data ? t.data : "", t.len);
  buf_free(&t);
  return rc;
}

static int az_in_band_error(prov_stream *s, const json_t *e, buf_t *out) {
  prov_error cls = az_error_class(0, json_is_object(e) ? e : NULL, NULL);
  const char *msg = json_is_string(e) ? json_string_value(e) : az_str(e, "message");
  if (LIT(out, "data: {\"error\":{\"message\":") || az_safe_message(out, msg) ||
      buf_printf(out, ",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n",
                 az_error_type[cls][0], az_error_type[cls][1]))
    return az_fail(s);
  s->cls = cls;
  return s->rc = PS_ERROR;
}

/* A chunk with choices lacking a delta: rebuilt without them (rare: async filter). */
static int az_rebuild(prov_stream *s, json_t *ev, buf_t *out) {
  json_t *choices = json_object_get(ev, "choices"), *keep = json_array(), *ch;
  size_t i;
  json_array_foreach(choices, i, ch) {
    json_t *fr = json_object_get(ch, "finish_reason");
    if (json_is_object(json_object_get(ch, "delta"))) {
      json_array_append(keep, ch);
    } else if (json_is_string(fr)) {
      json_t *c2 = json_copy(ch);
      json_object_set_new(c2, "delta", json_object());
      json_array_append_new(keep, c2);
    }
  }
  int rc = 0;
  if (json_array_size(keep) ||
      (s->include_usage && json_is_object(json_object_get(ev, "usage")))) {
    json_object_set_new(ev, "choices", keep);
    json_object_set_new(ev, "model", json_string(s->model));
    keep = NULL;
    char *txt = prov_json_dumps(ev, JSON_COMPACT);
    rc = !txt || buf_printf(out, "data: %s\n\n", txt) ? -ENOMEM : 0;
    free(txt);
  }
  json_decref(keep);
  return rc;
}

static int az_on_flat_event(prov_stream *s, const char *p, size_t n, buf_t *out);

/* One complete SSE event's data. */
static int az_on_event(prov_stream *s, const char *p, size_t n, buf_t *out) {
  if (n == 6 && !memcmp(p, "[DONE]", 6)) {
    if (LIT(out, "data: [DONE]\n\n")) return az_fail(s);
    return s->rc = PS_DONE;
  }
  if (memchr(p, '\n', n) || memchr(p, '\r', n)) {
    /* multi-line data: line breaks in valid JSON are whitespace between tokens, and
     * must not reach the client's SSE framing; blank them in a copy (rare) */
    buf_t flat = {0};
    int rc = buf_append(&flat, p, n) ? az_fail(s) : PS_MORE;
    for (size_t i = 0; i < flat.len; i++)
      if (flat.data[i] == '\n' || flat.data[i] == '\r') flat.data[i] = ' ';
    if (rc == PS_MORE) rc = az_on_flat_event(s, flat.data, flat.len, out);
    buf_free(&flat);
    return rc;
  }
  return az_on_flat_event(s, p, n, out);
}

/* One event's data without line breaks. */
static int az_on_flat_event(prov_stream *s, const char *p, size_t n, buf_t *out) {
  json_t *ev = prov_json_loadb(p, n, 0, NULL);
  if (!json_is_object(ev)) return json_decref(ev), az_fail(s);
  json_t *err = json_object_get(ev, "error");
  if (err && !json_is_null(err)) {
    int rc = az_in_band_error(s, err, out);
    return json_decref(ev), rc;
  }
  json_t *choices = json_object_get(ev, "choices"), *ch;
  int usage = az_read_usage(json_object_get(ev, "usage"), &s->usage);
  int rc = 0, bare = 0;
  size_t i;
  json_array_foreach(choices, i, ch) bare |= !json_is_object(json_object_get(ch, "delta"));
  if (!json_is_array(choices)) {
    rc = -1; /* not a chat.completion.chunk */
  } else if (json_array_size(choices) == 0) {
    /* filter annotation (no usage) or the usage chunk (only for clients that asked) */
    if (usage && s->include_usage) rc = LIT(out, "data: ") || az_copy_with_model(out, p, n, s->model) ||
                                        LIT(out, "\n\n");
  } else if (bare) {
    rc = az_rebuild(s, ev, out);
  } else {
    rc = LIT(out, "data: ") || az_copy_with_model(out, p, n, s->model) || LIT(out, "\n\n");
  }
  json_decref(ev);
  return rc ? az_fail(s) : PS_MORE;
}

/* sse_decode()'s callback: nonzero once the stream is over. */
static int az_on_sse_event(void *ud, const sse_event *ev) {
  prov_stream *s = ud;
  az_on_event(s, ev->data, ev->data_len, s->out);
  return s->rc != PS_MORE;
}

static int az_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                          prov_usage *usage, prov_error *err) {
  s->out = out;
  if (s->rc == PS_MORE && sse_decode(&s->sse, data, len, az_on_sse_event, s) < 0) az_fail(s);
  if (usage && s->usage.seen) *usage = s->usage;
  if (s->rc != PS_MORE && err) *err = s->cls;
  return s->rc;
}

/* EOF: only a [DONE] missing its final blank line can still complete the stream. */
static int az_stream_end(prov_stream *s, buf_t *out, prov_usage *usage) {
  if (s->rc == PS_MORE) {
    buf_t tail = {0};
    const buf_t *d = &s->sse.data;
    s->out = &tail;
    if (sse_flush_line(&s->sse, az_on_sse_event, s) < 0) az_fail(s);
    if (s->rc == PS_MORE && s->sse.has_data && d->len == 6 && !memcmp(d->data, "[DONE]", 6) &&
        sse_finish(&s->sse, az_on_sse_event, s) < 0) /* dispatches the event */
      az_fail(s);
    if (s->rc == PS_DONE && buf_append(out, tail.data, tail.len)) az_fail(s);
    else if (s->rc != PS_DONE) az_fail(s);
    buf_free(&tail);
  }
  if (usage && s->usage.seen) *usage = s->usage;
  return s->rc;
}

const provider_ops prov_azure = {
    .name = "azure",
    .build_request = az_build_request,
    .decode_response = az_decode_response,
    .stream_new = az_stream_new,
    .stream_feed = az_stream_feed,
    .stream_end = az_stream_end,
    .stream_free = az_stream_free,
    .classify_error = az_classify_error,
    .build_embeddings = azure_build_embeddings,
    .decode_embeddings = azure_decode_embeddings,
};
