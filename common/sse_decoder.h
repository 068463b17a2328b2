/* sse_decoder.h — incremental Server-Sent Events decoder (the one every SSE reader uses).
 *
 * Feed it upstream bytes as they arrive, split anywhere; it calls back once per
 * complete event. LF, CRLF and CR line endings, comments (":..."), multi-line data
 * (joined with "\n"), "event:" names; "id:" and "retry:" are ignored. Only partial lines
 * and the current event's data are copied, into buffers reused across events, so a
 * warmed-up decoder does not allocate. Pure code: safe to fuzz.
 *
 * sse_frame() is the other direction: one event back to SSE bytes.
 *
 * Users differ only in limits and a few documented edge cases, chosen at sse_init_opts():
 * what to do at EOF is the caller's (sse_finish, sse_flush_line, or nothing). */
#ifndef LLMESH_SSE_DECODER_H
#define LLMESH_SSE_DECODER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define SSE_MAX_EVENT_BYTES (8u << 20) /* a line or event above this is garbage */

/* sse_init_opts() flags. */
#define SSE_DATA_NEEDS_COLON 1u /* a bare "data" line (no colon) is ignored, not empty data */
#define SSE_LIMIT_ALL_LINES 2u  /* max_line also applies to lines complete within one chunk */

typedef struct sse_event {
  const char *event;  /* event name, "" when none (NUL-terminated) */
  const char *data;   /* data lines joined with "\n" (NUL-terminated) */
  size_t data_len;    /* bytes in data */
} sse_event;

/* Called for every dispatched event; data is valid only during the call. */
typedef void (*sse_event_cb)(void *ud, const sse_event *ev);
/* Same, for sse_decode(): a nonzero return stops decoding (the rest is not looked at). */
typedef int (*sse_event_fn)(void *ud, const sse_event *ev);

typedef struct sse_decoder {
  buf_t line;        /* partial line carried over from the previous chunk */
  buf_t data;        /* data of the event being assembled, lines joined with "\n" */
  char event[64];    /* event name of the event being assembled */
  int has_data;      /* a data: field was seen for the current event */
  int last_cr;       /* previous chunk ended in CR: skip a leading LF */
  uint64_t events;   /* events dispatched */
  int error;         /* set when a line or event exceeded its limit (sse_feed only) */
  size_t max_line;   /* bytes: a longer line is garbage */
  size_t max_data;   /* bytes: a longer event data (joined) is garbage */
  unsigned flags;    /* SSE_* flags */
} sse_decoder;

/* Return codes of sse_decode() / sse_finish() / sse_flush_line(). */
#define SSE_STOPPED 1 /* the callback returned nonzero */
#define SSE_TOO_BIG -2 /* a line or event exceeded its limit */
/* and -ENOMEM */

void sse_init(sse_decoder *d); /* the worker's relay: 8 MiB limits, spec edge cases */
/* max: bytes of one line and of one event's data; flags: SSE_*. */
void sse_init_opts(sse_decoder *d, size_t max, unsigned flags);
/* Decodes n bytes. Returns 0, or -1 once the input is over the size limit (sticky). */
int sse_feed(sse_decoder *d, const char *p, size_t n, sse_event_cb cb, void *ud);
/* Decodes n bytes. Returns 0 when all were consumed, SSE_STOPPED, SSE_TOO_BIG or -ENOMEM. */
int sse_decode(sse_decoder *d, const char *p, size_t n, sse_event_fn cb, void *ud);
/* EOF: handles a last line missing its terminator as a line. Returns like sse_decode. */
int sse_flush_line(sse_decoder *d, sse_event_fn cb, void *ud);
/* EOF: sse_flush_line(), then dispatches an event missing only its blank line. */
int sse_finish(sse_decoder *d, sse_event_fn cb, void *ud);
void sse_reset(sse_decoder *d); /* forget partial state, keep memory and options */
void sse_free(sse_decoder *d);

/* Appends one event, SSE-framed, to out: an "event:" line when event is non-empty (NULL =
 * none), one "data:" line per line of data (split at "\n"), then the blank line. The one
 * encoder for every SSE writer. Returns 0 or -ENOMEM. */
int sse_frame(buf_t *out, const char *event, const char *data, size_t len);

#endif
