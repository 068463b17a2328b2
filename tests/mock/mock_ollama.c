/* mock_ollama.c — Ollama native API: POST /api/chat (NDJSON stream by default, one
 * object per word, then a done:true line with the counters; "stream":false for one
 * object), POST /api/embed. No auth (recorded if sent). Errors {"error":"..."}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "mock.h"
#include "util.h"

static const char *ollama_auth(const hs_request *req, char *buf, size_t cap) {
  return hs_header_get(req, "authorization");
}

static void ollama_error_body(hs_request *req, int status, const char *msg, const hs_header *h, int n) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"error\":\"%s\"}", msg);
  hs_respond(req, status, "application/json", h, n, M.out.p, M.out.len);
}

static int refuse(mock_call *call, int status, const char *msg) {
  log_request(call->req, status, NULL);
  ollama_error_body(call->req, status, msg, NULL, 0);
  return -1;
}

static void ollama_status(mock_call *call, const mock_fault *f, hs_header *h, int n) {
  n = headers_merge(h, n, NULL, 0, f);
  if (f->body) {
    hs_respond(call->req, f->status, "application/json", h, n, f->body, strlen(f->body));
    return;
  }
  const char *msg = "invalid request (scripted by the mock)";
  switch (f->status) {
    case 401: msg = "unauthorized (scripted by the mock)"; break;
    case 404: msg = "model not found, try pulling it first (scripted by the mock)"; break;
    case 429: msg = "too many requests (scripted by the mock)"; break;
    case 500: msg = "llama runner process has terminated (scripted by the mock)"; break;
    case 503: msg = "server busy, please try again.  maximum pending requests exceeded (scripted by the mock)"; break;
    default:
      if (f->status >= 500) msg = "internal error (scripted by the mock)";
      break;
  }
  ollama_error_body(call->req, f->status, msg, h, n);
}

static int model_accept(mock_call *call, json_t *root) {
  if (!json_is_object(root)) return refuse(call, 400, "invalid JSON body (mock)");
  json_t *model = json_object_get(root, "model");
  if (!json_is_string(model) || !json_string_length(model)) return refuse(call, 400, "model is required");
  call->model_esc = esc_dup(json_string_value(model), json_string_length(model));
  return 0;
}

/* ---- chat --------------------------------------------------------------------- */

static int chat_accept(mock_call *call, json_t *root) {
  if (model_accept(call, root) < 0) return -1;
  call->stream = !json_is_false(json_object_get(root, "stream")); /* streams unless told not to */
  return 0;
}

/* "model" and "created_at" (RFC 3339 with nanoseconds, as Ollama writes it). */
static void line_head(mock_call *call, obuf *b) {
  struct timespec ts;
  struct tm tm;
  char t[32];
  clock_gettime(CLOCK_REALTIME, &ts);
  gmtime_r(&ts.tv_sec, &tm);
  strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%S", &tm);
  ob_printf(b, "{\"model\":\"%s\",\"created_at\":\"%s.%09ldZ\",", call->model_esc, t, ts.tv_nsec);
}

static void tool_call(obuf *b, const mock_tool *t, int i) {
  ob_printf(b, "{\"function\":{\"index\":%d,\"name\":\"%s\",\"arguments\":%s}}", i, t->name_esc, t->args);
}

static void done_tail(mock_call *call, obuf *b) {
  ob_printf(b,
            "\"done\":true,\"done_reason\":\"stop\",\"total_duration\":%d,\"load_duration\":1000000,"
            "\"prompt_eval_count\":%d,\"prompt_eval_duration\":%d,\"eval_count\":%d,\"eval_duration\":%d}",
            2000000 + 1000 * (call->prompt_tokens + call->words), call->prompt_tokens, 1000 * call->prompt_tokens,
            call->words, 1000 * call->words);
}

static void chat_whole(mock_call *call, obuf *b) {
  const mock_fault *f = call->f;
  line_head(call, b);
  ob_printf(b, "\"message\":{\"role\":\"assistant\",\"content\":\"%s\"", esc_tmp(call->content, strlen(call->content)));
  if (f && f->ntools) {
    ob_printf(b, ",\"tool_calls\":[");
    for (int i = 0; i < f->ntools; i++) {
      if (i) ob_add(b, ",", 1);
      tool_call(b, &f->tools[i], i);
    }
    ob_add(b, "]", 1);
  }
  ob_printf(b, "},");
  done_tail(call, b);
}

static void chat_unit(mock_call *call, obuf *b, const mock_unit *u) {
  line_head(call, b);
  if (u->kind == MU_TEXT) {
    ob_printf(b, "\"message\":{\"role\":\"assistant\",\"content\":\"%s\"},\"done\":false}\n", esc_tmp(u->s, u->n));
  } else { /* tool calls arrive whole */
    ob_printf(b, "\"message\":{\"role\":\"assistant\",\"content\":\"\",\"tool_calls\":[");
    tool_call(b, &call->f->tools[u->tool], u->tool);
    ob_printf(b, "]},\"done\":false}\n");
  }
}

static void chat_finish(mock_call *call, obuf *b) {
  line_head(call, b);
  ob_printf(b, "\"message\":{\"role\":\"assistant\",\"content\":\"\"},");
  done_tail(call, b);
  ob_add(b, "\n", 1);
}

static void chat_stream_error(mock_call *call, obuf *b) {
  ob_printf(b, "{\"error\":\"an error was encountered while running the model (scripted mid-stream by the mock)\"}\n");
}

static void chat_junk(mock_call *call, obuf *b, enum mock_junk where, const char *s, size_t n) {
  switch (where) {
    case MJ_BEGIN: break;
    case MJ_UNIT: ob_printf(b, "<garbage %.*s>\n", (int)n, s); break;
    case MJ_FINISH: chat_finish(call, b); break;
  }
}

/* ---- embeddings --------------------------------------------------------------- */

static int embed_accept(mock_call *call, json_t *root) {
  if (model_accept(call, root) < 0) return -1;
  json_t *in = json_object_get(root, "input");
  int ok = json_is_string(in) || (json_is_array(in) && json_array_size(in));
  size_t i;
  json_t *v;
  json_array_foreach(in, i, v) ok &= json_is_string(v);
  if (!ok) return refuse(call, 400, "invalid input type");
  return 0;
}

static void embed_whole(mock_call *call, obuf *b) {
  json_t *in = json_object_get(call->root, "input");
  int dims = json_dims(json_object_get(call->root, "dimensions"), 8), tokens = 0;
  float v[4096];
  ob_printf(b, "{\"model\":\"%s\",\"embeddings\":[", call->model_esc);
  for (size_t i = 0; i < (json_is_string(in) ? 1 : json_array_size(in)); i++) {
    json_t *s = json_is_string(in) ? in : json_array_get(in, i);
    embed_vector(json_string_value(s), json_string_length(s), dims, v);
    if (i) ob_add(b, ",", 1);
    ob_vector(b, v, dims);
    tokens += json_string_length(s) / 4 > 0 ? (int)(json_string_length(s) / 4) : 1;
  }
  ob_printf(b, "],\"total_duration\":%d,\"load_duration\":1000000,\"prompt_eval_count\":%d}", 2000000 + 1000 * tokens,
            tokens);
}

const mock_format mock_ollama = {
    .name = "ollama",
    .stream_type = "application/x-ndjson",
    .args_fragments = 0,
    .auth = ollama_auth,
    .error = ollama_status,
    .unit = chat_unit,
    .finish = chat_finish,
    .stream_error = chat_stream_error,
    .junk = chat_junk,
};

const mock_endpoint mock_ollama_chat = {&mock_ollama, chat_accept, chat_whole};
const mock_endpoint mock_ollama_embed = {&mock_ollama, embed_accept, embed_whole};
