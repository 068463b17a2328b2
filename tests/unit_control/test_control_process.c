/* test_control_process.c — llmesh-control as a process, over real sockets:
 * snapshot on SUB (decrypted key, master key hash, fallbacks), telemetry on PUSH
 * (two workers summed, garbage and stale messages ignored), llmesh-ctl status --json
 * and text, a second instance refused, SIGTERM → 0, restart from the database alone
 * (new epoch, same version), SIGINT → 0, llmesh-ctl failing once control is gone.
 *
 * usage: test_control_process LLMESH_CONTROL LLMESH_CTL */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/push.h>
#include <nng/protocol/pubsub0/sub.h>
#include <nng/protocol/reqrep0/req.h>
#include <openssl/sha.h>

#include "histogram.h"
#include "llmesh.pb-c.h"

#define PROVIDER_KEY "sk-e2e-provider-secret-93a1"
#define MASTER_KEY "sk-e2e-master-secret-c4d2"

static const char *control_bin, *ctl_bin;
static char dir[64], data_dir[96], config[128], log_path[128];
static int failures;

#define CHECK(cond, ...)                                                        \
  do {                                                                          \
    if (!(cond)) {                                                              \
      fprintf(stderr, "FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);           \
      fprintf(stderr, __VA_ARGS__);                                             \
      fprintf(stderr, "\n");                                                    \
      failures++;                                                               \
    }                                                                           \
  } while (0)
#define REQUIRE(cond, ...)                                                      \
  do {                                                                          \
    CHECK(cond, __VA_ARGS__);                                                   \
    if (!(cond)) return -1;                                                     \
  } while (0)

static int port_free(int port) {
  int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int ok = bind(fd, (struct sockaddr *)&a, sizeof a) == 0;
  close(fd);
  return ok;
}

/* Two consecutive free ports (snapshots, telemetry = +1). */
static int free_port_pair(void) {
  srand((unsigned)(getpid() ^ time(NULL)));
  for (int i = 0; i < 200; i++) {
    int p = 20000 + rand() % 40000;
    if (port_free(p) && port_free(p + 1)) return p;
  }
  return -1;
}

static pid_t spawn_control(int port, int with_config) {
  char url[64];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
  pid_t pid = fork();
  if (pid == 0) {
    int fd = open(log_path, O_WRONLY | O_CREAT | O_APPEND, 0600);
    dup2(fd, 2);
    if (with_config)
      execl(control_bin, control_bin, "--config", config, "--data-dir", data_dir, "--workers-url", url,
            "--log-level", "debug", (char *)NULL);
    else
      execl(control_bin, control_bin, "--data-dir", data_dir, "--workers-url", url, (char *)NULL);
    _exit(127);
  }
  return pid;
}

static int wait_exit(pid_t pid, int timeout_ms) {
  for (int waited = 0; waited < timeout_ms; waited += 10) {
    int st;
    if (waitpid(pid, &st, WNOHANG) == pid) return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    usleep(10000);
  }
  kill(pid, SIGKILL);
  waitpid(pid, NULL, 0);
  return -1;
}

/* Runs llmesh-ctl with args; returns its exit status and stdout in out. */
static int run_ctl(char *out, size_t cap, const char *args) {
  char cmd[512];
  snprintf(cmd, sizeof cmd, "'%s' --data-dir '%s' %s 2>&1", ctl_bin, data_dir, args);
  FILE *p = popen(cmd, "r");
  size_t n = p ? fread(out, 1, cap - 1, p) : 0;
  out[n] = '\0';
  int st = p ? pclose(p) : -1;
  return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static json_t *status_json(void) {
  static char out[65536];
  if (run_ctl(out, sizeof out, "status --json") != 0) return NULL;
  return json_loads(out, 0, NULL);
}

/* ------------------------------------------------------------------ snapshot */

static Llmesh__Snapshot *recv_snapshot(int port) {
  nng_socket s;
  nng_dialer d;
  nng_msg *m;
  char url[64];
  Llmesh__Snapshot *snap = NULL;
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port);
  nng_sub0_open(&s);
  nng_socket_set(s, NNG_OPT_SUB_SUBSCRIBE, "", 0);
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 5000);
  nng_dialer_create(&d, s, url);
  nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 20);
  nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 100);
  nng_dialer_start(d, NNG_FLAG_NONBLOCK);
  if (nng_recvmsg(s, &m, 0) == 0) {
    snap = llmesh__snapshot__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
    nng_msg_free(m);
  }
  /* Left open on purpose: NNG 1.5.2's nng_close can deadlock on a SUB dialer
   * (nanomsg/nng#1543); the socket dies with this short-lived test process. */
  return snap;
}

static int check_snapshot(const Llmesh__Snapshot *s, int port) {
  char url[64];
  uint8_t sha[32];
  REQUIRE(s != NULL, "no snapshot within 5 s");
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port + 1);
  CHECK(s->epoch > 0, "epoch %llu", (unsigned long long)s->epoch);
  CHECK(s->version == 1, "version %llu", (unsigned long long)s->version);
  CHECK(!strcmp(s->telemetry_url, url), "telemetry_url %s", s->telemetry_url);
  SHA256((const unsigned char *)MASTER_KEY, strlen(MASTER_KEY), sha);
  CHECK(s->master_key_sha256.len == 32 && !memcmp(s->master_key_sha256.data, sha, 32), "master key hash");
  REQUIRE(s->router && s->n_deployments == 3 && s->n_groups == 2, "shape: %zu deployments, %zu groups",
          s->n_deployments, s->n_groups);
  CHECK(s->router->timeout_ms == 30000 && s->router->num_retries == 2, "router %u %u",
        s->router->timeout_ms, s->router->num_retries);
  const Llmesh__Deployment *d = s->deployments[0];
  CHECK(!strcmp(d->name, "gpt-4-1") && !strcmp(d->api_key, PROVIDER_KEY) && d->weight == 5 &&
            !strcmp(d->api_base, "http://127.0.0.1:9001/v1") && d->connect_timeout_ms == 5000,
        "deployment 0: %s %s %u", d->name, d->api_key, d->weight);
  CHECK(!strcmp(s->deployments[2]->name, "claude-main") && !strcmp(s->deployments[2]->provider, "anthropic"),
        "deployment 2: %s", s->deployments[2]->name);
  CHECK(s->groups[0]->n_fallbacks == 1 && !strcmp(s->groups[0]->fallbacks[0], "claude"), "fallbacks");
  return 0;
}

/* ------------------------------------------------------------------ telemetry */

static int push(nng_socket s, const Llmesh__Telemetry *t) {
  nng_msg *m;
  nng_msg_alloc(&m, llmesh__telemetry__get_packed_size(t));
  llmesh__telemetry__pack(t, nng_msg_body(m));
  int rv = nng_sendmsg(s, m, 0);
  if (rv) nng_msg_free(m);
  return rv;
}

static void send_worker(nng_socket s, const char *id, uint64_t seq, uint64_t requests, int bucket) {
  Llmesh__Telemetry t = LLMESH__TELEMETRY__INIT;
  Llmesh__DeploymentStats ds = LLMESH__DEPLOYMENT_STATS__INIT, *dsp = &ds;
  uint64_t buckets[HIST_BUCKETS] = {0};
  buckets[bucket] = requests;
  t.worker_id = (char *)id;
  t.region = "local";
  t.listen = "127.0.0.1:4000";
  t.seq = seq;
  t.pid = 42;
  t.client_requests = requests;
  t.snapshot_epoch = 1;
  t.snapshot_version = 1;
  t.n_deployments = 1;
  t.deployments = &dsp;
  ds.deployment = "gpt-4-1";
  ds.requests = requests;
  ds.success = requests - 1;
  ds.server_error = 1;
  ds.prompt_tokens = 10 * requests;
  ds.n_latency_buckets = HIST_BUCKETS;
  ds.latency_buckets = buckets;
  CHECK(push(s, &t) == 0, "push %s", id);
}

static int send_telemetry(int port) {
  nng_socket s;
  nng_msg *m;
  char url[64];
  snprintf(url, sizeof url, "tcp://127.0.0.1:%d", port + 1);
  nng_push0_open(&s);
  nng_socket_set_ms(s, NNG_OPT_SENDTIMEO, 3000);
  REQUIRE(nng_dial(s, url, NULL, 0) == 0, "dial telemetry %s", url);
  nng_msg_alloc(&m, 0);
  nng_msg_append(m, "\xff\xff\xff garbage", 12); /* malformed: ignored, logged */
  CHECK(nng_sendmsg(s, m, 0) == 0, "send garbage");
  send_worker(s, "w1", 5, 3, 3);    /* 3 requests ≤ 10 ms */
  send_worker(s, "w2", 1, 4, 4);    /* 4 requests ≤ 25 ms */
  send_worker(s, "w1", 4, 1000, 3); /* older seq: ignored */
  usleep(100000);                   /* let the queue drain before close */
  nng_close(s);
  return 0;
}

static int check_status(int port) {
  json_t *j = NULL;
  for (int i = 0; i < 300; i++) { /* ≤ 3 s for both workers to show up */
    json_decref(j);
    j = status_json();
    if (j && json_array_size(json_object_get(j, "workers")) == 2) break;
    usleep(10000);
  }
  REQUIRE(j != NULL, "llmesh-ctl status --json failed");
  json_t *snap = json_object_get(j, "snapshot"), *deps = json_object_get(j, "deployments"),
         *workers = json_object_get(j, "workers");
  CHECK(json_integer_value(json_object_get(snap, "version")) == 1, "version");
  CHECK(json_integer_value(json_object_get(snap, "epoch")) > 0, "epoch");
  CHECK(json_is_integer(json_object_get(j, "uptime_ms")), "uptime_ms");
  CHECK(json_array_size(workers) == 2, "workers %zu", json_array_size(workers));
  /* Arrival order between messages is not a contract (workers are separate sockets):
   * find w1 by id. */
  json_t *w = json_array_get(workers, 0);
  if (strcmp(json_string_value(json_object_get(w, "worker_id")), "w1") != 0) w = json_array_get(workers, 1);
  CHECK(!strcmp(json_string_value(json_object_get(w, "worker_id")), "w1"), "w1 listed");
  CHECK(json_integer_value(json_object_get(w, "client_requests")) == 3, "w1 client_requests");
  CHECK(json_integer_value(json_object_get(w, "pid")) == 42, "pid");
  CHECK(json_is_integer(json_object_get(w, "last_heard_ms_ago")), "last_heard_ms_ago");
  REQUIRE(json_array_size(deps) == 3, "deployments %zu", json_array_size(deps));
  json_t *d = json_array_get(deps, 0);
  CHECK(!strcmp(json_string_value(json_object_get(d, "name")), "gpt-4-1"), "name");
  CHECK(json_integer_value(json_object_get(d, "requests")) == 7, "requests summed over workers: %lld",
        (long long)json_integer_value(json_object_get(d, "requests")));
  CHECK(json_integer_value(json_object_get(d, "success")) == 5, "success");
  CHECK(json_integer_value(json_object_get(d, "server_error")) == 2, "server_error");
  CHECK(json_integer_value(json_object_get(d, "prompt_tokens")) == 70, "prompt_tokens");
  double p50 = json_number_value(json_object_get(d, "p50_ms")), p99 = json_number_value(json_object_get(d, "p99_ms"));
  CHECK(p50 > 10 && p50 <= 25 && p99 > 10 && p99 <= 25, "p50 %f p99 %f", p50, p99);
  CHECK(json_integer_value(json_object_get(json_array_get(deps, 1), "requests")) == 0, "untouched deployment");
  static const char *const keys[] = {"name", "model_group", "provider", "upstream_model", "weight",
      "requests", "success", "client_error", "rate_limited", "server_error", "timeout", "connect_error",
      "other_error", "cancelled", "failovers", "prompt_tokens", "completion_tokens", "p50_ms", "p99_ms",
      /* issue 5: counters 15-23, priority order, circuit health and the last probe */
      "order", "auth_error", "in_flight", "local_trips", "retries", "retry_budget_exhausted", "cooldowns",
      "hedges", "midstream_continued", "effective_weight", "probe", "circuit", "circuit_reason",
      "weight_milli", "open_remaining_ms", "probe_share_milli", "cooldown_remaining_ms", "credential_failed",
      "latency_ewma_ms", "rpm_used", "tpm_used"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
    CHECK(json_object_get(d, keys[i]) != NULL, "deployment field %s", keys[i]);
  CHECK(json_object_size(d) == sizeof keys / sizeof keys[0], "deployment has extra fields");
  json_decref(j);

  static char out[65536];
  CHECK(run_ctl(out, sizeof out, "status") == 0, "text status: %s", out);
  CHECK(strstr(out, "gpt-4-1") && strstr(out, "WORKERS (2)") && strstr(out, "claude-main"), "text: %s", out);
  return 0;
}

/* ------------------------------------------------------------------ admin errors */

/* Sends body as an admin request; returns the unpacked response or NULL. */
static Llmesh__AdminResponse *admin_call(const void *body, size_t len) {
  nng_socket s;
  nng_msg *m;
  char url[128];
  Llmesh__AdminResponse *resp = NULL;
  snprintf(url, sizeof url, "ipc://%s/admin.sock", data_dir);
  nng_req0_open(&s);
  nng_socket_set_ms(s, NNG_OPT_RECVTIMEO, 3000);
  if (nng_dial(s, url, NULL, 0) == 0 && nng_msg_alloc(&m, 0) == 0) {
    nng_msg_append(m, body, len);
    if (nng_sendmsg(s, m, 0) != 0) nng_msg_free(m);
    else if (nng_recvmsg(s, &m, 0) == 0) {
      resp = llmesh__admin_response__unpack(NULL, nng_msg_len(m), nng_msg_body(m));
      nng_msg_free(m);
    }
  }
  nng_close(s);
  return resp;
}

static int check_admin_errors(void) {
  Llmesh__AdminRequest req = LLMESH__ADMIN_REQUEST__INIT;
  uint8_t buf[64];
  req.command = "bogus";
  size_t n = llmesh__admin_request__pack(&req, buf);
  Llmesh__AdminResponse *r = admin_call(buf, n);
  REQUIRE(r != NULL, "no answer to an unknown command");
  CHECK(r->code != 0 && strstr(r->error, "unknown command") && !r->status, "code %d error '%s'", r->code, r->error);
  llmesh__admin_response__free_unpacked(r, NULL);
  r = admin_call("\xff\xff\xff", 3);
  REQUIRE(r != NULL, "no answer to a malformed request");
  CHECK(r->code != 0 && strstr(r->error, "malformed"), "code %d error '%s'", r->code, r->error);
  llmesh__admin_response__free_unpacked(r, NULL);
  req.command = "status";
  n = llmesh__admin_request__pack(&req, buf);
  r = admin_call(buf, n);
  REQUIRE(r != NULL, "no answer to status");
  CHECK(r->code == 0 && r->status && r->status->n_deployments == 3, "status over raw REQ");
  llmesh__admin_response__free_unpacked(r, NULL);
  return 0;
}

/* ------------------------------------------------------------------ main */

static int file_has(const char *path, const char *needle) {
  static char buf[8 << 20];
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  size_t n = fread(buf, 1, sizeof buf, f);
  fclose(f);
  return memmem(buf, n, needle, strlen(needle)) != NULL;
}

static void write_config(void) {
  FILE *f = fopen(config, "w");
  fprintf(f,
          "model_list:\n"
          "  - model_name: gpt-4\n"
          "    litellm_params:\n"
          "      model: openai/gpt-4o\n"
          "      api_base: http://127.0.0.1:9001/v1\n"
          "      api_key: " PROVIDER_KEY "\n"
          "      weight: 5\n"
          "  - model_name: gpt-4\n"
          "    params: {model: gpt-4o-mini, api_base: http://127.0.0.1:9002/v1}\n"
          "  - model_name: claude\n"
          "    litellm_params: {model: anthropic/claude-3, api_base: http://127.0.0.1:9003/v1}\n"
          "    model_info: {id: claude-main}\n"
          "router_settings: {num_retries: 2, timeout: 30, fallbacks: [{gpt-4: [claude]}]}\n"
          "general_settings: {master_key: " MASTER_KEY "}\n");
  fclose(f);
}

static int scenario(void) {
  int port = free_port_pair();
  REQUIRE(port > 0, "no free ports");
  pid_t pid = spawn_control(port, 1);
  Llmesh__Snapshot *snap = recv_snapshot(port);
  check_snapshot(snap, port);
  uint64_t epoch1 = snap ? snap->epoch : 0;
  if (snap) llmesh__snapshot__free_unpacked(snap, NULL);
  send_telemetry(port);
  check_status(port);
  check_admin_errors();

  struct stat st;
  CHECK(stat(data_dir, &st) == 0 && (st.st_mode & 0777) == 0700, "data dir mode %o", st.st_mode & 0777);
  char path[160];
  snprintf(path, sizeof path, "%s/llmesh.db", data_dir);
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "db mode %o", st.st_mode & 0777);
  snprintf(path, sizeof path, "%s/admin.sock", data_dir);
  CHECK(stat(path, &st) == 0 && (st.st_mode & 0777) == 0600, "admin.sock mode %o", st.st_mode & 0777);

  int port2 = free_port_pair(); /* same data dir: the admin socket is taken */
  pid_t dup = spawn_control(port2, 0);
  CHECK(wait_exit(dup, 5000) == 1, "second control on the same data dir must exit 1");

  kill(pid, SIGTERM);
  CHECK(wait_exit(pid, 5000) == 0, "SIGTERM → exit 0");
  snprintf(path, sizeof path, "%s/llmesh.db", data_dir);
  CHECK(!file_has(path, PROVIDER_KEY) && !file_has(path, MASTER_KEY), "plaintext secret in the db");
  CHECK(file_has(path, "gpt-4o-mini"), "db does not hold the rows?");

  /* restart without --config: the database is the source of truth */
  pid = spawn_control(port, 0);
  snap = recv_snapshot(port);
  CHECK(snap && snap->version == 1 && snap->epoch > epoch1 && snap->n_deployments == 3,
        "restart: version %llu epoch %llu", snap ? (unsigned long long)snap->version : 0ULL,
        snap ? (unsigned long long)snap->epoch : 0ULL);
  if (snap) llmesh__snapshot__free_unpacked(snap, NULL);
  kill(pid, SIGINT);
  CHECK(wait_exit(pid, 5000) == 0, "SIGINT → exit 0");

  static char out[4096];
  CHECK(run_ctl(out, sizeof out, "status --json") == 1, "ctl with control gone must exit 1");
  CHECK(strstr(out, "llmesh-control") != NULL, "ctl message: %s", out);
  return 0;
}

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: %s LLMESH_CONTROL LLMESH_CTL\n", argv[0]);
    return 2;
  }
  control_bin = argv[1];
  ctl_bin = argv[2];
  signal(SIGPIPE, SIG_IGN);
  snprintf(dir, sizeof dir, "/tmp/llmesh-e2e-XXXXXX");
  if (!mkdtemp(dir)) return 1;
  snprintf(data_dir, sizeof data_dir, "%s/data", dir);
  snprintf(config, sizeof config, "%s/config.yaml", dir);
  snprintf(log_path, sizeof log_path, "%s/control.log", dir);
  write_config();
  scenario();
  if (failures) { /* show what control said */
    char cmd[256];
    snprintf(cmd, sizeof cmd, "cat '%s' >&2", log_path);
    if (system(cmd) != 0) fprintf(stderr, "(no control log)\n");
  }
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  if (system(cmd) != 0) fprintf(stderr, "cannot remove %s\n", dir);
  /* No nng_fini(): it closes the snapshot subscribers left open on purpose above. */
  fprintf(stderr, "%d failure(s)\n", failures);
  return failures ? 1 : 0;
}
