/* config_import.c — LiteLLM YAML → cfg_config (see config_import.h).
 *
 * libyaml's document loader keeps a start mark per node, so every error and warning
 * names the line of the offending key or value. The walk is schema-driven:
 * environment_variables first (they may be referenced by os.environ/ anywhere),
 * then model_list, router_settings (fallbacks need the groups), general_settings,
 * litellm_settings (only its error-kind fallbacks are read). */
#include "config_import.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include "gcp_token.h"

#define CFG_PATH_MAX 256
#define CFG_ENV_PREFIX "os.environ/"

typedef struct cfg_parser {
  const char *file;      /* name used in messages */
  yaml_document_t doc;   /* loaded document */
  cfg_config *cfg;       /* output */
  yaml_node_t *env;      /* environment_variables mapping, or NULL */
  char *err;             /* error buffer */
  size_t errlen;         /* bytes in err */
} cfg_parser;

/* Per-entry scratch while reading model_list. */
typedef struct cfg_entry {
  int has_timeout;       /* litellm_params.timeout was given */
  char *id;              /* model_info.id, or NULL */
  int id_line;           /* line of model_info.id */
  char *model;           /* litellm_params.model as written */
  yaml_node_t *model_node; /* its node, for error lines */
  char *provider;        /* litellm_params.provider / custom_llm_provider, or NULL */
  yaml_node_t *creds_node; /* vertex_credentials, for error lines */
  int params_in_cost;    /* input_cost_per_token given in litellm_params (wins over model_info) */
  int params_out_cost;   /* output_cost_per_token given in litellm_params */
  int info_in_cost;      /* input_cost_per_token given in model_info */
  int info_out_cost;     /* output_cost_per_token given in model_info */
  double info_in;        /* model_info.input_cost_per_token, USD */
  double info_out;       /* model_info.output_cost_per_token, USD */
} cfg_entry;

/* Kinds of group fallbacks: which error sends a request to them. */
enum cfg_fb_kind { CFG_FB_GENERAL, CFG_FB_CONTEXT_WINDOW, CFG_FB_CONTENT_POLICY };
static const char *const cfg_fb_keys[] = {"fallbacks", "context_window_fallbacks",
                                          "content_policy_fallbacks"};

/* Valid routing_strategy values, in the order error messages list them. */
static const char *const cfg_strategies[] = {"simple-shuffle", "latency-based-routing", "least-busy",
                                             "usage-based-routing", "cost-based-routing"};
#define CFG_STRATEGY_NAMES \
  "simple-shuffle, latency-based-routing, least-busy, usage-based-routing, cost-based-routing"

/* ------------------------------------------------------------------ helpers */

static int node_line(const yaml_node_t *n) { return n ? (int)n->start_mark.line + 1 : 0; }

static int cfg_fail(cfg_parser *p, const yaml_node_t *n, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static int cfg_fail(cfg_parser *p, const yaml_node_t *n, const char *path, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  snprintf(p->err, p->errlen, "%s:%d: %s: %s", p->file, node_line(n), path, msg);
  return -1;
}

static int cfg_warn(cfg_parser *p, const yaml_node_t *n, const char *path, const char *what) {
  cfg_config *c = p->cfg;
  cfg_warning *w = realloc(c->warnings, (c->nwarnings + 1) * sizeof *w);
  if (!w) return cfg_fail(p, n, path, "out of memory");
  c->warnings = w;
  w = &c->warnings[c->nwarnings];
  char msg[512];
  snprintf(msg, sizeof msg, "%s:%d: %s: %s", p->file, node_line(n), path, what);
  w->line = node_line(n);
  w->path = strdup(path);
  w->message = strdup(msg);
  if (!w->path || !w->message) {
    free(w->path);
    free(w->message);
    return cfg_fail(p, n, path, "out of memory");
  }
  c->nwarnings++;
  return 0;
}

static yaml_node_t *node_at(cfg_parser *p, int idx) { return yaml_document_get_node(&p->doc, idx); }

static const char *scalar(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

static int is_null(const yaml_node_t *n) {
  if (!n) return 1;
  if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE) return 0;
  const char *s = scalar(n);
  return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* parent.key into out (CFG_PATH_MAX bytes); a path that long is cut, never overflows. */
static void path_join(char *out, const char *parent, const char *key) {
  int n = *parent ? snprintf(out, CFG_PATH_MAX, "%s.%s", parent, key)
                  : snprintf(out, CFG_PATH_MAX, "%s", key);
  if (n < 0 || n >= CFG_PATH_MAX) memcpy(out + CFG_PATH_MAX - 4, "...", 4);
}

static void path_index(char *out, const char *parent, int i) {
  int n = snprintf(out, CFG_PATH_MAX, "%s[%d]", parent, i);
  if (n < 0 || n >= CFG_PATH_MAX) memcpy(out + CFG_PATH_MAX - 4, "...", 4);
}

/* Keys of a mapping must be scalars and unique (PyYAML would keep the last silently). */
static int check_mapping(cfg_parser *p, yaml_node_t *m, const char *path) {
  if (m->type != YAML_MAPPING_NODE) return cfg_fail(p, m, path, "must be a mapping");
  for (yaml_node_pair_t *a = m->data.mapping.pairs.start; a < m->data.mapping.pairs.top; a++) {
    yaml_node_t *k = node_at(p, a->key);
    if (!k || k->type != YAML_SCALAR_NODE) return cfg_fail(p, k, path, "keys must be strings");
    for (yaml_node_pair_t *b = m->data.mapping.pairs.start; b < a; b++) {
      yaml_node_t *kb = node_at(p, b->key);
      if (!strcmp(scalar(kb), scalar(k))) {
        char sub[CFG_PATH_MAX];
        path_join(sub, path, scalar(k));
        return cfg_fail(p, k, sub, "duplicate key");
      }
    }
  }
  return 0;
}

/* Resolves "os.environ/NAME" (config environment_variables first, then the process
 * environment). *out points into the document or the environment; do not free. */
static int resolve_env(cfg_parser *p, yaml_node_t *n, const char *path, const char **out) {
  const char *v = scalar(n);
  if (strncmp(v, CFG_ENV_PREFIX, strlen(CFG_ENV_PREFIX)) != 0) {
    *out = v;
    return 0;
  }
  const char *name = v + strlen(CFG_ENV_PREFIX);
  if (!*name) return cfg_fail(p, n, path, "empty environment variable name in '%s'", v);
  if (p->env) {
    for (yaml_node_pair_t *a = p->env->data.mapping.pairs.start; a < p->env->data.mapping.pairs.top; a++) {
      if (!strcmp(scalar(node_at(p, a->key)), name)) {
        *out = scalar(node_at(p, a->value));
        return 0;
      }
    }
  }
  const char *e = getenv(name);
  if (!e) return cfg_fail(p, n, path, "environment variable %s is not set", name);
  *out = e;
  return 0;
}

/* A string value (os.environ/ resolved), malloc'd into *out. */
static int get_string(cfg_parser *p, yaml_node_t *n, const char *path, char **out) {
  const char *v;
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "must be a string");
  if (resolve_env(p, n, path, &v) < 0) return -1;
  char *s = strdup(v);
  if (!s) return cfg_fail(p, n, path, "out of memory");
  free(*out);
  *out = s;
  return 0;
}

/* get_string for a secret: the value it replaces is wiped. */
static int get_secret(cfg_parser *p, yaml_node_t *n, const char *path, char **out) {
  char *old = *out;
  *out = NULL;
  if (old) OPENSSL_cleanse(old, strlen(old));
  free(old);
  return get_string(p, n, path, out);
}

static int get_uint(cfg_parser *p, yaml_node_t *n, const char *path, uint32_t min,
                    uint32_t *out) {
  const char *v, *what = min > 0 ? "must be a positive integer" : "must be a non-negative integer";
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "%s", what);
  if (resolve_env(p, n, path, &v) < 0) return -1;
  if (!*v || strspn(v, "0123456789") != strlen(v) || strlen(v) > 10)
    return cfg_fail(p, n, path, "%s, got '%s'", what, v);
  unsigned long long x = strtoull(v, NULL, 10);
  if (x < min || x > UINT32_MAX) return cfg_fail(p, n, path, "%s, got '%s'", what, v);
  *out = (uint32_t)x;
  return 0;
}

/* Seconds (integer or float) → ms. */
static int get_seconds_ms(cfg_parser *p, yaml_node_t *n, const char *path, int allow_zero,
                          uint32_t *out) {
  const char *v, *what = allow_zero ? "must be a non-negative number of seconds"
                                    : "must be a positive number of seconds";
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "%s", what);
  if (resolve_env(p, n, path, &v) < 0) return -1;
  char *end;
  errno = 0;
  double s = strtod(v, &end);
  if (!*v || *end || errno || !isfinite(s) || s < 0 || (s == 0 && !allow_zero) ||
      s * 1000.0 > (double)UINT32_MAX)
    return cfg_fail(p, n, path, "%s, got '%s'", what, v);
  *out = (uint32_t)llround(s * 1000.0);
  if (*out == 0 && s > 0) *out = 1;
  return 0;
}

/* A number >= 0 (a price per token), possibly in exponent notation. */
static int get_cost(cfg_parser *p, yaml_node_t *n, const char *path, double *out) {
  const char *v, *what = "must be a non-negative number";
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "%s", what);
  if (resolve_env(p, n, path, &v) < 0) return -1;
  char *end;
  errno = 0;
  double x = strtod(v, &end);
  if (!*v || *end || errno || !isfinite(x) || x < 0) return cfg_fail(p, n, path, "%s, got '%s'", what, v);
  *out = x;
  return 0;
}

/* YAML 1.1 booleans as PyYAML reads them (true/false, yes/no, on/off, any case). */
static int get_bool(cfg_parser *p, yaml_node_t *n, const char *path, int *out) {
  static const char *const yes[] = {"true", "yes", "on"}, *const no[] = {"false", "no", "off"};
  const char *v;
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "must be true or false");
  if (resolve_env(p, n, path, &v) < 0) return -1;
  for (size_t i = 0; i < 3; i++) {
    if (!strcasecmp(v, yes[i])) return *out = 1, 0;
    if (!strcasecmp(v, no[i])) return *out = 0, 0;
  }
  return cfg_fail(p, n, path, "must be true or false, got '%s'", v);
}

/* An integer in [min, max]. */
static int get_uint_range(cfg_parser *p, yaml_node_t *n, const char *path, uint32_t min,
                          uint32_t max, uint32_t *out) {
  uint32_t x;
  if (get_uint(p, n, path, min, &x) < 0) return -1;
  if (x > max) return cfg_fail(p, n, path, "must be an integer from %u to %u, got %u", min, max, x);
  *out = x;
  return 0;
}

/* One of a fixed set of strings; names lists them for the message. */
static int get_choice(cfg_parser *p, yaml_node_t *n, const char *path, const char *const *choices,
                      size_t nchoices, const char *names, char **out) {
  const char *v;
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "must be one of: %s", names);
  if (resolve_env(p, n, path, &v) < 0) return -1;
  for (size_t i = 0; i < nchoices; i++) {
    if (strcmp(v, choices[i]) != 0) continue;
    char *s = strdup(choices[i]);
    if (!s) return cfg_fail(p, n, path, "out of memory");
    free(*out);
    *out = s;
    return 0;
  }
  return cfg_fail(p, n, path, "unknown value '%s' (valid: %s)", v, names);
}

/* routing_strategy; LiteLLM's usage-based-routing-v2 is the same strategy here. */
static int get_strategy(cfg_parser *p, yaml_node_t *n, const char *path, char **out) {
  const char *v;
  if (n->type != YAML_SCALAR_NODE) return cfg_fail(p, n, path, "must be one of: %s", CFG_STRATEGY_NAMES);
  if (resolve_env(p, n, path, &v) < 0) return -1;
  const char *name = !strcmp(v, "usage-based-routing-v2") ? "usage-based-routing" : NULL;
  for (size_t i = 0; !name && i < sizeof cfg_strategies / sizeof cfg_strategies[0]; i++)
    if (!strcmp(v, cfg_strategies[i])) name = cfg_strategies[i];
  if (!name)
    return cfg_fail(p, n, path, "unknown routing strategy '%s' (valid: %s)", v, CFG_STRATEGY_NAMES);
  char *s = strdup(name);
  if (!s) return cfg_fail(p, n, path, "out of memory");
  free(*out);
  *out = s;
  return 0;
}

static int get_mid_stream(cfg_parser *p, yaml_node_t *n, const char *path, char **out) {
  static const char *const modes[] = {"continue", "error"};
  return get_choice(p, n, path, modes, 2, "continue, error", out);
}

/* ------------------------------------------------------------------ builders */

void cfg_init(cfg_config *c) {
  memset(c, 0, sizeof *c);
  c->router.num_retries = CFG_DEFAULT_NUM_RETRIES;
  c->router.timeout_ms = CFG_DEFAULT_TIMEOUT_MS;
  c->router.allowed_fails = CFG_DEFAULT_ALLOWED_FAILS;
  c->router.cooldown_ms = CFG_DEFAULT_COOLDOWN_MS;
  c->router.retry_backoff_ms = CFG_DEFAULT_RETRY_BACKOFF_MS;
  c->router.retry_backoff_max_ms = CFG_DEFAULT_RETRY_BACKOFF_MAX_MS;
  c->router.retry_budget_percent = CFG_DEFAULT_RETRY_BUDGET_PERCENT;
  c->router.retry_budget_min_per_s = CFG_DEFAULT_RETRY_BUDGET_MIN_PER_S;
  c->router.max_retry_after_ms = CFG_DEFAULT_MAX_RETRY_AFTER_MS;
  c->router.local_trip_failures = CFG_DEFAULT_LOCAL_TRIP_FAILURES;
  c->router.local_cooldown_ms = CFG_DEFAULT_LOCAL_COOLDOWN_MS;
  c->router.probes_enabled = 1;
  c->router.probe_interval_ms = CFG_DEFAULT_PROBE_INTERVAL_MS;
  c->router.probe_timeout_ms = CFG_DEFAULT_PROBE_TIMEOUT_MS;
  c->router.probe_max_tokens = CFG_DEFAULT_PROBE_MAX_TOKENS;
  /* probe_prompt stays NULL: cfg_init cannot fail (and runs twice on the cfg_parse_file
   * path); a parse or load fills in the default the way it does routing_strategy */
}

cfg_deployment *cfg_add_deployment(cfg_config *c) {
  cfg_deployment *d = realloc(c->deployments, (c->ndeployments + 1) * sizeof *d);
  if (!d) return NULL;
  c->deployments = d;
  d = &c->deployments[c->ndeployments++];
  memset(d, 0, sizeof *d);
  d->weight = CFG_DEFAULT_WEIGHT;
  d->connect_timeout_ms = CFG_DEFAULT_CONNECT_TIMEOUT_MS;
  d->supports_prefill = -1;
  d->health_check = 1;
  return d;
}

cfg_group *cfg_find_group(const cfg_config *c, const char *name) {
  for (size_t i = 0; i < c->ngroups; i++)
    if (!strcmp(c->groups[i].name, name)) return &c->groups[i];
  return NULL;
}

cfg_group *cfg_add_group(cfg_config *c, const char *name) {
  cfg_group *g = realloc(c->groups, (c->ngroups + 1) * sizeof *g);
  if (!g) return NULL;
  c->groups = g;
  g = &c->groups[c->ngroups];
  memset(g, 0, sizeof *g);
  if (!(g->name = strdup(name))) return NULL;
  c->ngroups++;
  return g;
}

/* Appends a copy of s to the string list *v of *n entries. */
static int strv_add(char ***v, size_t *n, const char *s) {
  char **f = realloc(*v, (*n + 1) * sizeof *f);
  if (!f) return -ENOMEM;
  *v = f;
  if (!(f[*n] = strdup(s))) return -ENOMEM;
  (*n)++;
  return 0;
}

static void strv_free(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

int cfg_group_add_fallback(cfg_group *g, const char *name) {
  return strv_add(&g->fallbacks, &g->nfallbacks, name);
}

/* The list of g that fallbacks of kind go to. */
static void group_fallback_list(cfg_group *g, enum cfg_fb_kind kind, char ****v, size_t **n) {
  if (kind == CFG_FB_CONTEXT_WINDOW) *v = &g->cw_fallbacks, *n = &g->ncw_fallbacks;
  else if (kind == CFG_FB_CONTENT_POLICY) *v = &g->cp_fallbacks, *n = &g->ncp_fallbacks;
  else *v = &g->fallbacks, *n = &g->nfallbacks;
}

static void str_wipe_free(char *s) {
  if (!s) return;
  OPENSSL_cleanse(s, strlen(s));
  free(s);
}

void cfg_free(cfg_config *c) {
  for (size_t i = 0; i < c->ndeployments; i++) {
    cfg_deployment *d = &c->deployments[i];
    free(d->name);
    free(d->model_group);
    free(d->provider);
    free(d->upstream_model);
    free(d->api_base);
    str_wipe_free(d->api_key);
    free(d->api_version);
    free(d->aws_access_key_id);
    str_wipe_free(d->aws_secret_access_key);
    str_wipe_free(d->aws_session_token);
    free(d->aws_region);
    free(d->gcp_project);
    free(d->gcp_location);
    str_wipe_free(d->gcp_credentials);
  }
  for (size_t i = 0; i < c->ngroups; i++) {
    cfg_group *g = &c->groups[i];
    strv_free(g->fallbacks, g->nfallbacks);
    strv_free(g->cw_fallbacks, g->ncw_fallbacks);
    strv_free(g->cp_fallbacks, g->ncp_fallbacks);
    free(g->routing_strategy);
    free(g->mid_stream_fallback);
    free(g->name);
  }
  for (size_t i = 0; i < c->nwarnings; i++) {
    free(c->warnings[i].path);
    free(c->warnings[i].message);
  }
  free(c->deployments);
  free(c->groups);
  free(c->warnings);
  free(c->router.routing_strategy);
  free(c->router.mid_stream_fallback);
  free(c->router.probe_prompt);
  OPENSSL_cleanse(c, sizeof *c);
  memset(c, 0, sizeof *c);
}

static const struct {
  const char *provider;
  const char *api_base;
} cfg_bases[] = {
    {"openai", "https://api.openai.com/v1"},
    {"anthropic", "https://api.anthropic.com/v1"},
    {"groq", "https://api.groq.com/openai/v1"},
    {"mistral", "https://api.mistral.ai/v1"},
    {"deepseek", "https://api.deepseek.com/v1"},
    {"gemini", "https://generativelanguage.googleapis.com/v1beta"},
    {"together_ai", "https://api.together.xyz/v1"},
    {"fireworks_ai", "https://api.fireworks.ai/inference/v1"},
    {"openrouter", "https://openrouter.ai/api/v1"},
    {"xai", "https://api.x.ai/v1"},
};

const char *cfg_default_api_base(const char *provider) {
  for (size_t i = 0; i < sizeof cfg_bases / sizeof cfg_bases[0]; i++)
    if (!strcmp(cfg_bases[i].provider, provider)) return cfg_bases[i].api_base;
  return "";
}

/* ------------------------------------------------------------------ model_list */

/* Provider family of an unprefixed model, the way LiteLLM users expect it: the api_base
 * host first (a proxy in front of a known API keeps its family), then the model name. */
static const char *infer_provider(const char *model, const char *api_base) {
  if (api_base && *api_base) {
    const char *h = strstr(api_base, "://");
    h = h ? h + 3 : api_base;
    size_t hl = strcspn(h, "/?#");
    char host[256];
    if (hl >= sizeof host) hl = sizeof host - 1;
    for (size_t i = 0; i < hl; i++) host[i] = (char)tolower((unsigned char)h[i]);
    host[hl] = '\0';
    char *colon = strrchr(host, ':');
    const char *port = colon && !strchr(colon, ']') ? colon + 1 : "";
    if (colon && *port) *colon = '\0';
    size_t n = strlen(host);
    if (!strcmp(host, "api.anthropic.com")) return "anthropic";
    if (!strcmp(host, "generativelanguage.googleapis.com")) return "gemini";
    if (n > 17 && !strcmp(host + n - 17, ".openai.azure.com")) return "azure";
    if (!strcmp(port, "11434")) return "ollama";
  }
  if (!strncasecmp(model, "claude-", 7)) return "anthropic";
  if (!strncasecmp(model, "gemini-", 7)) return "gemini";
  return "openai";
}

/* Provider and upstream model of an entry: an explicit provider / custom_llm_provider key
 * wins (a model prefix equal to it is stripped, any other is part of the model name);
 * else the prefix of "anthropic/claude-..."; else inferred (infer_provider). */
static int resolve_provider(cfg_parser *p, yaml_node_t *n, const char *path, cfg_entry *e,
                            cfg_deployment *d) {
  const char *model = e->model, *slash = strchr(model, '/');
  if (!*model) return cfg_fail(p, n, path, "must not be empty");
  if (e->provider) {
    size_t pl = strlen(e->provider);
    int same = slash && (size_t)(slash - model) == pl && !strncasecmp(model, e->provider, pl);
    d->provider = strdup(e->provider);
    d->upstream_model = strdup(same ? slash + 1 : model);
  } else if (slash) {
    if (slash == model || !slash[1])
      return cfg_fail(p, n, path, "expected 'provider/model', got '%s'", model);
    d->provider = strndup(model, (size_t)(slash - model));
    d->upstream_model = strdup(slash + 1);
  } else {
    d->provider = strdup(infer_provider(model, d->api_base));
    d->upstream_model = strdup(model);
  }
  if (!d->provider || !d->upstream_model) return cfg_fail(p, n, path, "out of memory");
  for (char *c = d->provider; *c; c++) *c = (char)tolower((unsigned char)*c);
  if (!*d->upstream_model) return cfg_fail(p, n, path, "must not be empty");
  return 0;
}

static int parse_params_key(cfg_parser *p, const char *key, yaml_node_t *v, const char *sub,
                            cfg_deployment *d, cfg_entry *e) {
  if (!strcmp(key, "model")) {
    free(e->model);
    e->model = NULL;
    e->model_node = v;
    return get_string(p, v, sub, &e->model);
  }
  if (!strcmp(key, "provider") || !strcmp(key, "custom_llm_provider")) {
    free(e->provider);
    e->provider = NULL;
    if (get_string(p, v, sub, &e->provider) < 0) return -1;
    if (!*e->provider) return cfg_fail(p, v, sub, "must not be empty");
    return 0;
  }
  if (!strcmp(key, "api_base")) return get_string(p, v, sub, &d->api_base);
  if (!strcmp(key, "api_key")) return is_null(v) ? 0 : get_string(p, v, sub, &d->api_key);
  if (!strcmp(key, "api_version")) return get_string(p, v, sub, &d->api_version);
  if (!strcmp(key, "aws_access_key_id"))
    return is_null(v) ? 0 : get_string(p, v, sub, &d->aws_access_key_id);
  if (!strcmp(key, "aws_secret_access_key"))
    return is_null(v) ? 0 : get_secret(p, v, sub, &d->aws_secret_access_key);
  if (!strcmp(key, "aws_session_token"))
    return is_null(v) ? 0 : get_secret(p, v, sub, &d->aws_session_token);
  if (!strcmp(key, "aws_region_name")) return is_null(v) ? 0 : get_string(p, v, sub, &d->aws_region);
  if (!strcmp(key, "vertex_project") || !strcmp(key, "vertex_ai_project"))
    return get_string(p, v, sub, &d->gcp_project);
  if (!strcmp(key, "vertex_location") || !strcmp(key, "vertex_ai_location"))
    return get_string(p, v, sub, &d->gcp_location);
  if (!strcmp(key, "vertex_credentials")) {
    if (is_null(v)) return 0;
    e->creds_node = v;
    return get_secret(p, v, sub, &d->gcp_credentials);
  }
  if (!strcmp(key, "weight")) return get_uint(p, v, sub, 1, &d->weight);
  if (!strcmp(key, "rpm")) return get_uint(p, v, sub, 0, &d->rpm);
  if (!strcmp(key, "tpm")) return get_uint(p, v, sub, 0, &d->tpm);
  if (!strcmp(key, "timeout")) {
    e->has_timeout = 1;
    return get_seconds_ms(p, v, sub, 0, &d->timeout_ms);
  }
  if (!strcmp(key, "stream_timeout")) return get_seconds_ms(p, v, sub, 1, &d->stream_timeout_ms);
  if (!strcmp(key, "connect_timeout")) return get_seconds_ms(p, v, sub, 0, &d->connect_timeout_ms);
  if (!strcmp(key, "order")) return get_uint(p, v, sub, 1, &d->order);
  if (!strcmp(key, "input_cost_per_token")) {
    e->params_in_cost = 1;
    return get_cost(p, v, sub, &d->input_cost_per_token);
  }
  if (!strcmp(key, "output_cost_per_token")) {
    e->params_out_cost = 1;
    return get_cost(p, v, sub, &d->output_cost_per_token);
  }
  return cfg_warn(p, v, sub, "unknown key, ignored");
}

/* k: the litellm_params key (its line is where a missing model is reported). */
static int parse_params(cfg_parser *p, yaml_node_t *k0, yaml_node_t *m, const char *path,
                        cfg_deployment *d, cfg_entry *e) {
  if (check_mapping(p, m, path) < 0) return -1;
  for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
    char sub[CFG_PATH_MAX];
    path_join(sub, path, scalar(k));
    if (parse_params_key(p, scalar(k), v, sub, d, e) < 0) return -1;
  }
  char sub[CFG_PATH_MAX];
  path_join(sub, path, "model");
  if (!e->model) return cfg_fail(p, k0, sub, "missing");
  return resolve_provider(p, e->model_node, sub, e, d);
}

static int parse_model_info_key(cfg_parser *p, const char *key, yaml_node_t *v, const char *sub,
                                cfg_deployment *d, cfg_entry *e) {
  if (!strcmp(key, "id")) {
    if (get_string(p, v, sub, &e->id) < 0) return -1;
    if (!*e->id) return cfg_fail(p, v, sub, "must not be empty");
    e->id_line = node_line(v);
    return 0;
  }
  if (!strcmp(key, "supports_assistant_prefill"))
    return is_null(v) ? 0 : get_bool(p, v, sub, &d->supports_prefill);
  if (!strcmp(key, "health_check")) return is_null(v) ? 0 : get_bool(p, v, sub, &d->health_check);
  /* LiteLLM reads prices from either place; litellm_params wins (applied in parse_entry). */
  if (!strcmp(key, "input_cost_per_token")) {
    e->info_in_cost = 1;
    return get_cost(p, v, sub, &e->info_in);
  }
  if (!strcmp(key, "output_cost_per_token")) {
    e->info_out_cost = 1;
    return get_cost(p, v, sub, &e->info_out);
  }
  return cfg_warn(p, v, sub, "unknown key, ignored");
}

static int parse_model_info(cfg_parser *p, yaml_node_t *m, const char *path, cfg_deployment *d,
                            cfg_entry *e) {
  if (is_null(m)) return 0;
  if (check_mapping(p, m, path) < 0) return -1;
  for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
    char sub[CFG_PATH_MAX];
    path_join(sub, path, scalar(k));
    if (parse_model_info_key(p, scalar(k), v, sub, d, e) < 0) return -1;
  }
  return 0;
}

/* Deployment name: model_info.id, else "<group>-<n>", n = position within the group. */
static int name_deployment(cfg_parser *p, yaml_node_t *item, const char *path, cfg_deployment *d,
                           cfg_entry *e) {
  cfg_config *c = p->cfg;
  if (e->id) {
    d->name = e->id;
    e->id = NULL;
  } else {
    size_t n = 0;
    for (size_t i = 0; i < c->ndeployments; i++)
      if (!strcmp(c->deployments[i].model_group, d->model_group)) n++;
    if (asprintf(&d->name, "%s-%zu", d->model_group, n) < 0) {
      d->name = NULL;
      return cfg_fail(p, item, path, "out of memory");
    }
  }
  for (size_t i = 0; i + 1 < c->ndeployments; i++) {
    if (!strcmp(c->deployments[i].name, d->name)) {
      char sub[CFG_PATH_MAX];
      path_join(sub, path, e->id_line ? "model_info.id" : "model_name");
      return cfg_fail(p, item, sub, "deployment name '%s' is already used (line %d)", d->name,
                      c->deployments[i].line);
    }
  }
  return 0;
}

static int parse_entry_keys(cfg_parser *p, yaml_node_t *item, const char *path,
                            cfg_deployment *d, cfg_entry *e) {
  yaml_node_t *params = NULL;
  char sub[CFG_PATH_MAX];
  for (yaml_node_pair_t *pr = item->data.mapping.pairs.start; pr < item->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
    const char *key = scalar(k);
    path_join(sub, path, key);
    if (!strcmp(key, "model_name")) {
      if (get_string(p, v, sub, &d->model_group) < 0) return -1;
      if (!*d->model_group) return cfg_fail(p, v, sub, "must not be empty");
    } else if (!strcmp(key, "litellm_params") || !strcmp(key, "params")) {
      if (params) return cfg_fail(p, k, sub, "litellm_params given twice (params is an alias)");
      params = v;
      if (parse_params(p, k, v, sub, d, e) < 0) return -1;
    } else if (!strcmp(key, "model_info")) {
      if (parse_model_info(p, v, sub, d, e) < 0) return -1;
    } else if (cfg_warn(p, k, sub, "unknown key, ignored") < 0) {
      return -1;
    }
  }
  if (!d->model_group) {
    path_join(sub, path, "model_name");
    return cfg_fail(p, item, sub, "missing");
  }
  if (!params) {
    path_join(sub, path, "litellm_params.model");
    return cfg_fail(p, item, sub, "missing");
  }
  return 0;
}

/* *out = strdup(v) when *out is NULL or "" and v is a non-empty string. */
static int fill_from(char **out, const char *v) {
  if ((*out && **out) || !v || !*v) return 0;
  char *s = strdup(v);
  if (!s) return -ENOMEM;
  if (*out) OPENSSL_cleanse(*out, strlen(*out));
  free(*out);
  *out = s;
  return 0;
}

/* "" for every cloud field left unset. */
static int cloud_defaults(cfg_deployment *d) {
  char **f[] = {&d->aws_access_key_id, &d->aws_secret_access_key, &d->aws_session_token,
                &d->aws_region, &d->gcp_project, &d->gcp_location, &d->gcp_credentials};
  for (size_t i = 0; i < sizeof f / sizeof f[0]; i++)
    if (!*f[i] && !(*f[i] = strdup(""))) return -ENOMEM;
  return 0;
}

/* Bedrock: a deployment without keys takes them from the process environment the way
 * the AWS SDKs do (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN,
 * AWS_REGION / AWS_DEFAULT_REGION); an access key id needs its secret. */
static int finish_aws(cfg_parser *p, yaml_node_t *item, const char *path, cfg_deployment *d) {
  if (!strcmp(d->provider, "bedrock")) {
    if (!*d->aws_access_key_id && !*d->aws_secret_access_key && !*d->api_key &&
        (fill_from(&d->aws_access_key_id, getenv("AWS_ACCESS_KEY_ID")) < 0 ||
         fill_from(&d->aws_secret_access_key, getenv("AWS_SECRET_ACCESS_KEY")) < 0 ||
         (!*d->aws_session_token && fill_from(&d->aws_session_token, getenv("AWS_SESSION_TOKEN")) < 0)))
      return cfg_fail(p, item, path, "out of memory");
    if (fill_from(&d->aws_region, getenv("AWS_REGION")) < 0 ||
        fill_from(&d->aws_region, getenv("AWS_DEFAULT_REGION")) < 0)
      return cfg_fail(p, item, path, "out of memory");
  }
  char sub[CFG_PATH_MAX];
  if (*d->aws_access_key_id && !*d->aws_secret_access_key) {
    path_join(sub, path, "litellm_params.aws_secret_access_key");
    return cfg_fail(p, item, sub, "missing (aws_access_key_id is set)");
  }
  if (*d->aws_secret_access_key && !*d->aws_access_key_id) {
    path_join(sub, path, "litellm_params.aws_access_key_id");
    return cfg_fail(p, item, sub, "missing (aws_secret_access_key is set)");
  }
  if (!strcmp(d->provider, "bedrock") && *d->aws_access_key_id && !*d->aws_region) {
    path_join(sub, path, "litellm_params.aws_region_name");
    return cfg_fail(p, item, sub, "missing (SigV4 needs a region; or set AWS_REGION)");
  }
  return 0;
}

/* Reads a whole small file (a service-account key) into a malloc'd string. */
static char *read_small_file(const char *path, size_t max, int *err) {
  FILE *f = fopen(path, "rb");
  char *buf = NULL;
  size_t n = 0;
  *err = 0;
  if (!f) { *err = errno; return NULL; }
  if ((buf = malloc(max + 1))) {
    n = fread(buf, 1, max + 1, f);
    if (ferror(f)) *err = errno ? errno : EIO;
    else if (n > max) *err = EFBIG;
  } else {
    *err = ENOMEM;
  }
  fclose(f);
  if (*err) {
    if (buf) OPENSSL_cleanse(buf, max + 1);
    free(buf);
    return NULL;
  }
  buf[n] = '\0';
  return buf;
}

#define CFG_SA_MAX (64u << 10) /* bytes of a service-account key file */

/* Vertex: vertex_credentials is the key JSON itself or the path of a key file (read
 * now: the control plane may run where workers have no such file). Validated here with
 * the worker's own parser; messages never quote the key. project_id fills an unset
 * vertex_project. */
static int finish_vertex(cfg_parser *p, yaml_node_t *item, const char *path, cfg_deployment *d,
                         const cfg_entry *e) {
  char sub[CFG_PATH_MAX], msg[256] = "";
  if (!*d->gcp_credentials) {
    if (!strcmp(d->provider, "vertex_ai") && !*d->api_key &&
        cfg_warn(p, item, path, "vertex_ai deployment without vertex_credentials or api_key") < 0)
      return -1;
    return 0;
  }
  path_join(sub, path, "litellm_params.vertex_credentials");
  const char *v = d->gcp_credentials;
  while (*v == ' ' || *v == '\t' || *v == '\n' || *v == '\r') v++;
  if (*v != '{') {
    int er;
    char *json = read_small_file(d->gcp_credentials, CFG_SA_MAX, &er);
    if (!json) { /* name the file only when the value looks like a path, never like key text */
      int named = strlen(d->gcp_credentials) <= 200 && !strpbrk(d->gcp_credentials, "\n\r\"") &&
                  !strstr(d->gcp_credentials, "KEY");
      return cfg_fail(p, e->creds_node, sub, "cannot read the service-account key file%s%s%s: %s",
                      named ? " '" : "", named ? d->gcp_credentials : "", named ? "'" : "",
                      er == EFBIG ? "larger than 64 KiB" : strerror(er));
    }
    str_wipe_free(d->gcp_credentials);
    d->gcp_credentials = json;
  }
  gcp_sa *sa = gcp_sa_parse(d->gcp_credentials, strlen(d->gcp_credentials), msg, sizeof msg);
  if (!sa) return cfg_fail(p, e->creds_node, sub, "invalid service-account key: %s", msg);
  int rv = fill_from(&d->gcp_project, gcp_sa_project(sa));
  gcp_sa_free(sa);
  if (rv < 0) return cfg_fail(p, item, path, "out of memory");
  return 0;
}

static int parse_entry(cfg_parser *p, yaml_node_t *item, const char *path) {
  cfg_config *c = p->cfg;
  if (check_mapping(p, item, path) < 0) return -1;
  cfg_deployment *d = cfg_add_deployment(c);
  if (!d) return cfg_fail(p, item, path, "out of memory");
  d->line = node_line(item);
  cfg_entry e = {0};
  int rv = parse_entry_keys(p, item, path, d, &e);
  if (rv == 0) rv = name_deployment(p, item, path, d, &e);
  if (rv == 0 && !d->api_key && !(d->api_key = strdup(""))) rv = cfg_fail(p, item, path, "out of memory");
  if (rv == 0 && cloud_defaults(d) < 0) rv = cfg_fail(p, item, path, "out of memory");
  if (rv == 0) rv = finish_aws(p, item, path, d);
  if (rv == 0) rv = finish_vertex(p, item, path, d, &e);
  free(e.id);
  free(e.model);
  free(e.provider);
  if (rv < 0) return -1;
  if (!e.has_timeout) d->timeout_ms = 0; /* filled with the router timeout later */
  if (!e.params_in_cost && e.info_in_cost) d->input_cost_per_token = e.info_in;
  if (!e.params_out_cost && e.info_out_cost) d->output_cost_per_token = e.info_out;
  if (!d->api_base) d->api_base = strdup(cfg_default_api_base(d->provider));
  if (!d->api_key) d->api_key = strdup("");
  if (!d->api_version) d->api_version = strdup("");
  if (!d->api_base || !d->api_key || !d->api_version) return cfg_fail(p, item, path, "out of memory");
  int derived = !strcmp(d->provider, "bedrock") || !strcmp(d->provider, "vertex_ai"); /* from region */
  if (!*d->api_base && !derived && cfg_warn(p, item, path, "no api_base and no default for this provider") < 0)
    return -1;
  if (!cfg_find_group(c, d->model_group) && !cfg_add_group(c, d->model_group))
    return cfg_fail(p, item, path, "out of memory");
  return 0;
}

static int parse_model_list(cfg_parser *p, yaml_node_t *n) {
  if (n->type != YAML_SEQUENCE_NODE) return cfg_fail(p, n, "model_list", "must be a list");
  int i = 0;
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
    char path[CFG_PATH_MAX];
    path_index(path, "model_list", i);
    if (parse_entry(p, node_at(p, *it), path) < 0) return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ router_settings */

static int add_fallback(cfg_parser *p, cfg_group *g, enum cfg_fb_kind kind, yaml_node_t *f,
                        const char *path) {
  char ***list;
  size_t *n;
  if (f->type != YAML_SCALAR_NODE) return cfg_fail(p, f, path, "must be a list of model groups");
  if (!cfg_find_group(p->cfg, scalar(f)))
    return cfg_fail(p, f, path, "unknown model group '%s'", scalar(f));
  if (!strcmp(scalar(f), g->name)) return cfg_fail(p, f, path, "'%s' falls back to itself", g->name);
  group_fallback_list(g, kind, &list, &n);
  if (strv_add(list, n, scalar(f)) < 0) return cfg_fail(p, f, path, "out of memory");
  return 0;
}

/* One "group: [fallback, ...]" pair; a single string is accepted as a one-item list. */
static int add_fallbacks(cfg_parser *p, enum cfg_fb_kind kind, yaml_node_t *k, yaml_node_t *v,
                         const char *path) {
  char ***list;
  size_t *n;
  cfg_group *g = cfg_find_group(p->cfg, scalar(k));
  if (!g) return cfg_fail(p, k, path, "unknown model group '%s'", scalar(k));
  group_fallback_list(g, kind, &list, &n);
  if (*n) return cfg_fail(p, k, path, "%s for '%s' given twice", cfg_fb_keys[kind], g->name);
  if (v->type == YAML_SCALAR_NODE) return add_fallback(p, g, kind, v, path);
  if (v->type != YAML_SEQUENCE_NODE) return cfg_fail(p, v, path, "must be a list of model groups");
  for (yaml_node_item_t *it = v->data.sequence.items.start; it < v->data.sequence.items.top; it++)
    if (add_fallback(p, g, kind, node_at(p, *it), path) < 0) return -1;
  return 0;
}

/* fallbacks, context_window_fallbacks, content_policy_fallbacks: LiteLLM's list of
 * one-key maps, [{"gpt-3.5": ["gpt-4-32k"]}]. */
static int parse_fallbacks(cfg_parser *p, enum cfg_fb_kind kind, yaml_node_t *n, const char *path) {
  if (is_null(n)) return 0;
  if (n->type != YAML_SEQUENCE_NODE)
    return cfg_fail(p, n, path, "must be a list like [{\"group\": [\"other\"]}]");
  int i = 0;
  for (yaml_node_item_t *it = n->data.sequence.items.start; it < n->data.sequence.items.top; it++, i++) {
    yaml_node_t *m = node_at(p, *it);
    char sub[CFG_PATH_MAX];
    path_index(sub, path, i);
    if (check_mapping(p, m, sub) < 0) return -1;
    for (yaml_node_pair_t *pr = m->data.mapping.pairs.start; pr < m->data.mapping.pairs.top; pr++) {
      char sub2[CFG_PATH_MAX];
      path_join(sub2, sub, scalar(node_at(p, pr->key)));
      if (add_fallbacks(p, kind, node_at(p, pr->key), node_at(p, pr->value), sub2) < 0) return -1;
    }
  }
  return 0;
}

/* Numeric router_settings: integers ('i', in [min, max]) or seconds ('s' > 0, 'z' >= 0) → ms. */
typedef struct cfg_num_key {
  const char *key;  /* router_settings key */
  char kind;        /* 'i' integer, 's' positive seconds, 'z' non-negative seconds */
  uint32_t min;     /* 'i': smallest accepted value */
  uint32_t max;     /* 'i': largest accepted value */
  size_t off;       /* uint32_t field in cfg_router */
} cfg_num_key;

#define CFG_R(f) offsetof(cfg_router, f)
static const cfg_num_key cfg_router_nums[] = {
    {"num_retries", 'i', 0, UINT32_MAX, CFG_R(num_retries)},
    {"timeout", 's', 0, 0, CFG_R(timeout_ms)},
    {"allowed_fails", 'i', 0, UINT32_MAX, CFG_R(allowed_fails)},
    {"cooldown_time", 'z', 0, 0, CFG_R(cooldown_ms)},
    {"retry_backoff", 'z', 0, 0, CFG_R(retry_backoff_ms)},
    {"retry_backoff_max", 'z', 0, 0, CFG_R(retry_backoff_max_ms)},
    {"retry_budget_percent", 'i', 0, 100, CFG_R(retry_budget_percent)},
    {"retry_budget_min_per_second", 'i', 0, UINT32_MAX, CFG_R(retry_budget_min_per_s)},
    {"total_timeout", 'z', 0, 0, CFG_R(total_timeout_ms)},
    {"max_retry_after", 'z', 0, 0, CFG_R(max_retry_after_ms)},
    {"local_trip_failures", 'i', 1, UINT32_MAX, CFG_R(local_trip_failures)},
    {"local_cooldown", 's', 0, 0, CFG_R(local_cooldown_ms)},
};

/* Returns 1 when key is not numeric, else 0 / -1 from the parse. */
static int parse_router_num(cfg_parser *p, const char *key, yaml_node_t *v, const char *sub) {
  for (size_t i = 0; i < sizeof cfg_router_nums / sizeof cfg_router_nums[0]; i++) {
    const cfg_num_key *nk = &cfg_router_nums[i];
    if (strcmp(key, nk->key) != 0) continue;
    uint32_t *out = (uint32_t *)((char *)&p->cfg->router + nk->off);
    if (nk->kind != 'i') return get_seconds_ms(p, v, sub, nk->kind == 'z', out);
    if (nk->max == UINT32_MAX) return get_uint(p, v, sub, nk->min, out);
    return get_uint_range(p, v, sub, nk->min, nk->max, out);
  }
  return 1;
}

static int parse_group_setting(cfg_parser *p, cfg_group *g, const char *key, yaml_node_t *v,
                               const char *sub) {
  if (!strcmp(key, "routing_strategy")) return get_strategy(p, v, sub, &g->routing_strategy);
  if (!strcmp(key, "mid_stream_fallback")) return get_mid_stream(p, v, sub, &g->mid_stream_fallback);
  if (!strcmp(key, "hedge")) return get_bool(p, v, sub, &g->hedge);
  return cfg_fail(p, v, sub, "unknown key (valid: routing_strategy, mid_stream_fallback, hedge)");
}

/* model_group_settings: {GROUP: {routing_strategy, mid_stream_fallback, hedge}}. A typo
 * here would silently route a group differently, so unknown names are errors. */
static int parse_group_settings(cfg_parser *p, yaml_node_t *n, const char *path) {
  if (is_null(n)) return 0;
  if (check_mapping(p, n, path) < 0) return -1;
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key), *m = node_at(p, pr->value);
    char sub[CFG_PATH_MAX];
    path_join(sub, path, scalar(k));
    cfg_group *g = cfg_find_group(p->cfg, scalar(k));
    if (!g) return cfg_fail(p, k, sub, "unknown model group '%s'", scalar(k));
    if (is_null(m)) continue;
    if (check_mapping(p, m, sub) < 0) return -1;
    for (yaml_node_pair_t *q = m->data.mapping.pairs.start; q < m->data.mapping.pairs.top; q++) {
      yaml_node_t *qk = node_at(p, q->key);
      char sub2[CFG_PATH_MAX];
      path_join(sub2, sub, scalar(qk));
      if (parse_group_setting(p, g, scalar(qk), node_at(p, q->value), sub2) < 0) return -1;
    }
  }
  return 0;
}

static int parse_router_key(cfg_parser *p, yaml_node_t *k, yaml_node_t *v, const char *sub) {
  cfg_router *r = &p->cfg->router;
  const char *key = scalar(k);
  int rv = parse_router_num(p, key, v, sub);
  if (rv <= 0) return rv;
  for (int kind = CFG_FB_GENERAL; kind <= CFG_FB_CONTENT_POLICY; kind++)
    if (!strcmp(key, cfg_fb_keys[kind])) return parse_fallbacks(p, kind, v, sub);
  if (!strcmp(key, "routing_strategy")) return get_strategy(p, v, sub, &r->routing_strategy);
  if (!strcmp(key, "mid_stream_fallback")) return get_mid_stream(p, v, sub, &r->mid_stream_fallback);
  if (!strcmp(key, "model_group_settings")) return parse_group_settings(p, v, sub);
  return cfg_warn(p, k, sub, "unknown key, ignored");
}

/* A first backoff above its cap would be silently clipped; say so instead. */
static int check_backoff(cfg_parser *p, yaml_node_t *n) {
  const cfg_router *r = &p->cfg->router;
  if (r->retry_backoff_ms <= r->retry_backoff_max_ms) return 0;
  yaml_node_t *max = NULL, *first = NULL;
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    if (!strcmp(scalar(node_at(p, pr->key)), "retry_backoff_max")) max = node_at(p, pr->value);
    if (!strcmp(scalar(node_at(p, pr->key)), "retry_backoff")) first = node_at(p, pr->value);
  }
  if (max)
    return cfg_fail(p, max, "router_settings.retry_backoff_max", "must not be less than retry_backoff (%g s)",
                    r->retry_backoff_ms / 1000.0);
  return cfg_fail(p, first, "router_settings.retry_backoff",
                  "is more than retry_backoff_max (%g s by default); set retry_backoff_max too",
                  r->retry_backoff_max_ms / 1000.0);
}

static int parse_router(cfg_parser *p, yaml_node_t *n) {
  if (is_null(n)) return 0;
  if (check_mapping(p, n, "router_settings") < 0) return -1;
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
    char sub[CFG_PATH_MAX];
    path_join(sub, "router_settings", scalar(k));
    if (parse_router_key(p, k, v, sub) < 0) return -1;
  }
  return check_backoff(p, n);
}

/* ------------------------------------------------------------------ other sections */

/* Whether s (n bytes) is well-formed UTF-8: no overlong forms, surrogates or code points
 * past U+10FFFF (the probe body is JSON, and the adapters' parsers refuse anything else). */
static int utf8_valid(const unsigned char *s, size_t n) {
  for (size_t i = 0; i < n;) {
    unsigned c = s[i], len = c < 0x80 ? 1 : (c & 0xe0) == 0xc0 ? 2 : (c & 0xf0) == 0xe0 ? 3
                           : (c & 0xf8) == 0xf0 ? 4 : 0;
    if (!len || i + len > n) return 0;
    uint32_t cp = len == 1 ? c : c & (0x7fu >> len);
    for (unsigned j = 1; j < len; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3fu);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min[len] || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += len;
  }
  return 1;
}

/* health_check_prompt: sent to every provider every interval, so it is bounded. */
static int get_probe_prompt(cfg_parser *p, yaml_node_t *n, const char *path, char **out) {
  if (get_string(p, n, path, out) < 0) return -1;
  size_t len = strlen(*out);
  if (!len) return cfg_fail(p, n, path, "must not be empty");
  if (len > CFG_PROBE_PROMPT_MAX)
    return cfg_fail(p, n, path, "is %zu bytes, at most %u allowed", len, CFG_PROBE_PROMPT_MAX);
  if (!utf8_valid((const unsigned char *)*out, len)) return cfg_fail(p, n, path, "must be valid UTF-8");
  return 0;
}

/* general_settings other than master_key: LiteLLM's background health checks, and what
 * llmesh's probe sends (health_check_prompt, health_check_max_tokens). */
static int parse_general_key(cfg_parser *p, yaml_node_t *k, yaml_node_t *v, const char *sub) {
  cfg_router *r = &p->cfg->router;
  const char *key = scalar(k);
  if (!strcmp(key, "background_health_checks")) return get_bool(p, v, sub, &r->probes_enabled);
  if (!strcmp(key, "health_check_interval")) return get_seconds_ms(p, v, sub, 0, &r->probe_interval_ms);
  if (!strcmp(key, "health_check_timeout")) return get_seconds_ms(p, v, sub, 0, &r->probe_timeout_ms);
  if (!strcmp(key, "health_check_prompt")) return get_probe_prompt(p, v, sub, &r->probe_prompt);
  if (!strcmp(key, "health_check_max_tokens"))
    return get_uint_range(p, v, sub, 1, CFG_PROBE_MAX_TOKENS_MAX, &r->probe_max_tokens);
  return cfg_warn(p, k, sub, "unknown key, ignored");
}

static int parse_general(cfg_parser *p, yaml_node_t *n) {
  if (is_null(n)) return 0;
  if (check_mapping(p, n, "general_settings") < 0) return -1;
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key), *v = node_at(p, pr->value);
    char sub[CFG_PATH_MAX];
    path_join(sub, "general_settings", scalar(k));
    if (!strcmp(scalar(k), "master_key")) {
      const char *key;
      if (is_null(v)) continue;
      if (v->type != YAML_SCALAR_NODE) return cfg_fail(p, v, sub, "must be a string");
      if (resolve_env(p, v, sub, &key) < 0) return -1;
      if (!*key) return cfg_fail(p, v, sub, "must not be empty");
      SHA256((const unsigned char *)key, strlen(key), p->cfg->master_key_sha256);
      p->cfg->has_master_key = 1;
    } else if (parse_general_key(p, k, v, sub) < 0) {
      return -1;
    }
  }
  return 0;
}

static int parse_env(cfg_parser *p, yaml_node_t *n) {
  if (is_null(n)) return 0;
  if (check_mapping(p, n, "environment_variables") < 0) return -1;
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *v = node_at(p, pr->value);
    if (v->type != YAML_SCALAR_NODE) {
      char sub[CFG_PATH_MAX];
      path_join(sub, "environment_variables", scalar(node_at(p, pr->key)));
      return cfg_fail(p, v, sub, "must be a string");
    }
  }
  p->env = n;
  return 0;
}

/* litellm_settings: only the error-kind fallbacks (LiteLLM accepts them here too);
 * everything else is reported and ignored. */
static int parse_litellm(cfg_parser *p, yaml_node_t *n) {
  if (is_null(n)) return 0;
  if (check_mapping(p, n, "litellm_settings") < 0) return -1;
  for (yaml_node_pair_t *pr = n->data.mapping.pairs.start; pr < n->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key);
    char sub[CFG_PATH_MAX];
    path_join(sub, "litellm_settings", scalar(k));
    int rv;
    if (!strcmp(scalar(k), cfg_fb_keys[CFG_FB_CONTEXT_WINDOW]))
      rv = parse_fallbacks(p, CFG_FB_CONTEXT_WINDOW, node_at(p, pr->value), sub);
    else if (!strcmp(scalar(k), cfg_fb_keys[CFG_FB_CONTENT_POLICY]))
      rv = parse_fallbacks(p, CFG_FB_CONTENT_POLICY, node_at(p, pr->value), sub);
    else
      rv = cfg_warn(p, k, sub, "litellm_settings are not supported, ignored");
    if (rv < 0) return -1;
  }
  return 0;
}

/* ------------------------------------------------------------------ top level */

/* Sections are read in dependency order; report warnings in file order (stable). */
static void sort_warnings(cfg_config *c) {
  for (size_t i = 1; i < c->nwarnings; i++) {
    cfg_warning w = c->warnings[i];
    size_t j = i;
    for (; j > 0 && c->warnings[j - 1].line > w.line; j--) c->warnings[j] = c->warnings[j - 1];
    c->warnings[j] = w;
  }
}

enum { SEC_ENV, SEC_MODELS, SEC_ROUTER, SEC_GENERAL, SEC_LITELLM, SEC_COUNT };
static const char *const cfg_sections[SEC_COUNT] = {
    "environment_variables", "model_list", "router_settings", "general_settings", "litellm_settings"};

static int parse_root(cfg_parser *p) {
  yaml_node_t *root = yaml_document_get_root_node(&p->doc), *sec[SEC_COUNT] = {0};
  if (!root || is_null(root)) return cfg_fail(p, root, "model_list", "missing (the config is empty)");
  if (check_mapping(p, root, "(top level)") < 0) return -1;
  for (yaml_node_pair_t *pr = root->data.mapping.pairs.start; pr < root->data.mapping.pairs.top; pr++) {
    yaml_node_t *k = node_at(p, pr->key);
    int s = 0;
    while (s < SEC_COUNT && strcmp(scalar(k), cfg_sections[s])) s++;
    if (s < SEC_COUNT) sec[s] = node_at(p, pr->value);
    else if (cfg_warn(p, k, scalar(k), "unknown key, ignored") < 0) return -1;
  }
  if (!sec[SEC_MODELS]) return cfg_fail(p, root, "model_list", "missing");
  if (parse_env(p, sec[SEC_ENV]) < 0 || parse_model_list(p, sec[SEC_MODELS]) < 0 ||
      parse_router(p, sec[SEC_ROUTER]) < 0 || parse_general(p, sec[SEC_GENERAL]) < 0 ||
      parse_litellm(p, sec[SEC_LITELLM]) < 0)
    return -1;
  sort_warnings(p->cfg);
  for (size_t i = 0; i < p->cfg->ndeployments; i++)
    if (!p->cfg->deployments[i].timeout_ms) p->cfg->deployments[i].timeout_ms = p->cfg->router.timeout_ms;
  if (!p->cfg->router.routing_strategy &&
      !(p->cfg->router.routing_strategy = strdup(CFG_DEFAULT_ROUTING_STRATEGY)))
    return cfg_fail(p, root, "router_settings", "out of memory");
  if (!p->cfg->router.mid_stream_fallback && !(p->cfg->router.mid_stream_fallback = strdup("continue")))
    return cfg_fail(p, root, "router_settings", "out of memory");
  if (!p->cfg->router.probe_prompt && !(p->cfg->router.probe_prompt = strdup(CFG_DEFAULT_PROBE_PROMPT)))
    return cfg_fail(p, root, "general_settings", "out of memory");
  return 0;
}

int cfg_parse_string(const char *name, const char *text, size_t len, cfg_config *out,
                     char *err, size_t errlen) {
  cfg_parser p = {.file = name, .cfg = out, .err = err, .errlen = errlen};
  yaml_parser_t yp;
  cfg_init(out);
  if (!yaml_parser_initialize(&yp)) {
    snprintf(err, errlen, "%s: out of memory", name);
    return -1;
  }
  yaml_parser_set_input_string(&yp, (const unsigned char *)text, len);
  if (!yaml_parser_load(&yp, &p.doc)) {
    char ctx[160] = "";
    if (yp.context)
      snprintf(ctx, sizeof ctx, " %s started at line %d", yp.context, (int)yp.context_mark.line + 1);
    snprintf(err, errlen, "%s:%d: yaml: %s%s", name, (int)yp.problem_mark.line + 1,
             yp.problem ? yp.problem : "syntax error", ctx);
    yaml_parser_delete(&yp);
    return -1;
  }
  yaml_parser_delete(&yp);
  int rv = parse_root(&p);
  yaml_document_delete(&p.doc);
  if (rv < 0) cfg_free(out);
  return rv;
}

int cfg_parse_file(const char *path, cfg_config *out, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  char *text = NULL;
  long n = -1;
  cfg_init(out);
  if (f && fseek(f, 0, SEEK_END) == 0 && (n = ftell(f)) >= 0 && fseek(f, 0, SEEK_SET) == 0 &&
      (text = malloc((size_t)n + 1)) && fread(text, 1, (size_t)n, f) == (size_t)n) {
    fclose(f);
    int rv = cfg_parse_string(path, text, (size_t)n, out, err, errlen);
    free(text);
    return rv;
  }
  snprintf(err, errlen, "%s:0: (file): cannot read: %s", path, strerror(errno ? errno : EIO));
  if (f) fclose(f);
  free(text);
  return -1;
}
