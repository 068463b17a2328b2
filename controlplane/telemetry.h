/* telemetry.h — worker telemetry ingest and the stats llmesh-ctl shows.
 *
 * Workers PUSH a Llmesh__Telemetry every second with counters cumulative since the
 * worker started, so only the latest message per worker matters: a lost one costs
 * nothing, and a deployment's totals are the sum over workers' latest counters.
 *
 * For the circuit breakers each accepted message is also turned into a delta against
 * the message it replaces (per deployment) and accumulated until telemetry_take. A
 * worker restart (new pid, or a counter going down) makes the new counters the delta;
 * a worker first heard from with more than TELEM_FRESH_UPTIME_MS of uptime (control
 * restarted under it) gives a baseline only, so old failures never trip a circuit. */
#ifndef LLMESH_TELEMETRY_H
#define LLMESH_TELEMETRY_H

#include <stddef.h>
#include <stdint.h>

#include "breaker.h"
#include "config_import.h"
#include "llmesh.pb-c.h"

#define TELEM_MAX_WORKERS 4096       /* remembered at once; the least recently heard goes first */
#define TELEM_MAX_DEPLOYMENTS 4096   /* per message */
#define TELEM_MAX_WORKER_ID 128      /* bytes */
#define TELEM_FRESH_UPTIME_MS 10000  /* a new worker younger than this: its counters are a delta */

typedef struct telem_worker {
  Llmesh__Telemetry *last; /* latest accepted message (unpacked, owned) */
  uint64_t last_heard_ms;  /* monotonic ms when it arrived */
} telem_worker;

/* Deltas accumulated for one deployment since the last telemetry_take. */
typedef struct telem_acc {
  char *name;              /* deployment name (owned) */
  cbrk_delta d;            /* summed over workers and messages */
} telem_acc;

typedef struct telemetry {
  telem_worker *workers;   /* in order of first contact */
  size_t nworkers;         /* entries used */
  telem_acc *acc;          /* per deployment, in order of first report */
  size_t nacc;             /* entries used */
  uint64_t accepted;       /* messages kept */
  uint64_t rejected;       /* malformed messages */
  uint64_t stale;          /* out-of-order messages ignored */
} telemetry_t;

/* Storage behind a StatusReport's repeated fields; strings are borrowed from the
 * telemetry and the config, so pack the report before the next ingest. */
typedef struct telem_report {
  Llmesh__WorkerStatus *ws;      /* nworkers */
  Llmesh__WorkerStatus **wp;
  Llmesh__DeploymentStatus *ds;  /* ndeployments */
  Llmesh__DeploymentStatus **dp;
  Llmesh__DeploymentStats *tot;  /* ndeployments */
  uint64_t *buckets;             /* ndeployments × HIST_BUCKETS */
} telem_report;

/* Decodes and keeps one message. Returns 0, -EINVAL (malformed; why in *reason),
 * -ESTALE (older seq than the one kept) or -ENOMEM. */
int telemetry_ingest(telemetry_t *t, const void *data, size_t len, uint64_t now_ms,
                     const char **reason);
/* Moves the deltas accumulated for deployment name into *out (zeroed when none) and
 * resets them. */
void telemetry_take(telemetry_t *t, const char *name, cbrk_delta *out);
/* Fills r's workers and deployments (config order) from what was ingested. */
int telemetry_report(const telemetry_t *t, const cfg_config *c, uint64_t now_ms,
                     Llmesh__StatusReport *r, telem_report *st);
void telem_report_free(telem_report *st);
void telemetry_free(telemetry_t *t);

#endif
