/* histogram.h — fixed-bucket latency histogram shared by workers (metrics, telemetry)
 * and the control plane (p50/p99 estimates). Bucket i counts samples <= bound[i] ms;
 * the last bucket is +Inf. The bounds are part of the wire contract: change them only
 * together with a proto version bump. */
#ifndef LLMESH_HISTOGRAM_H
#define LLMESH_HISTOGRAM_H

#include <stdint.h>

#define HIST_BUCKETS 17

extern const double hist_bounds_ms[HIST_BUCKETS - 1]; /* upper bounds, ms; +Inf implied last */

typedef struct hist {
  uint64_t counts[HIST_BUCKETS]; /* samples per bucket (not cumulative) */
  uint64_t total;                /* samples */
  double sum_ms;                 /* sum of samples, ms */
} hist_t;

void hist_add(hist_t *h, double ms);
/* Estimates quantile q (0..1) from bucket counts by linear interpolation inside the
 * bucket; counts has HIST_BUCKETS entries. Returns 0 when empty. */
double hist_quantile(const uint64_t *counts, int n, double q);

#endif
