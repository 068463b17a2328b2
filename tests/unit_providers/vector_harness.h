/* vector_harness.h — shared plumbing for the golden-vector tests (providers, ingress).
 *
 * Paths are `dir/rel` (dir NULL: rel as is). Every helper fails the current cmocka test
 * with a readable message instead of returning an error, except vh_read_file, which
 * returns NULL for a missing file so callers can say what to run to produce it.
 *
 * Streams: vh_feed_whole() runs one feed of the whole input; vh_feed_splits() then feeds
 * the same input split in two at every byte (both pieces, even empty ones) and one byte at
 * a time, and fails unless every run equals the whole one (ops->same). */
#ifndef VECTOR_HARNESS_H
#define VECTOR_HARNESS_H

#include <stddef.h>
#include <jansson.h>

/* Whole file in a NUL-terminated malloc'd buffer; NULL when it cannot be opened. */
char *vh_read_file(const char *dir, const char *rel, size_t *len);
void vh_write_file(const char *dir, const char *rel, const void *data, size_t len);
/* Dumps j with `flags` plus a trailing newline (the format the .out.json files use). */
void vh_write_json(const char *dir, const char *rel, json_t *j, size_t flags);
#define VH_JSON_OUT (JSON_INDENT(1) | JSON_ENSURE_ASCII)
/* Parses dir/rel (any JSON value); fails the test when missing or invalid. */
json_t *vh_load_json(const char *dir, const char *rel);

/* Exact bytes: a golden case may have a NAME.raw next to NAME.in.json whose every non-empty
 * line must occur byte for byte in the case's raw output (json_equal compares numbers by
 * value, so tool-call arguments and re-printed reals are checked here). vh_json_cases loads
 * it; the runner passes its raw bytes here (no-op without a .raw file), and a case with a
 * .raw file that was never checked fails. */
void vh_check_raw(const char *what, const char *bytes, size_t n);

/* json_equal or fail, printing both sides compact with sorted keys. */
void vh_assert_json_equal(json_t *want, json_t *got, const char *what);
/* Byte-for-byte equality or fail, printing both sides. */
void vh_assert_bytes_equal(const char *want, size_t wlen, const char *got, size_t glen,
                           const char *what);

/* True when the environment variable is set to something other than "" or "0". */
int vh_regen_enabled(const char *env);

/* Sorted names of dir/sub/NAME+suffix (suffix stripped); free with vh_free_names. */
size_t vh_list_cases(const char *dir, const char *sub, const char *suffix, char ***names);
void vh_free_names(char **names, size_t n);
/* Calls fn(name, ctx) for each case in sorted order; returns the number of cases. */
size_t vh_each_case(const char *dir, const char *sub, const char *suffix,
                    void (*fn)(const char *name, void *ctx), void *ctx);

/* Golden JSON cases: for each dir/sub/NAME.in.json (sorted), got = run(NAME, bytes, len,
 * ctx); with regen got is first written to NAME.out.json; then got must json_equal that
 * file, and check (may be NULL) sees (NAME, want, got, ctx). Returns the number of cases.
 * Rewritten files are dumped with vh_json_out_flags (default VH_JSON_OUT). */
extern size_t vh_json_out_flags;
typedef json_t *(*vh_json_run)(const char *name, const char *in, size_t len, void *ctx);
typedef void (*vh_json_check)(const char *name, json_t *want, json_t *got, void *ctx);
size_t vh_json_cases(const char *dir, const char *sub, int regen, vh_json_run run,
                     vh_json_check check, void *ctx);

/* One stream run: new() starts a run (decoder + empty result), feed() returns nonzero
 * while the decoder wants more, end() finishes the input (end of stream when no terminal
 * result yet) and releases the decoder, leaving the result; free() releases the result.
 * same() compares two finished results. */
typedef struct vh_feed_ops {
  void *(*new)(void *ctx);
  int (*feed)(void *run, const char *p, size_t n);
  void (*end)(void *run);
  void (*free)(void *run);
  int (*same)(const void *want, const void *got);
} vh_feed_ops;

/* Finished run of s fed in one piece (no feed at all when n == 0). */
void *vh_feed_whole(const vh_feed_ops *ops, void *ctx, const char *s, size_t n);
/* Finished run of s fed in pieces of `step` bytes (step > 0). */
void *vh_feed_steps(const vh_feed_ops *ops, void *ctx, const char *s, size_t n, size_t step);
/* Every split in two (at 0..n) and byte by byte must equal `whole`. */
void vh_feed_splits(const vh_feed_ops *ops, void *ctx, const char *s, size_t n,
                    const void *whole, const char *name);

/* ---- provider adapters (provider.h) ------------------------------------------------ */
#include "provider.h"

typedef struct vh_prov_ctx {
  const provider_ops *ops;
  const char *model;          /* model name passed to stream_new */
  int include_usage;
  void (*before)(void);       /* pins the adapters' clocks before stream_new; may be NULL */
  int end_garbage_class;      /* a cut found by stream_end counts as PE_GARBAGE, and a
                                 PS_GARBAGE from stream_feed must carry PE_GARBAGE */
} vh_prov_ctx;

typedef struct vh_prov_run {
  vh_prov_ctx ctx;            /* copy of the context it was started with */
  prov_stream *ps;            /* NULL once ended */
  buf_t out;                  /* canonical bytes */
  int rc;                     /* final: PS_DONE / PS_ERROR / PS_GARBAGE */
  prov_error cls;             /* from stream_feed (see end_garbage_class) */
  prov_usage u;               /* usage as filled */
} vh_prov_run;

/* new/feed/end/free over ctx->ops; same() compares bytes, rc, class and every usage field. */
extern const vh_feed_ops vh_prov_feed;
int vh_prov_usage_equal(const prov_usage *a, const prov_usage *b);
prov_error vh_prov_class_named(const char *name); /* fails on an unknown name */

/* Request vector helpers: headers as a JSON array of "Name: value" strings; the canonical
 * request of an OpenAI body (stream, stream_options.include_usage). */
json_t *vh_prov_headers_json(const prov_request *r);
void vh_prov_canon_of(const char *body, size_t len, prov_canon *c);
/* vh_json_check for request vectors: rejected ones ({"error"}) are named reject_*, and
 * accepted ones are not. */
void vh_prov_reject_named(const char *name, json_t *want, json_t *got, void *ctx);

/* {"url", "headers", "body"} of ops->build_request(t, canonical body), or {"error": msg}
 * for a rejection (-EINVAL, a non-empty message naming neither `host` nor the API key, and
 * no body); the API key never appears in the URL. */
json_t *vh_prov_request_json(const provider_ops *ops, const prov_target *t, const char *body,
                             size_t len, const char *host);

/* dir/errors.json [{"status", "body" (string or JSON), "class", "retry_after_ms"?}]: each
 * classifies as "class", with retry_after_ms written exactly when given. At least min_cases;
 * classify_error(500, NULL, 0, NULL) must be PE_SERVER. */
void vh_prov_error_cases(const char *dir, const provider_ops *ops, size_t min_cases);

/* dir/responses/NAME.in.json decoded by ctx->ops (ctx->before first, ctx->model) must give
 * NAME.out.json (json_equal), or {"garbage": true} with PS_GARBAGE and nothing written;
 * usage must be seen exactly when the expected answer has "usage" and match its
 * prompt_tokens, completion_tokens and prompt_tokens_details.cached_tokens. */
void vh_prov_response_cases(const char *dir, const vh_prov_ctx *ctx, int regen, size_t min_cases);

/* dir/streams/cases.json: [{"name","in","include_usage","rc","class","usage":[prompt,
 * completion, cached(, cache_write)]}]; streams/IN+in_ext fed whole must give
 * streams/NAME.out.sse byte for byte (rewritten first when regen), rc, class and usage; then
 * every split must equal the whole feed. At least min_cases cases. */
void vh_prov_stream_cases(const char *dir, const vh_prov_ctx *base, const char *in_ext,
                          int regen, size_t min_cases);

#endif
