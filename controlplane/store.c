/* store.c — SQLite persistence for the control plane (see store.h). */
#include "store.h"

#include <errno.h>
#include <fcntl.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <sqlite3.h>

#include "util.h"

struct store {
  sqlite3 *db;  /* the single connection (reads and writes) */
  char *path;   /* database file */
};

/* Migration N brings user_version from N-1 to N. Never edit a shipped step. */
static const char *const store_migrations[STORE_SCHEMA_VERSION] = {
    /* 1: config rows */
    "CREATE TABLE state ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  snapshot_version INTEGER NOT NULL,"   /* bumps on every content change */
    "  content_hmac BLOB NOT NULL,"          /* HMAC-SHA256 of the canonical content */
    "  imported_at_ms INTEGER NOT NULL"      /* wall clock of the last change */
    ") STRICT;"
    "CREATE TABLE router_settings ("
    "  id INTEGER PRIMARY KEY CHECK (id = 1),"
    "  num_retries INTEGER NOT NULL,"
    "  timeout_ms INTEGER NOT NULL,"
    "  allowed_fails INTEGER NOT NULL,"
    "  cooldown_ms INTEGER NOT NULL,"
    "  routing_strategy TEXT NOT NULL,"
    "  master_key_sha256 BLOB"               /* NULL = no client auth */
    ") STRICT;"
    "CREATE TABLE model_groups ("
    "  name TEXT PRIMARY KEY,"
    "  position INTEGER NOT NULL UNIQUE"
    ") STRICT;"
    "CREATE TABLE group_fallbacks ("
    "  group_name TEXT NOT NULL REFERENCES model_groups(name) ON DELETE CASCADE,"
    "  position INTEGER NOT NULL,"
    "  fallback TEXT NOT NULL REFERENCES model_groups(name),"
    "  PRIMARY KEY (group_name, position)"
    ") STRICT;"
    "CREATE TABLE deployments ("
    "  name TEXT PRIMARY KEY,"
    "  position INTEGER NOT NULL UNIQUE,"
    "  model_group TEXT NOT NULL REFERENCES model_groups(name),"
    "  provider TEXT NOT NULL,"
    "  upstream_model TEXT NOT NULL,"
    "  api_base TEXT NOT NULL,"
    "  api_key_enc BLOB,"                    /* keys.c blob, AAD = name; NULL = no key */
    "  api_version TEXT NOT NULL,"
    "  weight INTEGER NOT NULL CHECK (weight >= 1),"
    "  timeout_ms INTEGER NOT NULL,"
    "  stream_timeout_ms INTEGER NOT NULL,"
    "  connect_timeout_ms INTEGER NOT NULL,"
    "  rpm INTEGER NOT NULL,"
    "  tpm INTEGER NOT NULL"
    ") STRICT;",
    /* 2: cloud credentials (Bedrock SigV4, Vertex AI service accounts). Secrets are
     * keys.c blobs with AAD = name "\0" column, so a blob moved to another column or row
     * fails to decrypt. */
    "ALTER TABLE deployments ADD COLUMN aws_access_key_id_enc BLOB;"
    "ALTER TABLE deployments ADD COLUMN aws_secret_access_key_enc BLOB;"
    "ALTER TABLE deployments ADD COLUMN aws_session_token_enc BLOB;"
    "ALTER TABLE deployments ADD COLUMN aws_region TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE deployments ADD COLUMN gcp_project TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE deployments ADD COLUMN gcp_location TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE deployments ADD COLUMN gcp_credentials_enc BLOB;",
    /* 3: operations — manual drains (survive restarts), an append-only audit log, and the
     * recent health probes. Not config: store_import never touches these tables. */
    "CREATE TABLE drains ("
    "  deployment TEXT PRIMARY KEY,"         /* deployment name (may outlive the row) */
    "  reason TEXT NOT NULL,"
    "  actor TEXT NOT NULL,"                 /* user@host that drained it */
    "  at_ms INTEGER NOT NULL"               /* wall clock */
    ") STRICT;"
    "CREATE TABLE audit_log ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  at_ms INTEGER NOT NULL,"              /* wall clock */
    "  actor TEXT NOT NULL,"                 /* user@host, or 'control' for automatic actions */
    "  action TEXT NOT NULL,"                /* 'drain', 'undrain', 'config_import', ... */
    "  target TEXT NOT NULL,"                /* deployment name, file, ... */
    "  detail TEXT NOT NULL"                 /* free text (reason) */
    ") STRICT;"
    "CREATE TABLE probes ("
    "  id INTEGER PRIMARY KEY AUTOINCREMENT,"
    "  deployment TEXT NOT NULL,"
    "  at_ms INTEGER NOT NULL,"              /* wall clock when it finished */
    "  ok INTEGER NOT NULL,"                 /* 1 healthy answer, 0 failure */
    "  latency_ms INTEGER NOT NULL,"
    "  http_status INTEGER NOT NULL,"        /* 0 = no HTTP answer */
    "  error TEXT NOT NULL"                  /* '' when ok, else a class: timeout, http_500, ... */
    ") STRICT;"
    "CREATE INDEX probes_by_deployment ON probes(deployment, at_ms);",
    /* 4: routing config (issue 5): priority tiers, costs, prefill capability, per-group
     * strategy and fallbacks by error kind, retry/timeout/breaker tunables, probes. */
    "ALTER TABLE deployments ADD COLUMN priority_order INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE deployments ADD COLUMN input_cost_per_token REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE deployments ADD COLUMN output_cost_per_token REAL NOT NULL DEFAULT 0;"
    "ALTER TABLE deployments ADD COLUMN supports_prefill INTEGER NOT NULL DEFAULT -1;"
    "ALTER TABLE model_groups ADD COLUMN routing_strategy TEXT;"      /* NULL = router's */
    "ALTER TABLE model_groups ADD COLUMN mid_stream_fallback TEXT;"   /* NULL = router's */
    "ALTER TABLE model_groups ADD COLUMN hedge INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE group_fallbacks ADD COLUMN kind TEXT NOT NULL DEFAULT 'general';" /* general | context_window | content_policy */
    "ALTER TABLE router_settings ADD COLUMN tunables TEXT NOT NULL DEFAULT '{}';", /* JSON object of the
                                                                         * cfg_router numbers added in v4 */
    /* 5: model_info.health_check — 0 = never probed (a probe costs money or is not allowed).
     * The probe's prompt and max_tokens live in router_settings.tunables. */
    "ALTER TABLE deployments ADD COLUMN health_check INTEGER NOT NULL DEFAULT 1;",
};

/* Encrypted columns added by migration 2, in column order, with their AAD tag. */
#define STORE_NSECRETS 4
static const char *const store_secret_tags[STORE_NSECRETS] = {
    "aws_access_key_id", "aws_secret_access_key", "aws_session_token", "gcp_credentials"};

static char **store_secret_field(cfg_deployment *d, int i) {
  char **f[STORE_NSECRETS] = {&d->aws_access_key_id, &d->aws_secret_access_key,
                              &d->aws_session_token, &d->gcp_credentials};
  return f[i];
}

/* Numbers of cfg_router kept in router_settings.tunables (migration 4): one JSON object,
 * so a new tunable needs no migration. A key missing from the object keeps its default;
 * a value outside [min, max] is corruption. */
#define STORE_T(f) offsetof(cfg_router, f), 0, UINT32_MAX
static const struct {
  const char *key; /* JSON key */
  size_t off;      /* uint32_t field of cfg_router */
  uint32_t min;    /* smallest value accepted on load */
  uint32_t max;    /* largest value accepted on load */
} store_tunables[] = {
    {"retry_backoff_ms", STORE_T(retry_backoff_ms)},
    {"retry_backoff_max_ms", STORE_T(retry_backoff_max_ms)},
    {"retry_budget_percent", STORE_T(retry_budget_percent)},
    {"retry_budget_min_per_s", STORE_T(retry_budget_min_per_s)},
    {"total_timeout_ms", STORE_T(total_timeout_ms)},
    {"max_retry_after_ms", STORE_T(max_retry_after_ms)},
    {"local_trip_failures", STORE_T(local_trip_failures)},
    {"local_cooldown_ms", STORE_T(local_cooldown_ms)},
    {"probe_interval_ms", STORE_T(probe_interval_ms)},
    {"probe_timeout_ms", STORE_T(probe_timeout_ms)},
    {"probe_max_tokens", offsetof(cfg_router, probe_max_tokens), 1, CFG_PROBE_MAX_TOKENS_MAX},
};
#define STORE_NTUNABLES (sizeof store_tunables / sizeof store_tunables[0])

static uint32_t *store_tunable(cfg_router *r, size_t i) {
  return (uint32_t *)((char *)r + store_tunables[i].off);
}

/* Kinds of group_fallbacks rows, indexed like the lists of cfg_group. */
#define STORE_NKINDS 3
static const char *const store_fb_kinds[STORE_NKINDS] = {"general", "context_window", "content_policy"};

static void store_fb_list(cfg_group *g, int kind, char ****v, size_t **n) {
  if (kind == 1) *v = &g->cw_fallbacks, *n = &g->ncw_fallbacks;
  else if (kind == 2) *v = &g->cp_fallbacks, *n = &g->ncp_fallbacks;
  else *v = &g->fallbacks, *n = &g->nfallbacks;
}

/* Appends a copy of s to the list *v of *n entries. Returns 0 or -ENOMEM. */
static int store_list_add(char ***v, size_t *n, const char *s) {
  char **f = realloc(*v, (*n + 1) * sizeof *f);
  if (!f) return -ENOMEM;
  *v = f;
  if (!(f[*n] = strdup(s))) return -ENOMEM;
  (*n)++;
  return 0;
}

/* AAD of secret column tag of row name: name "\0" tag (a name holds no NUL). */
static int store_aad(const char *name, const char *tag, buf_t *aad) {
  buf_reset(aad);
  if (buf_append(aad, name, strlen(name) + 1) || buf_append(aad, tag, strlen(tag))) return -ENOMEM;
  return 0;
}

/* ------------------------------------------------------------------ helpers */

static int store_fail(store_t *s, char *err, size_t errlen, const char *what) {
  snprintf(err, errlen, "%s: %s: %s", s->path, what, sqlite3_errmsg(s->db));
  return -1;
}

static int store_exec(store_t *s, const char *sql, char *err, size_t errlen) {
  char *msg = NULL;
  if (sqlite3_exec(s->db, sql, NULL, NULL, &msg) == SQLITE_OK) return 0;
  snprintf(err, errlen, "%s: %s", s->path, msg ? msg : sqlite3_errmsg(s->db));
  sqlite3_free(msg);
  return -1;
}

static void store_rollback(store_t *s) { sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL); }

static int store_prepare(store_t *s, const char *sql, sqlite3_stmt **st, char *err, size_t errlen) {
  if (sqlite3_prepare_v2(s->db, sql, -1, st, NULL) == SQLITE_OK) return 0;
  return store_fail(s, err, errlen, "prepare");
}

sqlite3 *store_db(store_t *s) { return s->db; }

int store_schema_version(store_t *s) {
  sqlite3_stmt *st;
  int v = -1;
  if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) != SQLITE_OK) return -1;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int(st, 0);
  sqlite3_finalize(st);
  return v;
}

/* ------------------------------------------------------------------ open */

static int store_pragmas(store_t *s, char *err, size_t errlen) {
  sqlite3_stmt *st;
  sqlite3_busy_timeout(s->db, 5000);
  if (store_prepare(s, "PRAGMA journal_mode=WAL", &st, err, errlen) < 0) return -1;
  int ok = sqlite3_step(st) == SQLITE_ROW &&
           !sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal");
  sqlite3_finalize(st);
  if (!ok) {
    snprintf(err, errlen, "%s: cannot switch to WAL journal mode", s->path);
    return -1;
  }
  return store_exec(s, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                       "PRAGMA journal_size_limit=67108864;", err, errlen);
}

static int store_migrate(store_t *s, char *err, size_t errlen) {
  int v = store_schema_version(s);
  if (v < 0) return store_fail(s, err, errlen, "read user_version");
  if (v > STORE_SCHEMA_VERSION) {
    snprintf(err, errlen, "%s: schema version %d is newer than this llmesh-control (%d); refusing to start",
             s->path, v, STORE_SCHEMA_VERSION);
    return -1;
  }
  for (; v < STORE_SCHEMA_VERSION; v++) {
    char bump[64];
    snprintf(bump, sizeof bump, "PRAGMA user_version=%d; COMMIT;", v + 1);
    if (store_exec(s, "BEGIN IMMEDIATE", err, errlen) < 0) return -1;
    if (store_exec(s, store_migrations[v], err, errlen) < 0 || store_exec(s, bump, err, errlen) < 0) {
      store_rollback(s);
      return -1;
    }
  }
  return 0;
}

int store_open(store_t **out, const char *path, char *err, size_t errlen) {
  err[0] = '\0';
  /* Pre-create 0600: -wal and -shm copy the database file's mode. */
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) {
    snprintf(err, errlen, "%s: cannot open: %s", path, strerror(errno));
    return -1;
  }
  close(fd);
  store_t *s = calloc(1, sizeof *s);
  if (!s || !(s->path = strdup(path))) {
    free(s);
    snprintf(err, errlen, "%s: out of memory", path);
    return -1;
  }
  if (sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK ||
      store_pragmas(s, err, errlen) < 0 || store_migrate(s, err, errlen) < 0) {
    if (s->db && !err[0]) store_fail(s, err, errlen, "open");
    store_close(s);
    return -1;
  }
  *out = s;
  return 0;
}

void store_close(store_t *s) {
  if (!s) return;
  if (s->db) sqlite3_close(s->db); /* statements are always finalized after use */
  free(s->path);
  free(s);
}

/* ------------------------------------------------------------------ content hash */

static void canon_str(buf_t *b, const char *s) { buf_printf(b, "%zu:%s;", strlen(s), s); }
static void canon_u32(buf_t *b, uint32_t v) { buf_printf(b, "%u;", v); }
static void canon_int(buf_t *b, int v) { buf_printf(b, "%d;", v); }
static void canon_f64(buf_t *b, double v) { buf_printf(b, "%a;", v); } /* hex float: exact */
/* NULL ("the router's") is distinct from any string, "" included. */
static void canon_opt(buf_t *b, const char *s) {
  if (s) canon_str(b, s);
  else buf_printf(b, "-;");
}

static void canon_list(buf_t *b, char *const *v, size_t n) {
  canon_u32(b, (uint32_t)n);
  for (size_t j = 0; j < n; j++) canon_str(b, v[j]);
}

static void canon_router(buf_t *b, const cfg_router *r) {
  canon_u32(b, r->num_retries);
  canon_u32(b, r->timeout_ms);
  canon_u32(b, r->allowed_fails);
  canon_u32(b, r->cooldown_ms);
  canon_str(b, r->routing_strategy ? r->routing_strategy : "");
  for (size_t i = 0; i < STORE_NTUNABLES; i++) canon_u32(b, *store_tunable((cfg_router *)r, i));
  canon_int(b, r->probes_enabled);
  canon_opt(b, r->mid_stream_fallback);
  canon_str(b, r->probe_prompt ? r->probe_prompt : CFG_DEFAULT_PROBE_PROMPT); /* NULL = the default */
}

static void canon_group(buf_t *b, const cfg_group *g) {
  canon_str(b, g->name);
  canon_list(b, g->fallbacks, g->nfallbacks);
  canon_list(b, g->cw_fallbacks, g->ncw_fallbacks);
  canon_list(b, g->cp_fallbacks, g->ncp_fallbacks);
  canon_opt(b, g->routing_strategy);
  canon_opt(b, g->mid_stream_fallback);
  canon_int(b, g->hedge);
}

/* Canonical, unambiguous (length-prefixed) text of everything a snapshot carries. */
static int store_content_hmac(const keys_t *k, const cfg_config *c, uint8_t out[32]) {
  buf_t b = {0};
  /* v2: routing config of issue 5; v3: probe request and per-deployment health_check. The
   * first import after an upgrade bumps the version once. */
  buf_printf(&b, "llmesh-config-v3;");
  canon_router(&b, &c->router);
  canon_u32(&b, (uint32_t)c->has_master_key);
  if (c->has_master_key) buf_append(&b, c->master_key_sha256, 32);
  for (size_t i = 0; i < c->ngroups; i++) canon_group(&b, &c->groups[i]);
  for (size_t i = 0; i < c->ndeployments; i++) {
    const cfg_deployment *d = &c->deployments[i];
    canon_str(&b, d->name);
    canon_str(&b, d->model_group);
    canon_str(&b, d->provider);
    canon_str(&b, d->upstream_model);
    canon_str(&b, d->api_base);
    canon_str(&b, d->api_key);
    canon_str(&b, d->api_version);
    canon_str(&b, d->aws_access_key_id);
    canon_str(&b, d->aws_secret_access_key);
    canon_str(&b, d->aws_session_token);
    canon_str(&b, d->aws_region);
    canon_str(&b, d->gcp_project);
    canon_str(&b, d->gcp_location);
    canon_str(&b, d->gcp_credentials);
    canon_u32(&b, d->weight);
    canon_u32(&b, d->timeout_ms);
    canon_u32(&b, d->stream_timeout_ms);
    canon_u32(&b, d->connect_timeout_ms);
    canon_u32(&b, d->rpm);
    canon_u32(&b, d->tpm);
    canon_u32(&b, d->order);
    canon_f64(&b, d->input_cost_per_token);
    canon_f64(&b, d->output_cost_per_token);
    canon_int(&b, d->supports_prefill);
    canon_int(&b, d->health_check);
  }
  int rv = b.data ? keys_hmac(k, b.data, b.len, out) : -ENOMEM;
  if (b.data) OPENSSL_cleanse(b.data, b.cap);
  buf_free(&b);
  return rv;
}

/* ------------------------------------------------------------------ import */

/* Reads the state row: *version (0 when no config was ever imported). Returns 1 when
 * the stored content hmac equals hmac, 0 when not (or no row), -1 on error. */
static int store_read_state(store_t *s, const uint8_t hmac[32], uint64_t *version) {
  sqlite3_stmt *st;
  int same = 0;
  *version = 0;
  if (sqlite3_prepare_v2(s->db, "SELECT snapshot_version, content_hmac FROM state WHERE id = 1",
                         -1, &st, NULL) != SQLITE_OK)
    return -1;
  if (sqlite3_step(st) == SQLITE_ROW) {
    *version = (uint64_t)sqlite3_column_int64(st, 0);
    same = sqlite3_column_bytes(st, 1) == 32 &&
           CRYPTO_memcmp(sqlite3_column_blob(st, 1), hmac, 32) == 0;
  }
  sqlite3_finalize(st);
  return same;
}

/* router_settings.tunables text (malloc'd, compact, sorted keys) or NULL on ENOMEM. */
static char *store_tunables_json(const cfg_router *r) {
  json_t *o = json_object();
  int bad = !o;
  for (size_t i = 0; !bad && i < STORE_NTUNABLES; i++)
    bad = json_object_set_new(o, store_tunables[i].key, json_integer(*store_tunable((cfg_router *)r, i)));
  if (!bad) bad = json_object_set_new(o, "probes_enabled", json_boolean(r->probes_enabled));
  if (!bad && r->mid_stream_fallback)
    bad = json_object_set_new(o, "mid_stream_fallback", json_string(r->mid_stream_fallback));
  if (!bad)
    bad = json_object_set_new(o, "probe_prompt",
                              json_string(r->probe_prompt ? r->probe_prompt : CFG_DEFAULT_PROBE_PROMPT));
  char *text = bad ? NULL : json_dumps(o, JSON_COMPACT | JSON_SORT_KEYS);
  json_decref(o);
  return text;
}

static int store_put_router(store_t *s, const cfg_config *c, char *err, size_t errlen) {
  sqlite3_stmt *st;
  char *tunables = store_tunables_json(&c->router);
  if (!tunables) {
    snprintf(err, errlen, "%s: out of memory", s->path);
    return -1;
  }
  if (store_prepare(s, "INSERT INTO router_settings (id, num_retries, timeout_ms, allowed_fails, cooldown_ms,"
                       " routing_strategy, master_key_sha256, tunables) VALUES (1, ?, ?, ?, ?, ?, ?, ?)",
                    &st, err, errlen) < 0) {
    free(tunables);
    return -1;
  }
  sqlite3_bind_int64(st, 1, c->router.num_retries);
  sqlite3_bind_int64(st, 2, c->router.timeout_ms);
  sqlite3_bind_int64(st, 3, c->router.allowed_fails);
  sqlite3_bind_int64(st, 4, c->router.cooldown_ms);
  sqlite3_bind_text(st, 5, c->router.routing_strategy ? c->router.routing_strategy : "", -1, SQLITE_STATIC);
  if (c->has_master_key) sqlite3_bind_blob(st, 6, c->master_key_sha256, 32, SQLITE_STATIC);
  sqlite3_bind_text(st, 7, tunables, -1, SQLITE_STATIC);
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  free(tunables);
  return rc == SQLITE_DONE ? 0 : store_fail(s, err, errlen, "insert router_settings");
}

static void store_bind_opt(sqlite3_stmt *st, int col, const char *v) {
  if (v) sqlite3_bind_text(st, col, v, -1, SQLITE_STATIC);
  else sqlite3_bind_null(st, col);
}

/* Fallback rows of one group, every kind; positions run on across kinds because the
 * primary key is (group_name, position). */
static int store_put_fallbacks(sqlite3_stmt *f, cfg_group *g) {
  int rc = SQLITE_DONE;
  sqlite3_int64 pos = 0;
  for (int kind = 0; kind < STORE_NKINDS; kind++) {
    char ***v;
    size_t *n;
    store_fb_list(g, kind, &v, &n);
    for (size_t j = 0; j < *n && rc == SQLITE_DONE; j++) {
      sqlite3_bind_text(f, 1, g->name, -1, SQLITE_STATIC);
      sqlite3_bind_int64(f, 2, pos++);
      sqlite3_bind_text(f, 3, (*v)[j], -1, SQLITE_STATIC);
      sqlite3_bind_text(f, 4, store_fb_kinds[kind], -1, SQLITE_STATIC);
      rc = sqlite3_step(f);
      sqlite3_reset(f);
    }
  }
  return rc;
}

static int store_put_groups(store_t *s, const cfg_config *c, char *err, size_t errlen) {
  sqlite3_stmt *g, *f;
  if (store_prepare(s, "INSERT INTO model_groups (name, position, routing_strategy, mid_stream_fallback, hedge)"
                       " VALUES (?, ?, ?, ?, ?)", &g, err, errlen) < 0)
    return -1;
  if (store_prepare(s, "INSERT INTO group_fallbacks (group_name, position, fallback, kind) VALUES (?, ?, ?, ?)",
                    &f, err, errlen) < 0) {
    sqlite3_finalize(g);
    return -1;
  }
  int rc = SQLITE_DONE;
  for (size_t i = 0; i < c->ngroups && rc == SQLITE_DONE; i++) {
    const cfg_group *cg = &c->groups[i];
    sqlite3_bind_text(g, 1, cg->name, -1, SQLITE_STATIC);
    sqlite3_bind_int64(g, 2, (sqlite3_int64)i);
    store_bind_opt(g, 3, cg->routing_strategy);
    store_bind_opt(g, 4, cg->mid_stream_fallback);
    sqlite3_bind_int64(g, 5, cg->hedge);
    rc = sqlite3_step(g);
    sqlite3_reset(g);
  }
  for (size_t i = 0; i < c->ngroups && rc == SQLITE_DONE; i++) rc = store_put_fallbacks(f, &c->groups[i]);
  sqlite3_finalize(g);
  sqlite3_finalize(f);
  return rc == SQLITE_DONE ? 0 : store_fail(s, err, errlen, "insert model_groups");
}

static int store_put_deployment(store_t *s, sqlite3_stmt *st, const keys_t *k,
                                const cfg_deployment *d, size_t pos, char *err, size_t errlen) {
  uint8_t *blob = NULL;
  size_t blob_len = 0;
  if (*d->api_key &&
      keys_encrypt(k, d->name, (const uint8_t *)d->api_key, strlen(d->api_key), &blob, &blob_len) < 0) {
    snprintf(err, errlen, "%s: cannot encrypt the key of %s", s->path, d->name);
    return -1;
  }
  sqlite3_bind_text(st, 1, d->name, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)pos);
  sqlite3_bind_text(st, 3, d->model_group, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 4, d->provider, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 5, d->upstream_model, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 6, d->api_base, -1, SQLITE_STATIC);
  if (blob) sqlite3_bind_blob(st, 7, blob, (int)blob_len, SQLITE_STATIC);
  else sqlite3_bind_null(st, 7);
  sqlite3_bind_text(st, 8, d->api_version, -1, SQLITE_STATIC);
  const uint32_t nums[] = {d->weight, d->timeout_ms, d->stream_timeout_ms, d->connect_timeout_ms,
                           d->rpm, d->tpm};
  for (int i = 0; i < 6; i++) sqlite3_bind_int64(st, 9 + i, nums[i]);
  uint8_t *sblob[STORE_NSECRETS] = {0};
  size_t slen[STORE_NSECRETS] = {0};
  buf_t aad = {0};
  int rv = 0;
  for (int i = 0; i < STORE_NSECRETS && rv == 0; i++) {
    const char *v = *store_secret_field((cfg_deployment *)d, i);
    if (!*v) continue;
    if (store_aad(d->name, store_secret_tags[i], &aad) < 0 ||
        keys_encrypt_aad(k, aad.data, aad.len, (const uint8_t *)v, strlen(v), &sblob[i], &slen[i]) < 0)
      rv = -1;
  }
  buf_free(&aad);
  const int scol[STORE_NSECRETS] = {15, 16, 17, 21}; /* 1-based columns of the blobs */
  for (int i = 0; i < STORE_NSECRETS; i++) {
    if (sblob[i]) sqlite3_bind_blob(st, scol[i], sblob[i], (int)slen[i], SQLITE_STATIC);
    else sqlite3_bind_null(st, scol[i]);
  }
  sqlite3_bind_text(st, 18, d->aws_region, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 19, d->gcp_project, -1, SQLITE_STATIC);
  sqlite3_bind_text(st, 20, d->gcp_location, -1, SQLITE_STATIC);
  sqlite3_bind_int64(st, 22, d->order);
  sqlite3_bind_double(st, 23, d->input_cost_per_token);
  sqlite3_bind_double(st, 24, d->output_cost_per_token);
  sqlite3_bind_int64(st, 25, d->supports_prefill);
  sqlite3_bind_int64(st, 26, d->health_check != 0);
  int rc = rv == 0 ? sqlite3_step(st) : SQLITE_ERROR;
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  free(blob);
  for (int i = 0; i < STORE_NSECRETS; i++) free(sblob[i]);
  if (rv < 0) {
    snprintf(err, errlen, "%s: cannot encrypt the cloud credentials of %s", s->path, d->name);
    return -1;
  }
  return rc == SQLITE_DONE ? 0 : store_fail(s, err, errlen, "insert deployments");
}

static int store_put_deployments(store_t *s, const keys_t *k, const cfg_config *c, char *err,
                                 size_t errlen) {
  sqlite3_stmt *st;
  if (store_prepare(s, "INSERT INTO deployments (name, position, model_group, provider, upstream_model,"
                       " api_base, api_key_enc, api_version, weight, timeout_ms, stream_timeout_ms,"
                       " connect_timeout_ms, rpm, tpm, aws_access_key_id_enc, aws_secret_access_key_enc,"
                       " aws_session_token_enc, aws_region, gcp_project, gcp_location, gcp_credentials_enc,"
                       " priority_order, input_cost_per_token, output_cost_per_token, supports_prefill,"
                       " health_check) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    &st, err, errlen) < 0)
    return -1;
  int rv = 0;
  for (size_t i = 0; i < c->ndeployments && rv == 0; i++)
    rv = store_put_deployment(s, st, k, &c->deployments[i], i, err, errlen);
  sqlite3_finalize(st);
  return rv;
}

static int store_put_state(store_t *s, uint64_t version, const uint8_t hmac[32], char *err,
                           size_t errlen) {
  sqlite3_stmt *st;
  if (store_prepare(s, "INSERT OR REPLACE INTO state VALUES (1, ?, ?, ?)", &st, err, errlen) < 0)
    return -1;
  sqlite3_bind_int64(st, 1, (sqlite3_int64)version);
  sqlite3_bind_blob(st, 2, hmac, 32, SQLITE_STATIC);
  sqlite3_bind_int64(st, 3, (sqlite3_int64)util_wall_ms());
  int rc = sqlite3_step(st);
  sqlite3_finalize(st);
  return rc == SQLITE_DONE ? 0 : store_fail(s, err, errlen, "update state");
}

static int store_replace(store_t *s, const keys_t *k, const cfg_config *c, uint64_t version,
                         const uint8_t hmac[32], char *err, size_t errlen) {
  if (store_exec(s, "DELETE FROM deployments; DELETE FROM group_fallbacks;"
                    "DELETE FROM model_groups; DELETE FROM router_settings;", err, errlen) < 0)
    return -1;
  if (store_put_router(s, c, err, errlen) < 0 || store_put_groups(s, c, err, errlen) < 0 ||
      store_put_deployments(s, k, c, err, errlen) < 0)
    return -1;
  return store_put_state(s, version, hmac, err, errlen);
}

int store_import(store_t *s, const keys_t *k, const cfg_config *c, uint64_t *version,
                 int *changed, char *err, size_t errlen) {
  uint8_t hmac[32];
  if (store_content_hmac(k, c, hmac) < 0) {
    snprintf(err, errlen, "%s: cannot fingerprint the config", s->path);
    return -1;
  }
  if (store_exec(s, "BEGIN IMMEDIATE", err, errlen) < 0) return -1;
  int same = store_read_state(s, hmac, version);
  if (same < 0) {
    store_rollback(s);
    return store_fail(s, err, errlen, "read state");
  }
  *changed = !same;
  if (!same && store_replace(s, k, c, *version + 1, hmac, err, errlen) < 0) {
    store_rollback(s);
    return -1;
  }
  if (store_exec(s, "COMMIT", err, errlen) < 0) {
    store_rollback(s);
    return -1;
  }
  if (!same) (*version)++;
  return 0;
}

/* ------------------------------------------------------------------ load */

static char *col_dup(sqlite3_stmt *st, int i) {
  const unsigned char *t = sqlite3_column_text(st, i);
  return strdup(t ? (const char *)t : "");
}

/* probe_prompt from tunables: absent = the default; else what a parse accepts (a
 * non-empty string of at most CFG_PROBE_PROMPT_MAX bytes; jansson has checked UTF-8). */
static int store_read_probe_prompt(cfg_router *r, json_t *v) {
  const char *p = CFG_DEFAULT_PROBE_PROMPT;
  if (v) {
    size_t n = json_is_string(v) ? json_string_length(v) : 0;
    if (!n || n > CFG_PROBE_PROMPT_MAX || strlen(json_string_value(v)) != n) return -1; /* no NUL inside */
    p = json_string_value(v);
  }
  return (r->probe_prompt = strdup(p)) ? 0 : -1;
}

/* Fills r from the tunables JSON; absent keys keep cfg_init's defaults (a v3 database
 * migrated forward holds '{}'). A value of the wrong type or range is corruption: -1. */
static int store_read_tunables(cfg_router *r, const char *text) {
  json_t *o = json_loads(text ? text : "{}", 0, NULL), *v;
  int rv = json_is_object(o) ? 0 : -1;
  for (size_t i = 0; rv == 0 && i < STORE_NTUNABLES; i++) {
    if (!(v = json_object_get(o, store_tunables[i].key))) continue;
    json_int_t x = json_is_integer(v) ? json_integer_value(v) : -1;
    if (x < (json_int_t)store_tunables[i].min || x > (json_int_t)store_tunables[i].max) rv = -1;
    else *store_tunable(r, i) = (uint32_t)x;
  }
  if (rv == 0 && (v = json_object_get(o, "probes_enabled"))) {
    if (json_is_boolean(v)) r->probes_enabled = json_is_true(v);
    else rv = -1;
  }
  const char *msf = "continue"; /* the default, as after a parse */
  if (rv == 0 && (v = json_object_get(o, "mid_stream_fallback"))) {
    if (json_is_string(v)) msf = json_string_value(v);
    else rv = -1;
  }
  if (rv == 0 && !(r->mid_stream_fallback = strdup(msf))) rv = -1;
  if (rv == 0) rv = store_read_probe_prompt(r, json_object_get(o, "probe_prompt"));
  json_decref(o);
  return rv;
}

static int store_get_router(store_t *s, cfg_config *c, char *err, size_t errlen) {
  sqlite3_stmt *st;
  if (store_prepare(s, "SELECT num_retries, timeout_ms, allowed_fails, cooldown_ms, routing_strategy,"
                       " master_key_sha256, tunables FROM router_settings WHERE id = 1", &st, err, errlen) < 0)
    return -1;
  int rv = -1;
  if (sqlite3_step(st) == SQLITE_ROW) {
    c->router.num_retries = (uint32_t)sqlite3_column_int64(st, 0);
    c->router.timeout_ms = (uint32_t)sqlite3_column_int64(st, 1);
    c->router.allowed_fails = (uint32_t)sqlite3_column_int64(st, 2);
    c->router.cooldown_ms = (uint32_t)sqlite3_column_int64(st, 3);
    c->router.routing_strategy = col_dup(st, 4);
    if (sqlite3_column_bytes(st, 5) == 32) {
      memcpy(c->master_key_sha256, sqlite3_column_blob(st, 5), 32);
      c->has_master_key = 1;
    }
    rv = c->router.routing_strategy ? 0 : -1;
    if (rv == 0 && store_read_tunables(&c->router, (const char *)sqlite3_column_text(st, 6)) < 0) {
      sqlite3_finalize(st);
      snprintf(err, errlen, "%s: router_settings.tunables is not a valid tunables object", s->path);
      return -1;
    }
  }
  sqlite3_finalize(st);
  return rv == 0 ? 0 : store_fail(s, err, errlen, "read router_settings");
}

/* NULL for SQL NULL, else a copy; *bad set on ENOMEM. */
static char *col_opt(sqlite3_stmt *st, int i, int *bad) {
  if (sqlite3_column_type(st, i) == SQLITE_NULL) return NULL;
  char *v = strdup((const char *)sqlite3_column_text(st, i));
  if (!v) *bad = 1;
  return v;
}

static int store_get_fallbacks(store_t *s, cfg_config *c, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rc, rv = 0;
  if (store_prepare(s, "SELECT group_name, fallback, kind FROM group_fallbacks"
                       " ORDER BY group_name, position", &st, err, errlen) < 0)
    return -1;
  while (rv == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) {
    cfg_group *g = cfg_find_group(c, (const char *)sqlite3_column_text(st, 0));
    const char *kind = (const char *)sqlite3_column_text(st, 2);
    int k = 0;
    while (k < STORE_NKINDS && strcmp(kind, store_fb_kinds[k])) k++;
    char ***v;
    size_t *n;
    if (!g || k == STORE_NKINDS) {
      rv = -1;
      break;
    }
    store_fb_list(g, k, &v, &n);
    if (store_list_add(v, n, (const char *)sqlite3_column_text(st, 1)) < 0) rv = -1;
  }
  sqlite3_finalize(st);
  return rv == 0 ? 0 : store_fail(s, err, errlen, "read group_fallbacks");
}

static int store_get_groups(store_t *s, cfg_config *c, char *err, size_t errlen) {
  sqlite3_stmt *st;
  int rv = 0;
  if (store_prepare(s, "SELECT name, routing_strategy, mid_stream_fallback, hedge FROM model_groups"
                       " ORDER BY position", &st, err, errlen) < 0)
    return -1;
  while (rv == 0 && sqlite3_step(st) == SQLITE_ROW) {
    cfg_group *g = cfg_add_group(c, (const char *)sqlite3_column_text(st, 0));
    int bad = !g;
    if (g) {
      g->routing_strategy = col_opt(st, 1, &bad);
      g->mid_stream_fallback = col_opt(st, 2, &bad);
      g->hedge = sqlite3_column_int(st, 3) != 0;
    }
    if (bad) rv = -1;
  }
  sqlite3_finalize(st);
  if (rv < 0) return store_fail(s, err, errlen, "read model_groups");
  return store_get_fallbacks(s, c, err, errlen);
}

static int store_get_deployment(store_t *s, sqlite3_stmt *st, const keys_t *k, cfg_config *c,
                                char *err, size_t errlen) {
  cfg_deployment *d = cfg_add_deployment(c);
  if (!d) return store_fail(s, err, errlen, "out of memory");
  d->name = col_dup(st, 0);
  d->model_group = col_dup(st, 1);
  d->provider = col_dup(st, 2);
  d->upstream_model = col_dup(st, 3);
  d->api_base = col_dup(st, 4);
  d->api_version = col_dup(st, 6);
  uint32_t *nums[] = {&d->weight, &d->timeout_ms, &d->stream_timeout_ms, &d->connect_timeout_ms,
                      &d->rpm, &d->tpm};
  for (int i = 0; i < 6; i++) *nums[i] = (uint32_t)sqlite3_column_int64(st, 7 + i);
  d->aws_region = col_dup(st, 16);
  d->gcp_project = col_dup(st, 17);
  d->gcp_location = col_dup(st, 18);
  d->order = (uint32_t)sqlite3_column_int64(st, 20);
  d->input_cost_per_token = sqlite3_column_double(st, 21);
  d->output_cost_per_token = sqlite3_column_double(st, 22);
  d->supports_prefill = sqlite3_column_int(st, 23);
  d->health_check = sqlite3_column_int(st, 24) != 0;
  if (!d->name || !d->model_group || !d->provider || !d->upstream_model || !d->api_base || !d->api_version ||
      !d->aws_region || !d->gcp_project || !d->gcp_location)
    return store_fail(s, err, errlen, "out of memory");
  const int scol[STORE_NSECRETS] = {13, 14, 15, 19}; /* 0-based result columns of the blobs */
  buf_t aad = {0};
  for (int i = 0; i < STORE_NSECRETS; i++) {
    char **f = store_secret_field(d, i);
    int rv = 0;
    if (sqlite3_column_type(st, scol[i]) == SQLITE_NULL) {
      if (!(*f = strdup(""))) rv = -ENOMEM;
    } else if (store_aad(d->name, store_secret_tags[i], &aad) < 0) {
      rv = -ENOMEM;
    } else {
      rv = keys_decrypt_aad(k, aad.data, aad.len, sqlite3_column_blob(st, scol[i]),
                            (size_t)sqlite3_column_bytes(st, scol[i]), f, NULL);
    }
    if (rv < 0) {
      buf_free(&aad);
      snprintf(err, errlen, "%s: cannot decrypt %s of %s (wrong secret.key?)", s->path,
               store_secret_tags[i], d->name);
      return -1;
    }
  }
  buf_free(&aad);
  if (sqlite3_column_type(st, 5) == SQLITE_NULL) {
    d->api_key = strdup("");
    return d->api_key ? 0 : -1;
  }
  int rv = keys_decrypt(k, d->name, sqlite3_column_blob(st, 5), (size_t)sqlite3_column_bytes(st, 5),
                        &d->api_key, NULL);
  if (rv < 0) {
    snprintf(err, errlen, "%s: cannot decrypt the provider key of %s (wrong secret.key?)", s->path, d->name);
    return -1;
  }
  return 0;
}

static int store_get_deployments(store_t *s, const keys_t *k, cfg_config *c, char *err, size_t errlen) {
  sqlite3_stmt *st;
  if (store_prepare(s, "SELECT name, model_group, provider, upstream_model, api_base, api_key_enc,"
                       " api_version, weight, timeout_ms, stream_timeout_ms, connect_timeout_ms, rpm, tpm,"
                       " aws_access_key_id_enc, aws_secret_access_key_enc, aws_session_token_enc,"
                       " aws_region, gcp_project, gcp_location, gcp_credentials_enc,"
                       " priority_order, input_cost_per_token, output_cost_per_token, supports_prefill,"
                       " health_check FROM deployments ORDER BY position", &st, err, errlen) < 0)
    return -1;
  int rc, rv = 0;
  while (rv == 0 && (rc = sqlite3_step(st)) == SQLITE_ROW) rv = store_get_deployment(s, st, k, c, err, errlen);
  if (rv == 0 && rc != SQLITE_DONE) rv = store_fail(s, err, errlen, "read deployments");
  sqlite3_finalize(st);
  return rv;
}

int store_load(store_t *s, const keys_t *k, cfg_config *out, uint64_t *version, char *err,
               size_t errlen) {
  uint8_t unused[32] = {0};
  cfg_init(out);
  if (store_exec(s, "BEGIN", err, errlen) < 0) return -1;
  if (store_read_state(s, unused, version) < 0) {
    store_rollback(s);
    return store_fail(s, err, errlen, "read state");
  }
  int found = *version > 0;
  if (found && (store_get_router(s, out, err, errlen) < 0 || store_get_groups(s, out, err, errlen) < 0 ||
                store_get_deployments(s, k, out, err, errlen) < 0)) {
    store_rollback(s);
    cfg_free(out);
    return -1;
  }
  store_exec(s, "COMMIT", err, errlen);
  return found;
}
