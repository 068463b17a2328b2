/* stream.h — the SSE relay: upstream bytes go to the client as they arrive.
 *
 * Before commit, bytes are held until the first complete event proves the stream is
 * SSE with JSON data (else: garbage, fail over; the client has seen nothing). From
 * commit on, each upstream chunk is written with hs_stream_write as is; the decoder
 * only watches for [DONE] and usage. When the client's queue is above its high-water
 * mark the transfer is paused (CURL_WRITEFUNC_PAUSE, chunk not consumed) until
 * on_drain. A stream that ends without [DONE] gets an in-band error event.
 *
 * Adapter deployments: every upstream chunk goes through the adapter's stream_feed and
 * what it produces (canonical SSE) is relayed the same way; commit waits for the first
 * canonical event. A chunk is fed only when it is consumed (never before a pause).
 *
 * Groups that continue a dead stream (mid_stream_continue; not the native passthrough):
 * from commit on, canonical events are relayed one by one through the decoder, tracked
 *  (midstream.h), an in-band error or malformed event held back (continuation.c decides whether a
 * continuation follows), and a continuation's events spliced onto the same client stream. */
#ifndef LLMESH_STREAM_H
#define LLMESH_STREAM_H

#include <stddef.h>

#include "attempt.h"

#define STREAM_CUT_EVENT                                                                       \
  "data: {\"error\":{\"message\":\"upstream stream ended before completion\",\"type\":\"server_error\"," \
  "\"code\":\"upstream_stream_cut\"}}\n\n"

#define STREAM_STALL_EVENT                                                                     \
  "data: {\"error\":{\"message\":\"upstream stream stalled: no data within the idle timeout\"," \
  "\"type\":\"server_error\",\"code\":\"upstream_stream_stalled\"}}\n\n"

/* Write callback body for a 2xx stream. Returns n, CURL_WRITEFUNC_PAUSE, or
 * CURL_WRITEFUNC_ERROR (with c->fail_reason set for a failover, or the client gone). */
size_t stream_on_data(chat *c, const char *p, size_t n);
/* The upstream transfer of a committed stream ended (ok = it ended cleanly). Ends the
 * client response: normally after [DONE], with the cut event otherwise. Returns 1 when
 * the stream completed with [DONE]. */
int stream_finish(chat *c);
/* stream_finish, or with stalled = 1: the upstream went silent past the idle bound (the
 * transfer is already stopped): ends the client stream with the stall event, no [DONE]. */
int stream_end(chat *c, int stalled);
/* Upstream EOF of an adapter stream: lets the adapter finish its last event. Committed:
 * writes what it produced (saw_done on PS_DONE), returns 0. Not committed: commits when
 * the stream completed with output, returns 1; 0 when there is nothing to send
 * (garbage); -1 when the client is gone. */
int stream_adapter_eof(chat *c);
/* Usage of an Anthropic message (in_message = 0: the top-level `usage` of a message or a
 * message_delta; 1: `message.usage` of a message_start) into c->usage, fields updated only
 * when present. A scan, no parse: the passthrough path's accounting. */
void stream_native_usage(chat *c, const char *json, size_t n, int in_message);
/* The client's write queue drained: resume a paused transfer (from the loop). */
void stream_drain(chat *c);
/* Resets the relay state for a new attempt. */
void stream_reset(chat *c);

#endif
