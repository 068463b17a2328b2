/* egress.h — the client's dialect, applied where bytes leave for the client.
 *
 * Inside a worker every answer is canonical (OpenAI chat completions: passthrough bytes
 * or an adapter's output). A chat whose client speaks another dialect (chat.egress)
 * has each canonical piece translated on its way out: whole answers and errors with
 * ai_response_from_openai / ai_error_*, stream chunks through an ai_stream. The attempt
 * machinery (routing, commit, failover, backpressure) stays single; with EGRESS_OPENAI
 * every function is the plain hs_* call, and so it is for a passthrough attempt (chat.pt:
 * the upstream already speaks the client's dialect). */
#ifndef LLMESH_EGRESS_H
#define LLMESH_EGRESS_H

#include <stddef.h>

#include "attempt.h"

/* Writes canonical stream bytes to the committed client stream in the client's dialect.
 * Returns what hs_stream_write returns (0, 1 = above high water, <0 = client gone).
 * A terminal event written by the translator (message_stop, or an error: sets
 * c->terminal_sent) makes every later call a no-op. */
int egress_stream_write(chat *c, const char *p, size_t n);

/* Ends a committed stream that did not complete: the cut (stalled = 0) or stall event
 * in the client's dialect (OpenAI: an error data event without [DONE]; Anthropic:
 * event: error, never message_stop). Nothing when a terminal event was already sent. */
void egress_stream_fail(chat *c, int stalled);

/* Translates a whole canonical answer (status, body) into the client's dialect: out,
 * *status and *ctype are set. Returns 0 when out holds the answer, 1 when the canonical
 * body goes as is (OpenAI), -ENOMEM. */
int egress_whole(chat *c, int *status, const char **ctype, const char *body, size_t len,
                 buf_t *out);

/* Error body in the dialect: OpenAI {"error":{message,type,param,code}}, Anthropic
 * {"type":"error","error":{type,message}} (type from the status). Returns 0 or -ENOMEM. */
int egress_error_body(int egress, int status, const char *type, const char *code,
                      const char *message, buf_t *out);

#endif
