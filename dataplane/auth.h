/* auth.h — authenticate stage: the master key from the snapshot.
 *
 * The presented key's SHA-256 is compared in constant time with the snapshot's
 * master_key_sha256; the worker never holds the key itself. No master key in the
 * snapshot means auth is off. */
#ifndef LLMESH_AUTH_H
#define LLMESH_AUTH_H

#include <stdint.h>

#define AUTH_ERROR_BODY \
  "{\"error\":{\"message\":\"Invalid or missing API key. Pass it as 'Authorization: Bearer <key>'.\"," \
  "\"type\":\"authentication_error\",\"code\":\"invalid_api_key\"}}"

/* Returns 0 when the request may pass: master_sha256 is NULL (auth off), or the
 * Authorization header value is "Bearer <key>" with SHA-256(key) == master_sha256.
 * Returns -1 otherwise (missing, malformed or wrong). */
int auth_check(const uint8_t *master_sha256, const char *authorization);
/* The same for a bare key (Anthropic clients send x-api-key: <key>); NULL key = -1. */
int auth_check_key(const uint8_t *master_sha256, const char *key);
void auth_cleanup(void); /* frees the digest fetched once */

#endif
