/* embeddings.c — helpers every embeddings adapter's answer goes through (see provider.h). */
#include <errno.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "prov_json.h"
#include "provider.h"

static const char b64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/* Base64 of the little-endian float32 bytes of a JSON number array; NULL on a non-number. */
static json_t *vector_base64(json_t *arr) {
  size_t n = json_array_size(arr), i;
  json_t *v;
  uint8_t *raw = malloc(n * 4 + 1);
  if (!raw) return NULL;
  json_array_foreach(arr, i, v) {
    if (!json_is_number(v)) { free(raw); return NULL; }
    float f = (float)json_number_value(v);
    uint32_t u;
    memcpy(&u, &f, 4);
    for (int k = 0; k < 4; k++) raw[i * 4 + (size_t)k] = (uint8_t)(u >> (8 * k));
  }
  size_t len = n * 4, olen = (len + 2) / 3 * 4;
  char *s = malloc(olen + 1);
  if (!s) { free(raw); return NULL; }
  size_t o = 0;
  for (size_t p = 0; p < len; p += 3) {
    uint32_t w = (uint32_t)raw[p] << 16;
    if (p + 1 < len) w |= (uint32_t)raw[p + 1] << 8;
    if (p + 2 < len) w |= raw[p + 2];
    s[o++] = b64[(w >> 18) & 63];
    s[o++] = b64[(w >> 12) & 63];
    s[o++] = p + 1 < len ? b64[(w >> 6) & 63] : '=';
    s[o++] = p + 2 < len ? b64[w & 63] : '=';
  }
  s[o] = '\0';
  free(raw);
  json_t *r = json_string(s);
  free(s);
  return r;
}

int prov_embeddings_base64(const char *json, size_t len, buf_t *out) {
  json_t *doc = prov_json_loadb(json, len, 0, NULL), *item;
  json_t *data = json_object_get(doc, "data");
  size_t i;
  int rc = 0;
  if (!json_is_array(data)) { rc = PS_GARBAGE; goto done; }
  json_array_foreach(data, i, item) {
    json_t *emb = json_object_get(item, "embedding");
    if (json_is_string(emb)) continue; /* already base64 */
    json_t *s = json_is_array(emb) ? vector_base64(emb) : NULL;
    if (!s) { rc = PS_GARBAGE; goto done; }
    json_object_set_new(item, "embedding", s);
  }
  char *txt = prov_json_dumps(doc, JSON_COMPACT | JSON_PRESERVE_ORDER);
  if (!txt) { rc = -ENOMEM; goto done; }
  if (buf_append(out, txt, strlen(txt))) rc = -ENOMEM;
  free(txt);
done:
  json_decref(doc);
  return rc;
}
