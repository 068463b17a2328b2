/* log.c — JSON-lines logging to stderr. */
#include "log.h"

#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static const char *log_service = "llmesh";
static enum log_level log_min = LOG_LEVEL_INFO;
static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_init(const char *service, enum log_level min_level) {
  log_service = service;
  log_min = min_level;
}

void log_set_level(enum log_level min_level) { log_min = min_level; }

int log_enabled(enum log_level level) { return level >= log_min; }

enum log_level log_level_parse(const char *name) {
  if (!name) return LOG_LEVEL_INFO;
  for (int i = 0; i < 4; i++)
    if (strcmp(name, level_names[i]) == 0) return (enum log_level)i;
  return LOG_LEVEL_INFO;
}

size_t log_json_escape(char *out, size_t cap, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  size_t o = 0;
  if (cap == 0) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    char esc[7];
    size_t el = 0;
    if (c == '"' || c == '\\') { esc[0] = '\\'; esc[1] = (char)c; el = 2; }
    else if (c == '\n') { esc[0] = '\\'; esc[1] = 'n'; el = 2; }
    else if (c == '\r') { esc[0] = '\\'; esc[1] = 'r'; el = 2; }
    else if (c == '\t') { esc[0] = '\\'; esc[1] = 't'; el = 2; }
    else if (c < 0x20 || c == 0x7f) {
      memcpy(esc, "\\u00", 4); esc[4] = hex[c >> 4]; esc[5] = hex[c & 15]; el = 6;
    } else { esc[0] = (char)c; el = 1; }
    if (o + el >= cap) break;
    memcpy(out + o, esc, el);
    o += el;
  }
  out[o] = '\0';
  return o;
}

/* Appends a quoted JSON string; returns the new offset. */
static size_t put_str(char *line, size_t off, size_t cap, const char *s) {
  if (off + 3 >= cap) return off;
  line[off++] = '"';
  off += log_json_escape(line + off, cap - off - 1, s, strlen(s));
  if (off + 1 < cap) line[off++] = '"';
  return off;
}

static size_t put_raw(char *line, size_t off, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (off + 1 >= cap) return off;
  if (off + n >= cap) n = cap - off - 1;
  memcpy(line + off, s, n);
  return off + n;
}

void log_emit(enum log_level level, const char *request_id, const char *event,
              const log_field *fields) {
  char line[4096], num[64], ts[40];
  size_t cap = sizeof line - 2; /* room for "}\n" */
  struct timespec now;
  struct tm tm;
  clock_gettime(CLOCK_REALTIME, &now);
  gmtime_r(&now.tv_sec, &tm);
  size_t tl = strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(ts + tl, sizeof ts - tl, ".%03ldZ", now.tv_nsec / 1000000);

  size_t off = put_raw(line, 0, cap, "{\"ts\":\"");
  off = put_raw(line, off, cap, ts);
  off = put_raw(line, off, cap, "\",\"level\":\"");
  off = put_raw(line, off, cap, level_names[level & 3]);
  off = put_raw(line, off, cap, "\",\"svc\":");
  off = put_str(line, off, cap, log_service);
  off = put_raw(line, off, cap, ",\"event\":");
  off = put_str(line, off, cap, event);
  if (request_id && *request_id) {
    off = put_raw(line, off, cap, ",\"request_id\":");
    off = put_str(line, off, cap, request_id);
  }
  for (const log_field *f = fields; f && f->type != LF_T_END; f++) {
    if (f->type == LF_T_SKIP) continue;
    off = put_raw(line, off, cap, ",");
    off = put_str(line, off, cap, f->key);
    off = put_raw(line, off, cap, ":");
    switch (f->type) {
      case LF_T_STR: off = f->s ? put_str(line, off, cap, f->s) : put_raw(line, off, cap, "null"); break;
      case LF_T_INT: snprintf(num, sizeof num, "%lld", f->i); off = put_raw(line, off, cap, num); break;
      case LF_T_DBL: snprintf(num, sizeof num, "%.3f", f->d); off = put_raw(line, off, cap, num); break;
      case LF_T_BOOL: off = put_raw(line, off, cap, f->i ? "true" : "false"); break;
      default: off = put_raw(line, off, cap, "null"); break;
    }
  }
  line[off++] = '}';
  line[off++] = '\n';
  ssize_t w = write(STDERR_FILENO, line, off);
  (void)w;
}
