/* ollama.h — internals of the Ollama adapter (prov_ollama in provider.h), shared by
 * ollama.c (request building, error classes) and ollama_stream.c (whole answers and
 * NDJSON streams). Nothing outside the adapter and its tests includes this. */
#ifndef LLMESH_OLLAMA_H
#define LLMESH_OLLAMA_H

#include <jansson.h>
#include <stdint.h>

#include "provider.h"

/* Output flags for every JSON the adapter writes: compact, insertion order (deterministic). */
#define OLLAMA_DUMP_FLAGS (JSON_COMPACT)

/* Tests: pin `created` to created_s seconds and restart the chat-id and tool-call-id
 * counters at 0; 0 returns to the wall clock (ids then salted by pid and clock). Not
 * thread-safe (workers are single-threaded). */
void prov_ollama_set_clock(uint64_t created_s);

/* Class of an Ollama error message (`{"error":"..."}`) answered with HTTP status http
 * (0 = in-band, mid-stream). */
prov_error ollama_error_class(int http, const char *msg);

/* Whole answers and streams (ollama_stream.c); contracts as in provider_ops. */
int ollama_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                           prov_usage *usage);
prov_stream *ollama_stream_new(const prov_canon *c, const char *model);
int ollama_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                       prov_usage *usage, prov_error *err);
int ollama_stream_end(prov_stream *s, buf_t *out, prov_usage *usage);
void ollama_stream_free(prov_stream *s);

/* Embeddings (ollama_embed.c): POST /api/embed; contracts as in provider_ops. */
int ollama_build_embeddings(const prov_target *t, const char *body, size_t len, prov_request *out,
                            char *err, size_t errlen);
int ollama_decode_embeddings(const char *body, size_t len, const char *model, buf_t *out,
                             prov_usage *usage);

#endif
