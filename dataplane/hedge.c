/* hedge.c — when to hedge, and who wins the race (see hedge.h). Starting and cancelling
 * transfers stays in attempt.c (attempt_hedge_start / attempt_hedge_cancel). */
#include "hedge.h"

#include "log.h"

#define HEDGE_P95_STEP 0.05 /* relative step of the p95 estimate of time to headers */

void hedge_init(chat *c, uv_loop_t *loop) { uv_timer_init(loop, &c->hedge_timer); }

void hedge_close(chat *c, uv_close_cb cb) {
  uv_timer_stop(&c->hedge_timer);
  uv_close((uv_handle_t *)&c->hedge_timer, cb);
}

void hedge_note_headers(metrics_dep *m, double ms) {
  if (!m || ms <= 0) return;
  if (m->hedge_hdr_samples < UINT32_MAX) m->hedge_hdr_samples++;
  if (m->hedge_hdr_p95_ms <= 0) { m->hedge_hdr_p95_ms = ms; return; }
  /* stochastic quantile: up by 0.95 step when above, down by 0.05 step when below */
  double step = HEDGE_P95_STEP * m->hedge_hdr_p95_ms;
  m->hedge_hdr_p95_ms += ms > m->hedge_hdr_p95_ms ? 0.95 * step : -0.05 * step;
}

void hedge_note_ttft(metrics_dep *m) {
  if (m && m->hedge_ttft_samples < UINT32_MAX) m->hedge_ttft_samples++;
}

/* How long c's attempt on its deployment may go without a first token before it is
 * hedged, ms; 0 = not known yet (too few samples). */
static uint64_t hedge_after_ms(const chat *c) {
  const snap_dep *d = &c->snap->deps[c->dep];
  double est = 0;
  if (c->ri.stream) {
    if (d->st && d->stats->hedge_ttft_samples >= HEDGE_MIN_SAMPLES) est = d->st->ttft_p95_ms;
  } else if (d->stats->hedge_hdr_samples >= HEDGE_MIN_SAMPLES) {
    est = d->stats->hedge_hdr_p95_ms;
  }
  if (est <= 0) return 0;
  return est < HEDGE_MIN_MS ? HEDGE_MIN_MS : (uint64_t)est + 1;
}

static void on_hedge_timer(uv_timer_t *t) {
  chat *c = container_of(t, chat, hedge_timer);
  if (!c->req || c->hedged || c->peer || !c->easy || c->attempts != c->hedge_arm_attempt) return;
  if (c->ri.stream ? c->committed : c->headers_done) return; /* the first token came in time */
  attempt_hedge_start(c, uv_now(t->loop) - c->hedge_arm_ms);
}

void hedge_arm(chat *c) {
  uv_timer_stop(&c->hedge_timer);
  if (c->hedged || c->is_hedge || c->op != CHAT_OP_COMPLETIONS || c->ms_phase != MS_ORIGINAL ||
      !c->snap->groups[c->route.chain[0]].hedge)
    return;
  uint64_t ms = hedge_after_ms(c);
  if (!ms) return;
  c->hedge_arm_attempt = c->attempts;
  c->hedge_arm_ms = uv_now(c->hedge_timer.loop);
  uv_timer_start(&c->hedge_timer, on_hedge_timer, ms, 0);
}

static const char *dep_name(const chat *c) { return c->dep >= 0 ? c->snap->deps[c->dep].name : NULL; }

void hedge_claim(chat *c) {
  chat *p = c->peer;
  if (!p) return;
  c->peer = p->peer = NULL;
  if (c->req && c->req->user == p) c->req->user = c; /* aborts and drains come to the winner */
  LOG_INFO(c->rid, "hedge_won", LF_S("deployment", dep_name(c)), LF_S("over", dep_name(p)),
           LF_B("hedge", c->is_hedge));
  LOG_INFO(c->rid, "hedge_lost", LF_S("deployment", dep_name(p)), LF_S("to", dep_name(c)),
           LF_S("reason", "cancelled"));
  attempt_hedge_cancel(p);
}

chat *hedge_detach(chat *c, const char *reason) {
  chat *p = c->peer;
  if (!p) return NULL;
  c->peer = p->peer = NULL;
  if (c->req && c->req->user == c) c->req->user = p; /* the survivor owns the request */
  LOG_INFO(c->rid, "hedge_lost", LF_S("deployment", dep_name(c)), LF_S("to", dep_name(p)),
           LF_S("reason", reason));
  return p;
}
