/* keys.h — provider keys at rest: AES-256-GCM with a per-install data key.
 *
 * Blob layout: iv(12) ‖ ciphertext ‖ tag(16). AAD binds a blob to its row (the
 * deployment name), so a ciphertext copied to another row fails to decrypt. The data
 * key lives in DATA/secret.key (32 random bytes, mode 0600). */
#ifndef LLMESH_KEYS_H
#define LLMESH_KEYS_H

#include <stddef.h>
#include <stdint.h>

#define KEYS_KEY_BYTES 32
#define KEYS_IV_BYTES 12
#define KEYS_TAG_BYTES 16
#define KEYS_OVERHEAD (KEYS_IV_BYTES + KEYS_TAG_BYTES) /* blob bytes beyond the plaintext */

typedef struct keys {
  uint8_t key[KEYS_KEY_BYTES]; /* AES-256 data key */
} keys_t;

/* Loads path, or creates it (0600, fresh random key) when absent. Refuses a file whose
 * mode grants group/other access or whose size is not 32 bytes. Returns 0 or -1 with
 * err set. */
int keys_load_or_create(keys_t *k, const char *path, char *err, size_t errlen);
/* Encrypts n bytes of pt under aad into a malloc'd blob. Returns 0 or a negative errno. */
int keys_encrypt(const keys_t *k, const char *aad, const uint8_t *pt, size_t n,
                 uint8_t **blob, size_t *blob_len);
/* Decrypts a blob into a malloc'd NUL-terminated plaintext. Returns 0, -EINVAL for a
 * malformed blob, -EBADMSG when authentication fails. */
int keys_decrypt(const keys_t *k, const char *aad, const uint8_t *blob, size_t blob_len,
                 char **pt, size_t *pt_len);
/* The same with an AAD of aad_len bytes (may contain NULs: "name\0column" binds a blob
 * to one column of one row). */
int keys_encrypt_aad(const keys_t *k, const void *aad, size_t aad_len, const uint8_t *pt, size_t n,
                     uint8_t **blob, size_t *blob_len);
int keys_decrypt_aad(const keys_t *k, const void *aad, size_t aad_len, const uint8_t *blob,
                     size_t blob_len, char **pt, size_t *pt_len);
/* HMAC-SHA256 under the data key (content fingerprints that reveal nothing). */
int keys_hmac(const keys_t *k, const void *data, size_t n, uint8_t out[32]);
void keys_wipe(keys_t *k);

#endif
