/* config_import.h — LiteLLM-compatible YAML config → in-memory rows.
 *
 * Reads the subset of a LiteLLM proxy config that llmesh understands (model_list,
 * router_settings, general_settings, environment_variables; litellm_settings is
 * accepted and ignored). Secrets given as `os.environ/NAME` are resolved once, here.
 * Errors are fatal and formatted "FILE:LINE: key.path: problem"; unknown keys are
 * collected as warnings (never fatal, never silently dropped).
 *
 * The same cfg_config is what store.c writes to and reads back from SQLite, so the
 * snapshot is always built from database rows. */
#ifndef LLMESH_CONFIG_IMPORT_H
#define LLMESH_CONFIG_IMPORT_H

#include <stddef.h>
#include <stdint.h>

#define CFG_DEFAULT_WEIGHT 1
#define CFG_DEFAULT_NUM_RETRIES 2
#define CFG_DEFAULT_TIMEOUT_MS 600000u        /* LiteLLM's default request timeout, 600 s */
#define CFG_DEFAULT_CONNECT_TIMEOUT_MS 5000u  /* TCP+TLS connect deadline */
#define CFG_DEFAULT_ALLOWED_FAILS 3           /* LiteLLM's default */
#define CFG_DEFAULT_COOLDOWN_MS 5000u         /* LiteLLM's default cooldown_time, 5 s */
#define CFG_DEFAULT_ROUTING_STRATEGY "simple-shuffle"

typedef struct cfg_deployment {
  char *name;                  /* unique: model_info.id, else "<model_name>-<n>" */
  char *model_group;           /* model_name: the alias clients ask for */
  char *provider;              /* provider family: explicit key, model prefix, else inferred */
  char *upstream_model;        /* litellm_params.model with the prefix stripped */
  char *api_base;              /* base URL; provider default when not configured */
  char *api_key;               /* plaintext provider key, "" when none */
  char *api_version;           /* anthropic-version / azure api-version, "" when none */
  /* AWS (bedrock): SigV4 credentials; "" when unused. Secrets are encrypted at rest. */
  char *aws_access_key_id;     /* AKIA.../ASIA..., "" = none */
  char *aws_secret_access_key; /* plaintext secret of that key id, "" = none */
  char *aws_session_token;     /* STS session token, "" = none */
  char *aws_region;            /* aws_region_name, e.g. "us-east-1", "" = none */
  /* Google Vertex AI: project, location and the service-account key (validated JSON). */
  char *gcp_project;           /* vertex_project, "" = from the key's project_id / api_base */
  char *gcp_location;          /* vertex_location, "" = adapter default (us-central1) */
  char *gcp_credentials;       /* plaintext service-account JSON, "" = none */
  uint32_t weight;             /* >= 1 */
  uint32_t timeout_ms;         /* per-attempt deadline (own, else router timeout) */
  uint32_t stream_timeout_ms;  /* time to first byte of a stream, 0 = timeout_ms */
  uint32_t connect_timeout_ms; /* TCP+TLS connect deadline */
  uint32_t rpm;                /* requests/minute limit, 0 = none */
  uint32_t tpm;                /* tokens/minute limit, 0 = none */
  uint32_t order;              /* priority tier (litellm_params.order), 1 = first, 0 = unset */
  double input_cost_per_token; /* USD (litellm_params or model_info), 0 = unknown */
  double output_cost_per_token;/* USD, 0 = unknown */
  int supports_prefill;        /* model_info.supports_assistant_prefill; -1 = unset: infer from provider */
  int health_check;            /* model_info.health_check: 1 = actively probed (default), 0 = never */
  int line;                    /* config line of the entry (0 when read from the db) */
} cfg_deployment;

typedef struct cfg_group {
  char *name;        /* alias (model_name) */
  char **fallbacks;  /* groups tried in order once this one is exhausted */
  size_t nfallbacks; /* entries in fallbacks */
  char **cw_fallbacks;  /* context_window_fallbacks for this group, in order */
  size_t ncw_fallbacks;
  char **cp_fallbacks;  /* content_policy_fallbacks for this group, in order */
  size_t ncp_fallbacks;
  char *routing_strategy;    /* model_group_settings.<g>.routing_strategy, NULL = router's */
  char *mid_stream_fallback; /* "continue" | "error", NULL = router's */
  int hedge;                 /* model_group_settings.<g>.hedge */
} cfg_group;

#define CFG_DEFAULT_RETRY_BACKOFF_MS 100u      /* first backoff before re-trying a deployment */
#define CFG_DEFAULT_RETRY_BACKOFF_MAX_MS 2000u /* its cap */
#define CFG_DEFAULT_RETRY_BUDGET_PERCENT 20u   /* retries may add at most 20 % of traffic */
#define CFG_DEFAULT_RETRY_BUDGET_MIN_PER_S 10u /* floor for low traffic */
#define CFG_DEFAULT_MAX_RETRY_AFTER_MS 10000u  /* longest Retry-After waited for in-line */
#define CFG_DEFAULT_LOCAL_TRIP_FAILURES 3u     /* consecutive connect errors/timeouts */
#define CFG_DEFAULT_LOCAL_COOLDOWN_MS 1000u    /* first worker-local open period */
#define CFG_DEFAULT_PROBE_INTERVAL_MS 30000u   /* health probe period per deployment */
#define CFG_DEFAULT_PROBE_TIMEOUT_MS 10000u
#define CFG_DEFAULT_PROBE_PROMPT "ping"       /* the probe's user message */
#define CFG_DEFAULT_PROBE_MAX_TOKENS 1u       /* the probe's max_tokens: as cheap as it gets */
#define CFG_PROBE_PROMPT_MAX 4096u            /* bytes of health_check_prompt */
#define CFG_PROBE_MAX_TOKENS_MAX 4096u        /* largest health_check_max_tokens */

typedef struct cfg_router {
  uint32_t num_retries;   /* extra attempts within a group after the first */
  uint32_t timeout_ms;    /* default per-attempt deadline */
  uint32_t allowed_fails; /* failures per minute (with minimum volume) that open a circuit */
  uint32_t cooldown_ms;   /* first open period of a circuit (cooldown_time) */
  char *routing_strategy; /* validated: one of the five strategy names */
  uint32_t retry_backoff_ms;      /* router_settings.retry_backoff (s) */
  uint32_t retry_backoff_max_ms;  /* router_settings.retry_backoff_max (s) */
  uint32_t retry_budget_percent;  /* router_settings.retry_budget_percent */
  uint32_t retry_budget_min_per_s;/* router_settings.retry_budget_min_per_second */
  uint32_t total_timeout_ms;      /* router_settings.total_timeout (s), 0 = none */
  uint32_t max_retry_after_ms;    /* router_settings.max_retry_after (s) */
  uint32_t local_trip_failures;   /* router_settings.local_trip_failures */
  uint32_t local_cooldown_ms;     /* router_settings.local_cooldown (s) */
  char *mid_stream_fallback;      /* router_settings.mid_stream_fallback: "continue" (default) | "error" */
  int probes_enabled;             /* general_settings.background_health_checks (default true) */
  uint32_t probe_interval_ms;     /* general_settings.health_check_interval (s) */
  uint32_t probe_timeout_ms;      /* general_settings.health_check_timeout (s) */
  char *probe_prompt;             /* general_settings.health_check_prompt: the probe's user message
                                   * (non-empty UTF-8, <= CFG_PROBE_PROMPT_MAX bytes); NULL only
                                   * between cfg_init and the end of a parse or load = the default */
  uint32_t probe_max_tokens;      /* general_settings.health_check_max_tokens, 1..CFG_PROBE_MAX_TOKENS_MAX */
} cfg_router;

typedef struct cfg_warning {
  int line;      /* 1-based config line */
  char *path;    /* key path, e.g. "model_list[0].litellm_params.foo" */
  char *message; /* "FILE:LINE: path: problem" */
} cfg_warning;

typedef struct cfg_config {
  cfg_deployment *deployments;   /* in config order */
  size_t ndeployments;
  cfg_group *groups;             /* in order of first appearance */
  size_t ngroups;
  cfg_router router;
  int has_master_key;            /* general_settings.master_key was set */
  uint8_t master_key_sha256[32]; /* SHA-256 of the master key (the key itself is dropped) */
  cfg_warning *warnings;         /* unknown / ignored keys, in file order */
  size_t nwarnings;
} cfg_config;

/* Parses a config file. Returns 0, or -1 with err set to "FILE:LINE: key: problem". */
int cfg_parse_file(const char *path, cfg_config *out, char *err, size_t errlen);
/* Same, from memory; name is used in messages in place of the file name. */
int cfg_parse_string(const char *name, const char *text, size_t len, cfg_config *out,
                     char *err, size_t errlen);
/* Frees everything and wipes plaintext keys; leaves c zeroed. */
void cfg_free(cfg_config *c);

/* Builders shared with store.c. Return 0 or -ENOMEM. */
void cfg_init(cfg_config *c);  /* zero + router defaults */
cfg_deployment *cfg_add_deployment(cfg_config *c);
cfg_group *cfg_add_group(cfg_config *c, const char *name);
int cfg_group_add_fallback(cfg_group *g, const char *name);
cfg_group *cfg_find_group(const cfg_config *c, const char *name);
const char *cfg_default_api_base(const char *provider); /* "" when unknown */

#endif
