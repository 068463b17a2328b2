/* fuzz_azure.c — libFuzzer target for the Azure OpenAI adapter: random bytes as a
 * canonical request (build_request: the model splice, never a re-dump), as a whole
 * response (decode_response), as an error body (classify_error), through the splice
 * helper directly, and as an SSE stream, which must decode the same whole and split at a
 * point chosen by the first byte. Nothing may crash, leak or read out of bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "azure.h"

static void run_stream(const char *p, size_t n, size_t cut, int usage, buf_t *out, int *rc) {
  prov_canon c = {"{}", 2, 1, usage};
  prov_usage u = {0};
  prov_error e = PE_NONE;
  prov_stream *s = prov_azure.stream_new(&c, "m");
  if (!s) abort();
  *rc = prov_azure.stream_feed(s, p, cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_azure.stream_feed(s, p + cut, n - cut, out, &u, &e);
  if (*rc == PS_MORE) *rc = prov_azure.stream_end(s, out, &u);
  prov_azure.stream_free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  /* both URL surfaces: the deployments path (api-version) and the v1 surface */
  static const prov_target dep = {.api_base = "https://r.openai.azure.com", .api_key = "k",
                                  .upstream_model = "gpt-4o-dep", .api_version = "2024-10-21"};
  static const prov_target v1 = {.api_base = "https://r.openai.azure.com/openai/v1", .api_key = "k",
                                 .upstream_model = "gpt-4o", .api_version = ""};
  prov_canon c = {p, size, size && (data[0] & 1), size && (data[0] & 2)};
  prov_request r = {0};
  char err[256];
  prov_azure.build_request(size && (data[0] & 4) ? &v1 : &dep, &c, &r, err, sizeof err);
  prov_request_free(&r);

  buf_t out = {0};
  json_t *doc = json_loadb(p, size, 0, NULL); /* the splice's contract: jansson accepted it */
  if (json_is_object(doc)) {
    if (azure_copy_with_model(&out, p, size, "spliced \"model\"")) abort();
    json_t *back = json_loadb(out.data, out.len, 0, NULL); /* still JSON, model spliced */
    if (!json_is_object(back) ||
        strcmp(json_string_value(json_object_get(back, "model")) ?: "", "spliced \"model\""))
      abort();
    json_decref(back);
  }
  json_decref(doc);
  buf_reset(&out);
  prov_usage u = {0};
  prov_azure.decode_response(p, size, "m", &out, &u);
  uint64_t retry = 0;
  prov_azure.classify_error(429, p, size, &retry);
  prov_azure.classify_error(400, p, size, &retry);

  buf_t a = {0}, b = {0};
  int ra, rb;
  size_t cut = size ? (size_t)data[0] % (size + 1) : 0;
  int usage = size && (data[0] & 8);
  run_stream(p, size, size, usage, &a, &ra);
  run_stream(p, size, cut, usage, &b, &rb);
  if (ra != rb || a.len != b.len || (a.len && memcmp(a.data, b.data, a.len))) abort();
  buf_free(&a);
  buf_free(&b);
  buf_free(&out);
  return 0;
}
