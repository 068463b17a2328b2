/* mock_anthropic.c — Anthropic Messages: POST /v1/messages (x-api-key, anthropic-version,
 * max_tokens required); streams the full event sequence (message_start, content blocks
 * with text_delta / input_json_delta, ping, message_delta, message_stop); errors
 * {"type":"error","error":{"type","message"},"request_id"} with a request-id header. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "mock.h"
#include "util.h"

static const char *anthropic_auth(const hs_request *req, char *buf, size_t cap) {
  return hs_header_get(req, "x-api-key");
}

static int anthropic_headers(mock_call *call, hs_header *h) {
  h[0] = (hs_header){"request-id", call->request_id};
  return 1;
}

static void anthropic_error_body(mock_call *call, int status, const char *type, const char *msg, const hs_header *h,
                                 int n) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"type\":\"error\",\"error\":{\"type\":\"%s\",\"message\":\"%s\"},\"request_id\":\"%s\"}", type,
            msg, call->request_id);
  hs_respond(call->req, status, "application/json", h, n, M.out.p, M.out.len);
}

/* Early refusal (auth, validation). */
static int refuse(mock_call *call, int status, const char *type, const char *msg) {
  return anthropic_refuse(call, status, type, msg);
}

int anthropic_refuse(mock_call *call, int status, const char *type, const char *msg) {
  if (!call->request_id[0])
    snprintf(call->request_id, sizeof call->request_id, "req_mock_%llu", (unsigned long long)call->seq);
  hs_header h[1];
  int n = anthropic_headers(call, h);
  log_request(call->req, status, NULL);
  anthropic_error_body(call, status, type, msg, h, n);
  return -1;
}

/* RFC 3339 UTC timestamp secs from now (Anthropic's reset headers are absolute). */
static const char *rfc3339_in(char *buf, size_t cap, int secs) {
  time_t t = time(NULL) + secs;
  struct tm tm;
  gmtime_r(&t, &tm);
  strftime(buf, cap, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

static void anthropic_status(mock_call *call, const mock_fault *f, hs_header *h, int n) {
  char reset[32];
  rfc3339_in(reset, sizeof reset, 1);
  const hs_header rl[] = {
      {"retry-after", "1"},
      {"anthropic-ratelimit-requests-limit", "60"},
      {"anthropic-ratelimit-requests-remaining", "0"},
      {"anthropic-ratelimit-requests-reset", reset},
      {"anthropic-ratelimit-tokens-limit", "40000"},
      {"anthropic-ratelimit-tokens-remaining", "0"},
      {"anthropic-ratelimit-tokens-reset", reset},
  };
  n = headers_merge(h, n, rl, f->status == 429 ? ARRAY_SIZE(rl) : 0, f);
  if (f->body) {
    hs_respond(call->req, f->status, "application/json", h, n, f->body, strlen(f->body));
    return;
  }
  const char *type = "invalid_request_error", *msg = "Invalid request (scripted by the mock)";
  switch (f->status) {
    case 401: type = "authentication_error"; msg = "invalid x-api-key (scripted by the mock)"; break;
    case 402: type = "billing_error"; msg = "Your credit balance is too low (scripted by the mock)"; break;
    case 403: type = "permission_error"; msg = "Your API key does not have permission (scripted by the mock)"; break;
    case 404: type = "not_found_error"; msg = "model: not found (scripted by the mock)"; break;
    case 413: type = "request_too_large"; msg = "Request exceeds the maximum allowed size (scripted by the mock)"; break;
    case 429: type = "rate_limit_error"; msg = "Number of requests has exceeded your rate limit (scripted by the mock)"; break;
    case 529: type = "overloaded_error"; msg = "Overloaded (scripted by the mock)"; break;
    default:
      if (f->status >= 500) { type = "api_error"; msg = "Internal server error (scripted by the mock)"; }
      break;
  }
  anthropic_error_body(call, f->status, type, msg, h, n);
}

static int messages_accept(mock_call *call, json_t *root) {
  hs_request *req = call->req;
  snprintf(call->request_id, sizeof call->request_id, "req_mock_%llu", (unsigned long long)call->seq);
  const char *key = hs_header_get(req, "x-api-key");
  if (!key || !*key) return refuse(call, 401, "authentication_error", "x-api-key header is required");
  if (!hs_header_get(req, "anthropic-version"))
    return refuse(call, 400, "invalid_request_error", "anthropic-version: header is required");
  if (!json_is_object(root))
    return refuse(call, 400, "invalid_request_error", "There was an error parsing the body of your request (invalid JSON)");
  json_t *model = json_object_get(root, "model"), *msgs = json_object_get(root, "messages");
  if (!json_is_string(model)) return refuse(call, 400, "invalid_request_error", "model: Field required");
  if (!json_is_integer(json_object_get(root, "max_tokens")))
    return refuse(call, 400, "invalid_request_error", "max_tokens: Field required");
  if (!json_is_array(msgs) || !json_array_size(msgs))
    return refuse(call, 400, "invalid_request_error", "messages: at least one message is required");
  call->stream = json_is_true(json_object_get(root, "stream"));
  call->model_esc = esc_dup(json_string_value(model), json_string_length(model));
  return 0;
}

static int has_text(const mock_call *call) { return call->content[0] || !call->f || !call->f->ntools; }

static void tool_id(obuf *b, const mock_fault *f, int i) {
  if (f->tools[i].id_esc) ob_printf(b, "%s", f->tools[i].id_esc);
  else ob_printf(b, "toolu_mock_%d", i);
}

static const char *stop_reason(const mock_call *call) { return call->f && call->f->ntools ? "tool_use" : "end_turn"; }

static void messages_whole(mock_call *call, obuf *b) {
  const mock_fault *f = call->f;
  ob_printf(b, "{\"id\":\"msg_mock_%llu\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\",\"content\":[",
            (unsigned long long)call->seq, call->model_esc);
  if (has_text(call)) ob_printf(b, "{\"type\":\"text\",\"text\":\"%s\"}", esc_tmp(call->content, strlen(call->content)));
  for (int i = 0; f && i < f->ntools; i++) {
    ob_printf(b, "%s{\"type\":\"tool_use\",\"id\":\"", i || has_text(call) ? "," : "");
    tool_id(b, f, i);
    ob_printf(b, "\",\"name\":\"%s\",\"input\":%s}", f->tools[i].name_esc, f->tools[i].args);
  }
  ob_printf(b, "],\"stop_reason\":\"%s\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":%d,\"output_tokens\":%d}}",
            stop_reason(call), call->prompt_tokens, call->words);
}

static void block_stop(mock_call *call, obuf *b) {
  if (call->open_block < 0) return;
  ob_printf(b, "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":%d}\n\n", call->open_block);
  call->open_block = -1;
}

static void messages_begin(mock_call *call, obuf *b) {
  ob_printf(b,
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_mock_%llu\","
            "\"type\":\"message\",\"role\":\"assistant\",\"model\":\"%s\",\"content\":[],\"stop_reason\":null,"
            "\"stop_sequence\":null,\"usage\":{\"input_tokens\":%d,\"output_tokens\":1}}}\n\n",
            (unsigned long long)call->seq, call->model_esc, call->prompt_tokens);
  if (has_text(call)) {
    ob_printf(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,"
                 "\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n");
    call->open_block = 0;
  }
  ob_printf(b, "event: ping\ndata: {\"type\":\"ping\"}\n\n");
}

static void messages_unit(mock_call *call, obuf *b, const mock_unit *u) {
  int idx = u->tool + has_text(call);
  switch (u->kind) {
    case MU_TEXT:
      ob_printf(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,"
                   "\"delta\":{\"type\":\"text_delta\",\"text\":\"%s\"}}\n\n",
                esc_tmp(u->s, u->n));
      break;
    case MU_TOOL_START:
      block_stop(call, b);
      ob_printf(b, "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":%d,"
                   "\"content_block\":{\"type\":\"tool_use\",\"id\":\"", idx);
      tool_id(b, call->f, u->tool);
      ob_printf(b, "\",\"name\":\"%s\",\"input\":{}}}\n\n", call->f->tools[u->tool].name_esc);
      call->open_block = idx;
      break;
    case MU_TOOL_ARGS:
      ob_printf(b, "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":%d,"
                   "\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"%s\"}}\n\n",
                idx, esc_tmp(u->s, u->n));
      break;
  }
}

static void messages_finish(mock_call *call, obuf *b) {
  block_stop(call, b);
  ob_printf(b,
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"%s\","
            "\"stop_sequence\":null},\"usage\":{\"output_tokens\":%d}}\n\n"
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
            stop_reason(call), call->words);
}

static void messages_stream_error(mock_call *call, obuf *b) {
  ob_printf(b, "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\","
               "\"message\":\"Overloaded (scripted mid-stream by the mock)\"}}\n\n");
}

static void messages_junk(mock_call *call, obuf *b, enum mock_junk where, const char *s, size_t n) {
  switch (where) {
    case MJ_BEGIN: ob_printf(b, "event: message_start\ndata: {\"type\": oops this is not json\n\n"); break;
    case MJ_UNIT: ob_printf(b, "event: content_block_delta\ndata: <garbage %.*s>\n\n", (int)n, s); break;
    case MJ_FINISH: ob_printf(b, "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n"); break;
  }
}

const mock_format mock_anthropic = {
    .name = "anthropic",
    .stream_type = "text/event-stream",
    .args_fragments = 1,
    .auth = anthropic_auth,
    .headers = anthropic_headers,
    .error = anthropic_status,
    .begin = messages_begin,
    .unit = messages_unit,
    .finish = messages_finish,
    .stream_error = messages_stream_error,
    .junk = messages_junk,
};

const mock_endpoint mock_anthropic_messages = {&mock_anthropic, messages_accept, messages_whole};
