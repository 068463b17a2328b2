/* test_ops.c — operations tables (controlplane/ops.c): drains persist across a store
 * reopen, undrain removes them, each action is one audit row (oldest first), and probe
 * rows are pruned to the newest OPS_PROBES_KEPT per deployment. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "ops.h"
#include "store.h"

typedef struct fixture {
  char dir[64];   /* temp dir */
  char db[96];    /* dir/llmesh.db */
  store_t *s;
  char err[512];
} fixture;

static int setup(void **state) {
  fixture *f = calloc(1, sizeof *f);
  snprintf(f->dir, sizeof f->dir, "/tmp/llmesh-ops-XXXXXX");
  if (!mkdtemp(f->dir)) return -1;
  snprintf(f->db, sizeof f->db, "%s/llmesh.db", f->dir);
  if (store_open(&f->s, f->db, f->err, sizeof f->err) < 0) return -1;
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fixture *f = *state;
  char cmd[128];
  store_close(f->s);
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", f->dir);
  if (system(cmd) != 0) return -1;
  free(f);
  return 0;
}

typedef struct seen {
  char names[8][128];
  char reasons[8][1100];
  char lines[16][1100];
  int n;
} seen;

static void on_drain(const ops_drain_row *d, void *ud) {
  seen *s = ud;
  snprintf(s->names[s->n], sizeof s->names[0], "%s", d->deployment);
  snprintf(s->reasons[s->n], sizeof s->reasons[0], "%.500s|%.500s", d->actor, d->reason);
  s->n++;
}

static void on_audit(const ops_audit *a, void *ud) {
  seen *s = ud;
  snprintf(s->lines[s->n++], sizeof s->lines[0], "%s %s %s %s", a->actor, a->action, a->target, a->detail);
}

static void test_drain_persists_across_reopen(void **state) {
  fixture *f = *state;
  seen s = {0};
  assert_int_equal(ops_drain(store_db(f->s), "gpt-4-1", "maintenance", "alice@host", 1000, f->err, sizeof f->err), 0);
  assert_int_equal(ops_drain(store_db(f->s), "claude-1", "", "bob@host", 2000, f->err, sizeof f->err), 0);
  store_close(f->s);
  assert_int_equal(store_open(&f->s, f->db, f->err, sizeof f->err), 0);
  assert_int_equal(ops_drains_load(store_db(f->s), on_drain, &s, f->err, sizeof f->err), 2);
  assert_string_equal(s.names[0], "gpt-4-1");
  assert_string_equal(s.reasons[0], "alice@host|maintenance");
  assert_string_equal(s.names[1], "claude-1");

  int was = 0;
  assert_int_equal(ops_undrain(store_db(f->s), "gpt-4-1", "carol@host", 3000, &was, f->err, sizeof f->err), 0);
  assert_true(was);
  assert_int_equal(ops_undrain(store_db(f->s), "gpt-4-1", "carol@host", 3001, &was, f->err, sizeof f->err), 0);
  assert_false(was);
  memset(&s, 0, sizeof s);
  assert_int_equal(ops_drains_load(store_db(f->s), on_drain, &s, f->err, sizeof f->err), 1);
  assert_string_equal(s.names[0], "claude-1");
}

static void test_audit_rows_in_order(void **state) {
  fixture *f = *state;
  seen s = {0};
  int was;
  ops_drain(store_db(f->s), "d1", "why", "alice@host", 1000, f->err, sizeof f->err);
  ops_undrain(store_db(f->s), "d1", "bob@host", 2000, &was, f->err, sizeof f->err);
  ops_audit_append(store_db(f->s), 3000, "control", "config_import", "cfg.yaml", "version 2", f->err, sizeof f->err);
  assert_int_equal(ops_audit_list(store_db(f->s), on_audit, &s, f->err, sizeof f->err), 3);
  assert_string_equal(s.lines[0], "alice@host drain d1 why");
  assert_string_equal(s.lines[1], "bob@host undrain d1 ");
  assert_string_equal(s.lines[2], "control config_import cfg.yaml version 2");
}

static void test_probe_rows_pruned(void **state) {
  fixture *f = *state;
  for (int i = 0; i < OPS_PROBES_KEPT + 20; i++) {
    ops_probe p = {.at_ms = 1000 + (uint64_t)i, .ok = i % 2, .latency_ms = 5, .http_status = i % 2 ? 200 : 500,
                   .error = i % 2 ? "" : "http_500"};
    assert_int_equal(ops_probe_record(store_db(f->s), "d1", &p, f->err, sizeof f->err), 0);
  }
  ops_probe p = {.at_ms = 1, .ok = 1, .http_status = 200, .error = ""};
  ops_probe_record(store_db(f->s), "d2", &p, f->err, sizeof f->err);
  assert_int_equal(ops_probe_count(store_db(f->s), "d1"), OPS_PROBES_KEPT);
  assert_int_equal(ops_probe_count(store_db(f->s), "d2"), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_drain_persists_across_reopen, setup, teardown),
      cmocka_unit_test_setup_teardown(test_audit_rows_in_order, setup, teardown),
      cmocka_unit_test_setup_teardown(test_probe_rows_pruned, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
