/* test_auth.c — master key check: right key, wrong key, malformed/missing header,
 * no master key configured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <cmocka.h>
#include <openssl/evp.h>

#include "auth.h"

static uint8_t hash[32];

static int setup(void **st) {
  (void)st;
  unsigned int l = 0;
  EVP_Digest("sk-master-123", 13, hash, &l, EVP_sha256(), NULL);
  return l == 32 ? 0 : -1;
}

static int teardown(void **st) {
  (void)st;
  auth_cleanup();
  return 0;
}

static void test_right_key(void **st) {
  (void)st;
  assert_int_equal(auth_check(hash, "Bearer sk-master-123"), 0);
  assert_int_equal(auth_check(hash, "bearer sk-master-123"), 0);
  assert_int_equal(auth_check(hash, "Bearer  sk-master-123 "), 0);
}

static void test_wrong_key(void **st) {
  (void)st;
  assert_int_equal(auth_check(hash, "Bearer sk-master-124"), -1);
  assert_int_equal(auth_check(hash, "Bearer sk-master-12"), -1);
  assert_int_equal(auth_check(hash, "Bearer sk-master-1234"), -1);
}

static void test_missing_or_malformed(void **st) {
  (void)st;
  assert_int_equal(auth_check(hash, NULL), -1);
  assert_int_equal(auth_check(hash, ""), -1);
  assert_int_equal(auth_check(hash, "Bearer "), -1);
  assert_int_equal(auth_check(hash, "Basic c2stbWFzdGVyLTEyMw=="), -1);
  assert_int_equal(auth_check(hash, "sk-master-123"), -1);
}

static void test_no_master_key(void **st) {
  (void)st;
  assert_int_equal(auth_check(NULL, NULL), 0);
  assert_int_equal(auth_check(NULL, "Bearer anything"), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_right_key), cmocka_unit_test(test_wrong_key),
      cmocka_unit_test(test_missing_or_malformed), cmocka_unit_test(test_no_master_key),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
