/* vertex.c — Google Vertex AI adapter (prov_vertex, family "vertex_ai"): Gemini and
 * Anthropic models served by Vertex, OAuth2 Bearer auth.
 *
 * Bodies are not translated here: prov_gemini and prov_anthropic build them (one mapping
 * per publisher, kept in one place), this file places them and fixes what Vertex wants
 * differently.
 *
 * Family   upstream_model "claude*" → Anthropic (publishers/anthropic), else Gemini
 *          (publishers/google).
 * URL      {root}/publishers/google/models/{model}:generateContent
 *                                                   :streamGenerateContent?alt=sse
 *          {root}/publishers/anthropic/models/{model}:rawPredict
 *                                                      :streamRawPredict
 *          where root is, by api_base:
 *          ""                       https://{location}-aiplatform.googleapis.com/v1/projects/
 *                                   {project}/locations/{location} (location "global" →
 *                                   host aiplatform.googleapis.com)
 *          a full Vertex URL        api_base itself when its path is .../projects/{p}/
 *          (path has /projects/)    locations/{l} (any version segment, e.g. /v1beta1);
 *                                   project and location are taken from it and
 *                                   gcp_project / gcp_location are ignored
 *          anything else            api_base + "/v1/projects/{project}/locations/{location}":
 *                                   api_base replaces scheme://host (mocks, private
 *                                   endpoints, proxies)
 *          project = t->gcp_project (required unless in api_base), location =
 *          t->gcp_location, default VERTEX_DEFAULT_LOCATION. Trailing '/' of api_base dropped.
 * Headers  content-type: application/json; accept: text/event-stream when streaming;
 *          authorization: Bearer {t->access_token}, or {t->api_key} when no access token
 *          is set (a token minted elsewhere, or a mock's); none when both are "". Never
 *          x-goog-api-key, x-api-key or anthropic-version.
 * Body     Gemini: exactly prov_gemini's. Anthropic: prov_anthropic's without "model" (the
 *          URL names it) and with "anthropic_version" first: t->api_version if set, else
 *          VERTEX_ANTHROPIC_VERSION; stream: true kept for :streamRawPredict.
 * Dropped  the family adapter's dropped fields (its table), listed in prov_request.dropped
 *          and logged by the worker as a `fields_dropped` warning.
 * Answers  decode_response, the stream decoder and classify_error delegate to the family's
 *          adapter. The decoders are not told the deployment (provider_ops passes only the
 *          reported model name), so the family is read off the answer itself:
 *          - whole body: an object with "candidates"/"promptFeedback"/"usageMetadata" is
 *            Gemini, one with "type":"message" or a "content" array is Anthropic (one extra
 *            parse of the body);
 *          - stream: the first SSE field line — "event:" is Anthropic (Gemini sends data:
 *            lines only); a data: line whose JSON has a string "type" is Anthropic, else
 *            Gemini. Bytes up to that line are held (at most VX_SNIFF_MAX), then everything
 *            goes to that family's decoder, so every split gives the same output;
 *          - errors: an Anthropic error body ({"type":"error","error":{"type":...}}) goes to
 *            prov_anthropic's classifier, everything else (google.rpc.Status, which Vertex
 *            itself answers for auth, quota and routing errors on both families) to
 *            prov_gemini's.
 * Not done: embeddings (Vertex uses :predict with instances[], not batchEmbedContents),
 * Vertex express-mode API keys, other publishers (Llama, Mistral on Vertex). */
#include "vertex.h"
#include "json_span.h"
#include "prov_json.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define VX_SNIFF_MAX (16u << 20) /* bytes held before the family is known; more is garbage */
#define VX_DUMMY_BASE "https://vertex.invalid/v1" /* for prov_gemini's URL, replaced */

vertex_family vertex_family_of(const char *m) {
  return m && !strncmp(m, "claude", 6) ? VERTEX_ANTHROPIC : VERTEX_GEMINI;
}

const provider_ops *vertex_family_ops(vertex_family f) {
  return f == VERTEX_ANTHROPIC ? &prov_anthropic : &prov_gemini;
}

static int fail(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  return -EINVAL;
}

static const char *nz(const char *s) { return s ? s : ""; }

/* ---- URL ----------------------------------------------------------------------------- */

/* Non-empty and every byte from the allowed set (no '/', '?', '#', '%' or spaces). */
static int name_ok(const char *s, size_t n, const char *extra) {
  if (!n || n > 128) return 0;
  for (size_t i = 0; i < n; i++) {
    char ch = s[i];
    if (!(ch >= 'a' && ch <= 'z') && !(ch >= 'A' && ch <= 'Z') && !(ch >= '0' && ch <= '9') &&
        ch != '-' && !strchr(extra, ch))
      return 0;
  }
  return 1;
}

/* A full Vertex URL: ".../projects/{p}/locations/{l}" and nothing after. Sets *proj and
 * *loc to the segments; returns 1, 0 when api_base is not one, -1 when it is malformed. */
static int split_full(const char *base, size_t n, const char **proj, size_t *plen,
                      const char **loc, size_t *llen) {
  const char *p = memmem(base, n, "/projects/", 10);
  if (!p) return 0;
  p += 10;
  const char *slash = memchr(p, '/', (size_t)(base + n - p));
  if (!slash || (size_t)(base + n - slash) < 11 || memcmp(slash, "/locations/", 11)) return -1;
  *proj = p;
  *plen = (size_t)(slash - p);
  *loc = slash + 11;
  *llen = (size_t)(base + n - *loc);
  return memchr(*loc, '/', *llen) ? -1 : 1;
}

static int vx_url(const prov_target *t, vertex_family fam, int stream, buf_t *url, char *err,
                  size_t errlen) {
  const char *base = nz(t->api_base), *model = nz(t->upstream_model);
  const char *proj = nz(t->gcp_project), *loc = nz(t->gcp_location);
  size_t n = strlen(base), plen = strlen(proj), llen;
  while (n && base[n - 1] == '/') n--;
  if (!*loc) loc = VERTEX_DEFAULT_LOCATION;
  llen = strlen(loc);
  int full = 0;
  if (n) {
    const char *host = strstr(base, "://");
    if (!host || host + 3 >= base + n) return fail(err, errlen, "the deployment's api_base is not a valid URL");
    full = split_full(base, n, &proj, &plen, &loc, &llen);
    if (full < 0)
      return fail(err, errlen, "the deployment's api_base must end in /projects/<project>/locations/<location>");
  }
  if (!plen) return fail(err, errlen, "the deployment has no Vertex AI project (vertex_project)");
  if (!name_ok(proj, plen, ".:_"))
    return fail(err, errlen, "the deployment's Vertex AI project is not valid");
  if (!name_ok(loc, llen, ""))
    return fail(err, errlen, "the deployment's Vertex AI location is not valid");
  if (fam == VERTEX_GEMINI && !strncmp(model, "models/", 7)) model += 7;
  if (!name_ok(model, strlen(model), "._@"))
    return fail(err, errlen, "the deployment's model name is not valid for this provider");
  int rc;
  if (full)
    rc = buf_append(url, base, n);
  else if (n)
    rc = buf_append(url, base, n) ||
         buf_printf(url, "/v1/projects/%.*s/locations/%.*s", (int)plen, proj, (int)llen, loc);
  else if (llen == 6 && !memcmp(loc, "global", 6))
    rc = buf_printf(url, "https://aiplatform.googleapis.com/v1/projects/%.*s/locations/global",
                    (int)plen, proj);
  else
    rc = buf_printf(url, "https://%.*s-aiplatform.googleapis.com/v1/projects/%.*s/locations/%.*s",
                    (int)llen, loc, (int)plen, proj, (int)llen, loc);
  const char *method = fam == VERTEX_ANTHROPIC
                           ? (stream ? "streamRawPredict" : "rawPredict")
                           : (stream ? "streamGenerateContent?alt=sse" : "generateContent");
  if (rc || buf_printf(url, "/publishers/%s/models/%s:%s",
                       fam == VERTEX_ANTHROPIC ? "anthropic" : "google", model, method) ||
      !buf_cstr(url))
    return -ENOMEM;
  return 0;
}

static int vx_headers(const prov_target *t, int stream, prov_request *out, char *err,
                      size_t errlen) {
  const char *tok = t->access_token && *t->access_token ? t->access_token : nz(t->api_key);
  if (strpbrk(tok, "\r\n")) return fail(err, errlen, "the deployment's credential is not valid");
  if (prov_request_header(out, "content-type", "application/json") ||
      (stream && prov_request_header(out, "accept", "text/event-stream")))
    return -ENOMEM;
  if (*tok) {
    buf_t v = {0};
    int rc = buf_printf(&v, "Bearer %s", tok) || !buf_cstr(&v) ||
             prov_request_header(out, "authorization", v.data);
    buf_free(&v);
    if (rc) return -ENOMEM;
  }
  return 0;
}

/* ---- bodies -------------------------------------------------------------------------- */

/* prov_anthropic's body → Vertex's: anthropic_version first, no model. Rewritten member by
 * member on the bytes (json_span), never re-dumped: the body carries the client's tool
 * arguments verbatim (big integers, 0.1) and they must stay so. */
static int anthropic_body(const prov_target *t, buf_t *body) {
  const char *ver = t->api_version && *t->api_version ? t->api_version : VERTEX_ANTHROPIC_VERSION;
  const char *s = body->data ? body->data : "";
  size_t n = body->len, pos = 1, kend, vend;
  json_span whole;
  if (json_span_whole(s, n, &whole) || !json_span_is_object(&whole)) return -ENOMEM;
  buf_t o = {0};
  int rc = BUF_LIT(&o, "{\"anthropic_version\":") || buf_json_quote(&o, ver, strlen(ver));
  pos = (size_t)(whole.p - s) + 1;
  while (!rc) {
    while (pos < n && strchr(" \t\r\n,", s[pos])) pos++;
    if (pos >= n || s[pos] == '}') break;
    if (json_span_skip(s, n, pos, &kend)) { rc = -ENOMEM; break; }
    size_t colon = kend;
    while (colon < n && s[colon] != ':') colon++;
    if (json_span_skip(s, n, colon + 1, &vend)) { rc = -ENOMEM; break; }
    int drop = (kend - pos == 7 && !memcmp(s + pos, "\"model\"", 7)) ||
               (kend - pos == 19 && !memcmp(s + pos, "\"anthropic_version\"", 19));
    if (!drop) rc = BUF_LIT(&o, ",") || buf_append(&o, s + pos, vend - pos);
    pos = vend;
  }
  if (!rc) rc = BUF_LIT(&o, "}");
  if (!rc) {
    buf_reset(body);
    rc = buf_append(body, o.data, o.len);
  }
  buf_free(&o);
  return rc ? -ENOMEM : 0;
}

static int vx_build_request(const prov_target *t, const prov_canon *c, prov_request *out,
                            char *err, size_t errlen) {
  vertex_family fam = vertex_family_of(t->upstream_model);
  buf_t url = {0};
  /* the family's adapter sees no credential and a placeholder base: only its body is kept */
  prov_target inner = {.api_base = fam == VERTEX_GEMINI ? VX_DUMMY_BASE : "",
                       .api_key = "",
                       .upstream_model = t->upstream_model,
                       .api_version = ""};
  int rc = vx_url(t, fam, c->stream, &url, err, errlen);
  if (rc) return buf_free(&url), rc;
  if ((rc = vertex_family_ops(fam)->build_request(&inner, c, out, err, errlen)))
    return buf_free(&url), rc; /* out already freed */
  buf_free(&out->url);
  out->url = url;
  buf_reset(&out->headers);
  out->nheaders = 0;
  if (!rc) rc = vx_headers(t, c->stream, out, err, errlen);
  if (!rc && fam == VERTEX_ANTHROPIC) rc = anthropic_body(t, &out->body);
  if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory");
  if (rc) prov_request_free(out);
  return rc;
}

/* ---- answers ------------------------------------------------------------------------- */

/* Family of a whole 2xx body. */
static vertex_family body_family(const char *body, size_t len) {
  json_t *doc = prov_json_loadb(body ? body : "", body ? len : 0, 0, NULL);
  vertex_family f = VERTEX_GEMINI;
  const char *type = json_string_value(json_object_get(doc, "type"));
  if (json_is_object(doc) && !json_object_get(doc, "candidates") &&
      !json_object_get(doc, "promptFeedback") && !json_object_get(doc, "usageMetadata") &&
      ((type && !strcmp(type, "message")) || json_is_array(json_object_get(doc, "content"))))
    f = VERTEX_ANTHROPIC;
  json_decref(doc);
  return f;
}

static int vx_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                              prov_usage *usage) {
  return vertex_family_ops(body_family(body, len))->decode_response(body, len, model, out, usage);
}

/* Anthropic error bodies: {"type":"error","error":{"type":"overloaded_error",...}}. */
static prov_error vx_classify_error(int status, const char *body, size_t len,
                                    uint64_t *retry_after_ms) {
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL;
  json_t *e = json_object_get(doc, "error");
  const char *top = json_string_value(json_object_get(doc, "type"));
  int anth = (top && !strcmp(top, "error")) || json_is_string(json_object_get(e, "type"));
  json_decref(doc);
  return vertex_family_ops(anth ? VERTEX_ANTHROPIC : VERTEX_GEMINI)
      ->classify_error(status, body, len, retry_after_ms);
}

/* Stream: both family decoders are created up front; the first SSE field line picks one. */
struct prov_stream {
  prov_stream *gemini;    /* prov_gemini's decoder state */
  prov_stream *anthropic; /* prov_anthropic's decoder state */
  const provider_ops *ops; /* the family once known, NULL while sniffing */
  prov_stream *inner;     /* ops' state (one of the two above) */
  buf_t held;             /* bytes received before the family was known */
  size_t scanned;         /* bytes of held already seen to hold no field line */
};

static prov_stream *vx_stream_new(const prov_canon *c, const char *model) {
  prov_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->gemini = prov_gemini.stream_new(c, model);
  s->anthropic = prov_anthropic.stream_new(c, model);
  if (!s->gemini || !s->anthropic) {
    if (s->gemini) prov_gemini.stream_free(s->gemini);
    if (s->anthropic) prov_anthropic.stream_free(s->anthropic);
    free(s);
    return NULL;
  }
  return s;
}

static void vx_stream_free(prov_stream *s) {
  if (!s) return;
  if (s->gemini) prov_gemini.stream_free(s->gemini);
  if (s->anthropic) prov_anthropic.stream_free(s->anthropic);
  buf_free(&s->held);
  free(s);
}

static void choose(prov_stream *s, vertex_family f) {
  s->ops = vertex_family_ops(f);
  if (f == VERTEX_ANTHROPIC) {
    s->inner = s->anthropic;
    prov_gemini.stream_free(s->gemini);
    s->gemini = NULL;
  } else {
    s->inner = s->gemini;
    prov_anthropic.stream_free(s->anthropic);
    s->anthropic = NULL;
  }
}

/* Family of one SSE line, or -1 when the line does not tell (blank, comment, id:, ...). */
static int line_family(const char *p, size_t n) {
  if (n >= 5 && !memcmp(p, "event", 5) && (n == 5 || p[5] == ':')) return VERTEX_ANTHROPIC;
  if (n < 5 || memcmp(p, "data:", 5)) return -1;
  json_t *doc = prov_json_loadb(p + 5, n - 5, 0, NULL);
  int f = json_is_string(json_object_get(doc, "type")) ? VERTEX_ANTHROPIC : VERTEX_GEMINI;
  json_decref(doc);
  return f;
}

/* Looks for the deciding line in held; at_eof: a last unterminated line counts. */
static int sniff(prov_stream *s, int at_eof) {
  const char *d = s->held.data;
  size_t i = s->scanned;
  while (i < s->held.len) {
    size_t k = i;
    while (k < s->held.len && d[k] != '\n' && d[k] != '\r') k++;
    if (k == s->held.len && !at_eof) break; /* line not complete yet */
    int f = line_family(d + i, k - i);
    if (f >= 0) return choose(s, (vertex_family)f), 1;
    i = k + 1;
    s->scanned = i < s->held.len ? i : s->held.len;
  }
  return 0;
}

static int vx_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                          prov_usage *usage, prov_error *err) {
  if (s->ops) return s->ops->stream_feed(s->inner, data, len, out, usage, err);
  if (buf_append(&s->held, data, len) || s->held.len > VX_SNIFF_MAX) {
    if (err) *err = PE_GARBAGE;
    return PS_GARBAGE;
  }
  if (!sniff(s, 0)) return PS_MORE;
  int rc = s->ops->stream_feed(s->inner, s->held.data, s->held.len, out, usage, err);
  buf_free(&s->held);
  return rc;
}

static int vx_stream_end(prov_stream *s, buf_t *out, prov_usage *usage) {
  if (!s->ops) {
    if (!sniff(s, 1)) choose(s, VERTEX_GEMINI); /* nothing that tells: an empty stream */
    if (s->held.len) {
      prov_error e = PE_NONE;
      int rc = s->ops->stream_feed(s->inner, s->held.data, s->held.len, out, usage, &e);
      buf_free(&s->held);
      if (rc != PS_MORE) return rc == PS_DONE ? PS_DONE : PS_GARBAGE;
    }
  }
  return s->ops->stream_end(s->inner, out, usage);
}

const provider_ops prov_vertex = {
    .name = "vertex_ai",
    .build_request = vx_build_request,
    .decode_response = vx_decode_response,
    .stream_new = vx_stream_new,
    .stream_feed = vx_stream_feed,
    .stream_end = vx_stream_end,
    .stream_free = vx_stream_free,
    .classify_error = vx_classify_error,
};
