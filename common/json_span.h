/* json_span.h — raw byte spans of JSON values, found without building a tree.
 *
 * The translators parse with jansson, but a value they only pass on (tool-call arguments)
 * must reach the other side byte for byte: jansson would re-print 0.1 as 0.10000000000000001
 * and reject an integer beyond int64. These helpers validate JSON text (RFC 8259: strict
 * numbers, escapes, UTF-8, nesting up to JSON_SPAN_MAX_DEPTH) and find the bytes of one
 * value by a path of object keys and array indices. Pure: no allocation, no I/O.
 *
 * Keys are compared after unescaping ("a\u0062" matches "ab"); when an object repeats a
 * key the last one wins, as in jansson. Offsets and lengths are in bytes. */
#ifndef LLMESH_JSON_SPAN_H
#define LLMESH_JSON_SPAN_H

#include <stddef.h>

#define JSON_SPAN_MAX_DEPTH 512 /* nesting of arrays/objects; deeper is rejected */

/* Errors (negative). */
enum json_span_err {
  JSON_SPAN_EINVAL = -1,   /* not valid JSON where a value was expected */
  JSON_SPAN_EDEPTH = -2,   /* nesting deeper than JSON_SPAN_MAX_DEPTH */
  JSON_SPAN_ENOENT = -3,   /* the path names no value (missing key, index out of range,
                            * or a step into a scalar) */
};

/* The bytes of one value inside a larger text. */
typedef struct json_span {
  const char *p; /* first byte of the value ('{', '"', '-', digit, 't', 'f' or 'n') */
  size_t len;    /* bytes of the value, without surrounding whitespace */
} json_span;

/* One step of a path: an object key (key != NULL) or an array index (key == NULL). */
typedef struct json_span_step {
  const char *key; /* NUL-terminated key, compared with the unescaped member name */
  size_t index;    /* array position (0-based) when key is NULL */
} json_span_step;

/* Validates the one value starting at s[pos] (leading whitespace skipped) and sets *end to
 * the offset just past it. Returns 0 or a json_span_err. */
int json_span_skip(const char *s, size_t len, size_t pos, size_t *end);

/* The whole text is exactly one valid value, with optional whitespace around it: *out
 * names it. Returns 0 or a json_span_err. */
int json_span_whole(const char *s, size_t len, json_span *out);

/* The text is one valid value; *out is the value reached from it by path (npath steps; 0 =
 * the whole value). Everything scanned on the way is validated, the rest of the text is
 * validated too, so a hit is never inside a broken document. Returns 0 or a json_span_err. */
int json_span_find(const char *s, size_t len, const json_span_step *path, size_t npath,
                   json_span *out);

/* True when v is an object / array (by its first byte; v must come from the calls above). */
int json_span_is_object(const json_span *v);
int json_span_is_array(const json_span *v);

/* Writes the UTF-8 bytes of code point cp (at most 0x10FFFF, not a surrogate) to out, which
 * has room for 4; returns the byte count (1-4). The one encoder of \u escapes. */
size_t json_span_utf8_put(unsigned long cp, unsigned char *out);

#endif
