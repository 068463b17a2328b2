/* histogram.c — fixed latency buckets and quantile estimates. */
#include "histogram.h"

const double hist_bounds_ms[HIST_BUCKETS - 1] = {
    1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 120000};

void hist_add(hist_t *h, double ms) {
  int i = 0;
  while (i < HIST_BUCKETS - 1 && ms > hist_bounds_ms[i]) i++;
  h->counts[i]++;
  h->total++;
  h->sum_ms += ms;
}

double hist_quantile(const uint64_t *counts, int n, double q) {
  uint64_t total = 0;
  for (int i = 0; i < n; i++) total += counts[i];
  if (total == 0) return 0;
  double rank = q * (double)total, seen = 0;
  for (int i = 0; i < n; i++) {
    if (counts[i] == 0) continue;
    if (seen + (double)counts[i] >= rank) {
      double lo = i == 0 ? 0 : hist_bounds_ms[i - 1];
      double hi = i < HIST_BUCKETS - 1 ? hist_bounds_ms[i] : lo * 2;
      double frac = (rank - seen) / (double)counts[i];
      return lo + (hi - lo) * frac;
    }
    seen += (double)counts[i];
  }
  return hist_bounds_ms[HIST_BUCKETS - 2];
}
