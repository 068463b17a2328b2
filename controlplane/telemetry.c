/* telemetry.c — latest-per-worker telemetry and summed deployment stats. */
#include "telemetry.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "histogram.h"

static const char *telem_validate(const Llmesh__Telemetry *m) {
  size_t idlen = strlen(m->worker_id);
  if (idlen == 0) return "empty worker_id";
  if (idlen > TELEM_MAX_WORKER_ID) return "worker_id too long";
  if (m->n_deployments > TELEM_MAX_DEPLOYMENTS) return "too many deployments";
  for (size_t i = 0; i < m->n_deployments; i++) {
    const Llmesh__DeploymentStats *d = m->deployments[i];
    if (!d->deployment[0]) return "deployment stats without a name";
    if (d->n_latency_buckets != 0 && d->n_latency_buckets != HIST_BUCKETS)
      return "latency_buckets has the wrong bucket count";
  }
  return NULL;
}

static telem_worker *telem_find(telemetry_t *t, const char *id) {
  for (size_t i = 0; i < t->nworkers; i++)
    if (!strcmp(t->workers[i].last->worker_id, id)) return &t->workers[i];
  return NULL;
}

/* A new slot; when full, the least recently heard worker is forgotten. */
static telem_worker *telem_slot(telemetry_t *t) {
  if (t->nworkers == TELEM_MAX_WORKERS) {
    size_t old = 0;
    for (size_t i = 1; i < t->nworkers; i++)
      if (t->workers[i].last_heard_ms < t->workers[old].last_heard_ms) old = i;
    llmesh__telemetry__free_unpacked(t->workers[old].last, NULL);
    memmove(&t->workers[old], &t->workers[old + 1], (t->nworkers - old - 1) * sizeof *t->workers);
    t->nworkers--;
  }
  telem_worker *w = realloc(t->workers, (t->nworkers + 1) * sizeof *w);
  if (!w) return NULL;
  t->workers = w;
  return &t->workers[t->nworkers++];
}

/* ------------------------------------------------------------------ deltas */

static telem_acc *telem_acc_get(telemetry_t *t, const char *name) {
  for (size_t i = 0; i < t->nacc; i++)
    if (!strcmp(t->acc[i].name, name)) return &t->acc[i];
  telem_acc *a = realloc(t->acc, (t->nacc + 1) * sizeof *a);
  if (!a) return NULL;
  t->acc = a;
  a = &t->acc[t->nacc];
  memset(a, 0, sizeof *a);
  if (!(a->name = strdup(name))) return NULL;
  t->nacc++;
  return a;
}

static const Llmesh__DeploymentStats *telem_find_dep(const Llmesh__Telemetry *m, const char *name) {
  for (size_t i = 0; m && i < m->n_deployments; i++)
    if (!strcmp(m->deployments[i]->deployment, name)) return m->deployments[i];
  return NULL;
}

#define TELEM_COUNTERS(X)                                                                     \
  X(requests) X(success) X(client_error) X(rate_limited) X(server_error) X(timeout)          \
  X(connect_error) X(other_error) X(cancelled) X(auth_error) X(prompt_tokens) X(completion_tokens)

/* Did any counter go down between old and m? Then the worker restarted. */
static int telem_went_down(const Llmesh__Telemetry *old, const Llmesh__Telemetry *m) {
  for (size_t i = 0; i < m->n_deployments; i++) {
    const Llmesh__DeploymentStats *n = m->deployments[i], *o = telem_find_dep(old, n->deployment);
    if (!o) continue;
#define X(f) if (n->f < o->f) return 1;
    TELEM_COUNTERS(X)
#undef X
    for (size_t b = 0; b < n->n_latency_buckets && b < o->n_latency_buckets; b++)
      if (n->latency_buckets[b] < o->latency_buckets[b]) return 1;
  }
  return 0;
}

/* Adds n − o (o NULL: n whole) to a; gauges take the largest value. */
static void telem_add_delta(telem_acc *a, const Llmesh__DeploymentStats *n, const Llmesh__DeploymentStats *o) {
#define X(f) a->d.f += n->f - (o ? o->f : 0);
  TELEM_COUNTERS(X)
#undef X
  for (size_t b = 0; b < n->n_latency_buckets && b < HIST_BUCKETS; b++)
    a->d.latency[b] += n->latency_buckets[b] - (o && b < o->n_latency_buckets ? o->latency_buckets[b] : 0);
  if (n->cooldown_remaining_ms > a->d.cooldown_remaining_ms) a->d.cooldown_remaining_ms = n->cooldown_remaining_ms;
}

/* old: the message m replaces (NULL for a worker not heard from before). */
static void telem_deltas(telemetry_t *t, const Llmesh__Telemetry *old, const Llmesh__Telemetry *m) {
  int whole = old ? (old->pid != m->pid || telem_went_down(old, m)) : m->uptime_ms <= TELEM_FRESH_UPTIME_MS;
  int baseline = !old && !whole; /* control restarted under a running worker */
  for (size_t i = 0; i < m->n_deployments; i++) {
    const Llmesh__DeploymentStats *n = m->deployments[i];
    telem_acc *a = telem_acc_get(t, n->deployment);
    if (!a) continue;
    if (baseline) {
      if (n->cooldown_remaining_ms > a->d.cooldown_remaining_ms) a->d.cooldown_remaining_ms = n->cooldown_remaining_ms;
      continue;
    }
    telem_add_delta(a, n, whole ? NULL : telem_find_dep(old, n->deployment));
  }
}

void telemetry_take(telemetry_t *t, const char *name, cbrk_delta *out) {
  memset(out, 0, sizeof *out);
  for (size_t i = 0; i < t->nacc; i++) {
    if (strcmp(t->acc[i].name, name) != 0) continue;
    *out = t->acc[i].d;
    memset(&t->acc[i].d, 0, sizeof t->acc[i].d);
    return;
  }
}

/* ------------------------------------------------------------------ ingest */

int telemetry_ingest(telemetry_t *t, const void *data, size_t len, uint64_t now_ms,
                     const char **reason) {
  Llmesh__Telemetry *m = llmesh__telemetry__unpack(NULL, len, data);
  *reason = m ? telem_validate(m) : "not a Telemetry message";
  if (*reason) {
    if (m) llmesh__telemetry__free_unpacked(m, NULL);
    t->rejected++;
    return -EINVAL;
  }
  telem_worker *w = telem_find(t, m->worker_id);
  if (w && m->pid == w->last->pid && m->seq < w->last->seq) {
    *reason = "older seq than the message kept";
    llmesh__telemetry__free_unpacked(m, NULL);
    t->stale++;
    return -ESTALE;
  }
  telem_deltas(t, w ? w->last : NULL, m);
  if (w) {
    llmesh__telemetry__free_unpacked(w->last, NULL);
  } else if (!(w = telem_slot(t))) {
    llmesh__telemetry__free_unpacked(m, NULL);
    return -ENOMEM;
  }
  w->last = m;
  w->last_heard_ms = now_ms;
  t->accepted++;
  return 0;
}

static void telem_fill_worker(Llmesh__WorkerStatus *ws, const telem_worker *w, uint64_t now_ms) {
  const Llmesh__Telemetry *m = w->last;
  llmesh__worker_status__init(ws);
  ws->worker_id = m->worker_id;
  ws->region = m->region;
  ws->listen = m->listen;
  ws->last_heard_ms_ago = now_ms > w->last_heard_ms ? now_ms - w->last_heard_ms : 0;
  ws->snapshot_epoch = m->snapshot_epoch;
  ws->snapshot_version = m->snapshot_version;
  ws->client_requests = m->client_requests;
  ws->open_connections = m->open_connections;
  ws->rss_bytes = m->rss_bytes;
  ws->pid = m->pid;
}

static void telem_add_stats(Llmesh__DeploymentStats *tot, const Llmesh__DeploymentStats *s) {
  tot->requests += s->requests;
  tot->success += s->success;
  tot->client_error += s->client_error;
  tot->rate_limited += s->rate_limited;
  tot->server_error += s->server_error;
  tot->timeout += s->timeout;
  tot->connect_error += s->connect_error;
  tot->other_error += s->other_error;
  tot->cancelled += s->cancelled;
  tot->prompt_tokens += s->prompt_tokens;
  tot->completion_tokens += s->completion_tokens;
  tot->failovers += s->failovers;
  tot->auth_error += s->auth_error;
  tot->in_flight += s->in_flight;
  tot->local_trips += s->local_trips;
  tot->retries += s->retries;
  tot->retry_budget_exhausted += s->retry_budget_exhausted;
  tot->cooldowns += s->cooldowns;
  tot->hedges += s->hedges;
  tot->midstream_continued += s->midstream_continued;
  if (s->cooldown_remaining_ms > tot->cooldown_remaining_ms) tot->cooldown_remaining_ms = s->cooldown_remaining_ms;
  for (size_t b = 0; b < s->n_latency_buckets; b++) tot->latency_buckets[b] += s->latency_buckets[b];
}

static void telem_fill_deployment(const telemetry_t *t, const cfg_deployment *d,
                                  Llmesh__DeploymentStatus *ds, Llmesh__DeploymentStats *tot,
                                  uint64_t *buckets) {
  llmesh__deployment_status__init(ds);
  llmesh__deployment_stats__init(tot);
  ds->name = d->name;
  ds->model_group = d->model_group;
  ds->provider = d->provider;
  ds->upstream_model = d->upstream_model;
  ds->weight = d->weight;
  tot->deployment = d->name;
  tot->latency_buckets = buckets;
  tot->n_latency_buckets = HIST_BUCKETS;
  for (size_t w = 0; w < t->nworkers; w++) {
    const Llmesh__Telemetry *m = t->workers[w].last;
    for (size_t i = 0; i < m->n_deployments; i++)
      if (!strcmp(m->deployments[i]->deployment, d->name)) telem_add_stats(tot, m->deployments[i]);
  }
  ds->totals = tot;
  ds->p50_ms = hist_quantile(buckets, HIST_BUCKETS, 0.50);
  ds->p99_ms = hist_quantile(buckets, HIST_BUCKETS, 0.99);
}

int telemetry_report(const telemetry_t *t, const cfg_config *c, uint64_t now_ms,
                     Llmesh__StatusReport *r, telem_report *st) {
  size_t nw = t->nworkers, nd = c->ndeployments;
  memset(st, 0, sizeof *st);
  st->ws = calloc(nw + 1, sizeof *st->ws);
  st->wp = calloc(nw + 1, sizeof *st->wp);
  st->ds = calloc(nd + 1, sizeof *st->ds);
  st->dp = calloc(nd + 1, sizeof *st->dp);
  st->tot = calloc(nd + 1, sizeof *st->tot);
  st->buckets = calloc((nd + 1) * HIST_BUCKETS, sizeof *st->buckets);
  if (!st->ws || !st->wp || !st->ds || !st->dp || !st->tot || !st->buckets) {
    telem_report_free(st);
    return -ENOMEM;
  }
  for (size_t i = 0; i < nw; i++) {
    telem_fill_worker(&st->ws[i], &t->workers[i], now_ms);
    st->wp[i] = &st->ws[i];
  }
  for (size_t i = 0; i < nd; i++) {
    telem_fill_deployment(t, &c->deployments[i], &st->ds[i], &st->tot[i], st->buckets + i * HIST_BUCKETS);
    st->dp[i] = &st->ds[i];
  }
  r->n_workers = nw;
  r->workers = st->wp;
  r->n_deployments = nd;
  r->deployments = st->dp;
  return 0;
}

void telem_report_free(telem_report *st) {
  free(st->ws);
  free(st->wp);
  free(st->ds);
  free(st->dp);
  free(st->tot);
  free(st->buckets);
  memset(st, 0, sizeof *st);
}

void telemetry_free(telemetry_t *t) {
  for (size_t i = 0; i < t->nworkers; i++) llmesh__telemetry__free_unpacked(t->workers[i].last, NULL);
  free(t->workers);
  for (size_t i = 0; i < t->nacc; i++) free(t->acc[i].name);
  free(t->acc);
  memset(t, 0, sizeof *t);
}
