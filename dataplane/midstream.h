/* midstream.h — mid-stream continuation: what the client got, the request that continues it,
 * and the filter that splices the continuation onto the client's stream
 * (docs/resilience.md, "Mid-stream failover"). Pure code over canonical OpenAI SSE event data:
 * no libuv, no curl, no I/O, no jansson trees (raw-span scanning, common/json_span.h).
 *
 * Wiring (continuation.c / stream.c), only for groups with mid_stream_continue and canonical
 * streams (not for chat.pt: native Anthropic bytes are not canonical chunks):
 *   1. At commit: midstream_tracker_init(&c->ms) (free it with the chat).
 *   2. Per relayed event (exactly what went to the client, after commit, before egress):
 *      midstream_track(&c->ms, ev->data, ev->data_len). It returns MIDSTREAM_EV_ERROR for
 *      an in-band error event: that is a trigger, and such an event must NOT be relayed when
 *      a continuation follows (hold it: it is the error the client gets if every
 *      continuation fails). -EINVAL: the event is not a JSON object (a malformed event,
 *      also a trigger); the tracker is unchanged.
 *   3. On a cut without [DONE], a stall past the idle bound, an in-band error or a malformed
 *      event: if c->ms.continuable (and no [DONE] was relayed), pick the next deployment as
 *      for any failover. If c->ms.finish_reason[0] is set the answer was complete: end the
 *      stream with "data: [DONE]" instead of continuing.
 *   4. Starting the continuation attempt on deployment d: build its body with
 *      midstream_build_request(c->body, c->body_len, &c->ms, d->supports_prefill, &body)
 *      (-EINVAL: cannot continue → the original failure's in-band error), send it like any
 *      attempt body, then midstream_splice_init(&c->splice, &c->ms,
 *      midstream_delivered_tokens(&c->ms)). The splicer tracks what it emits into c->ms, so a
 *      continuation that dies too can itself be continued (build + init again).
 *   5. Per canonical event of the continuation (from the attempt's sse_decoder, or what its
 *      adapter produced): midstream_splice(&c->splice, ev->event, ev->data, ev->data_len,
 *      &out) and relay `out` (framed "data: ...\n\n" bytes) to the client / egress instead of
 *      the event. The continuation "commits" on its first event that midstream_splice does
 *      not drop; before that, a failure fails over to the next continuation like any
 *      pre-commit failure. MIDSTREAM_EV_DONE: the spliced stream completed.
 *   midstream_splice_free() when the continuation attempt ends; midstream_tracker_free() with
 *   the chat. */
#ifndef LLMESH_MIDSTREAM_H
#define LLMESH_MIDSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define MIDSTREAM_MAX_TEXT (256u << 10) /* delivered text kept, bytes; beyond: not continuable */
#define MIDSTREAM_MAX_ID 256           /* raw `id` value kept (quotes included), bytes */
#define MIDSTREAM_MAX_CREATED 32       /* raw `created` value kept, bytes */
#define MIDSTREAM_MAX_MODEL 256        /* raw `model` value kept (quotes included), bytes */
#define MIDSTREAM_BYTES_PER_TOKEN 4    /* delivered-token estimate: bytes per token */

/* The user turn asking a model without prefill support to go on. */
#define MIDSTREAM_CONTINUE_PROMPT \
  "Continue your previous answer exactly where it stopped, without repeating anything already written."

/* What an event was (midstream_track / midstream_splice results, >= 0). */
enum midstream_ev {
  MIDSTREAM_EV_CHUNK = 0,   /* a chat.completion.chunk (relayed / written) */
  MIDSTREAM_EV_DONE = 1,    /* data: [DONE] */
  MIDSTREAM_EV_ERROR = 2,   /* an in-band error object ({"error":...}) */
  MIDSTREAM_EV_DROPPED = 3, /* splice only: a chunk with nothing for the client (role only) */
};

/* What the client has received of one committed stream. */
typedef struct midstream_tracker {
  buf_t text;                        /* choice 0's delta.content so far, unescaped UTF-8, bytes;
                                      * freed once continuable turns off */
  char id[MIDSTREAM_MAX_ID];         /* raw JSON of the stream's `id` (first non-empty one) */
  size_t id_len;                     /* bytes in id, 0 = none seen (or longer than the cap) */
  char created[MIDSTREAM_MAX_CREATED]; /* raw JSON of `created` from the chunk id came from */
  size_t created_len;                /* bytes in created, 0 = none */
  char model[MIDSTREAM_MAX_MODEL];   /* raw JSON of the first non-empty `model` */
  size_t model_len;                  /* bytes in model, 0 = none */
  char finish_reason[32];            /* decoded finish_reason of choice 0, "" = none yet */
  int continuable;                   /* 1 until something makes continuing unfaithful (sticky) */
  const char *why_not;               /* static reason continuable went off (logs), NULL while on */
  uint64_t chunks;                   /* chunk events tracked */
  size_t ws_cut;                     /* bytes at the end of text the last prefill build cut
                                      * (trailing whitespace), 0 = none */
} midstream_tracker;

/* Splices a continuation's canonical events onto the original stream. */
typedef struct midstream_splicer {
  char id[MIDSTREAM_MAX_ID];         /* original raw `id`, written over the continuation's */
  size_t id_len;                     /* bytes in id, 0 = leave ids alone */
  char created[MIDSTREAM_MAX_CREATED]; /* original raw `created` */
  size_t created_len;                /* bytes in created, 0 = leave created alone */
  buf_t ws;                          /* whitespace cut from the prefill, to strip once */
  size_t ws_pos;                     /* bytes of ws matched (stripped) so far */
  int strip_over;                    /* the first content was seen and handled */
  uint64_t delivered_tokens;         /* estimate of the original's completion tokens */
  midstream_tracker *track;          /* fed what the splicer emits, NULL = none */
  buf_t scratch;                     /* one rewritten event's data */
  uint64_t events_out;               /* events written (not dropped) */
} midstream_splicer;

void midstream_tracker_init(midstream_tracker *t);
void midstream_tracker_free(midstream_tracker *t);
/* One event's data as the client received it. Returns an enum midstream_ev (CHUNK, DONE,
 * ERROR), -EINVAL when data is not a JSON object nor [DONE] (tracker unchanged), or -ENOMEM
 * (continuable turns off). */
int midstream_track(midstream_tracker *t, const char *data, size_t n);
/* midstream_track without its fast path for the common text chunk (the full scan it falls
 * back to): same results for every input; tests compare the two. */
int midstream_track_full(midstream_tracker *t, const char *data, size_t n);
/* Completion tokens of the delivered text, estimated (MIDSTREAM_BYTES_PER_TOKEN, rounded up). */
uint64_t midstream_delivered_tokens(const midstream_tracker *t);

/* out = body (the original canonical OpenAI request) with the delivered text appended to
 * `messages` as an assistant turn; prefill = 0 adds the MIDSTREAM_CONTINUE_PROMPT user turn
 * after it; prefill = 1 cuts trailing whitespace from the prefill and remembers it in t->ws_cut.
 * Nothing is appended when there is no text to send (the request is then the original). The
 * rest of the body is copied byte for byte. Returns 0, -EINVAL (not continuable, `messages`
 * not an array, `n` other than 1, `stream` not true, invalid JSON) or -ENOMEM. */
int midstream_build_request(const char *body, size_t len, midstream_tracker *t, int prefill,
                            buf_t *out);

/* Sets up a splicer for the continuation about to start from t (after
 * midstream_build_request). delivered_tokens is added to the continuation's usage; t is fed
 * everything the splicer emits (it must outlive the splicer). Returns 0 or -ENOMEM. */
int midstream_splice_init(midstream_splicer *s, midstream_tracker *t, uint64_t delivered_tokens);
/* One continuation event (event name "" or NULL for none) → bytes for the client appended
 * to out (SSE-framed). Returns an enum midstream_ev (DROPPED: nothing written), -EINVAL when
 * data is neither [DONE] nor a JSON object (nothing written), or -ENOMEM. */
int midstream_splice(midstream_splicer *s, const char *event, const char *data, size_t n,
                     buf_t *out);
void midstream_splice_free(midstream_splicer *s);

#endif
