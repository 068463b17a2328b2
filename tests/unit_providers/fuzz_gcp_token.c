/* fuzz_gcp_token.c — libFuzzer target for service-account tokens (gcp_token.c): random
 * bytes as a token endpoint answer (gcp_token_parse, at two clocks and two output
 * capacities) and as a service-account JSON (gcp_sa_parse; when one parses, a JWT and the
 * token request are built from it). Nothing may crash, leak or read out of bounds, and a
 * parsed token must fit its buffer and expire after now. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gcp_token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *p = (const char *)data;
  char tok[GCP_TOKEN_MAX], small[16], err[256];
  uint64_t exp = 0;
  const uint64_t now = 1735000000u;
  if (gcp_token_parse(p, size, now, tok, sizeof tok, &exp, err, sizeof err) == 0) {
    if (strnlen(tok, sizeof tok) >= sizeof tok || exp <= now) abort();
  }
  if (gcp_token_parse(p, size, now, small, sizeof small, &exp, err, sizeof err) == 0) {
    if (strnlen(small, sizeof small) >= sizeof small) abort();
  }
  gcp_token_parse(p, size, 0, tok, sizeof tok, &exp, err, sizeof err);

  gcp_sa *sa = gcp_sa_parse(p, size, err, sizeof err);
  if (sa) {
    if (!gcp_sa_email(sa) || !gcp_sa_project(sa) || !gcp_sa_token_uri(sa)) abort();
    buf_t jwt = {0};
    gcp_jwt_build(sa, now, GCP_SCOPE_CLOUD, &jwt);
    buf_free(&jwt);
    prov_request r = {0};
    gcp_token_request(sa, now, &r);
    prov_request_free(&r);
    gcp_sa_free(sa);
  }
  return 0;
}
