/* ollama_embed.c — Ollama embeddings for the Ollama adapter (prov_ollama, provider.h).
 *
 * OpenAI POST /v1/embeddings {model, input: string | [strings], dimensions?} →
 * POST {base}/api/embed {"model": upstream_model, "input": string | [strings],
 * "dimensions"?, "truncate"?}. The base follows ollama.c's rules ("" → localhost:11434, a
 * trailing /v1 or /api dropped); authorization: Bearer <key> only when a key is set.
 * `truncate` (boolean) is an Ollama extension passed through when the client sends it;
 * encoding_format and user have no Ollama slot (base64 is applied by the caller). Token-id
 * inputs cannot be expressed: -EINVAL (the client gets a 400 when no other deployment can
 * take them). Answer {"model","embeddings":[[…]],"prompt_eval_count"} → OpenAI list in
 * input order, usage prompt_tokens = total_tokens = prompt_eval_count (0 when absent). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "ollama.h"
#include "prov_json.h"

#define OE_DEFAULT_BASE "http://localhost:11434"
#define OE_MAX_INPUTS 2048 /* inputs per request (OpenAI's own limit) */

static int oe_reject(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  return -EINVAL;
}

static int oe_suffix(const char *s, size_t n, const char *suffix) {
  size_t m = strlen(suffix);
  return n >= m && !strncasecmp(s + n - m, suffix, m);
}

/* {base}/api/embed, base normalised as ollama.c does for /api/chat. */
static int oe_url(const prov_target *t, buf_t *url, char *err, size_t errlen) {
  const char *base = t->api_base && *t->api_base ? t->api_base : OE_DEFAULT_BASE;
  size_t scheme = !strncasecmp(base, "http://", 7) ? 7 : !strncasecmp(base, "https://", 8) ? 8 : 0;
  size_t n = strlen(base);
  if (!scheme || strpbrk(base, "?# \r\n"))
    return oe_reject(err, errlen, "the deployment's api_base must be an http(s) URL such as "
                                  "http://localhost:11434");
  while (n > scheme && base[n - 1] == '/') n--;
  if (oe_suffix(base, n, "/v1")) n -= 3;
  else if (oe_suffix(base, n, "/api")) n -= 4;
  while (n > scheme && base[n - 1] == '/') n--;
  if (n == scheme || base[scheme] == '/')
    return oe_reject(err, errlen, "the deployment's api_base has no host");
  return buf_append(url, base, n) || buf_printf(url, "/api/embed") || !buf_cstr(url) ? -ENOMEM
                                                                                    : 0;
}

static int oe_headers(const prov_target *t, prov_request *out, char *err, size_t errlen) {
  const char *key = t->api_key ? t->api_key : "";
  if (strpbrk(key, "\r\n")) return oe_reject(err, errlen, "the deployment's credential is not valid");
  if (prov_request_header(out, "content-type", "application/json")) return -ENOMEM;
  if (!*key) return 0;
  buf_t h = {0};
  int rc = buf_printf(&h, "Bearer %s", key) || !buf_cstr(&h) ||
           prov_request_header(out, "authorization", h.data) ? -ENOMEM : 0;
  buf_free(&h);
  return rc;
}

/* The /api/embed body for the OpenAI request req, or NULL with rc set. */
static json_t *oe_body(const prov_target *t, json_t *req, int *rc, char *err, size_t errlen) {
  const char *model = t->upstream_model ? t->upstream_model : "";
  json_t *input = json_object_get(req, "input"), *dims = json_object_get(req, "dimensions");
  json_t *trunc = json_object_get(req, "truncate"), *v;
  size_t i;
  *rc = -EINVAL;
  if (!*model) return oe_reject(err, errlen, "the deployment has no model name"), NULL;
  if (json_is_array(input)) {
    if (!json_array_size(input) || json_array_size(input) > OE_MAX_INPUTS)
      return oe_reject(err, errlen, "'input' must be a string or a non-empty array of up to "
                                    "2048 strings"), NULL;
    json_array_foreach(input, i, v) if (!json_is_string(v))
      return oe_reject(err, errlen, "this provider takes text inputs only (no token arrays)"),
             NULL;
  } else if (!json_is_string(input)) {
    return oe_reject(err, errlen, "'input' must be a string or a non-empty array of up to 2048 "
                                  "strings"), NULL;
  }
  if (json_is_null(dims)) dims = NULL;
  if (dims && (!json_is_integer(dims) || json_integer_value(dims) < 1))
    return oe_reject(err, errlen, "'dimensions' must be a positive integer"), NULL;
  if (json_is_null(trunc)) trunc = NULL;
  if (trunc && !json_is_boolean(trunc))
    return oe_reject(err, errlen, "'truncate' must be a boolean"), NULL;
  *rc = -ENOMEM;
  json_t *b = json_pack("{s:s,s:O}", "model", model, "input", input);
  if (!b || (dims && json_object_set(b, "dimensions", dims)) ||
      (trunc && json_object_set(b, "truncate", trunc)))
    return json_decref(b), NULL;
  *rc = 0;
  return b;
}

int ollama_build_embeddings(const prov_target *t, const char *body, size_t len, prov_request *out,
                            char *err, size_t errlen) {
  json_t *req = body ? prov_json_loadb(body, len, 0, NULL) : NULL, *up = NULL;
  int rc;
  char *s = NULL;
  if (!json_is_object(req)) {
    rc = oe_reject(err, errlen, "the request body is not a JSON object");
    goto done;
  }
  if (!(up = oe_body(t, req, &rc, err, errlen))) goto done;
  if ((rc = oe_url(t, &out->url, err, errlen)) || (rc = oe_headers(t, out, err, errlen)))
    goto done;
  rc = -ENOMEM;
  if (!(s = prov_json_dumps(up, OLLAMA_DUMP_FLAGS))) goto done;
  rc = buf_append(&out->body, s, strlen(s)) ? -ENOMEM : 0;
done:
  free(s);
  json_decref(up);
  json_decref(req);
  if (rc) prov_request_free(out);
  return rc;
}

int ollama_decode_embeddings(const char *body, size_t len, const char *model, buf_t *out,
                             prov_usage *usage) {
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL, *e, *x, *res = NULL;
  json_t *embs = json_object_get(doc, "embeddings"), *data = json_array();
  size_t i, k;
  int rc = PS_GARBAGE;
  if (!data || !json_is_array(embs) || !json_array_size(embs) || json_object_get(doc, "error"))
    goto done;
  json_array_foreach(embs, i, e) {
    if (!json_is_array(e)) goto done;
    json_array_foreach(e, k, x) if (!json_is_number(x)) goto done;
    if (json_array_append_new(data, json_pack("{s:s,s:I,s:O}", "object", "embedding", "index",
                                              (json_int_t)i, "embedding", e))) {
      rc = -ENOMEM;
      goto done;
    }
  }
  json_int_t p = json_integer_value(json_object_get(doc, "prompt_eval_count"));
  if (p < 0) p = 0;
  res = json_pack("{s:s,s:O,s:s,s:{s:I,s:I}}", "object", "list", "data", data, "model",
                  model ? model : "", "usage", "prompt_tokens", p, "total_tokens", p);
  char *s = res ? prov_json_dumps(res, OLLAMA_DUMP_FLAGS) : NULL;
  if (!s) { rc = -ENOMEM; goto done; }
  rc = buf_append(out, s, strlen(s)) ? -ENOMEM : 0;
  free(s);
  if (usage && !rc) *usage = (prov_usage){.prompt_tokens = (uint64_t)p, .seen = 1};
done:
  json_decref(res);
  json_decref(data);
  json_decref(doc);
  return rc;
}
