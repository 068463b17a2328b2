/* ctl.c — llmesh-ctl: a thin client of the control plane's admin socket.
 *
 *   llmesh-ctl --data-dir DIR status [--json]
 *   llmesh-ctl --admin ipc:///path/admin.sock status [--json]
 *   llmesh-ctl --data-dir DIR drain DEPLOYMENT [--reason TEXT]
 *   llmesh-ctl --data-dir DIR undrain DEPLOYMENT
 *   llmesh-ctl --data-dir DIR audit [--json]
 *   llmesh-ctl --data-dir DIR probes [DEPLOYMENT] [--json]
 *
 * Sends one AdminRequest over NNG REQ and prints the AdminResponse, as a table or as
 * the JSON object documented in docs/contracts.md. drain/undrain name the operator
 * ($USER@hostname) for the audit log. `audit` reads DIR/llmesh.db read-only: the audit
 * log is append-only history, and reading it needs no running control plane; `probes`
 * (the newest health probes kept per deployment) likewise. */
#include <getopt.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sqlite3.h>
#include <nng/nng.h>
#include <nng/protocol/reqrep0/req.h>

#include "llmesh.pb-c.h"
#include "ops.h"

#define CTL_DEFAULT_TIMEOUT_MS 3000
#define CTL_URL_MAX 512

typedef struct ctl_opts {
  const char *data_dir; /* --data-dir: admin socket is DIR/admin.sock */
  const char *admin;    /* --admin URL, overrides --data-dir */
  const char *command;  /* "status" | "drain" | "undrain" | "audit" | "probes" */
  const char *target;   /* drain/undrain: the deployment; probes: NULL = all */
  const char *reason;   /* drain --reason, or NULL */
  int json;             /* --json */
  int timeout_ms;       /* --timeout: send + receive deadline */
} ctl_opts;

static void ctl_usage(FILE *f) {
  fprintf(f,
          "Usage: llmesh-ctl (--data-dir DIR | --admin URL) COMMAND [ARGS] [--json]\n"
          "\n"
          "Talks to a running llmesh-control over its admin socket.\n"
          "\n"
          "Commands:\n"
          "  status                 snapshot version, workers heard from, per-deployment stats,\n"
          "                         circuit state, effective weight, last probe\n"
          "  drain DEPLOYMENT [--reason TEXT]\n"
          "                         take a deployment out of rotation (kept across restarts)\n"
          "  undrain DEPLOYMENT     put it back\n"
          "  audit                  the audit log, oldest first (needs --data-dir)\n"
          "  probes [DEPLOYMENT]    recorded health probes, oldest first (needs --data-dir)\n"
          "\n"
          "Options:\n"
          "  --data-dir DIR         llmesh-control's data directory (socket DIR/admin.sock)\n"
          "  --admin URL            admin socket URL, e.g. ipc:///var/lib/llmesh/admin.sock\n"
          "  --json                 print one JSON object instead of tables\n"
          "  --reason TEXT          drain: why (recorded in the audit log)\n"
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
      {"reason", required_argument, NULL, 'r'},   {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0}};
  int c;
  char *end;
  opterr = 0;
  o->timeout_ms = CTL_DEFAULT_TIMEOUT_MS;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
      case 'd': o->data_dir = optarg; break;
      case 'a': o->admin = optarg; break;
      case 'j': o->json = 1; break;
      case 'r': o->reason = optarg; break;
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
  int drainish = !strcmp(o->command, "drain") || !strcmp(o->command, "undrain");
  int probes = !strcmp(o->command, "probes");
  if (!drainish && !probes && strcmp(o->command, "status") != 0 && strcmp(o->command, "audit") != 0)
    return ctl_bad_usage("unknown command", o->command);
  if (drainish && optind >= argc) return ctl_bad_usage("missing DEPLOYMENT after", o->command);
  if (drainish || (probes && optind < argc)) o->target = argv[optind++];
  if (optind < argc) return ctl_bad_usage("unexpected argument", argv[optind]);
  if (o->reason && strcmp(o->command, "drain") != 0) return ctl_bad_usage("--reason is for drain only", NULL);
  if (!o->data_dir && !o->admin) return ctl_bad_usage("--data-dir or --admin is required", NULL);
  if ((!strcmp(o->command, "audit") || probes) && !o->data_dir)
    return ctl_bad_usage(probes ? "probes needs --data-dir" : "audit needs --data-dir", NULL);
  return -1;
}

/* ------------------------------------------------------------------ request */

static int ctl_fail(const char *url, const char *what, int rv) {
  fprintf(stderr, "llmesh-ctl: %s %s: %s (is llmesh-control running?)\n", what, url, nng_strerror(rv));
  return 1;
}

/* "$USER@hostname", for the audit log. */
static void ctl_actor(char *out, size_t cap) {
  char host[256] = "localhost";
  const char *user = getenv("USER");
  struct passwd *pw;
  if ((!user || !user[0]) && (pw = getpwuid(getuid()))) user = pw->pw_name;
  if (gethostname(host, sizeof host - 1) != 0) snprintf(host, sizeof host, "localhost");
  host[sizeof host - 1] = '\0';
  snprintf(out, cap, "%s@%s", user && user[0] ? user : "unknown", host);
}

static int ctl_send(nng_socket s, const ctl_opts *o) {
  Llmesh__AdminRequest req = LLMESH__ADMIN_REQUEST__INIT;
  char actor[512];
  char *args[2] = {(char *)o->target, (char *)o->reason};
  nng_msg *m;
  req.command = (char *)o->command;
  if (o->target) {
    ctl_actor(actor, sizeof actor);
    req.actor = actor;
    req.args = args;
    req.n_args = o->reason ? 2 : 1;
  }
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
  else if ((rv = ctl_send(s, o)) != 0) *status = ctl_fail(url, "cannot send to", rv);
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

static const char *ctl_circuit_name(int state) {
  switch (state) {
    case LLMESH__CIRCUIT_STATE__CIRCUIT_CLOSED: return "closed";
    case LLMESH__CIRCUIT_STATE__CIRCUIT_OPEN: return "open";
    case LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN: return "half_open";
    case LLMESH__CIRCUIT_STATE__CIRCUIT_DRAINED: return "drained";
    default: return "unknown";
  }
}

/* Effective weight = configured × weight_milli / 1000. */
static double ctl_effective_weight(const Llmesh__DeploymentStatus *d) {
  return d->health ? ctl_round3((double)d->weight * d->health->weight_milli / 1000.0) : (double)d->weight;
}

static json_t *ctl_json_probe(const Llmesh__ProbeStatus *p) {
  if (!p) return json_null();
  return json_pack("{s:I, s:b, s:i, s:i, s:s, s:i}", "at_ms_ago", (json_int_t)p->at_ms_ago, "ok", p->ok,
                   "latency_ms", (int)p->latency_ms, "http_status", (int)p->http_status, "error", p->error,
                   "consecutive_failures", (int)p->consecutive_failures);
}

static void ctl_json_health(json_t *o, const Llmesh__DeploymentStatus *d) {
  const Llmesh__DeploymentHealth *h = d->health;
  json_object_set_new(o, "effective_weight", json_real(ctl_effective_weight(d)));
  json_object_set_new(o, "probe", ctl_json_probe(d->probe));
  if (!h) return;
  json_object_set_new(o, "circuit", json_string(ctl_circuit_name(h->state)));
  json_object_set_new(o, "circuit_reason", json_string(h->reason));
  json_object_set_new(o, "weight_milli", json_integer(h->weight_milli));
  json_object_set_new(o, "open_remaining_ms", json_integer(h->open_remaining_ms));
  json_object_set_new(o, "probe_share_milli", json_integer(h->probe_share_milli));
  json_object_set_new(o, "cooldown_remaining_ms", json_integer(h->cooldown_remaining_ms));
  json_object_set_new(o, "credential_failed", json_boolean(h->credential_failed));
  json_object_set_new(o, "latency_ewma_ms", json_integer(h->latency_ewma_ms));
  json_object_set_new(o, "rpm_used", json_integer(h->rpm_used));
  json_object_set_new(o, "tpm_used", json_integer(h->tpm_used));
}

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
    json_object_set_new(o, "order", json_integer(d->order));
    const struct { const char *k; uint64_t v; } more[] = {
        {"auth_error", t->auth_error}, {"in_flight", t->in_flight}, {"local_trips", t->local_trips},
        {"retries", t->retries}, {"retry_budget_exhausted", t->retry_budget_exhausted},
        {"cooldowns", t->cooldowns}, {"hedges", t->hedges}, {"midstream_continued", t->midstream_continued}};
    for (size_t i = 0; i < sizeof more / sizeof more[0]; i++)
      json_object_set_new(o, more[i].k, json_integer((json_int_t)more[i].v));
    ctl_json_health(o, d);
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

static void ctl_probe_text(const Llmesh__ProbeStatus *p, char *out, size_t cap) {
  if (!p) {
    snprintf(out, cap, "-");
    return;
  }
  snprintf(out, cap, "%s %ums %d%s%s %.0fs ago%s", p->ok ? "ok" : "FAIL", p->latency_ms, p->http_status,
           p->error[0] ? " " : "", p->error, (double)p->at_ms_ago / 1000.0,
           p->consecutive_failures ? " (failing)" : "");
}

static void ctl_print_health(const Llmesh__StatusReport *r) {
  int wn = 4;
  for (size_t i = 0; i < r->n_deployments; i++) wn = width(wn, r->deployments[i]->name);
  printf("\nHEALTH\n");
  printf("%-*s  %-9s  %9s  %5s  %11s  %4s  %-34s  %s\n", wn, "NAME", "CIRCUIT", "EFF_WEIGHT", "ORDER",
         "COOLDOWN_MS", "CRED", "LAST_PROBE", "REASON");
  for (size_t i = 0; i < r->n_deployments; i++) {
    const Llmesh__DeploymentStatus *d = r->deployments[i];
    const Llmesh__DeploymentHealth *h = d->health;
    char probe[96];
    ctl_probe_text(d->probe, probe, sizeof probe);
    printf("%-*s  %-9s  %9.3f  %5u  %11u  %4s  %-34s  %s\n", wn, d->name, h ? ctl_circuit_name(h->state) : "-",
           ctl_effective_weight(d), d->order, h ? h->cooldown_remaining_ms : 0,
           h && h->credential_failed ? "FAIL" : "ok", probe, h && h->reason[0] ? h->reason : "-");
  }
}

static int ctl_print_text(const Llmesh__StatusReport *r) {
  printf("snapshot: epoch %llu, version %llu   uptime: %.1f s\n", (unsigned long long)r->snapshot_epoch,
         (unsigned long long)r->snapshot_version, (double)r->uptime_ms / 1000.0);
  printf("workers url: %s   telemetry url: %s\n", r->workers_url, r->telemetry_url);
  ctl_print_workers(r);
  ctl_print_deployments(r);
  ctl_print_health(r);
  return 0;
}

/* ------------------------------------------------------------------ audit */

typedef struct ctl_audit_out {
  json_t *rows; /* --json: the array */
} ctl_audit_out;

static void ctl_audit_row(const ops_audit *a, void *ud) {
  ctl_audit_out *out = ud;
  if (out->rows) {
    json_array_append_new(out->rows, json_pack("{s:I, s:I, s:s, s:s, s:s, s:s}", "id", (json_int_t)a->id,
                                               "at_ms", (json_int_t)a->at_ms, "actor", a->actor, "action",
                                               a->action, "target", a->target, "detail", a->detail));
    return;
  }
  char when[32];
  time_t t = (time_t)(a->at_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%-20s  %-24s  %-8s  %-20s  %s\n", when, a->actor, a->action, a->target, a->detail);
}

/* DIR/llmesh.db opened read-only, or NULL (message printed). */
static sqlite3 *ctl_open_db(const ctl_opts *o) {
  char path[4096];
  sqlite3 *db = NULL;
  snprintf(path, sizeof path, "%s/llmesh.db", o->data_dir);
  if (sqlite3_open_v2(path, &db, SQLITE_OPEN_READONLY, NULL) != SQLITE_OK) {
    fprintf(stderr, "llmesh-ctl: cannot open %s: %s\n", path, db ? sqlite3_errmsg(db) : "out of memory");
    sqlite3_close(db);
    return NULL;
  }
  sqlite3_busy_timeout(db, 3000);
  return db;
}

/* Prints {"KEY": rows} and frees it; returns the exit status. */
static int ctl_print_rows(const char *key, json_t *rows) {
  json_t *root = json_pack("{s:o}", key, rows);
  char *txt = root ? json_dumps(root, 0) : NULL;
  if (txt) printf("%s\n", txt);
  free(txt);
  json_decref(root);
  return txt ? 0 : 1;
}

static int ctl_audit(const ctl_opts *o) {
  char err[512] = "";
  ctl_audit_out out = {.rows = o->json ? json_array() : NULL};
  sqlite3 *db = ctl_open_db(o);
  if (!db) {
    json_decref(out.rows);
    return 1;
  }
  if (!o->json) printf("%-20s  %-24s  %-8s  %-20s  %s\n", "AT (UTC)", "ACTOR", "ACTION", "TARGET", "DETAIL");
  int n = ops_audit_list(db, ctl_audit_row, &out, err, sizeof err);
  sqlite3_close(db);
  if (n < 0) {
    fprintf(stderr, "llmesh-ctl: cannot read the audit log: %s\n", err);
    json_decref(out.rows);
    return 1;
  }
  return out.rows ? ctl_print_rows("audit", out.rows) : 0;
}

/* ------------------------------------------------------------------ probes */

static void ctl_probe_row(const char *dep, const ops_probe *p, void *ud) {
  json_t *rows = ud;
  if (rows) {
    json_array_append_new(rows, json_pack("{s:s, s:I, s:b, s:i, s:i, s:s}", "deployment", dep, "at_ms",
                                          (json_int_t)p->at_ms, "ok", p->ok, "latency_ms", (int)p->latency_ms,
                                          "http_status", p->http_status, "error", p->error ? p->error : ""));
    return;
  }
  char when[32];
  time_t t = (time_t)(p->at_ms / 1000);
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", &tm);
  printf("%-20s  %-24s  %-4s  %6ums  %4d  %s\n", when, dep, p->ok ? "ok" : "FAIL", p->latency_ms,
         p->http_status, p->error ? p->error : "");
}

static int ctl_probes(const ctl_opts *o) {
  char err[512] = "";
  json_t *rows = o->json ? json_array() : NULL;
  sqlite3 *db = ctl_open_db(o);
  if (!db) {
    json_decref(rows);
    return 1;
  }
  if (!o->json) printf("%-20s  %-24s  %-4s  %8s  %4s  %s\n", "AT (UTC)", "DEPLOYMENT", "OK", "LATENCY", "HTTP", "ERROR");
  int n = ops_probe_list(db, o->target, ctl_probe_row, rows, err, sizeof err);
  sqlite3_close(db);
  if (n < 0) {
    fprintf(stderr, "llmesh-ctl: cannot read the probes: %s\n", err);
    json_decref(rows);
    return 1;
  }
  return rows ? ctl_print_rows("probes", rows) : 0;
}

int main(int argc, char **argv) {
  ctl_opts o = {0};
  char url[CTL_URL_MAX];
  int status = ctl_parse_args(argc, argv, &o);
  if (status >= 0) return status;
  if (!strcmp(o.command, "audit")) return ctl_audit(&o);
  if (!strcmp(o.command, "probes")) return ctl_probes(&o);
  if (o.admin) snprintf(url, sizeof url, "%s", o.admin);
  else snprintf(url, sizeof url, "ipc://%s/admin.sock", o.data_dir);
  status = 1;
  Llmesh__AdminResponse *resp = ctl_call(&o, url, &status);
  if (resp && resp->code != 0) {
    fprintf(stderr, "llmesh-ctl: %s: error %d: %s\n", o.command, resp->code, resp->error);
  } else if (resp && o.target) {
    printf("%s: %s\n", o.command, o.target);
    status = 0;
  } else if (resp && !resp->status) {
    fprintf(stderr, "llmesh-ctl: %s: the answer carries no status\n", o.command);
  } else if (resp) {
    status = o.json ? ctl_print_json(resp->status) : ctl_print_text(resp->status);
  }
  if (resp) llmesh__admin_response__free_unpacked(resp, NULL);
  nng_fini();
  return status;
}
