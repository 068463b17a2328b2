/* gemini.h — internals of the Gemini adapter (prov_gemini in provider.h), shared by
 * gemini.c (request building, error classes) and gemini_stream.c (whole responses and
 * SSE streams). Nothing outside the adapter and its tests includes this. */
#ifndef LLMESH_GEMINI_H
#define LLMESH_GEMINI_H

#include <jansson.h>
#include <stdint.h>

#include "provider.h"

/* Output flags for every JSON the adapter writes: compact, insertion order (deterministic). */
#define GEMINI_DUMP_FLAGS (JSON_COMPACT)

/* Tests: pin `created` to created_s seconds and restart the minted-id counter;
 * 0 returns to the wall clock. Not thread-safe (workers are single-threaded). */
void prov_gemini_set_clock(uint64_t created_s);

/* Error class of a google.rpc.Status object (`{"code","message","status","details"}`,
 * may be NULL) answered with HTTP status `http` (0 = in-band, use status.code). Writes
 * RetryInfo.retryDelay to *retry_after_ms when present and retry_after_ms != NULL. */
prov_error gemini_error_class(int http, json_t *status, uint64_t *retry_after_ms);

/* Whole responses and streams (gemini_stream.c); contracts as in provider_ops. */
int gemini_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                           prov_usage *usage);
prov_stream *gemini_stream_new(const prov_canon *c, const char *model);
int gemini_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                       prov_usage *usage, prov_error *err);
int gemini_stream_end(prov_stream *s, buf_t *out, prov_usage *usage);
void gemini_stream_free(prov_stream *s);

/* Embeddings (gemini_embed.c): :batchEmbedContents; contracts as in provider_ops. */
int gemini_build_embeddings(const prov_target *t, const char *body, size_t len, prov_request *out,
                            char *err, size_t errlen);
int gemini_decode_embeddings(const char *body, size_t len, const char *model, buf_t *out,
                             prov_usage *usage);

#endif
