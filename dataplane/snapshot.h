/* snapshot.h — the routing configuration a worker runs on, received from control.
 *
 * A SUB socket dials --control; messages reach the loop through nng_bridge (latest
 * wins). snapshot_apply() unpacks a Llmesh__Snapshot and, when its (epoch, version)
 * differs from the current one, builds an immutable refcounted `snapshot` and swaps it
 * in. Requests take a reference to the snapshot they started with and drop it when
 * they finish, so a swap never changes a request's view mid-flight. */
#ifndef LLMESH_SNAPSHOT_H
#define LLMESH_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "breaker.h"
#include "llmesh.pb-c.h"

struct curl_slist;
struct gcp_cred;
struct metrics_dep;
struct provider_ops;

typedef struct snap_dep {
  const char *name;               /* unique deployment name (what clients and metrics see) */
  const char *group;              /* model group alias */
  const char *provider;           /* provider family */
  const char *upstream_model;     /* model name sent upstream */
  const struct provider_ops *ops; /* adapter (provider.h); NULL = OpenAI passthrough */
  int unsupported;                /* no adapter for this family yet: never routed to */
  char *api_base;                 /* api_base without trailing '/'; never shown to clients */
  const char *api_key;            /* provider credential, "" when none (adapters) */
  const char *api_version;        /* provider API version, "" = adapter default */
  const char *aws_access_key_id;  /* bedrock SigV4 key id, "" = none */
  const char *aws_secret_access_key; /* its secret, "" = none */
  const char *aws_session_token;  /* STS session token, "" = none */
  const char *aws_region;         /* AWS region, "" = none */
  const char *gcp_project;        /* Vertex AI project, "" = from api_base */
  const char *gcp_location;       /* Vertex AI location, "" = adapter default */
  struct gcp_cred *gcp;           /* service account that mints its access tokens (gcp_auth.h),
                                   * one reference; NULL = none */
  int gcp_broken;                 /* has a key the worker cannot use: attempts fail as auth */
  char *url;                      /* passthrough: api_base + "/chat/completions", else NULL */
  char *embed_url;                /* passthrough: api_base + "/embeddings", else NULL */
  struct curl_slist *hdrs_json;   /* upstream headers for a non-stream request */
  struct curl_slist *hdrs_stream; /* the same plus Accept: text/event-stream */
  uint32_t weight;                /* weighted random choice, >= 1 */
  uint32_t timeout_ms;            /* total deadline of a non-stream attempt, ms */
  uint32_t stream_timeout_ms;     /* time to first byte of a stream, ms */
  uint32_t connect_timeout_ms;    /* TCP+TLS connect deadline, ms */
  int group_idx;                  /* index of its group in snapshot.groups */
  struct metrics_dep *stats;      /* counters (metrics.h), keyed by name, outlive snapshots */
  dep_state *st;                  /* breaker state (breaker.h), keyed by name, outlives snapshots */
  uint32_t order;                 /* priority tier: lowest with a usable deployment wins; 0 = last */
  uint32_t rpm;                   /* configured requests/minute (usage-based-routing), 0 = none */
  uint32_t tpm;                   /* configured tokens/minute (usage-based-routing), 0 = none */
  double input_cost;              /* USD per prompt token (cost-based-routing), 0 = unknown */
  double output_cost;             /* USD per completion token, 0 = unknown */
  int supports_prefill;           /* accepts a trailing assistant message as prefill */
} snap_dep;

typedef struct snap_group {
  const char *name;  /* alias clients ask for */
  int *deps;         /* indices into snapshot.deps, config order */
  int ndeps;         /* entries in deps */
  int *fallbacks;    /* indices into snapshot.groups, in order; unknown names dropped */
  int nfallbacks;    /* entries in fallbacks */
  int *cw_fallbacks; /* context_window_fallbacks: group indices, like fallbacks */
  int ncw_fallbacks; /* entries in cw_fallbacks */
  int *cp_fallbacks; /* content_policy_fallbacks: group indices, like fallbacks */
  int ncp_fallbacks; /* entries in cp_fallbacks */
  int strategy;      /* enum route_strategy (route.h): the group's, else the router's */
  int hedge;         /* 1: hedge a first token later than the deployment's p95 TTFT */
  int mid_stream_continue; /* 1: a committed stream that fails is continued elsewhere; 0: error */
} snap_group;

typedef struct snapshot {
  int refs;                       /* references: the current slot + requests in flight */
  uint64_t epoch;                 /* control-plane start, ms */
  uint64_t version;               /* content version */
  const char *telemetry_url;      /* where telemetry is pushed ("" = nowhere) */
  int has_master_key;             /* 0: auth is off */
  uint8_t master_key_sha256[32];  /* SHA-256 of the master key */
  uint32_t num_retries;           /* extra attempts within a group after the first */
  uint32_t timeout_ms;            /* default per-attempt deadline, ms */
  brk_config brk;                 /* worker breaker tunables (0 fields: breaker defaults) */
  uint32_t retry_backoff_ms;      /* first wait before re-trying a deployment, ms (doubles) */
  uint32_t retry_backoff_max_ms;  /* cap of that wait, ms */
  uint32_t total_timeout_ms;      /* per client request across all attempts, ms; 0 = none */
  uint32_t max_retry_after_ms;    /* longest provider reset a request waits for in-line, ms */
  snap_group *groups;             /* model groups */
  int ngroups;
  snap_dep *deps;                 /* deployments */
  int ndeps;
  int *gtab;                      /* open-addressing table name → group index, -1 empty */
  uint32_t gtab_mask;             /* table size - 1 */
  Llmesh__Snapshot *pb;           /* the unpacked message; strings above point into it */
} snapshot;

typedef void (*snapshot_applied_cb)(const snapshot *prev, const snapshot *cur, void *ud);

/* Builds a snapshot from an unpacked message and takes ownership of pb (freed with the
 * snapshot, or at once on failure). Returns NULL on ENOMEM. refs starts at 1. */
snapshot *snapshot_build(Llmesh__Snapshot *pb);
snapshot *snapshot_ref(snapshot *s);
void snapshot_unref(snapshot *s);
int snapshot_group_find(const snapshot *s, const char *name); /* index or -1 */

/* Current snapshot (no reference taken; NULL before the first one). */
snapshot *snapshot_current(void);
/* Unpacks and applies one message. Returns 0 applied, 1 same (epoch, version), <0 error.
 * A message with the same (epoch, version) but another health_version only updates the
 * breakers' control view (breaker_apply_health) and returns 1; a new snapshot applies
 * its health too. */
int snapshot_apply(const uint8_t *data, size_t len);

/* Starts the SUB side: dial url, deliver to the loop, call cb after every apply. */
int snapshot_start(uv_loop_t *loop, const char *url, snapshot_applied_cb cb, void *ud);
void snapshot_stop(void);       /* closes the socket and the bridge (run the loop afterwards) */
void snapshot_shutdown(void);   /* drops the current snapshot */

#endif
