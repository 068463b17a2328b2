/* fuzz_request.c — libFuzzer target for the request scanner: never crashes, and a
 * successful parse rewrites into a body that parses again to the new model. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "request.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  req_info ri, r2;
  const char *p = (const char *)data;
  int valid = req_json_valid(p, size);
  int rc = req_parse(p, size, &ri);
  /* verdicts given only after the whole body was scanned imply valid JSON */
  if ((rc == REQ_OK || rc == REQ_ENOMODEL || rc == REQ_EMODELTYPE || rc == REQ_EOBJECT) && !valid)
    abort();
  if (rc == REQ_EJSON && valid) abort();
  if (rc == REQ_OK) {
    buf_t out = {0};
    if (req_rewrite_model(&out, p, size, &ri, "up\"stream\\\x01") == 0) {
      if (req_parse(out.data, out.len, &r2) != REQ_OK) abort();
      if (strcmp(r2.model, "up\"stream\\\x01") != 0) abort();
      if (r2.stream != ri.stream) abort();
    }
    buf_free(&out);
  }
  size_t o, l;
  req_json_find(p, size, "usage", &o, &l);
  return 0;
}
