/* sse.h — incremental Server-Sent Events decoder.
 *
 * Feed it upstream bytes as they arrive, split anywhere; it calls back once per
 * complete event. LF, CRLF and CR line endings, comments (":..."), multi-line data
 * (joined with "\n"), "event:" names; "id:" and "retry:" are ignored. Only partial lines
 * and the current event's data are copied, into buffers reused across events, so a
 * warmed-up decoder does not allocate. Pure code: safe to fuzz. */
#ifndef LLMESH_SSE_H
#define LLMESH_SSE_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SSE_MAX_EVENT_BYTES (8u << 20) /* a line or event above this is garbage */

typedef struct sse_event {
  const char *event;  /* event name, "" when none (NUL-terminated) */
  const char *data;   /* data lines joined with "\n" (NUL-terminated) */
  size_t data_len;    /* bytes in data */
} sse_event;

/* Called for every dispatched event; data is valid only during the call. */
typedef void (*sse_event_cb)(void *ud, const sse_event *ev);

typedef struct sse_decoder {
  buf_t line;        /* partial line carried over from the previous chunk */
  buf_t data;        /* data of the event being assembled */
  char event[64];    /* event name of the event being assembled */
  int has_data;      /* a data: field was seen for the current event */
  int last_cr;       /* previous chunk ended in CR: skip a leading LF */
  uint64_t events;   /* events dispatched */
  int error;         /* set when a line or event exceeded SSE_MAX_EVENT_BYTES */
} sse_decoder;

void sse_init(sse_decoder *d);
/* Decodes n bytes. Returns 0, or -1 once the input is over the size limit (sticky). */
int sse_feed(sse_decoder *d, const char *p, size_t n, sse_event_cb cb, void *ud);
void sse_reset(sse_decoder *d); /* forget partial state, keep memory */
void sse_free(sse_decoder *d);

/* 1 when an event's data is the OpenAI terminator "[DONE]". */
int sse_is_done(const sse_event *ev);

/* Reads usage.prompt_tokens and usage.completion_tokens from a chunk's JSON when a
 * non-null usage object is present. Returns 0 when found, -1 otherwise. Cheap for the
 * common chunk: a memmem() filter runs before any scanning. */
int sse_usage(const char *json, size_t n, uint64_t *prompt, uint64_t *completion);

#endif
