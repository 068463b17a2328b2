/* sa_key.h — a throwaway Google service-account key for tests: a fresh RSA-2048 key in
 * the JSON layout of a downloaded key file (private_key PEM with \n escapes). */
#ifndef LLMESH_TEST_SA_KEY_H
#define LLMESH_TEST_SA_KEY_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

/* malloc'd JSON; pem_line gets a 40-byte piece of the key's base64 (for leak checks). */
static char *sa_key_json(const char *email, const char *project, const char *token_uri,
                         char pem_line[41]) {
  EVP_PKEY *k = EVP_RSA_gen(2048);
  BIO *b = BIO_new(BIO_s_mem());
  if (!k || !b || !PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL)) abort();
  char *pem;
  long n = BIO_get_mem_data(b, &pem);
  char *esc = malloc((size_t)n * 2 + 1), *o = esc;
  for (long i = 0; i < n; i++) {
    if (pem[i] == '\n') { *o++ = '\\'; *o++ = 'n'; }
    else *o++ = pem[i];
  }
  *o = '\0';
  const char *body = strchr(pem, '\n') + 1; /* first base64 line */
  memcpy(pem_line, body, 40);
  pem_line[40] = '\0';
  char *json = NULL;
  if (asprintf(&json,
               "{\"type\":\"service_account\",\"project_id\":\"%s\",\"private_key_id\":\"kid-1\","
               "\"private_key\":\"%s\",\"client_email\":\"%s\",\"client_id\":\"1\","
               "\"token_uri\":\"%s\"}", project, esc, email, token_uri) < 0)
    abort();
  free(esc);
  BIO_free(b);
  EVP_PKEY_free(k);
  return json;
}

#endif
