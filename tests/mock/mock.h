/* mock.h — llmesh-mock-provider internals: one process answers the OpenAI, Anthropic,
 * Gemini and Ollama wire formats (chosen by request path) with one fault queue.
 *
 *   mock_provider.c   main, routing, control API (/mock/...), stats
 *   mock_faults.c     fault parsing, the FIFO queue and the default fault
 *   mock_call.c       the answer engine: delays, scripted errors, streams cut into
 *                     units (words, tool-call starts, argument fragments), cut/garbage
 *   mock_openai.c     POST /v1/chat/completions, /v1/embeddings
 *   mock_anthropic.c  POST /v1/messages
 *   mock_gemini.c     POST /v1beta/models/M:{generateContent,streamGenerateContent,
 *                     embedContent,batchEmbedContents}
 *   mock_ollama.c     POST /api/chat, /api/embed
 *   mock_azure.c      POST /openai/deployments/D/{chat/completions,embeddings}, /openai/v1/...
 *   mock_bedrock.c    POST /model/M/converse, /converse-stream (binary event stream)
 *   mock_vertex.c     POST /v1/projects/P/locations/L/publishers/{google,anthropic}/models/M:...,
 *                     POST /token (JWT-bearer grant), POST /mock/token
 *
 * A format supplies the bytes (error bodies, the whole body, stream events); the engine
 * decides when they are sent, so every fault works the same in every format. */
#ifndef LLMESH_MOCK_H
#define LLMESH_MOCK_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "http_server.h"

/* ---- types -------------------------------------------------------------------- */

typedef struct obuf {
  char *p;    /* bytes */
  size_t len; /* used */
  size_t cap; /* allocated */
} obuf;

/* One scripted tool call (fault field tool_calls[i]). */
typedef struct mock_tool {
  char *id_esc;    /* call id override, JSON-escaped; NULL = the format's default */
  char *name_esc;  /* function name, JSON-escaped */
  char *args;      /* arguments as JSON text (verbatim when scripted as a string) */
  size_t args_len; /* bytes in args */
  char *args_esc;  /* args JSON-escaped: OpenAI's string form */
  int nfrags;      /* stream fragments of args (formats that split them) */
} mock_tool;

typedef struct mock_fault {
  int refs;                /* queue/default + calls holding it */
  int status;              /* HTTP status; 0 = 200 */
  char *body;              /* raw body override (NULL = generated) */
  hs_header *headers;      /* extra response headers (owned strings) */
  int nheaders;            /* entries in headers */
  uint32_t delay_ms;       /* before the response headers, ms */
  uint32_t ttft_ms;        /* stream: headers → first chunk, ms */
  uint32_t chunk_delay_ms; /* stream: between chunks, ms */
  char *content;           /* reply text override (NULL = default) */
  int cut_after;           /* stream: content chunks before the cut; -1 = none */
  int error_after;         /* stream: content chunks before an in-band error event; -1 = none */
  int garbage;             /* 200 with a non-JSON body / non-JSON stream events */
  int hang;                /* never answer */
  double rate;             /* share of requests this fault hits, 0..1 (1 = all); the rest are healthy */
  int64_t seed;            /* reseed the mock's PRNG when posted; -1 = leave it */
  mock_tool *tools;        /* tool_calls: answer with these calls */
  int ntools;              /* entries in tools */
  struct mock_fault *next; /* queue link */
} mock_fault;

/* One piece of a streamed answer; each is one write and one "content chunk". */
enum mock_unit_kind {
  MU_TEXT,       /* a word of the content (with its trailing spaces) */
  MU_TOOL_START, /* a tool call begins (whole arguments when the format does not split them) */
  MU_TOOL_ARGS,  /* a fragment of a tool call's arguments */
};

typedef struct mock_unit {
  enum mock_unit_kind kind; /* what this is */
  const char *s;            /* word, fragment or whole arguments (not NUL-terminated) */
  size_t n;                 /* bytes in s */
  int tool;                 /* tool call index (MU_TOOL_*) */
  int final;                /* the last unit and the stream finishes normally */
} mock_unit;

/* Where a garbage event goes (mock_format.junk). */
enum mock_junk { MJ_BEGIN, MJ_UNIT, MJ_FINISH };

enum mock_phase { PH_HEADERS, PH_FIRST, PH_UNITS, PH_FINISH, PH_END /* raw body sent: terminate */ };

struct mock_call;

/* A wire format: how answers look. Hooks write into b (cleared by the caller). */
typedef struct mock_format {
  const char *name;         /* "openai" | "anthropic" | "gemini" | "ollama" */
  const char *stream_type;  /* Content-Type of streams */
  int args_fragments;       /* tool-call arguments streamed in several fragments */
  /* The credential the request presented, for /mock/stats (NULL = none). */
  const char *(*auth)(const hs_request *req, char *buf, size_t cap);
  /* Model named by the path (Gemini), else NULL. */
  const char *(*path_model)(const hs_request *req, char *buf, size_t cap);
  /* Headers this format adds to every answer (Anthropic's request-id); returns count. */
  int (*headers)(struct mock_call *call, hs_header *h);
  /* Answers a scripted error status (f->status outside 2xx); h/n: headers so far. */
  void (*error)(struct mock_call *call, const mock_fault *f, hs_header *h, int n);
  void (*begin)(struct mock_call *call, obuf *b);                       /* stream preamble */
  void (*unit)(struct mock_call *call, obuf *b, const mock_unit *u);    /* one unit */
  void (*finish)(struct mock_call *call, obuf *b);                      /* normal end */
  void (*stream_error)(struct mock_call *call, obuf *b);                /* in-band error event */
  void (*junk)(struct mock_call *call, obuf *b, enum mock_junk where, const char *s, size_t n);
} mock_format;

/* An endpoint of a format (chat, embeddings). */
typedef struct mock_endpoint {
  const mock_format *fmt; /* wire format */
  /* Checks credentials and the body, sets model_esc/stream/...; answers itself and
   * returns <0 when the request is refused. root may be NULL (empty/malformed body). */
  int (*accept)(struct mock_call *call, json_t *root);
  void (*whole)(struct mock_call *call, obuf *b); /* body of a 200 non-stream answer */
} mock_endpoint;

/* One request answered by the engine (possibly asynchronously). */
typedef struct mock_call {
  hs_request *req;          /* NULL once finished or aborted */
  uv_timer_t timer;         /* delays; freed in its close callback */
  const mock_endpoint *ep;  /* what is answered */
  mock_fault *f;            /* fault in effect (ref held), NULL = healthy */
  json_t *root;             /* request body (ref held), NULL if not JSON */
  enum mock_phase phase;    /* what runs next */
  int stream;               /* streamed answer */
  int include_usage;        /* OpenAI stream_options.include_usage */
  const char *stream_type;  /* Content-Type of the stream */
  int gemini_array;         /* Gemini stream without alt=sse: a JSON array */
  int events;               /* Gemini stream: JSON objects written */
  char *model_esc;          /* requested model, JSON-escaped */
  const char *content;      /* reply text */
  size_t pos;               /* next unsent byte of content */
  int tool;                 /* next tool call to stream */
  int tool_started;         /* its start unit was sent */
  size_t apos;              /* next unsent byte of its arguments */
  int open_block;           /* Anthropic stream: open content block index, -1 = none */
  int chunks;               /* units sent */
  int words;                /* completion tokens: content words + argument fragments */
  int prompt_tokens;        /* max(1, body_len / 4) */
  int paused;               /* waiting for on_drain */
  uint64_t seq;             /* request number (ids) */
  long created;             /* unix seconds */
  char request_id[48];      /* Anthropic request-id, Bedrock x-amzn-RequestId */
  int azure;                /* OpenAI answer in Azure's shape (content_filter_results) */
} mock_call;

/* A string in mock_last.arena. */
typedef struct mock_lstr {
  size_t off; /* offset in arena */
  size_t len; /* bytes */
  int set;    /* 0 = JSON null */
} mock_lstr;

/* The last provider request, copied raw (no allocation once warm); turned into JSON
 * only when /mock/stats asks, so recording it costs the benchmark path little. */
typedef struct mock_last {
  int set;                       /* a request was recorded */
  const mock_format *fmt;        /* its format */
  obuf arena;                    /* the bytes of the strings below */
  mock_lstr path, query, model;  /* request path, query, model (path or body) */
  mock_lstr authorization, auth; /* Authorization header; the format's credential */
  mock_lstr body;                /* raw body */
  int nheaders;                  /* entries in hname/hvalue */
  mock_lstr hname[HS_MAX_HEADERS], hvalue[HS_MAX_HEADERS]; /* request headers */
} mock_last;

extern struct mock {
  uv_loop_t *loop;             /* the loop */
  hs_server *srv;              /* HTTP server */
  const char *name;            /* --name */
  char *hello;                 /* default reply content */
  mock_fault *qhead, *qtail;   /* scripted faults, FIFO */
  int queued;                  /* entries in the queue */
  mock_fault *deflt;           /* used when the queue is empty; NULL = healthy */
  uint64_t requests;           /* provider requests received */
  uint64_t completed;          /* responses fully sent */
  uint64_t cancelled;          /* requests whose client left first */
  uint64_t in_flight;          /* requests not finished */
  uint64_t seq;                /* ids */
  mock_last last;              /* last provider request */
  obuf out;                    /* response scratch */
  obuf esc;                    /* escaping scratch */
  uv_signal_t sigterm, sigint; /* clean exit */
  int stopping;                /* signal received */
  const char *aws_secret;      /* --aws-secret: verify SigV4 signatures; NULL = shape only */
  uint64_t tokens_issued;      /* Vertex access tokens issued since the last reset */
  uint64_t seed;               /* --seed: PRNG seed, restored by /mock/reset (default 1) */
  uint64_t rng;                /* PRNG state (splitmix64) drawn by faults with a rate */
} M;

extern const mock_format mock_openai, mock_anthropic, mock_gemini, mock_ollama;
extern const mock_endpoint mock_openai_chat, mock_openai_embed, mock_anthropic_messages,
    mock_gemini_generate, mock_gemini_stream, mock_gemini_embed, mock_gemini_batch_embed,
    mock_ollama_chat, mock_ollama_embed;

/* ---- mock_call.c -------------------------------------------------------------- */

void ob_reserve(obuf *b, size_t extra);
__attribute__((format(printf, 2, 3))) void ob_printf(obuf *b, const char *fmt, ...);
void ob_add(obuf *b, const char *s, size_t n);
char *esc_dup(const char *s, size_t n);      /* JSON-escaped copy */
const char *esc_tmp(const char *s, size_t n); /* JSON-escaped into scratch; until next call */

/* Runs a provider request through ep: stats, fault, accept, answer. */
void call_handle(hs_request *req, const mock_endpoint *ep);
void call_on_abort(hs_request *req);
json_t *last_request_json(void); /* /mock/stats last_request (new reference) */
void call_on_drain(hs_request *req);
void log_request(hs_request *req, int status, const char *note);
/* Appends defaults unless the fault scripts a header of the same name, then the
 * fault's headers; returns the new count (h holds 64). */
int headers_merge(hs_header *h, int n, const hs_header *defaults, size_t nd, const mock_fault *f);
/* Deterministic unit vector of dims floats from text (embeddings). */
void embed_vector(const char *s, size_t n, int dims, float *out);
void ob_vector(obuf *b, const float *v, int dims); /* "[f,f,...]" */
int json_dims(json_t *v, int dflt); /* dimensions field: 1..4096, else dflt */
/* Value of query parameter name (not decoded) into buf; NULL if absent. */
const char *query_get(const char *query, const char *name, char *buf, size_t cap);
int bearer_ok(const char *auth);

/* ---- mock_faults.c ------------------------------------------------------------ */

mock_fault *fault_parse(json_t *o, const char **err); /* NULL and *err when malformed */
void fault_unref(mock_fault *f);
mock_fault *fault_next(void); /* next fault (a reference the caller owns); NULL = healthy */
void queue_clear(void);
void fault_posted(const mock_fault *f); /* a fault was queued/set: applies its seed */
size_t fault_args_frag(const mock_tool *t, size_t pos); /* next argument fragment's length */

/* ---- mock_openai.c ------------------------------------------------------------ */

/* Gemini endpoint for a /v1beta/models/M:method path, NULL if none. */
const mock_endpoint *gemini_route(const char *path);

void openai_error(hs_request *req, int status, const char *type, const char *code, const char *msg,
                  const hs_header *extra, int nextra);
/* Chat request fields (stream, include_usage) with model m[0..n) as the answer's model. */
void openai_chat_setup(mock_call *call, json_t *root, const char *m, size_t n);
int openai_embed_input_ok(json_t *in);

/* ---- mock_gemini.c / mock_anthropic.c (reused by Vertex) ----------------------- */

/* google.rpc.Status refusal (answers; returns -1). details: JSON array members or "". */
int gemini_refuse(mock_call *call, int status, const char *msg, const char *details);
/* generateContent body checks without the key check; stream: streamGenerateContent. */
int gemini_generate_check(mock_call *call, json_t *root, int stream);
/* Anthropic error answer (answers; returns -1); sets request_id first. */
int anthropic_refuse(mock_call *call, int status, const char *type, const char *msg);

/* ---- mock_azure.c / mock_bedrock.c / mock_vertex.c ----------------------------- */

const mock_endpoint *azure_route(const char *path);
const mock_endpoint *bedrock_route(const char *path);
const mock_endpoint *vertex_route(const char *path);
void vertex_init(void);                   /* builds the Vertex formats from Gemini's/Anthropic's */
void vertex_token(hs_request *req);       /* POST /token */
void vertex_token_control(hs_request *req); /* POST /mock/token */
void vertex_reset(void);                  /* /mock/reset: token control back to defaults */
void vertex_free(void);                   /* at exit */

#endif
