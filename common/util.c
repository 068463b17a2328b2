/* util.c — clocks, RSS and the growable buffer. */
#include "util.h"

#include <errno.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

uint64_t util_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t util_wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

uint64_t util_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  unsigned long size = 0, rss = 0;
  if (!f) return 0;
  if (fscanf(f, "%lu %lu", &size, &rss) != 2) rss = 0;
  fclose(f);
  return (uint64_t)rss * (uint64_t)sysconf(_SC_PAGESIZE);
}

static int exit_deadline_code;

static void exit_deadline_fire(int sig) {
  static const char line[] = "{\"level\":\"warn\",\"event\":\"shutdown_forced\","
                             "\"reason\":\"teardown exceeded its deadline\"}\n";
  ssize_t w = write(STDERR_FILENO, line, sizeof line - 1);
  (void)w;
  (void)sig;
  _exit(exit_deadline_code);
}

void util_exit_deadline(unsigned seconds, int code) {
  exit_deadline_code = code;
  signal(SIGALRM, exit_deadline_fire);
  alarm(seconds);
}

static int buf_reserve(buf_t *b, size_t extra) {
  size_t need = b->len + extra + 1; /* +1 keeps room for buf_cstr's NUL */
  if (need <= b->cap) return 0;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap *= 2;
  char *p = realloc(b->data, cap);
  if (!p) return -ENOMEM;
  b->data = p;
  b->cap = cap;
  return 0;
}

int buf_append(buf_t *b, const void *p, size_t n) {
  if (buf_reserve(b, n)) return -ENOMEM;
  if (n) memcpy(b->data + b->len, p, n);
  b->len += n;
  return 0;
}

int buf_printf(buf_t *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n < 0 || buf_reserve(b, (size_t)n)) return -ENOMEM;
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
  return 0;
}

const char *buf_cstr(buf_t *b) {
  if (buf_reserve(b, 0)) return NULL;
  b->data[b->len] = '\0';
  return b->data;
}

void buf_consume(buf_t *b, size_t n) {
  if (n >= b->len) { b->len = 0; return; }
  memmove(b->data, b->data + n, b->len - n);
  b->len -= n;
}

int buf_json_quote(buf_t *b, const char *s, size_t n) {
  static const char hex[] = "0123456789abcdef";
  if (BUF_LIT(b, "\"")) return -ENOMEM;
  size_t run = 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)s[i];
    if (ch >= 0x20 && ch != '"' && ch != '\\') continue;
    if (buf_append(b, s + run, i - run)) return -ENOMEM;
    run = i + 1;
    char e[7] = {'\\', 0};
    size_t el = 2;
    switch (ch) {
      case '"': e[1] = '"'; break;
      case '\\': e[1] = '\\'; break;
      case '\n': e[1] = 'n'; break;
      case '\r': e[1] = 'r'; break;
      case '\t': e[1] = 't'; break;
      case '\b': e[1] = 'b'; break;
      case '\f': e[1] = 'f'; break;
      default:
        memcpy(e + 1, "u00", 3);
        e[4] = hex[ch >> 4];
        e[5] = hex[ch & 15];
        el = 6;
    }
    if (buf_append(b, e, el)) return -ENOMEM;
  }
  if (buf_append(b, s + run, n - run) || BUF_LIT(b, "\"")) return -ENOMEM;
  return 0;
}

void buf_reset(buf_t *b) { b->len = 0; }

void buf_free(buf_t *b) {
  free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}
