/* route.h — which deployment a request tries next.
 *
 * Weighted random choice within the model group among deployments not yet tried by
 * this request (never one marked unsupported: no adapter for its family), preferring
 * one whose provider differs from those that already failed;
 * once the group's budget (1 + num_retries attempts) or its deployments are used up,
 * the primary group's fallbacks in order, each with the same budget. Pure functions
 * over a snapshot with an injectable random source, for tests. */
#ifndef LLMESH_ROUTE_H
#define LLMESH_ROUTE_H

#include <stdint.h>

#include "snapshot.h"

#define ROUTE_MAX_TRIED 64 /* attempts per request, whatever the configuration says */
#define ROUTE_MAX_CHAIN 17 /* primary group + up to 16 fallback groups */

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
} route_state;

void route_init(route_state *st, const snapshot *s, int group_idx);
/* Next deployment index to try, or -1 when everything is used up. */
int route_pick(route_state *st, const snapshot *s, const route_rng *rng);
/* Records that an attempt on deployment dep failed in a way that counts against it. */
void route_failed(route_state *st, const snapshot *s, int dep);

/* The last pick could not be sent at all (the request cannot be expressed for that
 * provider): it stays tried but does not use up the group's attempt budget. */
void route_unused(route_state *st);

/* A process-wide xorshift source seeded from the OS. */
const route_rng *route_rng_default(void);

#endif
