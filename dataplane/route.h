/* route.h — which deployment a request tries next.
 *
 * Within the model group, among deployments this request has not tried (never one marked
 * unsupported: no adapter for its family) and that breaker_admit lets through (breaker.h;
 * a control HALF_OPEN one only with probability probe_share ‰ per pick),
 * only the lowest priority tier (`order`) that has one, the group's strategy picks
 * (docs/resilience.md), preferring a provider that has not failed yet. Once the group's
 * budget (1 + num_retries attempts) or its candidates are used up, the primary group's
 * fallbacks in order, each with the same budget. A deployment already tried may be picked
 * again only when no untried one is left and its failure allowed it (retry_ok), after a
 * jittered exponential backoff (st->backoff_ms). Retries take a token from the
 * deployment's retry budget. Pure functions over a snapshot and the breaker states with an
 * injectable random source and clock, for tests. */
#ifndef LLMESH_ROUTE_H
#define LLMESH_ROUTE_H

#include <stdint.h>

#include "breaker.h"
#include "snapshot.h"

#define ROUTE_MAX_TRIED 64 /* attempts per request, whatever the configuration says */
#define ROUTE_MAX_CHAIN 17 /* primary group + up to 16 fallback groups */

/* Strategies among a tier's candidates (docs/resilience.md "Worker routing"). */
enum route_strategy {
  ROUTE_SIMPLE_SHUFFLE = 0, /* weighted random × control weight, power of two choices on load */
  ROUTE_LATENCY,            /* lowest latency EWMA (local, else control); within 10 %: P2C */
  ROUTE_LEAST_BUSY,         /* fewest local in-flight attempts (weighted P2C) */
  ROUTE_USAGE,              /* lowest tpm_used/tpm, else rpm_used/rpm, else weighted */
  ROUTE_COST,               /* lowest input + output cost per token, unknown last; ties P2C */
};

/* "simple-shuffle", "latency-based-routing", "least-busy", "usage-based-routing"
 * (also "-v2"), "cost-based-routing"; NULL, "" or unknown → ROUTE_SIMPLE_SHUFFLE. */
enum route_strategy route_strategy_parse(const char *name);
const char *route_strategy_name(enum route_strategy s);

typedef struct route_rng {
  uint64_t (*next)(void *ctx); /* uniform 64-bit values */
  void *ctx;                   /* state for next */
} route_rng;

typedef struct route_state {
  int chain[ROUTE_MAX_CHAIN];           /* group indices: primary then fallbacks */
  int nchain;                           /* entries in chain */
  int pos;                              /* group being tried */
  uint32_t used_in_group;               /* attempts made in chain[pos] */
  int tried[ROUTE_MAX_TRIED];           /* deployment indices tried, in order */
  int ntried;                           /* entries in tried */
  const char *failed[ROUTE_MAX_TRIED];  /* providers of failed attempts */
  int nfailed;                          /* entries in failed */
  uint8_t retry_ok[ROUTE_MAX_TRIED];    /* per tried entry: its failure allows a re-try (5xx, garbage, cut) */
  uint8_t retried[ROUTE_MAX_TRIED];     /* per tried entry: re-tries made on it */
  /* what the last route_pick decided, for logs, metrics and the final error */
  uint32_t backoff_ms;                  /* the pick re-tries a deployment: wait this long first, ms */
  int is_retry;                         /* the pick is not the request's first attempt */
  int refused[BR__COUNT];               /* candidates breaker_admit refused, by brk_refusal */
  uint64_t soonest_ms;                  /* shortest wait among those refusals, ms (0 = unknown) */
  int budget_refused;                   /* candidates skipped because their retry budget was empty */
  int probe_held;                       /* control HALF_OPEN candidates that lost the probe-share draw
                                         * (also in refused[BR_CONTROL_OPEN]; breaker_admit says OK) */
} route_state;

/* Fallback chains chosen by what the provider said (route_divert). */
enum route_divert_kind {
  ROUTE_DIVERT_CONTEXT_WINDOW = 0, /* context_length_exceeded → context_window_fallbacks */
  ROUTE_DIVERT_CONTENT_POLICY,     /* content policy refusal → content_policy_fallbacks */
};

void route_init(route_state *st, const snapshot *s, int group_idx);
/* Next deployment index to try, or -1 when everything is used up (st->refused and
 * st->soonest_ms then say whether circuits or cooldowns were the reason). now_ms: loop
 * time, for the breakers and budgets. */
int route_pick(route_state *st, const snapshot *s, const route_rng *rng, uint64_t now_ms);
/* Records that an attempt on deployment dep failed in a way that counts against it;
 * retry_ok: the failure allows re-trying dep later in this request (a 5xx, garbage or a
 * cut; never a silent timeout or a connect failure). */
void route_failed(route_state *st, const snapshot *s, int dep, int retry_ok);
/* The provider refused for a reason that has its own fallbacks: the rest of the chain
 * becomes the current group's fallbacks of that kind. 0 switched, -1 when it has none. */
int route_divert(route_state *st, const snapshot *s, enum route_divert_kind kind);

/* The last pick could not be sent at all (the request cannot be expressed for that
 * provider): it stays tried but does not use up the group's attempt budget. */
void route_unused(route_state *st);

/* A process-wide xorshift source seeded from the OS. */
const route_rng *route_rng_default(void);

#endif
