/* ops.c — drains, audit log and probe rows in SQLite (see ops.h). */
#include "ops.h"

#include <stdio.h>
#include <string.h>

#include <sqlite3.h>

static int ops_fail(sqlite3 *db, const char *what, char *err, size_t errlen) {
  snprintf(err, errlen, "%s: %s", what, sqlite3_errmsg(db));
  return -1;
}

static int ops_exec(sqlite3 *db, const char *sql, char *err, size_t errlen) {
  return sqlite3_exec(db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : ops_fail(db, sql, err, errlen);
}

/* Prepares sql and binds the text/int arguments described by fmt ('t' text, 'i' int64). */
static sqlite3_stmt *ops_prepare(sqlite3 *db, const char *sql, const char *fmt, const void *const *args,
                                 char *err, size_t errlen) {
  sqlite3_stmt *st = NULL;
  if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
    ops_fail(db, "prepare", err, errlen);
    return NULL;
  }
  for (int i = 0; fmt[i]; i++) {
    int rc = fmt[i] == 't' ? sqlite3_bind_text(st, i + 1, args[i], -1, SQLITE_TRANSIENT)
                           : sqlite3_bind_int64(st, i + 1, *(const int64_t *)args[i]);
    if (rc != SQLITE_OK) {
      ops_fail(db, "bind", err, errlen);
      sqlite3_finalize(st);
      return NULL;
    }
  }
  return st;
}

/* Runs one statement that returns no rows. */
static int ops_run(sqlite3 *db, const char *sql, const char *fmt, const void *const *args,
                   char *err, size_t errlen) {
  sqlite3_stmt *st = ops_prepare(db, sql, fmt, args, err, errlen);
  if (!st) return -1;
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : ops_fail(db, sql, err, errlen);
}

static int ops_audit_row(sqlite3 *db, uint64_t at_ms, const char *actor, const char *action,
                         const char *target, const char *detail, char *err, size_t errlen) {
  int64_t at = (int64_t)at_ms;
  const void *args[] = {&at, actor, action, target, detail};
  return ops_run(db, "INSERT INTO audit_log (at_ms, actor, action, target, detail) VALUES (?,?,?,?,?)",
                 "itttt", args, err, errlen);
}

static int ops_commit(sqlite3 *db, int rv, char *err, size_t errlen) {
  if (rv < 0) {
    sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    return -1;
  }
  return ops_exec(db, "COMMIT", err, errlen);
}

/* ------------------------------------------------------------------ drains */

int ops_drains_load(sqlite3 *db, void (*cb)(const ops_drain_row *d, void *ud), void *ud, char *err,
                    size_t errlen) {
  sqlite3_stmt *st = ops_prepare(db, "SELECT deployment, reason, actor, at_ms FROM drains ORDER BY at_ms",
                                 "", NULL, err, errlen);
  int n = 0, rc;
  if (!st) return -1;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ops_drain_row d;
    snprintf(d.deployment, sizeof d.deployment, "%s", (const char *)sqlite3_column_text(st, 0));
    snprintf(d.reason, sizeof d.reason, "%s", (const char *)sqlite3_column_text(st, 1));
    snprintf(d.actor, sizeof d.actor, "%s", (const char *)sqlite3_column_text(st, 2));
    d.at_ms = (uint64_t)sqlite3_column_int64(st, 3);
    cb(&d, ud);
    n++;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? n : ops_fail(db, "drains", err, errlen);
}

int ops_drain(sqlite3 *db, const char *deployment, const char *reason, const char *actor, uint64_t at_ms,
              char *err, size_t errlen) {
  int64_t at = (int64_t)at_ms;
  const void *args[] = {deployment, reason, actor, &at};
  if (ops_exec(db, "BEGIN IMMEDIATE", err, errlen) < 0) return -1;
  int rv = ops_run(db, "INSERT OR REPLACE INTO drains (deployment, reason, actor, at_ms) VALUES (?,?,?,?)",
                   "ttti", args, err, errlen);
  if (rv == 0) rv = ops_audit_row(db, at_ms, actor, "drain", deployment, reason, err, errlen);
  return ops_commit(db, rv, err, errlen);
}

int ops_undrain(sqlite3 *db, const char *deployment, const char *actor, uint64_t at_ms, int *was_drained,
                char *err, size_t errlen) {
  const void *args[] = {deployment};
  if (ops_exec(db, "BEGIN IMMEDIATE", err, errlen) < 0) return -1;
  int rv = ops_run(db, "DELETE FROM drains WHERE deployment = ?", "t", args, err, errlen);
  *was_drained = rv == 0 && sqlite3_changes(db) > 0;
  if (rv == 0)
    rv = ops_audit_row(db, at_ms, actor, "undrain", deployment, *was_drained ? "" : "was not drained", err,
                       errlen);
  return ops_commit(db, rv, err, errlen);
}

/* ------------------------------------------------------------------ audit */

int ops_audit_append(sqlite3 *db, uint64_t at_ms, const char *actor, const char *action, const char *target,
                     const char *detail, char *err, size_t errlen) {
  return ops_audit_row(db, at_ms, actor, action, target, detail, err, errlen);
}

int ops_audit_list(sqlite3 *db, void (*cb)(const ops_audit *a, void *ud), void *ud, char *err,
                   size_t errlen) {
  sqlite3_stmt *st = ops_prepare(db, "SELECT id, at_ms, actor, action, target, detail FROM audit_log ORDER BY id",
                                 "", NULL, err, errlen);
  int n = 0, rc;
  if (!st) return -1;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ops_audit a = {
        .id = sqlite3_column_int64(st, 0),
        .at_ms = (uint64_t)sqlite3_column_int64(st, 1),
        .actor = (const char *)sqlite3_column_text(st, 2),
        .action = (const char *)sqlite3_column_text(st, 3),
        .target = (const char *)sqlite3_column_text(st, 4),
        .detail = (const char *)sqlite3_column_text(st, 5),
    };
    cb(&a, ud);
    n++;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? n : ops_fail(db, "audit_log", err, errlen);
}

/* ------------------------------------------------------------------ probes */

int ops_probe_list(sqlite3 *db, const char *deployment,
                   void (*cb)(const char *deployment, const ops_probe *p, void *ud), void *ud,
                   char *err, size_t errlen) {
  const void *args[] = {deployment};
  sqlite3_stmt *st = ops_prepare(db,
                                 deployment ? "SELECT deployment, at_ms, ok, latency_ms, http_status, error FROM probes"
                                              " WHERE deployment = ? ORDER BY id"
                                            : "SELECT deployment, at_ms, ok, latency_ms, http_status, error FROM probes"
                                              " ORDER BY id",
                                 deployment ? "t" : "", args, err, errlen);
  int n = 0, rc;
  if (!st) return -1;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    ops_probe p = {
        .at_ms = (uint64_t)sqlite3_column_int64(st, 1),
        .ok = sqlite3_column_int(st, 2),
        .latency_ms = (uint32_t)sqlite3_column_int64(st, 3),
        .http_status = sqlite3_column_int(st, 4),
        .error = (const char *)sqlite3_column_text(st, 5),
    };
    cb((const char *)sqlite3_column_text(st, 0), &p, ud);
    n++;
  }
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? n : ops_fail(db, "probes", err, errlen);
}

int ops_probe_record(sqlite3 *db, const char *deployment, const ops_probe *p, char *err, size_t errlen) {
  int64_t at = (int64_t)p->at_ms, ok = p->ok, lat = p->latency_ms, status = p->http_status,
          keep = OPS_PROBES_KEPT;
  const void *ins[] = {deployment, &at, &ok, &lat, &status, p->error ? p->error : ""};
  const void *prune[] = {deployment, deployment, &keep};
  if (ops_exec(db, "BEGIN IMMEDIATE", err, errlen) < 0) return -1;
  int rv = ops_run(db, "INSERT INTO probes (deployment, at_ms, ok, latency_ms, http_status, error) "
                       "VALUES (?,?,?,?,?,?)", "tiiiit", ins, err, errlen);
  if (rv == 0)
    rv = ops_run(db, "DELETE FROM probes WHERE deployment = ? AND id NOT IN "
                     "(SELECT id FROM probes WHERE deployment = ? ORDER BY id DESC LIMIT ?)",
                 "tti", prune, err, errlen);
  return ops_commit(db, rv, err, errlen);
}

int ops_probe_count(sqlite3 *db, const char *deployment) {
  char err[128];
  const void *args[] = {deployment};
  sqlite3_stmt *st = ops_prepare(db, "SELECT COUNT(*) FROM probes WHERE deployment = ?", "t", args, err,
                                 sizeof err);
  if (!st) return -1;
  int n = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int(st, 0) : -1;
  sqlite3_finalize(st);
  return n;
}
