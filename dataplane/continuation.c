/* continuation.c — a committed stream that dies is continued on another deployment
 * (attempt_int.h; the pure tracker, request builder and splicer are midstream.c). */
#include "attempt_int.h"

#include <errno.h>
#include <stdio.h>

#include "egress.h"
#include "log.h"
#include "stream.h"

/* ---- mid-stream continuation (docs/resilience.md "Mid-stream failover") ----------------
 * A tracked stream (stream.c) that dies after commit is continued on another deployment:
 * the dead attempt is a failure like a pre-commit one (BO_SERVER, counted, re-try rules),
 * ms_phase turns MS_PENDING and failover_next picks as for any failover; attempt_start
 * builds the continuation request (continuation_build) and stream.c splices its events. Nothing
 * left to try (finish_*), no time left, or a stream that cannot be continued: the client
 * gets the held failure (continuation_give_up). */

/* The continuation request for d (prefill when d supports it) into c->ms_body / ms_ri,
 * and a fresh splicer for its answer. Returns 0, ATTEMPT_NO_CONTINUE or -1 (ENOMEM). */
int continuation_build(chat *c, const snap_dep *d) {
  int rc = midstream_build_request(c->body, c->body_len, &c->ms, d->supports_prefill, &c->ms_body);
  if (rc == -EINVAL) return ATTEMPT_NO_CONTINUE;
  if (rc || req_parse(c->ms_body.data, c->ms_body.len, &c->ms_ri) != REQ_OK) return -1;
  if (c->splice_live) midstream_splice_free(&c->splice);
  c->splice_live = midstream_splice_init(&c->splice, &c->ms, midstream_delivered_tokens(&c->ms)) == 0;
  return c->splice_live ? 0 : -1;
}

static const char *ms_why_name(int why) {
  static const char *const names[] = {"", "stream_cut", "stream_stalled", "stream_error",
                                      "stream_malformed"};
  return why > 0 && why < (int)ARRAY_SIZE(names) ? names[why] : "stream_cut";
}

/* Ends the client's stream with the held failure: the in-band error event the provider
 * sent, else the cut or stall event. */
void continuation_give_up(chat *c) {
  if (!c->req) { chat_free(c); return; }
  LOG_WARN(c->rid, "midstream_failed",
           LF_S("from", c->ms_from >= 0 ? c->snap->deps[c->ms_from].name : NULL),
           LF_I("delivered_bytes", c->ms_delivered), LF_S("reason", ms_why_name(c->ms_fail)),
           LF_I("attempts", c->attempts), LF_S("not_continuable", c->ms.why_not));
  if (c->ms_fail == MS_ERROR && c->ms_err.len) {
    egress_stream_write(c, c->ms_err.data, c->ms_err.len); /* a gone client: stream_end copes */
    c->terminal_sent = 1;
  }
  if (c->ms_from >= 0) c->dep = c->ms_from; /* the stream_cut / stall log names who died */
  c->saw_done = 0;
  stream_end(c, c->ms_fail == MS_STALL);
  chat_free(c);
}

/* The answer was complete (finish_reason seen) when the stream died before [DONE]: the
 * client gets its terminator rather than a continuation of nothing. */
static void ms_complete(chat *c, const snap_dep *d) {
  static const char done[] = "data: [DONE]\n\n";
  LOG_INFO(c->rid, "stream_done_supplied", LF_S("deployment", d->name),
           LF_S("finish_reason", c->ms.finish_reason), LF_S("reason", ms_why_name(c->ms_fail)));
  attempt_account_usage(c, d);
  if (egress_stream_write(c, done, sizeof done - 1) >= 0) c->saw_done = 1;
  stream_end(c, 0);
  chat_free(c);
}

/* The committed stream of the current attempt died (why: enum attempt_ms_why); its
 * transfer is released and the client is still there. */
void continuation_died(chat *c, int why) {
  const snap_dep *d = &c->snap->deps[c->dep];
  const char *reason = ms_why_name(why);
  d->stats->errors[MC_OTHER_ERROR]++;
  failover_brk_end(c, BO_SERVER);
  c->ms_fail = why;
  if (why != MS_ERROR) buf_reset(&c->ms_err);
  c->ms_from = c->dep;
  c->ms_delivered = c->ms.text.len;
  if (c->ms.finish_reason[0]) { ms_complete(c, d); return; }
  if (!c->ms.continuable || wait_left_ms(c) == 0) {
    attempt_account_usage(c, d); /* what the client got of it, as for any cut stream */
    continuation_give_up(c);
    return;
  }
  /* a stall is a silence: never re-tried on the same deployment */
  route_failed(&c->route, c->snap, c->dep, why != MS_STALL);
  c->n_failed++;
  c->last_class = MC_OTHER_ERROR;
  failover_note(c, d, reason);
  c->ms_phase = MS_PENDING;
  failover_next(c, d, reason);
}

void attempt_ms_spliced(chat *c) {
  const snap_dep *d = &c->snap->deps[c->dep];
  c->ms_phase = MS_SPLICED;
  d->stats->midstream_continued++;
  LOG_INFO(c->rid, "midstream_continued",
           LF_S("from", c->ms_from >= 0 ? c->snap->deps[c->ms_from].name : NULL),
           LF_S("to", d->name), LF_I("delivered_bytes", c->ms_delivered),
           LF_S("reason", ms_why_name(c->ms_fail)), LF_B("prefill", d->supports_prefill));
  attempt_stream_committed(c); /* the idle check from here on */
}

/* A continuation ended before writing anything: a failed attempt, whatever it answered
 * (a 400 from a provider refusing the prefill never reaches the client). */
void continuation_pending_done(chat *c, CURL *e, CURLcode res, const snap_dep *d) {
  enum metrics_class cls = MC_OTHER_ERROR;
  const char *reason = "garbage"; /* 2xx without a single event for the client */
  char rbuf[24];
  if (c->fail_reason[0]) {
    cls = c->fail_class;
    reason = c->fail_reason;
  } else if (c->err_body || c->relay) {
    uint64_t ra = 0;
    prov_error pe = d->ops ? d->ops->classify_error(c->status, c->resp.data ? c->resp.data : "",
                                                    c->resp.len, &ra)
                           : PE_BAD_REQUEST; /* relay: a 4xx other than 401/403/408/429 */
    cls = attempt_error_class(pe);
    snprintf(rbuf, sizeof rbuf, "http_%d", c->status);
    reason = rbuf;
  } else if (res != CURLE_OK) {
    attempt_curl_failure(res, e, &cls, &reason);
  }
  if (reason != rbuf) snprintf(rbuf, sizeof rbuf, "%s", reason); /* reset by the next start */
  attempt_release(c);
  failover_failed(c, cls, rbuf);
}
