/* keys.c — AES-256-GCM for provider keys at rest (see keys.h). OpenSSL 3.0 accepts
 * short GCM tags on decrypt, so the tag length is always the constant 16. */
#include "keys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

static int keys_create(keys_t *k, const char *path, char *err, size_t errlen) {
  int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot create: %s", path, strerror(errno));
    return -1;
  }
  int ok = RAND_bytes(k->key, KEYS_KEY_BYTES) == 1 &&
           write(fd, k->key, KEYS_KEY_BYTES) == KEYS_KEY_BYTES && fsync(fd) == 0;
  int saved = errno;
  close(fd);
  if (!ok) {
    unlink(path);
    snprintf(err, errlen, "%s: cannot write a new key: %s", path, strerror(saved ? saved : EIO));
    return -1;
  }
  return 0;
}

int keys_load_or_create(keys_t *k, const char *path, char *err, size_t errlen) {
  int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  if (fd < 0 && errno == ENOENT) return keys_create(k, path, err, errlen);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  struct stat st;
  int rv = -1;
  if (fstat(fd, &st) < 0)
    snprintf(err, errlen, "%s: cannot stat: %s", path, strerror(errno));
  else if (!S_ISREG(st.st_mode))
    snprintf(err, errlen, "%s: not a regular file", path);
  else if (st.st_mode & 077)
    snprintf(err, errlen, "%s: mode %03o is too open, expected 0600", path, (unsigned)(st.st_mode & 0777));
  else if (st.st_size != KEYS_KEY_BYTES)
    snprintf(err, errlen, "%s: size %lld bytes, expected %d", path, (long long)st.st_size, KEYS_KEY_BYTES);
  else if (read(fd, k->key, KEYS_KEY_BYTES) != KEYS_KEY_BYTES)
    snprintf(err, errlen, "%s: short read", path);
  else
    rv = 0;
  close(fd);
  return rv;
}

int keys_encrypt(const keys_t *k, const char *aad, const uint8_t *pt, size_t n,
                 uint8_t **blob, size_t *blob_len) {
  return keys_encrypt_aad(k, aad, strlen(aad), pt, n, blob, blob_len);
}

int keys_decrypt(const keys_t *k, const char *aad, const uint8_t *blob, size_t blob_len,
                 char **pt, size_t *pt_len) {
  return keys_decrypt_aad(k, aad, strlen(aad), blob, blob_len, pt, pt_len);
}

int keys_encrypt_aad(const keys_t *k, const void *aad, size_t aad_len, const uint8_t *pt, size_t n,
                     uint8_t **blob, size_t *blob_len) {
  if (aad_len > (size_t)INT32_MAX) return -EINVAL;
  if (n > (size_t)INT32_MAX - KEYS_OVERHEAD) return -EINVAL;
  uint8_t *out = malloc(n + KEYS_OVERHEAD);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0, ok = out && c && RAND_bytes(out, KEYS_IV_BYTES) == 1 &&
      EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->key, out) == 1 &&
      EVP_EncryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)aad_len) == 1 &&
      EVP_EncryptUpdate(c, out + KEYS_IV_BYTES, &len, pt, (int)n) == 1 &&
      EVP_EncryptFinal_ex(c, out + KEYS_IV_BYTES + len, &fin) == 1 &&
      (size_t)(len + fin) == n &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, KEYS_TAG_BYTES, out + KEYS_IV_BYTES + n) == 1;
  EVP_CIPHER_CTX_free(c);
  if (!ok) {
    free(out);
    return out ? -EIO : -ENOMEM;
  }
  *blob = out;
  *blob_len = n + KEYS_OVERHEAD;
  return 0;
}

int keys_decrypt_aad(const keys_t *k, const void *aad, size_t aad_len, const uint8_t *blob,
                     size_t blob_len, char **pt, size_t *pt_len) {
  if (aad_len > (size_t)INT32_MAX) return -EINVAL;
  if (blob_len < KEYS_OVERHEAD || blob_len > (size_t)INT32_MAX) return -EINVAL;
  size_t n = blob_len - KEYS_OVERHEAD;
  uint8_t tag[KEYS_TAG_BYTES];
  memcpy(tag, blob + blob_len - KEYS_TAG_BYTES, KEYS_TAG_BYTES);
  char *out = malloc(n + 1);
  EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
  int len = 0, fin = 0, ok = out && c &&
      EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, k->key, blob) == 1 &&
      EVP_DecryptUpdate(c, NULL, &len, (const uint8_t *)aad, (int)aad_len) == 1 &&
      EVP_DecryptUpdate(c, (uint8_t *)out, &len, blob + KEYS_IV_BYTES, (int)n) == 1 &&
      EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, KEYS_TAG_BYTES, tag) == 1 &&
      EVP_DecryptFinal_ex(c, (uint8_t *)out + len, &fin) > 0 && (size_t)(len + fin) == n;
  EVP_CIPHER_CTX_free(c);
  if (!ok) {
    if (out) OPENSSL_cleanse(out, n + 1);
    free(out);
    return out ? -EBADMSG : -ENOMEM;
  }
  out[n] = '\0';
  *pt = out;
  if (pt_len) *pt_len = n;
  return 0;
}

int keys_hmac(const keys_t *k, const void *data, size_t n, uint8_t out[32]) {
  unsigned int len = 0;
  if (!HMAC(EVP_sha256(), k->key, KEYS_KEY_BYTES, data, n, out, &len) || len != 32) return -EIO;
  return 0;
}

void keys_wipe(keys_t *k) { OPENSSL_cleanse(k->key, sizeof k->key); }
