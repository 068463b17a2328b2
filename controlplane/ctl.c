/* ctl.c — llmesh-ctl: a thin client of the control plane's admin socket.
 *
 *   llmesh-ctl --data-dir DIR status [--json]
 *   llmesh-ctl --admin ipc:///path/admin.sock status [--json]
 *
 * Sends one AdminRequest over NNG REQ and prints the AdminResponse, as a table or as
 * the JSON object documented in docs/contracts.md. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "llmesh.pb-c.h"

#define CTL_DEFAULT_TIMEOUT_MS 3000
#define CTL_URL_MAX 512

typedef struct ctl_opts {
  const char *data_dir; /* --data-dir: admin socket is DIR/admin.sock */
  const char *admin;    /* --admin URL, overrides --data-dir */
  const char *command;  /* "status" */
  int json;             /* --json */
  int timeout_ms;       /* --timeout: send + receive deadline */
} ctl_opts;

static void ctl_usage(FILE *f) {
  fprintf(f,
          "Usage: llmesh-ctl (--data-dir DIR | --admin URL) COMMAND [--json]\n"
          "\n"
          "Talks to a running llmesh-control over its admin socket.\n"
          "\n"
          "Commands:\n"
          "  status                 snapshot version, workers heard from, per-deployment stats\n"
          "\n"
          "Options:\n"
          "  --data-dir DIR         llmesh-control's data directory (socket DIR/admin.sock)\n"
          "  --admin URL            admin socket URL, e.g. ipc:///var/lib/llmesh/admin.sock\n"
          "  --json                 print one JSON object instead of tables\n"
          "  --timeout MS           give up after MS milliseconds (default %d)\n"
          "  -h, --help             show this help\n"
          "\n"
          "Exit status: 0 ok, 1 control plane unreachable or error, 2 bad usage.\n",
          CTL_DEFAULT_TIMEOUT_MS);
}

static int ctl_bad_usage(const char *msg, const char *arg) {
  fprintf(stderr, "llmesh-ctl: %s%s%s\nTry 'llmesh-ctl --help'.\n", msg, arg ? " " : "", arg ? arg : "");
  return 2;
}

/* Returns -1 to continue, else the exit status. */
static int ctl_parse_args(int argc, char **argv, ctl_opts *o) {
  static const struct option longopts[] = {
      {"data-dir", required_argument, NULL, 'd'}, {"admin", required_argument, NULL, 'a'},
      {"json", no_argument, NULL, 'j'},           {"timeout", required_argument, NULL, 't'},
      {"help", no_argument, NULL, 'h'},           {NULL, 0, NULL, 0}};
  int c;
  char *end;
  opterr = 0;
  o->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
      case 'd': o->data_dir = optarg; break;
      case 'a': o->admin = optarg; break;
      case 'j': o->json = 1; break;
      case 't':
        o->timeout_ms = (int)strtol(optarg, &end, 10);
        if (*end || o->timeout_ms <= 0) return ctl_bad_usage("invalid --timeout", optarg);
        break;
      case 'h': ctl_usage(stdout); return 0;
      case ':': return ctl_bad_usage("option needs a value:", argv[optind - 1]);
      default: return ctl_bad_usage("unknown option", argv[optind - 1]);
    }
  }
  if (optind >= argc) return ctl_bad_usage("missing command (try: status)", NULL);
  o->command = argv[optind++];
  if (optind < argc) return ctl_bad_usage("unexpected argument", argv[optind]);
  if (strcmp(o->command, "status") != 0) return ctl_bad_usage("unknown command", o->command);
  if (!o->data_dir && !o->admin) return ctl_bad_usage("--data-dir or --admin is required", NULL);
  return -1;
}

/* ------------------------------------------------------------------ request */

static int ctl_fail(const char *url, const char *what, int rv) {
  fprintf(stderr, "llmesh-ctl: %s %s: %s (is llmesh-control running?)\n", what, url, nng_strerror(rv));
  return 1;
}

static int ctl_send(nng_socket s, const char *command) {
  Llmesh__AdminRequest req = LLMESH__ADMIN_REQUEST__INIT;
  nng_msg *m;
  req.command = (char *)command;
  int rv = nng_msg_alloc(&m, llmesh__admin_request__get_packed_size(&req));
  if (rv != 0) return rv;
  llmesh__admin_request__pack(&req, nng_msg_body(m));
  if ((rv = nng_sendmsg(s, m, 0)) != 0) nng_msg_free(m);
  return rv;
}

/* Sends the command, returns the unpacked response or NULL (message printed). */
static Llmesh__AdminResponse *ctl_call(const ctl_opts *o, const char *url, int *status) {
  nng_socket s;
  nng_msg *m = NULL;
  Llmesh__AdminResponse *resp = NULL;
  int rv = nng_req0_open(&s);
  if (rv != 0) {
    *status = ctl_fail(url, "cannot open a socket for", rv);
    return NULL;
  }
  nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, o->timeout_ms);
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, o->timeout_ms);
  nng_socket_set_ms(s, NNG_OPT_REQ_RESENDTIME, o->timeout_ms * 2); /* no resend within our deadline */
  if ((rv = nng_dial(s, url, NULL, 0)) != 0) *status = ctl_fail(url, "cannot connect to", rv);
  else if ((rv = ctl_send(s, o->command)) != 0) *status = ctl_fail(url, "cannot send to", rv);
  else if ((rv = nng_recvmsg(s, &m, 0)) != 0) *status = ctl_fail(url, "no answer from", rv);
  else if (!(resp = llmesh__admin_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m)))) {
    fprintf(stderr, "llmesh-ctl: malformed answer from %s\n", url);
    *status = 1;
  }
  if (m) nng_msg_free(m);
  nng_close(s);
  return resp;
}

/* ------------------------------------------------------------------ JSON */

static json_t *ctl_json_worker(const Llmesh__WorkerStatus *w) {
  return json_pack("{s:s, s:s, s:s, s:I, s:I, s:I, s:I, s:I, s:I, s:i}",
                   "worker_id", w->worker_id, "region", w->region, "listen", w->listen,
                   "last_heard_ms_ago", (json_int_t)w->last_heard_ms_ago,
                   "snapshot_epoch", (json_int_t)w->snapshot_epoch,
                   "snapshot_version", (json_int_t)w->snapshot_version,
                   "client_requests", (json_int_t)w->client_requests,
                   "open_connections", (json_int_t)w->open_connections,
                   "rss_bytes", (json_int_t)w->rss_bytes, "pid", (int)w->pid);
}

static double ctl_round3(double v) { return (double)(long long)(v * 1000.0 + 0.5) / 1000.0; }

static json_t *ctl_json_deployment(const Llmesh__DeploymentStatus *d) {
  static const Llmesh__DeploymentStats zero = LLMESH__DEPLOYMENT_STATS__INIT;
  const Llmesh__DeploymentStats *t = d->totals ? d->totals : &zero;
  json_t *o = json_pack("{s:s, s:s, s:s, s:s, s:i}", "name", d->name, "model_group", d->model_group,
                        "provider", d->provider, "upstream_model", d->upstream_model,
                        "weight", (int)d->weight);
  const struct { const char *k; uint64_t v; } counts[] = {
      {"requests", t->requests},         {"success", t->success},
      {"client_error", t->client_error}, {"rate_limited", t->rate_limited},
      {"server_error", t->server_error}, {"timeout", t->timeout},
      {"connect_error", t->connect_error}, {"other_error", t->other_error},
      {"cancelled", t->cancelled},       {"failovers", t->failovers},
      {"prompt_tokens", t->prompt_tokens}, {"completion_tokens", t->completion_tokens}};
  for (size_t i = 0; o && i < sizeof counts / sizeof counts[0]; i++)
    json_object_set_new(o, counts[i].k, json_integer((json_int_t)counts[i].v));
  if (o) {
    json_object_set_new(o, "p50_ms", json_real(ctl_round3(d->p50_ms)));
    json_object_set_new(o, "p99_ms", json_real(ctl_round3(d->p99_ms)));
  }
  return o;
}

static int ctl_print_json(const Llmesh__StatusReport *r) {
  json_t *workers = json_array(), *deps = json_array();
  for (size_t i = 0; i < r->n_workers; i++) json_array_append_new(workers, ctl_json_worker(r->workers[i]));
  for (size_t i = 0; i < r->n_deployments; i++)
    json_array_append_new(deps, ctl_json_deployment(r->deployments[i]));
  json_t *root = json_pack("{s:{s:I, s:I}, s:I, s:o, s:o}", "snapshot",
                           "epoch", (json_int_t)r->snapshot_epoch, "version", (json_int_t)r->snapshot_version,
                           "uptime_ms", (json_int_t)r->uptime_ms, "workers", workers, "deployments", deps);
  char *s = root ? json_dumps(root, JSON_REAL_PRECISION(10)) : NULL;
  json_decref(root);
  if (!s) {
    fprintf(stderr, "llmesh-ctl: cannot format JSON\n");
    return 1;
  }
  printf("%s\n", s);
  free(s);
  return 0;
}

/* ------------------------------------------------------------------ text */

static int width(int w, const char *s) {
  int n = (int)strlen(s);
  return n > w ? n : w;
}

static void ctl_print_workers(const Llmesh__StatusReport *r) {
  int wi = 9, wr = 6, wl = 6;
  for (size_t i = 0; i < r->n_workers; i++) {
    wi = width(wi, r->workers[i]->worker_id);
    wr = width(wr, r->workers[i]->region);
    wl = width(wl, r->workers[i]->listen);
  }
  printf("\nWORKERS (%zu)\n", r->n_workers);
  if (!r->n_workers) {
    printf("  (none heard from yet)\n");
    return;
  }
  printf("%-*s  %-*s  %-*s  %10s  %-20s  %9s  %5s  %8s  %7s\n", wi, "WORKER_ID", wr, "REGION", wl,
         "LISTEN", "HEARD_AGO", "SNAPSHOT", "REQUESTS", "CONNS", "RSS_MIB", "PID");
  for (size_t i = 0; i < r->n_workers; i++) {
    const Llmesh__WorkerStatus *w = r->workers[i];
    char snap[48], ago[24];
    snprintf(snap, sizeof snap, "%llu/%llu", (unsigned long long)w->snapshot_epoch,
             (unsigned long long)w->snapshot_version);
    snprintf(ago, sizeof ago, "%.1fs", (double)w->last_heard_ms_ago / 1000.0);
    printf("%-*s  %-*s  %-*s  %10s  %-20s  %9llu  %5llu  %8.1f  %7d\n", wi, w->worker_id, wr, w->region,
           wl, w->listen, ago, snap, (unsigned long long)w->client_requests,
           (unsigned long long)w->open_connections, (double)w->rss_bytes / 1048576.0, (int)w->pid);
  }
}

static void ctl_print_deployments(const Llmesh__StatusReport *r) {
  int wn = 4, wg = 5, wp = 8, wm = 5;
  for (size_t i = 0; i < r->n_deployments; i++) {
    wn = width(wn, r->deployments[i]->name);
    wg = width(wg, r->deployments[i]->model_group);
    wp = width(wp, r->deployments[i]->provider);
    wm = width(wm, r->deployments[i]->upstream_model);
  }
  printf("\nDEPLOYMENTS (%zu)\n", r->n_deployments);
  printf("%-*s  %-*s  %-*s  %-*s  %6s  %8s  %8s  %5s  %5s  %5s  %7s  %7s  %5s  %6s  %8s  %8s  %8s\n", wn,
         "NAME", wg, "GROUP", wp, "PROVIDER", wm, "MODEL", "WEIGHT", "REQUESTS", "SUCCESS", "4XX", "429",
         "5XX", "TIMEOUT", "CONNECT", "OTHER", "CANCEL", "FAILOVER", "P50_MS", "P99_MS");
  for (size_t i = 0; i < r->n_deployments; i++) {
    const Llmesh__DeploymentStatus *d = r->deployments[i];
    static const Llmesh__DeploymentStats zero = LLMESH__DEPLOYMENT_STATS__INIT;
    const Llmesh__DeploymentStats *t = d->totals ? d->totals : &zero;
    printf("%-*s  %-*s  %-*s  %-*s  %6u  %8llu  %8llu  %5llu  %5llu  %5llu  %7llu  %7llu  %5llu  %6llu  %8llu"
           "  %8.1f  %8.1f\n",
           wn, d->name, wg, d->model_group, wp, d->provider, wm, d->upstream_model, d->weight,
           (unsigned long long)t->requests, (unsigned long long)t->success,
           (unsigned long long)t->client_error, (unsigned long long)t->rate_limited,
           (unsigned long long)t->server_error, (unsigned long long)t->timeout,
           (unsigned long long)t->connect_error, (unsigned long long)t->other_error,
           (unsigned long long)t->cancelled, (unsigned long long)t->failovers, d->p50_ms, d->p99_ms);
  }
}

static int ctl_print_text(const Llmesh__StatusReport *r) {
  printf("snapshot: epoch %llu, version %llu   uptime: %.1f s\n", (unsigned long long)r->snapshot_epoch,
         (unsigned long long)r->snapshot_version, (double)r->uptime_ms / 1000.0);
  printf("workers url: %s   telemetry url: %s\n", r->workers_url, r->telemetry_url);
  ctl_print_workers(r);
  ctl_print_deployments(r);
  return 0;
}

int main(int argc, char **argv) {
  ctl_opts o = {0};
  char url[CTL_URL_MAX];
  int status = ctl_parse_args(argc, argv, &o);
  if (status >= 0) return status;
  if (o.admin) snprintf(url, sizeof url, "%s", o.admin);
  else snprintf(url, sizeof url, "ipc://%s/admin.sock", o.data_dir);
  status = 1;
  Llmesh__AdminResponse *resp = ctl_call(&o, url, &status);
  if (resp && resp->code != 0) {
    fprintf(stderr, "llmesh-ctl: %s: error %d: %s\n", o.command, resp->code, resp->error);
  } else if (resp && !resp->status) {
    fprintf(stderr, "llmesh-ctl: %s: the answer carries no status\n", o.command);
  } else if (resp) {
    status = o.json ? ctl_print_json(resp->status) : ctl_print_text(resp->status);
  }
  if (resp) llmesh__admin_response__free_unpacked(resp, NULL);
  nng_fini();
  return status;
}
