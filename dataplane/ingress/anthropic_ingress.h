/* anthropic_ingress.h — Anthropic Messages ingress: clients speak POST /v1/messages,
 * llmesh speaks canonical OpenAI chat completions inside. The mirror image of the
 * provider adapters (providers/provider.h): pure functions, no I/O, errors negative.
 *
 *   Anthropic request ──ai_request_to_openai───▶ canonical OpenAI request
 *   chat.completion   ──ai_response_from_openai─▶ Anthropic message
 *   OpenAI SSE bytes  ──ai_stream_feed/_end───▶ Anthropic SSE (event: + data:)
 *   status + error    ──ai_error_from_openai────▶ Anthropic error body
 *
 * Client-facing messages (err, error bodies) never contain a URL, host or key. The full
 * mapping tables are at the top of anthropic_ingress.c. */
#ifndef LLMESH_ANTHROPIC_INGRESS_H
#define LLMESH_ANTHROPIC_INGRESS_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define AI_MODEL_MAX 256   /* bytes for a model name, NUL included */

/* What the response side needs to know about a translated request. */
typedef struct ai_req_info {
  int stream;                  /* "stream": true — answer with Anthropic SSE */
  char model[AI_MODEL_MAX];    /* model alias the client asked for, reported back as is */
  int ntools;                  /* tools declared by the client */
  char dropped[128];           /* fields with no OpenAI slot that were dropped, comma-
                                  separated (e.g. "thinking"), "" when none; for the log */
} ai_req_info;

/* Result of feeding stream bytes; terminal values are sticky. */
enum ai_stream_rc {
  AI_MORE = 0,       /* need more bytes */
  AI_DONE = 1,       /* [DONE] seen; message_delta + message_stop were written */
  AI_ERROR = -1,     /* in-band upstream error; an Anthropic error event was written */
  AI_GARBAGE = -2,   /* unparseable or cut stream; an Anthropic error event was written */
};

/* Incremental OpenAI SSE → Anthropic SSE translator; opaque. */
typedef struct ai_stream ai_stream;

/* Anthropic Messages request body → canonical OpenAI chat request JSON appended to out.
 * Returns 0; -EINVAL with an Anthropic-style message in err (→ 400 invalid_request_error);
 * -ENOMEM. info is filled on success (and zeroed first). */
int ai_request_to_openai(const char *body, size_t len, buf_t *out, ai_req_info *info, char *err,
                         size_t errlen);

/* Canonical chat.completion body → Anthropic message JSON appended to out; model is the
 * name to report (the client's alias). Returns the number (≥ 0) of tool calls whose
 * arguments were not a JSON object and were sent as input {} (for the log), -EINVAL when
 * the body is not a chat.completion (→ 502), or -ENOMEM. */
int ai_response_from_openai(const char *body, size_t len, const char *model, buf_t *out);

/* Streams. ai_stream_new returns NULL on ENOMEM. ai_stream_feed accepts any split of the
 * upstream bytes (down to one byte at a time) with identical output; Anthropic events are
 * appended to out. ai_stream_end is called at upstream EOF: AI_DONE when [DONE] was seen,
 * else an error event is written and AI_GARBAGE returned (never a message_stop after a
 * cut). Both return an ai_stream_rc, or -ENOMEM. */
ai_stream *ai_stream_new(const char *model);
int ai_stream_feed(ai_stream *s, const char *data, size_t len, buf_t *out);
int ai_stream_end(ai_stream *s, buf_t *out);
void ai_stream_free(ai_stream *s);

/* A non-2xx OpenAI-shaped error (status + body, body may be NULL or not JSON) → Anthropic
 * {"type":"error","error":{"type","message"}} appended to out. Returns 0 or -ENOMEM. */
int ai_error_from_openai(int status, const char *openai_error_body, size_t len, buf_t *out);

/* Anthropic error body from a type ("invalid_request_error", ...) and a message, e.g. for
 * an ai_request_to_openai failure. Returns 0 or -ENOMEM. */
int ai_error_body(const char *type, const char *message, buf_t *out);

/* Anthropic error type for an HTTP status (400 → "invalid_request_error", ...). */
const char *ai_error_type(int status);

#endif
