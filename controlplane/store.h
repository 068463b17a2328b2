/* store.h — the control plane's SQLite database: the source of truth for config.
 *
 * One connection, WAL, synchronous=FULL, foreign keys on, every write in BEGIN
 * IMMEDIATE. The schema is versioned by PRAGMA user_version and migrated forward at
 * open; a database newer than this code is refused. Provider keys are stored only as
 * keys.c blobs and the master key only as its SHA-256, so the file never holds a
 * secret in plain text. */
#ifndef LLMESH_STORE_H
#define LLMESH_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "config_import.h"
#include "keys.h"

#define STORE_SCHEMA_VERSION 5 /* newest migration this code knows */

typedef struct store store_t;

/* Opens (creating 0600 if needed) and migrates path. Returns 0 or -1 with err set. */
int store_open(store_t **out, const char *path, char *err, size_t errlen);
void store_close(store_t *s); /* NULL-safe */
int store_schema_version(store_t *s); /* PRAGMA user_version, or -1 */
/* The connection, for the operations tables of migration 3 (drains, audit_log, probes;
 * controlplane/ops.c). Loop thread only. */
struct sqlite3 *store_db(store_t *s);

/* Replaces deployments, groups and settings with c in one transaction. The snapshot
 * version bumps (and *changed = 1) only when the content differs from what is stored,
 * judged by an HMAC of the canonical content under the data key. Returns 0 or -1. */
int store_import(store_t *s, const keys_t *k, const cfg_config *c, uint64_t *version,
                 int *changed, char *err, size_t errlen);
/* Reads the stored config (keys decrypted) into out. Returns 1 when found, 0 when the
 * database holds no config yet, -1 on error (err set). */
int store_load(store_t *s, const keys_t *k, cfg_config *out, uint64_t *version,
               char *err, size_t errlen);

#endif
