/* translate.c — translation cost microbenchmark (bench-translate).
 *
 * What a request, a response and a stream chunk cost in CPU when llmesh translates
 * (provider adapters, Anthropic ingress) instead of passing OpenAI bytes through:
 *
 *   passthrough        req_parse + req_rewrite_model; response: req_json_valid + sse_usage;
 *                      stream: sse_feed with the relay's accounting callback (stream.c)
 *   <adapter>          build_request (+ prov_request_free); decode_response; stream_new,
 *                      stream_feed once per upstream event, stream_end, stream_free
 *   anthropic-ingress  ai_request_to_openai; ai_response_from_openai; ai_stream_* over the
 *                      OpenAI stream (OpenAI → Anthropic SSE)
 *
 * Inputs are generated once, in each provider's own wire format, from one conversation:
 * a chat request (system + user, assistant tool call, tool result, user; 1 tool; ~2 KiB,
 * and a ~16 KiB one with more history), a non-stream answer (~1.3 KiB of text + 1 tool
 * call), and a stream of 200 text deltas + 1 tool call whose arguments arrive in 10
 * pieces (where the provider streams them), usage, terminator. Every input is validated
 * through its translator before anything is timed, so an error path is never measured.
 *
 * Timing: CLOCK_MONOTONIC around a calibrated number of iterations (~0.3 s, --quick
 * ~0.04 s), 5 repeats, the median is reported. Allocations (malloc + calloc + realloc
 * calls, jansson's included) are counted by interposing the allocator in this binary.
 *
 *   bench-translate [--quick] [--seconds S] [--only NAME]   (prints a markdown table) */
#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "anthropic_ingress.h"
#include "provider.h"
#include "request.h"
#include "sse.h"

/* ---------------------------------------------------------------- allocation counter */

static uint64_t n_allocs; /* malloc + calloc + realloc calls since start */

#if defined(BENCH_COUNT_ALLOCS) && !defined(__SANITIZE_ADDRESS__)
#define HAVE_ALLOC_COUNT 1
/* glibc's own entry points: overriding malloc in the executable interposes every caller,
 * shared libraries (jansson) included; free stays glibc's. */
extern void *__libc_malloc(size_t n);
extern void *__libc_calloc(size_t n, size_t m);
extern void *__libc_realloc(void *p, size_t n);
void *malloc(size_t n) { n_allocs++; return __libc_malloc(n); }
void *calloc(size_t n, size_t m) { n_allocs++; return __libc_calloc(n, m); }
void *realloc(void *p, size_t n) { n_allocs++; return __libc_realloc(p, n); }
#else
#define HAVE_ALLOC_COUNT 0
#endif

/* ---------------------------------------------------------------- small helpers */

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
static void die(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fputs("bench-translate: ", stderr);
  vfprintf(stderr, fmt, ap);
  fputc('\n', stderr);
  va_end(ap);
  exit(1);
}

static void put(buf_t *b, const char *s) {
  if (buf_append(b, s, strlen(s))) die("out of memory");
}

static void putf(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void putf(buf_t *b, const char *fmt, ...) {
  char tmp[4096];
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
  va_end(ap);
  if (n < 0 || (size_t)n >= sizeof tmp || buf_append(b, tmp, (size_t)n)) die("putf overflow");
}

/* Appends s as a JSON string (quotes included). */
static void jstr(buf_t *b, const char *s) {
  if (req_json_quote(b, s, strlen(s))) die("out of memory");
}

static uint64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---------------------------------------------------------------- the conversation */

/* Deterministic prose with what real text has: punctuation, quotes, newlines, non-ASCII. */
static const char *const words[] = {
    "the", "deployment", "latency", "is", "within", "budget", "and", "we", "should", "check",
    "whether", "Paris", "weather", "forecast", "changes", "tomorrow", "\"quoted\"", "café",
    "naïve", "résumé", "requests", "per", "second,", "token", "window.", "Then", "explain",
    "it", "briefly:", "a", "short", "answer", "works", "best", "for", "users", "on", "mobile",
    "—", "über", "fast", "routing", "with", "failover", "when", "a", "provider", "degrades.",
};

static uint32_t rng_state = 12345;
static uint32_t rng(void) {
  rng_state = rng_state * 1103515245u + 12345u;
  return rng_state >> 16;
}

/* n bytes (about) of prose into a static-free buffer the caller frees. */
static char *prose(size_t n) {
  buf_t b = {0};
  while (b.len < n) {
    const char *w = words[rng() % ARRAY_SIZE(words)];
    if (b.len) put(&b, rng() % 29 == 0 ? "\n" : " ");
    put(&b, w);
  }
  if (!buf_cstr(&b)) die("out of memory");
  return b.data;
}

#define N_TEXT 200      /* text deltas in the stream */
#define N_ARGS 10       /* pieces the streamed tool arguments arrive in */
#define TOOL_NAME "get_weather"
#define TOOL_ARGS "{\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": 3, \"hourly\": false}"
#define PROMPT_TOKENS 1843
#define COMPLETION_TOKENS 262

static char *deltas[N_TEXT];   /* stream text pieces, 1–3 words each */
static char *answer_text;      /* all deltas concatenated: the non-stream answer's text */
static char *arg_pieces[N_ARGS];

static void make_script(void) {
  buf_t all = {0};
  for (int i = 0; i < N_TEXT; i++) {
    buf_t d = {0};
    int nw = 1 + (int)(rng() % 3);
    for (int w = 0; w < nw; w++) {
      put(&d, (i == 0 && w == 0) ? "" : (rng() % 41 == 0 ? "\n" : " "));
      put(&d, words[rng() % ARRAY_SIZE(words)]);
    }
    if (!buf_cstr(&d)) die("out of memory");
    deltas[i] = d.data;
    put(&all, d.data);
  }
  if (!buf_cstr(&all)) die("out of memory");
  answer_text = all.data;
  size_t al = strlen(TOOL_ARGS), at = 0;
  for (int i = 0; i < N_ARGS; i++) {
    size_t next = al * (size_t)(i + 1) / N_ARGS;
    arg_pieces[i] = strndup(&TOOL_ARGS[at], next - at);
    at = next;
  }
}

static const char tool_params[] =
    "{\"type\":\"object\",\"properties\":{"
    "\"city\":{\"type\":\"string\",\"description\":\"City name, e.g. Paris or San Francisco\"},"
    "\"unit\":{\"type\":\"string\",\"enum\":[\"celsius\",\"fahrenheit\"]},"
    "\"days\":{\"type\":\"integer\",\"minimum\":1,\"maximum\":14},"
    "\"hourly\":{\"type\":\"boolean\"}},\"required\":[\"city\"]}";
static const char tool_desc[] = "Get the current weather and a forecast for a city.";
static const char tool_result[] = "{\"temp_c\":18,\"sky\":\"cloudy\",\"wind_kmh\":12}";

/* Message texts of one request: system, then history pairs, then the tool exchange. */
typedef struct convo {
  char *system;
  int npairs;          /* extra user/assistant history pairs before the tool exchange */
  char *hist[32][2];   /* history texts (user, assistant) */
  char *user1;         /* asks for the weather */
  char *assistant1;    /* text before its tool call */
  char *user2;         /* follow-up after the tool result */
} convo;

static convo make_convo(size_t pad, int npairs) {
  convo c = {0};
  rng_state = 777; /* same words for every size: only lengths change */
  c.system = prose(pad * 2);
  c.npairs = npairs;
  for (int i = 0; i < npairs; i++) { c.hist[i][0] = prose(pad); c.hist[i][1] = prose(pad * 2); }
  c.user1 = prose(pad);
  c.assistant1 = prose(pad / 2);
  c.user2 = prose(pad);
  return c;
}

static void free_convo(convo *c) {
  free(c->system);
  for (int i = 0; i < c->npairs; i++) { free(c->hist[i][0]); free(c->hist[i][1]); }
  free(c->user1);
  free(c->assistant1);
  free(c->user2);
}

/* OpenAI chat completions request (the canonical form). */
static void openai_request(buf_t *b, const convo *c, int stream) {
  put(b, "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"system\",\"content\":");
  jstr(b, c->system);
  put(b, "}");
  for (int i = 0; i < c->npairs; i++) {
    put(b, ",{\"role\":\"user\",\"content\":");
    jstr(b, c->hist[i][0]);
    put(b, "},{\"role\":\"assistant\",\"content\":");
    jstr(b, c->hist[i][1]);
    put(b, "}");
  }
  put(b, ",{\"role\":\"user\",\"content\":");
  jstr(b, c->user1);
  put(b, "},{\"role\":\"assistant\",\"content\":");
  jstr(b, c->assistant1);
  put(b, ",\"tool_calls\":[{\"id\":\"call_Qm9vYmFy\",\"type\":\"function\",\"function\":{\"name\":\""
         TOOL_NAME "\",\"arguments\":");
  jstr(b, TOOL_ARGS);
  put(b, "}}]},{\"role\":\"tool\",\"tool_call_id\":\"call_Qm9vYmFy\",\"content\":");
  jstr(b, tool_result);
  put(b, "},{\"role\":\"user\",\"content\":");
  jstr(b, c->user2);
  put(b, "}],\"tools\":[{\"type\":\"function\",\"function\":{\"name\":\"" TOOL_NAME
         "\",\"description\":");
  jstr(b, tool_desc);
  putf(b, ",\"parameters\":%s}}],\"tool_choice\":\"auto\",\"temperature\":0.7,"
          "\"max_tokens\":1024,\"user\":\"user-4711\"", tool_params);
  put(b, stream ? ",\"stream\":true,\"stream_options\":{\"include_usage\":true}}" : "}");
}

/* The same conversation as an Anthropic Messages request (ingress input). */
static void anthropic_request(buf_t *b, const convo *c, int stream) {
  put(b, "{\"model\":\"claude-sonnet-4-5\",\"max_tokens\":1024,\"system\":");
  jstr(b, c->system);
  put(b, ",\"messages\":[");
  for (int i = 0; i < c->npairs; i++) {
    put(b, "{\"role\":\"user\",\"content\":");
    jstr(b, c->hist[i][0]);
    put(b, "},{\"role\":\"assistant\",\"content\":");
    jstr(b, c->hist[i][1]);
    put(b, "},");
  }
  put(b, "{\"role\":\"user\",\"content\":");
  jstr(b, c->user1);
  put(b, "},{\"role\":\"assistant\",\"content\":[{\"type\":\"text\",\"text\":");
  jstr(b, c->assistant1);
  putf(b, "},{\"type\":\"tool_use\",\"id\":\"toolu_01Qm9vYmFy\",\"name\":\"" TOOL_NAME
          "\",\"input\":%s}]},", TOOL_ARGS);
  put(b, "{\"role\":\"user\",\"content\":[{\"type\":\"tool_result\",\"tool_use_id\":"
         "\"toolu_01Qm9vYmFy\",\"content\":");
  jstr(b, tool_result);
  put(b, "},{\"type\":\"text\",\"text\":");
  jstr(b, c->user2);
  put(b, "}]}],\"tools\":[{\"name\":\"" TOOL_NAME "\",\"description\":");
  jstr(b, tool_desc);
  putf(b, ",\"input_schema\":%s}],\"tool_choice\":{\"type\":\"auto\"},\"temperature\":0.7,"
          "\"metadata\":{\"user_id\":\"user-4711\"}", tool_params);
  put(b, stream ? ",\"stream\":true}" : "}");
}

typedef void (*req_writer)(buf_t *b, const convo *c, int stream);

/* Request of about target bytes: grows the message texts until the body reaches it. */
static void sized_request(buf_t *out, req_writer w, size_t target, int npairs, int stream) {
  for (size_t pad = 8;; pad += 4) {
    convo c = make_convo(pad, npairs);
    buf_reset(out);
    w(out, &c, stream);
    free_convo(&c);
    if (out->len >= target) return;
  }
}

/* ---------------------------------------------------------------- native answers */

/* A stream in one provider's framing plus the byte offsets of its events, so it can be
 * fed one upstream event per stream_feed call (what curl delivers for a paced stream). */
typedef struct wire_stream {
  buf_t bytes;       /* the whole upstream stream */
  size_t *ends;      /* end offset of each event, bytes */
  size_t n;          /* events */
  size_t cap;        /* slots in ends */
} wire_stream;

static void ev_end(wire_stream *s) {
  if (s->n == s->cap && !(s->ends = realloc(s->ends, (s->cap = s->cap ? s->cap * 2 : 256) *
                                                         sizeof *s->ends)))
    die("out of memory");
  s->ends[s->n++] = s->bytes.len;
}

/* OpenAI: chat.completion and chat.completion.chunk stream. */
#define OAI_CHUNK "data: {\"id\":\"chatcmpl-B9Mvq1QJxE\",\"object\":\"chat.completion.chunk\"," \
  "\"created\":1735000000,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_50cad350e4\","

static void openai_response(buf_t *b) {
  put(b, "{\"id\":\"chatcmpl-B9Mvq1QJxE\",\"object\":\"chat.completion\",\"created\":1735000000,"
         "\"model\":\"gpt-4o-2024-08-06\",\"choices\":[{\"index\":0,\"message\":{\"role\":"
         "\"assistant\",\"content\":");
  jstr(b, answer_text);
  put(b, ",\"tool_calls\":[{\"id\":\"call_Zm9vYmF6\",\"type\":\"function\",\"function\":{\"name\":\""
         TOOL_NAME "\",\"arguments\":");
  jstr(b, TOOL_ARGS);
  putf(b, "}}],\"refusal\":null,\"annotations\":[]},\"logprobs\":null,\"finish_reason\":"
          "\"tool_calls\"}],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
          "\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0},"
          "\"completion_tokens_details\":{\"reasoning_tokens\":0,\"audio_tokens\":0,"
          "\"accepted_prediction_tokens\":0,\"rejected_prediction_tokens\":0}},"
          "\"service_tier\":\"default\",\"system_fingerprint\":\"fp_50cad350e4\"}",
       PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS);
}

static void openai_stream(wire_stream *s) {
  buf_t *b = &s->bytes;
  put(b, OAI_CHUNK "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
                   "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
  ev_end(s);
  for (int i = 0; i < N_TEXT; i++) {
    put(b, OAI_CHUNK "\"choices\":[{\"index\":0,\"delta\":{\"content\":");
    jstr(b, deltas[i]);
    put(b, "},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
    ev_end(s);
  }
  put(b, OAI_CHUNK "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":"
                   "\"call_Zm9vYmF6\",\"type\":\"function\",\"function\":{\"name\":\"" TOOL_NAME
                   "\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}],"
                   "\"usage\":null}\n\n");
  ev_end(s);
  for (int i = 0; i < N_ARGS; i++) {
    put(b, OAI_CHUNK "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,"
                     "\"function\":{\"arguments\":");
    jstr(b, arg_pieces[i]);
    put(b, "}}]},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n");
    ev_end(s);
  }
  put(b, OAI_CHUNK "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"
                   "\"tool_calls\"}],\"usage\":null}\n\n");
  ev_end(s);
  putf(b, OAI_CHUNK "\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
                    "\"total_tokens\":%d,\"prompt_tokens_details\":{\"cached_tokens\":0},"
                    "\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n",
       PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS);
  ev_end(s);
  put(b, "data: [DONE]\n\n");
  ev_end(s);
}

/* Anthropic Messages: message body and event stream (event: + data:). */
static void anthropic_response(buf_t *b) {
  put(b, "{\"id\":\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\","
         "\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\",\"text\":");
  jstr(b, answer_text);
  putf(b, "},{\"type\":\"tool_use\",\"id\":\"toolu_01Zm9vYmF6\",\"name\":\"" TOOL_NAME
          "\",\"input\":%s}],\"stop_reason\":\"tool_use\",\"stop_sequence\":null,\"usage\":{"
          "\"input_tokens\":%d,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,"
          "\"output_tokens\":%d,\"service_tier\":\"standard\"}}",
       TOOL_ARGS, PROMPT_TOKENS, COMPLETION_TOKENS);
}

static void anthropic_stream(wire_stream *s) {
  buf_t *b = &s->bytes;
  putf(b, "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":"
          "\"msg_01XFDUDYJgAACzvnptvVoYEL\",\"type\":\"message\",\"role\":\"assistant\",\"model\":"
          "\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":"
          "null,\"usage\":{\"input_tokens\":%d,\"cache_creation_input_tokens\":0,"
          "\"cache_read_input_tokens\":0,\"output_tokens\":1}}}\n\n", PROMPT_TOKENS);
  ev_end(s);
  put(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
         "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
  ev_end(s);
  put(b, "event: ping\ndata: {\"type\": \"ping\"}\n\n");
  ev_end(s);
  for (int i = 0; i < N_TEXT; i++) {
    put(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
           "\"delta\":{\"type\":\"text_delta\",\"text\":");
    jstr(b, deltas[i]);
    put(b, "}}\n\n");
    ev_end(s);
  }
  put(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n");
  ev_end(s);
  put(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,"
         "\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01Zm9vYmF6\",\"name\":\""
         TOOL_NAME "\",\"input\":{}}}\n\n");
  ev_end(s);
  for (int i = 0; i < N_ARGS; i++) {
    put(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,"
           "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":");
    jstr(b, arg_pieces[i]);
    put(b, "}}\n\n");
    ev_end(s);
  }
  put(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n");
  ev_end(s);
  putf(b, "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":"
          "\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":%d}}\n\n",
       COMPLETION_TOKENS);
  ev_end(s);
  put(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n");
  ev_end(s);
}

/* Gemini: GenerateContentResponse and :streamGenerateContent?alt=sse (CRLF framing, as
 * Google sends it). Function calls arrive whole, in the last event. */
static void gemini_usage(buf_t *b, int completion) {
  putf(b, "\"usageMetadata\":{\"promptTokenCount\":%d,\"candidatesTokenCount\":%d,"
          "\"totalTokenCount\":%d,\"promptTokensDetails\":[{\"modality\":\"TEXT\","
          "\"tokenCount\":%d}]},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":"
          "\"mK1aZ8X2Eo7c-8YP0t3NoQk\"}",
       PROMPT_TOKENS, completion, PROMPT_TOKENS + completion, PROMPT_TOKENS);
}

static void gemini_response(buf_t *b) {
  put(b, "{\"candidates\":[{\"content\":{\"parts\":[{\"text\":");
  jstr(b, answer_text);
  putf(b, "},{\"functionCall\":{\"name\":\"" TOOL_NAME "\",\"args\":%s}}],\"role\":\"model\"},"
          "\"finishReason\":\"STOP\",\"avgLogprobs\":-0.1187,\"index\":0}],", TOOL_ARGS);
  gemini_usage(b, COMPLETION_TOKENS);
}

static void gemini_stream(wire_stream *s) {
  buf_t *b = &s->bytes;
  for (int i = 0; i < N_TEXT; i++) {
    put(b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":");
    jstr(b, deltas[i]);
    put(b, "}],\"role\":\"model\"},\"index\":0}],");
    gemini_usage(b, 1 + i);
    put(b, "\r\n\r\n");
    ev_end(s);
  }
  putf(b, "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\""
          TOOL_NAME "\",\"args\":%s}}],\"role\":\"model\"},\"finishReason\":\"STOP\","
          "\"index\":0}],", TOOL_ARGS);
  gemini_usage(b, COMPLETION_TOKENS);
  put(b, "\r\n\r\n");
  ev_end(s);
}


/* Azure OpenAI: OpenAI bodies plus content-filter annotations; the stream opens with a
 * prompt_filter_results chunk with empty choices. */
#define AZ_FILTER "\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}," \
  "\"self_harm\":{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false," \
  "\"severity\":\"safe\"},\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}"
#define AZ_CHUNK "data: {\"id\":\"chatcmpl-B9Mvq1QJxE\",\"object\":\"chat.completion.chunk\"," \
  "\"created\":1735000000,\"model\":\"gpt-4o-2024-08-06\",\"system_fingerprint\":\"fp_50cad350e4\","

static void azure_response(buf_t *b) {
  put(b, "{\"id\":\"chatcmpl-B9Mvq1QJxE\",\"object\":\"chat.completion\",\"created\":1735000000,"
         "\"model\":\"gpt-4o-2024-08-06\",\"prompt_filter_results\":[{\"prompt_index\":0," AZ_FILTER
         "}],\"choices\":[{\"index\":0," AZ_FILTER ",\"message\":{\"role\":\"assistant\",\"content\":");
  jstr(b, answer_text);
  put(b, ",\"tool_calls\":[{\"id\":\"call_Zm9vYmF6\",\"type\":\"function\",\"function\":{\"name\":\""
         TOOL_NAME "\",\"arguments\":");
  jstr(b, TOOL_ARGS);
  putf(b, "}}],\"refusal\":null},\"logprobs\":null,\"finish_reason\":\"tool_calls\"}],\"usage\":{"
          "\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d},"
          "\"system_fingerprint\":\"fp_50cad350e4\"}",
       PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS);
}

static void azure_stream(wire_stream *s) {
  buf_t *b = &s->bytes;
  put(b, "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\","
         "\"prompt_filter_results\":[{\"prompt_index\":0," AZ_FILTER "}]}\n\n");
  ev_end(s);
  put(b, AZ_CHUNK "\"choices\":[{\"index\":0,\"content_filter_results\":{},\"delta\":{\"role\":"
                  "\"assistant\",\"content\":\"\"},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
  ev_end(s);
  for (int i = 0; i < N_TEXT; i++) {
    put(b, AZ_CHUNK "\"choices\":[{\"index\":0," AZ_FILTER ",\"delta\":{\"content\":");
    jstr(b, deltas[i]);
    put(b, "},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    ev_end(s);
  }
  put(b, AZ_CHUNK "\"choices\":[{\"index\":0,\"content_filter_results\":{},\"delta\":{\"tool_calls\":"
                  "[{\"index\":0,\"id\":\"call_Zm9vYmF6\",\"type\":\"function\",\"function\":{\"name\":\""
                  TOOL_NAME "\",\"arguments\":\"\"}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
  ev_end(s);
  for (int i = 0; i < N_ARGS; i++) {
    put(b, AZ_CHUNK "\"choices\":[{\"index\":0,\"content_filter_results\":{},\"delta\":{\"tool_calls\":"
                    "[{\"index\":0,\"function\":{\"arguments\":");
    jstr(b, arg_pieces[i]);
    put(b, "}}]},\"logprobs\":null,\"finish_reason\":null}]}\n\n");
    ev_end(s);
  }
  put(b, AZ_CHUNK "\"choices\":[{\"index\":0,\"content_filter_results\":{},\"delta\":{},"
                  "\"logprobs\":null,\"finish_reason\":\"tool_calls\"}]}\n\n");
  ev_end(s);
  putf(b, AZ_CHUNK "\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,"
                   "\"total_tokens\":%d}}\n\n",
       PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS);
  ev_end(s);
  put(b, "data: [DONE]\n\n");
  ev_end(s);
}

/* Ollama native /api/chat: one JSON object per line (NDJSON); tool calls arrive whole. */
#define OL_LINE "{\"model\":\"llama3.2\",\"created_at\":\"2025-01-01T10:00:00.123456789Z\","

static void ollama_response(buf_t *b) {
  put(b, OL_LINE "\"message\":{\"role\":\"assistant\",\"content\":");
  jstr(b, answer_text);
  putf(b, ",\"tool_calls\":[{\"function\":{\"name\":\"" TOOL_NAME "\",\"arguments\":%s}}]},"
          "\"done_reason\":\"stop\",\"done\":true,\"total_duration\":4912000000,\"load_duration\":"
          "21000000,\"prompt_eval_count\":%d,\"prompt_eval_duration\":130000000,\"eval_count\":%d,"
          "\"eval_duration\":4700000000}",
       TOOL_ARGS, PROMPT_TOKENS, COMPLETION_TOKENS);
}

static void ollama_stream(wire_stream *s) {
  buf_t *b = &s->bytes;
  for (int i = 0; i < N_TEXT; i++) {
    put(b, OL_LINE "\"message\":{\"role\":\"assistant\",\"content\":");
    jstr(b, deltas[i]);
    put(b, "},\"done\":false}\n");
    ev_end(s);
  }
  putf(b, OL_LINE "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[{\"function\":"
                  "{\"name\":\"" TOOL_NAME "\",\"arguments\":%s}}]},\"done\":false}\n", TOOL_ARGS);
  ev_end(s);
  putf(b, OL_LINE "\"message\":{\"role\":\"assistant\",\"content\":\"\"},\"done_reason\":\"stop\","
                  "\"done\":true,\"total_duration\":4912000000,\"load_duration\":21000000,"
                  "\"prompt_eval_count\":%d,\"prompt_eval_duration\":130000000,\"eval_count\":%d,"
                  "\"eval_duration\":4700000000}\n",
       PROMPT_TOKENS, COMPLETION_TOKENS);
  ev_end(s);
}

/* AWS Bedrock Converse: JSON response; ConverseStream as binary eventstream frames, each
 * payload with AWS's random-length "p" padding field. */
static void bedrock_response(buf_t *b) {
  put(b, "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[{\"text\":");
  jstr(b, answer_text);
  putf(b, "},{\"toolUse\":{\"toolUseId\":\"tooluse_kZ2Qm9vYmF6\",\"name\":\"" TOOL_NAME
          "\",\"input\":%s}}]}},\"stopReason\":\"tool_use\",\"usage\":{\"inputTokens\":%d,"
          "\"outputTokens\":%d,\"totalTokens\":%d},\"metrics\":{\"latencyMs\":4812}}",
       TOOL_ARGS, PROMPT_TOKENS, COMPLETION_TOKENS, PROMPT_TOKENS + COMPLETION_TOKENS);
}

/* CRC32/IEEE (zlib's), bitwise: only used to build the input once. */
static uint32_t es_crc32(uint32_t crc, const void *p, size_t n) {
  const unsigned char *c = p;
  crc = ~crc;
  while (n--) {
    crc ^= *c++;
    for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
  }
  return ~crc;
}

static void es_u32(buf_t *b, uint32_t v) {
  unsigned char x[4] = {(unsigned char)(v >> 24), (unsigned char)(v >> 16), (unsigned char)(v >> 8),
                        (unsigned char)v};
  if (buf_append(b, x, 4)) die("out of memory");
}

static void es_str_header(buf_t *h, const char *name, const char *val) {
  unsigned char nl = (unsigned char)strlen(name);
  size_t vl = strlen(val);
  unsigned char tl[3] = {7, (unsigned char)(vl >> 8), (unsigned char)vl};
  if (buf_append(h, &nl, 1) || buf_append(h, name, nl) || buf_append(h, tl, 3) ||
      buf_append(h, val, vl))
    die("out of memory");
}

/* One event frame; payload_json is an object without its closing brace (the padding is
 * appended). */
static void es_frame_out(wire_stream *s, const char *event_type, const buf_t *payload_open) {
  buf_t h = {0}, p = {0};
  es_str_header(&h, ":event-type", event_type);
  es_str_header(&h, ":content-type", "application/json");
  es_str_header(&h, ":message-type", "event");
  if (buf_append(&p, payload_open->data, payload_open->len)) die("out of memory");
  static const char pad[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0";
  putf(&p, ",\"p\":\"%.*s\"}", (int)(1 + rng() % (sizeof pad - 2)), pad);
  buf_t *b = &s->bytes;
  size_t start = b->len;
  es_u32(b, (uint32_t)(16 + h.len + p.len));
  es_u32(b, (uint32_t)h.len);
  es_u32(b, es_crc32(0, b->data + start, 8));
  if (buf_append(b, h.data, h.len) || buf_append(b, p.data, p.len)) die("out of memory");
  es_u32(b, es_crc32(0, b->data + start, b->len - start));
  buf_free(&h);
  buf_free(&p);
  ev_end(s);
}

static void bedrock_stream(wire_stream *s) {
  buf_t p = {0};
#define BR_EV(type, ...) do { buf_reset(&p); putf(&p, __VA_ARGS__); es_frame_out(s, type, &p); } while (0)
  BR_EV("messageStart", "{\"role\":\"assistant\"");
  for (int i = 0; i < N_TEXT; i++) {
    buf_reset(&p);
    put(&p, "{\"contentBlockIndex\":0,\"delta\":{\"text\":");
    jstr(&p, deltas[i]);
    put(&p, "}");
    es_frame_out(s, "contentBlockDelta", &p);
  }
  BR_EV("contentBlockStop", "{\"contentBlockIndex\":0");
  BR_EV("contentBlockStart", "{\"contentBlockIndex\":1,\"start\":{\"toolUse\":{\"toolUseId\":"
                             "\"tooluse_kZ2Qm9vYmF6\",\"name\":\"" TOOL_NAME "\"}}");
  for (int i = 0; i < N_ARGS; i++) {
    buf_reset(&p);
    put(&p, "{\"contentBlockIndex\":1,\"delta\":{\"toolUse\":{\"input\":");
    jstr(&p, arg_pieces[i]);
    put(&p, "}}");
    es_frame_out(s, "contentBlockDelta", &p);
  }
  BR_EV("contentBlockStop", "{\"contentBlockIndex\":1");
  BR_EV("messageStop", "{\"stopReason\":\"tool_use\"");
  BR_EV("metadata", "{\"usage\":{\"inputTokens\":%d,\"outputTokens\":%d,\"totalTokens\":%d},"
                    "\"metrics\":{\"latencyMs\":4812}", PROMPT_TOKENS, COMPLETION_TOKENS,
        PROMPT_TOKENS + COMPLETION_TOKENS);
#undef BR_EV
  buf_free(&p);
}

/* ---------------------------------------------------------------- rows */

typedef enum row_kind { ROW_PASS, ROW_ADAPTER, ROW_INGRESS } row_kind;

typedef struct row {
  const char *name;          /* table row label */
  row_kind kind;
  const provider_ops *ops;   /* ROW_ADAPTER only */
  prov_target target;        /* ROW_ADAPTER only */
  buf_t *req, *req16;        /* request bodies (canonical, or Anthropic for ingress) */
  buf_t resp;                /* upstream (or canonical, for ingress) response body */
  wire_stream stream;        /* upstream stream, event offsets */
  /* results: median ns per op, allocations per op */
  double req_ns, req16_ns, resp_ns, stream_ns;
  double req_al, req16_al, resp_al, stream_al;
} row;

static buf_t oai_req, oai_req16, oai_sreq;     /* canonical requests (2 KiB, 16 KiB, stream) */
static buf_t anth_req, anth_req16;             /* Anthropic ingress requests */

/* ---- passthrough ops (what attempt.c / stream.c do for an OpenAI deployment) */

static int pass_request(const buf_t *body) {
  req_info ri;
  buf_t up = {0};
  int rc = req_parse(body->data, body->len, &ri);
  if (rc == REQ_OK) rc = req_rewrite_model(&up, body->data, body->len, &ri, "gpt-4o-2024-08-06");
  buf_free(&up);
  return rc;
}

static int pass_response(const buf_t *body) {
  uint64_t pt, ct;
  if (!req_json_valid(body->data, body->len)) return -1;
  return sse_usage(body->data, body->len, &pt, &ct);
}

typedef struct pass_state {
  int first_event;        /* 1 valid, -1 not JSON */
  int saw_done;
  int have_usage;
  uint64_t events;
} pass_state;

static void pass_on_event(void *ud, const sse_event *ev) { /* stream.c's on_event */
  pass_state *p = ud;
  p->events++;
  if (sse_is_done(ev)) { p->saw_done = 1; return; }
  if (!p->first_event) p->first_event = req_json_valid(ev->data, ev->data_len) ? 1 : -1;
  uint64_t pt, ct;
  if (ev->data_len && sse_usage(ev->data, ev->data_len, &pt, &ct) == 0) p->have_usage = 1;
}

static int pass_stream(const wire_stream *s, pass_state *p) {
  sse_decoder d;
  sse_init(&d);
  memset(p, 0, sizeof *p);
  size_t at = 0;
  int rc = 0;
  for (size_t i = 0; i < s->n && rc == 0; i++) {
    rc = sse_feed(&d, s->bytes.data + at, s->ends[i] - at, pass_on_event, p);
    at = s->ends[i];
  }
  sse_free(&d);
  return rc;
}

/* ---- adapter ops */

static char errmsg[512];

static int adapter_request(const row *r, const buf_t *body, int stream) {
  prov_canon c = {.body = body->data, .len = body->len, .stream = stream, .include_usage = stream};
  prov_request out = {0};
  int rc = r->ops->build_request(&r->target, &c, &out, errmsg, sizeof errmsg);
  if (rc == 0 && (!out.body.len || !out.url.len)) rc = -EPROTO;
  prov_request_free(&out);
  return rc;
}

static int adapter_response(const row *r, buf_t *out) {
  prov_usage u = {0};
  buf_reset(out);
  int rc = r->ops->decode_response(r->resp.data, r->resp.len, "gpt-4o", out, &u);
  if (rc == 0 && !u.seen) rc = -EPROTO;
  return rc;
}

/* Feeds the stream one upstream event at a time, draining out after each feed (as
 * stream.c does). Returns the final rc; *outlen the canonical bytes produced. */
static int adapter_stream(const row *r, size_t *outlen, size_t *ndone) {
  prov_canon c = {.body = oai_sreq.data, .len = oai_sreq.len, .stream = 1, .include_usage = 1};
  prov_stream *ps = r->ops->stream_new(&c, "gpt-4o");
  if (!ps) die("%s: stream_new failed", r->name);
  buf_t out = {0};
  prov_usage u = {0};
  prov_error pe = PE_NONE;
  size_t at = 0, total = 0;
  int rc = PS_MORE;
  for (size_t i = 0; i < r->stream.n; i++) {
    buf_reset(&out);
    rc = r->ops->stream_feed(ps, r->stream.bytes.data + at, r->stream.ends[i] - at, &out, &u, &pe);
    at = r->stream.ends[i];
    total += out.len;
    if (rc < 0) break;
  }
  if (rc >= 0) {
    buf_reset(&out);
    rc = r->ops->stream_end(ps, &out, &u);
    total += out.len;
    if (ndone && out.len >= 14 && memcmp(out.data + out.len - 14, "data: [DONE]\n\n", 14) == 0)
      (*ndone)++;
  }
  r->ops->stream_free(ps);
  buf_free(&out);
  if (outlen) *outlen = total;
  if (rc == PS_DONE && !u.seen) rc = -EPROTO;
  return rc;
}

/* ---- ingress ops */

static int ingress_request(const buf_t *body) {
  ai_req_info info;
  buf_t out = {0};
  int rc = ai_request_to_openai(body->data, body->len, &out, &info, errmsg, sizeof errmsg);
  buf_free(&out);
  return rc;
}

static int ingress_stream(const row *r, size_t *outlen) {
  ai_stream *s = ai_stream_new("claude-sonnet-4-5");
  if (!s) die("ai_stream_new failed");
  buf_t out = {0};
  size_t at = 0, total = 0;
  int rc = AI_MORE;
  for (size_t i = 0; i < r->stream.n && rc == AI_MORE; i++) {
    buf_reset(&out);
    rc = ai_stream_feed(s, r->stream.bytes.data + at, r->stream.ends[i] - at, &out);
    at = r->stream.ends[i];
    total += out.len;
  }
  buf_reset(&out);
  int end = ai_stream_end(s, &out);
  total += out.len;
  ai_stream_free(s);
  buf_free(&out);
  if (outlen) *outlen = total;
  return rc == AI_DONE ? end : (rc < 0 ? rc : AI_GARBAGE);
}

/* ---------------------------------------------------------------- one measured op */

typedef enum op_kind { OP_REQ, OP_REQ16, OP_RESP, OP_STREAM } op_kind;

static buf_t scratch; /* decode_response output, reused (the worker's response buffer) */

static int run_op(const row *r, op_kind k) {
  switch (r->kind) {
    case ROW_PASS: {
      pass_state p;
      switch (k) {
        case OP_REQ: return pass_request(r->req);
        case OP_REQ16: return pass_request(r->req16);
        case OP_RESP: return pass_response(&r->resp);
        case OP_STREAM: return pass_stream(&r->stream, &p);
      }
      break;
    }
    case ROW_ADAPTER:
      switch (k) {
        case OP_REQ: return adapter_request(r, r->req, 0);
        case OP_REQ16: return adapter_request(r, r->req16, 0);
        case OP_RESP: return adapter_response(r, &scratch);
        case OP_STREAM: return adapter_stream(r, NULL, NULL) == PS_DONE ? 0 : -1;
      }
      break;
    case ROW_INGRESS:
      switch (k) {
        case OP_REQ: return ingress_request(r->req);
        case OP_REQ16: return ingress_request(r->req16);
        case OP_RESP: {
          buf_reset(&scratch);
          int rc = ai_response_from_openai(r->resp.data, r->resp.len, "claude-sonnet-4-5", &scratch);
          return rc < 0 ? rc : 0;
        }
        case OP_STREAM: return ingress_stream(r, NULL) == AI_DONE ? 0 : -1;
      }
      break;
  }
  return -1;
}

/* ---------------------------------------------------------------- validation */

static void check(int ok, const row *r, const char *what, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static void check(int ok, const row *r, const char *what, const char *fmt, ...) {
  if (ok) return;
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  die("%s: %s input does not translate cleanly: %s — refusing to time an error path", r->name,
      what, msg);
}

/* Every input must take the success path, produce output, and end the stream properly. */
static void validate(row *r) {
  int rc;
  switch (r->kind) {
    case ROW_PASS: {
      req_info ri;
      rc = req_parse(r->req->data, r->req->len, &ri);
      check(rc == REQ_OK, r, "request", "req_parse: %s", req_strerror(rc));
      rc = req_parse(r->req16->data, r->req16->len, &ri);
      check(rc == REQ_OK, r, "16 KiB request", "req_parse: %s", req_strerror(rc));
      check(pass_response(&r->resp) == 0, r, "response", "not valid JSON or no usage");
      pass_state p;
      rc = pass_stream(&r->stream, &p);
      check(rc == 0 && p.first_event == 1 && p.saw_done && p.have_usage &&
                p.events == r->stream.n,
            r, "stream", "rc %d, first event %d, [DONE] %d, usage %d, events %llu of %zu", rc,
            p.first_event, p.saw_done, p.have_usage, (unsigned long long)p.events, r->stream.n);
      break;
    }
    case ROW_ADAPTER: {
      rc = adapter_request(r, r->req, 0);
      check(rc == 0, r, "request", "build_request rc %d: %s", rc, errmsg);
      rc = adapter_request(r, r->req16, 0);
      check(rc == 0, r, "16 KiB request", "build_request rc %d: %s", rc, errmsg);
      rc = adapter_request(r, &oai_sreq, 1);
      check(rc == 0, r, "stream request", "build_request rc %d: %s", rc, errmsg);
      rc = adapter_response(r, &scratch);
      check(rc == 0, r, "response", "decode_response rc %d", rc);
      check(req_json_valid(scratch.data, scratch.len) &&
                memmem(scratch.data, scratch.len, "\"tool_calls\"", 12) &&
                scratch.len > strlen(answer_text),
            r, "response", "canonical output is not a chat.completion with text and tool calls");
      size_t outlen = 0, ndone = 0;
      rc = adapter_stream(r, &outlen, &ndone);
      check(rc == PS_DONE, r, "stream", "stream rc %d (want PS_DONE with usage)", rc);
      check(outlen > strlen(answer_text) + (size_t)N_TEXT * 40, r, "stream",
            "only %zu canonical bytes out", outlen);
      break;
    }
    case ROW_INGRESS: {
      rc = ingress_request(r->req);
      check(rc == 0, r, "request", "ai_request_to_openai rc %d: %s", rc, errmsg);
      rc = ingress_request(r->req16);
      check(rc == 0, r, "16 KiB request", "ai_request_to_openai rc %d: %s", rc, errmsg);
      buf_reset(&scratch);
      rc = ai_response_from_openai(r->resp.data, r->resp.len, "claude-sonnet-4-5", &scratch);
      check(rc == 0 && memmem(scratch.data, scratch.len, "\"tool_use\"", 10), r, "response",
            "ai_response_from_openai rc %d", rc);
      size_t outlen = 0;
      rc = ingress_stream(r, &outlen);
      check(rc == AI_DONE, r, "stream", "ai_stream rc %d (want AI_DONE)", rc);
      check(outlen > strlen(answer_text) + (size_t)N_TEXT * 40, r, "stream",
            "only %zu Anthropic bytes out", outlen);
      break;
    }
  }
}

/* ---------------------------------------------------------------- timing */

static double target_s = 0.3; /* seconds per repeat */
static const char *only;      /* --only: time just the rows whose name contains this */
#define REPEATS 5

static int cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

/* Median over REPEATS of the ns per op; *allocs = allocations per op. */
static double measure(const row *r, op_kind k, double *allocs) {
  uint64_t a0 = n_allocs;
  if (run_op(r, k) != 0) die("%s: op %d failed during timing", r->name, (int)k);
  *allocs = (double)(n_allocs - a0);
  /* calibrate: double the iterations until a batch takes 1/8 of the target */
  uint64_t iters = 1, t;
  for (;;) {
    t = now_ns();
    for (uint64_t i = 0; i < iters; i++) run_op(r, k);
    t = now_ns() - t;
    if (t >= (uint64_t)(target_s * 1e9 / 8)) break;
    iters *= 2;
  }
  iters = (uint64_t)((double)iters * target_s * 1e9 / (double)t);
  if (iters < 1) iters = 1;
  double v[REPEATS];
  for (int rep = 0; rep < REPEATS; rep++) {
    t = now_ns();
    for (uint64_t i = 0; i < iters; i++) run_op(r, k);
    v[rep] = (double)(now_ns() - t) / (double)iters;
  }
  qsort(v, REPEATS, sizeof v[0], cmp_double);
  return v[REPEATS / 2];
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f) {
  fputs("usage: bench-translate [--quick] [--seconds S] [--only NAME]\n"
        "  Measures request/response/stream translation cost per provider adapter and the\n"
        "  Anthropic ingress against the OpenAI passthrough; prints a markdown table.\n"
        "  --quick      ~0.04 s per measurement instead of ~0.3 s\n"
        "  --seconds S  seconds per measurement repeat (5 repeats, median reported)\n"
        "  --only NAME  time only the rows whose name contains NAME (for perf); the\n"
        "               passthrough row is always kept (the ratios need it)\n"
        "  Run pinned to one core: taskset -c 0 bench-translate (bench/translate.sh does).\n",
        f);
}

static void fmt_num(char *o, size_t n, double v, int dec) { snprintf(o, n, "%.*f", dec, v); }

int main(int argc, char **argv) {
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--quick")) target_s = 0.04;
    else if (!strcmp(argv[i], "--seconds") && i + 1 < argc) target_s = atof(argv[++i]);
    else if (!strcmp(argv[i], "--only") && i + 1 < argc) only = argv[++i];
    else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) { usage(stdout); return 0; }
    else { usage(stderr); return 2; }
  }
  if (!(target_s > 0.001 && target_s < 60)) die("--seconds out of range");

  make_script();
  sized_request(&oai_req, openai_request, 2048, 0, 0);
  sized_request(&oai_req16, openai_request, 16384, 6, 0);
  sized_request(&oai_sreq, openai_request, 2048, 0, 1);
  sized_request(&anth_req, anthropic_request, 2048, 0, 0);
  sized_request(&anth_req16, anthropic_request, 16384, 6, 0);

  /* Adapters that are registered in this tree; rows for others are skipped. */
  static const struct {
    const char *name;
    prov_target t;
    void (*resp)(buf_t *);
    void (*stream)(wire_stream *);
  } adapters[] = {
      {"anthropic", {.api_base = "https://api.anthropic.com/v1", .api_key = "sk-ant-bench",
                     .upstream_model = "claude-sonnet-4-5-20250929", .api_version = ""},
       anthropic_response, anthropic_stream},
      {"gemini", {.api_base = "", .api_key = "AIza-bench", .upstream_model = "gemini-2.5-flash",
                  .api_version = ""},
       gemini_response, gemini_stream},
      {"azure", {.api_base = "https://bench.openai.azure.com", .api_key = "az-bench-key",
                 .upstream_model = "gpt-4o-prod", .api_version = "2024-10-21"},
       azure_response, azure_stream},
      {"ollama", {.api_base = "http://127.0.0.1:11434", .api_key = "",
                  .upstream_model = "llama3.2", .api_version = ""},
       ollama_response, ollama_stream},
      /* SigV4-signed (IAM keys): the signature (SHA-256 of the body + 4 HMACs) is part of
       * the request cost, as in production. */
      {"bedrock", {.api_base = "", .api_key = "", .upstream_model =
                   "anthropic.claude-3-5-sonnet-20241022-v2:0", .api_version = "",
                   .aws_access_key_id = "AKIAIOSFODNN7EXAMPLE",
                   .aws_secret_access_key = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
                   .aws_session_token = "", .aws_region = "us-east-1"},
       bedrock_response, bedrock_stream},
  };
  row rows[16];
  size_t nrows = 0;
  rows[nrows++] = (row){.name = "passthrough (openai)", .kind = ROW_PASS, .req = &oai_req,
                        .req16 = &oai_req16};
  openai_response(&rows[0].resp);
  openai_stream(&rows[0].stream);
  for (size_t i = 0; i < ARRAY_SIZE(adapters); i++) {
    const provider_ops *ops = provider_find(adapters[i].name);
    if (!ops) { fprintf(stderr, "bench-translate: no %s adapter in this tree, skipped\n", adapters[i].name); continue; }
    row *r = &rows[nrows++];
    *r = (row){.name = adapters[i].name, .kind = ROW_ADAPTER, .ops = ops,
               .target = adapters[i].t, .req = &oai_req, .req16 = &oai_req16};
    adapters[i].resp(&r->resp);
    adapters[i].stream(&r->stream);
  }
  row *ing = &rows[nrows++];
  *ing = (row){.name = "anthropic-ingress", .kind = ROW_INGRESS, .req = &anth_req,
               .req16 = &anth_req16};
  openai_response(&ing->resp);
  openai_stream(&ing->stream);

  if (only) { /* keep the passthrough (row 0) and the matching rows */
    size_t k = 1;
    for (size_t i = 1; i < nrows; i++)
      if (strstr(rows[i].name, only)) rows[k++] = rows[i];
    nrows = k;
  }
  for (size_t i = 0; i < nrows; i++) validate(&rows[i]);
  fprintf(stderr, "bench-translate: inputs validated (%zu rows); timing %.2f s × %d repeats "
                  "per cell\n", nrows, target_s, REPEATS);

  for (size_t i = 0; i < nrows; i++) {
    row *r = &rows[i];
    fprintf(stderr, "  %s\n", r->name);
    r->req_ns = measure(r, OP_REQ, &r->req_al);
    r->req16_ns = measure(r, OP_REQ16, &r->req16_al);
    r->resp_ns = measure(r, OP_RESP, &r->resp_al);
    r->stream_ns = measure(r, OP_STREAM, &r->stream_al);
  }

  /* ---- report */
  const row *p = &rows[0];
  printf("| path | request µs | 16 KiB request µs | response µs | per stream chunk ns | "
         "allocs/request | allocs/response | allocs/chunk | × passthrough (req / 16 KiB / resp / chunk) |\n");
  printf("|---|--:|--:|--:|--:|--:|--:|--:|--:|\n");
  for (size_t i = 0; i < nrows; i++) {
    const row *r = &rows[i];
    double chunk = r->stream_ns / (double)r->stream.n;
    char a[4][32];
    if (HAVE_ALLOC_COUNT) {
      fmt_num(a[0], sizeof a[0], r->req_al, 0);
      fmt_num(a[1], sizeof a[1], r->resp_al, 0);
      fmt_num(a[2], sizeof a[2], r->stream_al / (double)r->stream.n, 1);
    } else {
      strcpy(a[0], "n/a"); strcpy(a[1], "n/a"); strcpy(a[2], "n/a");
    }
    if (i == 0) strcpy(a[3], "1 / 1 / 1 / 1");
    else
      snprintf(a[3], sizeof a[3], "%.0f / %.0f / %.0f / %.0f", r->req_ns / p->req_ns,
               r->req16_ns / p->req16_ns, r->resp_ns / p->resp_ns,
               chunk / (p->stream_ns / (double)p->stream.n));
    printf("| %s | %.2f | %.2f | %.2f | %.0f | %s | %s | %s | %s |\n", r->name, r->req_ns / 1e3,
           r->req16_ns / 1e3, r->resp_ns / 1e3, chunk, a[0], a[1], a[2], a[3]);
  }
  printf("\nInputs: request %zu B (16 KiB: %zu B; Anthropic ingress: %zu / %zu B); response "
         "bytes and stream events per path:",
         oai_req.len, oai_req16.len, anth_req.len, anth_req16.len);
  for (size_t i = 0; i < nrows; i++)
    printf(" %s %zu B / %zu events (%zu B)%s", rows[i].name, rows[i].resp.len, rows[i].stream.n,
           rows[i].stream.bytes.len, i + 1 < nrows ? ";" : ".\n");
  printf("Raw medians (ns per op):");
  for (size_t i = 0; i < nrows; i++)
    printf(" %s req %.0f, req16 %.0f, resp %.0f, stream %.0f%s", rows[i].name, rows[i].req_ns,
           rows[i].req16_ns, rows[i].resp_ns, rows[i].stream_ns, i + 1 < nrows ? ";" : ".\n");

  for (size_t i = 0; i < nrows; i++) {
    buf_free(&rows[i].resp);
    buf_free(&rows[i].stream.bytes);
    free(rows[i].stream.ends);
  }
  buf_free(&scratch);
  return 0;
}
