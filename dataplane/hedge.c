/* hedge.c — when to hedge, who wins the race, and how a race starts and ends (see hedge.h).
 * The racing chats are ordinary chats (attempt_int.h): a hedge is a clone of the late one
 * with its own attempt, and a loser is cancelled from the loop. */
#include "hedge.h"

#include <stdlib.h>
#include <string.h>

#include "attempt_int.h"
#include "log.h"


void hedge_init(chat *c, uv_loop_t *loop) { uv_timer_init(loop, &c->hedge_timer); }

void hedge_close(chat *c, uv_close_cb cb) {
  uv_timer_stop(&c->hedge_timer);
  uv_close((uv_handle_t *)&c->hedge_timer, cb);
}

void hedge_note_headers(metrics_dep *m, double ms) {
  if (!m || ms <= 0) return;
  if (m->hedge_hdr_samples < UINT32_MAX) m->hedge_hdr_samples++;
  breaker_p95_update(&m->hedge_hdr_p95_ms, ms);
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

/* ---- starting and ending a race (the attempt machinery, attempt_int.h) ---------------- */

/* The retry_ok route.c recorded for dep's last try in st (0 when not tried). */
static int route_retry_ok(const route_state *st, int dep) {
  for (int k = st->ntried - 1; k >= 0; k--)
    if (st->tried[k] == dep) return st->retry_ok[k];
  return 0;
}

/* c failed (failed = 1: its failure is counted already) or ran out of options while its
 * peer still runs: c ends quietly and the peer carries on alone, knowing what c's failure
 * says about c's deployment (re-try rules, the final error's list). */
void hedge_quiet_end(chat *c, const char *reason, int failed) {
  chat *s = hedge_detach(c, reason);
  if (failed && c->dep >= 0) {
    route_failed(&s->route, c->snap, c->dep, route_retry_ok(&c->route, c->dep));
    s->n_failed++;
    if (c->last_class == MC_RATE_LIMITED) s->n_rate_limited++;
    if (c->last_class == MC_AUTH_ERROR) s->n_auth++;
    s->last_class = c->last_class;
    failover_note(s, &c->snap->deps[c->dep], reason);
  }
  c->req = NULL;
  chat_free(c);
}

/* The request is over for p (lost, or the client left): the transfer stops from the loop. */
static void on_hedge_cancel(uv_timer_t *t) {
  chat *p = container_of(t, chat, timer);
  attempt_release(p); /* a uv callback: removing from the multi is allowed here */
  chat_free(p);
}

void hedge_cancel(chat *p) {
  p->hedge_lost = 1;
  p->peer = NULL;
  p->req = NULL; /* never writes to the client; its curl callbacks abort the transfer */
  if (p->dep >= 0 && p->brk_open) p->snap->deps[p->dep].stats->errors[MC_CANCELLED]++;
  failover_brk_end(p, BO_NEUTRAL); /* a cancellation says nothing about the provider */
  gcp_auth_cancel(&p->gw);
  uv_timer_stop(&p->hedge_timer);
  uv_timer_start(&p->timer, on_hedge_cancel, 0, 0); /* maybe inside a curl callback now */
}

/* A second chat for the same client request, as attempt_serve builds one, with what c
 * has learnt so far (attempts, failures); it has no transfer yet. NULL on ENOMEM. */
static chat *hedge_clone(const chat *c) {
  chat *h = calloc(1, sizeof *h);
  if (!h) return NULL;
  int own_canon = c->canon.data && c->body == c->canon.data;
  if ((c->ais && !(h->ais = ai_stream_new(c->ri.model))) ||
      (own_canon && buf_append(&h->canon, c->canon.data, c->canon.len))) {
    if (h->ais) ai_stream_free(h->ais);
    buf_free(&h->canon);
    free(h);
    return NULL;
  }
  h->req = c->req;
  h->snap = snapshot_ref(c->snap);
  memcpy(h->rid, c->rid, sizeof h->rid);
  h->ri = c->ri;
  h->body = own_canon ? h->canon.data : c->body;
  h->body_len = c->body_len;
  h->op = c->op;
  h->egress = c->egress;
  h->embed_b64 = c->embed_b64;
  h->has_native = c->has_native;
  h->native_ri = c->native_ri;
  h->deadline_ms = c->deadline_ms;
  h->attempts = c->attempts;
  memcpy(h->failures, c->failures, sizeof h->failures);
  h->failures_len = c->failures_len;
  h->n_failed = c->n_failed;
  h->n_rate_limited = c->n_rate_limited;
  h->n_auth = c->n_auth;
  h->n_unexpressible = c->n_unexpressible;
  h->last_class = c->last_class;
  h->skip_logged = c->skip_logged;
  h->waited_retry_after = c->waited_retry_after;
  h->is_hedge = h->hedged = 1;
  h->dep = h->pending_dep = h->ms_from = -1;
  chat_open(h);
  return h;
}

/* A hedge of c's current attempt on another admissible deployment (a retry-budget token;
 * never c's own deployment); c and the hedge become peers. after_ms: how late c's first
 * token was. Returns 0 started, <0 not (nothing changed but c->hedged). */
static int hedge_start(chat *c, uint64_t after_ms) {
  const char *from = c->snap->deps[c->dep].name;
  route_state rs = c->route;
  c->hedged = 1;
  int dep = route_pick(&rs, c->snap, route_rng_default(), attempt_now_ms());
  const snap_dep *d = dep >= 0 ? &c->snap->deps[dep] : NULL;
  /* a re-try (backoff) or a token wait is no hedge */
  if (!d || dep == c->dep || rs.backoff_ms || d->gcp || d->gcp_broken) {
    LOG_DEBUG(c->rid, "hedge_skipped", LF_S("from", from),
              LF_I("budget_refused", rs.budget_refused), LF_S("next", d ? d->name : NULL));
    return -1;
  }
  chat *h = hedge_clone(c);
  if (!h) return -1;
  h->route = rs;
  if (attempt_start(h, dep) != 0) {
    LOG_DEBUG(c->rid, "hedge_skipped", LF_S("from", from), LF_S("next", d->name));
    h->req = NULL;
    chat_free(h);
    return -1;
  }
  c->route = rs; /* both know both deployments are taken */
  c->peer = h;
  h->peer = c;
  c->attempts = h->attempts;
  chat_set_dep_headers(c);
  d->stats->hedges++;
  LOG_INFO(c->rid, "hedge_started", LF_S("from", from), LF_S("to", d->name),
           LF_I("after_ms", after_ms));
  return 0;
}

/* ---- when to hedge and who wins ------------------------------------------------------- */

static void on_hedge_timer(uv_timer_t *t) {
  chat *c = container_of(t, chat, hedge_timer);
  if (!c->req || c->hedged || c->peer || !c->easy || c->attempts != c->hedge_arm_attempt) return;
  if (c->ri.stream ? c->committed : c->headers_done) return; /* the first token came in time */
  hedge_start(c, uv_now(t->loop) - c->hedge_arm_ms);
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
  hedge_cancel(p);
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
