/* sse.c — OpenAI chunk helpers (see sse.h); the decoder is common/sse_decoder.c. */
#include "sse.h"

#include <string.h>

#include "request.h"

int sse_is_done(const sse_event *ev) {
  return ev->data_len == 6 && memcmp(ev->data, "[DONE]", 6) == 0;
}

int sse_usage(const char *json, size_t n, uint64_t *prompt, uint64_t *completion) {
  size_t uo, ul, vo, vl;
  if (!memmem(json, n, "\"usage\"", 7)) return -1;
  if (req_json_find(json, n, "usage", &uo, &ul) || json[uo] != '{') return -1;
  const char *u = json + uo;
  uint64_t pt = 0, ct = 0;
  if (req_json_find(u, ul, "prompt_tokens", &vo, &vl) == 0) req_json_uint(u + vo, vl, &pt);
  if (req_json_find(u, ul, "completion_tokens", &vo, &vl) == 0) req_json_uint(u + vo, vl, &ct);
  *prompt = pt;
  *completion = ct;
  return 0;
}
