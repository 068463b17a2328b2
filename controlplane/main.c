/* main.c — llmesh-control: flags, startup, the event loop, clean shutdown.
 *
 * Startup: data dir → secret.key → SQLite (migrate) → import --config (one
 * transaction; version bumps only on a content change) → read the rows back → open
 * NNG sockets → run the loop. The loop republishes the snapshot every 2 s and as
 * soon as a subscriber connects, ingests telemetry, and answers admin requests.
 *
 * Health (issue 5): every CONTROL_TICK_MS the telemetry deltas go through each
 * deployment's circuit breaker (breaker.c) together with the active probes
 * (probe.c); a state change, or a weight moving by more than 10 %, bumps
 * health_version and publishes at once. Drains live in the store (ops.c). */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sched.h>
#include <sys/stat.h>
#include <unistd.h>

#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pubsub0/pub.h>
#include <curl/curl.h>
#include <uv.h>

#include "admin.h"
#include "breaker.h"
#include "config_import.h"
#include "feed_tls.h"
#include "keys.h"
#include "log.h"
#include "nng_bridge.h"
#include "ops.h"
#include "probe.h"
#include "snapshot.h"
#include "store.h"
#include "telemetry.h"
#include "util.h"

#define CONTROL_REPUBLISH_MS 2000                 /* snapshot period */
#define CONTROL_TICK_MS 1000                      /* breaker tick */
#define CONTROL_TLS_LOG_MS 10000                  /* min gap between handshake-failure lines per feed */
#define CONTROL_STATUS_REASON_MAX (CBRK_REASON_MAX + 48) /* reason + " (12.3 s ago)" */
#define CONTROL_TELEMETRY_MAX_BYTES (4 << 20)     /* NNG_OPT_RECVMAXSZ on the pull listener */
#define CONTROL_DEFAULT_WORKERS_URL "tcp://127.0.0.1:7400"
#define CONTROL_URL_MAX 512                       /* bytes, any URL we build */
#define CONTROL_IPC_PATH_MAX 107                  /* sun_path */

typedef struct control_opts {
  const char *config;        /* --config, or NULL: use what the db holds */
  const char *data_dir;      /* --data-dir */
  const char *workers_url;   /* --workers-url: snapshot PUB */
  const char *telemetry_url; /* --telemetry-url, or NULL: workers port + 1 */
  enum log_level level;      /* --log-level */
  const char *tls_cert;      /* --tls-cert: our certificate for the feeds, or NULL */
  const char *tls_key;       /* --tls-key: its private key, or NULL */
  const char *tls_ca;        /* --tls-ca: CA that must sign every worker's certificate, or NULL */
  int insecure_plaintext;    /* --insecure-plaintext-feed: allow tcp:// off this host */
} control_opts;

/* Per deployment (config order): breaker, what was last published, status storage. */
typedef struct control_dep {
  cbrk brk;                        /* circuit state and effective weight */
  uint32_t published_weight;       /* weight_milli in the last health_version */
  Llmesh__DeploymentHealth health; /* snapshot entry (meta.health points here) */
  Llmesh__DeploymentHealth st_health; /* status copy, reason with its age */
  Llmesh__ProbeStatus st_probe;    /* status: last probe */
  char st_reason[CONTROL_STATUS_REASON_MAX]; /* storage of st_health.reason */
} control_dep;

typedef struct control {
  uv_loop_t loop;
  uv_timer_t republish;            /* every CONTROL_REPUBLISH_MS */
  uv_timer_t tick;                 /* every CONTROL_TICK_MS: breakers */
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_async_t subscriber_joined;    /* woken from NNG's pipe callback */
  atomic_int pub_open;             /* 0 once shutdown began: no more wake-ups */
  atomic_int pipe_cb_busy;         /* pipe callbacks running right now */
  nng_socket pub;                  /* snapshots */
  nng_socket pull;                 /* telemetry */
  nng_bridge *telemetry_bridge;
  admin_t *admin;
  store_t *store;
  keys_t keys;                     /* data key for provider keys at rest */
  cfg_config cfg;                  /* the config as read back from the db */
  snap_meta meta;                  /* epoch, version, telemetry url */
  telemetry_t telemetry;
  control_dep *deps;               /* cfg.ndeployments entries */
  Llmesh__DeploymentHealth **health_ptrs; /* meta.health */
  cbrk_params brk_params;          /* from the router settings */
  probe_set *probes;               /* NULL when probes are off */
  uint64_t started_ms;             /* monotonic, for uptime */
  uint64_t last_reject_log_ms;     /* rate limit for malformed-telemetry warnings */
  uint64_t publish_errors;         /* failed sends */
  nng_listener feed_listeners[2];  /* snapshots, telemetry: watched for TLS handshake failures */
  uint64_t tls_rejected[2];        /* handshake failures already logged, per listener */
  uint64_t tls_logged_ms[2];       /* monotonic ms of the last such log line, per listener */
  int stopping;                    /* shutdown has begun */
  char workers_url[CONTROL_URL_MAX];
  char telemetry_url[CONTROL_URL_MAX];
  char admin_url[CONTROL_URL_MAX];
} control_t;

/* ------------------------------------------------------------------ flags */

static void control_usage(FILE *f) {
  fprintf(f,
          "Usage: llmesh-control --data-dir DIR [--config FILE] [options]\n"
          "\n"
          "The llmesh control plane: keeps config and provider keys in SQLite (DIR/llmesh.db),\n"
          "publishes routing snapshots to workers and collects their telemetry.\n"
          "\n"
          "  --config FILE          LiteLLM-style YAML config, imported into the database at\n"
          "                         start (optional once the database holds a config)\n"
          "  --data-dir DIR         state directory, created 0700 (llmesh.db, secret.key,\n"
          "                         admin.sock)\n"
          "  --workers-url URL      snapshot PUB listen URL (default %s)\n"
          "  --telemetry-url URL    telemetry PULL listen URL (default: workers-url port + 1)\n"
          "  --tls-cert FILE        control certificate (PEM) for mutual TLS on both feeds; with\n"
          "                         the next two, both URLs must be tls+tcp://HOST:PORT\n"
          "  --tls-key FILE         its private key (PEM, unencrypted)\n"
          "  --tls-ca FILE          CA (PEM): only workers with a certificate it signed connect\n"
          "  --insecure-plaintext-feed\n"
          "                         allow a plain tcp:// feed on a non-loopback address (snapshots\n"
          "                         carry provider secrets; refused without this flag)\n"
          "  --log-level LEVEL      debug|info|warn|error (default info)\n"
          "  -h, --help             show this help\n"
          "\n"
          "Exit status: 0 after SIGTERM/SIGINT, 1 on a bad config or runtime error, 2 on bad usage.\n",
          CONTROL_DEFAULT_WORKERS_URL);
}

static int control_bad_usage(const char *fmt, const char *arg) {
  fprintf(stderr, "llmesh-control: ");
  fprintf(stderr, fmt, arg);
  fprintf(stderr, "\nTry 'llmesh-control --help'.\n");
  return 2;
}

static int valid_level(const char *s) {
  return !strcmp(s, "debug") || !strcmp(s, "info") || !strcmp(s, "warn") || !strcmp(s, "error");
}

/* Returns -1 to continue, else the exit status. */
static int control_parse_args(int argc, char **argv, control_opts *o) {
  static const struct option longopts[] = {
      {"config", required_argument, NULL, 'c'},   {"data-dir", required_argument, NULL, 'd'},
      {"workers-url", required_argument, NULL, 'w'}, {"telemetry-url", required_argument, NULL, 't'},
      {"log-level", required_argument, NULL, 'l'}, {"help", no_argument, NULL, 'h'},
      {"tls-cert", required_argument, NULL, 'C'}, {"tls-key", required_argument, NULL, 'K'},
      {"tls-ca", required_argument, NULL, 'T'},   {"insecure-plaintext-feed", no_argument, NULL, 'I'},
      {NULL, 0, NULL, 0}};
  int c;
  opterr = 0;
  o->workers_url = CONTROL_DEFAULT_WORKERS_URL;
  o->level = LOG_LEVEL_INFO;
  while ((c = getopt_long(argc, argv, ":h", longopts, NULL)) != -1) {
    switch (c) {
      case 'c': o->config = optarg; break;
      case 'd': o->data_dir = optarg; break;
      case 'w': o->workers_url = optarg; break;
      case 't': o->telemetry_url = optarg; break;
      case 'C': o->tls_cert = optarg; break;
      case 'K': o->tls_key = optarg; break;
      case 'T': o->tls_ca = optarg; break;
      case 'I': o->insecure_plaintext = 1; break;
      case 'l':
        if (!valid_level(optarg)) return control_bad_usage("invalid --log-level '%s'", optarg);
        o->level = log_level_parse(optarg);
        break;
      case 'h': control_usage(stdout); return 0;
      case ':': return control_bad_usage("option '%s' needs a value", argv[optind - 1]);
      default: return control_bad_usage("unknown option '%s'", argv[optind - 1]);
    }
  }
  if (optind < argc) return control_bad_usage("unexpected argument '%s'", argv[optind]);
  if (!o->data_dir) return control_bad_usage("%s", "--data-dir is required");
  if ((o->tls_cert || o->tls_key || o->tls_ca) && !(o->tls_cert && o->tls_key && o->tls_ca))
    return control_bad_usage("%s", "--tls-cert, --tls-key and --tls-ca go together");
  return -1;
}

/* "tcp://HOST:PORT" → "tcp://HOST:PORT+1" (tls+tcp:// alike). */
static int derive_telemetry_url(const char *workers, char *out, size_t cap) {
  const char *colon = strrchr(workers, ':');
  size_t scheme = !strncmp(workers, "tls+tcp://", 10) ? 10 : 6;
  char *end;
  if ((strncmp(workers, "tcp://", 6) != 0 && scheme == 6) || !colon || colon < workers + scheme) return -1;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port >= 65535) return -1;
  int n = snprintf(out, cap, "%.*s:%ld", (int)(colon - workers), workers, port + 1);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Secrets must not cross a network in clear: TLS files load and match the URLs, and a
 * plain feed off this host needs --insecure-plaintext-feed. -1 to go on, else the exit status. */
static int control_feed_security(control_t *ctl, const control_opts *o) {
  char err[FEED_TLS_ERR_MAX];
  const char *urls[2] = {ctl->workers_url, ctl->telemetry_url};
  if (o->tls_cert && feed_tls_init(o->tls_cert, o->tls_key, o->tls_ca, err, sizeof err) < 0) {
    fprintf(stderr, "llmesh-control: %s\n", err);
    return 1;
  }
  for (int i = 0; i < 2; i++) {
    if (feed_tls_check_url(urls[i], err, sizeof err) < 0) return control_bad_usage("%s", err);
    if (!feed_tls_url_is_tls(urls[i]) && !feed_tls_url_is_local(urls[i]) && !o->insecure_plaintext)
      return control_bad_usage("refusing the plaintext feed '%s' off this host: snapshots carry provider"
                               " secrets; use tls+tcp:// with --tls-cert/--tls-key/--tls-ca, or pass"
                               " --insecure-plaintext-feed", urls[i]);
  }
  return -1;
}

static int control_urls(control_t *ctl, const control_opts *o) {
  snprintf(ctl->workers_url, sizeof ctl->workers_url, "%s", o->workers_url);
  if (o->telemetry_url) {
    snprintf(ctl->telemetry_url, sizeof ctl->telemetry_url, "%s", o->telemetry_url);
  } else if (derive_telemetry_url(o->workers_url, ctl->telemetry_url, sizeof ctl->telemetry_url) < 0) {
    return control_bad_usage("cannot derive a telemetry URL from '%s'; pass --telemetry-url",
                             o->workers_url);
  }
  int st = control_feed_security(ctl, o);
  if (st >= 0) return st;
  if (strlen(o->data_dir) + strlen("/admin.sock") > CONTROL_IPC_PATH_MAX) {
    fprintf(stderr, "llmesh-control: --data-dir '%s' is too long for a unix socket path (max %d bytes"
                    " with /admin.sock)\n", o->data_dir, CONTROL_IPC_PATH_MAX);
    return 1;
  }
  snprintf(ctl->admin_url, sizeof ctl->admin_url, "ipc://%s/admin.sock", o->data_dir);
  return -1;
}

/* ------------------------------------------------------------------ state */

static int control_data_dir(const char *dir) {
  struct stat st;
  if (mkdir(dir, 0700) < 0 && errno != EEXIST) {
    LOG_ERROR(NULL, "data_dir_failed", LF_S("path", dir), LF_S("error", strerror(errno)));
    return -1;
  }
  if (stat(dir, &st) < 0 || !S_ISDIR(st.st_mode)) {
    LOG_ERROR(NULL, "data_dir_failed", LF_S("path", dir), LF_S("error", "not a directory"));
    return -1;
  }
  if (st.st_mode & 077)
    LOG_WARN(NULL, "data_dir_permissions", LF_S("path", dir), LF_I("mode", st.st_mode & 0777),
             LF_S("hint", "chmod 700 it: it holds the database and the key file"));
  return 0;
}

static void control_log_warnings(const cfg_config *c, const char *file) {
  for (size_t i = 0; i < c->nwarnings; i++)
    LOG_WARN(NULL, "config_warning", LF_S("file", file), LF_I("line", c->warnings[i].line),
             LF_S("key", c->warnings[i].path), LF_S("message", c->warnings[i].message));
}

/* Imports --config (if given) and reads the stored config back. */
static int control_load_config(control_t *ctl, const control_opts *o) {
  char err[1024] = "";
  if (o->config) {
    cfg_config c;
    int changed = 0;
    if (cfg_parse_file(o->config, &c, err, sizeof err) < 0) {
      LOG_ERROR(NULL, "config_invalid", LF_S("file", o->config), LF_S("error", err));
      return -1;
    }
    control_log_warnings(&c, o->config);
    int rv = store_import(ctl->store, &ctl->keys, &c, &ctl->meta.version, &changed, err, sizeof err);
    cfg_free(&c);
    if (rv < 0) {
      LOG_ERROR(NULL, "config_import_failed", LF_S("error", err));
      return -1;
    }
    LOG_INFO(NULL, "config_imported", LF_S("file", o->config), LF_B("changed", changed),
             LF_I("version", ctl->meta.version));
  }
  int found = store_load(ctl->store, &ctl->keys, &ctl->cfg, &ctl->meta.version, err, sizeof err);
  if (found < 0) LOG_ERROR(NULL, "store_load_failed", LF_S("error", err));
  if (found == 0) LOG_ERROR(NULL, "no_config", LF_S("error", "the database holds no config yet; pass --config FILE"));
  return found == 1 ? 0 : -1;
}

static int control_open_state(control_t *ctl, const control_opts *o) {
  char path[4096], err[1024] = "";
  if (control_data_dir(o->data_dir) < 0) return -1;
  snprintf(path, sizeof path, "%s/secret.key", o->data_dir);
  if (keys_load_or_create(&ctl->keys, path, err, sizeof err) < 0) {
    LOG_ERROR(NULL, "secret_key_failed", LF_S("error", err));
    return -1;
  }
  snprintf(path, sizeof path, "%s/llmesh.db", o->data_dir);
  if (store_open(&ctl->store, path, err, sizeof err) < 0) {
    LOG_ERROR(NULL, "store_open_failed", LF_S("error", err));
    return -1;
  }
  return control_load_config(ctl, o);
}

/* ------------------------------------------------------------------ loop callbacks */

static void control_publish(control_t *ctl, const char *why);

/* ------------------------------------------------------------------ health */

static int control_find_dep(const control_t *ctl, const char *name) {
  for (size_t i = 0; i < ctl->cfg.ndeployments; i++)
    if (!strcmp(ctl->cfg.deployments[i].name, name)) return (int)i;
  return -1;
}

static void control_fill_health(control_t *ctl, control_dep *cd, uint64_t now) {
  Llmesh__DeploymentHealth *h = &cd->health;
  const cbrk *b = &cd->brk;
  cbrk_sums s;
  cbrk_window(b, now, &s);
  llmesh__deployment_health__init(h);
  h->deployment = (char *)b->name;
  h->state = (Llmesh__CircuitState)cbrk_reported_state(b);
  h->weight_milli = b->weight_milli;
  h->open_remaining_ms = cbrk_open_remaining_ms(b, now);
  h->probe_share_milli = h->state == LLMESH__CIRCUIT_STATE__CIRCUIT_HALF_OPEN ? ctl->brk_params.probe_share_milli : 0;
  h->cooldown_remaining_ms = cbrk_cooldown_remaining_ms(b, now);
  h->credential_failed = b->credential_failed;
  h->latency_ewma_ms = (uint32_t)(b->latency_ewma_ms + 0.5);
  h->rpm_used = (uint32_t)(s.requests60 > UINT32_MAX ? UINT32_MAX : s.requests60);
  h->tpm_used = (uint32_t)(s.tokens60 > UINT32_MAX ? UINT32_MAX : s.tokens60);
  h->reason = (char *)b->reason;
}

static void control_log_event(const control_dep *cd, int ev, uint64_t now) {
  const cbrk *b = &cd->brk;
  cbrk_sums s;
  cbrk_window(b, now, &s);
  if (ev & CBRK_EV_CRED_FAILED)
    LOG_ERROR(NULL, "credential_failed", LF_S("deployment", b->name),
              LF_S("reason", "the provider refused the credential (401/403)"));
  if (ev & CBRK_EV_CRED_OK) LOG_INFO(NULL, "credential_ok", LF_S("deployment", b->name));
  if (!(ev & CBRK_EV_STATE) || b->drained) return;
  static const char *const events[] = {"circuit_closed", "circuit_open", "circuit_half_open"};
  const char *event = events[b->state];
  if (b->state == CBRK_OPEN)
    LOG_WARN(NULL, event, LF_S("deployment", b->name), LF_S("reason", b->reason), LF_I("open_ms", b->open_ms),
             LF_I("trip_level", b->level), LF_I("window_ok", s.ok30), LF_I("window_failed", s.fail30));
  else
    LOG_INFO(NULL, event, LF_S("deployment", b->name), LF_S("reason", b->reason),
             LF_I("weight_milli", b->weight_milli));
}

/* After events: refresh the published list; bump and publish at once on a change. */
static void control_health_changed(control_t *ctl, int changed, uint64_t now, const char *why) {
  for (size_t i = 0; i < ctl->cfg.ndeployments; i++) {
    control_fill_health(ctl, &ctl->deps[i], now);
    if (changed) ctl->deps[i].published_weight = ctl->deps[i].brk.weight_milli;
  }
  if (!changed) return;
  ctl->meta.health_version++;
  control_publish(ctl, why);
}

/* Weights compare latency within a group, so they run over a contiguous copy. */
static void control_weights(control_t *ctl, uint64_t now, int *ev) {
  size_t n = ctl->cfg.ndeployments;
  cbrk *set = calloc(n + 1, sizeof *set);
  uint32_t *last = calloc(n + 1, sizeof *last);
  if (set && last) {
    for (size_t i = 0; i < n; i++) {
      set[i] = ctl->deps[i].brk;
      last[i] = ctl->deps[i].published_weight;
    }
    cbrk_weights(set, n, &ctl->brk_params, now, last, ev);
    for (size_t i = 0; i < n; i++) {
      ctl->deps[i].brk.weight_milli = set[i].weight_milli;
      ctl->deps[i].brk.latency_factor = set[i].latency_factor;
    }
  }
  free(set);
  free(last);
}

/* NNG completes TLS handshakes on its own threads and says nothing; its per-listener
 * "auth" / "proto" / "other" counters do. A refused peer (no certificate, or one our CA
 * did not sign) is logged here with the count since the last line: at most one line per
 * CONTROL_TLS_LOG_MS per feed, as a refused worker keeps redialling. */
/* nng_stat_find_listener in NNG 1.5 returns the first listener scope whatever its id, so
 * walk the tree: a "listener" scope whose "id" child is ours. */
static nng_stat *control_listener_stats(nng_stat *st, int id) {
  for (; st; st = nng_stat_next(st)) {
    nng_stat *idst = NULL, *found;
    if (nng_stat_type(st) == NNG_STAT_SCOPE && !strcmp(nng_stat_name(st), "listener"))
      for (idst = nng_stat_child(st); idst && strcmp(nng_stat_name(idst), "id"); idst = nng_stat_next(idst)) {}
    if (idst && (int)nng_stat_value(idst) == id) return st;
    if ((found = control_listener_stats(nng_stat_child(st), id))) return found;
  }
  return NULL;
}

static void control_watch_tls(control_t *ctl, uint64_t now) {
  static const char *const what[2] = {"snapshots", "telemetry"};
  static const char *const counters[] = {"auth", "proto", "other"};
  nng_stat *all;
  if (!feed_tls_enabled() || nng_stats_get(&all) != 0) return;
  for (int i = 0; i < 2; i++) {
    nng_stat *ls = control_listener_stats(all, nng_listener_id(ctl->feed_listeners[i])), *c;
    uint64_t n = 0;
    for (size_t k = 0; ls && k < sizeof counters / sizeof *counters; k++)
      if ((c = nng_stat_find(ls, counters[k]))) n += nng_stat_value(c);
    if (n <= ctl->tls_rejected[i] || (ctl->tls_logged_ms[i] && now - ctl->tls_logged_ms[i] < CONTROL_TLS_LOG_MS))
      continue;
    LOG_WARN(NULL, "feed_tls_handshake_failed", LF_S("channel", what[i]), LF_I("failures", n - ctl->tls_rejected[i]),
             LF_S("why", "peer without a certificate signed by --tls-ca, or not speaking TLS"));
    ctl->tls_rejected[i] = n;
    ctl->tls_logged_ms[i] = now;
  }
  nng_stats_free(all);
}

static void on_tick(uv_timer_t *t) {
  control_t *ctl = container_of(t, control_t, tick);
  uint64_t now = util_now_ms();
  size_t n = ctl->cfg.ndeployments;
  int changed = 0;
  int *ev = calloc(n + 1, sizeof *ev);
  if (!ev) return;
  for (size_t i = 0; i < n; i++) {
    cbrk_delta d;
    telemetry_take(&ctl->telemetry, ctl->deps[i].brk.name, &d);
    ev[i] = cbrk_tick(&ctl->deps[i].brk, &ctl->brk_params, now, &d);
  }
  control_weights(ctl, now, ev);
  for (size_t i = 0; i < n; i++) {
    const cbrk *b = &ctl->deps[i].brk;
    control_log_event(&ctl->deps[i], ev[i], now);
    if (ev[i] & CBRK_EV_WEIGHT) /* why traffic moves: one line per republished weight */
      LOG_DEBUG(NULL, "weight", LF_S("deployment", b->name), LF_I("weight_milli", b->weight_milli),
                LF_I("published_milli", ctl->deps[i].published_weight),
                LF_F("latency_ewma_ms", b->latency_ewma_ms), LF_F("latency_factor", b->latency_factor));
    if (ctl->deps[i].brk.half_probe_due) {
      ctl->deps[i].brk.half_probe_due = 0;
      probe_now(ctl->probes, i);
    }
    if (ev[i]) changed = 1;
  }
  free(ev);
  control_health_changed(ctl, changed, now, "health");
  control_watch_tls(ctl, now);
}

static void on_probe_done(size_t idx, const probe_status *st, void *ud) {
  control_t *ctl = ud;
  char err[256] = "";
  control_dep *cd = &ctl->deps[idx];
  uint64_t now = util_now_ms();
  ops_probe row = {.at_ms = util_wall_ms(), .ok = st->ok, .latency_ms = st->latency_ms,
                   .http_status = st->http_status, .error = st->error};
  if (ops_probe_record(store_db(ctl->store), cd->brk.name, &row, err, sizeof err) < 0)
    LOG_WARN(NULL, "probe_record_failed", LF_S("deployment", cd->brk.name), LF_S("error", err));
  LOG_DEBUG(NULL, "probe", LF_S("deployment", cd->brk.name), LF_B("ok", st->ok), LF_I("status", st->http_status),
            LF_S("error", st->error), LF_I("latency_ms", st->latency_ms));
  int ev = cbrk_probe(&cd->brk, &ctl->brk_params, now, st->kind);
  if (!ev) return;
  cbrk_weights(&cd->brk, 1, &ctl->brk_params, now, NULL, NULL); /* OPEN → 0 at once; the tick refines */
  control_log_event(cd, ev, now);
  control_health_changed(ctl, 1, now, "probe");
}

/* admin: drain / undrain. */
static int control_drain(int on, const char *name, const char *reason, const char *actor, char *err,
                         size_t errlen, void *ud) {
  control_t *ctl = ud;
  char why[2 * OPS_TEXT_MAX + 16], dberr[256] = ""; /* why: cut to CBRK_REASON_MAX by cbrk_drain */
  int idx = control_find_dep(ctl, name), was = 1;
  if (idx < 0) {
    snprintf(err, errlen, "unknown deployment '%.128s' (see llmesh-ctl status)", name);
    return ADMIN_E_UNKNOWN;
  }
  int rv = on ? ops_drain(store_db(ctl->store), name, reason, actor, util_wall_ms(), dberr, sizeof dberr)
              : ops_undrain(store_db(ctl->store), name, actor, util_wall_ms(), &was, dberr, sizeof dberr);
  if (rv < 0) {
    LOG_ERROR(NULL, "drain_failed", LF_S("deployment", name), LF_S("error", dberr));
    snprintf(err, errlen, "cannot record the %s: database error", on ? "drain" : "undrain");
    return ADMIN_E_INTERNAL;
  }
  if (on) snprintf(why, sizeof why, "drained by %s%s%s", actor, reason[0] ? ": " : "", reason);
  else snprintf(why, sizeof why, "undrained by %s", actor);
  uint64_t now = util_now_ms();
  control_dep *cd = &ctl->deps[idx];
  cbrk_drain(&cd->brk, now, on, why);
  probe_pause(ctl->probes, (size_t)idx, on);
  cbrk_weights(&cd->brk, 1, &ctl->brk_params, now, NULL, NULL);
  LOG_INFO(NULL, on ? "drained" : "undrained", LF_S("deployment", name), LF_S("actor", actor),
           LF_S("reason", reason), LF_S("state", cbrk_state_name(cbrk_reported_state(&cd->brk))),
           LF_B("was_drained", was));
  control_health_changed(ctl, 1, now, on ? "drain" : "undrain");
  return 0;
}

static void control_load_drain(const ops_drain_row *d, void *ud) {
  control_t *ctl = ud;
  char why[2 * OPS_TEXT_MAX + 16]; /* cut to CBRK_REASON_MAX by cbrk_drain */
  int idx = control_find_dep(ctl, d->deployment);
  if (idx < 0) {
    LOG_WARN(NULL, "drain_unknown_deployment", LF_S("deployment", d->deployment),
             LF_S("hint", "llmesh-ctl undrain it to forget the drain"));
    return;
  }
  snprintf(why, sizeof why, "drained by %s%s%s", d->actor, d->reason[0] ? ": " : "", d->reason);
  cbrk_drain(&ctl->deps[idx].brk, util_now_ms(), 1, why);
  LOG_INFO(NULL, "drained", LF_S("deployment", d->deployment), LF_S("actor", d->actor),
           LF_S("reason", d->reason), LF_S("source", "store"));
}

/* Breakers for every deployment, drains from the store. */
static int control_init_health(control_t *ctl) {
  size_t n = ctl->cfg.ndeployments;
  char err[256] = "";
  ctl->deps = calloc(n + 1, sizeof *ctl->deps);
  ctl->health_ptrs = calloc(n + 1, sizeof *ctl->health_ptrs);
  if (!ctl->deps || !ctl->health_ptrs) return -1;
  cbrk_params_default(&ctl->brk_params, ctl->cfg.router.allowed_fails, ctl->cfg.router.cooldown_ms);
  for (size_t i = 0; i < n; i++) {
    const cfg_deployment *d = &ctl->cfg.deployments[i];
    cbrk_init(&ctl->deps[i].brk, d->name, d->model_group, d->rpm, d->tpm);
    ctl->deps[i].published_weight = ctl->deps[i].brk.weight_milli;
    ctl->health_ptrs[i] = &ctl->deps[i].health;
  }
  if (ops_drains_load(store_db(ctl->store), control_load_drain, ctl, err, sizeof err) < 0) {
    LOG_ERROR(NULL, "drains_load_failed", LF_S("error", err));
    return -1;
  }
  uint64_t now = util_now_ms();
  for (size_t i = 0; i < n; i++) {
    cbrk_weights(&ctl->deps[i].brk, 1, &ctl->brk_params, now, NULL, NULL);
    control_fill_health(ctl, &ctl->deps[i], now);
  }
  ctl->meta.health = ctl->health_ptrs;
  ctl->meta.nhealth = n;
  ctl->meta.health_version = 1;
  return 0;
}

static int control_start_probes(control_t *ctl) {
  const cfg_router *r = &ctl->cfg.router;
  if (!r->probes_enabled) {
    LOG_INFO(NULL, "probes_disabled", LF_S("hint", "general_settings.background_health_checks"));
    return 0;
  }
  if (probe_start(&ctl->probes, &ctl->loop, &ctl->cfg, r->probe_interval_ms, r->probe_timeout_ms,
                  on_probe_done, ctl) < 0)
    return -1;
  for (size_t i = 0; i < ctl->cfg.ndeployments; i++)
    if (ctl->deps[i].brk.drained) probe_pause(ctl->probes, i, 1);
  LOG_INFO(NULL, "probes_started", LF_I("interval_ms", r->probe_interval_ms), LF_I("timeout_ms", r->probe_timeout_ms));
  return 0;
}

/* Status copies: the reason carries its age (DeploymentHealth has no time field). */
static void control_status_health(control_t *ctl, Llmesh__DeploymentStatus *ds, size_t i, uint64_t now) {
  control_dep *cd = &ctl->deps[i];
  const probe_status *ps = probe_last(ctl->probes, i);
  control_fill_health(ctl, cd, now);
  cd->st_health = cd->health;
  if (cd->brk.changed_ms)
    snprintf(cd->st_reason, sizeof cd->st_reason, "%s (%.1f s ago)", cd->brk.reason,
             (double)(now - cd->brk.changed_ms) / 1000.0);
  else
    snprintf(cd->st_reason, sizeof cd->st_reason, "%s", cd->brk.reason);
  cd->st_health.reason = cd->st_reason;
  ds->health = &cd->st_health;
  ds->order = ctl->cfg.deployments[i].order;
  if (!ps) return;
  llmesh__probe_status__init(&cd->st_probe);
  cd->st_probe.at_ms_ago = now > ps->at_ms ? now - ps->at_ms : 0;
  cd->st_probe.ok = ps->ok;
  cd->st_probe.latency_ms = ps->latency_ms;
  cd->st_probe.http_status = ps->http_status;
  cd->st_probe.error = (char *)ps->error;
  cd->st_probe.consecutive_failures = ps->consecutive_failures;
  ds->probe = &cd->st_probe;
}

static void control_publish(control_t *ctl, const char *why) {
  int rv = snap_publish(ctl->pub, &ctl->cfg, &ctl->meta);
  if (rv < 0) {
    ctl->publish_errors++;
    LOG_WARN(NULL, "snapshot_publish_failed", LF_S("reason", why), LF_I("error", rv));
    return;
  }
  LOG_DEBUG(NULL, "snapshot_published", LF_S("reason", why), LF_I("epoch", ctl->meta.epoch),
            LF_I("version", ctl->meta.version));
}

static void on_republish(uv_timer_t *t) {
  control_publish(container_of(t, control_t, republish), "periodic");
}

static void on_subscriber_joined(uv_async_t *a) {
  control_publish(container_of(a, control_t, subscriber_joined), "subscriber_joined");
}

static void on_pub_pipe(nng_pipe p, nng_pipe_ev ev, void *arg) { /* NNG thread */
  control_t *ctl = arg;
  atomic_fetch_add(&ctl->pipe_cb_busy, 1);
  if (atomic_load(&ctl->pub_open)) uv_async_send(&ctl->subscriber_joined);
  atomic_fetch_sub(&ctl->pipe_cb_busy, 1);
}

static void on_telemetry(nng_msg *msg, void *arg) { /* loop thread */
  control_t *ctl = arg;
  const char *reason = NULL;
  uint64_t now = util_now_ms();
  size_t before = ctl->telemetry.nworkers;
  int rv = telemetry_ingest(&ctl->telemetry, nng_msg_body(msg), nng_msg_len(msg), now, &reason);
  nng_msg_free(msg);
  LOG_DEBUG(NULL, "telemetry_received", LF_I("rv", rv), LF_S("reason", reason),
            LF_I("workers", ctl->telemetry.nworkers));
  if (rv == -EINVAL && now - ctl->last_reject_log_ms >= 1000) {
    ctl->last_reject_log_ms = now;
    LOG_WARN(NULL, "telemetry_rejected", LF_S("reason", reason), LF_I("rejected_total", ctl->telemetry.rejected));
  } else if (rv == 0 && ctl->telemetry.nworkers > before) {
    const Llmesh__Telemetry *m = ctl->telemetry.workers[ctl->telemetry.nworkers - 1].last;
    LOG_INFO(NULL, "worker_joined", LF_S("worker_id", m->worker_id), LF_S("region", m->region),
             LF_S("listen", m->listen), LF_I("pid", m->pid));
  }
}

static int control_status(Llmesh__StatusReport *r, telem_report *st, void *ud) {
  control_t *ctl = ud;
  uint64_t now = util_now_ms();
  r->snapshot_epoch = ctl->meta.epoch;
  r->snapshot_version = ctl->meta.version;
  r->workers_url = ctl->workers_url;
  r->telemetry_url = ctl->telemetry_url;
  r->uptime_ms = now - ctl->started_ms;
  int rv = telemetry_report(&ctl->telemetry, &ctl->cfg, now, r, st);
  for (size_t i = 0; rv == 0 && i < r->n_deployments && i < ctl->cfg.ndeployments; i++)
    control_status_health(ctl, r->deployments[i], i, now);
  return rv;
}

static void control_shutdown(control_t *ctl) {
  if (ctl->stopping) return;
  ctl->stopping = 1;
  util_exit_deadline(3, 0);
  uv_close((uv_handle_t *)&ctl->republish, NULL);
  uv_close((uv_handle_t *)&ctl->tick, NULL);
  probe_stop(ctl->probes);
  ctl->probes = NULL;
  uv_close((uv_handle_t *)&ctl->sigterm, NULL);
  uv_close((uv_handle_t *)&ctl->sigint, NULL);
  nng_bridge_stop(ctl->telemetry_bridge);
  nng_close(ctl->pull);
  admin_stop(ctl->admin);
  ctl->admin = NULL;
  atomic_store(&ctl->pub_open, 0);
  while (atomic_load(&ctl->pipe_cb_busy)) sched_yield(); /* a callback is mid-send */
  nng_close(ctl->pub);
  uv_close((uv_handle_t *)&ctl->subscriber_joined, NULL);
}

static void on_signal(uv_signal_t *s, int signum) {
  control_t *ctl = s->data;
  LOG_INFO(NULL, "shutdown", LF_S("signal", signum == SIGTERM ? "SIGTERM" : "SIGINT"));
  control_shutdown(ctl);
}

/* ------------------------------------------------------------------ sockets */

static int control_listen(nng_socket s, const char *url, size_t recv_max, const char *what, nng_listener *out) {
  nng_listener l;
  int rv = nng_listener_create(&l, s, url);
  if (rv == 0 && recv_max) rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, recv_max);
  if (rv == 0) rv = feed_tls_listener(l, url); /* tls+tcp: client certificate required */
  if (rv == 0) *out = l;
  if (rv == 0) rv = nng_listener_start(l, 0);
  if (rv != 0) LOG_ERROR(NULL, "listen_failed", LF_S("channel", what), LF_S("url", url), LF_S("error", nng_strerror(rv)));
  return rv ? -1 : 0;
}

/* Opens sockets and loop handles. On failure the caller still runs control_shutdown. */
static int control_start_io(control_t *ctl) {
  char err[512] = "";
  admin_ops ops = {.status = control_status, .drain = control_drain, .ud = ctl};
  uv_timer_init(&ctl->loop, &ctl->republish);
  uv_timer_init(&ctl->loop, &ctl->tick);
  uv_signal_init(&ctl->loop, &ctl->sigterm);
  uv_signal_init(&ctl->loop, &ctl->sigint);
  uv_async_init(&ctl->loop, &ctl->subscriber_joined, on_subscriber_joined);
  ctl->sigterm.data = ctl->sigint.data = ctl;
  atomic_store(&ctl->pub_open, 1);
  if (nng_pub0_open(&ctl->pub) != 0 || nng_pull0_open(&ctl->pull) != 0) return -1;
  nng_pipe_notify(ctl->pub, NNG_PIPE_EV_ADD_POST, on_pub_pipe, ctl);
  if (control_listen(ctl->pub, ctl->workers_url, 0, "snapshots", &ctl->feed_listeners[0]) < 0 ||
      control_listen(ctl->pull, ctl->telemetry_url, CONTROL_TELEMETRY_MAX_BYTES, "telemetry",
                     &ctl->feed_listeners[1]) < 0)
    return -1;
  if (nng_bridge_start(&ctl->telemetry_bridge, &ctl->loop, ctl->pull, NNG_BRIDGE_ALL, on_telemetry, ctl) != 0)
    return -1;
  if (admin_start(&ctl->admin, &ctl->loop, ctl->admin_url, &ops, err, sizeof err) < 0) {
    LOG_ERROR(NULL, "listen_failed", LF_S("channel", "admin"), LF_S("error", err));
    return -1;
  }
  uv_signal_start(&ctl->sigterm, on_signal, SIGTERM);
  uv_signal_start(&ctl->sigint, on_signal, SIGINT);
  uv_timer_start(&ctl->republish, on_republish, 0, CONTROL_REPUBLISH_MS);
  uv_timer_start(&ctl->tick, on_tick, CONTROL_TICK_MS, CONTROL_TICK_MS);
  if (control_start_probes(ctl) < 0) {
    LOG_ERROR(NULL, "probes_failed", LF_S("error", "cannot start the health probes"));
    return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ main */

static int control_run(control_t *ctl, const control_opts *o) {
  int status = 1;
  ctl->started_ms = util_now_ms();
  ctl->meta.epoch = util_wall_ms();
  ctl->meta.telemetry_url = ctl->telemetry_url;
  if (control_open_state(ctl, o) < 0 || control_init_health(ctl) < 0) return 1;
  if (uv_loop_init(&ctl->loop) != 0) return 1;
  if (control_start_io(ctl) == 0) {
    status = 0;
    LOG_INFO(NULL, "control_started", LF_I("epoch", ctl->meta.epoch), LF_I("version", ctl->meta.version),
             LF_S("workers_url", ctl->workers_url), LF_S("telemetry_url", ctl->telemetry_url),
             LF_S("admin_url", ctl->admin_url), LF_I("deployments", ctl->cfg.ndeployments),
             LF_I("pid", getpid()), LF_B("tls", feed_tls_enabled()));
    if (!feed_tls_enabled() && (!feed_tls_url_is_local(ctl->workers_url) || !feed_tls_url_is_local(ctl->telemetry_url)))
      LOG_WARN(NULL, "plaintext_feed", LF_S("workers_url", ctl->workers_url), LF_S("telemetry_url", ctl->telemetry_url),
               LF_S("why", "--insecure-plaintext-feed: snapshots with provider secrets cross the network in clear"));
  }
  if (status != 0) control_shutdown(ctl);
  uv_run(&ctl->loop, UV_RUN_DEFAULT);
  int rv = uv_loop_close(&ctl->loop);
  if (rv != 0) {
    LOG_ERROR(NULL, "loop_close_failed", LF_S("error", uv_strerror(rv)));
    status = 1;
  }
  if (status == 0) LOG_INFO(NULL, "control_stopped", LF_I("telemetry_accepted", ctl->telemetry.accepted));
  return status;
}

int main(int argc, char **argv) {
  control_opts o = {0};
  int status = control_parse_args(argc, argv, &o);
  if (status >= 0) return status;
  static control_t ctl; /* zeroed; nng_socket zero = invalid, nng_close ignores it */
  if ((status = control_urls(&ctl, &o)) >= 0) return status;
  log_init("control", o.level);
  umask(077);
  signal(SIGPIPE, SIG_IGN);
  curl_global_init(CURL_GLOBAL_DEFAULT);
  status = control_run(&ctl, &o);
  store_close(ctl.store);
  cfg_free(&ctl.cfg);
  telemetry_free(&ctl.telemetry);
  free(ctl.deps);
  free(ctl.health_ptrs);
  curl_global_cleanup();
  keys_wipe(&ctl.keys);
  feed_tls_fini();
  nng_fini();
  alarm(0); /* teardown finished: the deadline must not cut exit-time checks (LSan) */
  return status;
}
