/* mock_provider.c — llmesh-mock-provider: an OpenAI-compatible provider with fault
 * scripting, the upstream of the integration tests and the benchmark.
 *
 *   llmesh-mock-provider --listen 127.0.0.1:9001 [--name NAME] [--log-level L]
 *
 * Chat requests take the next fault from a FIFO queue (POST /mock/faults), else the
 * default fault (POST /mock/default); GET /mock/stats counts what happened. The
 * healthy path answers synchronously with snprintf-built JSON: it must not be the
 * bottleneck of a benchmark. */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <uv.h>

#include "http_server.h"
#include "log.h"
#include "util.h"

/* ---- types -------------------------------------------------------------------- */

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
  int garbage;             /* 200 with a non-JSON body / non-JSON SSE events */
  int hang;                /* never answer */
  struct mock_fault *next; /* queue link */
} mock_fault;

enum call_phase { PH_HEADERS, PH_FIRST, PH_WORDS, PH_FINISH, PH_END /* raw body sent: terminate */ };

/* One chat request that is answered asynchronously (delays, hangs, slow streams). */
typedef struct mock_call {
  hs_request *req;       /* NULL once finished or aborted */
  uv_timer_t timer;      /* delays; freed in its close callback */
  mock_fault *f;         /* fault in effect (ref held), NULL = healthy */
  enum call_phase phase; /* what runs next */
  int stream;            /* "stream": true */
  int include_usage;     /* stream_options.include_usage */
  char *model_esc;       /* requested model, JSON-escaped */
  const char *content;   /* reply text */
  size_t pos;            /* next unsent byte of content */
  int chunks;            /* content chunks sent */
  int words;             /* completion tokens (chunks in content) */
  int prompt_tokens;     /* max(1, body_len / 4) */
  int paused;            /* waiting for on_drain */
  uint64_t seq;          /* request number: id chatcmpl-mock-<seq> */
  long created;          /* unix seconds */
} mock_call;

typedef struct obuf {
  char *p;    /* bytes */
  size_t len; /* used */
  size_t cap; /* allocated */
} obuf;

static struct mock {
  uv_loop_t *loop;          /* the loop */
  hs_server *srv;           /* HTTP server */
  const char *name;         /* --name */
  char *hello;              /* default reply content */
  mock_fault *qhead, *qtail; /* scripted faults, FIFO */
  int queued;               /* entries in the queue */
  mock_fault *deflt;        /* used when the queue is empty; NULL = healthy */
  uint64_t requests;        /* chat requests received */
  uint64_t completed;       /* responses fully sent */
  uint64_t cancelled;       /* chat requests whose client left first */
  uint64_t in_flight;       /* chat requests not finished */
  uint64_t seq;             /* ids */
  int have_last;            /* last_* are set */
  json_t *last;             /* last chat request: {path, model, authorization, body, headers} */
  obuf out;                 /* response scratch */
  obuf esc;                 /* escaping scratch */
  uv_signal_t sigterm, sigint; /* clean exit */
  int stopping;             /* signal received */
} M;

/* ---- output buffer ------------------------------------------------------------ */

static void ob_reserve(obuf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) abort(); /* a mock may die on OOM */
  b->p = p;
  b->cap = cap;
}

__attribute__((format(printf, 2, 3))) static void ob_printf(obuf *b, const char *fmt, ...) {
  for (;;) {
    ob_reserve(b, 256);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    ob_reserve(b, (size_t)n + 1);
  }
}

/* JSON-escapes s[0..n) into a fresh string. */
static char *esc_dup(const char *s, size_t n) {
  size_t cap = n * 6 + 1;
  char *o = malloc(cap);
  if (!o) abort();
  log_json_escape(o, cap, s, n);
  return o;
}

/* JSON-escapes into the shared scratch; valid until the next call. */
static const char *esc_tmp(const char *s, size_t n) {
  M.esc.len = 0;
  ob_reserve(&M.esc, n * 6 + 1);
  log_json_escape(M.esc.p, M.esc.cap, s, n);
  return M.esc.p;
}

/* ---- faults ------------------------------------------------------------------- */

static void fault_unref(mock_fault *f) {
  if (!f || --f->refs > 0) return;
  free(f->body);
  free(f->content);
  for (int i = 0; i < f->nheaders; i++) {
    free((char *)f->headers[i].name);
    free((char *)f->headers[i].value);
  }
  free(f->headers);
  free(f);
}

static int json_uint(json_t *v, uint32_t *out) {
  if (!v) return 0;
  if (!json_is_number(v) || json_number_value(v) < 0) return -1;
  *out = (uint32_t)json_number_value(v);
  return 0;
}

static int json_flag(json_t *v) { return v && (json_is_true(v) || (json_is_integer(v) && json_integer_value(v))); }

/* Parses fault F; NULL and *err set when malformed. */
static mock_fault *fault_parse(json_t *o, const char **err) {
  if (!json_is_object(o)) { *err = "a fault must be a JSON object"; return NULL; }
  mock_fault *f = calloc(1, sizeof *f);
  if (!f) abort();
  f->refs = 1;
  f->cut_after = -1;
  json_t *v;
  if ((v = json_object_get(o, "status"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 599) { *err = "status must be an HTTP status"; goto bad; }
    f->status = (int)json_integer_value(v);
  }
  if ((v = json_object_get(o, "body")) && !json_is_null(v)) {
    f->body = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT);
  }
  if ((v = json_object_get(o, "headers"))) {
    if (!json_is_object(v)) { *err = "headers must be an object"; goto bad; }
    f->headers = calloc(json_object_size(v) + 1, sizeof *f->headers);
    const char *k;
    json_t *hv;
    json_object_foreach(v, k, hv) {
      char *val = json_is_string(hv) ? strdup(json_string_value(hv)) : json_dumps(hv, JSON_ENCODE_ANY | JSON_COMPACT);
      f->headers[f->nheaders].name = strdup(k);
      f->headers[f->nheaders].value = val;
      f->nheaders++;
    }
  }
  if (json_uint(json_object_get(o, "delay_ms"), &f->delay_ms) ||
      json_uint(json_object_get(o, "ttft_ms"), &f->ttft_ms) ||
      json_uint(json_object_get(o, "chunk_delay_ms"), &f->chunk_delay_ms)) {
    *err = "delays must be non-negative numbers (ms)";
    goto bad;
  }
  if ((v = json_object_get(o, "content")) && !json_is_null(v)) {
    if (!json_is_string(v)) { *err = "content must be a string"; goto bad; }
    f->content = strdup(json_string_value(v));
  }
  if ((v = json_object_get(o, "cut_after")) && !json_is_null(v)) {
    uint32_t n;
    if (json_uint(v, &n)) { *err = "cut_after must be a non-negative integer"; goto bad; }
    f->cut_after = (int)n;
  }
  f->garbage = json_flag(json_object_get(o, "garbage"));
  f->hang = json_flag(json_object_get(o, "hang"));
  return f;
bad:
  fault_unref(f);
  return NULL;
}

static void queue_clear(void) {
  while (M.qhead) {
    mock_fault *f = M.qhead;
    M.qhead = f->next;
    fault_unref(f);
  }
  M.qtail = NULL;
  M.queued = 0;
}

/* Next fault for a chat request (a reference the caller owns), NULL = healthy. */
static mock_fault *fault_next(void) {
  mock_fault *f = M.qhead;
  if (f) {
    M.qhead = f->next;
    if (!M.qhead) M.qtail = NULL;
    M.queued--;
    f->next = NULL;
    return f;
  }
  if (M.deflt) M.deflt->refs++;
  return M.deflt;
}

/* ---- responses ---------------------------------------------------------------- */

static void respond_error(hs_request *req, int status, const char *type, const char *code,
                          const char *msg, const hs_header *extra, int nextra) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":", msg, type);
  if (code) ob_printf(&M.out, "\"%s\"}}", code);
  else ob_printf(&M.out, "null}}");
  hs_respond(req, status, "application/json", extra, nextra, M.out.p, M.out.len);
}

static void respond_json(hs_request *req, int status, const char *body) {
  hs_respond(req, status, "application/json", NULL, 0, body, strlen(body));
}

/* Provider-realistic error for a scripted status. */
static void respond_status(hs_request *req, const mock_fault *f) {
  hs_header h[64];
  int n = 0;
  if (f->status == 429) {
    static const hs_header rl[] = {
        {"retry-after", "1"},
        {"retry-after-ms", "1000"},
        {"x-ratelimit-limit-requests", "60"},
        {"x-ratelimit-remaining-requests", "0"},
        {"x-ratelimit-reset-requests", "1s"},
        {"x-ratelimit-limit-tokens", "30000"},
        {"x-ratelimit-remaining-tokens", "0"},
        {"x-ratelimit-reset-tokens", "1s"},
    };
    for (size_t i = 0; i < ARRAY_SIZE(rl); i++) {
      int dup = 0; /* a scripted header of the same name wins */
      for (int j = 0; j < f->nheaders; j++) dup |= strcasecmp(f->headers[j].name, rl[i].name) == 0;
      if (!dup) h[n++] = rl[i];
    }
  }
  for (int j = 0; j < f->nheaders && n < 64; j++) h[n++] = f->headers[j];
  if (f->body) {
    hs_respond(req, f->status, "application/json", h, n, f->body, strlen(f->body));
    return;
  }
  const char *type = "invalid_request_error", *code = NULL, *msg = "Mock provider error";
  switch (f->status) {
    case 400: code = "invalid_value"; msg = "Invalid request (scripted by the mock)"; break;
    case 401: code = "invalid_api_key"; msg = "Incorrect API key provided (scripted by the mock)"; break;
    case 403: type = "permission_error"; code = "unsupported_country_region_territory"; msg = "Forbidden (scripted by the mock)"; break;
    case 404: code = "model_not_found"; msg = "The model does not exist (scripted by the mock)"; break;
    case 408: type = "timeout"; code = "timeout"; msg = "Request timed out (scripted by the mock)"; break;
    case 429: type = "requests"; code = "rate_limit_exceeded"; msg = "Rate limit reached for requests (scripted by the mock). Please try again in 1s."; break;
    case 500: type = "server_error"; msg = "The server had an error while processing your request (scripted by the mock)"; break;
    case 502: type = "server_error"; msg = "Bad gateway (scripted by the mock)"; break;
    case 503: type = "server_error"; code = "overloaded"; msg = "The engine is currently overloaded, please try again later (scripted by the mock)"; break;
    case 504: type = "server_error"; code = "timeout"; msg = "Gateway timeout (scripted by the mock)"; break;
    default:
      if (f->status >= 500) type = "server_error";
      break;
  }
  respond_error(req, f->status, type, code, msg, h, n);
}

static void log_request(hs_request *req, int status, const char *note) {
  if (!log_enabled(LOG_LEVEL_INFO)) return;
  LOG_INFO(hs_header_get(req, "x-request-id"), "request", LF_S("method", req->method_str),
           LF_S("path", req->path), LF_I("status", status), LF_I("bytes_in", req->body_len),
           LF_F("ms", (double)(util_now_us() - req->start_us) / 1000.0), LF_S("fault", note));
}

/* Splits the next chunk: leading spaces (first chunk only), a word, its following spaces. */
static size_t next_word(const char *s, size_t pos) {
  size_t i = pos;
  if (pos == 0) while (s[i] == ' ') i++;
  while (s[i] && s[i] != ' ') i++;
  while (s[i] == ' ') i++;
  return i - pos;
}

static int count_words(const char *s) {
  int n = 0;
  for (size_t pos = 0, l; s[pos]; pos += l, n++) l = next_word(s, pos);
  return n;
}

/* ---- chat calls --------------------------------------------------------------- */

static void on_call_timer_close(uv_handle_t *h) {
  mock_call *call = h->data;
  fault_unref(call->f);
  free(call->model_esc);
  free(call);
}

/* Ends a call: counts it and releases it (the request is no longer touched). */
static void call_end(mock_call *call, int outcome /* 0 completed, 1 cancelled, 2 cut */) {
  if (outcome == 0) M.completed++;
  else if (outcome == 1) M.cancelled++;
  M.in_flight--;
  if (call->req) call->req->user = NULL;
  call->req = NULL;
  uv_timer_stop(&call->timer);
  uv_close((uv_handle_t *)&call->timer, on_call_timer_close);
}

static void call_step(mock_call *call);

static void on_call_timer(uv_timer_t *t) { call_step(t->data); }

/* Waits ms before the next step; 0 = go on now. Returns 1 when waiting. */
static int call_wait(mock_call *call, uint32_t ms) {
  if (!ms) return 0;
  uv_timer_start(&call->timer, on_call_timer, ms, 0);
  return 1;
}

static void chunk_prefix(obuf *b, mock_call *call) {
  ob_printf(b, "data: {\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion.chunk\",\"created\":%ld,"
               "\"model\":\"%s\",",
            (unsigned long long)call->seq, call->created, call->model_esc);
}

/* Writes one event; returns 0 to go on, 1 when stopped (paused, gone). */
static int call_emit(mock_call *call) {
  int r = hs_stream_write(call->req, M.out.p, M.out.len);
  if (r < 0) return 1; /* client gone: on_abort follows */
  if (r == 1) {
    call->paused = 1;
    return 1;
  }
  return 0;
}

static void call_finish_stream(mock_call *call) {
  hs_request *req = call->req;
  const mock_fault *f = call->f;
  if (f && f->garbage) {
    M.out.len = 0;
    ob_printf(&M.out, "data: [DONE]\n\n");
  } else {
    M.out.len = 0;
    chunk_prefix(&M.out, call);
    ob_printf(&M.out, "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n");
    if (call->include_usage) {
      chunk_prefix(&M.out, call);
      ob_printf(&M.out,
                "\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
                call->prompt_tokens, call->words, call->prompt_tokens + call->words);
    }
    ob_printf(&M.out, "data: [DONE]\n\n");
  }
  if (hs_stream_write(req, M.out.p, M.out.len) < 0) return; /* on_abort follows */
  log_request(req, 200, f ? "scripted" : NULL);
  call_end(call, hs_stream_end(req) < 0 ? 1 : 0);
}

static void respond_whole(mock_call *call) {
  hs_request *req = call->req;
  const mock_fault *f = call->f;
  int status = f && f->status ? f->status : 200;
  log_request(req, status, f ? "scripted" : NULL); /* before: answering finishes req */
  if (f && f->garbage) {
    static const char junk[] = "<html><body>502 upstream garbage {\"choices\": [</body>";
    hs_respond(req, 200, "application/json", f->headers, f->nheaders, junk, sizeof junk - 1);
  } else if (f && f->body) {
    hs_respond(req, status, "application/json", f->headers, f->nheaders, f->body, strlen(f->body));
  } else {
    M.out.len = 0;
    ob_printf(&M.out,
              "{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":\"%s\","
              "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},"
              "\"finish_reason\":\"stop\",\"logprobs\":null}],"
              "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}",
              (unsigned long long)call->seq, call->created, call->model_esc,
              esc_tmp(call->content, strlen(call->content)), call->prompt_tokens, call->words,
              call->prompt_tokens + call->words);
    hs_respond(req, status, "application/json", f ? f->headers : NULL, f ? f->nheaders : 0, M.out.p,
               M.out.len);
  }
}

/* Runs the call until it must wait (timer, drain) or is done. */
static void call_step(mock_call *call) {
  const mock_fault *f = call->f;
  while (call->req && !call->paused) {
    switch (call->phase) {
      case PH_HEADERS:
        if (f && f->status && (f->status < 200 || f->status > 299)) {
          log_request(call->req, f->status, "scripted");
          respond_status(call->req, f);
          call_end(call, 0);
          return;
        }
        if (f && f->cut_after >= 0 && !call->stream) {
          hs_abort(call->req);
          call_end(call, 2);
          return;
        }
        if (!call->stream) {
          respond_whole(call);
          call_end(call, 0);
          return;
        }
        if (hs_stream_begin(call->req, f && f->status ? f->status : 200, "text/event-stream",
                            f ? f->headers : NULL, f ? f->nheaders : 0) < 0)
          return; /* on_abort follows */
        call->phase = PH_FIRST;
        if (f && call_wait(call, f->ttft_ms)) return;
        break;
      case PH_FIRST:
        if (f && f->body) { /* raw stream body override */
          M.out.len = 0;
          ob_printf(&M.out, "%s", f->body);
          call->phase = PH_END;
          if (call_emit(call)) return;
          break;
        }
        M.out.len = 0;
        if (f && f->garbage) {
          ob_printf(&M.out, "data: {\"id\": oops this is not json\n\n");
        } else {
          chunk_prefix(&M.out, call);
          ob_printf(&M.out, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
                            "\"finish_reason\":null}]}\n\n");
        }
        call->phase = PH_WORDS;
        if (call_emit(call)) return;
        if (f && call_wait(call, f->chunk_delay_ms)) return;
        break;
      case PH_WORDS: {
        if (!call->content[call->pos]) {
          call->phase = PH_FINISH;
          break;
        }
        if (f && f->cut_after >= 0 && call->chunks >= f->cut_after) {
          log_request(call->req, 200, "cut");
          hs_abort(call->req);
          call_end(call, 2);
          return;
        }
        size_t l = next_word(call->content, call->pos);
        M.out.len = 0;
        if (f && f->garbage) {
          ob_printf(&M.out, "data: <garbage %.*s>\n\n", (int)l, call->content + call->pos);
        } else {
          chunk_prefix(&M.out, call);
          ob_printf(&M.out, "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"finish_reason\":null}]}\n\n",
                    esc_tmp(call->content + call->pos, l));
        }
        call->pos += l;
        call->chunks++;
        if (call_emit(call)) return;
        if (f && call_wait(call, f->chunk_delay_ms)) return;
        break;
      }
      case PH_FINISH:
        if (f && f->cut_after >= 0) { /* fewer words than cut_after: still cut */
          log_request(call->req, 200, "cut");
          hs_abort(call->req);
          call_end(call, 2);
          return;
        }
        call_finish_stream(call);
        return;
      case PH_END:
        if (f && f->cut_after >= 0) {
          hs_abort(call->req);
          call_end(call, 2);
          return;
        }
        log_request(call->req, 200, "scripted");
        call_end(call, hs_stream_end(call->req) < 0 ? 1 : 0);
        return;
    }
  }
}

static void record_last(hs_request *req, json_t *root) {
  json_t *o = json_object();
  json_object_set_new(o, "path", json_string(req->path));
  json_t *model = root ? json_object_get(root, "model") : NULL;
  json_object_set_new(o, "model", model && json_is_string(model) ? json_incref(model) : json_null());
  const char *auth = hs_header_get(req, "authorization");
  json_object_set_new(o, "authorization", auth ? json_string(auth) : json_null());
  json_t *body = json_stringn(req->body, req->body_len);
  json_object_set_new(o, "body", body ? body : json_stringn_nocheck(req->body, req->body_len));
  json_t *h = json_object();
  for (int i = 0; i < req->nheaders; i++) {
    json_t *v = json_string(req->headers[i].value);
    if (v) json_object_set_new(h, req->headers[i].name, v);
  }
  json_object_set_new(o, "headers", h);
  json_decref(M.last);
  M.last = o;
}

static int bearer_ok(const char *auth) {
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  for (const char *p = auth + 7; *p; p++)
    if (*p != ' ') return 1;
  return 0;
}

static void handle_chat(hs_request *req) {
  M.requests++;
  M.in_flight++;
  json_error_t jerr;
  json_t *root = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
  record_last(req, root);
  /* requests in flight end through call_end; these early answers count as completed */
  if (!bearer_ok(hs_header_get(req, "authorization"))) {
    log_request(req, 401, NULL);
    respond_error(req, 401, "invalid_request_error", "invalid_api_key",
                  "You didn't provide an API key (mock: Authorization: Bearer required)", NULL, 0);
    M.completed++;
    M.in_flight--;
    json_decref(root);
    return;
  }
  json_t *model = root ? json_object_get(root, "model") : NULL;
  if (!json_is_object(root) || !json_is_string(model)) {
    log_request(req, 400, NULL);
    respond_error(req, 400, "invalid_request_error", root ? "missing_model" : "invalid_json",
                  root ? "you must provide a model parameter" : "We could not parse the JSON body of your request.",
                  NULL, 0);
    M.completed++;
    M.in_flight--;
    json_decref(root);
    return;
  }
  mock_call *call = calloc(1, sizeof *call);
  if (!call) abort();
  call->req = req;
  call->f = fault_next();
  call->stream = json_is_true(json_object_get(root, "stream"));
  call->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
  call->model_esc = esc_dup(json_string_value(model), json_string_length(model));
  call->content = call->f && call->f->content ? call->f->content : M.hello;
  call->words = count_words(call->content);
  call->prompt_tokens = req->body_len / 4 > 0 ? (int)(req->body_len / 4) : 1;
  call->seq = ++M.seq;
  call->created = (long)time(NULL);
  json_decref(root);
  uv_timer_init(M.loop, &call->timer);
  call->timer.data = call;
  req->user = call;
  if (call->f && call->f->hang) return; /* until the client leaves: on_abort */
  if (call->f && call_wait(call, call->f->delay_ms)) return;
  call_step(call);
}

/* ---- control API -------------------------------------------------------------- */

static json_t *body_json(hs_request *req) {
  json_error_t e;
  if (req->body_len == 0) return json_object();
  return json_loadb(req->body, req->body_len, 0, &e);
}

static void handle_faults(hs_request *req) {
  json_t *root = body_json(req);
  json_t *arr = root ? json_object_get(root, "faults") : NULL;
  if (!json_is_array(arr)) {
    respond_error(req, 400, "invalid_request_error", "invalid_value", "expected {\"faults\":[F...]}", NULL, 0);
    json_decref(root);
    return;
  }
  size_t i, n = json_array_size(arr);
  mock_fault *head = NULL, *tail = NULL;
  const char *err = NULL;
  json_t *v;
  json_array_foreach(arr, i, v) {
    mock_fault *f = fault_parse(v, &err);
    if (!f) break;
    if (tail) tail->next = f;
    else head = f;
    tail = f;
  }
  if (err) { /* all or nothing */
    while (head) {
      mock_fault *f = head;
      head = f->next;
      fault_unref(f);
    }
    respond_error(req, 400, "invalid_request_error", "invalid_value", err, NULL, 0);
  } else {
    if (head) {
      if (M.qtail) M.qtail->next = head;
      else M.qhead = head;
      M.qtail = tail;
      M.queued += (int)n;
    }
    char out[64];
    snprintf(out, sizeof out, "{\"queued\":%d}", M.queued);
    respond_json(req, 200, out);
  }
  json_decref(root);
}

static void handle_default(hs_request *req) {
  json_t *root = body_json(req);
  const char *err = "malformed JSON";
  mock_fault *f = root ? fault_parse(root, &err) : NULL;
  json_decref(root);
  if (!f) {
    respond_error(req, 400, "invalid_request_error", "invalid_value", err, NULL, 0);
    return;
  }
  fault_unref(M.deflt);
  M.deflt = f;
  respond_json(req, 200, "{\"ok\":true}");
}

static void handle_reset(hs_request *req) {
  queue_clear();
  fault_unref(M.deflt);
  M.deflt = NULL;
  M.requests = M.completed = M.cancelled = 0; /* in_flight is a gauge: kept */
  json_decref(M.last);
  M.last = NULL;
  respond_json(req, 200, "{\"ok\":true}");
}

static void handle_stats(hs_request *req) {
  json_t *o = json_pack("{sIsIsIsIsi}", "requests", (json_int_t)M.requests, "completed",
                        (json_int_t)M.completed, "cancelled", (json_int_t)M.cancelled, "in_flight",
                        (json_int_t)M.in_flight, "queued", M.queued);
  json_object_set(o, "last_request", M.last ? M.last : json_null());
  char *s = json_dumps(o, JSON_COMPACT);
  respond_json(req, 200, s);
  free(s);
  json_decref(o);
}

static void handle_models(hs_request *req) {
  M.out.len = 0;
  ob_printf(&M.out,
            "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\",\"created\":1721172741,"
            "\"owned_by\":\"llmesh-mock\"}]}",
            esc_tmp(M.name, strlen(M.name)));
  hs_respond(req, 200, "application/json", NULL, 0, M.out.p, M.out.len);
}

static void on_request(hs_request *req, void *ud) {
  const char *p = req->path;
  int is_post = strcmp(req->method_str, "POST") == 0, is_get = strcmp(req->method_str, "GET") == 0;
  if (is_post && strcmp(p, "/v1/chat/completions") == 0) { handle_chat(req); return; }
  if (is_get && strcmp(p, "/v1/models") == 0) handle_models(req);
  else if (is_post && strcmp(p, "/mock/faults") == 0) handle_faults(req);
  else if (is_post && strcmp(p, "/mock/default") == 0) handle_default(req);
  else if (is_post && strcmp(p, "/mock/reset") == 0) handle_reset(req);
  else if (is_get && strcmp(p, "/mock/stats") == 0) handle_stats(req);
  else if (is_get && strcmp(p, "/healthz") == 0) respond_json(req, 200, "{\"ok\":true}");
  else {
    log_request(req, 404, NULL);
    respond_error(req, 404, "invalid_request_error", "unknown_url", "Unknown request URL (mock)", NULL, 0);
  }
}

static void on_abort(hs_request *req, void *ud) {
  mock_call *call = req->user;
  if (!call) return;
  LOG_INFO(NULL, "request_cancelled", LF_S("path", req->path), LF_I("chunks_sent", call->chunks));
  call_end(call, 1);
}

static void on_drain(hs_request *req, void *ud) {
  mock_call *call = req->user;
  if (!call) return;
  call->paused = 0;
  call_step(call);
}

/* ---- main --------------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum) {
  if (M.stopping) return;
  M.stopping = 1;
  LOG_INFO(NULL, "stopping", LF_I("signal", signum));
  hs_server_free(M.srv); /* aborts in-flight calls: their timers close */
  M.srv = NULL;
  uv_close((uv_handle_t *)&M.sigterm, NULL);
  uv_close((uv_handle_t *)&M.sigint, NULL);
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: llmesh-mock-provider --listen HOST:PORT [--name NAME] [--log-level L]\n"
          "\n"
          "An OpenAI-compatible mock provider with fault scripting (tests and benchmarks).\n"
          "  --listen HOST:PORT  address to serve on (required; port 0 picks one, logged as \"listening\")\n"
          "  --name NAME         name used in the reply \"[NAME] Hello from the mock.\" (default mock)\n"
          "  --log-level L       debug|info|warn|error (default info)\n"
          "  --help              this text\n"
          "\n"
          "Endpoints: POST /v1/chat/completions, GET /v1/models, POST /mock/faults {\"faults\":[F..]},\n"
          "POST /mock/default F, POST /mock/reset, GET /mock/stats.\n"
          "F fields: status, body, headers, delay_ms, ttft_ms, chunk_delay_ms, content, cut_after,\n"
          "garbage, hang.\n");
}

static int split_hostport(const char *s, char *host, size_t hcap, int *port) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s) return -1;
  size_t hl = (size_t)(colon - s);
  const char *h = s;
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { h++; hl -= 2; }
  if (hl + 1 > hcap) return -1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535 || end == colon + 1) return -1;
  *port = (int)p;
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  const char *listen = NULL, *level = "info";
  M.name = "mock";
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"name", required_argument, NULL, 'n'},
      {"log-level", required_argument, NULL, 'v'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'l': listen = optarg; break;
      case 'n': M.name = optarg; break;
      case 'v': level = optarg; break;
      case 'h': usage(stdout); return 0;
      default:
        fprintf(stderr, "llmesh-mock-provider: bad flag '%s' (see --help)\n", argv[optind - 1]);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "llmesh-mock-provider: unexpected argument '%s' (see --help)\n", argv[optind]);
    return 2;
  }
  char host[256];
  int port;
  if (!listen) {
    fprintf(stderr, "llmesh-mock-provider: --listen HOST:PORT is required (see --help)\n");
    return 2;
  }
  if (split_hostport(listen, host, sizeof host, &port)) {
    fprintf(stderr, "llmesh-mock-provider: --listen wants HOST:PORT, got '%s'\n", listen);
    return 2;
  }
  log_init("mock", log_level_parse(level));

  size_t hl = strlen(M.name) + 32;
  M.hello = malloc(hl);
  snprintf(M.hello, hl, "[%s] Hello from the mock.", M.name);
  M.loop = uv_default_loop();

  hs_config cfg;
  hs_config_default(&cfg);
  cfg.max_body_bytes = 32 * 1024 * 1024;
  hs_callbacks cb = {.on_request = on_request, .on_abort = on_abort, .on_drain = on_drain};
  int r = hs_server_new(&M.srv, M.loop, &cfg, &cb, NULL);
  if (r == 0) r = hs_server_listen(M.srv, host, port);
  if (r < 0) {
    LOG_ERROR(NULL, "listen_failed", LF_S("listen", listen), LF_S("error", uv_strerror(r)));
    fprintf(stderr, "llmesh-mock-provider: cannot listen on %s: %s\n", listen, uv_strerror(r));
    if (M.srv) hs_server_free(M.srv);
    uv_run(M.loop, UV_RUN_DEFAULT);
    uv_loop_close(M.loop);
    free(M.hello);
    return 1;
  }
  uv_signal_init(M.loop, &M.sigterm);
  uv_signal_init(M.loop, &M.sigint);
  uv_signal_start(&M.sigterm, on_signal, SIGTERM);
  uv_signal_start(&M.sigint, on_signal, SIGINT);
  LOG_INFO(NULL, "listening", LF_S("listen", listen), LF_I("port", hs_server_port(M.srv)), LF_S("name", M.name));

  uv_run(M.loop, UV_RUN_DEFAULT);

  queue_clear();
  fault_unref(M.deflt);
  json_decref(M.last);
  free(M.out.p);
  free(M.esc.p);
  free(M.hello);
  uv_loop_close(M.loop);
  return 0;
}
