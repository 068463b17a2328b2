/* route.c — candidates, priority tiers, strategies, retries and fallbacks (see route.h and
 * docs/resilience.md "Worker routing"). */
#include "route.h"

#include <math.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#define ROUTE_LATENCY_SLACK 1.10 /* latency routing: within 10 % of the best is as good */

static const char *const strategy_names[] = {
    [ROUTE_SIMPLE_SHUFFLE] = "simple-shuffle", [ROUTE_LATENCY] = "latency-based-routing",
    [ROUTE_LEAST_BUSY] = "least-busy",         [ROUTE_USAGE] = "usage-based-routing",
    [ROUTE_COST] = "cost-based-routing",
};

enum route_strategy route_strategy_parse(const char *name) {
  if (!name) return ROUTE_SIMPLE_SHUFFLE;
  if (!strcmp(name, "usage-based-routing-v2")) return ROUTE_USAGE; /* LiteLLM's name, same thing */
  for (size_t i = 0; i < sizeof strategy_names / sizeof *strategy_names; i++)
    if (!strcmp(name, strategy_names[i])) return (enum route_strategy)i;
  return ROUTE_SIMPLE_SHUFFLE;
}

const char *route_strategy_name(enum route_strategy s) {
  return (unsigned)s < sizeof strategy_names / sizeof *strategy_names ? strategy_names[s]
                                                                       : "simple-shuffle";
}

void route_init(route_state *st, const snapshot *s, int group_idx) {
  memset(st, 0, sizeof *st);
  st->chain[st->nchain++] = group_idx;
  const snap_group *g = &s->groups[group_idx];
  for (int i = 0; i < g->nfallbacks && st->nchain < ROUTE_MAX_CHAIN; i++) {
    int fb = g->fallbacks[i], dup = 0;
    for (int k = 0; k < st->nchain; k++) dup |= st->chain[k] == fb;
    if (!dup) st->chain[st->nchain++] = fb;
  }
}

/* The newest tried entry of dep, or -1. */
static int last_try(const route_state *st, int dep) {
  for (int i = st->ntried - 1; i >= 0; i--)
    if (st->tried[i] == dep) return i;
  return -1;
}

static int provider_failed(const route_state *st, const char *provider) {
  for (int i = 0; i < st->nfailed; i++)
    if (strcmp(st->failed[i], provider) == 0) return 1;
  return 0;
}

/* ---- candidates ---------------------------------------------------------------------- */

/* A control HALF_OPEN deployment takes part in a pick with probability probe_share ‰, so
 * it gets that share of the traffic it would get whatever else is admissible (a scaled
 * weight is relative: when every deployment is half-open it would hold nothing back). */
static int probe_draw(const dep_state *ds, const route_rng *rng) {
  if (ds->ctl_state != LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN) return 1;
  if (ds->ctl_probe_share_milli >= 1000) return 1;
  return rng->next(rng->ctx) % 1000 < ds->ctl_probe_share_milli;
}

/* Is d usable now? A refusal is counted in st (by reason, with the soonest wait); a lost
 * half-open draw counts as BR_CONTROL_OPEN with no known wait. */
static int admitted(route_state *st, const snap_dep *d, const route_rng *rng, uint64_t now_ms) {
  if (!d->st) return 1;
  uint64_t wait = 0;
  brk_refusal r = breaker_admit(d->st, now_ms, &wait);
  if (r == BR_OK) {
    if (probe_draw(d->st, rng)) return 1;
    r = BR_CONTROL_OPEN;
    st->probe_held++;
  }
  st->refused[r]++;
  if (wait && (!st->soonest_ms || wait < st->soonest_ms)) st->soonest_ms = wait;
  return 0;
}

/* The group's deployments that may take this pick: untried ones (retry = 0), or tried ones
 * whose last failure allows a re-try (retry = 1). Returns how many went into cand. */
static int collect(route_state *st, const snapshot *s, const snap_group *g, int retry,
                   const route_rng *rng, uint64_t now_ms, int *cand) {
  int n = 0;
  for (int i = 0; i < g->ndeps; i++) {
    int dep = g->deps[i], k = last_try(st, dep);
    const snap_dep *d = &s->deps[dep];
    if (d->unsupported) continue;
    if (retry ? k < 0 || !st->retry_ok[k] : k >= 0) continue;
    if (admitted(st, d, rng, now_ms)) cand[n++] = dep;
  }
  return n;
}

/* Keeps the candidates of the lowest priority tier; 0 (unset) ranks after every number. */
static int keep_tier(const snapshot *s, int *cand, int n) {
  uint64_t best = UINT64_MAX;
  for (int i = 0; i < n; i++) {
    uint32_t o = s->deps[cand[i]].order;
    uint64_t key = o ? o : (uint64_t)UINT32_MAX + 1;
    if (key < best) best = key;
  }
  int m = 0;
  for (int i = 0; i < n; i++) {
    uint32_t o = s->deps[cand[i]].order;
    if ((o ? o : (uint64_t)UINT32_MAX + 1) == best) cand[m++] = cand[i];
  }
  return m;
}

/* Keeps the candidates whose provider has not failed in this request, if there are any. */
static int keep_fresh(const route_state *st, const snapshot *s, int *cand, int n) {
  int m = 0;
  for (int i = 0; i < n; i++)
    if (!provider_failed(st, s->deps[cand[i]].provider)) m++;
  if (!m || m == n) return n;
  m = 0;
  for (int i = 0; i < n; i++)
    if (!provider_failed(st, s->deps[cand[i]].provider)) cand[m++] = cand[i];
  return m;
}

/* ---- strategies ---------------------------------------------------------------------- */

/* Configured weight × the control plane's factor, in thousandths; at least 1 so every
 * candidate can be drawn. (The half-open probe share is applied at admission, probe_draw.) */
static uint64_t eff_weight(const snap_dep *d) {
  uint64_t w = (uint64_t)d->weight * (d->st ? d->st->ctl_weight_milli : 1000);
  return w ? w : 1;
}

static int weighted_draw(const snapshot *s, const int *cand, int n, const route_rng *rng) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += eff_weight(&s->deps[cand[i]]);
  uint64_t r = rng->next(rng->ctx) % total;
  for (int i = 0; i < n; i++) {
    uint64_t w = eff_weight(&s->deps[cand[i]]);
    if (r < w) return i;
    r -= w;
  }
  return n - 1; /* unreachable */
}

static uint32_t in_flight(const snap_dep *d) { return d->st ? d->st->in_flight : 0; }

/* Power of two choices: two weighted draws, the one with fewer attempts running per unit
 * of weight wins (the first on a tie, so an idle group keeps the exact weights). */
static int p2c(const snapshot *s, const int *cand, int n, const route_rng *rng) {
  int a = weighted_draw(s, cand, n, rng), b = weighted_draw(s, cand, n, rng);
  const snap_dep *da = &s->deps[cand[a]], *db = &s->deps[cand[b]];
  double la = in_flight(da) * (double)eff_weight(db), lb = in_flight(db) * (double)eff_weight(da);
  return lb < la ? b : a;
}

/* Keeps the candidates whose key is at most limit(best); P2C among them. */
static int best_by_key(const snapshot *s, int *cand, int n, const double *key, double slack,
                       const route_rng *rng) {
  double best = INFINITY;
  for (int i = 0; i < n; i++)
    if (key[i] < best) best = key[i];
  int idx[n], m = 0;
  for (int i = 0; i < n; i++)
    if (key[i] <= best * slack || key[i] == best) idx[m++] = i;
  int kept[m];
  for (int i = 0; i < m; i++) kept[i] = cand[idx[i]];
  return idx[p2c(s, kept, m, rng)];
}

/* Latency: this worker's EWMA, else the control plane's; unknown ranks first so a new
 * deployment gets the sample that places it. */
static double key_latency(const snap_dep *d) {
  if (!d->st) return 0;
  return d->st->lat_ewma_ms > 0 ? d->st->lat_ewma_ms : d->st->ctl_latency_ms;
}

/* Share of the configured limit used cluster-wide (tpm, else rpm); no limit = 0. */
static double key_usage(const snap_dep *d) {
  if (!d->st) return 0;
  if (d->tpm) return (double)d->st->ctl_tpm_used / d->tpm;
  if (d->rpm) return (double)d->st->ctl_rpm_used / d->rpm;
  return 0;
}

static double key_cost(const snap_dep *d) {
  double c = d->input_cost + d->output_cost;
  return c > 0 ? c : INFINITY; /* unknown cost ranks last */
}

/* Fewest attempts running here; ties by weighted draw. */
static int least_busy(const snapshot *s, int *cand, int n, const route_rng *rng) {
  uint32_t best = UINT32_MAX;
  for (int i = 0; i < n; i++)
    if (in_flight(&s->deps[cand[i]]) < best) best = in_flight(&s->deps[cand[i]]);
  int idx[n], kept[n], m = 0;
  for (int i = 0; i < n; i++)
    if (in_flight(&s->deps[cand[i]]) == best) idx[m] = i, kept[m++] = cand[i];
  return idx[weighted_draw(s, kept, m, rng)];
}

/* Index into cand (n ≥ 1) of the strategy's choice. */
static int strategy_pick(const snapshot *s, int strategy, int *cand, int n, const route_rng *rng) {
  double key[n];
  double (*keyf)(const snap_dep *) = NULL;
  double slack = 1.0;
  switch (strategy) {
  case ROUTE_LEAST_BUSY: return least_busy(s, cand, n, rng);
  case ROUTE_LATENCY: keyf = key_latency, slack = ROUTE_LATENCY_SLACK; break;
  case ROUTE_USAGE: keyf = key_usage; break;
  case ROUTE_COST: keyf = key_cost; break;
  default: return p2c(s, cand, n, rng);
  }
  for (int i = 0; i < n; i++) key[i] = keyf(&s->deps[cand[i]]);
  return best_by_key(s, cand, n, key, slack, rng);
}

/* ---- picking ------------------------------------------------------------------------- */

/* Full-jitter exponential backoff before re-trying a deployment re-tried `k` times already. */
static uint32_t backoff(const snapshot *s, uint32_t k, const route_rng *rng) {
  uint64_t cap = s->retry_backoff_max_ms;
  uint64_t exp = k < 31 ? (uint64_t)s->retry_backoff_ms << k : cap;
  if (exp < cap) cap = exp;
  if (!cap) return 0;
  uint64_t b = rng->next(rng->ctx) % (cap + 1);
  return (uint32_t)(b ? b : 1); /* never a tight loop */
}

/* Records the pick of dep in st. */
static void take(route_state *st, const snapshot *s, int dep, int retry, const route_rng *rng) {
  int k = last_try(st, dep);
  st->tried[st->ntried] = dep;
  st->retry_ok[st->ntried] = 0;
  st->retried[st->ntried] = retry && k >= 0 ? (uint8_t)(st->retried[k] + 1) : 0;
  if (retry && k >= 0) st->backoff_ms = backoff(s, st->retried[k], rng);
  st->ntried++;
}

/* Chooses among cand: tier, then fresh providers, then the strategy; a retry needs a
 * token from the deployment's budget (no token: skipped, counted, choose again). */
static int choose(route_state *st, const snapshot *s, const snap_group *g, int *cand, int n,
                  const route_rng *rng, uint64_t now_ms) {
  while (n > 0) {
    int pool[n];
    memcpy(pool, cand, (size_t)n * sizeof *pool);
    int m = keep_fresh(st, s, pool, keep_tier(s, pool, n));
    int dep = pool[strategy_pick(s, g->strategy, pool, m, rng)];
    dep_state *ds = s->deps[dep].st;
    if (!ds) return dep;
    if (!st->is_retry) {
      breaker_budget_deposit(ds, &s->brk, now_ms);
      return dep;
    }
    if (breaker_budget_take(ds, &s->brk, now_ms)) return dep;
    st->budget_refused++;
    int w = 0; /* drop dep and choose again among the rest */
    for (int i = 0; i < n; i++)
      if (cand[i] != dep) cand[w++] = cand[i];
    n = w;
  }
  return -1;
}

/* A pick in group g: untried deployments first, else a re-try of a tried one. */
static int pick_in_group(route_state *st, const snapshot *s, const snap_group *g,
                         const route_rng *rng, uint64_t now_ms) {
  if (g->ndeps <= 0) return -1;
  int cand[g->ndeps];
  for (int retry = 0; retry < 2; retry++) {
    int n = collect(st, s, g, retry, rng, now_ms, cand);
    int dep = choose(st, s, g, cand, n, rng, now_ms);
    if (dep >= 0) {
      take(st, s, dep, retry, rng);
      return dep;
    }
  }
  return -1;
}

int route_pick(route_state *st, const snapshot *s, const route_rng *rng, uint64_t now_ms) {
  st->backoff_ms = 0;
  st->is_retry = st->ntried > 0;
  memset(st->refused, 0, sizeof st->refused);
  st->soonest_ms = 0;
  st->budget_refused = 0;
  st->probe_held = 0;
  if (st->ntried >= ROUTE_MAX_TRIED) return -1;
  /* nothing found leaves the position alone: refusals end (cooldowns, budgets refill) and a
   * later call may pick in the same group */
  uint32_t used = st->used_in_group;
  for (int pos = st->pos; pos < st->nchain; pos++, used = 0) {
    if (used >= 1 + s->num_retries) continue;
    int dep = pick_in_group(st, s, &s->groups[st->chain[pos]], rng, now_ms);
    if (dep < 0) continue;
    st->pos = pos;
    st->used_in_group = used + 1;
    return dep;
  }
  return -1;
}

void route_failed(route_state *st, const snapshot *s, int dep, int retry_ok) {
  int k = last_try(st, dep);
  if (k >= 0) st->retry_ok[k] = (uint8_t)(retry_ok != 0);
  if (st->nfailed < ROUTE_MAX_TRIED) st->failed[st->nfailed++] = s->deps[dep].provider;
}

int route_divert(route_state *st, const snapshot *s, enum route_divert_kind kind) {
  /* the group that answered: the last pick's (the chain position may have moved on) */
  int gi = st->ntried ? s->deps[st->tried[st->ntried - 1]].group_idx
                      : st->chain[st->pos < st->nchain ? st->pos : st->nchain - 1];
  const snap_group *g = &s->groups[gi];
  const int *list = kind == ROUTE_DIVERT_CONTEXT_WINDOW ? g->cw_fallbacks : g->cp_fallbacks;
  int n = kind == ROUTE_DIVERT_CONTEXT_WINDOW ? g->ncw_fallbacks : g->ncp_fallbacks;
  if (n <= 0) return -1;
  st->nchain = 0;
  for (int i = 0; i < n && st->nchain < ROUTE_MAX_CHAIN; i++) {
    int dup = 0;
    for (int k = 0; k < st->nchain; k++) dup |= st->chain[k] == list[i];
    if (!dup) st->chain[st->nchain++] = list[i];
  }
  st->pos = 0;
  st->used_in_group = 0;
  return 0;
}

void route_unused(route_state *st) {
  if (st->used_in_group) st->used_in_group--;
}

static uint64_t xorshift_next(void *ctx) {
  uint64_t *x = ctx;
  *x ^= *x >> 12;
  *x ^= *x << 25;
  *x ^= *x >> 27;
  return *x * 0x2545F4914F6CDD1DULL;
}

const route_rng *route_rng_default(void) {
  static uint64_t state;
  static route_rng rng = {xorshift_next, &state};
  if (!state) {
    if (getrandom(&state, sizeof state, 0) != (ssize_t)sizeof state || !state)
      state = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
  }
  return &rng;
}
