/* mock_gemini.c — Gemini (Generative Language API): POST /v1beta/models/M:generateContent,
 * :streamGenerateContent?alt=sse (data: {...}\r\n\r\n events, the last with finishReason,
 * then EOF; without alt=sse a streamed JSON array), :embedContent, :batchEmbedContents.
 * Key: x-goog-api-key or ?key=. Errors are google.rpc.Status (RetryInfo on 429). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock.h"
#include "util.h"

static const char *gemini_auth(const hs_request *req, char *buf, size_t cap) {
  const char *k = hs_header_get(req, "x-goog-api-key");
  return k ? k : query_get(req->query, "key", buf, cap);
}

/* "/v1beta/models/gemini-2.5-flash:generateContent" → "gemini-2.5-flash". */
static const char *gemini_path_model(const hs_request *req, char *buf, size_t cap) {
  const char *m = strstr(req->path, "/models/"), *colon = strrchr(req->path, ':');
  if (!m || !colon || colon < m + 8) return NULL;
  size_t n = (size_t)(colon - (m + 8));
  if (n >= cap) n = cap - 1;
  memcpy(buf, m + 8, n);
  buf[n] = '\0';
  return buf;
}

static const char *rpc_status(int status) {
  switch (status) {
    case 400: return "INVALID_ARGUMENT";
    case 401: return "UNAUTHENTICATED";
    case 403: return "PERMISSION_DENIED";
    case 404: return "NOT_FOUND";
    case 409: return "ABORTED";
    case 429: return "RESOURCE_EXHAUSTED";
    case 499: return "CANCELLED";
    case 500: return "INTERNAL";
    case 501: return "UNIMPLEMENTED";
    case 503: return "UNAVAILABLE";
    case 504: return "DEADLINE_EXCEEDED";
    default: return status >= 500 ? "INTERNAL" : "FAILED_PRECONDITION";
  }
}

/* google.rpc.Status; details: a JSON array's members (may be ""). */
static void gemini_error_body(hs_request *req, int status, const char *msg, const char *details, const hs_header *h,
                              int n) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"error\":{\"code\":%d,\"message\":\"%s\",\"status\":\"%s\"", status, msg, rpc_status(status));
  if (*details) ob_printf(&M.out, ",\"details\":[%s]", details);
  ob_printf(&M.out, "}}");
  hs_respond(req, status, "application/json", h, n, M.out.p, M.out.len);
}

int gemini_refuse(mock_call *call, int status, const char *msg, const char *details) {
  log_request(call->req, status, NULL);
  gemini_error_body(call->req, status, msg, details, NULL, 0);
  return -1;
}

static void gemini_status(mock_call *call, const mock_fault *f, hs_header *h, int n) {
  n = headers_merge(h, n, NULL, 0, f); /* Gemini sends no rate-limit headers: RetryInfo only */
  if (f->body) {
    hs_respond(call->req, f->status, "application/json", h, n, f->body, strlen(f->body));
    return;
  }
  const char *msg = "Request contains an invalid argument. (scripted by the mock)", *details = "";
  switch (f->status) {
    case 401: msg = "Request had invalid authentication credentials. (scripted by the mock)"; break;
    case 403: msg = "The caller does not have permission (scripted by the mock)"; break;
    case 404: msg = "models/unknown is not found for API version v1beta (scripted by the mock)"; break;
    case 429:
      msg = "You exceeded your current quota, please check your plan and billing details. (scripted by the mock)";
      details = "{\"@type\":\"type.googleapis.com/google.rpc.QuotaFailure\",\"violations\":[{\"quotaMetric\":"
                "\"generativelanguage.googleapis.com/generate_content_requests\",\"quotaId\":"
                "\"GenerateRequestsPerMinutePerProjectPerModel\"}]},"
                "{\"@type\":\"type.googleapis.com/google.rpc.RetryInfo\",\"retryDelay\":\"1s\"}";
      break;
    case 500: msg = "An internal error has occurred. (scripted by the mock)"; break;
    case 503: msg = "The model is overloaded. Please try again later. (scripted by the mock)"; break;
    case 504: msg = "Deadline expired before operation could complete. (scripted by the mock)"; break;
    default:
      if (f->status >= 500) msg = "Mock provider error (scripted by the mock)";
      break;
  }
  gemini_error_body(call->req, f->status, msg, details, h, n);
}

/* Key and model checks shared by every Gemini endpoint. */
static int gemini_accept_common(mock_call *call, json_t *root) {
  char buf[512];
  const char *key = gemini_auth(call->req, buf, sizeof buf);
  if (!key || !*key)
    return gemini_refuse(call, 400, "API key not valid. Please pass a valid API key.",
                  "{\"@type\":\"type.googleapis.com/google.rpc.ErrorInfo\",\"reason\":\"API_KEY_INVALID\","
                  "\"domain\":\"googleapis.com\",\"metadata\":{\"service\":\"generativelanguage.googleapis.com\"}}");
  if (!json_is_object(root)) return gemini_refuse(call, 400, "Invalid JSON payload received.", "");
  const char *model = gemini_path_model(call->req, buf, sizeof buf);
  if (!model || !*model) return gemini_refuse(call, 400, "model is required in the path", "");
  call->model_esc = esc_dup(model, strlen(model));
  return 0;
}

/* ---- generateContent ---------------------------------------------------------- */

static int generate_accept(mock_call *call, json_t *root) {
  if (gemini_accept_common(call, root) < 0) return -1;
  return gemini_generate_check(call, root, 0);
}

int gemini_generate_check(mock_call *call, json_t *root, int stream) {
  if (!call->model_esc) { /* Vertex: no key check before */
    char buf[512];
    if (!json_is_object(root)) return gemini_refuse(call, 400, "Invalid JSON payload received.", "");
    const char *model = gemini_path_model(call->req, buf, sizeof buf);
    if (!model || !*model) return gemini_refuse(call, 400, "model is required in the path", "");
    call->model_esc = esc_dup(model, strlen(model));
  }
  json_t *contents = json_object_get(root, "contents");
  if (!json_is_array(contents) || !json_array_size(contents))
    return gemini_refuse(call, 400, "* GenerateContentRequest.contents: contents is not specified", "");
  if (!stream) return 0;
  char buf[16];
  const char *alt = query_get(call->req->query, "alt", buf, sizeof buf);
  call->stream = 1;
  call->gemini_array = !alt || strcmp(alt, "sse") != 0;
  if (call->gemini_array) call->stream_type = "application/json";
  return 0;
}

static int stream_accept(mock_call *call, json_t *root) {
  if (gemini_accept_common(call, root) < 0) return -1;
  return gemini_generate_check(call, root, 1);
}

static int has_text(const mock_call *call) { return call->content[0] || !call->f || !call->f->ntools; }

/* One GenerateContentResponse; parts written by the caller between head and tail. */
static void resp_head(obuf *b) { ob_printf(b, "{\"candidates\":[{\"content\":{\"role\":\"model\",\"parts\":["); }

static void resp_tail(mock_call *call, obuf *b, int final, int ctoks) {
  ob_printf(b, "]},");
  if (final) ob_printf(b, "\"finishReason\":\"STOP\",");
  ob_printf(b, "\"index\":0}],");
  if (final)
    ob_printf(b, "\"usageMetadata\":{\"promptTokenCount\":%d,\"candidatesTokenCount\":%d,\"totalTokenCount\":%d},",
              call->prompt_tokens, ctoks, call->prompt_tokens + ctoks);
  ob_printf(b, "\"modelVersion\":\"%s\",\"responseId\":\"mock-%llu\"}", call->model_esc, (unsigned long long)call->seq);
}

static void function_call(obuf *b, const mock_tool *t, const char *args, size_t n) {
  ob_printf(b, "{\"functionCall\":{\"name\":\"%s\",\"args\":%.*s}}", t->name_esc, (int)n, args);
}

static void generate_whole(mock_call *call, obuf *b) {
  const mock_fault *f = call->f;
  resp_head(b);
  if (has_text(call)) ob_printf(b, "{\"text\":\"%s\"}", esc_tmp(call->content, strlen(call->content)));
  for (int i = 0; f && i < f->ntools; i++) {
    if (i || has_text(call)) ob_add(b, ",", 1);
    function_call(b, &f->tools[i], f->tools[i].args, f->tools[i].args_len);
  }
  resp_tail(call, b, 1, call->words);
}

/* Event framing: SSE with CRLF, or members of one streamed JSON array. */
static void ev_open(mock_call *call, obuf *b) {
  if (call->gemini_array) ob_add(b, call->events ? ",\r\n" : "[", call->events ? 3 : 1);
  else ob_add(b, "data: ", 6);
  call->events++;
}

static void ev_close(mock_call *call, obuf *b) {
  if (!call->gemini_array) ob_add(b, "\r\n\r\n", 4);
}

static void stream_unit(mock_call *call, obuf *b, const mock_unit *u) {
  ev_open(call, b);
  resp_head(b);
  if (u->kind == MU_TEXT) ob_printf(b, "{\"text\":\"%s\"}", esc_tmp(u->s, u->n));
  else function_call(b, &call->f->tools[u->tool], u->s, u->n); /* functionCall parts come whole */
  resp_tail(call, b, u->final, call->words);
  ev_close(call, b);
}

static void stream_finish(mock_call *call, obuf *b) {
  if (!call->chunks) { /* nothing carried the finishReason yet */
    ev_open(call, b);
    resp_head(b);
    ob_printf(b, "{\"text\":\"\"}");
    resp_tail(call, b, 1, call->words);
    ev_close(call, b);
  }
  if (call->gemini_array) ob_add(b, call->events ? "]" : "[]", call->events ? 1 : 2);
}

static void stream_error(mock_call *call, obuf *b) {
  ev_open(call, b);
  ob_printf(b, "{\"error\":{\"code\":503,\"message\":\"The model is overloaded. Please try again later. "
               "(scripted mid-stream by the mock)\",\"status\":\"UNAVAILABLE\"}}");
  ev_close(call, b);
  if (call->gemini_array) ob_add(b, "]", 1);
}

static void stream_junk(mock_call *call, obuf *b, enum mock_junk where, const char *s, size_t n) {
  switch (where) {
    case MJ_BEGIN: break;
    case MJ_UNIT:
      ev_open(call, b);
      ob_printf(b, "<garbage %.*s>", (int)n, s);
      ev_close(call, b);
      break;
    case MJ_FINISH:
      if (call->gemini_array) ob_add(b, "]", 1);
      break;
  }
}

/* ---- embeddings --------------------------------------------------------------- */

/* Concatenated parts[].text of a Content; NULL if it has no parts. */
static char *content_text(json_t *content) {
  json_t *parts = json_object_get(content, "parts");
  if (!json_is_array(parts) || !json_array_size(parts)) return NULL;
  obuf t = {0};
  ob_reserve(&t, 0);
  size_t i;
  json_t *p;
  json_array_foreach(parts, i, p) {
    json_t *tx = json_object_get(p, "text");
    if (json_is_string(tx)) ob_add(&t, json_string_value(tx), json_string_length(tx));
  }
  return t.p;
}

static int embed_accept(mock_call *call, json_t *root) {
  if (gemini_accept_common(call, root) < 0) return -1;
  char *t = content_text(json_object_get(root, "content"));
  if (!t) return gemini_refuse(call, 400, "* EmbedContentRequest.content: contents is not specified", "");
  free(t);
  return 0;
}

static void embed_values(obuf *b, json_t *req) {
  float v[4096];
  int dims = json_dims(json_object_get(req, "outputDimensionality"), 8);
  char *t = content_text(json_object_get(req, "content"));
  embed_vector(t ? t : "", t ? strlen(t) : 0, dims, v);
  free(t);
  ob_printf(b, "{\"values\":");
  ob_vector(b, v, dims);
  ob_add(b, "}", 1);
}

static void embed_whole(mock_call *call, obuf *b) {
  ob_printf(b, "{\"embedding\":");
  embed_values(b, call->root);
  ob_add(b, "}", 1);
}

static int batch_accept(mock_call *call, json_t *root) {
  if (gemini_accept_common(call, root) < 0) return -1;
  json_t *reqs = json_object_get(root, "requests");
  if (!json_is_array(reqs) || !json_array_size(reqs))
    return gemini_refuse(call, 400, "* BatchEmbedContentsRequest.requests: requests is not specified", "");
  size_t i;
  json_t *r;
  json_array_foreach(reqs, i, r) {
    char *t = content_text(json_object_get(r, "content"));
    if (!t) return gemini_refuse(call, 400, "* BatchEmbedContentsRequest.requests[].content: contents is not specified", "");
    free(t);
  }
  return 0;
}

static void batch_whole(mock_call *call, obuf *b) {
  json_t *reqs = json_object_get(call->root, "requests");
  size_t i;
  json_t *r;
  ob_printf(b, "{\"embeddings\":[");
  json_array_foreach(reqs, i, r) {
    if (i) ob_add(b, ",", 1);
    embed_values(b, r);
  }
  ob_printf(b, "]}");
}

const mock_format mock_gemini = {
    .name = "gemini",
    .stream_type = "text/event-stream",
    .args_fragments = 0,
    .auth = gemini_auth,
    .path_model = gemini_path_model,
    .error = gemini_status,
    .unit = stream_unit,
    .finish = stream_finish,
    .stream_error = stream_error,
    .junk = stream_junk,
};

const mock_endpoint mock_gemini_generate = {&mock_gemini, generate_accept, generate_whole};
const mock_endpoint mock_gemini_stream = {&mock_gemini, stream_accept, generate_whole};
const mock_endpoint mock_gemini_embed = {&mock_gemini, embed_accept, embed_whole};
const mock_endpoint mock_gemini_batch_embed = {&mock_gemini, batch_accept, batch_whole};

const mock_endpoint *gemini_route(const char *path) {
  if (strncmp(path, "/v1beta/models/", 15) != 0 && strncmp(path, "/v1/models/", 11) != 0) return NULL;
  const char *colon = strrchr(path, ':');
  if (!colon) return NULL;
  colon++;
  if (strcmp(colon, "generateContent") == 0) return &mock_gemini_generate;
  if (strcmp(colon, "streamGenerateContent") == 0) return &mock_gemini_stream;
  if (strcmp(colon, "embedContent") == 0) return &mock_gemini_embed;
  if (strcmp(colon, "batchEmbedContents") == 0) return &mock_gemini_batch_embed;
  return NULL;
}
