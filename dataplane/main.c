/* main.c — llmesh-worker: flags, wiring, graceful drain.
 *
 * A worker needs only the control plane's address: the snapshot it publishes carries
 * the routing configuration, the master key hash and the telemetry URL. */
#include <curl/curl.h>
#include <getopt.h>
#include <nng/nng.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <string.h>

#include "attempt.h"
#include "auth.h"
#include "feed_tls.h"
#include "http_server.h"
#include "log.h"
#include "metrics.h"
#include "server.h"
#include "snapshot.h"
#include "telemetry.h"
#include "util.h"

typedef struct worker {
  uv_loop_t loop;          /* the one loop */
  hs_server *hs;           /* client side */
  server_ctx ctx;          /* dispatcher state */
  uv_signal_t sigterm;     /* graceful drain */
  uv_signal_t sigint;
  int draining;            /* a signal arrived */
  char listen[300];        /* HOST:PORT as served */
} worker;

static void usage(FILE *f) {
  fprintf(f,
          "usage: llmesh-worker --control tcp://HOST:PORT [--listen HOST:PORT] [--region NAME]\n"
          "                     [--log-level debug|info|warn|error] [--access-log]\n"
          "                     [--tls-cert FILE --tls-key FILE --tls-ca FILE]\n\n"
          "Data plane worker of llmesh: serves the OpenAI API to clients, fails over between\n"
          "provider deployments, and reports telemetry to the control plane.\n\n"
          "  --control URL     control plane snapshot publisher to dial (required)\n"
          "  --listen H:P      address to serve HTTP on (default 127.0.0.1:4000)\n"
          "  --region NAME     region reported in telemetry (default local)\n"
          "  --log-level L     debug, info, warn or error (default info)\n"
          "  --access-log      one JSON line per request at info (default: only at debug;\n"
          "                    failovers, cuts and stalls are always logged)\n"
          "  --tls-cert FILE   this worker's certificate (PEM) for mutual TLS on the feeds;\n"
          "                    with the next two, --control must be tls+tcp://HOST:PORT\n"
          "  --tls-key FILE    its private key (PEM, unencrypted)\n"
          "  --tls-ca FILE     CA (PEM) that signed the control's certificate; the control\n"
          "                    must present one valid for HOST\n"
          "  --help            this text\n\n"
          "SIGTERM/SIGINT: stop accepting, finish in-flight requests, exit 0.\n\n"
          "Environment: LLMESH_GCP_REFRESH_SKEW_S (tests) seconds before expiry at which Vertex AI\n"
          "access tokens are renewed (default 600; min 330); see dataplane/gcp_auth.h.\n");
}

static int split_hostport(const char *s, char *host, size_t cap, int *port) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s) return -1;
  size_t hl = (size_t)(colon - s);
  if (s[0] == '[' && hl >= 2 && s[hl - 1] == ']') { s++; hl -= 2; }
  if (hl >= cap) return -1;
  memcpy(host, s, hl);
  host[hl] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535 || end == colon + 1) return -1;
  *port = (int)p;
  return 0;
}

/* Loads the feed TLS files when given (all three or none) and checks --control against
 * them. Returns -1 to go on, else the exit status. */
static int worker_tls(const char *cert, const char *key, const char *ca, const char *control) {
  char err[FEED_TLS_ERR_MAX];
  if ((cert || key || ca) && !(cert && key && ca)) {
    fprintf(stderr, "llmesh-worker: --tls-cert, --tls-key and --tls-ca go together\n");
    return 2;
  }
  if (cert && feed_tls_init(cert, key, ca, err, sizeof err) < 0) {
    fprintf(stderr, "llmesh-worker: %s\n", err);
    return 1;
  }
  if (feed_tls_check_url(control, err, sizeof err) < 0) {
    fprintf(stderr, "llmesh-worker: --control %s\n", err);
    return 2;
  }
  return -1;
}

static void on_applied(const snapshot *prev, const snapshot *cur, void *ud) {
  (void)ud;
  if (!prev || strcmp(prev->telemetry_url, cur->telemetry_url) != 0)
    telemetry_set_url(cur->telemetry_url);
}

static uint64_t open_conns(void *ud) {
  worker *w = ud;
  return w->hs ? hs_server_open_connections(w->hs) : 0;
}

static void close_signals(worker *w) {
  if (!uv_is_closing((uv_handle_t *)&w->sigterm)) uv_close((uv_handle_t *)&w->sigterm, NULL);
  if (!uv_is_closing((uv_handle_t *)&w->sigint)) uv_close((uv_handle_t *)&w->sigint, NULL);
}

/* Every connection is closed: stop NNG, curl and the loop's remaining handles. */
static void on_drained(hs_server *s, void *ud) {
  worker *w = container_of((server_ctx *)ud, worker, ctx); /* hs hands back its ud */
  (void)s;
  LOG_INFO(NULL, "drained", LF_I("chats_in_flight", attempt_chats_in_flight()));
  util_exit_deadline(3, 0);
  hs_server_free(w->hs);
  w->hs = NULL;
  w->ctx.hs = NULL;
  telemetry_stop();
  snapshot_stop();
  attempt_shutdown();
  close_signals(w);
}

static void on_signal(uv_signal_t *h, int signum) {
  worker *w = h->data;
  if (w->draining) { /* second signal: stop waiting for in-flight requests */
    LOG_WARN(NULL, "drain_forced", LF_I("signal", signum));
    util_exit_deadline(3, 0);
    if (w->hs) hs_server_free(w->hs); /* aborts in-flight: on_abort cancels upstream */
    w->hs = NULL;
    w->ctx.hs = NULL;
    telemetry_stop();
    snapshot_stop();
    attempt_shutdown();
    close_signals(w);
    return;
  }
  w->draining = 1;
  LOG_INFO(NULL, "draining", LF_I("signal", signum));
  hs_server_drain(w->hs, on_drained);
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"control", required_argument, NULL, 'c'}, {"listen", required_argument, NULL, 'l'},
      {"region", required_argument, NULL, 'r'},  {"log-level", required_argument, NULL, 'L'},
      {"access-log", no_argument, NULL, 'A'},    {"help", no_argument, NULL, 'h'},
      {"tls-cert", required_argument, NULL, 'C'}, {"tls-key", required_argument, NULL, 'K'},
      {"tls-ca", required_argument, NULL, 'T'},  {NULL, 0, NULL, 0}};
  const char *control = NULL, *listen = "127.0.0.1:4000", *region = "local", *level = "info";
  const char *tls_cert = NULL, *tls_key = NULL, *tls_ca = NULL;
  int o, access_log = 0;
  opterr = 0;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
      case 'c': control = optarg; break;
      case 'l': listen = optarg; break;
      case 'r': region = optarg; break;
      case 'L': level = optarg; break;
      case 'A': access_log = 1; break;
      case 'C': tls_cert = optarg; break;
      case 'K': tls_key = optarg; break;
      case 'T': tls_ca = optarg; break;
      case 'h': usage(stdout); return 0;
      default:
        fprintf(stderr, "llmesh-worker: unknown or incomplete option '%s'\n", argv[optind - 1]);
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "llmesh-worker: unexpected argument '%s'\n", argv[optind]);
    return 2;
  }
  if (!control || !*control) {
    fprintf(stderr, "llmesh-worker: --control tcp://HOST:PORT is required\n");
    usage(stderr);
    return 2;
  }
  if (strcmp(level, "debug") && strcmp(level, "info") && strcmp(level, "warn") && strcmp(level, "error")) {
    fprintf(stderr, "llmesh-worker: --log-level must be debug, info, warn or error\n");
    return 2;
  }
  int st = worker_tls(tls_cert, tls_key, tls_ca, control);
  if (st >= 0) return st;
  char host[256];
  int port;
  if (split_hostport(listen, host, sizeof host, &port)) {
    fprintf(stderr, "llmesh-worker: --listen wants HOST:PORT, got '%s'\n", listen);
    return 2;
  }

  signal(SIGPIPE, SIG_IGN); /* libuv writes with writev(): a reset client must not kill us */
  curl_global_init(CURL_GLOBAL_DEFAULT);
  log_init("worker", log_level_parse(level));
  server_set_access_log(access_log);

  static worker w;
  uv_loop_init(&w.loop);
  w.ctx.region = region;
  hs_config cfg;
  hs_config_default(&cfg);
  hs_callbacks cb = {server_on_request, server_on_abort, server_on_drain};
  int rc;
  if ((rc = attempt_init(&w.loop)) != 0) {
    LOG_ERROR(NULL, "startup_failed", LF_S("what", "curl multi"));
    return 1;
  }
  if ((rc = hs_server_new(&w.hs, &w.loop, &cfg, &cb, &w.ctx)) != 0 ||
      (rc = hs_server_listen(w.hs, host, port)) != 0) {
    LOG_ERROR(NULL, "listen_failed", LF_S("listen", listen), LF_S("error", uv_strerror(rc)));
    return 1;
  }
  w.ctx.hs = w.hs;
  snprintf(w.listen, sizeof w.listen, "%s:%d", host, hs_server_port(w.hs));
  if ((rc = snapshot_start(&w.loop, control, on_applied, NULL)) != 0) {
    LOG_ERROR(NULL, "control_dial_failed", LF_S("control", control),
              LF_S("error", rc < 0 ? nng_strerror(-rc) : "error"));
    return 1;
  }
  telemetry_source ts = {.region = region, .listen = w.listen, .open_connections = open_conns, .ud = &w};
  telemetry_start(&w.loop, &ts);
  uv_signal_init(&w.loop, &w.sigterm);
  uv_signal_init(&w.loop, &w.sigint);
  w.sigterm.data = w.sigint.data = &w;
  uv_signal_start(&w.sigterm, on_signal, SIGTERM);
  uv_signal_start(&w.sigint, on_signal, SIGINT);
  LOG_INFO(NULL, "worker_started", LF_S("listen", w.listen), LF_S("control", control),
           LF_S("region", region), LF_S("worker_id", telemetry_worker_id()),
           LF_B("tls", feed_tls_enabled()));

  uv_run(&w.loop, UV_RUN_DEFAULT);

  snapshot_shutdown();
  rc = uv_loop_close(&w.loop);
  if (rc) LOG_WARN(NULL, "loop_not_clean", LF_S("error", uv_strerror(rc)));
  metrics_free();
  breaker_free_all(); /* dep_states outlive snapshots, like the metrics */
  auth_cleanup();
  curl_global_cleanup();
  feed_tls_fini();
  LOG_INFO(NULL, "worker_stopped");
  alarm(0); /* teardown finished: the deadline must not cut exit-time checks (LSan) */
  return 0;
}
