/* mock_openai.c — OpenAI wire format: POST /v1/chat/completions (whole or SSE with
 * data: [DONE]), POST /v1/embeddings; errors {"error":{"message","type","param","code"}}. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mock.h"
#include "util.h"

void openai_error(hs_request *req, int status, const char *type, const char *code, const char *msg,
                  const hs_header *extra, int nextra) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":", msg, type);
  if (code) ob_printf(&M.out, "\"%s\"}}", code);
  else ob_printf(&M.out, "null}}");
  hs_respond(req, status, "application/json", extra, nextra, M.out.p, M.out.len);
}

static const char *openai_auth(const hs_request *req, char *buf, size_t cap) {
  return hs_header_get(req, "authorization");
}

/* Provider-realistic error for a scripted status. */
static void openai_status(mock_call *call, const mock_fault *f, hs_header *h, int n) {
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
  n = headers_merge(h, n, rl, f->status == 429 ? ARRAY_SIZE(rl) : 0, f);
  if (f->body) {
    hs_respond(call->req, f->status, "application/json", h, n, f->body, strlen(f->body));
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
  openai_error(call->req, f->status, type, code, msg, h, n);
}

/* ---- chat --------------------------------------------------------------------- */

static int chat_accept(mock_call *call, json_t *root) {
  hs_request *req = call->req;
  if (!bearer_ok(hs_header_get(req, "authorization"))) {
    log_request(req, 401, NULL);
    openai_error(req, 401, "invalid_request_error", "invalid_api_key",
                 "You didn't provide an API key (mock: Authorization: Bearer required)", NULL, 0);
    return -1;
  }
  json_t *model = root ? json_object_get(root, "model") : NULL;
  if (!json_is_object(root) || !json_is_string(model)) {
    log_request(req, 400, NULL);
    openai_error(req, 400, "invalid_request_error", root ? "missing_model" : "invalid_json",
                 root ? "you must provide a model parameter" : "We could not parse the JSON body of your request.",
                 NULL, 0);
    return -1;
  }
  openai_chat_setup(call, root, json_string_value(model), json_string_length(model));
  return 0;
}

void openai_chat_setup(mock_call *call, json_t *root, const char *m, size_t n) {
  call->stream = json_is_true(json_object_get(root, "stream"));
  call->include_usage = json_is_true(json_object_get(json_object_get(root, "stream_options"), "include_usage"));
  call->model_esc = esc_dup(m, n);
}

/* Azure's per-choice annotation (§3): every category checked, nothing filtered. */
#define AZ_CFR                                                                                      \
  "\"content_filter_results\":{\"hate\":{\"filtered\":false,\"severity\":\"safe\"},\"self_harm\":"         \
  "{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},"      \
  "\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}"
#define AZ_PFR                                                                                      \
  "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{\"hate\":{\"filtered\":"   \
  "false,\"severity\":\"safe\"},\"jailbreak\":{\"filtered\":false,\"detected\":false},\"self_harm\":"   \
  "{\"filtered\":false,\"severity\":\"safe\"},\"sexual\":{\"filtered\":false,\"severity\":\"safe\"},"      \
  "\"violence\":{\"filtered\":false,\"severity\":\"safe\"}}}]"

static void tool_id(obuf *b, const mock_fault *f, int i) {
  if (f->tools[i].id_esc) ob_printf(b, "%s", f->tools[i].id_esc);
  else ob_printf(b, "call_mock_%d", i);
}

static void chat_whole(mock_call *call, obuf *b) {
  const mock_fault *f = call->f;
  int ntools = f ? f->ntools : 0;
  ob_printf(b,
            "{\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion\",\"created\":%ld,\"model\":\"%s\","
            "\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":",
            (unsigned long long)call->seq, call->created, call->model_esc);
  if (ntools && !call->content[0]) ob_printf(b, "null");
  else ob_printf(b, "\"%s\"", esc_tmp(call->content, strlen(call->content)));
  if (ntools) {
    ob_printf(b, ",\"tool_calls\":[");
    for (int i = 0; i < ntools; i++) {
      ob_printf(b, "%s{\"id\":\"", i ? "," : "");
      tool_id(b, f, i);
      ob_printf(b, "\",\"type\":\"function\",\"function\":{\"name\":\"%s\",\"arguments\":\"%s\"}}",
                f->tools[i].name_esc, f->tools[i].args_esc);
    }
    ob_printf(b, "]");
  }
  ob_printf(b,
            "},\"finish_reason\":\"%s\",\"logprobs\":null%s}],%s"
            "\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}",
            ntools ? "tool_calls" : "stop", call->azure ? "," AZ_CFR : "", call->azure ? AZ_PFR "," : "",
            call->prompt_tokens, call->words, call->prompt_tokens + call->words);
}

static void chunk_prefix(obuf *b, mock_call *call) {
  ob_printf(b, "data: {\"id\":\"chatcmpl-mock-%llu\",\"object\":\"chat.completion.chunk\",\"created\":%ld,"
               "\"model\":\"%s\",",
            (unsigned long long)call->seq, call->created, call->model_esc);
}

static void chat_begin(mock_call *call, obuf *b) {
  if (call->azure) /* the prompt annotation comes first, with empty id/model/object */
    ob_printf(b, "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\"," AZ_PFR "}\n\n");
  chunk_prefix(b, call);
  ob_printf(b, "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
               "\"finish_reason\":null%s}]}\n\n", call->azure ? ",\"content_filter_results\":{}" : "");
}

static void chat_unit(mock_call *call, obuf *b, const mock_unit *u) {
  chunk_prefix(b, call);
  switch (u->kind) {
    case MU_TEXT:
      ob_printf(b, "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"},\"finish_reason\":null%s}]}\n\n",
                esc_tmp(u->s, u->n), call->azure ? "," AZ_CFR : "");
      break;
    case MU_TOOL_START: /* id, type and name only in the first delta of a call */
      ob_printf(b, "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d,\"id\":\"", u->tool);
      tool_id(b, call->f, u->tool);
      ob_printf(b, "\",\"type\":\"function\",\"function\":{\"name\":\"%s\",\"arguments\":\"%s\"}}]},"
                   "\"finish_reason\":null}]}\n\n",
                call->f->tools[u->tool].name_esc, esc_tmp(u->s, u->n));
      break;
    case MU_TOOL_ARGS:
      ob_printf(b, "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":%d,\"function\":{\"arguments\":\"%s\"}}]},"
                   "\"finish_reason\":null}]}\n\n",
                u->tool, esc_tmp(u->s, u->n));
      break;
  }
}

static void chat_finish(mock_call *call, obuf *b) {
  if (call->azure) { /* asynchronous-filter annotation: a choice without a delta */
    size_t n = strlen(call->content);
    chunk_prefix(b, call);
    ob_printf(b, "\"choices\":[{\"index\":0,\"finish_reason\":null," AZ_CFR ",\"content_filter_offsets\":"
                 "{\"check_offset\":0,\"start_offset\":0,\"end_offset\":%zu}}]}\n\n", n);
  }
  chunk_prefix(b, call);
  ob_printf(b, "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"%s\"%s}]}\n\n",
            call->f && call->f->ntools ? "tool_calls" : "stop", call->azure ? ",\"content_filter_results\":{}" : "");
  if (call->include_usage) {
    chunk_prefix(b, call);
    ob_printf(b, "\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":%d,\"total_tokens\":%d}}\n\n",
              call->prompt_tokens, call->words, call->prompt_tokens + call->words);
  }
  ob_printf(b, "data: [DONE]\n\n");
}

static void chat_stream_error(mock_call *call, obuf *b) {
  ob_printf(b, "data: {\"error\":{\"message\":\"The server had an error while processing your request "
               "(scripted mid-stream by the mock)\",\"type\":\"server_error\",\"param\":null,\"code\":null}}\n\n");
}

static void chat_junk(mock_call *call, obuf *b, enum mock_junk where, const char *s, size_t n) {
  switch (where) {
    case MJ_BEGIN: ob_printf(b, "data: {\"id\": oops this is not json\n\n"); break;
    case MJ_UNIT: ob_printf(b, "data: <garbage %.*s>\n\n", (int)n, s); break;
    case MJ_FINISH: ob_printf(b, "data: [DONE]\n\n"); break;
  }
}

/* ---- embeddings --------------------------------------------------------------- */

/* input: "text" | ["a","b"] | [token ids] | [[token ids]]; token arrays embed their JSON. */
int openai_embed_input_ok(json_t *in) {
  if (json_is_string(in)) return 1;
  if (!json_is_array(in) || json_array_size(in) == 0) return 0;
  size_t i;
  json_t *v;
  int ints = 1;
  json_array_foreach(in, i, v) ints &= json_is_integer(v);
  if (ints) return 1;
  json_array_foreach(in, i, v) if (!json_is_string(v) && !json_is_array(v)) return 0;
  return 1;
}

static int embed_accept(mock_call *call, json_t *root) {
  hs_request *req = call->req;
  if (!bearer_ok(hs_header_get(req, "authorization"))) {
    log_request(req, 401, NULL);
    openai_error(req, 401, "invalid_request_error", "invalid_api_key",
                 "You didn't provide an API key (mock: Authorization: Bearer required)", NULL, 0);
    return -1;
  }
  json_t *model = root ? json_object_get(root, "model") : NULL;
  const char *msg = !json_is_object(root) ? "We could not parse the JSON body of your request."
                    : !json_is_string(model) ? "you must provide a model parameter"
                    : !openai_embed_input_ok(json_object_get(root, "input")) ? "'input' must be a string or an array of strings or token arrays"
                    : NULL;
  if (msg) {
    log_request(req, 400, NULL);
    openai_error(req, 400, "invalid_request_error", "invalid_value", msg, NULL, 0);
    return -1;
  }
  call->model_esc = esc_dup(json_string_value(model), json_string_length(model));
  return 0;
}

static void ob_base64(obuf *b, const unsigned char *p, size_t n) {
  static const char tbl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  ob_reserve(b, (n + 2) / 3 * 4);
  for (size_t i = 0; i < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (i + 1 < n ? (uint32_t)p[i + 1] << 8 : 0) | (i + 2 < n ? p[i + 2] : 0);
    char q[4] = {tbl[v >> 18 & 63], tbl[v >> 12 & 63], i + 1 < n ? tbl[v >> 6 & 63] : '=', i + 2 < n ? tbl[v & 63] : '='};
    ob_add(b, q, 4);
  }
}

static void embed_one(obuf *b, int index, const char *s, size_t n, int dims, int b64, int *tokens) {
  float v[4096];
  embed_vector(s, n, dims, v);
  ob_printf(b, "%s{\"object\":\"embedding\",\"index\":%d,\"embedding\":", index ? "," : "", index);
  if (b64) { /* little-endian float32 (x86), as the openai SDK asks for by default */
    ob_add(b, "\"", 1);
    ob_base64(b, (const unsigned char *)v, (size_t)dims * sizeof(float));
    ob_add(b, "\"", 1);
  } else {
    ob_vector(b, v, dims);
  }
  ob_add(b, "}", 1);
  *tokens += n / 4 > 0 ? (int)(n / 4) : 1;
}

static void embed_whole(mock_call *call, obuf *b) {
  json_t *in = json_object_get(call->root, "input");
  int dims = json_dims(json_object_get(call->root, "dimensions"), 8);
  const char *enc = json_string_value(json_object_get(call->root, "encoding_format"));
  int b64 = enc && strcmp(enc, "base64") == 0, tokens = 0, idx = 0;
  ob_printf(b, "{\"object\":\"list\",\"data\":[");
  int ints = json_is_array(in);
  size_t i;
  json_t *v;
  json_array_foreach(in, i, v) ints &= json_is_integer(v);
  if (json_is_string(in)) {
    embed_one(b, idx++, json_string_value(in), json_string_length(in), dims, b64, &tokens);
  } else if (ints) {
    char *s = json_dumps(in, JSON_COMPACT);
    embed_one(b, idx++, s, strlen(s), dims, b64, &tokens);
    free(s);
  } else {
    json_array_foreach(in, i, v) {
      if (json_is_string(v)) {
        embed_one(b, idx++, json_string_value(v), json_string_length(v), dims, b64, &tokens);
      } else {
        char *s = json_dumps(v, JSON_COMPACT);
        embed_one(b, idx++, s, strlen(s), dims, b64, &tokens);
        free(s);
      }
    }
  }
  ob_printf(b, "],\"model\":\"%s\",\"usage\":{\"prompt_tokens\":%d,\"total_tokens\":%d}}", call->model_esc, tokens,
            tokens);
}

const mock_format mock_openai = {
    .name = "openai",
    .stream_type = "text/event-stream",
    .args_fragments = 1,
    .auth = openai_auth,
    .error = openai_status,
    .begin = chat_begin,
    .unit = chat_unit,
    .finish = chat_finish,
    .stream_error = chat_stream_error,
    .junk = chat_junk,
};

const mock_endpoint mock_openai_chat = {&mock_openai, chat_accept, chat_whole};
const mock_endpoint mock_openai_embed = {&mock_openai, embed_accept, embed_whole};
