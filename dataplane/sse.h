/* sse.h — the relay's view of an OpenAI SSE stream: the framing decoder (common/
 * sse_decoder.h, shared with the provider adapters and ingress) plus OpenAI chunk helpers. */
#ifndef LLMESH_SSE_H
#define LLMESH_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "sse_decoder.h"

/* 1 when an event's data is the OpenAI terminator "[DONE]". */
int sse_is_done(const sse_event *ev);

/* Reads usage.prompt_tokens and usage.completion_tokens from a chunk's JSON when a
 * non-null usage object is present. Returns 0 when found, -1 otherwise. Cheap for the
 * common chunk: a memmem() filter runs before any scanning. */
int sse_usage(const char *json, size_t n, uint64_t *prompt, uint64_t *completion);

#endif
