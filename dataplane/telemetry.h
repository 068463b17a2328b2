/* telemetry.h — account stage, wire side: every second a Llmesh__Telemetry with the
 * cumulative per-deployment counters of metrics.h is pushed (NNG PUSH, non-blocking,
 * drops counted) to the URL the snapshot names. */
#ifndef LLMESH_TELEMETRY_H
#define LLMESH_TELEMETRY_H

#include <stdint.h>
#include <uv.h>

typedef struct telemetry_source {
  const char *region;                     /* --region */
  const char *listen;                     /* HOST:PORT served */
  uint64_t (*open_connections)(void *ud); /* current client connections */
  void *ud;                               /* for open_connections */
} telemetry_source;

int telemetry_start(uv_loop_t *loop, const telemetry_source *src);
/* (Re)dials when url differs from the current one; "" closes the socket. */
void telemetry_set_url(const char *url);
void telemetry_stop(void);                /* closes the timer and the socket */
const char *telemetry_worker_id(void);    /* random hex + pid, fixed for the process */

#endif
