/* util.h — small helpers both planes use: clocks, container_of, buffers. */
#ifndef LLMESH_UTIL_H
#define LLMESH_UTIL_H

#include <stddef.h>
#include <stdint.h>

#define container_of(ptr, type, member) \
  ((type *)((char *)(ptr) - offsetof(type, member)))
#define ARRAY_SIZE(a) (sizeof(a) / sizeof((a)[0]))

uint64_t util_now_ms(void);        /* monotonic clock, ms */
uint64_t util_now_us(void);        /* monotonic clock, µs */
uint64_t util_wall_ms(void);       /* wall clock, ms since the epoch */
uint64_t util_rss_bytes(void);     /* resident set size of this process, bytes (0 if unknown) */

/* Bounds process teardown: after `seconds`, log one "shutdown_forced" JSON line and
 * _exit(code). Armed once the graceful part of a shutdown is done, because NNG 1.5.2's
 * nng_close can deadlock on rare occasions (nanomsg/nng#1543, fixed after 1.5.2) and an
 * operator's SIGTERM must always end the process. */
void util_exit_deadline(unsigned seconds, int code);

/* Growable byte buffer. Functions return 0 or -ENOMEM. */
typedef struct buf {
  char *data;      /* bytes, not NUL-terminated unless buf_cstr() was called */
  size_t len;      /* bytes used */
  size_t cap;      /* bytes allocated */
} buf_t;

int buf_append(buf_t *b, const void *p, size_t n);
int buf_printf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *buf_cstr(buf_t *b);    /* NUL-terminates (not counted in len); NULL on ENOMEM */
void buf_consume(buf_t *b, size_t n); /* drop n bytes from the front */
/* Appends s (n bytes) as a quoted JSON string literal (RFC 8259 escapes; bytes >= 0x80
 * pass through, so valid UTF-8 stays valid). Returns 0 or -ENOMEM. */
int buf_json_quote(buf_t *b, const char *s, size_t n);
#define BUF_LIT(b, s) buf_append((b), (s), sizeof(s) - 1) /* appends a string literal */
void buf_reset(buf_t *b);          /* len = 0, keeps memory */
void buf_free(buf_t *b);

#endif
