/* snapshot.h — stored config rows → Llmesh__Snapshot → NNG PUB.
 *
 * Workers apply a snapshot when (epoch, version) differs from the one they run, so the
 * control plane republishes the same content periodically: PUB has no replay, and a
 * late joiner converges within one period. */
#ifndef LLMESH_SNAPSHOT_H
#define LLMESH_SNAPSHOT_H

#include <nng/nng.h>
#include <stddef.h>
#include <stdint.h>

#include "config_import.h"
#include "llmesh.pb-c.h"

typedef struct snap_meta {
  uint64_t epoch;            /* control-plane start, wall ms */
  uint64_t version;          /* content version from the store */
  const char *telemetry_url; /* announced to workers */
  uint64_t health_version;   /* bumps on every health change (controlplane/breaker.c) */
  Llmesh__DeploymentHealth **health; /* borrowed: circuit states and weights, nhealth entries */
  size_t nhealth;
} snap_meta;

/* Whether d accepts an assistant prefill (Deployment.supports_prefill): the configured
 * model_info.supports_assistant_prefill, else inferred from the provider (1 or 0). */
int snap_supports_prefill(const cfg_deployment *d);
/* Packs the snapshot of c into a new NNG message. Returns 0 or a negative errno. */
int snap_build_msg(const cfg_config *c, const snap_meta *m, uint64_t published_at_ms,
                   nng_msg **out);
/* Builds and sends without blocking; a full or peerless PUB simply drops. Returns 0 or
 * a negative errno / -NNG error. */
int snap_publish(nng_socket pub, const cfg_config *c, const snap_meta *m);

#endif
