/* sigv4.c — AWS Signature Version 4 (see sigv4.h): canonical request, string to sign,
 * signing key (cached for the last date/region/service/secret) and Authorization value.
 * SHA-256 is fetched once (EVP_sha256() does a locking fetch on every use,
 * integration-notes §7.2); one-shot HMAC() is not deprecated in OpenSSL 3. */
#include "sigv4.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define MAX_SIGNED 16   /* headers one request may sign */
#define MAX_KEYPART 256 /* bytes of secret/region/service a cached key may be derived from */

static EVP_MD *sha256_md; /* fetched once, kept for the process */

/* Last derived kSigning and what it was derived from. */
static struct {
  char secret[MAX_KEYPART], region[MAX_KEYPART], service[MAX_KEYPART], date[9];
  unsigned char key[32];
  int valid;
} key_cache;

static const EVP_MD *md(void) {
  if (!sha256_md) sha256_md = EVP_MD_fetch(NULL, "SHA256", NULL);
  return sha256_md;
}

static void to_hex(const unsigned char *b, size_t n, char *hex) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    hex[2 * i] = digits[b[i] >> 4];
    hex[2 * i + 1] = digits[b[i] & 15];
  }
  hex[2 * n] = '\0';
}

int sigv4_sha256_hex(const void *p, size_t n, char hex[65]) {
  unsigned char d[32];
  unsigned int dl = 0;
  if (!md() || !EVP_Digest(p, n, d, &dl, md(), NULL) || dl != 32) return -ENOMEM;
  to_hex(d, 32, hex);
  return 0;
}

void sigv4_amz_date(uint64_t epoch_s, char out[17]) {
  time_t t = (time_t)epoch_s;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(out, 17, "%Y%m%dT%H%M%SZ", &tm);
}

static int unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
         c == '-' || c == '.' || c == '_' || c == '~';
}

int sigv4_uri_encode(buf_t *out, const char *s, size_t n, int keep_slash) {
  static const char hexd[] = "0123456789ABCDEF";
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (unreserved(c) || (keep_slash && c == '/')) continue;
    char e[3] = {'%', hexd[c >> 4], hexd[c & 15]};
    if (buf_append(out, s + run, i - run) || buf_append(out, e, 3)) return -ENOMEM;
    run = i + 1;
  }
  return buf_append(out, s + run, n - run) ? -ENOMEM : 0;
}

static int cmp_header(const void *a, const void *b) {
  return strcasecmp((*(const sigv4_header *const *)a)->name,
                    (*(const sigv4_header *const *)b)->name);
}

/* name:value\n with the name lowercased and the value trimmed, space runs collapsed. */
static int canonical_header(buf_t *out, const sigv4_header *h) {
  const char *v = h->value ? h->value : "";
  if (!h->name || !*h->name || strpbrk(h->name, " :\r\n") || strpbrk(v, "\r\n")) return -EINVAL;
  for (const char *p = h->name; *p; p++) {
    char c = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
    if (buf_append(out, &c, 1)) return -ENOMEM;
  }
  if (buf_append(out, ":", 1)) return -ENOMEM;
  while (*v == ' ' || *v == '\t') v++;
  size_t n = strlen(v);
  while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) n--;
  for (size_t i = 0; i < n; i++) {
    int space = v[i] == ' ' || v[i] == '\t';
    if (space && i && (v[i - 1] == ' ' || v[i - 1] == '\t')) continue;
    if (buf_append(out, space ? " " : v + i, 1)) return -ENOMEM;
  }
  return buf_append(out, "\n", 1) ? -ENOMEM : 0;
}

/* Sorted header pointers into sorted[]; -EINVAL on too many or duplicate names. */
static int sort_headers(const sigv4_request *r, const sigv4_header *sorted[MAX_SIGNED]) {
  if (r->nheaders == 0 || r->nheaders > MAX_SIGNED) return -EINVAL;
  for (size_t i = 0; i < r->nheaders; i++) sorted[i] = &r->headers[i];
  qsort(sorted, r->nheaders, sizeof sorted[0], cmp_header);
  for (size_t i = 1; i < r->nheaders; i++)
    if (!strcasecmp(sorted[i - 1]->name, sorted[i]->name)) return -EINVAL;
  return 0;
}

static int signed_headers(buf_t *out, const sigv4_header *const *sorted, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (i && buf_append(out, ";", 1)) return -ENOMEM;
    for (const char *p = sorted[i]->name; *p; p++) {
      char c = (char)(*p >= 'A' && *p <= 'Z' ? *p + 32 : *p);
      if (buf_append(out, &c, 1)) return -ENOMEM;
    }
  }
  return 0;
}

/* Each '/'-separated segment of the path as sent, URI-encoded again. */
static int canonical_uri(buf_t *out, const char *path) {
  if (!path || path[0] != '/') return -EINVAL;
  return sigv4_uri_encode(out, path, strlen(path), 1);
}

static int date_ok(const char *d) {
  if (!d || strlen(d) != 16 || d[8] != 'T' || d[15] != 'Z') return 0;
  for (int i = 0; i < 15; i++)
    if (i != 8 && (d[i] < '0' || d[i] > '9')) return 0;
  return 1;
}

int sigv4_canonical_request(const sigv4_request *r, buf_t *out) {
  const sigv4_header *sorted[MAX_SIGNED];
  int rc;
  if (!r->method || !*r->method || !date_ok(r->amz_date) || !r->payload_sha256 ||
      strlen(r->payload_sha256) != 64)
    return -EINVAL;
  if ((rc = sort_headers(r, sorted))) return rc;
  if (buf_printf(out, "%s\n", r->method)) return -ENOMEM;
  if ((rc = canonical_uri(out, r->path))) return rc;
  if (buf_printf(out, "\n%s\n", r->query ? r->query : "")) return -ENOMEM;
  for (size_t i = 0; i < r->nheaders; i++)
    if ((rc = canonical_header(out, sorted[i]))) return rc;
  if (buf_append(out, "\n", 1) || signed_headers(out, sorted, r->nheaders) ||
      buf_printf(out, "\n%s", r->payload_sha256))
    return -ENOMEM;
  return 0;
}

static int hmac(const void *key, size_t klen, const char *msg, size_t mlen, unsigned char out[32]) {
  unsigned int ol = 0;
  if (!md() || !HMAC(md(), key, (int)klen, (const unsigned char *)msg, mlen, out, &ol) || ol != 32)
    return -ENOMEM;
  return 0;
}

static int fits(const char *s) { return strlen(s) < MAX_KEYPART; }

/* kSigning for (secret, date, region, service), from the cache when it matches. */
static int signing_key(const char *secret, const char *date, const char *region,
                       const char *service, unsigned char key[32]) {
  int cacheable = fits(secret) && fits(region) && fits(service);
  if (cacheable && key_cache.valid && !strcmp(key_cache.date, date) &&
      !strcmp(key_cache.region, region) && !strcmp(key_cache.service, service) &&
      !strcmp(key_cache.secret, secret)) {
    memcpy(key, key_cache.key, 32);
    return 0;
  }
  size_t sl = strlen(secret);
  char *k0 = malloc(sl + 5);
  if (!k0) return -ENOMEM;
  memcpy(k0, "AWS4", 4);
  memcpy(k0 + 4, secret, sl + 1);
  unsigned char k1[32], k2[32], k3[32];
  int rc = hmac(k0, sl + 4, date, 8, k1) || hmac(k1, 32, region, strlen(region), k2) ||
           hmac(k2, 32, service, strlen(service), k3) || hmac(k3, 32, "aws4_request", 12, key);
  OPENSSL_cleanse(k0, sl + 4);
  free(k0);
  if (rc) return -ENOMEM;
  if (cacheable) {
    strcpy(key_cache.secret, secret);
    strcpy(key_cache.region, region);
    strcpy(key_cache.service, service);
    memcpy(key_cache.date, date, 8);
    key_cache.date[8] = '\0';
    memcpy(key_cache.key, key, 32);
    key_cache.valid = 1;
  }
  return 0;
}

static int scope_part_ok(const char *s) {
  return s && *s && !strpbrk(s, "/\r\n ,");
}

int sigv4_authorization(const sigv4_creds *c, const sigv4_request *r, buf_t *out) {
  if (!c || !scope_part_ok(c->access_key_id) || !c->secret_access_key || !*c->secret_access_key ||
      !scope_part_ok(r->region) || !scope_part_ok(r->service))
    return -EINVAL;
  buf_t creq = {0}, sts = {0}, sh = {0};
  const sigv4_header *sorted[MAX_SIGNED];
  char chash[65], date[9], sig[65];
  unsigned char key[32], mac[32];
  int rc = sigv4_canonical_request(r, &creq);
  if (!rc) rc = sigv4_sha256_hex(creq.data, creq.len, chash);
  if (rc) goto done;
  memcpy(date, r->amz_date, 8);
  date[8] = '\0';
  rc = -ENOMEM;
  if (buf_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/%s/aws4_request\n%s", r->amz_date, date,
                 r->region, r->service, chash))
    goto done;
  if (signing_key(c->secret_access_key, date, r->region, r->service, key) ||
      hmac(key, 32, sts.data, sts.len, mac))
    goto done;
  to_hex(mac, 32, sig);
  sort_headers(r, sorted); /* cannot fail: the canonical request passed */
  if (signed_headers(&sh, sorted, r->nheaders) || !buf_cstr(&sh) ||
      buf_printf(out, "AWS4-HMAC-SHA256 Credential=%s/%s/%s/%s/aws4_request, SignedHeaders=%s, "
                      "Signature=%s", c->access_key_id, date, r->region, r->service, sh.data, sig))
    goto done;
  rc = 0;
done:
  OPENSSL_cleanse(key, sizeof key);
  buf_free(&creq);
  buf_free(&sts);
  buf_free(&sh);
  return rc;
}
