/* ops.h — operations records in the store (schema migration 3): manual drains that
 * survive restarts, the append-only audit log, and the recent health probes.
 *
 * Every function takes the store's connection (store_db) and runs on the loop thread;
 * llmesh-ctl opens the database read-only for `audit`. Errors are -1 with err set. */
#ifndef LLMESH_OPS_H
#define LLMESH_OPS_H

#include <stddef.h>
#include <stdint.h>

struct sqlite3;

#define OPS_PROBES_KEPT 100   /* newest probe rows kept per deployment */
#define OPS_TEXT_MAX 512      /* bytes of a reason / actor / detail we store */

typedef struct ops_drain {
  char deployment[128];       /* deployment name */
  char reason[OPS_TEXT_MAX];  /* operator's reason, "" when none */
  char actor[OPS_TEXT_MAX];   /* user@host */
  uint64_t at_ms;             /* wall clock of the drain */
} ops_drain_row;

typedef struct ops_audit {
  int64_t id;                 /* row id: increasing */
  uint64_t at_ms;             /* wall clock */
  const char *actor;          /* user@host, or "control" */
  const char *action;         /* "drain", "undrain", ... */
  const char *target;         /* deployment name, ... */
  const char *detail;         /* free text */
} ops_audit;

typedef struct ops_probe {
  uint64_t at_ms;             /* wall clock when it finished */
  int ok;                     /* healthy answer (2xx, or 429: alive) */
  uint32_t latency_ms;        /* request start → answer or failure */
  int http_status;            /* 0 = no HTTP answer */
  const char *error;          /* "" when ok, else a class: timeout, http_500, ... */
} ops_probe;

/* Calls cb for every stored drain; returns the count or -1. */
int ops_drains_load(struct sqlite3 *db, void (*cb)(const ops_drain_row *d, void *ud), void *ud,
                    char *err, size_t errlen);
/* Drains (insert or replace) / undrains (*was_drained = whether a row existed) one
 * deployment and appends the audit row, in one transaction. */
int ops_drain(struct sqlite3 *db, const char *deployment, const char *reason, const char *actor,
              uint64_t at_ms, char *err, size_t errlen);
int ops_undrain(struct sqlite3 *db, const char *deployment, const char *actor, uint64_t at_ms,
                int *was_drained, char *err, size_t errlen);
/* Appends one audit row (its own transaction). */
int ops_audit_append(struct sqlite3 *db, uint64_t at_ms, const char *actor, const char *action,
                     const char *target, const char *detail, char *err, size_t errlen);
/* Calls cb per audit row, oldest first (newest last); returns the count or -1. */
int ops_audit_list(struct sqlite3 *db, void (*cb)(const ops_audit *a, void *ud), void *ud,
                   char *err, size_t errlen);
/* Records a probe and keeps only the newest OPS_PROBES_KEPT rows of its deployment. */
int ops_probe_record(struct sqlite3 *db, const char *deployment, const ops_probe *p,
                     char *err, size_t errlen);
/* Calls cb per stored probe of deployment (every deployment when NULL), oldest first,
 * with the deployment name; returns the count or -1. */
int ops_probe_list(struct sqlite3 *db, const char *deployment,
                   void (*cb)(const char *deployment, const ops_probe *p, void *ud), void *ud,
                   char *err, size_t errlen);
/* Rows stored for deployment (tests, status), or -1. */
int ops_probe_count(struct sqlite3 *db, const char *deployment);

#endif
