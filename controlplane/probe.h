/* probe.h — active health probes: one small chat completion per deployment every
 * probe_interval_ms (±10 % jitter, first ones staggered over the second half of an
 * interval), built through the provider adapter or, for the OpenAI family, POSTed to
 * api_base + "/chat/completions" with a Bearer key. The request is one user message,
 * cfg_router.probe_prompt ("ping"), with max_tokens cfg_router.probe_max_tokens (1).
 * Deployments with model_info.health_check: false are never probed.
 *
 * libcurl multi driven by the control plane's own libuv loop (common/curl_uv.c, as the
 * worker's): nothing ever blocks the loop. Results arrive through the done callback on the
 * loop thread. 2xx = ok; 429/529 = alive (ok, error "rate_limited");
 * 401/403 = credential failed; 5xx, timeouts, connect errors and garbage = failed;
 * other 4xx are recorded but say nothing about health. */
#ifndef LLMESH_PROBE_H
#define LLMESH_PROBE_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "breaker.h"
#include "config_import.h"

#define PROBE_BODY_MAX (64 * 1024)  /* response bytes kept for classification */
#define PROBE_JITTER_PERCENT 10     /* ± on every interval */

typedef struct probe_status {
  int ran;                      /* a probe finished at least once */
  uint64_t at_ms;               /* monotonic ms when the last one finished */
  int ok;                       /* last result healthy (2xx or 429) */
  uint32_t latency_ms;          /* start → answer or failure */
  int http_status;              /* 0 = no HTTP answer */
  char error[48];               /* "" when ok, else timeout, connect, http_500, rate_limited, ... */
  uint32_t consecutive_failures;/* failed probes in a row (CBRK_PROBE_FAIL only) */
  cbrk_probe_result kind;       /* how the breaker counts it */
} probe_status;

typedef struct probe_set probe_set;

/* A probe of deployment idx (config order) finished; st is its new status. */
typedef void (*probe_done_cb)(size_t idx, const probe_status *st, void *ud);

/* Starts probing every deployment of c (borrowed; must outlive the set) that can be
 * probed; the others (health_check off, Vertex, no api_base) are logged once
 * (probe_skipped with the reason) and never probed. interval_ms /
 * timeout_ms: 0 = CFG_DEFAULT_PROBE_*. Returns 0 or -1. */
int probe_start(probe_set **out, uv_loop_t *loop, const cfg_config *c, uint32_t interval_ms,
                uint32_t timeout_ms, probe_done_cb cb, void *ud);
/* Probes idx now unless one is running (a circuit just turned half-open). */
void probe_now(probe_set *ps, size_t idx);
/* Pauses (drained) or resumes probing idx. */
void probe_pause(probe_set *ps, size_t idx, int paused);
/* Last result of idx, NULL when none ran (or ps is NULL). */
const probe_status *probe_last(const probe_set *ps, size_t idx);
/* Cancels running probes and closes every handle; run the loop afterwards. NULL-safe. */
void probe_stop(probe_set *ps);

#endif
