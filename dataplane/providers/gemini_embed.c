/* gemini_embed.c — Gemini embeddings for the Gemini adapter (prov_gemini, provider.h).
 *
 * OpenAI POST /v1/embeddings {model, input: string | [strings], dimensions?} →
 * POST {base}/models/{m}:batchEmbedContents {"requests":[{"model":"models/{m}",
 * "content":{"parts":[{"text"}]}, "outputDimensionality"?}]} (one request per input, in
 * order). Token-id inputs have no Gemini slot: -EINVAL (the client gets a 400 when no
 * other deployment can take them). Answer {"embeddings":[{"values":[…]}]} → OpenAI list;
 * Gemini reports no token counts here, so usage is zeros. */
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gemini.h"
#include "prov_json.h"

#define GE_DEFAULT_BASE "https://generativelanguage.googleapis.com/v1beta"
#define GE_MAX_INPUTS 2048 /* inputs per request (OpenAI's own limit) */

static int ge_reject(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  return -EINVAL;
}

static int ge_model_ok(const char *m) {
  if (!*m) return 0;
  for (; *m; m++)
    if (!(*m >= 'a' && *m <= 'z') && !(*m >= 'A' && *m <= 'Z') && !(*m >= '0' && *m <= '9') &&
        *m != '-' && *m != '.' && *m != '_')
      return 0;
  return 1;
}

static int ge_add(json_t *reqs, const char *model, json_t *text, json_t *dims) {
  json_t *r = json_pack("{s:s+, s:{s:[{s:O}]}}", "model", "models/", model, "content", "parts",
                        "text", text);
  if (!r) return -ENOMEM;
  if (dims && json_object_set(r, "outputDimensionality", dims)) { json_decref(r); return -ENOMEM; }
  return json_array_append_new(reqs, r) ? -ENOMEM : 0;
}

int gemini_build_embeddings(const prov_target *t, const char *body, size_t len, prov_request *out,
                            char *err, size_t errlen) {
  const char *base = t->api_base && *t->api_base ? t->api_base : GE_DEFAULT_BASE;
  const char *model = t->upstream_model ? t->upstream_model : "";
  const char *key = t->api_key ? t->api_key : "";
  json_t *req = prov_json_loadb(body, len, 0, NULL), *reqs = json_array(), *doc = NULL, *v;
  int rc = -ENOMEM;
  size_t n = strlen(base), i;
  while (n && base[n - 1] == '/') n--;
  const char *host = strstr(base, "://");
  if (!strncmp(model, "models/", 7)) model += 7;
  if (!reqs) goto done;
  if (!json_is_object(req)) { rc = ge_reject(err, errlen, "the request body is not a JSON object"); goto done; }
  if (!host || host + 3 >= base + n) { rc = ge_reject(err, errlen, "the deployment's api_base is not a valid URL"); goto done; }
  if (!ge_model_ok(model)) { rc = ge_reject(err, errlen, "the deployment's model name is not valid for this provider"); goto done; }
  if (strpbrk(key, "\r\n")) { rc = ge_reject(err, errlen, "the deployment's credential is not valid"); goto done; }
  json_t *dims = json_object_get(req, "dimensions");
  if (dims && !json_is_null(dims) && (!json_is_integer(dims) || json_integer_value(dims) < 1)) {
    rc = ge_reject(err, errlen, "'dimensions' must be a positive integer");
    goto done;
  }
  if (json_is_null(dims)) dims = NULL;
  json_t *input = json_object_get(req, "input");
  if (json_is_string(input)) {
    if ((rc = ge_add(reqs, model, input, dims))) goto done;
  } else if (json_is_array(input) && json_array_size(input) > 0 &&
             json_array_size(input) <= GE_MAX_INPUTS) {
    json_array_foreach(input, i, v) {
      if (!json_is_string(v)) {
        rc = ge_reject(err, errlen, "this provider takes text inputs only (no token arrays)");
        goto done;
      }
      if ((rc = ge_add(reqs, model, v, dims))) goto done;
    }
  } else {
    rc = ge_reject(err, errlen, "'input' must be a string or a non-empty array of up to 2048 strings");
    goto done;
  }
  rc = -ENOMEM;
  int bare = memchr(host + 3, '/', (size_t)(base + n - host - 3)) == NULL;
  if (buf_append(&out->url, base, n) || (bare && buf_printf(&out->url, "/v1beta")) ||
      buf_printf(&out->url, "/models/%s:batchEmbedContents", model) || !buf_cstr(&out->url))
    goto done;
  if (prov_request_header(out, "content-type", "application/json")) goto done;
  if (*key && prov_request_header(out, "x-goog-api-key", key)) goto done;
  if (!(doc = json_pack("{s:O}", "requests", reqs))) goto done;
  char *s = prov_json_dumps(doc, GEMINI_DUMP_FLAGS);
  if (!s) goto done;
  rc = buf_append(&out->body, s, strlen(s)) ? -ENOMEM : 0;
  free(s);
done:
  json_decref(doc);
  json_decref(reqs);
  json_decref(req);
  return rc;
}

int gemini_decode_embeddings(const char *body, size_t len, const char *model, buf_t *out,
                             prov_usage *usage) {
  json_t *doc = prov_json_loadb(body, len, 0, NULL), *e, *x;
  json_t *embs = json_object_get(doc, "embeddings"), *data = json_array(), *res = NULL;
  size_t i, k;
  int rc = PS_GARBAGE;
  if (!data || !json_is_array(embs) || !json_array_size(embs)) goto done;
  json_array_foreach(embs, i, e) {
    json_t *vals = json_object_get(e, "values");
    if (!json_is_array(vals)) goto done;
    json_array_foreach(vals, k, x) if (!json_is_number(x)) goto done;
    if (json_array_append_new(data, json_pack("{s:s,s:I,s:O}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", vals))) {
      rc = -ENOMEM;
      goto done;
    }
  }
  res = json_pack("{s:s,s:O,s:s,s:{s:i,s:i}}", "object", "list", "data", data, "model",
                  model ? model : "", "usage", "prompt_tokens", 0, "total_tokens", 0);
  char *s = res ? prov_json_dumps(res, GEMINI_DUMP_FLAGS) : NULL;
  if (!s) { rc = -ENOMEM; goto done; }
  rc = buf_append(out, s, strlen(s)) ? -ENOMEM : 0;
  free(s);
  if (usage && !rc) usage->seen = 1; /* zeros: Gemini does not count embedding tokens here */
done:
  json_decref(res);
  json_decref(data);
  json_decref(doc);
  return rc;
}
