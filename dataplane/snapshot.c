/* snapshot.c — receive, build and swap routing snapshots (see snapshot.h). */
#include "snapshot.h"

#include <curl/curl.h>
#include <errno.h>
#include <nng/nng.h>
#include <nng/protocol/pubsub0/sub.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "feed_tls.h"
#include "gcp_auth.h"
#include "log.h"
#include "metrics.h"
#include "nng_bridge.h"
#include "provider.h"
#include "route.h"

#define SNAPSHOT_MAX_BYTES (64u << 20) /* NNG_OPT_RECVMAXSZ for the SUB dialer */
#define DEFAULT_TIMEOUT_MS 600000      /* litellm's default request timeout */
#define DEFAULT_CONNECT_MS 5000
#define DEFAULT_RETRY_BACKOFF_MS 100     /* config_import.h's defaults, for an old control plane */
#define DEFAULT_RETRY_BACKOFF_MAX_MS 2000
#define DEFAULT_MAX_RETRY_AFTER_MS 10000

static snapshot *current;              /* the slot requests take references from */
static nng_socket sub_sock = NNG_SOCKET_INITIALIZER;
static nng_bridge *sub_bridge;
static snapshot_applied_cb applied_cb;
static void *applied_ud;
static uv_loop_t *snap_loop;           /* its clock starts the health's relative durations */

static uint32_t hash_str(const char *s) {
  uint32_t h = 2166136261u;
  while (*s) h = (h ^ (unsigned char)*s++) * 16777619u;
  return h;
}

int snapshot_group_find(const snapshot *s, const char *name) {
  if (!s || !s->gtab) return -1;
  for (uint32_t i = hash_str(name) & s->gtab_mask;; i = (i + 1) & s->gtab_mask) {
    int g = s->gtab[i];
    if (g < 0) return -1;
    if (strcmp(s->groups[g].name, name) == 0) return g;
  }
}

static void snapshot_free(snapshot *s) {
  for (int i = 0; i < s->ndeps; i++) {
    free(s->deps[i].url);
    free(s->deps[i].embed_url);
    free(s->deps[i].api_base);
    curl_slist_free_all(s->deps[i].hdrs_json);
    curl_slist_free_all(s->deps[i].hdrs_stream);
    gcp_auth_put(s->deps[i].gcp);
  }
  for (int i = 0; i < s->ngroups; i++) {
    free(s->groups[i].deps);
    free(s->groups[i].fallbacks);
    free(s->groups[i].cw_fallbacks);
    free(s->groups[i].cp_fallbacks);
  }
  free(s->deps);
  free(s->groups);
  free(s->gtab);
  if (s->pb) llmesh__snapshot__free_unpacked(s->pb, NULL);
  free(s);
}

snapshot *snapshot_ref(snapshot *s) {
  s->refs++;
  return s;
}

void snapshot_unref(snapshot *s) {
  if (s && --s->refs == 0) snapshot_free(s);
}

/* Adds a group by name if missing; returns its index or -1 on ENOMEM. */
static int group_add(snapshot *s, const char *name, int *cap) {
  int g = snapshot_group_find(s, name);
  if (g >= 0) return g;
  if (s->ngroups == *cap) return -1; /* sized in advance; cannot happen */
  g = s->ngroups++;
  s->groups[g].name = name;
  uint32_t i = hash_str(name) & s->gtab_mask;
  while (s->gtab[i] >= 0) i = (i + 1) & s->gtab_mask;
  s->gtab[i] = g;
  return g;
}

static int dep_headers(snap_dep *d, const char *api_key) {
  char auth[1024];
  struct curl_slist *h = NULL, *t;
  for (int stream = 0; stream < 2; stream++) {
    h = curl_slist_append(NULL, "Content-Type: application/json");
    if (h && api_key && *api_key) {
      snprintf(auth, sizeof auth, "Authorization: Bearer %s", api_key);
      if (!(t = curl_slist_append(h, auth))) goto fail;
      h = t;
    }
    if (h && stream) { if (!(t = curl_slist_append(h, "Accept: text/event-stream"))) goto fail; h = t; }
    if (h) { if (!(t = curl_slist_append(h, "Expect:"))) goto fail; h = t; } /* no 100-continue stall */
    if (!h) return -ENOMEM;
    if (stream) d->hdrs_stream = h;
    else d->hdrs_json = h;
  }
  return 0;
fail:
  curl_slist_free_all(h);
  return -ENOMEM;
}

/* Families that speak OpenAI chat completions at api_base + /chat/completions: the
 * passthrough path (no parse, model rewritten in place). */
static const char *const openai_families[] = {
    "openai", "groq", "mistral", "deepseek", "together_ai", "openrouter", "fireworks_ai",
    "perplexity", "xai", "vllm", "hosted_vllm", "custom_openai", "openai_compatible",
    "lm_studio", NULL,
};

static int is_openai_family(const char *p) {
  if (!*p) return 1; /* an old control plane: everything was openai */
  for (int i = 0; openai_families[i]; i++)
    if (!strcmp(p, openai_families[i])) return 1;
  return 0;
}

static int dep_build(snapshot *s, snap_dep *d, const Llmesh__Deployment *pd) {
  d->name = pd->name;
  d->group = pd->model_group;
  d->provider = pd->provider;
  d->upstream_model = *pd->upstream_model ? pd->upstream_model : pd->model_group;
  d->weight = pd->weight ? pd->weight : 1;
  d->timeout_ms = pd->timeout_ms ? pd->timeout_ms : s->timeout_ms;
  d->stream_timeout_ms = pd->stream_timeout_ms ? pd->stream_timeout_ms : d->timeout_ms;
  d->connect_timeout_ms = pd->connect_timeout_ms ? pd->connect_timeout_ms : DEFAULT_CONNECT_MS;
  d->api_key = pd->api_key ? pd->api_key : "";
  d->api_version = pd->api_version ? pd->api_version : "";
  d->aws_access_key_id = pd->aws_access_key_id ? pd->aws_access_key_id : "";
  d->aws_secret_access_key = pd->aws_secret_access_key ? pd->aws_secret_access_key : "";
  d->aws_session_token = pd->aws_session_token ? pd->aws_session_token : "";
  d->aws_region = pd->aws_region ? pd->aws_region : "";
  d->gcp_project = pd->gcp_project ? pd->gcp_project : "";
  d->gcp_location = pd->gcp_location ? pd->gcp_location : "";
  if (pd->gcp_credentials && *pd->gcp_credentials &&
      !(d->gcp = gcp_auth_get(pd->gcp_credentials, strlen(pd->gcp_credentials), d->name))) {
    d->gcp_broken = 1;
    LOG_ERROR(NULL, "gcp_credentials_unusable", LF_S("deployment", d->name),
              LF_S("why", "service-account key rejected or out of memory; attempts fail as auth"));
  }
  size_t bl = strlen(pd->api_base);
  while (bl && pd->api_base[bl - 1] == '/') bl--;
  if (!(d->api_base = strndup(pd->api_base, bl))) return -ENOMEM;
  if (!(d->stats = metrics_dep_get(d->name, d->group))) return -ENOMEM;
  if (!(d->st = breaker_get(d->name))) return -ENOMEM;
  d->order = pd->order;
  d->rpm = pd->rpm;
  d->tpm = pd->tpm;
  d->input_cost = pd->input_cost_per_token > 0 ? pd->input_cost_per_token : 0;
  d->output_cost = pd->output_cost_per_token > 0 ? pd->output_cost_per_token : 0;
  d->supports_prefill = pd->supports_prefill;
  if (!is_openai_family(d->provider)) {
    d->ops = provider_find(d->provider); /* per-attempt URL and headers (attempt.c) */
    d->unsupported = d->ops == NULL;
    return 0;
  }
  if (!(d->url = malloc(bl + sizeof "/chat/completions"))) return -ENOMEM;
  memcpy(d->url, pd->api_base, bl);
  memcpy(d->url + bl, "/chat/completions", sizeof "/chat/completions");
  if (!(d->embed_url = malloc(bl + sizeof "/embeddings"))) return -ENOMEM;
  memcpy(d->embed_url, pd->api_base, bl);
  memcpy(d->embed_url + bl, "/embeddings", sizeof "/embeddings");
  return dep_headers(d, pd->api_key);
}

/* Router settings; zero fields (an old control plane) take the defaults. */
static void router_build(snapshot *s, const Llmesh__RouterSettings *r) {
  s->num_retries = r ? r->num_retries : 0;
  s->timeout_ms = r && r->timeout_ms ? r->timeout_ms : DEFAULT_TIMEOUT_MS;
  s->retry_backoff_ms = r && r->retry_backoff_ms ? r->retry_backoff_ms : DEFAULT_RETRY_BACKOFF_MS;
  s->retry_backoff_max_ms = r && r->retry_backoff_max_ms ? r->retry_backoff_max_ms
                                                         : DEFAULT_RETRY_BACKOFF_MAX_MS;
  if (s->retry_backoff_max_ms < s->retry_backoff_ms) s->retry_backoff_max_ms = s->retry_backoff_ms;
  s->total_timeout_ms = r ? r->total_timeout_ms : 0;
  s->max_retry_after_ms = r && r->max_retry_after_ms ? r->max_retry_after_ms : DEFAULT_MAX_RETRY_AFTER_MS;
  if (!r) return; /* brk: zero fields are breaker.c's defaults */
  s->brk.local_trip_failures = r->local_trip_failures;
  s->brk.local_cooldown_ms = r->local_cooldown_ms;
  s->brk.cooldown_ms = r->cooldown_ms;
  s->brk.retry_budget_percent = r->retry_budget_percent;
  s->brk.retry_budget_min_per_s = r->retry_budget_min_per_s;
}

/* "error" turns continuation off; "continue" and "" (unset, an old control plane) keep it. */
static int mid_stream_mode(const char *group_mode, const char *router_mode) {
  const char *m = group_mode && *group_mode ? group_mode : router_mode;
  return !(m && !strcmp(m, "error"));
}

/* A list of group names → indices into snapshot.groups; unknown names and g itself dropped. */
static int fallbacks_build(snapshot *s, int g, char **names, size_t n, int **out, int *nout) {
  if (!n) return 0; /* a group listed twice: the last non-empty list wins */
  free(*out);
  *out = NULL;
  *nout = 0;
  if (!(*out = malloc(n * sizeof(int)))) return -ENOMEM;
  for (size_t k = 0; k < n; k++) {
    int fb = snapshot_group_find(s, names[k]);
    if (fb >= 0 && fb != g) (*out)[(*nout)++] = fb;
  }
  return 0;
}

/* Per-group settings of ModelGroup pg (strategy, hedging, mid-stream, the three fallback lists). */
static int group_settings(snapshot *s, const Llmesh__ModelGroup *pg) {
  int g = snapshot_group_find(s, pg->name);
  if (g < 0) return 0;
  snap_group *sg = &s->groups[g];
  const Llmesh__RouterSettings *r = s->pb->router;
  if (pg->routing_strategy && *pg->routing_strategy) sg->strategy = route_strategy_parse(pg->routing_strategy);
  sg->hedge = pg->hedge;
  sg->mid_stream_continue = mid_stream_mode(pg->mid_stream_fallback, r ? r->mid_stream_fallback : NULL);
  if (fallbacks_build(s, g, pg->fallbacks, pg->n_fallbacks, &sg->fallbacks, &sg->nfallbacks) ||
      fallbacks_build(s, g, pg->context_window_fallbacks, pg->n_context_window_fallbacks,
                      &sg->cw_fallbacks, &sg->ncw_fallbacks) ||
      fallbacks_build(s, g, pg->content_policy_fallbacks, pg->n_content_policy_fallbacks,
                      &sg->cp_fallbacks, &sg->ncp_fallbacks))
    return -ENOMEM;
  return 0;
}

snapshot *snapshot_build(Llmesh__Snapshot *pb) {
  snapshot *s = calloc(1, sizeof *s);
  if (!s) { llmesh__snapshot__free_unpacked(pb, NULL); return NULL; }
  s->refs = 1;
  s->pb = pb;
  s->epoch = pb->epoch;
  s->version = pb->version;
  s->telemetry_url = pb->telemetry_url ? pb->telemetry_url : "";
  if (pb->master_key_sha256.len) {
    s->has_master_key = 1; /* a hash of the wrong size matches nothing: fail closed */
    if (pb->master_key_sha256.len == 32) memcpy(s->master_key_sha256, pb->master_key_sha256.data, 32);
  }
  router_build(s, pb->router);

  int gcap = (int)(pb->n_groups + pb->n_deployments);
  uint32_t tsize = 8;
  while (tsize < (uint32_t)gcap * 2) tsize *= 2;
  s->gtab = malloc(tsize * sizeof *s->gtab);
  s->groups = calloc((size_t)gcap + 1, sizeof *s->groups);
  s->deps = calloc(pb->n_deployments + 1, sizeof *s->deps);
  if (!s->gtab || !s->groups || !s->deps) goto fail;
  memset(s->gtab, 0xff, tsize * sizeof *s->gtab);
  s->gtab_mask = tsize - 1;

  for (size_t i = 0; i < pb->n_groups; i++)
    if (*pb->groups[i]->name && group_add(s, pb->groups[i]->name, &gcap) < 0) goto fail;
  for (size_t i = 0; i < pb->n_deployments; i++) {
    const Llmesh__Deployment *pd = pb->deployments[i];
    if (!*pd->name || !*pd->model_group) continue;
    snap_dep *d = &s->deps[s->ndeps++];
    if (dep_build(s, d, pd)) goto fail;
    if ((d->group_idx = group_add(s, d->group, &gcap)) < 0) goto fail;
  }
  for (int i = 0; i < s->ndeps; i++) { /* group → deployment indices, config order */
    snap_group *g = &s->groups[s->deps[i].group_idx];
    int *p = realloc(g->deps, (size_t)(g->ndeps + 1) * sizeof *p);
    if (!p) goto fail;
    g->deps = p;
    g->deps[g->ndeps++] = i;
  }
  const Llmesh__RouterSettings *r = pb->router;
  for (int g = 0; g < s->ngroups; g++) { /* router defaults; a ModelGroup entry overrides */
    s->groups[g].strategy = route_strategy_parse(r ? r->routing_strategy : NULL);
    s->groups[g].mid_stream_continue = mid_stream_mode(NULL, r ? r->mid_stream_fallback : NULL);
  }
  for (size_t i = 0; i < pb->n_groups; i++)
    if (group_settings(s, pb->groups[i])) goto fail;
  return s;
fail:
  snapshot_free(s);
  return NULL;
}

snapshot *snapshot_current(void) { return current; }

static uint64_t health_applied; /* Snapshot.health_version last given to the breakers */

static void health_apply(const Llmesh__Snapshot *pb) {
  breaker_apply_health(pb, snap_loop ? uv_now(snap_loop) : 0);
  health_applied = pb->health_version;
}

int snapshot_apply(const uint8_t *data, size_t len) {
  Llmesh__Snapshot *pb = llmesh__snapshot__unpack(NULL, len, data);
  if (!pb) {
    LOG_WARN(NULL, "snapshot_invalid", LF_I("bytes", len));
    return -EINVAL;
  }
  if (current && current->epoch == pb->epoch && current->version == pb->version) {
    if (pb->health_version != health_applied) { /* health moves often: no rebuild for it */
      health_apply(pb);
      LOG_DEBUG(NULL, "health_applied", LF_I("health_version", pb->health_version),
                LF_I("entries", pb->n_health));
    }
    llmesh__snapshot__free_unpacked(pb, NULL);
    return 1;
  }
  snapshot *s = snapshot_build(pb);
  if (!s) {
    LOG_ERROR(NULL, "snapshot_build_failed", LF_S("error", "out of memory"));
    return -ENOMEM;
  }
  snapshot *prev = current;
  current = s;
  health_apply(s->pb);
  LOG_INFO(NULL, "snapshot_applied", LF_I("epoch", s->epoch), LF_I("version", s->version),
           LF_I("groups", s->ngroups), LF_I("deployments", s->ndeps),
           LF_B("auth", s->has_master_key));
  if (!s->has_master_key && (!prev || prev->has_master_key))
    LOG_WARN(NULL, "auth_disabled", LF_S("why", "snapshot has no master key; every client is accepted"));
  if (s->has_master_key && s->pb->master_key_sha256.len != 32)
    LOG_ERROR(NULL, "master_key_invalid", LF_I("bytes", s->pb->master_key_sha256.len));
  for (int i = 0; i < s->ndeps; i++) /* name + family only: never the URL */
    if (s->deps[i].unsupported)
      LOG_WARN(NULL, "deployment_unsupported", LF_S("deployment", s->deps[i].name),
               LF_S("provider", s->deps[i].provider),
               LF_S("why", "no adapter for this provider family yet; never routed to"));
  if (applied_cb) applied_cb(prev, s, applied_ud);
  snapshot_unref(prev);
  return 0;
}

static void on_snapshot_msg(nng_msg *msg, void *arg) {
  (void)arg;
  snapshot_apply(nng_msg_body(msg), nng_msg_len(msg));
  nng_msg_free(msg);
}

int snapshot_start(uv_loop_t *loop, const char *url, snapshot_applied_cb cb, void *ud) {
  nng_dialer d;
  int rv;
  applied_cb = cb;
  applied_ud = ud;
  snap_loop = loop;
  if ((rv = nng_sub0_open(&sub_sock)) != 0) return -rv;
  if ((rv = nng_socket_set(sub_sock, NNG_OPT_SUB_SUBSCRIBE, "", 0)) != 0 ||
      (rv = nng_dialer_create(&d, sub_sock, url)) != 0 ||
      (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMINT, 100)) != 0 ||
      (rv = nng_dialer_set_ms(d, NNG_OPT_RECONNMAXT, 2000)) != 0 ||
      (rv = nng_dialer_set_size(d, NNG_OPT_RECVMAXSZ, SNAPSHOT_MAX_BYTES)) != 0 ||
      (rv = feed_tls_dialer(d, url)) != 0 || /* tls+tcp: mutual TLS, snapshots carry secrets */
      (rv = nng_dialer_start(d, NNG_FLAG_NONBLOCK)) != 0) {
    nng_close(sub_sock);
    sub_sock = (nng_socket)NNG_SOCKET_INITIALIZER;
    return -rv;
  }
  if ((rv = nng_bridge_start(&sub_bridge, loop, sub_sock, NNG_BRIDGE_LATEST, on_snapshot_msg, NULL))) {
    nng_close(sub_sock);
    sub_sock = (nng_socket)NNG_SOCKET_INITIALIZER;
    return rv;
  }
  return 0;
}

void snapshot_stop(void) {
  if (nng_socket_id(sub_sock) > 0) nng_close(sub_sock);
  sub_sock = (nng_socket)NNG_SOCKET_INITIALIZER;
  nng_bridge_stop(sub_bridge);
  sub_bridge = NULL;
}

void snapshot_shutdown(void) {
  snapshot_unref(current);
  current = NULL;
}
