/* failover.c — what a failed attempt means and what comes next (attempt_int.h,
 * docs/design.md "Failover rules", docs/resilience.md).
 *
 *   failover_failed → breaker outcome, route re-try rules, failure list
 *        → failover_next → route_pick (skips logged and counted) → failover_try → attempt_start
 *                        → nothing left: finish_refused (503/429) / finish_exhausted (400,
 *                          502, 429, 504), or wait_cooldown / wait_backoff (wait.c)
 *
 * Every path ends the request once: an answer from the attempt that succeeds, the final
 * error here, the peer's answer in a race (hedge_quiet_end), or the held failure of a
 * committed stream (continuation_give_up). */
#include "attempt_int.h"

#include <stdio.h>
#include <string.h>

#include "hedge.h"
#include "log.h"

/* ---- outcomes to the breaker --------------------------------------------------------
 * Every attempt that reached curl calls breaker_attempt_start once and failover_brk_end exactly
 * once (brk_open guards it: the first path that knows the outcome reports it; chat_free
 * reports a forgotten one as neutral so in_flight never leaks). */

void failover_brk_start(chat *c, int dep) {
  dep_state *st = chat_st(c, dep);
  c->brk_open = 0;
  if (!st) return;
  brk_state was = st->local;
  breaker_attempt_start(st, attempt_now_ms());
  c->brk_open = 1;
  if (was == BRK_OPEN && st->local == BRK_HALF_OPEN) /* this attempt is the trial */
    LOG_INFO(c->rid, "circuit_half_open", LF_S("deployment", c->snap->deps[dep].name),
             LF_S("circuit_level", "local"));
}

void failover_brk_end(chat *c, brk_outcome o) {
  if (!c->brk_open) return;
  c->brk_open = 0;
  dep_state *st = chat_st(c, c->dep);
  if (!st) return;
  const snap_dep *d = &c->snap->deps[c->dep];
  /* the run this failure extends, read before a trip resets it: connect errors and timeouts
   * count in one run, 5xx-class failures in another (breaker.h) */
  int by_server = o == BO_SERVER;
  uint32_t fails = (by_server ? st->consecutive_server : st->consecutive_fails) + 1;
  brk_state was = st->local;
  uint64_t now = attempt_now_ms();
  double lat = o == BO_SUCCESS ? c->hdr_latency_ms : 0;
  if (breaker_attempt_end(st, chat_brk(c), now, o, lat, o == BO_RATE_LIMITED ? c->reset_ms : 0) == 1)
    LOG_WARN(c->rid, "circuit_open", LF_S("deployment", d->name), LF_S("circuit_level", "local"),
             LF_S("trip_on", by_server ? "server" : "connect"), LF_I("consecutive_failures", fails),
             LF_I("open_ms", st->open_ms));
  if (was == BRK_HALF_OPEN && st->local == BRK_CLOSED)
    LOG_INFO(c->rid, "circuit_closed", LF_S("deployment", d->name), LF_S("circuit_level", "local"));
  if (o == BO_SUCCESS && c->committed && c->ttft_ms > 0) {
    breaker_ttft(st, c->ttft_ms);
    hedge_note_ttft(d->stats);
  }
  if (o == BO_RATE_LIMITED) {
    uint64_t left = st->cooldown_until_ms > now ? st->cooldown_until_ms - now : 0;
    if (!c->soonest_reset_ms || (left && left < c->soonest_reset_ms)) c->soonest_reset_ms = left;
    LOG_INFO(c->rid, "cooldown", LF_S("deployment", d->name), LF_I("cooldown_ms", left),
             LF_I("reset_hint_ms", c->reset_ms));
  }
}

/* Anthropic's 529 / overloaded_error is a cooldown like a 429 (a 503 stays a 5xx). */
static int is_overloaded(const chat *c, const char *reason) {
  if (strcmp(reason, "http_529") == 0) return 1;
  return strcmp(reason, prov_error_name(PE_OVERLOADED)) == 0 && c->status != 503;
}

/* What a failed attempt says about its deployment's health. */
static brk_outcome failure_outcome(const chat *c, enum metrics_class cls, const char *reason) {
  int cut_short = c->clipped && c->deadline_ms && attempt_now_ms() >= c->deadline_ms;
  switch (cls) {
    case MC_CONNECT_ERROR: return BO_CONNECT_FAIL;
    case MC_TIMEOUT: /* stopped early by the request's total deadline: says nothing */
      if (cut_short) return BO_NEUTRAL;
      return strcmp(reason, "connect_timeout") == 0 ? BO_CONNECT_FAIL : BO_TIMEOUT;
    case MC_RATE_LIMITED: return BO_RATE_LIMITED;
    case MC_AUTH_ERROR: /* a minted access token was refused: dropped, the next is fresh */
      return c->used_token ? BO_NEUTRAL : BO_AUTH;
    case MC_CLIENT_ERROR:
    case MC_CANCELLED: return BO_NEUTRAL;
    default: return is_overloaded(c, reason) ? BO_RATE_LIMITED : BO_SERVER;
  }
}

/* ---- the final error ------------------------------------------------------------------ */

/* Appends "NAME reason" to the failure list of the final error. */
void failover_note(chat *c, const snap_dep *d, const char *reason) {
  size_t room = sizeof c->failures - c->failures_len;
  int w = snprintf(c->failures + c->failures_len, room, "%s%s %s", c->failures_len ? ", " : "",
                   d->name, reason);
  if (w > 0) c->failures_len += (size_t)w < room ? (size_t)w : room - 1;
}

/* The request's total deadline passed before anything reached the client: 504. */
void failover_finish_deadline(chat *c) {
  char msg[1024];
  if (c->peer) { hedge_quiet_end(c, "deadline", 0); return; } /* the peer answers */
  if (c->committed) { continuation_give_up(c); return; } /* a continuation ran out of time */
  metrics_req_fail[MRF_REQUEST_TIMEOUT]++;
  LOG_WARN(c->rid, "request_timeout", LF_I("total_timeout_ms", snap_total_timeout_ms(c)),
           LF_I("attempts", c->attempts), LF_B("streaming", 0));
  snprintf(msg, sizeof msg,
           "The request for model '%.200s' did not complete within its total timeout of %u ms "
           "(%d attempts%s%s).", c->ri.model, snap_total_timeout_ms(c), c->attempts,
           c->failures_len ? ": " : "", c->failures);
  chat_error(c, 504, "server_error", "request_timeout", msg);
  chat_free(c);
}

int failover_refusals(const route_state *st) {
  int n = 0;
  for (int r = BR_OK + 1; r < BR__COUNT; r++) n += st->refused[r];
  return n;
}

/* Nothing could be tried at all: circuits open, cooldowns, drains or refused credentials.
 * Only cooldowns: 429 (the client may come back at the soonest reset); else 503. */
static void finish_refused(chat *c) {
  char msg[1024];
  if (c->peer) { hedge_quiet_end(c, "no_deployment", 0); return; } /* the peer answers */
  if (c->committed) { continuation_give_up(c); return; } /* nothing left to continue a stream on */
  const route_state *st = &c->route;
  int total = failover_refusals(st);
  uint64_t soon = st->soonest_ms ? st->soonest_ms : 1000;
  c->retry_after_s = (uint32_t)((soon + 999) / 1000);
  if (st->refused[BR_COOLING] == total) {
    metrics_req_fail[MRF_ALL_COOLING]++;
    snprintf(msg, sizeof msg,
             "Every deployment for model '%.200s' is cooling down after rate limits (%d); retry "
             "in %u s.", c->ri.model, total, c->retry_after_s);
    chat_error(c, 429, "rate_limit_error", "rate_limit_exceeded", msg);
  } else {
    metrics_req_fail[MRF_NO_HEALTHY]++;
    snprintf(msg, sizeof msg,
             "No healthy deployment for model '%.200s': %d with an open circuit, %d cooling down "
             "after rate limits, %d drained, %d with a refused credential; retry in %u s.",
             c->ri.model, st->refused[BR_LOCAL_OPEN] + st->refused[BR_CONTROL_OPEN],
             st->refused[BR_COOLING], st->refused[BR_DRAINED], st->refused[BR_CREDENTIAL],
             c->retry_after_s);
    chat_error(c, 503, "server_error", "no_healthy_deployment", msg);
  }
  chat_free(c);
}

/* Every attempt failed (or none could be made): the final OpenAI-shaped error. */
static void finish_exhausted(chat *c) {
  char msg[1024];
  if (c->peer) { hedge_quiet_end(c, "exhausted", 0); return; } /* the peer answers */
  if (c->committed) { continuation_give_up(c); return; } /* nothing left to continue a stream on */
  const char *model = c->ri.model;
  if (c->n_budget_refused) { /* say why it stopped early: the retry budget, not the config */
    size_t room = sizeof c->failures - c->failures_len;
    int w = snprintf(c->failures + c->failures_len, room, "; %d retries refused by the retry budget",
                     c->n_budget_refused);
    if (w > 0) c->failures_len += (size_t)w < room ? (size_t)w : room - 1;
  }
  if (c->attempts == 0 && c->n_unexpressible) { /* nothing sent: no provider can take it */
    chat_error(c, 400, "invalid_request_error", "unsupported_request", c->bad_request);
  } else if (c->attempts == 0) {
    snprintf(msg, sizeof msg, "No deployment is available for model '%.200s'.", model);
    chat_error(c, 503, "server_error", "no_deployment_available", msg);
  } else if (c->n_auth && c->n_auth == c->n_failed) { /* our keys, not the client's */
    metrics_req_fail[MRF_AUTH_FAILED]++;
    snprintf(msg, sizeof msg,
             "The provider refused llmesh's credentials for every deployment tried for model "
             "'%.200s' (%d attempts: %s). This is a gateway configuration problem.",
             model, c->attempts, c->failures);
    chat_error(c, 502, "server_error", "upstream_auth_failed", msg);
  } else if (c->n_rate_limited == c->n_failed) {
    if (c->soonest_reset_ms) c->retry_after_s = (uint32_t)((c->soonest_reset_ms + 999) / 1000);
    snprintf(msg, sizeof msg, "Every deployment for model '%.200s' is rate limited (%d attempts: %s).",
             model, c->attempts, c->failures);
    chat_error(c, 429, "rate_limit_error", "rate_limit_exceeded", msg);
  } else if (c->last_class == MC_TIMEOUT) {
    snprintf(msg, sizeof msg, "Upstream timed out for model '%.200s' (%d attempts: %s).", model,
             c->attempts, c->failures);
    chat_error(c, 504, "server_error", "upstream_timeout", msg);
  } else {
    snprintf(msg, sizeof msg, "All upstream attempts failed for model '%.200s' (%d attempts: %s).",
             model, c->attempts, c->failures);
    chat_error(c, 502, "server_error", "upstream_error", msg);
  }
  chat_free(c);
}

/* ---- the next pick -------------------------------------------------------------------- */

/* Could dep have lost the last pick's probe-share draw? The breaker admits it, the control
 * plane has it half-open with a share below 100 %, it was a candidate (supported, untried
 * or re-triable) and the pick went elsewhere. route_state counts lost draws, not who lost
 * them: a half-open candidate that won its draw but not the pick looks the same, so at most
 * st->probe_held deployments are named. */
static int maybe_probe_held(const chat *c, const dep_state *ds, int dep, int next) {
  const route_state *st = &c->route;
  if (!ds || dep == next || c->snap->deps[dep].unsupported) return 0;
  if (ds->ctl_state != LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN || ds->ctl_probe_share_milli >= 1000)
    return 0;
  for (int k = st->ntried - 1; k >= 0; k--)
    if (st->tried[k] == dep) return st->retry_ok[k];
  return 1;
}

/* What the last pick skipped: each deployment a breaker refused is logged (route_skip, once
 * per request) and counted by reason; so is a half-open one held back by its probe share
 * (as control_open, the documented count, with probe_share_held in the log line). Budget
 * refusals are logged (the breaker counts them per deployment). *soonest_dep: the refused
 * deployment that can take traffic soonest. */
static void note_route(chat *c, int next, int *soonest_dep) {
  const route_state *st = &c->route;
  *soonest_dep = -1;
  c->n_budget_refused += st->budget_refused;
  if (st->budget_refused)
    LOG_INFO(c->rid, "retry_budget_exhausted", LF_I("skipped", st->budget_refused),
             LF_S("next", next >= 0 ? c->snap->deps[next].name : NULL));
  if (!failover_refusals(st)) return;
  uint64_t now = attempt_now_ms(), soonest = UINT64_MAX;
  int last = st->pos < st->nchain ? st->pos : st->nchain - 1; /* groups the pick went through */
  int held_left = st->probe_held;
  for (int k = 0; k <= last; k++) {
    const snap_group *g = &c->snap->groups[st->chain[k]];
    for (int i = 0; i < g->ndeps; i++) {
      int dep = g->deps[i], held = 0;
      const dep_state *ds = chat_st(c, dep);
      uint64_t wait = 0;
      brk_refusal r = ds ? breaker_admit(ds, now, &wait) : BR_OK;
      if (r == BR_OK && held_left > 0 && maybe_probe_held(c, ds, dep, next)) {
        r = BR_CONTROL_OPEN;
        held = 1;
        held_left--;
      }
      if (r == BR_OK) continue;
      if (wait && wait < soonest) soonest = wait, *soonest_dep = dep;
      if (dep < 64 && (c->skip_logged >> dep & 1)) continue;
      if (dep < 64) c->skip_logged |= 1ull << dep;
      const snap_dep *d = &c->snap->deps[dep];
      d->stats->refusals[r]++;
      if (held)
        LOG_INFO(c->rid, "route_skip", LF_S("deployment", d->name),
                 LF_S("reason", breaker_refusal_name(r)), LF_I("wait_ms", 0),
                 LF_I("probe_share_held", 1));
      else
        LOG_INFO(c->rid, "route_skip", LF_S("deployment", d->name),
                 LF_S("reason", breaker_refusal_name(r)), LF_I("wait_ms", wait));
    }
  }
}

/* Picks and starts the next attempt; from/reason describe the failure that led here
 * (NULL for the first attempt). */
void failover_next(chat *c, const snap_dep *from, const char *reason) {
  if (!c->req) { chat_free(c); return; }
  for (;;) {
    if (wait_left_ms(c) == 0) { failover_finish_deadline(c); return; }
    int soonest_dep;
    int next = route_pick(&c->route, c->snap, route_rng_default(), attempt_now_ms());
    note_route(c, next, &soonest_dep);
    if (from) {
      LOG_INFO(c->rid, "failover", LF_S("from", from->name), LF_S("reason", reason),
               LF_I("attempt", c->attempts), LF_S("next", next >= 0 ? c->snap->deps[next].name : NULL));
      if (next >= 0) metrics_failover(from->stats, reason);
    }
    if (next < 0) {
      /* a pick that finds nothing leaves the route where it was: pick again after the wait */
      if (wait_cooldown(c, soonest_dep)) return;
      if (c->attempts == 0 && !c->n_unexpressible && failover_refusals(&c->route)) finish_refused(c);
      else finish_exhausted(c);
      return;
    }
    if (c->route.backoff_ms) { wait_backoff(c, next); return; }
    if (failover_try(c, next, &from, &reason)) return;
  }
}

/* Starts an attempt on deployment next. 1: the chat went on (started, parked for a
 * token, or failed over from here); 0: pick another, *from / *reason say why. */
int failover_try(chat *c, int next, const snap_dep **from, const char **reason) {
  int rc = attempt_start(c, next);
  if (rc == 0 || rc == ATTEMPT_PARKED) return 1;
  if (rc == ATTEMPT_NO_CONTINUE) {
    continuation_give_up(c);
    return 1;
  }
  if (rc == ATTEMPT_NO_TOKEN) {
    c->dep = next;
    attempt_token_failed(c, MC_OTHER_ERROR, "auth_no_token");
    return 1;
  }
  *from = &c->snap->deps[next];
  if (rc == ATTEMPT_UNEXPRESSIBLE) { /* not the provider's fault: not counted against it */
    *reason = "unsupported_request";
    route_unused(&c->route);
    route_failed(&c->route, c->snap, next, 0); /* prefer another provider family */
    c->n_unexpressible++;
    return 0;
  }
  /* could not even start (ENOMEM): next one */
  *reason = "internal_error";
  (*from)->stats->errors[MC_OTHER_ERROR]++;
  c->n_failed++;
  c->last_class = MC_OTHER_ERROR;
  return 0;
}

/* Counts a failed attempt, tells its breaker, and moves on. */
void failover_failed(chat *c, enum metrics_class cls, const char *reason) {
  const snap_dep *d = &c->snap->deps[c->dep];
  int reached = c->brk_open; /* an upstream attempt (not a token that never came) */
  if (c->ms_phase == MS_PENDING) { /* a continuation that wrote nothing: the next one */
    d->stats->midstream_failed++;
    LOG_INFO(c->rid, "midstream_attempt_failed", LF_S("deployment", d->name), LF_S("reason", reason));
  }
  brk_outcome o = failure_outcome(c, cls, reason);
  d->stats->errors[cls]++;
  failover_brk_end(c, o);
  /* a 5xx, garbage or cut may be re-tried on the same deployment later, and a 429 once its
   * cooldown is over; a silent timeout or a connect failure never */
  route_failed(&c->route, c->snap, c->dep, reached && (o == BO_SERVER || o == BO_RATE_LIMITED));
  c->n_failed++;
  if (cls == MC_RATE_LIMITED) c->n_rate_limited++;
  if (cls == MC_AUTH_ERROR) {
    c->n_auth++;
    LOG_WARN(c->rid, "credential_failed", LF_S("deployment", d->name), LF_I("status", c->status));
  }
  c->last_class = cls;
  failover_note(c, d, reason);
  if (c->peer) { hedge_quiet_end(c, reason, 1); return; } /* its peer carries on alone */
  if (wait_left_ms(c) == 0) {
    LOG_INFO(c->rid, "failover", LF_S("from", d->name), LF_S("reason", reason),
             LF_I("attempt", c->attempts), LF_S("next", NULL));
    failover_finish_deadline(c);
    return;
  }
  failover_next(c, d, reason);
}

/* A refusal that has its own fallbacks (context length, content policy): when the group
 * has them the chain switches to them and the next deployment is tried; the attempt was
 * the client's kind of failure (neutral for the breaker). 1 = diverted, the chat went on. */
int failover_divert(chat *c, const snap_dep *d, enum route_divert_kind k) {
  if (route_divert(&c->route, c->snap, k) != 0) return 0;
  const char *reason = k == ROUTE_DIVERT_CONTEXT_WINDOW ? "context_window" : "content_policy";
  attempt_release(c);
  d->stats->errors[MC_CLIENT_ERROR]++;
  failover_brk_end(c, BO_NEUTRAL);
  c->n_failed++;
  c->last_class = MC_CLIENT_ERROR;
  failover_note(c, d, reason);
  failover_next(c, d, reason);
  return 1;
}
