/* metrics.c — counter store and the Prometheus rendering (see metrics.h). */
#include "metrics.h"

#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define DEP_BUCKETS 256 /* hash buckets; chains stay short for hundreds of deployments */

uint64_t metrics_client_requests;
uint64_t metrics_active_streams;
uint64_t metrics_telemetry_dropped;
uint64_t metrics_gcp_token_fetches[2];
uint64_t metrics_req_fail[MRF__COUNT];

static uint64_t http_codes[600];     /* responses by status code */
static metrics_dep *dep_table[DEP_BUCKETS];
static metrics_dep **dep_list;       /* creation order */
static int dep_n, dep_cap;

static const char *const class_names[MC__COUNT] = {
    "client_error", "rate_limited", "server_error", "timeout",
    "connect_error", "other_error", "cancelled", "auth_error"};
static const char *const req_fail_names[MRF__COUNT] = {
    "request_timeout", "no_healthy_deployment", "all_cooling", "upstream_auth_failed"};

const char *metrics_class_name(enum metrics_class c) {
  return (unsigned)c < MC__COUNT ? class_names[c] : "other_error";
}

static uint32_t hash_name(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

static void copy_str(char *dst, size_t cap, const char *src) {
  size_t n = strlen(src);
  if (n >= cap) n = cap - 1;
  memcpy(dst, src, n);
  dst[n] = '\0';
}

metrics_dep *metrics_dep_get(const char *name, const char *group) {
  uint32_t b = hash_name(name) & (DEP_BUCKETS - 1);
  for (metrics_dep *d = dep_table[b]; d; d = d->hnext)
    if (strncmp(d->name, name, sizeof d->name - 1) == 0) {
      if (group) copy_str(d->group, sizeof d->group, group);
      return d;
    }
  if (dep_n == dep_cap) {
    int cap = dep_cap ? dep_cap * 2 : 16;
    metrics_dep **l = realloc(dep_list, (size_t)cap * sizeof *l);
    if (!l) return NULL;
    dep_list = l;
    dep_cap = cap;
  }
  metrics_dep *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  copy_str(d->name, sizeof d->name, name);
  copy_str(d->group, sizeof d->group, group ? group : "");
  d->hnext = dep_table[b];
  dep_table[b] = d;
  dep_list[dep_n++] = d;
  return d;
}

int metrics_dep_count(void) { return dep_n; }

const dep_state *metrics_dep_health(const metrics_dep *d) { return breaker_get(d->name); }

uint32_t metrics_cooldown_remaining(const dep_state *st, uint64_t now_ms) {
  if (!st || st->cooldown_until_ms <= now_ms) return 0;
  uint64_t r = st->cooldown_until_ms - now_ms;
  return r > UINT32_MAX ? UINT32_MAX : (uint32_t)r;
}
metrics_dep *metrics_dep_at(int i) { return dep_list[i]; }

void metrics_http_response(int status) {
  metrics_client_requests++;
  if (status >= 100 && status < 600) http_codes[status]++;
}

void metrics_failover(metrics_dep *d, const char *reason) {
  d->failovers++;
  for (int i = 0; i < d->nreasons; i++)
    if (strcmp(d->reasons[i].reason, reason) == 0) { d->reasons[i].n++; return; }
  int i = d->nreasons < METRICS_MAX_REASONS ? d->nreasons++ : METRICS_MAX_REASONS - 1;
  if (i == METRICS_MAX_REASONS - 1) reason = "other"; /* the last slot collects the rest */
  if (strcmp(d->reasons[i].reason, reason) != 0) {
    copy_str(d->reasons[i].reason, sizeof d->reasons[i].reason, reason);
    d->reasons[i].n = 0;
  }
  d->reasons[i].n++;
}

/* Label value escaping per the exposition format: backslash, quote, newline. */
static int put_label(buf_t *out, const char *s) {
  for (const char *p = s; *p; p++) {
    const char *e = NULL;
    if (*p == '\\') e = "\\\\";
    else if (*p == '"') e = "\\\"";
    else if (*p == '\n') e = "\\n";
    if (e ? buf_append(out, e, 2) : buf_append(out, p, 1)) return -ENOMEM;
  }
  return 0;
}

/* One sample `NAME{deployment="D"[,LABEL="V"]} VALUE` (label may be NULL). */
static int put_dep_sample(buf_t *o, const char *name, const metrics_dep *d, const char *label,
                          const char *value, uint64_t v) {
  int rc = buf_printf(o, "%s{deployment=\"", name);
  rc |= put_label(o, d->name);
  if (label) {
    rc |= buf_printf(o, "\",%s=\"", label);
    rc |= put_label(o, value);
  }
  rc |= buf_printf(o, "\"} %llu\n", (unsigned long long)v);
  return rc;
}

/* Local circuit as rendered: an OPEN circuit past its open period is half-open (the
 * breaker moves it lazily, on the next admit). 0 closed, 1 open, 2 half-open. */
static uint64_t local_circuit(const dep_state *st, uint64_t now_ms) {
  if (st->local == BRK_OPEN && now_ms >= st->open_until_ms) return BRK_HALF_OPEN;
  return (uint64_t)st->local;
}

/* What the worker's breakers know per deployment (breaker.h), and what routing made of it. */
static int render_resilience(buf_t *o, uint64_t now_ms) {
  int rc = 0;
  rc |= buf_printf(o, "# HELP llmesh_circuit_state Circuit of a deployment: 0 closed, 1 open, "
                      "2 half-open, 3 drained; level local = this worker's breaker, control = "
                      "the control plane's.\n# TYPE llmesh_circuit_state gauge\n");
  for (int i = 0; i < dep_n; i++) {
    const dep_state *st = metrics_dep_health(dep_list[i]);
    if (!st) continue;
    rc |= put_dep_sample(o, "llmesh_circuit_state", dep_list[i], "level", "local",
                         local_circuit(st, now_ms));
    rc |= put_dep_sample(o, "llmesh_circuit_state", dep_list[i], "level", "control",
                         (uint64_t)st->ctl_state);
  }
  static const struct {
    const char *name, *help, *type;
    int field;
  } gauges[] = {
      {"llmesh_deployment_in_flight", "Attempts running now on this worker.", "gauge", 0},
      {"llmesh_local_trips_total", "Times this worker's local circuit opened.", "counter", 1},
      {"llmesh_retries_total", "Retries and failovers granted onto the deployment.", "counter", 2},
      {"llmesh_retry_budget_exhausted_total", "Retries refused by the deployment's retry budget.",
       "counter", 3},
      {"llmesh_cooldowns_total", "Rate-limit cooldowns started (429 / overloaded).", "counter", 4},
      {"llmesh_cooldown_remaining_ms", "Remaining rate-limit cooldown, ms (0 = none).", "gauge", 5},
  };
  for (size_t k = 0; k < sizeof gauges / sizeof gauges[0]; k++) {
    rc |= buf_printf(o, "# HELP %s %s\n# TYPE %s %s\n", gauges[k].name, gauges[k].help,
                     gauges[k].name, gauges[k].type);
    for (int i = 0; i < dep_n; i++) {
      const dep_state *st = metrics_dep_health(dep_list[i]);
      if (!st) continue;
      uint64_t v = gauges[k].field == 0   ? st->in_flight
                   : gauges[k].field == 1 ? st->trips
                   : gauges[k].field == 2 ? st->retries
                   : gauges[k].field == 3 ? st->budget_exhausted
                   : gauges[k].field == 4 ? st->cooldowns
                                          : metrics_cooldown_remaining(st, now_ms);
      rc |= put_dep_sample(o, gauges[k].name, dep_list[i], NULL, NULL, v);
    }
  }
  rc |= buf_printf(o, "# HELP llmesh_route_refusals_total Requests whose routing skipped the "
                      "deployment, by reason.\n# TYPE llmesh_route_refusals_total counter\n");
  for (int i = 0; i < dep_n; i++)
    for (int r = 1; r < BR__COUNT; r++)
      if (dep_list[i]->refusals[r])
        rc |= put_dep_sample(o, "llmesh_route_refusals_total", dep_list[i], "reason",
                             breaker_refusal_name((brk_refusal)r), dep_list[i]->refusals[r]);
  static const struct {
    const char *name, *help;
    size_t off;
  } counters[] = {
      {"llmesh_retry_backoffs_total", "Re-tries onto the deployment that waited a backoff first.",
       offsetof(metrics_dep, backoffs)},
      {"llmesh_retry_after_waits_total", "Requests that waited in-line for its Retry-After.",
       offsetof(metrics_dep, retry_after_waits)},
      {"llmesh_hedges_total", "Hedged attempts started on the deployment.",
       offsetof(metrics_dep, hedges)},
      {"llmesh_midstream_continued_total", "Streams continued on the deployment after another died.",
       offsetof(metrics_dep, midstream_continued)},
  };
  for (size_t k = 0; k < sizeof counters / sizeof counters[0]; k++) {
    rc |= buf_printf(o, "# HELP %s %s\n# TYPE %s counter\n", counters[k].name, counters[k].help,
                     counters[k].name);
    for (int i = 0; i < dep_n; i++) {
      uint64_t v;
      memcpy(&v, (const char *)dep_list[i] + counters[k].off, sizeof v);
      rc |= put_dep_sample(o, counters[k].name, dep_list[i], NULL, NULL, v);
    }
  }
  rc |= buf_printf(o, "# HELP llmesh_midstream_continuations_total Continuation attempts of a "
                      "dead stream on the deployment, by result (ok: it took over the stream; "
                      "failed: it failed before writing anything).\n"
                      "# TYPE llmesh_midstream_continuations_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    rc |= put_dep_sample(o, "llmesh_midstream_continuations_total", dep_list[i], "result", "ok",
                         dep_list[i]->midstream_continued);
    rc |= put_dep_sample(o, "llmesh_midstream_continuations_total", dep_list[i], "result",
                         "failed", dep_list[i]->midstream_failed);
  }
  rc |= buf_printf(o, "# HELP llmesh_request_failures_total Valid requests that ended without an "
                      "upstream answer, by reason.\n# TYPE llmesh_request_failures_total counter\n");
  for (int r = 0; r < MRF__COUNT; r++)
    rc |= buf_printf(o, "llmesh_request_failures_total{reason=\"%s\"} %llu\n", req_fail_names[r],
                     (unsigned long long)metrics_req_fail[r]);
  return rc;
}

int metrics_render(buf_t *o, const metrics_gauges *g) {
  int rc = 0;
  rc |= buf_printf(o, "# HELP llmesh_http_requests_total Client responses by status code.\n"
                      "# TYPE llmesh_http_requests_total counter\n");
  for (int c = 100; c < 600; c++)
    if (http_codes[c])
      rc |= buf_printf(o, "llmesh_http_requests_total{code=\"%d\"} %llu\n", c,
                       (unsigned long long)http_codes[c]);

  rc |= buf_printf(o, "# HELP llmesh_upstream_requests_total Attempts sent upstream.\n"
                      "# TYPE llmesh_upstream_requests_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    rc |= buf_printf(o, "llmesh_upstream_requests_total{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\",model_group=\"");
    rc |= put_label(o, d->group);
    rc |= buf_printf(o, "\"} %llu\n", (unsigned long long)d->requests);
  }

  rc |= buf_printf(o, "# HELP llmesh_upstream_success_total Attempts answered completely with 2xx.\n"
                      "# TYPE llmesh_upstream_success_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    rc |= buf_printf(o, "llmesh_upstream_success_total{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\"} %llu\n", (unsigned long long)d->success);
  }

  rc |= buf_printf(o, "# HELP llmesh_upstream_errors_total Failed attempts by class.\n"
                      "# TYPE llmesh_upstream_errors_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    for (int c = 0; c < MC__COUNT; c++) {
      if (!d->errors[c]) continue;
      rc |= buf_printf(o, "llmesh_upstream_errors_total{deployment=\"");
      rc |= put_label(o, d->name);
      rc |= buf_printf(o, "\",class=\"%s\"} %llu\n", class_names[c],
                       (unsigned long long)d->errors[c]);
    }
  }

  rc |= buf_printf(o, "# HELP llmesh_upstream_latency_seconds Time to upstream response headers.\n"
                      "# TYPE llmesh_upstream_latency_seconds histogram\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    uint64_t cum = 0;
    for (int b = 0; b < HIST_BUCKETS; b++) {
      cum += d->latency.counts[b];
      rc |= buf_printf(o, "llmesh_upstream_latency_seconds_bucket{deployment=\"");
      rc |= put_label(o, d->name);
      if (b < HIST_BUCKETS - 1)
        rc |= buf_printf(o, "\",le=\"%g\"} %llu\n", hist_bounds_ms[b] / 1000.0,
                         (unsigned long long)cum);
      else
        rc |= buf_printf(o, "\",le=\"+Inf\"} %llu\n", (unsigned long long)cum);
    }
    rc |= buf_printf(o, "llmesh_upstream_latency_seconds_sum{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\"} %.6f\n", d->latency.sum_ms / 1000.0);
    rc |= buf_printf(o, "llmesh_upstream_latency_seconds_count{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\"} %llu\n", (unsigned long long)d->latency.total);
  }

  rc |= buf_printf(o, "# HELP llmesh_failovers_total Attempts that led to trying another deployment.\n"
                      "# TYPE llmesh_failovers_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    for (int r = 0; r < d->nreasons; r++) {
      rc |= buf_printf(o, "llmesh_failovers_total{deployment=\"");
      rc |= put_label(o, d->name);
      rc |= buf_printf(o, "\",reason=\"");
      rc |= put_label(o, d->reasons[r].reason);
      rc |= buf_printf(o, "\"} %llu\n", (unsigned long long)d->reasons[r].n);
    }
  }

  rc |= buf_printf(o, "# HELP llmesh_fields_dropped_total Attempts whose adapter dropped request "
                      "fields the provider cannot honour.\n"
                      "# TYPE llmesh_fields_dropped_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    if (!d->fields_dropped) continue;
    rc |= buf_printf(o, "llmesh_fields_dropped_total{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\"} %llu\n", (unsigned long long)d->fields_dropped);
  }

  rc |= buf_printf(o, "# HELP llmesh_tokens_total Tokens reported by upstream usage.\n"
                      "# TYPE llmesh_tokens_total counter\n");
  for (int i = 0; i < dep_n; i++) {
    metrics_dep *d = dep_list[i];
    rc |= buf_printf(o, "llmesh_tokens_total{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\",type=\"prompt\"} %llu\n", (unsigned long long)d->prompt_tokens);
    rc |= buf_printf(o, "llmesh_tokens_total{deployment=\"");
    rc |= put_label(o, d->name);
    rc |= buf_printf(o, "\",type=\"completion\"} %llu\n", (unsigned long long)d->completion_tokens);
  }

  rc |= render_resilience(o, g->now_ms);
  rc |= buf_printf(o,
      "# HELP llmesh_snapshot_version Version of the snapshot this worker runs.\n"
      "# TYPE llmesh_snapshot_version gauge\nllmesh_snapshot_version %llu\n"
      "# HELP llmesh_open_connections Open client connections.\n"
      "# TYPE llmesh_open_connections gauge\nllmesh_open_connections %llu\n"
      "# HELP llmesh_active_streams Streams being relayed.\n"
      "# TYPE llmesh_active_streams gauge\nllmesh_active_streams %llu\n"
      "# HELP llmesh_telemetry_dropped_total Telemetry messages that could not be sent.\n"
      "# TYPE llmesh_telemetry_dropped_total counter\nllmesh_telemetry_dropped_total %llu\n",
      (unsigned long long)g->snapshot_version, (unsigned long long)g->open_connections,
      (unsigned long long)metrics_active_streams, (unsigned long long)metrics_telemetry_dropped);
  rc |= buf_printf(o,
      "# HELP llmesh_gcp_token_fetches_total Google service-account access-token fetches by result.\n"
      "# TYPE llmesh_gcp_token_fetches_total counter\n"
      "llmesh_gcp_token_fetches_total{result=\"ok\"} %llu\n"
      "llmesh_gcp_token_fetches_total{result=\"error\"} %llu\n",
      (unsigned long long)metrics_gcp_token_fetches[1], (unsigned long long)metrics_gcp_token_fetches[0]);
  return rc ? -ENOMEM : 0;
}

void metrics_free(void) {
  for (int i = 0; i < dep_n; i++) free(dep_list[i]);
  free(dep_list);
  dep_list = NULL;
  dep_n = dep_cap = 0;
  memset(dep_table, 0, sizeof dep_table);
  memset(http_codes, 0, sizeof http_codes);
  memset(metrics_req_fail, 0, sizeof metrics_req_fail);
}
