/* prov_json.h — small jansson and error helpers the request translators share. */
#ifndef LLMESH_PROV_JSON_H
#define LLMESH_PROV_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "json_span.h"
#include "provider.h"

/* o[key], with JSON null counted as absent (NULL). */
json_t *prov_field(json_t *o, const char *key);
/* o[key] when it is a string, else NULL. */
const char *prov_str_field(json_t *o, const char *key);
/* Formats a client-facing message into err (errlen bytes, NUL included; nothing when err is
 * NULL or errlen 0). Returns -EINVAL, so a translator can `return prov_reject(...)`. */
int prov_reject(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* dst[to] = req[from] when present. A value of the wrong type (not a number; not an integer
 * >= min) is a client error: message in err, -EINVAL. Returns 0 or -ENOMEM otherwise. */
int prov_copy_number(json_t *req, const char *from, json_t *dst, const char *to, char *err,
                     size_t errlen);
int prov_copy_integer(json_t *req, const char *from, json_t *dst, const char *to, json_int_t min,
                      char *err, size_t errlen);

/* For each name in keys (NULL-terminated) whose value in req is present and not null or
 * false, prov_request_dropped(r, name): the adapter's documented dropped fields. */
void prov_drop_present(prov_request *r, json_t *req, const char *const *keys);

/* ---- numbers and exact bytes ---------------------------------------------------------
 * jansson re-prints reals with 17 digits (0.7 → 0.69999999999999996) and rejects integers
 * beyond int64 outright. Translators load and dump through these helpers, and tool-call
 * arguments travel as the sender's own bytes (raw spans one way, splices the other). */

/* json_loadb(buf, len, flags); when jansson reports an integer beyond int64
 * (json_error_numeric_overflow) it retries with JSON_DECODE_INT_AS_REAL, so one big number
 * never turns a whole answer into garbage. The readers below accept what the retry makes. */
json_t *prov_json_loadb(const char *buf, size_t len, size_t flags, json_error_t *err);
/* A count: a positive integer or integral real (up to 2^64); 0 for anything else. */
uint64_t prov_uint(const json_t *v);
/* An integer or an integral real within int64 into *out: 1, else 0 (*out untouched). */
int prov_int(const json_t *v, json_int_t *out);

/* json_dumps(j, flags) with each real number token re-printed in the shortest form that
 * reads back as the same double (%.15g, %.16g, then %.17g), still a real ("1.0", "1e-7");
 * integers and strings untouched; any JSON_REAL_PRECISION in flags is ignored. malloc'd
 * (free()), NULL on ENOMEM. */
char *prov_json_dumps(const json_t *j, size_t flags);

/* The exact bytes of the value at path in doc (len bytes) as a jansson string, for an
 * OpenAI "arguments" field. v is that value as jansson parsed it: dumped instead (shortest
 * reals) when the span cannot be found (deeper than JSON_SPAN_MAX_DEPTH). NULL on ENOMEM. */
json_t *prov_json_raw(const char *doc, size_t len, const json_span_step *path, size_t npath,
                      const json_t *v);

/* 1 when text (n bytes) is exactly one JSON object, optionally surrounded by whitespace;
 * *obj then names the object's bytes. */
int prov_json_object_text(const char *text, size_t n, json_span *obj);

/* Request splicing: a client's argument text goes into a dumped body as is. Put the node
 * prov_splice_mark returns where the object belongs, dump with prov_splice_dump. */
typedef struct prov_splice_mark_t {
  json_t *node;  /* placeholder string in the caller's tree (one reference held here) */
  char *raw;     /* the object's text (malloc'd copy) */
  size_t len;    /* bytes in raw */
} prov_splice_mark_t;

typedef struct prov_splice {
  char nonce[33];             /* random hex, fixed per build: placeholders cannot be guessed */
  prov_splice_mark_t *marks;  /* one per spliced object, in mark order */
  size_t n;                   /* marks used */
  size_t cap;                 /* marks allocated */
} prov_splice;

/* A placeholder string node (new reference) standing for raw (len bytes, one valid JSON
 * object, see prov_json_object_text); NULL on ENOMEM. */
json_t *prov_splice_mark(prov_splice *sp, const char *raw, size_t len);
/* prov_json_dumps(root, flags) with each quoted placeholder replaced by its raw text,
 * appended to out. When a placeholder does not occur exactly once in the dump (a client
 * string equal to it), the marks are parsed and put in the tree instead (parse + dump).
 * Returns 0, -ENOMEM or -EINVAL (a mark's text did not parse). */
int prov_splice_dump(prov_splice *sp, json_t *root, size_t flags, buf_t *out);
void prov_splice_free(prov_splice *sp);

#endif
