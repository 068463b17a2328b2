/* telemetry.c — periodic Telemetry push (see telemetry.h). */
#include "telemetry.h"

#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <openssl/rand.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "feed_tls.h"
#include "histogram.h"
#include "llmesh.pb-c.h"
#include "log.h"
#include "metrics.h"
#include "snapshot.h"
#include "util.h"

#define TELEMETRY_PERIOD_MS 1000

static uv_timer_t timer;
static int timer_open;
static nng_socket push = NNG_SOCKET_INITIALIZER;
static char url[512];
static char worker_id[48];
static telemetry_source source;
static uint64_t seq, start_ms;

const char *telemetry_worker_id(void) {
  if (!worker_id[0]) {
    unsigned char r[6];
    if (RAND_bytes(r, sizeof r) != 1) {
      uint64_t t = util_now_us();
      memcpy(r, &t, sizeof r);
    }
    snprintf(worker_id, sizeof worker_id, "%02x%02x%02x%02x%02x%02x-%d", r[0], r[1], r[2], r[3],
             r[4], r[5], (int)getpid());
  }
  return worker_id;
}

void telemetry_set_url(const char *u) {
  if (!u) u = "";
  if (strcmp(u, url) == 0) return;
  if (nng_socket_id(push) > 0) nng_close(push);
  push = (nng_socket)NNG_SOCKET_INITIALIZER;
  snprintf(url, sizeof url, "%s", u);
  if (!*u) return;
  nng_dialer d;
  int rv;
  if ((rv = nng_push0_open(&push)) != 0) goto fail;
  if ((rv = nng_dialer_create(&d, push, u)) != 0 ||
      (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 100)) != 0 ||
      (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
      (rv = feed_tls_dialer(d, u)) != 0 ||
      (rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
    nng_close(push);
    push = (nng_socket)NNG_SOCKET_INITIALIZER;
    goto fail;
  }
  LOG_INFO(NULL, "telemetry_dial", LF_S("url", u));
  return;
fail:
  LOG_ERROR(NULL, "telemetry_dial_failed", LF_S("url", u), LF_S("error", nng_strerror(rv)));
  url[0] = '\0'; /* retried at the next snapshot */
}

static void send_once(void) {
  int n = metrics_dep_count();
  Llmesh__Telemetry t = LLMESH__TELEMETRY__INIT;
  Llmesh__DeploymentStats *stats = calloc((size_t)n + 1, sizeof *stats);
  Llmesh__DeploymentStats **ptrs = calloc((size_t)n + 1, sizeof *ptrs);
  uint64_t *buckets = calloc((size_t)n * HIST_BUCKETS + 1, sizeof *buckets);
  snapshot *s = snapshot_current();
  nng_msg *m = NULL;
  if (!stats || !ptrs || !buckets) goto drop;
  t.worker_id = (char *)telemetry_worker_id();
  t.region = (char *)source.region;
  t.listen = (char *)source.listen;
  t.snapshot_epoch = s ? s->epoch : 0;
  t.snapshot_version = s ? s->version : 0;
  t.seq = ++seq;
  t.uptime_ms = util_now_ms() - start_ms;
  t.client_requests = metrics_client_requests;
  t.open_connections = source.open_connections ? source.open_connections(source.ud) : 0;
  t.rss_bytes = util_rss_bytes();
  t.pid = (int32_t)getpid();
  for (int i = 0; i < n; i++) {
    const metrics_dep *d = metrics_dep_at(i);
    Llmesh__DeploymentStats *o = &stats[i];
    llmesh__deployment_stats__init(o);
    o->deployment = (char *)d->name;
    o->requests = d->requests;
    o->success = d->success;
    o->client_error = d->errors[MC_CLIENT_ERROR];
    o->rate_limited = d->errors[MC_RATE_LIMITED];
    o->server_error = d->errors[MC_SERVER_ERROR];
    o->timeout = d->errors[MC_TIMEOUT];
    o->connect_error = d->errors[MC_CONNECT_ERROR];
    o->other_error = d->errors[MC_OTHER_ERROR];
    o->cancelled = d->errors[MC_CANCELLED];
    o->prompt_tokens = d->prompt_tokens;
    o->completion_tokens = d->completion_tokens;
    o->failovers = d->failovers;
    o->auth_error = d->errors[MC_AUTH_ERROR];
    o->hedges = d->hedges;
    o->midstream_continued = d->midstream_continued;
    const dep_state *st = metrics_dep_health(d);
    if (st) { /* the worker's breaker view (breaker.h) */
      o->in_flight = st->in_flight;
      o->local_trips = st->trips;
      o->retries = st->retries;
      o->retry_budget_exhausted = st->budget_exhausted;
      o->cooldowns = st->cooldowns;
      o->cooldown_remaining_ms = metrics_cooldown_remaining(st, uv_now(timer.loop));
    }
    o->latency_buckets = buckets + (size_t)i * HIST_BUCKETS;
    memcpy(o->latency_buckets, d->latency.counts, sizeof d->latency.counts);
    o->n_latency_buckets = HIST_BUCKETS;
    ptrs[i] = o;
  }
  t.deployments = ptrs;
  t.n_deployments = (size_t)n;
  size_t len = llmesh__telemetry__get_packed_size(&t);
  if (nng_msg_alloc(&m, len) != 0) goto drop;
  llmesh__telemetry__pack(&t, nng_msg_body(m));
  if (nng_sendmsg(push, m, NNG_FLAG_NONBLOCK) != 0) { /* still ours on error */
    nng_msg_free(m);
    goto drop;
  }
  goto out;
drop:
  metrics_telemetry_dropped++;
out:
  free(stats);
  free(ptrs);
  free(buckets);
}

static void on_tick(uv_timer_t *t) {
  (void)t;
  if (nng_socket_id(push) > 0) send_once();
}

int telemetry_start(uv_loop_t *loop, const telemetry_source *src) {
  source = *src;
  start_ms = util_now_ms();
  telemetry_worker_id();
  int rc = uv_timer_init(loop, &timer);
  if (rc) return rc;
  timer_open = 1;
  uv_unref((uv_handle_t *)&timer); /* never keeps the loop alive on its own */
  return uv_timer_start(&timer, on_tick, TELEMETRY_PERIOD_MS, TELEMETRY_PERIOD_MS);
}

void telemetry_stop(void) {
  if (timer_open) {
    uv_timer_stop(&timer);
    uv_close((uv_handle_t *)&timer, NULL);
    timer_open = 0;
  }
  if (nng_socket_id(push) > 0) {
    send_once(); /* a last report, so control sees the final counters */
    feed_tls_before_close(url);
    nng_close(push);
  }
  push = (nng_socket)NNG_SOCKET_INITIALIZER;
  url[0] = '\0';
}
