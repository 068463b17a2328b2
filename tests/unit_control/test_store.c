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

#define PROVIDER_KEY "sk-PLAINTEXT-provider-key-7f3a9c"
#define MASTER_KEY "sk-PLAINTEXT-master-key-51be02"

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
  assert_int_equal(sqlite3_column_int(q, 0), 5);
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

static void test_no_plaintext_secrets(void **state) {
  fixture *f = *state;
  store_t *s = open_store(f);
  cfg_config c;
  uint64_t v;
  int changed;
  char wal[128];
  snprintf(wal, sizeof wal, "%s-wal", f->db);
  parse(f, config_v1, &c);
  assert_int_equal(store_import(s, &f->keys, &c, &v, &changed, f->err, sizeof f->err), 0);
  cfg_free(&c);
  /* while open, the rows sit in the WAL; check both files */
  int db_exists = 0, wal_exists = 0;
  int canary = file_contains(f->db, "gpt-4o-canary", &db_exists) | file_contains(wal, "gpt-4o-canary", &wal_exists);
  assert_true(wal_exists);
  assert_true(canary); /* proves we are reading the bytes that hold the rows */
  assert_false(file_contains(f->db, PROVIDER_KEY, &db_exists));
  assert_false(file_contains(wal, PROVIDER_KEY, &wal_exists));
  assert_false(file_contains(f->db, MASTER_KEY, &db_exists));
  assert_false(file_contains(wal, MASTER_KEY, &wal_exists));
  store_close(s); /* checkpoints into the main file */
  assert_true(file_contains(f->db, "gpt-4o-canary", &db_exists));
  assert_false(file_contains(f->db, PROVIDER_KEY, &db_exists));
  assert_false(file_contains(f->db, MASTER_KEY, &db_exists));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_migrations_fresh, setup, teardown),
      cmocka_unit_test_setup_teardown(test_empty_db_has_no_config, setup, teardown),
      cmocka_unit_test_setup_teardown(test_version_bumps_only_on_change, setup, teardown),
      cmocka_unit_test_setup_teardown(test_round_trip_equals_import, setup, teardown),
      cmocka_unit_test_setup_teardown(test_no_plaintext_secrets, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
