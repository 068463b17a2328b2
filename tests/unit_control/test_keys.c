/* test_keys.c — AES-256-GCM at rest: round trip, tamper, wrong AAD, short tags,
 * fresh IVs, and the secret.key file rules. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <errno.h>
#include <fcntl.h>

#include <cmocka.h>

#include "keys.h"

static keys_t key;
static const char secret[] = "sk-provider-0123456789";

static int setup(void **state) {
  memset(key.key, 0x42, sizeof key.key);
  return 0;
}

static void encrypt(const char *aad, uint8_t **blob, size_t *n) {
  assert_int_equal(keys_encrypt(&key, aad, (const uint8_t *)secret, strlen(secret), blob, n), 0);
  assert_int_equal(*n, strlen(secret) + KEYS_OVERHEAD);
}

static void test_round_trip(void **state) {
  uint8_t *blob;
  size_t n, len;
  char *pt;
  encrypt("gpt-4-1", &blob, &n);
  assert_null(memmem(blob, n, secret, strlen(secret)));
  assert_int_equal(keys_decrypt(&key, "gpt-4-1", blob, n, &pt, &len), 0);
  assert_int_equal(len, strlen(secret));
  assert_string_equal(pt, secret);
  free(pt);
  free(blob);
  /* empty plaintext still authenticates */
  assert_int_equal(keys_encrypt(&key, "d", (const uint8_t *)"", 0, &blob, &n), 0);
  assert_int_equal(n, KEYS_OVERHEAD);
  assert_int_equal(keys_decrypt(&key, "d", blob, n, &pt, &len), 0);
  assert_string_equal(pt, "");
  free(pt);
  free(blob);
}

static void test_fresh_iv(void **state) {
  uint8_t *a, *b;
  size_t na, nb;
  encrypt("x", &a, &na);
  encrypt("x", &b, &nb);
  assert_int_equal(na, nb);
  assert_memory_not_equal(a, b, KEYS_IV_BYTES);
  assert_memory_not_equal(a + KEYS_IV_BYTES, b + KEYS_IV_BYTES, na - KEYS_IV_BYTES);
  free(a);
  free(b);
}

static void test_tamper(void **state) {
  uint8_t *blob;
  size_t n;
  char *pt = NULL;
  encrypt("gpt-4-1", &blob, &n);
  for (size_t i = 0; i < n; i++) { /* every byte: iv, ciphertext, tag */
    blob[i] ^= 0x01;
    assert_int_equal(keys_decrypt(&key, "gpt-4-1", blob, n, &pt, NULL), -EBADMSG);
    assert_null(pt);
    blob[i] ^= 0x01;
  }
  assert_int_equal(keys_decrypt(&key, "gpt-4-1", blob, n, &pt, NULL), 0);
  free(pt);
  free(blob);
}

static void test_wrong_aad_and_key(void **state) {
  uint8_t *blob;
  size_t n;
  char *pt = NULL;
  encrypt("gpt-4-1", &blob, &n);
  assert_int_equal(keys_decrypt(&key, "gpt-4-2", blob, n, &pt, NULL), -EBADMSG);
  assert_int_equal(keys_decrypt(&key, "", blob, n, &pt, NULL), -EBADMSG);
  keys_t other = key;
  other.key[0] ^= 0x80;
  assert_int_equal(keys_decrypt(&other, "gpt-4-1", blob, n, &pt, NULL), -EBADMSG);
  assert_null(pt);
  free(blob);
}

/* OpenSSL 3.0 would accept a 1-byte tag if asked to; we never ask. */
static void test_short_tag_rejected(void **state) {
  uint8_t *blob;
  size_t n;
  char *pt = NULL;
  encrypt("d", &blob, &n);
  for (size_t cut = 1; cut < KEYS_TAG_BYTES; cut++)
    assert_int_not_equal(keys_decrypt(&key, "d", blob, n - cut, &pt, NULL), 0);
  for (size_t len = 0; len < KEYS_OVERHEAD; len++)
    assert_int_equal(keys_decrypt(&key, "d", blob, len, &pt, NULL), -EINVAL);
  assert_null(pt);
  free(blob);
}

static void test_key_file(void **state) {
  char dir[] = "/tmp/llmesh-keys-XXXXXX", path[64], err[256];
  keys_t a, b;
  struct stat st;
  assert_non_null(mkdtemp(dir));
  snprintf(path, sizeof path, "%s/secret.key", dir);
  assert_int_equal(keys_load_or_create(&a, path, err, sizeof err), 0);
  assert_int_equal(stat(path, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);
  assert_int_equal(st.st_size, KEYS_KEY_BYTES);
  assert_int_equal(keys_load_or_create(&b, path, err, sizeof err), 0);
  assert_memory_equal(a.key, b.key, KEYS_KEY_BYTES);
  chmod(path, 0644);
  assert_int_equal(keys_load_or_create(&b, path, err, sizeof err), -1);
  assert_non_null(strstr(err, "too open"));
  chmod(path, 0600);
  assert_int_equal(truncate(path, 16), 0);
  assert_int_equal(keys_load_or_create(&b, path, err, sizeof err), -1);
  assert_non_null(strstr(err, "expected 32"));
  unlink(path);
  rmdir(dir);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_round_trip, setup),      cmocka_unit_test_setup(test_fresh_iv, setup),
      cmocka_unit_test_setup(test_tamper, setup),          cmocka_unit_test_setup(test_wrong_aad_and_key, setup),
      cmocka_unit_test_setup(test_short_tag_rejected, setup), cmocka_unit_test(test_key_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
