/* ratelimit.c — provider reset hints → a wait in ms (see ratelimit.h). */
#include "ratelimit.h"

#include <errno.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#define RL_MAX_WAIT_MS (7ull * 24 * 3600 * 1000) /* anything longer is garbage: ignored */

/* Header names: the family's reset and remaining headers. */
static const struct {
  const char *reset;
  const char *remaining;
} families[RL__COUNT] = {
    [RL_OPENAI_REQUESTS] = {"x-ratelimit-reset-requests", "x-ratelimit-remaining-requests"},
    [RL_OPENAI_TOKENS] = {"x-ratelimit-reset-tokens", "x-ratelimit-remaining-tokens"},
    [RL_ANTHROPIC_REQUESTS] = {"anthropic-ratelimit-requests-reset",
                               "anthropic-ratelimit-requests-remaining"},
    [RL_ANTHROPIC_TOKENS] = {"anthropic-ratelimit-tokens-reset", "anthropic-ratelimit-tokens-remaining"},
    [RL_ANTHROPIC_INPUT_TOKENS] = {"anthropic-ratelimit-input-tokens-reset",
                                   "anthropic-ratelimit-input-tokens-remaining"},
    [RL_ANTHROPIC_OUTPUT_TOKENS] = {"anthropic-ratelimit-output-tokens-reset",
                                    "anthropic-ratelimit-output-tokens-remaining"},
};

static int name_is(const char *name, size_t nlen, const char *want) {
  return strlen(want) == nlen && strncasecmp(name, want, nlen) == 0;
}

/* Strips blanks and CR LF on both sides. */
static void trim(const char **s, size_t *n) {
  while (*n && (**s == ' ' || **s == '\t')) (*s)++, (*n)--;
  while (*n && strchr(" \t\r\n", (*s)[*n - 1])) (*n)--;
}

/* A non-negative decimal number ("12", "3.5", ".5") at s[*i]; advances *i. */
static int parse_number(const char *s, size_t n, size_t *i, double *out) {
  double v = 0, scale = 0.1;
  int digits = 0;
  while (*i < n && s[*i] >= '0' && s[*i] <= '9') v = v * 10 + (s[(*i)++] - '0'), digits++;
  if (*i < n && s[*i] == '.') {
    (*i)++;
    while (*i < n && s[*i] >= '0' && s[*i] <= '9') v += (s[(*i)++] - '0') * scale, scale /= 10, digits++;
  }
  if (!digits) return -EINVAL;
  *out = v;
  return 0;
}

static uint64_t ms_ceil(double ms) {
  if (!(ms > 0)) return 0;
  if (ms > (double)RL_MAX_WAIT_MS) return RL_MAX_WAIT_MS + 1;
  uint64_t t = (uint64_t)ms; /* rounded up, but 1.5 s is 1500 ms, not 1501 through rounding noise */
  return (double)t < ms - 1e-6 ? t + 1 : t;
}

/* A number followed by nothing: the whole value. */
static int parse_plain(const char *s, size_t n, double *out) {
  size_t i = 0;
  return parse_number(s, n, &i, out) || i != n ? -EINVAL : 0;
}

int ratelimit_parse_go_duration(const char *s, size_t n, uint64_t *ms) {
  static const struct { const char *unit; double ms; } units[] = {
      {"ns", 1e-6}, {"us", 1e-3}, {"\xc2\xb5s", 1e-3}, {"ms", 1}, {"s", 1000}, {"m", 60000},
      {"h", 3600000}};
  double total = 0;
  size_t i = 0;
  if (n == 1 && s[0] == '0') { *ms = 0; return 0; } /* Go prints a zero duration as "0s", accept "0" */
  if (!n) return -EINVAL;
  while (i < n) {
    double v;
    if (parse_number(s, n, &i, &v)) return -EINVAL;
    size_t best = 0, k = 0;
    for (size_t u = 0; u < sizeof units / sizeof *units; u++) {
      size_t ul = strlen(units[u].unit);
      if (ul > best && i + ul <= n && memcmp(s + i, units[u].unit, ul) == 0) best = ul, k = u;
    }
    if (!best) return -EINVAL;
    total += v * units[k].ms;
    i += best;
  }
  if ((*ms = ms_ceil(total)) > RL_MAX_WAIT_MS) return -EINVAL;
  return 0;
}

/* n digits at s as an int; -1 when not digits. */
static int digits(const char *s, int n) {
  int v = 0;
  for (int i = 0; i < n; i++) {
    if (s[i] < '0' || s[i] > '9') return -1;
    v = v * 10 + (s[i] - '0');
  }
  return v;
}

static int epoch_ms_of(struct tm *tm, double frac_ms, int64_t offset_s, uint64_t *epoch_ms) {
  if (tm->tm_mon < 0 || tm->tm_mon > 11 || tm->tm_mday < 1 || tm->tm_mday > 31 || tm->tm_hour > 23 ||
      tm->tm_min > 59 || tm->tm_sec > 60)
    return -EINVAL;
  time_t t = timegm(tm);
  if (t == (time_t)-1 || (int64_t)t - offset_s < 0) return -EINVAL;
  *epoch_ms = (uint64_t)((int64_t)t - offset_s) * 1000 + (uint64_t)frac_ms;
  return 0;
}

int ratelimit_parse_rfc3339(const char *s, size_t n, uint64_t *epoch_ms) {
  /* 2025-06-01T12:00:30Z, 2025-06-01T12:00:30.250+02:00 */
  if (n < 20 || s[4] != '-' || s[7] != '-' || (s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
      s[13] != ':' || s[16] != ':')
    return -EINVAL;
  struct tm tm = {0};
  tm.tm_year = digits(s, 4) - 1900;
  tm.tm_mon = digits(s + 5, 2) - 1;
  tm.tm_mday = digits(s + 8, 2);
  tm.tm_hour = digits(s + 11, 2);
  tm.tm_min = digits(s + 14, 2);
  tm.tm_sec = digits(s + 17, 2);
  if (tm.tm_year < 70 || tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0) return -EINVAL;
  size_t i = 19;
  double frac = 0;
  if (i < n && s[i] == '.') {
    double scale = 100;
    for (i++; i < n && s[i] >= '0' && s[i] <= '9'; i++, scale /= 10) frac += (s[i] - '0') * scale;
  }
  int64_t off = 0;
  if (i < n && (s[i] == 'Z' || s[i] == 'z')) {
    i++;
  } else if (i + 6 == n && (s[i] == '+' || s[i] == '-') && s[i + 3] == ':') {
    int hh = digits(s + i + 1, 2), mm = digits(s + i + 4, 2);
    if (hh < 0 || mm < 0) return -EINVAL;
    off = (s[i] == '-' ? -1 : 1) * (int64_t)(hh * 3600 + mm * 60);
    i += 6;
  } else {
    return -EINVAL;
  }
  if (i != n) return -EINVAL;
  return epoch_ms_of(&tm, frac, off, epoch_ms);
}

int ratelimit_parse_http_date(const char *s, size_t n, uint64_t *epoch_ms) {
  /* IMF-fixdate: "Wed, 21 Oct 2015 07:28:00 GMT" (29 characters) */
  static const char months[] = "JanFebMarAprMayJunJulAugSepOctNovDec";
  if (n != 29 || s[3] != ',' || s[4] != ' ' || s[7] != ' ' || s[11] != ' ' || s[16] != ' ' ||
      s[19] != ':' || s[22] != ':' || memcmp(s + 25, " GMT", 4) != 0)
    return -EINVAL;
  struct tm tm = {0};
  tm.tm_mon = -1;
  for (int m = 0; m < 12; m++)
    if (strncasecmp(s + 8, months + 3 * m, 3) == 0) tm.tm_mon = m;
  tm.tm_mday = digits(s + 5, 2);
  tm.tm_year = digits(s + 12, 4) - 1900;
  tm.tm_hour = digits(s + 17, 2);
  tm.tm_min = digits(s + 20, 2);
  tm.tm_sec = digits(s + 23, 2);
  if (tm.tm_year < 70 || tm.tm_hour < 0 || tm.tm_min < 0 || tm.tm_sec < 0) return -EINVAL;
  return epoch_ms_of(&tm, 0, 0, epoch_ms);
}

static uint64_t until(uint64_t at_ms, uint64_t now_wall_ms) {
  return at_ms > now_wall_ms ? at_ms - now_wall_ms : 0;
}

static void on_retry_after(ratelimit_hint *h, const char *v, size_t n, uint64_t now_wall_ms) {
  double secs;
  uint64_t at;
  if (!parse_plain(v, n, &secs)) {
    uint64_t ms = ms_ceil(secs * 1000);
    if (ms > RL_MAX_WAIT_MS) return;
    h->retry_after_ms = ms;
  } else if (!ratelimit_parse_http_date(v, n, &at)) {
    h->retry_after_ms = until(at, now_wall_ms);
  } else {
    return;
  }
  h->has_retry_after = 1;
}

static void on_retry_after_ms(ratelimit_hint *h, const char *v, size_t n) {
  double ms;
  if (parse_plain(v, n, &ms) || ms_ceil(ms) > RL_MAX_WAIT_MS) return;
  h->retry_after_ms_ms = ms_ceil(ms);
  h->has_retry_after_ms = 1;
}

/* x-ratelimit-reset-* is a duration, anthropic-*-reset a timestamp. */
static void on_reset(ratelimit_hint *h, int f, const char *v, size_t n, uint64_t now_wall_ms) {
  uint64_t ms, at;
  if (f <= RL_OPENAI_TOKENS) {
    if (ratelimit_parse_go_duration(v, n, &ms)) return;
  } else {
    if (ratelimit_parse_rfc3339(v, n, &at)) return;
    if ((ms = until(at, now_wall_ms)) > RL_MAX_WAIT_MS) return;
  }
  h->reset_ms[f] = ms;
}

static void on_remaining(ratelimit_hint *h, int f, const char *v, size_t n) {
  double left;
  if (!parse_plain(v, n, &left)) h->exhausted[f] = left < 1; /* "-1" (unlimited) fails the parse */
}

void ratelimit_header(ratelimit_hint *h, const char *name, size_t nlen, const char *value,
                      size_t vlen, uint64_t now_wall_ms) {
  trim(&name, &nlen);
  trim(&value, &vlen);
  if (nlen && name[nlen - 1] == ':') nlen--; /* a "Name:" split that kept the colon */
  if (name_is(name, nlen, "retry-after")) { on_retry_after(h, value, vlen, now_wall_ms); return; }
  if (name_is(name, nlen, "retry-after-ms")) { on_retry_after_ms(h, value, vlen); return; }
  for (int f = 0; f < RL__COUNT; f++) {
    if (name_is(name, nlen, families[f].reset)) on_reset(h, f, value, vlen, now_wall_ms);
    else if (name_is(name, nlen, families[f].remaining)) on_remaining(h, f, value, vlen);
  }
}

uint64_t ratelimit_wait_ms(const ratelimit_hint *h) {
  if (h->has_retry_after_ms) return h->retry_after_ms_ms;
  if (h->has_retry_after) return h->retry_after_ms;
  uint64_t all = 0, exhausted = 0;
  int any_exhausted = 0;
  for (int f = 0; f < RL__COUNT; f++) {
    if (h->reset_ms[f] > all) all = h->reset_ms[f];
    if (!h->exhausted[f]) continue;
    any_exhausted = 1;
    if (h->reset_ms[f] > exhausted) exhausted = h->reset_ms[f];
  }
  return any_exhausted && exhausted ? exhausted : all;
}
