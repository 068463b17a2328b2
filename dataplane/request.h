/* request.h — parse stage: a one-pass JSON scanner for chat request bodies.
 *
 * The worker never builds a DOM of a passthrough request: req_parse() validates the
 * whole body as JSON in one pass, finds the top-level `model` and `stream`, and records
 * the byte span of the model value so the upstream body is prefix + new model + suffix
 * (req_rewrite_model). Pure functions over a buffer: safe to fuzz. */
#ifndef LLMESH_REQUEST_H
#define LLMESH_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define REQ_MAX_DEPTH 128 /* deeper nesting is rejected (stack bound, abuse) */
#define REQ_MODEL_MAX 256 /* bytes of the decoded model name we keep */

enum req_err {
  REQ_OK = 0,
  REQ_EJSON = -1,      /* not valid JSON */
  REQ_EOBJECT = -2,    /* valid JSON but not an object at the top level */
  REQ_ENOMODEL = -3,   /* no top-level "model" */
  REQ_EMODELTYPE = -4, /* "model" is not a string, is empty, or too long */
  REQ_EDUPMODEL = -5,  /* "model" appears twice at the top level */
  REQ_EDEPTH = -6,     /* nesting deeper than REQ_MAX_DEPTH */
  REQ_ESTREAM = -7,    /* "stream" is not a boolean (or null) */
};

typedef struct req_info {
  size_t model_off;               /* offset of the model value's opening quote, bytes */
  size_t model_len;               /* length of the model value incl. both quotes, bytes */
  char model[REQ_MODEL_MAX + 1];  /* decoded model name, NUL-terminated */
  size_t model_name_len;          /* bytes in model */
  int stream;                     /* 1 when "stream": true */
} req_info;

/* Parses a chat request body. Returns REQ_OK or a negative enum req_err. */
int req_parse(const char *body, size_t len, req_info *out);
const char *req_strerror(int err); /* client-facing message for an enum req_err */

/* out = body with the model value replaced by the JSON string of model. Returns 0 or
 * -ENOMEM. out is reset first. */
int req_rewrite_model(buf_t *out, const char *body, size_t len, const req_info *ri,
                      const char *model);

/* Appends s as a quoted JSON string. Returns 0 or -ENOMEM. */
int req_json_quote(buf_t *out, const char *s, size_t n);

/* 1 when p[0..n) is exactly one valid JSON value (whitespace around allowed), else 0. */
int req_json_valid(const char *p, size_t n);

/* Finds the first top-level key `key` of the JSON object in p[0..n) and gives the span
 * of its value. Returns 0, -1 when absent or p is not a valid object prefix up to it. */
int req_json_find(const char *p, size_t n, const char *key, size_t *voff, size_t *vlen);

/* Parses an unsigned JSON integer value at p[0..n). Returns 0 or -1. */
int req_json_uint(const char *p, size_t n, uint64_t *out);

#endif
