/* snapshot_publisher.c — test helper: publishes a Snapshot built from flags, like the
 * control plane would, and (with --telemetry-url) pulls Telemetry and prints one JSON
 * line per message on stdout. Lets the worker be tested without llmesh-control.
 *
 *   llmesh-test-publisher --listen tcp://127.0.0.1:7400 --telemetry-url tcp://127.0.0.1:7401 \
 *     --dep gpt-1,gpt,openai,up-model,http://127.0.0.1:9001/v1[,weight[,timeout_ms[,stream_timeout_ms]]] \
 *     [--fallback gpt=other,third] [--master-key KEY] [--num-retries N] [--version N] */
#include <getopt.h>
#include <nng/nng.h>
#include <nng/protocol/pipeline0/pull.h>
#include <nng/protocol/pubsub0/pub.h>
#include <openssl/evp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "llmesh.pb-c.h"

static volatile sig_atomic_t stop;
static void on_sig(int s) { (void)s; stop = 1; }

static char *field(char **p) {
  char *s = *p, *c;
  if (!s) return NULL;
  if ((c = strchr(s, ','))) { *c = 0; *p = c + 1; } else *p = NULL;
  return s;
}

int main(int argc, char **argv) {
  static const struct option opts[] = {
      {"listen", 1, 0, 'l'}, {"telemetry-url", 1, 0, 't'}, {"dep", 1, 0, 'd'},
      {"fallback", 1, 0, 'f'}, {"master-key", 1, 0, 'k'}, {"num-retries", 1, 0, 'n'},
      {"version", 1, 0, 'v'}, {"help", 0, 0, 'h'}, {0, 0, 0, 0}};
  const char *listen = "tcp://127.0.0.1:7400", *turl = "";
  Llmesh__Deployment *deps[64];
  Llmesh__ModelGroup *groups[64];
  Llmesh__RouterSettings router = LLMESH__ROUTER_SETTINGS__INIT;
  Llmesh__Snapshot snap = LLMESH__SNAPSHOT__INIT;
  unsigned char hash[32];
  int nd = 0, ng = 0, o;
  router.num_retries = 2;
  snap.version = 1;
  snap.epoch = (uint64_t)time(NULL) * 1000;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
      case 'l': listen = optarg; break;
      case 't': turl = optarg; break;
      case 'n': router.num_retries = (uint32_t)atoi(optarg); break;
      case 'v': snap.version = strtoull(optarg, NULL, 10); break;
      case 'k': {
        unsigned int l = 0;
        EVP_Digest(optarg, strlen(optarg), hash, &l, EVP_sha256(), NULL);
        snap.master_key_sha256.data = hash;
        snap.master_key_sha256.len = 32;
        break;
      }
      case 'd': {
        if (nd == 64) return 2;
        Llmesh__Deployment *d = calloc(1, sizeof *d);
        llmesh__deployment__init(d);
        char *p = strdup(optarg), *f;
        d->name = field(&p); d->model_group = field(&p); d->provider = field(&p);
        d->upstream_model = field(&p); d->api_base = field(&p);
        if (!d->api_base) { fprintf(stderr, "--dep needs 5 fields\n"); return 2; }
        d->weight = (f = field(&p)) ? (uint32_t)atoi(f) : 1;
        d->timeout_ms = (f = field(&p)) ? (uint32_t)atoi(f) : 0;
        d->stream_timeout_ms = (f = field(&p)) ? (uint32_t)atoi(f) : 0;
        d->api_key = "sk-test-provider-key";
        d->connect_timeout_ms = 2000;
        deps[nd++] = d;
        int found = 0;
        for (int i = 0; i < ng; i++) found |= strcmp(groups[i]->name, d->model_group) == 0;
        if (!found) {
          Llmesh__ModelGroup *g = calloc(1, sizeof *g);
          llmesh__model_group__init(g);
          g->name = d->model_group;
          groups[ng++] = g;
        }
        break;
      }
      case 'f': {
        char *p = strdup(optarg), *eq = strchr(p, '=');
        if (!eq) return 2;
        *eq = 0;
        Llmesh__ModelGroup *g = NULL;
        for (int i = 0; i < ng; i++) if (strcmp(groups[i]->name, p) == 0) g = groups[i];
        if (!g) { g = calloc(1, sizeof *g); llmesh__model_group__init(g); g->name = p; groups[ng++] = g; }
        char *q = eq + 1, *f;
        g->fallbacks = calloc(16, sizeof(char *));
        while ((f = field(&q)) && g->n_fallbacks < 16) g->fallbacks[g->n_fallbacks++] = f;
        break;
      }
      case 'h': printf("see the comment at the top of snapshot_publisher.c\n"); return 0;
      default: return 2;
    }
  }
  snap.telemetry_url = (char *)turl;
  snap.router = &router;
  router.timeout_ms = 30000;
  snap.deployments = deps;
  snap.n_deployments = (size_t)nd;
  snap.groups = groups;
  snap.n_groups = (size_t)ng;

  nng_socket pub, pull = NNG_SOCKET_INITIALIZER;
  int rv;
  if ((rv = nng_pub0_open(&pub)) || (rv = nng_listen(pub, listen, NULL, 0))) {
    fprintf(stderr, "publisher: %s: %s\n", listen, nng_strerror(rv));
    return 1;
  }
  if (*turl) {
    if ((rv = nng_pull0_open(&pull)) || (rv = nng_listen(pull, turl, NULL, 0))) {
      fprintf(stderr, "publisher: %s: %s\n", turl, nng_strerror(rv));
      return 1;
    }
    nng_socket_set_ms(pull, NNG_OPT_RECVTIMEO, 200);
  }
  signal(SIGTERM, on_sig);
  signal(SIGINT, on_sig);
  setvbuf(stdout, NULL, _IOLBF, 0);
  fprintf(stderr, "publisher: listening on %s, %d deployments\n", listen, nd);
  while (!stop) {
    snap.published_at_ms = (uint64_t)time(NULL) * 1000;
    size_t len = llmesh__snapshot__get_packed_size(&snap);
    nng_msg *m;
    nng_msg_alloc(&m, len);
    llmesh__snapshot__pack(&snap, nng_msg_body(m));
    if (nng_sendmsg(pub, m, 0)) nng_msg_free(m);
    if (*turl) {
      nng_msg *t;
      while (nng_recvmsg(pull, &t, 0) == 0) {
        Llmesh__Telemetry *tm = llmesh__telemetry__unpack(NULL, nng_msg_len(t), nng_msg_body(t));
        if (tm) {
          printf("{\"worker_id\":\"%s\",\"seq\":%llu,\"version\":%llu,\"client_requests\":%llu,\"deployments\":[",
                 tm->worker_id, (unsigned long long)tm->seq, (unsigned long long)tm->snapshot_version,
                 (unsigned long long)tm->client_requests);
          for (size_t i = 0; i < tm->n_deployments; i++) {
            Llmesh__DeploymentStats *s = tm->deployments[i];
            printf("%s{\"name\":\"%s\",\"requests\":%llu,\"success\":%llu,\"server_error\":%llu,\"failovers\":%llu}",
                   i ? "," : "", s->deployment, (unsigned long long)s->requests,
                   (unsigned long long)s->success, (unsigned long long)s->server_error,
                   (unsigned long long)s->failovers);
          }
          printf("]}\n");
          llmesh__telemetry__free_unpacked(tm, NULL);
        }
        nng_msg_free(t);
      }
    } else {
      usleep(200000);
    }
  }
  nng_close(pub);
  if (*turl) nng_close(pull);
  return 0;
}
