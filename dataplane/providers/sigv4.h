/* sigv4.h — AWS Signature Version 4 for requests with an Authorization header
 * (provider-wire-formats.md §6.6; docs.aws.amazon.com "Create a signed AWS API request").
 * Pure: the caller passes the time; OpenSSL does SHA-256 and HMAC.
 *
 *   canonical request = METHOD \n CanonicalURI \n CanonicalQuery \n CanonicalHeaders \n
 *                       SignedHeaders \n hex(SHA256(payload))
 *   string to sign    = "AWS4-HMAC-SHA256" \n amz_date \n scope \n hex(SHA256(canonical))
 *   scope             = date/region/service/aws4_request
 *   kSigning          = HMAC(HMAC(HMAC(HMAC("AWS4"+secret, date), region), service),
 *                       "aws4_request")
 *
 * CanonicalURI follows the non-S3 rule: every segment of the path *as sent* (already
 * percent-encoded) is URI-encoded again, so "%3A" in the path signs as "%253A". Paths are
 * not normalised (no "." / ".." removal): callers build clean paths. */
#ifndef LLMESH_SIGV4_H
#define LLMESH_SIGV4_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Long-term or temporary credentials. */
typedef struct sigv4_creds {
  const char *access_key_id;     /* AKIA... / ASIA... */
  const char *secret_access_key; /* the secret; never logged */
  const char *session_token;     /* STS token, NULL or "" for long-term keys (the caller
                                    sends and signs x-amz-security-token) */
} sigv4_creds;

/* One header to sign. */
typedef struct sigv4_header {
  const char *name;  /* any case; signed lowercased */
  const char *value; /* signed trimmed, inner runs of spaces collapsed */
} sigv4_header;

/* What gets signed. */
typedef struct sigv4_request {
  const char *method;           /* "POST" */
  const char *path;             /* path as sent, percent-encoded, starting with '/' */
  const char *query;            /* canonical query string (sorted, encoded), "" if none */
  const sigv4_header *headers;  /* headers to sign: host and x-amz-date at least; unique names */
  size_t nheaders;              /* entries in headers */
  const char *payload_sha256;   /* lowercase hex SHA-256 of the exact body bytes */
  const char *amz_date;         /* "YYYYMMDDTHHMMSSZ", the x-amz-date header value */
  const char *region;           /* "us-east-1" */
  const char *service;          /* "bedrock" */
} sigv4_request;

/* Lowercase hex SHA-256 of p[0..n) into hex (65 bytes with the NUL). 0 or -ENOMEM. */
int sigv4_sha256_hex(const void *p, size_t n, char hex[65]);

/* "YYYYMMDDTHHMMSSZ" (UTC) for epoch seconds. */
void sigv4_amz_date(uint64_t epoch_s, char out[17]);

/* Appends s[0..n) URI-encoded the AWS way: A-Z a-z 0-9 - . _ ~ kept, every other byte
 * as %XX (uppercase hex); '/' kept when keep_slash. 0 or -ENOMEM. */
int sigv4_uri_encode(buf_t *out, const char *s, size_t n, int keep_slash);

/* Appends the canonical request (exposed for tests and debugging). 0, -EINVAL (bad
 * header, path or date), -ENOMEM. */
int sigv4_canonical_request(const sigv4_request *r, buf_t *out);

/* Appends the Authorization header value "AWS4-HMAC-SHA256 Credential=..., SignedHeaders=
 * ..., Signature=..." for r signed with c. 0, -EINVAL, -ENOMEM. kSigning is cached for the
 * last (secret, date, region, service); not thread-safe (workers are single-threaded). */
int sigv4_authorization(const sigv4_creds *c, const sigv4_request *r, buf_t *out);

#endif
