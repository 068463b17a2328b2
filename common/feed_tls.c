/* feed_tls.c — mutual TLS on the feeds: PEM checks up front, one NNG TLS config per
 * endpoint.
 *
 * The PEM text is read once and checked with OpenSSL (which names what is wrong, and can
 * tell a key that does not match its certificate — NNG's mbedTLS engine cannot). Each
 * endpoint then gets its own nng_tls_config, because a config becomes read-only once
 * used and a dialer's expected server name is its own URL's host. */
#include "feed_tls.h"

#include <arpa/inet.h>
#include <errno.h>
#include <nng/supplemental/tls/tls.h>
#include <openssl/bio.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define FEED_TLS_PEM_MAX (1 << 20) /* bytes: larger is not a certificate file */

typedef struct feed_tls_state {
  char *cert; /* our certificate (chain), PEM text */
  char *key;  /* our private key, PEM text */
  char *ca;   /* CA certificate(s) that sign the peers, PEM text */
} feed_tls_state;

static feed_tls_state tls; /* all NULL until feed_tls_init */

/* ------------------------------------------------------------------ files */

static char *feed_tls_read(const char *path, const char *what, char *err, size_t cap) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, cap, "cannot read %s '%s': %s", what, path, strerror(errno));
    return NULL;
  }
  char *buf = malloc(FEED_TLS_PEM_MAX + 1);
  size_t n = buf ? fread(buf, 1, FEED_TLS_PEM_MAX + 1, f) : 0;
  int bad = !buf || ferror(f) || n == 0 || n > FEED_TLS_PEM_MAX;
  fclose(f);
  if (bad) {
    snprintf(err, cap, "cannot read %s '%s': %s", what, path,
             !buf ? "out of memory" : n == 0 ? "empty or unreadable" : "larger than 1 MiB");
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  return buf;
}

static X509 *feed_tls_pem_cert(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
  BIO_free(b);
  return x;
}

static EVP_PKEY *feed_tls_pem_key(const char *pem) {
  BIO *b = BIO_new_mem_buf(pem, -1);
  EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, (void *)"") : NULL; /* "": no prompt */
  BIO_free(b);
  return k;
}

/* OpenSSL's view: each file parses, and the key belongs to the certificate. */
static int feed_tls_check_pem(const char *cert_file, const char *key_file, const char *ca_file,
                              char *err, size_t cap) {
  X509 *cert = feed_tls_pem_cert(tls.cert), *ca = feed_tls_pem_cert(tls.ca);
  EVP_PKEY *key = feed_tls_pem_key(tls.key);
  int rv = -1;
  if (!cert)
    snprintf(err, cap, "--tls-cert '%s' holds no PEM certificate", cert_file);
  else if (!key)
    snprintf(err, cap, "--tls-key '%s' holds no unencrypted PEM private key", key_file);
  else if (!ca)
    snprintf(err, cap, "--tls-ca '%s' holds no PEM certificate", ca_file);
  else if (X509_check_private_key(cert, key) != 1)
    snprintf(err, cap, "--tls-key '%s' does not match the certificate in --tls-cert '%s'", key_file, cert_file);
  else
    rv = 0;
  X509_free(cert);
  X509_free(ca);
  EVP_PKEY_free(key);
  return rv;
}

/* ------------------------------------------------------------------ configs */

static int feed_tls_config(nng_tls_config **out, nng_tls_mode mode, const char *server_name) {
  nng_tls_config *c;
  int rv = nng_tls_config_alloc(&c, mode);
  if (rv != 0) return rv;
  if ((rv = nng_tls_config_own_cert(c, tls.cert, tls.key, NULL)) == 0 &&
      (rv = nng_tls_config_ca_chain(c, tls.ca, NULL)) == 0 &&
      (rv = nng_tls_config_auth_mode(c, NNG_TLS_AUTH_MODE_REQUIRED)) == 0 && server_name)
    rv = nng_tls_config_server_name(c, server_name);
  if (rv != 0) {
    nng_tls_config_free(c);
    return rv;
  }
  *out = c;
  return 0;
}

/* The TLS engine's view (mbedTLS may refuse what OpenSSL accepts). */
static int feed_tls_check_engine(char *err, size_t cap) {
  nng_tls_config *c;
  int rv = feed_tls_config(&c, NNG_TLS_MODE_SERVER, NULL);
  if (rv != 0) {
    snprintf(err, cap, "the TLS engine (%s) rejects the certificate, key or CA: %s", nng_tls_engine_name(),
             nng_strerror(rv));
    return -1;
  }
  nng_tls_config_free(c);
  return 0;
}

int feed_tls_init(const char *cert_file, const char *key_file, const char *ca_file, char *err, size_t cap) {
  feed_tls_fini();
  if (!(tls.cert = feed_tls_read(cert_file, "--tls-cert", err, cap)) ||
      !(tls.key = feed_tls_read(key_file, "--tls-key", err, cap)) ||
      !(tls.ca = feed_tls_read(ca_file, "--tls-ca", err, cap)) ||
      feed_tls_check_pem(cert_file, key_file, ca_file, err, cap) < 0 || feed_tls_check_engine(err, cap) < 0) {
    feed_tls_fini();
    return -1;
  }
  return 0;
}

static void feed_tls_wipe(char **pem) {
  if (*pem) OPENSSL_cleanse(*pem, strlen(*pem)); /* the key must not linger in freed memory */
  free(*pem);
  *pem = NULL;
}

void feed_tls_fini(void) {
  feed_tls_wipe(&tls.cert);
  feed_tls_wipe(&tls.key);
  feed_tls_wipe(&tls.ca);
}

int feed_tls_enabled(void) { return tls.cert != NULL; }

/* ------------------------------------------------------------------ URLs */

int feed_tls_url_is_tls(const char *url) { return strncmp(url, "tls+tcp", 7) == 0; }

static int feed_tls_host_is_local(const char *host) {
  struct in_addr a4;
  struct in6_addr a6;
  if (!strcmp(host, "localhost")) return 1;
  if (inet_pton(AF_INET, host, &a4) == 1) return (ntohl(a4.s_addr) >> 24) == 127;
  return inet_pton(AF_INET6, host, &a6) == 1 && IN6_IS_ADDR_LOOPBACK(&a6);
}

int feed_tls_url_is_local(const char *url) {
  nng_url *u;
  if (!strncmp(url, "ipc://", 6) || !strncmp(url, "inproc://", 9) || !strncmp(url, "abstract://", 11)) return 1;
  if (nng_url_parse(&u, url) != 0) return 0;
  int local = u->u_hostname && feed_tls_host_is_local(u->u_hostname);
  nng_url_free(u);
  return local;
}

int feed_tls_check_url(const char *url, char *err, size_t cap) {
  if (feed_tls_enabled() && !feed_tls_url_is_tls(url)) {
    snprintf(err, cap, "'%s' is not tls+tcp://, but --tls-cert/--tls-key/--tls-ca are given", url);
    return -1;
  }
  if (!feed_tls_enabled() && feed_tls_url_is_tls(url)) {
    snprintf(err, cap, "'%s' needs --tls-cert, --tls-key and --tls-ca", url);
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ endpoints */

int feed_tls_listener(nng_listener l, const char *url) {
  nng_tls_config *c;
  if (!feed_tls_url_is_tls(url)) return feed_tls_enabled() ? NNG_EINVAL : 0;
  if (!feed_tls_enabled()) return NNG_EINVAL;
  int rv = feed_tls_config(&c, NNG_TLS_MODE_SERVER, NULL);
  if (rv != 0) return rv;
  rv = nng_listener_set_ptr(l, NNG_OPT_TLS_CONFIG, c); /* the listener holds its own reference */
  nng_tls_config_free(c);
  return rv;
}

int feed_tls_dialer(nng_dialer d, const char *url) {
  nng_tls_config *c;
  nng_url *u;
  if (!feed_tls_url_is_tls(url)) return feed_tls_enabled() ? NNG_EINVAL : 0;
  if (!feed_tls_enabled()) return NNG_EINVAL;
  int rv = nng_url_parse(&u, url);
  if (rv != 0) return rv;
  rv = feed_tls_config(&c, NNG_TLS_MODE_CLIENT, u->u_hostname);
  nng_url_free(u);
  if (rv != 0) return rv;
  rv = nng_dialer_set_ptr(d, NNG_OPT_TLS_CONFIG, c); /* the dialer holds its own reference */
  nng_tls_config_free(c);
  return rv;
}

void feed_tls_before_close(const char *url) {
  struct timespec grace = {0, FEED_TLS_CLOSE_GRACE_MS * 1000000L};
  if (feed_tls_url_is_tls(url)) nanosleep(&grace, NULL);
}
