/* metrics.h — the worker's counters: one store, two renderings (Prometheus text on
 * GET /metrics, Telemetry protobuf every second).
 *
 * Per-deployment counters are keyed by deployment name in a small hash map and survive
 * snapshot swaps; a snapshot's snap_dep points at its entry, so the hot path never
 * looks a name up. Everything runs on the loop thread: no atomics, no locks. */
#ifndef LLMESH_METRICS_H
#define LLMESH_METRICS_H

#include <stdint.h>

#include "breaker.h"
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
  MC_AUTH_ERROR,       /* 401/403: our credential was refused (failed over, alerted) */
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
  uint64_t refusals[BR__COUNT];    /* requests whose routing skipped it, by brk_refusal (route_skip) */
  uint64_t backoffs;               /* re-tries onto it that waited a backoff first */
  uint64_t retry_after_waits;      /* requests that waited for its Retry-After in-line */
  uint64_t hedges;                 /* hedged attempts started on it */
  double hedge_hdr_p95_ms;         /* running p95 estimate of time to 2xx headers, ms (hedge.h) */
  uint32_t hedge_hdr_samples;      /* samples in it (saturates) */
  uint32_t hedge_ttft_samples;     /* samples in its breaker's ttft_p95_ms (saturates) */
  uint64_t midstream_continued;    /* continuations on it that took over a dead stream */
  uint64_t midstream_failed;       /* continuations on it that failed before writing anything */
  hist_t latency;                  /* time to response headers, ms */
  metrics_reason reasons[METRICS_MAX_REASONS]; /* failovers by reason */
  int nreasons;
  struct metrics_dep *hnext;       /* hash chain */
} metrics_dep;

typedef struct metrics_gauges {
  uint64_t snapshot_version;  /* 0 before the first snapshot */
  uint64_t open_connections;  /* client connections */
  uint64_t now_ms;            /* loop time, ms: remaining cooldowns are rendered against it */
} metrics_gauges;

/* Why a request ended without an upstream answer although it was valid. */
enum metrics_req_fail {
  MRF_REQUEST_TIMEOUT = 0, /* total_timeout passed (504 request_timeout or in-band error) */
  MRF_NO_HEALTHY,          /* nothing admissible: 503 no_healthy_deployment */
  MRF_ALL_COOLING,         /* nothing admissible, all cooling: 429 before any attempt */
  MRF_AUTH_FAILED,         /* every attempt's credential refused: 502 upstream_auth_failed */
  MRF__COUNT
};

extern uint64_t metrics_client_requests;   /* HTTP responses sent, all paths */
extern uint64_t metrics_active_streams;    /* streams being relayed now */
extern uint64_t metrics_telemetry_dropped; /* telemetry messages not sent */
extern uint64_t metrics_gcp_token_fetches[2]; /* Google access-token fetches: [0] error, [1] ok */
extern uint64_t metrics_req_fail[MRF__COUNT]; /* by enum metrics_req_fail */

/* Entry for a deployment, created on first use; NULL on ENOMEM. Stable pointer. */
metrics_dep *metrics_dep_get(const char *name, const char *group);
/* Iteration in creation order. */
int metrics_dep_count(void);
metrics_dep *metrics_dep_at(int i);

void metrics_http_response(int status);            /* one client response */
void metrics_failover(metrics_dep *d, const char *reason);
const char *metrics_class_name(enum metrics_class c);
/* The worker's breaker state of a deployment for rendering (breaker.h); NULL if none. */
const dep_state *metrics_dep_health(const metrics_dep *d);
/* Remaining rate-limit cooldown of st at now_ms, ms (0 = none). */
uint32_t metrics_cooldown_remaining(const dep_state *st, uint64_t now_ms);

/* Appends the Prometheus text exposition. Returns 0 or -ENOMEM. */
int metrics_render(buf_t *out, const metrics_gauges *g);
void metrics_free(void);

#endif
