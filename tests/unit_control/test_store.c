/* test_store.c — SQLite store: migrations, WAL, STRICT, version bumps only on change,
 * round trip with decrypted keys, refusal of newer schemas, no plaintext secrets in the
 * database or its WAL; the routing config of issue 5 (every field round-trips, each one
 * alone bumps the version, an identical re-import does not); the probe request and
 * model_info.health_check (migration 5, tunables, a v4 database migrated forward). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cmocka.h>
#include <sqlite3.h>

#include "config_import.h"
#include "keys.h"
#include "store.h"
#include "sa_key.h"

#define PROVIDER_KEY "sk-PLAINTEXT-provider-key-7f3a9c"
#define MASTER_KEY "sk-PLAINTEXT-master-key-51be02"
#define AWS_KEY_ID "AKIAPLAINTEXTKEYID42"
#define AWS_SECRET "PLAINTEXT-aws-secret-9d8c7b6a"
#define AWS_SESSION "PLAINTEXT-aws-session-token-1f2e"
#define SA_EMAIL "plaintext-sa@proj.iam.gserviceaccount.com"

typedef struct fixture {
  char dir[64];   /* temp dir */
  char db[96];    /* dir/llmesh.db */
  keys_t keys;
  char err[1024];
} fixture;

static const char *config_v1 =
    "model_list:\n"
    "  - model_name: gpt-4\n"
    "    litellm_params: {model: openai/gpt-4o-canary, api_key: " PROVIDER_KEY ", weight: 3}\n"
    "  - model_name: claude\n"
    "    litellm_params: {model: anthropic/claude-3}\n"
    "router_settings: {fallbacks: [{gpt-4: [claude]}], num_retries: 1}\n"
    "general_settings: {master_key: " MASTER_KEY "}\n";

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/llmesh-store-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->db, sizeof f->db, "%s/llmesh.db", f->dir);
  memset(f->keys.key, 7, sizeof f->keys.key);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

static void parse(fixture *f, const char *yaml, cfg_config *c) {
  assert_int_equal(cfg_parse_string("t.yaml", yaml, strlen(yaml), c, f->err, sizeof f->err), 0);
}

static store_t *open_store(fixture *f) {
  store_t *s = NULL;
  if (store_open(&s, f->db, f->err, sizeof f->err) != 0) fail_msg("store_open: %s", f->err);
  return s;
}

static void test_migrations_fresh(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  assert_int_equal(store_schema_version(s), STORE_SCHEMA_VERSION);
  store_close(s);

  struct stat st;
  assert_int_equal(stat(f->db, &st), 0);
  assert_int_equal(st.st_mode & 0777, 0600);

  sqlite3 *db;
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
  sqlite3_finalize(q);
  /* STRICT: a string in an INTEGER column is an error, not a silent coercion */
  assert_int_not_equal(sqlite3_exec(db, "INSERT INTO model_groups VALUES ('g', 'first')", NULL, NULL, NULL),
                       SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_schema WHERE type = 'table'"
                                          " AND sql LIKE '%STRICT'", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(q, 0), 8); /* 5 config + drains, audit_log, probes */
  sqlite3_finalize(q);
  /* pretend a newer llmesh migrated this file */
  assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);

  store_t *s2 = NULL;
  assert_int_equal(store_open(&s2, f->db, f->err, sizeof f->err), -1);
  assert_null(s2);
  assert_non_null(strstr(f->err, "newer"));
}

static void test_empty_db_has_no_config(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v = 99;
  assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), 0);
  assert_int_equal(v, 0);
  cfg_free(&c);
  store_close(s);
}

static void test_version_bumps_only_on_change(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v = 0;
  int changed = -1;

  parse(f, config_v1, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(v, 1);
  assert_true(changed);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(v, 1);
  assert_false(changed);
  cfg_free(&c);

  /* same text reparsed (new IVs on encryption would differ): still unchanged */
  parse(f, config_v1, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(v, 1);
  assert_false(changed);
  c.deployments[0].weight = 4; /* a real change */
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(v, 2);
  assert_true(changed);
  free(c.deployments[0].api_key); /* a key change alone is a change too */
  c.deployments[0].api_key = strdup("sk-rotated");
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(v, 3);
  cfg_free(&c);
  store_close(s);

  /* persisted across a reopen */
  s = open_store(f);
  assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), 1);
  assert_int_equal(v, 3);
  assert_int_equal(c.ndeployments, 2);
  assert_string_equal(c.deployments[0].name, "gpt-4-1");
  assert_string_equal(c.deployments[0].provider, "openai");
  assert_string_equal(c.deployments[0].upstream_model, "gpt-4o-canary");
  assert_string_equal(c.deployments[0].api_key, "sk-rotated");
  assert_int_equal(c.deployments[0].weight, 4);
  assert_string_equal(c.deployments[1].name, "claude-1");
  assert_string_equal(c.deployments[1].api_key, "");
  assert_int_equal(c.ngroups, 2);
  assert_int_equal(c.groups[0].nfallbacks, 1);
  assert_string_equal(c.groups[0].fallbacks[0], "claude");
  assert_int_equal(c.router.num_retries, 1);
  assert_true(c.has_master_key);
  cfg_free(&c);
  store_close(s);
}

static void test_round_trip_equals_import(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config a, b;
  uint64_t v;
  int changed;
  parse(f, config_v1, &a);
  assert_int_equal(store_import(s, &f->keys, &a, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(store_load(s, &f->keys, &b, &v, f->err, sizeof f->err), 1);
  assert_string_equal(b.deployments[0].api_key, PROVIDER_KEY);
  assert_memory_equal(a.master_key_sha256, b.master_key_sha256, 32);
  /* importing what was read back is not a change */
  assert_int_equal(store_import(s, &f->keys, &b, &v, &changed, f->err, sizeof f->err), 0);
  assert_false(changed);
  cfg_free(&a);
  cfg_free(&b);
  /* another data key cannot read the provider keys */
  keys_t other = f->keys;
  other.key[5] ^= 1;
  assert_int_equal(store_load(s, &other, &b, &v, f->err, sizeof f->err), -1);
  assert_non_null(strstr(f->err, "decrypt"));
  store_close(s);
}

static int file_contains(const char *path, const char *needle, int *exists) {
  FILE *fp = fopen(path, "rb");
  if (!fp) return 0;
  *exists = 1;
  static char data[8 << 20];
  size_t n = fread(data, 1, sizeof data, fp);
  fclose(fp);
  return memmem(data, n, needle, strlen(needle)) != NULL;
}

/* config_v1 plus a Bedrock deployment with SigV4 keys and a Vertex one with a
 * service-account key (malloc'd); pem_line: a piece of that key's private key. */
static char *config_cloud(char pem_line[41], char **sa_json) {
  char *yaml = NULL;
  *sa_json = sa_key_json(SA_EMAIL, "proj", "https://oauth2.googleapis.com/token", pem_line);
  if (asprintf(&yaml,
               "%s"
               "  - model_name: claude-br\n"
               "    litellm_params: {model: bedrock/anthropic.claude-v2, aws_access_key_id: " AWS_KEY_ID ","
               " aws_secret_access_key: " AWS_SECRET ", aws_session_token: " AWS_SESSION ","
               " aws_region_name: us-east-1}\n"
               "  - model_name: gem-vx\n"
               "    litellm_params: {model: vertex_ai/gemini-1.5-pro, vertex_location: us-east5,"
               " vertex_credentials: '%s'}\n",
               config_v1, *sa_json) < 0)
    abort();
  /* the model_list entries go before router_settings */
  char *r = strstr(yaml, "router_settings:"), *m = strstr(yaml, "  - model_name: claude-br");
  size_t rl = (size_t)(m - r), ml = strlen(m);
  char *tmp = malloc(rl);
  memcpy(tmp, r, rl);
  memmove(r, m, ml);
  memcpy(r + ml, tmp, rl);
  free(tmp);
  return yaml;
}

static void test_cloud_round_trip(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config a, b;
  uint64_t v, v2;
  int changed;
  char line[41], *json;
  char *yaml = config_cloud(line, &json);
  parse(f, yaml, &a);
  assert_int_equal(store_import(s, &f->keys, &a, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(store_load(s, &f->keys, &b, &v, f->err, sizeof f->err), 1);
  assert_int_equal(b.ndeployments, 4);
  assert_string_equal(b.deployments[2].aws_access_key_id, AWS_KEY_ID);
  assert_string_equal(b.deployments[2].aws_secret_access_key, AWS_SECRET);
  assert_string_equal(b.deployments[2].aws_session_token, AWS_SESSION);
  assert_string_equal(b.deployments[2].aws_region, "us-east-1");
  assert_string_equal(b.deployments[3].gcp_credentials, json);
  assert_string_equal(b.deployments[3].gcp_project, "proj");
  assert_string_equal(b.deployments[3].gcp_location, "us-east5");
  assert_string_equal(b.deployments[0].aws_secret_access_key, "");
  assert_string_equal(b.deployments[0].gcp_credentials, "");
  assert_int_equal(store_import(s, &f->keys, &b, &v2, &changed, f->err, sizeof f->err), 0);
  assert_false(changed); /* read back = imported */
  /* a secret change alone is a change (the fingerprint covers it) */
  free(b.deployments[2].aws_secret_access_key);
  b.deployments[2].aws_secret_access_key = strdup("rotated");
  assert_int_equal(store_import(s, &f->keys, &b, &v2, &changed, f->err, sizeof f->err), 0);
  assert_true(changed);
  assert_int_equal(v2, v + 1);
  cfg_free(&a);
  cfg_free(&b);
  /* a blob moved to another column does not decrypt (AAD = name \0 column) */
  sqlite3 *db;
  assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "UPDATE deployments SET aws_session_token_enc = aws_secret_access_key_enc"
                                    " WHERE name = 'claude-br-1'", NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  assert_int_equal(store_load(s, &f->keys, &b, &v, f->err, sizeof f->err), -1);
  assert_non_null(strstr(f->err, "cannot decrypt aws_session_token of claude-br-1"));
  store_close(s);
  free(yaml);
  free(json);
}

static void test_no_plaintext_secrets(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v;
  int changed;
  char wal[128], line[41], *json;
  char *yaml = config_cloud(line, &json);
  const char *secrets[] = {PROVIDER_KEY, MASTER_KEY, AWS_KEY_ID, AWS_SECRET, AWS_SESSION, SA_EMAIL, line};
  snprintf(wal, sizeof wal, "%s-wal", f->db);
  parse(f, yaml, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  cfg_free(&c);
  /* while open, the rows sit in the WAL; check both files */
  int db_exists = 0, wal_exists = 0;
  int canary = file_contains(f->db, "gpt-4o-canary", &db_exists) | file_contains(wal, "gpt-4o-canary", &wal_exists);
  assert_true(wal_exists);
  assert_true(canary); /* proves we are reading the bytes that hold the rows */
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
    assert_false(file_contains(f->db, secrets[i], &db_exists));
    assert_false(file_contains(wal, secrets[i], &wal_exists));
  }
  store_close(s); /* checkpoints into the main file */
  assert_true(file_contains(f->db, "gpt-4o-canary", &db_exists));
  assert_true(file_contains(f->db, "us-east5", &db_exists)); /* plain columns are there */
  for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++)
    assert_false(file_contains(f->db, secrets[i], &db_exists));
  free(yaml);
  free(json);
}


/* ------------------------------------------------------------------ routing config (issue 5) */

static const char *config_routing =
    "model_list:\n"
    "  - model_name: smart\n"
    "    litellm_params: {model: openai/gpt-4o, order: 1, input_cost_per_token: 0.0000025,"
    " output_cost_per_token: 0.00001}\n"
    "  - model_name: smart\n"
    "    litellm_params: {model: anthropic/claude-3-5-sonnet, order: 2}\n"
    "    model_info: {input_cost_per_token: 0.000003, supports_assistant_prefill: true}\n"
    "  - model_name: small\n"
    "    litellm_params: {model: openai/gpt-4o-mini}\n"
    "    model_info: {supports_assistant_prefill: false}\n"
    "  - model_name: long\n"
    "    litellm_params: {model: openai/gpt-4-32k}\n"
    "    model_info: {health_check: false}\n"
    "router_settings:\n"
    "  routing_strategy: least-busy\n"
    "  retry_backoff: 0.2\n"
    "  retry_backoff_max: 3\n"
    "  retry_budget_percent: 15\n"
    "  retry_budget_min_per_second: 4\n"
    "  total_timeout: 45\n"
    "  max_retry_after: 6\n"
    "  local_trip_failures: 4\n"
    "  local_cooldown: 2\n"
    "  mid_stream_fallback: error\n"
    "  fallbacks: [{smart: [small]}]\n"
    "  context_window_fallbacks: [{smart: [long, small]}, {small: long}]\n"
    "  content_policy_fallbacks: [{smart: [small]}]\n"
    "  model_group_settings:\n"
    "    smart: {routing_strategy: cost-based-routing, mid_stream_fallback: continue, hedge: true}\n"
    "general_settings: {background_health_checks: false, health_check_interval: 20, health_check_timeout: 4,"
    " health_check_prompt: \"are you there? \\\"é\\\"\", health_check_max_tokens: 2}\n";

static int opt_equal(const char *a, const char *b) { return a == b || (a && b && !strcmp(a, b)); }

static void assert_list_equal(char **a, size_t na, char **b, size_t nb) {
  assert_int_equal(na, nb);
  for (size_t i = 0; i < na; i++) assert_string_equal(a[i], b[i]);
}

/* Every routing field of a equals b's (the older fields are covered above). */
static void assert_routing_equal(const cfg_config *a, const cfg_config *b) {
  const cfg_router *ra = &a->router, *rb = &b->router;
  assert_string_equal(ra->routing_strategy, rb->routing_strategy);
  assert_int_equal(ra->retry_backoff_ms, rb->retry_backoff_ms);
  assert_int_equal(ra->retry_backoff_max_ms, rb->retry_backoff_max_ms);
  assert_int_equal(ra->retry_budget_percent, rb->retry_budget_percent);
  assert_int_equal(ra->retry_budget_min_per_s, rb->retry_budget_min_per_s);
  assert_int_equal(ra->total_timeout_ms, rb->total_timeout_ms);
  assert_int_equal(ra->max_retry_after_ms, rb->max_retry_after_ms);
  assert_int_equal(ra->local_trip_failures, rb->local_trip_failures);
  assert_int_equal(ra->local_cooldown_ms, rb->local_cooldown_ms);
  assert_true(opt_equal(ra->mid_stream_fallback, rb->mid_stream_fallback));
  assert_int_equal(ra->probes_enabled, rb->probes_enabled);
  assert_int_equal(ra->probe_interval_ms, rb->probe_interval_ms);
  assert_int_equal(ra->probe_timeout_ms, rb->probe_timeout_ms);
  assert_string_equal(ra->probe_prompt, rb->probe_prompt);
  assert_int_equal(ra->probe_max_tokens, rb->probe_max_tokens);
  assert_int_equal(a->ngroups, b->ngroups);
  for (size_t i = 0; i < a->ngroups; i++) {
    const cfg_group *ga = &a->groups[i], *gb = &b->groups[i];
    assert_string_equal(ga->name, gb->name);
    assert_list_equal(ga->fallbacks, ga->nfallbacks, gb->fallbacks, gb->nfallbacks);
    assert_list_equal(ga->cw_fallbacks, ga->ncw_fallbacks, gb->cw_fallbacks, gb->ncw_fallbacks);
    assert_list_equal(ga->cp_fallbacks, ga->ncp_fallbacks, gb->cp_fallbacks, gb->ncp_fallbacks);
    assert_true(opt_equal(ga->routing_strategy, gb->routing_strategy));
    assert_true(opt_equal(ga->mid_stream_fallback, gb->mid_stream_fallback));
    assert_int_equal(ga->hedge, gb->hedge);
  }
  assert_int_equal(a->ndeployments, b->ndeployments);
  for (size_t i = 0; i < a->ndeployments; i++) {
    const cfg_deployment *da = &a->deployments[i], *db = &b->deployments[i];
    assert_int_equal(da->order, db->order);
    assert_true(da->input_cost_per_token == db->input_cost_per_token);
    assert_true(da->output_cost_per_token == db->output_cost_per_token);
    assert_int_equal(da->supports_prefill, db->supports_prefill);
    assert_int_equal(da->health_check, db->health_check);
  }
}

static void test_routing_round_trip(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config a, b;
  uint64_t v;
  int changed;
  parse(f, config_routing, &a);
  assert_int_equal(store_import(s, &f->keys, &a, &v, &changed, f->err, sizeof f->err), 0);
  assert_int_equal(store_load(s, &f->keys, &b, &v, f->err, sizeof f->err), 1);
  assert_routing_equal(&a, &b);
  /* spot checks that the parse gave non-default values, so equality means something */
  assert_int_equal(b.router.retry_budget_percent, 15);
  assert_false(b.router.probes_enabled);
  assert_string_equal(b.router.mid_stream_fallback, "error");
  assert_int_equal(b.groups[0].ncw_fallbacks, 2);
  assert_int_equal(b.deployments[1].supports_prefill, 1);
  assert_int_equal(b.deployments[2].supports_prefill, 0);
  assert_int_equal(b.deployments[3].supports_prefill, -1);
  assert_true(b.deployments[0].input_cost_per_token == 0.0000025);
  assert_string_equal(b.router.probe_prompt, "are you there? \"é\"");
  assert_int_equal(b.router.probe_max_tokens, 2);
  assert_int_equal(b.deployments[2].health_check, 1);
  assert_int_equal(b.deployments[3].health_check, 0);
  assert_int_equal(store_import(s, &f->keys, &b, &v, &changed, f->err, sizeof f->err), 0);
  assert_false(changed);
  cfg_free(&a);
  cfg_free(&b);

  /* rows: one position sequence per group across kinds (PRIMARY KEY (group_name, position)) */
  sqlite3 *db;
  sqlite3_stmt *q;
  assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT group_concat(position || ':' || kind || ':' || fallback, ',')"
                                          " FROM (SELECT * FROM group_fallbacks WHERE group_name = 'smart'"
                                          " ORDER BY position)", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0),
                      "0:general:small,1:context_window:long,2:context_window:small,3:content_policy:small");
  sqlite3_finalize(q);
  /* tunables: one JSON object */
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT json_extract(tunables, '$.retry_budget_percent'),"
                                          " json_extract(tunables, '$.probes_enabled'),"
                                          " json_extract(tunables, '$.mid_stream_fallback'),"
                                          " json_extract(tunables, '$.probe_prompt'),"
                                          " json_extract(tunables, '$.probe_max_tokens')"
                                          " FROM router_settings", -1, &q, NULL), SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_int_equal(sqlite3_column_int(q, 0), 15);
  assert_int_equal(sqlite3_column_int(q, 1), 0);
  assert_string_equal((const char *)sqlite3_column_text(q, 2), "error");
  assert_string_equal((const char *)sqlite3_column_text(q, 3), "are you there? \"é\"");
  assert_int_equal(sqlite3_column_int(q, 4), 2);
  sqlite3_finalize(q);
  /* health_check: a column of its own (migration 5) */
  assert_int_equal(sqlite3_prepare_v2(db, "SELECT group_concat(name || '=' || health_check, ',')"
                                          " FROM (SELECT * FROM deployments ORDER BY position)", -1, &q, NULL),
                   SQLITE_OK);
  assert_int_equal(sqlite3_step(q), SQLITE_ROW);
  assert_string_equal((const char *)sqlite3_column_text(q, 0), "smart-1=1,smart-2=1,small-1=1,long-1=0");
  sqlite3_finalize(q);
  sqlite3_close(db);
  store_close(s);
}

/* A database migrated from v3 holds tunables '{}': every tunable reads as its default;
 * a tunables value that is not what store.c writes is refused, not half-read. */
static void test_tunables_defaults_and_corruption(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v;
  int changed;
  parse(f, config_routing, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  cfg_free(&c);
  assert_int_equal(sqlite3_exec(store_db(s), "UPDATE router_settings SET tunables = '{}'", NULL, NULL, NULL),
                   SQLITE_OK);
  assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), 1);
  assert_int_equal(c.router.retry_backoff_ms, CFG_DEFAULT_RETRY_BACKOFF_MS);
  assert_int_equal(c.router.retry_budget_percent, CFG_DEFAULT_RETRY_BUDGET_PERCENT);
  assert_int_equal(c.router.local_trip_failures, CFG_DEFAULT_LOCAL_TRIP_FAILURES);
  assert_int_equal(c.router.probe_interval_ms, CFG_DEFAULT_PROBE_INTERVAL_MS);
  assert_true(c.router.probes_enabled);
  assert_string_equal(c.router.mid_stream_fallback, "continue");
  assert_string_equal(c.router.probe_prompt, CFG_DEFAULT_PROBE_PROMPT);
  assert_int_equal(c.router.probe_max_tokens, CFG_DEFAULT_PROBE_MAX_TOKENS);
  cfg_free(&c);
  /* the bounds a parse enforces hold on load too */
  assert_int_equal(sqlite3_exec(store_db(s), "UPDATE router_settings SET tunables ="
                                " json_object('probe_prompt', printf('%.4096c', 'x'), 'probe_max_tokens', 4096)",
                                NULL, NULL, NULL), SQLITE_OK);
  assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), 1);
  assert_int_equal(strlen(c.router.probe_prompt), CFG_PROBE_PROMPT_MAX);
  assert_int_equal(c.router.probe_max_tokens, CFG_PROBE_MAX_TOKENS_MAX);
  cfg_free(&c);
  const char *bad[] = {"'not json'", "'[]'", "'{\"retry_backoff_ms\": -1}'", "'{\"total_timeout_ms\": \"5\"}'",
                       "'{\"probes_enabled\": 1}'", "'{\"mid_stream_fallback\": 2}'",
                       "'{\"probe_max_tokens\": 0}'", "'{\"probe_max_tokens\": 4097}'",
                       "'{\"probe_max_tokens\": \"2\"}'", "'{\"probe_prompt\": \"\"}'",
                       "'{\"probe_prompt\": 5}'", "'{\"probe_prompt\": \"a\\u0000b\"}'",
                       "json_object('probe_prompt', printf('%.4097c', 'x'))"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    char sql[128];
    snprintf(sql, sizeof sql, "UPDATE router_settings SET tunables = %s", bad[i]);
    assert_int_equal(sqlite3_exec(store_db(s), sql, NULL, NULL, NULL), SQLITE_OK);
    assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), -1);
    assert_non_null(strstr(f->err, "tunables"));
  }
  store_close(s);
}

static void list_push(char ***v, size_t *n, const char *s) {
  *v = realloc(*v, (*n + 1) * sizeof **v);
  (*v)[(*n)++] = strdup(s);
}

static void set_str(char **p, const char *v) {
  free(*p);
  *p = v ? strdup(v) : NULL;
}

/* One single-field change each; every one must bump the version. */
static void mutate(cfg_config *c, int which) {
  cfg_router *r = &c->router;
  cfg_group *g = &c->groups[0], *small = &c->groups[1];
  cfg_deployment *d = &c->deployments[0], *d3 = &c->deployments[3];
  switch (which) {
  case 0: r->retry_backoff_ms++; break;
  case 1: r->retry_backoff_max_ms++; break;
  case 2: r->retry_budget_percent++; break;
  case 3: r->retry_budget_min_per_s++; break;
  case 4: r->total_timeout_ms = 0; break;
  case 5: r->max_retry_after_ms++; break;
  case 6: r->local_trip_failures++; break;
  case 7: r->local_cooldown_ms++; break;
  case 8: r->probes_enabled = !r->probes_enabled; break;
  case 9: r->probe_interval_ms++; break;
  case 10: r->probe_timeout_ms++; break;
  case 11: set_str(&r->mid_stream_fallback, "continue"); break;
  case 12: set_str(&r->routing_strategy, "usage-based-routing"); break;
  case 13: list_push(&small->cp_fallbacks, &small->ncp_fallbacks, "long"); break;
  case 14: list_push(&small->cw_fallbacks, &small->ncw_fallbacks, "smart"); break;
  case 15: /* the same name moves from context_window to content_policy */
    free(small->cw_fallbacks[--small->ncw_fallbacks]);
    list_push(&small->cp_fallbacks, &small->ncp_fallbacks, "long");
    break;
  case 16: set_str(&g->routing_strategy, NULL); break;
  case 17: set_str(&small->routing_strategy, "simple-shuffle"); break;
  case 18: set_str(&g->mid_stream_fallback, NULL); break;
  case 19: set_str(&small->mid_stream_fallback, ""); break; /* "" is not NULL */
  case 20: g->hedge = !g->hedge; break;
  case 21: d->order = 3; break;
  case 22: d->input_cost_per_token *= 1.0000001; break;
  case 23: d->output_cost_per_token = 0; break;
  case 24: d3->supports_prefill = 1; break;
  case 25: d3->supports_prefill = 0; break;
  case 26: set_str(&r->probe_prompt, "are you there?"); break;
  case 27: set_str(&r->probe_prompt, "ping"); break;
  case 28: r->probe_max_tokens = 1; break;
  case 29: d3->health_check = 1; break;
  case 30: d->health_check = 0; break;
  }
}
#define NMUTATIONS 31

static void test_routing_version_bumps(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c, back;
  uint64_t v = 0, v2;
  int changed;
  parse(f, config_routing, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  cfg_free(&c);
  for (int i = 0; i < NMUTATIONS; i++) {
    parse(f, config_routing, &c);
    assert_int_equal(store_import(s, &f->keys, &c, &v2, &changed, f->err, sizeof f->err), 0);
    if (changed) v = v2; /* back to the base after the previous mutation */
    mutate(&c, i);
    assert_int_equal(store_import(s, &f->keys, &c, &v2, &changed, f->err, sizeof f->err), 0);
    if (!changed || v2 != v + 1) fail_msg("mutation %d: changed=%d version %llu -> %llu", i, changed,
                                          (unsigned long long)v, (unsigned long long)v2);
    v = v2;
    /* stored as changed, and re-importing it (or what was read back) is no change */
    assert_int_equal(store_load(s, &f->keys, &back, &v2, f->err, sizeof f->err), 1);
    assert_routing_equal(&c, &back);
    assert_int_equal(store_import(s, &f->keys, &back, &v2, &changed, f->err, sizeof f->err), 0);
    if (changed) fail_msg("mutation %d: identical re-import bumped the version", i);
    assert_int_equal(v2, v);
    cfg_free(&back);
    cfg_free(&c);
  }
  store_close(s);
}

/* probe_prompt NULL (cfg_init's "the default") and "ping" are the same content. */
static void test_default_prompt_is_not_a_change(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v, v2;
  int changed;
  parse(f, config_v1, &c);
  assert_string_equal(c.router.probe_prompt, CFG_DEFAULT_PROBE_PROMPT);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  set_str(&c.router.probe_prompt, NULL);
  assert_int_equal(store_import(s, &f->keys, &c, &v2, &changed, f->err, sizeof f->err), 0);
  assert_false(changed);
  assert_int_equal(v2, v);
  cfg_free(&c);
  assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), 1);
  assert_string_equal(c.router.probe_prompt, CFG_DEFAULT_PROBE_PROMPT);
  cfg_free(&c);
  store_close(s);
}

/* A database of schema 4 (no health_check column) migrates forward with every deployment
 * probed, as before the upgrade. */
static void test_migration_5_from_v4(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v;
  int changed;
  parse(f, config_routing, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  cfg_free(&c);
  store_close(s);
  sqlite3 *db;
  assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
  assert_int_equal(sqlite3_exec(db, "ALTER TABLE deployments DROP COLUMN health_check; PRAGMA user_version = 4",
                                NULL, NULL, NULL), SQLITE_OK);
  sqlite3_close(db);
  s = open_store(f);
  assert_int_equal(store_schema_version(s), 5);
  assert_int_equal(store_load(s, &f->keys, &c, &v, f->err, sizeof f->err), 1);
  assert_int_equal(c.ndeployments, 4);
  for (size_t i = 0; i < c.ndeployments; i++) assert_int_equal(c.deployments[i].health_check, 1);
  cfg_free(&c);
  store_close(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_migrations_fresh, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_db_has_no_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_version_bumps_only_on_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip_equals_import, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_plaintext_secrets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cloud_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routing_round_trip, setup, teardown),
      cmocka_unit_test_setup_teardown(test_tunables_defaults_and_corruption, setup, teardown),
      cmocka_unit_test_setup_teardown(test_routing_version_bumps, setup, teardown),
      cmocka_unit_test_setup_teardown(test_default_prompt_is_not_a_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_migration_5_from_v4, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
