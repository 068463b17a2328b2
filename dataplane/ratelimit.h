/* ratelimit.h — how long a provider asked us to wait, from its response headers.
 *
 * Pure parsing, no I/O, no clock of its own. Per response: zero a ratelimit_hint, feed it
 * every header line with ratelimit_header() (any status; unknown names are ignored, names
 * are case-insensitive, values may carry surrounding blanks and the trailing CR LF), then
 * ratelimit_wait_ms() gives the wait, to pass as breaker_attempt_end's retry_after_ms.
 *
 * Understood (docs: ../shared/docs/provider-wire-formats.md §2.7, §4.7):
 *   retry-after-ms                     float milliseconds
 *   retry-after                        float seconds, or an HTTP-date (IMF-fixdate)
 *   x-ratelimit-reset-requests|tokens  Go durations relative to now: "1s", "20ms", "6m0s", "1h2m3.5s"
 *   anthropic-ratelimit-{requests,tokens,input-tokens,output-tokens}-reset
 *                                      RFC 3339 timestamps, against now_wall_ms
 *   x-ratelimit-remaining-* / anthropic-ratelimit-*-remaining: which limit is exhausted
 * Which wins: retry-after-ms, else retry-after, when present. Else the latest reset among
 * the limit families whose remaining count is 0; when no remaining count says 0 (absent
 * headers), the latest reset of all. */
#ifndef LLMESH_RATELIMIT_H
#define LLMESH_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

enum ratelimit_family {          /* one per limit with its own reset header */
  RL_OPENAI_REQUESTS = 0,        /* x-ratelimit-*-requests */
  RL_OPENAI_TOKENS,              /* x-ratelimit-*-tokens */
  RL_ANTHROPIC_REQUESTS,         /* anthropic-ratelimit-requests-* */
  RL_ANTHROPIC_TOKENS,           /* anthropic-ratelimit-tokens-* */
  RL_ANTHROPIC_INPUT_TOKENS,     /* anthropic-ratelimit-input-tokens-* */
  RL_ANTHROPIC_OUTPUT_TOKENS,    /* anthropic-ratelimit-output-tokens-* */
  RL__COUNT
};

typedef struct ratelimit_hint {
  int has_retry_after_ms;        /* a valid retry-after-ms was seen */
  uint64_t retry_after_ms_ms;    /* its value, ms (rounded up) */
  int has_retry_after;           /* a valid retry-after was seen */
  uint64_t retry_after_ms;       /* its value as a wait from now, ms (a past date: 0) */
  uint64_t reset_ms[RL__COUNT];  /* per family: wait until its reset, ms; 0 = none */
  uint8_t exhausted[RL__COUNT];  /* per family: its remaining count said 0 */
} ratelimit_hint;

/* Feeds one header. now_wall_ms: the wall clock (ms since the epoch) for absolute times. */
void ratelimit_header(ratelimit_hint *h, const char *name, size_t nlen, const char *value,
                      size_t vlen, uint64_t now_wall_ms);
/* The wait the headers fed so far ask for, ms; 0 = no hint. */
uint64_t ratelimit_wait_ms(const ratelimit_hint *h);

/* Building blocks, exposed for tests. Each returns 0 and sets *ms, or -EINVAL. */
int ratelimit_parse_go_duration(const char *s, size_t n, uint64_t *ms);  /* "1h2m3.5s" → 3723500 */
int ratelimit_parse_rfc3339(const char *s, size_t n, uint64_t *epoch_ms); /* → ms since the epoch */
int ratelimit_parse_http_date(const char *s, size_t n, uint64_t *epoch_ms); /* IMF-fixdate */

#endif
