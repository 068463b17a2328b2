/* test_store.c — SQLite store: migrations, WAL, STRICT, version bumps only on change,
 * round trip with decrypted keys, refusal of newer schemas, no plaintext secrets in the
 * database or its WAL. */
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

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_migrations_fresh, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_db_has_no_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_version_bumps_only_on_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip_equals_import, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_plaintext_secrets, setup, teardown),
      cmocka_unit_test_setup_teardown(test_cloud_round_trip, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
