/* wait.c — the request's total deadline and the waits it bounds (attempt_int.h,
 * docs/resilience.md): every attempt deadline is clipped to what is left of
 * total_timeout; a re-tried deployment waits its backoff; when every deployment is
 * cooling down after a rate limit, the request waits once for the soonest reset
 * (max_retry_after) instead of failing. All waits run on the chat's timer. */
#include "attempt_int.h"

#include "log.h"

/* ms left of the request's total deadline; UINT64_MAX without one. */
uint64_t wait_left_ms(const chat *c) {
  if (!c->deadline_ms) return UINT64_MAX;
  uint64_t now = attempt_now_ms();
  return c->deadline_ms > now ? c->deadline_ms - now : 0;
}

/* A deadline of ms (0 = none) cut to what is left of the total deadline (at least 1 ms,
 * so a timer still fires); *clipped is set when it was cut. */
uint32_t wait_clip_ms(const chat *c, uint32_t ms, int *clipped) {
  uint64_t left = wait_left_ms(c);
  if (left == UINT64_MAX || (ms && ms <= left)) return ms;
  *clipped = 1;
  return left == 0 ? 1 : left > UINT32_MAX ? UINT32_MAX : (uint32_t)left;
}

/* The chat's timer after a backoff or a Retry-After wait: the pending deployment, else a
 * new pick. */
static void on_wait_done(uv_timer_t *t) {
  chat *c = container_of(t, chat, timer);
  int dep = c->pending_dep;
  const snap_dep *from = NULL;
  const char *reason = NULL;
  c->pending_dep = -1;
  if (!c->req) { chat_free(c); return; }
  if (wait_left_ms(c) == 0) { failover_finish_deadline(c); return; }
  if (dep >= 0 && failover_try(c, dep, &from, &reason)) return;
  failover_next(c, from, reason);
}

/* The pick re-tries a deployment: wait its backoff first (bounded by the total deadline;
 * when that passes during the wait, on_wait_done ends the request). Never a tight loop. */
void wait_backoff(chat *c, int next) {
  uint64_t ms = c->route.backoff_ms, left = wait_left_ms(c);
  const snap_dep *d = &c->snap->deps[next];
  if (ms > left) ms = left;
  d->stats->backoffs++;
  LOG_DEBUG(c->rid, "retry_backoff", LF_S("deployment", d->name), LF_I("backoff_ms", ms));
  c->pending_dep = next;
  uv_timer_start(&c->timer, on_wait_done, ms ? ms : 1, 0);
}

/* Nothing admissible and every refusal a cooldown that ends within max_retry_after and
 * before the total deadline: wait for the soonest once, then pick again. 1 = waiting. */
int wait_cooldown(chat *c, int soonest_dep) {
  const route_state *st = &c->route;
  int total = failover_refusals(st);
  uint64_t ms = st->soonest_ms;
  if (c->waited_retry_after || !total || st->refused[BR_COOLING] != total || !ms ||
      ms > snap_max_retry_after_ms(c) || ms >= wait_left_ms(c))
    return 0;
  c->waited_retry_after = 1;
  c->pending_dep = -1;
  const snap_dep *d = soonest_dep >= 0 ? &c->snap->deps[soonest_dep] : NULL;
  if (d) d->stats->retry_after_waits++;
  LOG_INFO(c->rid, "retry_after_wait", LF_S("deployment", d ? d->name : NULL), LF_I("wait_ms", ms));
  uv_timer_start(&c->timer, on_wait_done, ms + 1, 0); /* + 1: the reset has passed when it fires */
  return 1;
}
