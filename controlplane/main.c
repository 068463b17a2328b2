/* main.c — llmesh-control: flags, startup, the event loop, clean shutdown.
 *
 * Startup: data dir → secret.key → SQLite (migrate) → import --config (one
 * transaction; version bumps only on a content change) → read the rows back → open
 * NNG sockets → run the loop. The loop republishes the snapshot every 2 s and as
 * soon as a subscriber connects, ingests telemetry, and answers admin requests. */
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
#include <uv.h>

#include "admin.h"
#include "config_import.h"
#include "keys.h"
#include "log.h"
#include "nng_bridge.h"
#include "snapshot.h"
#include "store.h"
#include "telemetry.h"
#include "util.h"

#define CONTROL_REPUBLISH_MS 2000                 /* snapshot period */
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
} control_opts;

typedef struct control {
  uv_loop_t loop;
  uv_timer_t republish;            /* every CONTROL_REPUBLISH_MS */
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
  uint64_t started_ms;             /* monotonic, for uptime */
  uint64_t last_reject_log_ms;     /* rate limit for malformed-telemetry warnings */
  uint64_t publish_errors;         /* failed sends */
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
  return -1;
}

/* "tcp://HOST:PORT" → "tcp://HOST:PORT+1". */
static int derive_telemetry_url(const char *workers, char *out, size_t cap) {
  const char *colon = strrchr(workers, ':');
  char *end;
  if (strncmp(workers, "tcp://", 6) != 0 || !colon || colon < workers + 6) return -1;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port <= 0 || port >= 65535) return -1;
  int n = snprintf(out, cap, "%.*s:%ld", (int)(colon - workers), workers, port + 1);
  return n > 0 && (size_t)n < cap ? 0 : -1;
}

static int control_urls(control_t *ctl, const control_opts *o) {
  snprintf(ctl->workers_url, sizeof ctl->workers_url, "%s", o->workers_url);
  if (o->telemetry_url) {
    snprintf(ctl->telemetry_url, sizeof ctl->telemetry_url, "%s", o->telemetry_url);
  } else if (derive_telemetry_url(o->workers_url, ctl->telemetry_url, sizeof ctl->telemetry_url) < 0) {
    return control_bad_usage("cannot derive a telemetry URL from '%s'; pass --telemetry-url",
                             o->workers_url);
  }
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
  return telemetry_report(&ctl->telemetry, &ctl->cfg, now, r, st);
}

static void control_shutdown(control_t *ctl) {
  if (ctl->stopping) return;
  ctl->stopping = 1;
  util_exit_deadline(3, 0);
  uv_close((uv_handle_t *)&ctl->republish, NULL);
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

static int control_listen(nng_socket s, const char *url, size_t recv_max, const char *what) {
  nng_listener l;
  int rv = nng_listener_create(&l, s, url);
  if (rv == 0 && recv_max) rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, recv_max);
  if (rv == 0) rv = nng_listener_start(l, 0);
  if (rv != 0) LOG_ERROR(NULL, "listen_failed", LF_S("channel", what), LF_S("url", url), LF_S("error", nng_strerror(rv)));
  return rv ? -1 : 0;
}

/* Opens sockets and loop handles. On failure the caller still runs control_shutdown. */
static int control_start_io(control_t *ctl) {
  char err[512] = "";
  admin_ops ops = {.status = control_status, .ud = ctl};
  uv_timer_init(&ctl->loop, &ctl->republish);
  uv_signal_init(&ctl->loop, &ctl->sigterm);
  uv_signal_init(&ctl->loop, &ctl->sigint);
  uv_async_init(&ctl->loop, &ctl->subscriber_joined, on_subscriber_joined);
  ctl->sigterm.data = ctl->sigint.data = ctl;
  atomic_store(&ctl->pub_open, 1);
  if (nng_pub0_open(&ctl->pub) != 0 || nng_pull0_open(&ctl->pull) != 0) return -1;
  nng_pipe_notify(ctl->pub, NNG_PIPE_EV_ADD_POST, on_pub_pipe, ctl);
  if (control_listen(ctl->pub, ctl->workers_url, 0, "snapshots") < 0 ||
      control_listen(ctl->pull, ctl->telemetry_url, CONTROL_TELEMETRY_MAX_BYTES, "telemetry") < 0)
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
  return 0;
}

/* ------------------------------------------------------------------ main */

static int control_run(control_t *ctl, const control_opts *o) {
  int status = 1;
  ctl->started_ms = util_now_ms();
  ctl->meta.epoch = util_wall_ms();
  ctl->meta.telemetry_url = ctl->telemetry_url;
  if (control_open_state(ctl, o) < 0) return 1;
  if (uv_loop_init(&ctl->loop) != 0) return 1;
  if (control_start_io(ctl) == 0) {
    status = 0;
    LOG_INFO(NULL, "control_started", LF_I("epoch", ctl->meta.epoch), LF_I("version", ctl->meta.version),
             LF_S("workers_url", ctl->workers_url), LF_S("telemetry_url", ctl->telemetry_url),
             LF_S("admin_url", ctl->admin_url), LF_I("deployments", ctl->cfg.ndeployments),
             LF_I("pid", getpid()));
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
  status = control_run(&ctl, &o);
  store_close(ctl.store);
  cfg_free(&ctl.cfg);
  telemetry_free(&ctl.telemetry);
  keys_wipe(&ctl.keys);
  nng_fini();
  alarm(0); /* teardown finished: the deadline must not cut exit-time checks (LSan) */
  return status;
}
