/* azure_embed.c — Azure OpenAI embeddings for the Azure adapter (prov_azure, provider.h).
 *
 * Azure speaks OpenAI's embeddings dialect, so this is a passthrough like chat (azure.c):
 *   URL      {root}/openai/deployments/{deployment}/embeddings?api-version={v} (classic) or
 *            {root}/openai/v1/embeddings (v1 surface), by azure.c's URL rules (azure_url).
 *   Headers  content-type: application/json; api-key: <key> when a key is set.
 *   Body     the client's body byte for byte with `model` set to the deployment name.
 *            input (strings or token arrays), dimensions, encoding_format ("base64" included:
 *            Azure answers base64 strings, which the caller leaves as they are) and user pass
 *            through; Azure answers 400 for what a deployment does not support.
 *   Answer   the OpenAI list as Azure sent it with `model` set to the name the caller reports
 *            (Azure puts the underlying model there); usage.prompt_tokens is metered. Not an
 *            object with a data array of {embedding: numbers | base64 string} → PS_GARBAGE. */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "azure.h"

static int aze_reject(char *err, size_t errlen, const char *msg) {
  if (err && errlen) snprintf(err, errlen, "%s", msg);
  return -EINVAL;
}

int azure_build_embeddings(const prov_target *t, const char *body, size_t len, prov_request *out,
                           char *err, size_t errlen) {
  const char *key = t->api_key ? t->api_key : "";
  json_t *doc = body ? json_loadb(body, len, 0, NULL) : NULL;
  char dep[128];
  int rc;
  if (!json_is_object(doc)) {
    rc = aze_reject(err, errlen, "the request body is not a JSON object");
    goto done;
  }
  json_t *input = json_object_get(doc, "input");
  if (!json_is_string(input) && !(json_is_array(input) && json_array_size(input))) {
    rc = aze_reject(err, errlen, "'input' must be a string or a non-empty array");
    goto done;
  }
  if (strpbrk(key, "\r\n")) {
    rc = aze_reject(err, errlen, "the deployment's credential is not valid");
    goto done;
  }
  if ((rc = azure_url(t, "embeddings", &out->url, dep, sizeof dep, err, errlen))) goto done;
  rc = -ENOMEM;
  if (azure_copy_with_model(&out->body, body, len, dep)) goto done;
  if (prov_request_header(out, "content-type", "application/json")) goto done;
  if (*key && prov_request_header(out, "api-key", key)) goto done;
  rc = 0;
done:
  json_decref(doc);
  if (rc) prov_request_free(out);
  return rc;
}

/* data[] items: objects whose embedding is an array of numbers or a (base64) string. */
static int aze_data_ok(const json_t *data) {
  size_t i, k;
  json_t *item, *x;
  if (!json_is_array(data)) return 0;
  json_array_foreach(data, i, item) {
    json_t *emb = json_object_get(item, "embedding");
    if (json_is_string(emb)) continue;
    if (!json_is_array(emb)) return 0;
    json_array_foreach(emb, k, x) if (!json_is_number(x)) return 0;
  }
  return 1;
}

int azure_decode_embeddings(const char *body, size_t len, const char *model, buf_t *out,
                            prov_usage *usage) {
  json_t *doc = body ? json_loadb(body, len, 0, NULL) : NULL;
  int rc = PS_GARBAGE;
  if (json_is_object(doc) && !json_object_get(doc, "error") &&
      aze_data_ok(json_object_get(doc, "data"))) {
    size_t mark = out->len;
    rc = azure_copy_with_model(out, body, len, model ? model : "");
    if (rc) {
      out->len = mark;
    } else if (usage) {
      json_int_t p = json_integer_value(json_object_get(json_object_get(doc, "usage"),
                                                        "prompt_tokens"));
      *usage = (prov_usage){.prompt_tokens = p > 0 ? (uint64_t)p : 0, .seen = 1};
    }
  }
  json_decref(doc);
  return rc;
}
