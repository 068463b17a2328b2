/* log.h — structured logs: one JSON object per line on stderr.
 *
 *   LOG_INFO(req_id, "failover", LF_S("from", dep), LF_S("reason", "http_500"), LF_I("attempt", 2));
 *
 * Every line carries ts, level, svc and event; request_id when one is given. Values are
 * escaped; a line is written with a single write(2) so lines from processes sharing
 * a pipe do not interleave. */
#ifndef LLMESH_LOG_H
#define LLMESH_LOG_H

#include <stddef.h>
#include <stdint.h>

enum log_level { LOG_LEVEL_DEBUG = 0, LOG_LEVEL_INFO, LOG_LEVEL_WARN, LOG_LEVEL_ERROR };

enum log_ftype { LF_T_SKIP = 0, LF_T_STR, LF_T_INT, LF_T_DBL, LF_T_BOOL, LF_T_END };

typedef struct log_field {
  const char *key;     /* JSON key */
  enum log_ftype type; /* which value member is set */
  const char *s;       /* string value (NULL → null) */
  long long i;         /* integer / bool value */
  double d;            /* floating value */
} log_field;

#define LF_S(k, v) ((log_field){.key = (k), .type = LF_T_STR, .s = (v)})
#define LF_I(k, v) ((log_field){.key = (k), .type = LF_T_INT, .i = (long long)(v)})
#define LF_F(k, v) ((log_field){.key = (k), .type = LF_T_DBL, .d = (double)(v)})
#define LF_B(k, v) ((log_field){.key = (k), .type = LF_T_BOOL, .i = !!(v)})

void log_init(const char *service, enum log_level min_level); /* service: "worker", "control", ... */
void log_set_level(enum log_level min_level);
int log_enabled(enum log_level level);
enum log_level log_level_parse(const char *name); /* "debug"|"info"|"warn"|"error"; default info */
void log_emit(enum log_level level, const char *request_id, const char *event, const log_field *fields);

#define LOG__(lvl, rid, ev, ...)                                                    \
  do {                                                                              \
    if (log_enabled(lvl))                                                           \
      log_emit(lvl, rid, ev,                                                        \
               (const log_field[]){{.type = LF_T_SKIP}, ##__VA_ARGS__, {.type = LF_T_END}}); \
  } while (0)
#define LOG_DEBUG(rid, ev, ...) LOG__(LOG_LEVEL_DEBUG, rid, ev, ##__VA_ARGS__)
#define LOG_INFO(rid, ev, ...) LOG__(LOG_LEVEL_INFO, rid, ev, ##__VA_ARGS__)
#define LOG_WARN(rid, ev, ...) LOG__(LOG_LEVEL_WARN, rid, ev, ##__VA_ARGS__)
#define LOG_ERROR(rid, ev, ...) LOG__(LOG_LEVEL_ERROR, rid, ev, ##__VA_ARGS__)

/* Appends s (n bytes) to out as the inside of a JSON string (no quotes). Returns bytes
 * written, at most cap - 1; stops early rather than overflow. Used by log and metrics. */
size_t log_json_escape(char *out, size_t cap, const char *s, size_t n);

#endif
