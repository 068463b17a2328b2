/* route.c — weighted choice with exclusions and fallbacks (see route.h). */
#include "route.h"

#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

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

static int was_tried(const route_state *st, int dep) {
  for (int i = 0; i < st->ntried; i++)
    if (st->tried[i] == dep) return 1;
  return 0;
}

static int provider_failed(const route_state *st, const char *provider) {
  for (int i = 0; i < st->nfailed; i++)
    if (strcmp(st->failed[i], provider) == 0) return 1;
  return 0;
}

/* Weighted pick among the untried deployments of group g; -1 if none. */
static int pick_in_group(const route_state *st, const snapshot *s, const snap_group *g,
                         const route_rng *rng) {
  uint64_t total = 0, fresh_total = 0;
  for (int i = 0; i < g->ndeps; i++) {
    const snap_dep *d = &s->deps[g->deps[i]];
    if (was_tried(st, g->deps[i]) || d->unsupported) continue;
    total += d->weight;
    if (!provider_failed(st, d->provider)) fresh_total += d->weight;
  }
  if (total == 0) return -1;
  int fresh_only = fresh_total > 0; /* prefer providers that have not failed yet */
  uint64_t r = rng->next(rng->ctx) % (fresh_only ? fresh_total : total);
  for (int i = 0; i < g->ndeps; i++) {
    const snap_dep *d = &s->deps[g->deps[i]];
    if (was_tried(st, g->deps[i]) || d->unsupported) continue;
    if (fresh_only && provider_failed(st, d->provider)) continue;
    if (r < d->weight) return g->deps[i];
    r -= d->weight;
  }
  return -1; /* unreachable */
}

int route_pick(route_state *st, const snapshot *s, const route_rng *rng, uint64_t now_ms) {
  (void)now_ms; /* breakers and budgets: issue 5, in progress */
  if (st->ntried >= ROUTE_MAX_TRIED) return -1;
  while (st->pos < st->nchain) {
    const snap_group *g = &s->groups[st->chain[st->pos]];
    if (st->used_in_group < 1 + s->num_retries) {
      int dep = pick_in_group(st, s, g, rng);
      if (dep >= 0) {
        st->used_in_group++;
        st->tried[st->ntried++] = dep;
        return dep;
      }
    }
    st->pos++;
    st->used_in_group = 0;
  }
  return -1;
}

void route_failed(route_state *st, const snapshot *s, int dep, int retry_ok) {
  for (int i = st->ntried - 1; i >= 0; i--)
    if (st->tried[i] == dep) { st->retry_ok[i] = (uint8_t)retry_ok; break; }
  if (st->nfailed < ROUTE_MAX_TRIED) st->failed[st->nfailed++] = s->deps[dep].provider;
}

int route_divert(route_state *st, const snapshot *s, enum route_divert_kind kind) {
  (void)st, (void)s, (void)kind; /* per-kind fallbacks: issue 5, in progress */
  return -1;
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
