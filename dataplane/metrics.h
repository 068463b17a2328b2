/* metrics.h — the worker's counters: one store, two renderings (Prometheus text on
 * GET /metrics, Telemetry protobuf every second).
 *
 * Per-deployment counters are keyed by deployment name in a small hash map and survive
 * snapshot swaps; a snapshot's snap_dep points at its entry, so the hot path never
 * looks a name up. Everything runs on the loop thread: no atomics, no locks. */
#ifndef LLMESH_METRICS_H
#define LLMESH_METRICS_H

#include <stdint.h>

#include "histogram.h"
#include "util.h"

/* Why an attempt did not succeed; matches the DeploymentStats fields. */
enum metrics_class {
  MC_CLIENT_ERROR = 0, /* 4xx other than 408/429, relayed */
  MC_RATE_LIMITED,     /* 429 */
  MC_SERVER_ERROR,     /* 5xx, 408 */
  MC_TIMEOUT,          /* no answer within the deadline */
  MC_CONNECT_ERROR,    /* refused, DNS, TLS */
  MC_OTHER_ERROR,      /* garbage, cut stream, anything else */
  MC_CANCELLED,        /* client left; never the provider's fault */
  MC__COUNT
};

#define METRICS_MAX_REASONS 16 /* distinct failover reasons kept per deployment */

typedef struct metrics_reason {
  char reason[24]; /* "http_500", "timeout", ... */
  uint64_t n;      /* failovers with this reason */
} metrics_reason;

typedef struct metrics_dep {
  char name[128];                  /* deployment name */
  char group[128];                 /* model group in the newest snapshot naming it */
  uint64_t requests;               /* attempts sent upstream */
  uint64_t success;                /* 2xx answered completely */
  uint64_t errors[MC__COUNT];      /* by enum metrics_class */
  uint64_t prompt_tokens;          /* from usage */
  uint64_t completion_tokens;
  uint64_t failovers;              /* attempts here that led to trying another */
  uint64_t fields_dropped;         /* attempts whose adapter dropped request fields */
  hist_t latency;                  /* time to response headers, ms */
  metrics_reason reasons[METRICS_MAX_REASONS]; /* failovers by reason */
  int nreasons;
  struct metrics_dep *hnext;       /* hash chain */
} metrics_dep;

typedef struct metrics_gauges {
  uint64_t snapshot_version;  /* 0 before the first snapshot */
  uint64_t open_connections;  /* client connections */
} metrics_gauges;

extern uint64_t metrics_client_requests;   /* HTTP responses sent, all paths */
extern uint64_t metrics_active_streams;    /* streams being relayed now */
extern uint64_t metrics_telemetry_dropped; /* telemetry messages not sent */
extern uint64_t metrics_gcp_token_fetches[2]; /* Google access-token fetches: [0] error, [1] ok */

/* Entry for a deployment, created on first use; NULL on ENOMEM. Stable pointer. */
metrics_dep *metrics_dep_get(const char *name, const char *group);
/* Iteration in creation order. */
int metrics_dep_count(void);
metrics_dep *metrics_dep_at(int i);

void metrics_http_response(int status);            /* one client response */
void metrics_failover(metrics_dep *d, const char *reason);
const char *metrics_class_name(enum metrics_class c);

/* Appends the Prometheus text exposition. Returns 0 or -ENOMEM. */
int metrics_render(buf_t *out, const metrics_gauges *g);
void metrics_free(void);

#endif
