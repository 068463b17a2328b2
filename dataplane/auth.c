/* auth.c — master key check (see auth.h). */
#include "auth.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <string.h>
#include <strings.h>

static EVP_MD *sha256; /* fetched once: EVP_sha256() does a locking fetch per use */

int auth_check(const uint8_t *master_sha256, const char *authorization) {
  if (!master_sha256) return 0;
  if (!authorization || strncasecmp(authorization, "Bearer ", 7) != 0) return -1;
  return auth_check_key(master_sha256, authorization + 7);
}

int auth_check_key(const uint8_t *master_sha256, const char *key) {
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  if (!master_sha256) return 0;
  if (!key) return -1;
  while (*key == ' ') key++;
  size_t klen = strlen(key);
  while (klen && (key[klen - 1] == ' ' || key[klen - 1] == '\t')) klen--;
  if (!klen) return -1;
  if (!sha256 && !(sha256 = EVP_MD_fetch(NULL, "SHA256", NULL))) return -1;
  if (!EVP_Digest(key, klen, digest, &dlen, sha256, NULL) || dlen != 32) return -1;
  return CRYPTO_memcmp(digest, master_sha256, 32) == 0 ? 0 : -1;
}

void auth_cleanup(void) {
  EVP_MD_free(sha256);
  sha256 = NULL;
}
