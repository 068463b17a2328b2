/* snapshot.c — builds and publishes Llmesh__Snapshot (see snapshot.h). The message
 * borrows every string from cfg_config: nothing here is freed with free_unpacked. */
#include "snapshot.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "llmesh.pb-c.h"
#include "util.h"

typedef struct snap_parts {
  Llmesh__RouterSettings router;
  Llmesh__ModelGroup *groups;       /* ngroups */
  Llmesh__ModelGroup **group_ptrs;  /* ngroups */
  Llmesh__Deployment *deps;         /* ndeployments */
  Llmesh__Deployment **dep_ptrs;    /* ndeployments */
} snap_parts;

/* Providers known to accept a trailing assistant message as a prefill (continued, not
 * answered): Anthropic, Claude on Bedrock / Vertex AI, DeepSeek, Mistral, Ollama. */
static int snap_infer_prefill(const cfg_deployment *d) {
  static const char *const always[] = {"anthropic", "deepseek", "mistral", "ollama"};
  for (size_t i = 0; i < sizeof always / sizeof always[0]; i++)
    if (!strcmp(d->provider, always[i])) return 1;
  if (strcmp(d->provider, "bedrock") != 0 && strcmp(d->provider, "vertex_ai") != 0) return 0;
  return strcasestr(d->upstream_model, "claude") || strcasestr(d->upstream_model, "anthropic.");
}

int snap_supports_prefill(const cfg_deployment *d) {
  return d->supports_prefill >= 0 ? d->supports_prefill != 0 : snap_infer_prefill(d);
}

static void snap_fill_deployment(Llmesh__Deployment *p, const cfg_deployment *d) {
  llmesh__deployment__init(p);
  p->name = d->name;
  p->model_group = d->model_group;
  p->provider = d->provider;
  p->upstream_model = d->upstream_model;
  p->api_base = d->api_base;
  p->api_key = d->api_key;
  p->api_version = d->api_version;
  p->weight = d->weight;
  p->timeout_ms = d->timeout_ms;
  p->stream_timeout_ms = d->stream_timeout_ms;
  p->rpm = d->rpm;
  p->tpm = d->tpm;
  p->connect_timeout_ms = d->connect_timeout_ms;
  p->aws_access_key_id = d->aws_access_key_id;
  p->aws_secret_access_key = d->aws_secret_access_key;
  p->aws_session_token = d->aws_session_token;
  p->aws_region = d->aws_region;
  p->gcp_project = d->gcp_project;
  p->gcp_location = d->gcp_location;
  p->gcp_credentials = d->gcp_credentials;
  p->order = d->order;
  p->input_cost_per_token = d->input_cost_per_token;
  p->output_cost_per_token = d->output_cost_per_token;
  p->supports_prefill = snap_supports_prefill(d);
}

/* Borrowed strings: "" stands for NULL ("the router's setting"). */
static char *snap_str(const char *s) { return (char *)(s ? s : ""); }

static void snap_fill_group(Llmesh__ModelGroup *p, const cfg_group *g) {
  llmesh__model_group__init(p);
  p->name = g->name;
  p->n_fallbacks = g->nfallbacks;
  p->fallbacks = g->fallbacks;
  p->n_context_window_fallbacks = g->ncw_fallbacks;
  p->context_window_fallbacks = g->cw_fallbacks;
  p->n_content_policy_fallbacks = g->ncp_fallbacks;
  p->content_policy_fallbacks = g->cp_fallbacks;
  p->routing_strategy = snap_str(g->routing_strategy);
  p->mid_stream_fallback = snap_str(g->mid_stream_fallback);
  p->hedge = g->hedge != 0;
}

static void snap_fill_router(Llmesh__RouterSettings *p, const cfg_router *r) {
  llmesh__router_settings__init(p);
  p->num_retries = r->num_retries;
  p->timeout_ms = r->timeout_ms;
  p->allowed_fails = r->allowed_fails;
  p->cooldown_ms = r->cooldown_ms;
  p->routing_strategy = snap_str(r->routing_strategy ? r->routing_strategy : CFG_DEFAULT_ROUTING_STRATEGY);
  p->retry_backoff_ms = r->retry_backoff_ms;
  p->retry_backoff_max_ms = r->retry_backoff_max_ms;
  p->retry_budget_percent = r->retry_budget_percent;
  p->retry_budget_min_per_s = r->retry_budget_min_per_s;
  p->total_timeout_ms = r->total_timeout_ms;
  p->max_retry_after_ms = r->max_retry_after_ms;
  p->local_trip_failures = r->local_trip_failures;
  p->local_cooldown_ms = r->local_cooldown_ms;
  p->mid_stream_fallback = snap_str(r->mid_stream_fallback ? r->mid_stream_fallback : "continue");
}

static int snap_fill(Llmesh__Snapshot *s, snap_parts *pp, const cfg_config *c) {
  snap_fill_router(&pp->router, &c->router);
  s->router = &pp->router;
  pp->groups = calloc(c->ngroups + 1, sizeof *pp->groups);
  pp->group_ptrs = calloc(c->ngroups + 1, sizeof *pp->group_ptrs);
  pp->deps = calloc(c->ndeployments + 1, sizeof *pp->deps);
  pp->dep_ptrs = calloc(c->ndeployments + 1, sizeof *pp->dep_ptrs);
  if (!pp->groups || !pp->group_ptrs || !pp->deps || !pp->dep_ptrs) return -ENOMEM;
  for (size_t i = 0; i < c->ngroups; i++) {
    snap_fill_group(&pp->groups[i], &c->groups[i]);
    pp->group_ptrs[i] = &pp->groups[i];
  }
  for (size_t i = 0; i < c->ndeployments; i++) {
    snap_fill_deployment(&pp->deps[i], &c->deployments[i]);
    pp->dep_ptrs[i] = &pp->deps[i];
  }
  s->n_groups = c->ngroups;
  s->groups = pp->group_ptrs;
  s->n_deployments = c->ndeployments;
  s->deployments = pp->dep_ptrs;
  return 0;
}

int snap_build_msg(const cfg_config *c, const snap_meta *m, uint64_t published_at_ms,
                   nng_msg **out) {
  Llmesh__Snapshot s = LLMESH__SNAPSHOT__INIT;
  snap_parts pp = {0};
  s.epoch = m->epoch;
  s.version = m->version;
  s.published_at_ms = published_at_ms;
  s.telemetry_url = (char *)m->telemetry_url;
  s.health_version = m->health_version;
  s.n_health = m->nhealth;
  s.health = m->health;
  if (c->has_master_key) {
    s.master_key_sha256.data = (uint8_t *)c->master_key_sha256;
    s.master_key_sha256.len = 32;
  }
  int rv = snap_fill(&s, &pp, c);
  if (rv == 0) {
    size_t n = llmesh__snapshot__get_packed_size(&s);
    if ((rv = nng_msg_alloc(out, n)) != 0) rv = -ENOMEM;
    else llmesh__snapshot__pack(&s, nng_msg_body(*out));
  }
  free(pp.groups);
  free(pp.group_ptrs);
  free(pp.deps);
  free(pp.dep_ptrs);
  return rv;
}

int snap_publish(nng_socket pub, const cfg_config *c, const snap_meta *m) {
  nng_msg *msg;
  int rv = snap_build_msg(c, m, util_wall_ms(), &msg);
  if (rv < 0) return rv;
  if ((rv = nng_sendmsg(pub, msg, NNG_FLAG_NONBLOCK)) != 0) {
    nng_msg_free(msg); /* on error the message is still ours */
    return -rv;
  }
  return 0;
}
