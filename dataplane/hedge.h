/* hedge.h — hedged requests (docs/resilience.md "Hedging").
 *
 * In a group with `hedge: true`, an attempt whose first token is late — a stream not
 * committed, a non-stream answer without its headers — after the deployment's recent p95
 * (streams: the breaker's ttft_p95_ms; non-stream: a p95 of time to 2xx headers kept
 * here), at least HEDGE_MIN_MS and only once HEDGE_MIN_SAMPLES samples exist, gets a
 * second attempt on another admissible deployment (route_pick, a retry-budget token): a
 * second `chat` (the peer) sharing the client request. Neither writes to the client before
 * it has won: the first to write (stream commit, whole answer) claims the request and the
 * other is cancelled (BO_NEUTRAL, counted `cancelled`). One that fails while its peer still
 * runs ends quietly (its failure counted and logged, failover.c) and the peer carries on
 * alone. At most one hedge per request; never for embeddings or continuations. */
#ifndef LLMESH_HEDGE_H
#define LLMESH_HEDGE_H

#include "attempt.h"

#define HEDGE_MIN_MS 50u        /* never hedge sooner than this after the attempt started, ms */
#define HEDGE_MIN_SAMPLES 10u   /* samples the p95 estimate needs before it is trusted */

/* Initialises c->hedge_timer on loop (every chat, before anything can free it). */
void hedge_init(chat *c, uv_loop_t *loop);
/* c's attempt just started on c->dep: arms the hedge timer when its group hedges and the
 * deployment's estimate is known (else disarms it). */
void hedge_arm(chat *c);
/* Closes c->hedge_timer (chat_free); cb runs when it is closed. */
void hedge_close(chat *c, uv_close_cb cb);
/* A 2xx header block of a non-stream attempt on d arrived after ms: the p95 estimate. */
void hedge_note_headers(metrics_dep *m, double ms);
/* A stream on d committed successfully and fed the breaker's ttft_p95_ms: counted. */
void hedge_note_ttft(metrics_dep *m);
/* c is about to write to the client: when it races a peer, c wins and the peer is
 * cancelled (c owns the client request from here on). */
void hedge_claim(chat *c);
/* c leaves the race without winning (failed, or the client is gone): detached from its
 * peer; logged as lost with reason. Returns the peer, or NULL when there was none. */
chat *hedge_detach(chat *c, const char *reason);
/* c failed (failed = 1: its failure is counted already) or ran out of options while its
 * peer still runs: c ends quietly (freed) and the peer carries on alone, knowing what c's
 * failure says about c's deployment (re-try rules, the final error's list). */
void hedge_quiet_end(chat *c, const char *reason, int failed);
/* p lost its race (or the client left): it never writes to the client, its transfer is
 * counted cancelled (BO_NEUTRAL) and stopped from the loop, then p is freed. */
void hedge_cancel(chat *p);

#endif
