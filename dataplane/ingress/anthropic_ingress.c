/* anthropic_ingress.c — Anthropic Messages ingress: POST /v1/messages ⇄ canonical OpenAI chat.
 *
 * The reverse of providers/anthropic.c; both tables must stay consistent (a request that
 * goes Anthropic → OpenAI here and OpenAI → Anthropic there comes back equivalent).
 *
 * Request mapping (Anthropic field → canonical OpenAI; anything not listed is ignored):
 * | Anthropic                        | OpenAI                                     | How                    |
 * |----------------------------------|--------------------------------------------|------------------------|
 * | model (required)                 | model, kept as is (the client's alias)     | copied; also info.model|
 * | max_tokens (required, ≥ 1)       | max_tokens                                 | missing → 400 like     |
 * |                                  |                                            | Anthropic              |
 * | system string                    | leading {role: system, content: string}    | mapped ("" dropped)    |
 * | system text blocks               | one system message: string joined "\n\n"; | mapped (the adapter    |
 * |                                  | text parts if any block has cache_control  | joins the same way)    |
 * | messages[].content string        | content string                             | mapped                 |
 * | content blocks                   | content parts; a single plain text block → | mapped (strings work   |
 * |                                  | a string                                   | with every server)     |
 * | text block (+ cache_control)     | {type: text, text (+ cache_control)}       | mapped; cache_control  |
 * |                                  |                                            | is an llmesh extension |
 * |                                  |                                            | the adapter restores   |
 * | image base64                     | image_url {url: data:<mime>;base64,<data>} | mapped                 |
 * | image url                        | image_url {url}                            | mapped; other → 400    |
 * | tool_use (assistant)             | tool_calls[] {id, type function, name,     | mapped (the client's   |
 * |                                  |   arguments = JSON text of input}          | exact bytes of input)  |
 * | tool_result (user)               | {role: tool, tool_call_id, content}, placed| mapped; OpenAI needs   |
 * |                                  | before the rest of that user message       | tool messages first    |
 * | tool_result content              | string; text blocks joined "\n\n"; with    | mapped                 |
 * |                                  | images: text + image_url parts             |                        |
 * | tool_result is_error: true       | content prefixed "Error: " ("Error" when   | mapped (OpenAI has no  |
 * |                                  | empty)                                     | flag; the model still  |
 * |                                  |                                            | learns the tool failed)|
 * | thinking / redacted_thinking     | –                                          | dropped (no slot; the  |
 * |   (assistant history)            |                                            | signature can't be     |
 * |                                  |                                            | round-tripped)         |
 * | document, server tool blocks, ...| –                                          | 400                    |
 * | assistant with only tool_use     | content null + tool_calls                  | mapped                 |
 * | stop_sequences                   | stop (array)                               | mapped                 |
 * | temperature, top_p, top_k        | temperature, top_p, top_k (vLLM extension) | passthrough            |
 * | tools[] {name, description,      | tools[] {type function, function {name,    | mapped; server tools   |
 * |   input_schema}                  |   description, parameters}}                | (typed) → 400          |
 * | tool_choice auto / any / none    | "auto" / "required" / "none"               | mapped                 |
 * | tool_choice {type tool, name}    | {type function, function {name}}           | mapped                 |
 * | disable_parallel_tool_use: true  | parallel_tool_calls: false                 | mapped                 |
 * | tool_choice without tools        | –                                          | dropped (OpenAI 400s)  |
 * | metadata.user_id                 | user                                       | mapped                 |
 * | stream: true                     | stream + stream_options.include_usage      | mapped (Anthropic      |
 * |                                  |                                            | streams carry usage)   |
 * | output_format / output_config.   | response_format {type json_schema,         | mapped                 |
 * |   format {json_schema, schema}   |   json_schema {name "output", schema}}     |                        |
 * | thinking                         | –                                          | dropped, noted in      |
 * |                                  |                                            | info.dropped           |
 * | service_tier, container, ...     | –                                          | ignored                |
 *
 * Response mapping (chat.completion → message): id = the completion id when it starts with
 * "msg_", else "msg_" + id; model = the client's alias; content = a text block (when the
 * text or refusal is non-empty) then one tool_use block per tool call, input = the arguments
 * text spliced in as sent (no re-encoding; "" → {}; not a JSON object, e.g. cut at max_tokens → {} and counted in the
 * return value); reasoning_content dropped (no signature to give the client).
 * finish_reason → stop_reason (§9.3 reverse): stop → end_turn (stop_sequence + the string
 * when the upstream reports it, vLLM "stop_reason"), length → max_tokens, tool_calls /
 * function_call → tool_use, content_filter → refusal, null/unknown → end_turn; any tool
 * call present → tool_use (some servers say "stop" with tool calls, and Anthropic clients
 * loop on tool_use; length and content_filter still win). usage: input_tokens = prompt −
 * cached, output_tokens = completion, cache_read_input_tokens = cached (only when the
 * upstream reported cached_tokens; cache writes have no OpenAI field and stay in input).
 *
 * Stream (§9.6, OpenAI chunks → Anthropic events): message_start on the first chunk (id as
 * above, usage zeros: input is unknown until the usage chunk); a text block opens on the
 * first content (or refusal) delta; each new tool_calls[].index closes the open block and
 * opens a tool_use block {id, name, input {}}, argument fragments become input_json_delta;
 * finish_reason closes the open block; at [DONE]: message_delta {stop_reason, usage with
 * input/output/cache_read tokens when the usage chunk came, else output_tokens 0} and
 * message_stop. Arguments for a tool whose block was already closed (interleaved parallel
 * calls) cannot be expressed in Anthropic's event order: error event, AI_GARBAGE.
 * In-band {"error":...} → event: error, AI_ERROR. Upstream [DONE] is not forwarded. */
#include "anthropic_ingress.h"

#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_span.h"
#include "prov_json.h"
#include "sse_decoder.h"

#define AI_MAX_LINE (8u << 20)  /* bytes; an SSE line or event above this is garbage */
#define AI_MAX_TOOLS 4096       /* tool calls per message; more is garbage */
#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1) /* appends a string literal */
#define AI_DUMP_FLAGS JSON_COMPACT /* with prov_json_dumps: reals in their shortest form */
#define AI_NO_ID "msg_llmesh" /* id when the upstream sent none */

/* ---------------------------------------------------------------- shared helpers */


static int esc_cstr(buf_t *b, const char *s) { return buf_json_quote(b, s, strlen(s)); }

static const char *str_or(const json_t *v, const char *dflt) {
  return json_is_string(v) ? json_string_value(v) : dflt;
}

static uint64_t u64_of(const json_t *v) {
  return prov_uint(v);
}

/* OpenAI finish_reason → Anthropic stop_reason (§9.3 reverse). */
static const char *ai_stop_reason(const char *finish, int tools) {
  if (!finish) finish = "";
  if (!strcmp(finish, "length")) return "max_tokens"; /* even mid tool call: it was cut */
  if (!strcmp(finish, "content_filter")) return "refusal";
  if (tools || !strcmp(finish, "tool_calls") || !strcmp(finish, "function_call")) return "tool_use";
  return "end_turn"; /* stop, null, and values added later */
}

/* "msg_" ids pass; others get the prefix Anthropic clients expect. */
static int msg_id_append(buf_t *b, const char *id) {
  if (!id || !*id) return esc_cstr(b, AI_NO_ID);
  if (!strncmp(id, "msg_", 4)) return esc_cstr(b, id);
  buf_t t = {0};
  int rc = LIT(&t, "msg_") || buf_append(&t, id, strlen(id)) ? -ENOMEM : buf_json_quote(b, t.data, t.len);
  buf_free(&t);
  return rc;
}

static const char *const anth_error_types[] = {
    "invalid_request_error", "authentication_error", "permission_error", "not_found_error",
    "request_too_large", "rate_limit_error", "api_error", "overloaded_error", "billing_error",
};

const char *ai_error_type(int status) {
  switch (status) {
    case 400: return "invalid_request_error";
    case 401: return "authentication_error";
    case 402: return "billing_error";
    case 403: return "permission_error";
    case 404: return "not_found_error";
    case 413: return "request_too_large";
    case 429: return "rate_limit_error";
    case 503: /* llmesh: no deployment has capacity now — retry later, like Anthropic's 529 */
    case 529: return "overloaded_error";
    default: return status >= 400 && status < 500 ? "invalid_request_error" : "api_error";
  }
}

/* Error type from an OpenAI error object's type/code; NULL when they say nothing we know.
 * An Anthropic type in code is taken as is: the anthropic adapter puts it there. */
static const char *error_type_of(const json_t *e) {
  const char *f[2] = {str_or(json_object_get(e, "code"), ""), str_or(json_object_get(e, "type"), "")};
  for (size_t k = 0; k < 2; k++)
    for (size_t i = 0; i < ARRAY_SIZE(anth_error_types); i++)
      if (!strcmp(f[k], anth_error_types[i])) return anth_error_types[i];
  for (size_t k = 0; k < 2; k++) {
    if (strstr(f[k], "rate_limit") || !strcmp(f[k], "insufficient_quota")) return "rate_limit_error";
    if (strstr(f[k], "overload")) return "overloaded_error";
  }
  return NULL;
}

static const char *error_message_of(const json_t *e) {
  if (json_is_string(e) && json_string_length(e)) return json_string_value(e);
  const char *m = str_or(json_object_get(e, "message"), "");
  return *m ? m : NULL;
}

int ai_error_body(const char *type, const char *message, buf_t *out) {
  if (LIT(out, "{\"type\":\"error\",\"error\":{\"type\":") || esc_cstr(out, type) ||
      LIT(out, ",\"message\":") || esc_cstr(out, message) || LIT(out, "}}"))
    return -ENOMEM;
  return 0;
}

int ai_error_from_openai(int status, const char *body, size_t len, buf_t *out) {
  json_t *j = body && len ? prov_json_loadb(body, len, 0, NULL) : NULL;
  const json_t *e = json_object_get(j, "error");
  const char *type = ai_error_type(status);
  const char *named = error_type_of(e);
  /* The status decides (SDKs key on it); the body only refines 5xx into overloaded. */
  if (status >= 500 && named && !strcmp(named, "overloaded_error")) type = named;
  const char *msg = error_message_of(e);
  char dflt[64];
  if (!msg) {
    snprintf(dflt, sizeof dflt, "The request failed (HTTP %d).", status);
    msg = dflt;
  }
  int rc = ai_error_body(type, msg, out);
  json_decref(j);
  return rc;
}

/* ---------------------------------------------------------------- request */

typedef struct rq_ctx {
  char *err;          /* client-facing message on -EINVAL */
  size_t errlen;      /* bytes in err */
  int oom;            /* an allocation failed somewhere while building */
  ai_req_info *info;  /* filled as fields are read */
  const char *body;   /* the client's request text: tool inputs are copied from it */
  size_t len;         /* bytes in body */
} rq_ctx;

static int bad(rq_ctx *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int bad(rq_ctx *x, const char *fmt, ...) {
  if (x->err && x->errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->err, x->errlen, fmt, ap);
    va_end(ap);
  }
  return -EINVAL;
}

static void put(rq_ctx *x, json_t *obj, const char *key, json_t *v) {
  if (!v || json_object_set_new(obj, key, v)) x->oom = 1;
}

static void push(rq_ctx *x, json_t *arr, json_t *v) {
  if (!v || json_array_append_new(arr, v)) x->oom = 1;
}

static void note_dropped(rq_ctx *x, const char *field) {
  char *d = x->info->dropped;
  size_t n = strlen(d);
  if (strstr(d, field)) return;
  snprintf(d + n, sizeof x->info->dropped - n, "%s%s", n ? "," : "", field);
}

/* {type: text, text (, cache_control)} → OpenAI text part. */
static int text_part(rq_ctx *x, const char *where, const json_t *blk, json_t *parts) {
  const json_t *t = json_object_get(blk, "text");
  if (!json_is_string(t)) return bad(x, "%s.text: Input should be a valid string", where);
  json_t *p = json_object();
  if (!p) { x->oom = 1; return 0; }
  put(x, p, "type", json_string("text"));
  put(x, p, "text", json_incref((json_t *)t));
  const json_t *cc = json_object_get(blk, "cache_control");
  if (json_is_object(cc)) put(x, p, "cache_control", json_incref((json_t *)cc));
  push(x, parts, p);
  return 0;
}

/* image {source: base64 | url} → image_url part (data URL or the URL). */
static int image_part(rq_ctx *x, const char *where, const json_t *blk, json_t *parts) {
  const json_t *src = json_object_get(blk, "source");
  const char *type = str_or(json_object_get(src, "type"), "");
  buf_t url = {0};
  if (!strcmp(type, "base64")) {
    const char *mt = str_or(json_object_get(src, "media_type"), NULL);
    const char *data = str_or(json_object_get(src, "data"), NULL);
    if (!mt || !data || !*mt)
      return bad(x, "%s.source: base64 images need string media_type and data", where);
    if (buf_printf(&url, "data:%s;base64,%s", mt, data)) x->oom = 1;
  } else if (!strcmp(type, "url")) {
    const char *u = str_or(json_object_get(src, "url"), NULL);
    if (!u) return bad(x, "%s.source.url: Input should be a valid string", where);
    if (buf_append(&url, u, strlen(u))) x->oom = 1;
  } else {
    return bad(x, "%s.source.type: image sources must be base64 or url", where);
  }
  json_t *p = json_pack("{s:s,s:{s:s#}}", "type", "image_url", "image_url", "url",
                        url.data ? url.data : "", url.len);
  buf_free(&url);
  push(x, parts, p);
  return 0;
}

/* Parts → OpenAI content: a single plain text part becomes a string (works everywhere). */
static json_t *parts_value(json_t *parts) {
  json_t *p0 = json_array_get(parts, 0);
  if (json_array_size(parts) == 1 && !strcmp(str_or(json_object_get(p0, "type"), ""), "text") &&
      !json_object_get(p0, "cache_control"))
    return json_incref(json_object_get(p0, "text"));
  return json_incref(parts);
}

/* Text parts joined with sep into a string; NULL when a part is not text. */
static json_t *parts_joined(json_t *parts, const char *sep) {
  buf_t s = {0};
  size_t i;
  json_t *p;
  json_array_foreach(parts, i, p) {
    if (strcmp(str_or(json_object_get(p, "type"), ""), "text")) { buf_free(&s); return NULL; }
    const json_t *t = json_object_get(p, "text");
    if ((i && buf_append(&s, sep, strlen(sep))) ||
        buf_append(&s, json_string_value(t), json_string_length(t))) {
      buf_free(&s);
      return NULL;
    }
  }
  json_t *v = json_stringn(s.data ? s.data : "", s.len);
  buf_free(&s);
  return v;
}

static int system_convert(rq_ctx *x, const json_t *sys, json_t *msgs) {
  if (!sys || json_is_null(sys)) return 0;
  json_t *content = NULL;
  if (json_is_string(sys)) {
    if (!json_string_length(sys)) return 0;
    content = json_incref((json_t *)sys);
  } else if (json_is_array(sys)) {
    json_t *parts = json_array();
    if (!parts) { x->oom = 1; return 0; }
    size_t i;
    const json_t *b;
    int cached = 0, rc;
    json_array_foreach(sys, i, b) {
      char where[48];
      snprintf(where, sizeof where, "system.%zu", i);
      if (strcmp(str_or(json_object_get(b, "type"), ""), "text")) {
        json_decref(parts);
        return bad(x, "%s.type: system blocks must be text blocks", where);
      }
      if ((rc = text_part(x, where, b, parts))) { json_decref(parts); return rc; }
      if (json_is_object(json_object_get(b, "cache_control"))) cached = 1;
    }
    if (!json_array_size(parts)) { json_decref(parts); return 0; }
    content = cached ? json_incref(parts) : parts_joined(parts, "\n\n");
    json_decref(parts);
    if (!content) { x->oom = 1; return 0; }
  } else {
    return bad(x, "system: Input should be a valid string or list of text blocks");
  }
  json_t *m = json_object();
  if (!m) { json_decref(content); x->oom = 1; return 0; }
  put(x, m, "role", json_string("system"));
  put(x, m, "content", content);
  push(x, msgs, m);
  return 0;
}

/* tool_result → {role: tool, tool_call_id, content}. */
static int tool_message(rq_ctx *x, const char *where, const json_t *blk, json_t *msgs) {
  const json_t *id = json_object_get(blk, "tool_use_id");
  if (!json_is_string(id)) return bad(x, "%s.tool_use_id: Input should be a valid string", where);
  const json_t *c = json_object_get(blk, "content");
  int is_error = json_is_true(json_object_get(blk, "is_error"));
  json_t *content = NULL, *parts = json_array();
  if (!parts) { x->oom = 1; return 0; }
  if (!c || json_is_null(c) || json_is_string(c)) {
    const char *s = str_or(c, "");
    push(x, parts, json_pack("{s:s,s:s}", "type", "text", "text", s));
  } else if (json_is_array(c)) {
    size_t i;
    const json_t *b;
    json_array_foreach(c, i, b) {
      char w[96];
      snprintf(w, sizeof w, "%s.content.%zu", where, i);
      const char *t = str_or(json_object_get(b, "type"), "");
      int rc = !strcmp(t, "text")    ? text_part(x, w, b, parts)
               : !strcmp(t, "image") ? image_part(x, w, b, parts)
                                     : bad(x, "%s.type: tool results may hold text and image blocks", w);
      if (rc) { json_decref(parts); return rc; }
    }
  } else {
    json_decref(parts);
    return bad(x, "%s.content: Input should be a valid string or list of blocks", where);
  }
  if (is_error) { /* no OpenAI flag: say it in the text the model reads */
    json_t *first = json_array_get(parts, 0);
    if (!first || strcmp(str_or(json_object_get(first, "type"), ""), "text")) {
      if (json_array_insert_new(parts, 0, json_pack("{s:s,s:s}", "type", "text", "text", "")))
        x->oom = 1;
      first = json_array_get(parts, 0);
    }
    const json_t *t = json_object_get(first, "text");
    buf_t s = {0};
    if (json_string_length(t) ? LIT(&s, "Error: ") : LIT(&s, "Error")) x->oom = 1;
    if (buf_append(&s, json_string_value(t), json_string_length(t))) x->oom = 1;
    put(x, first, "text", json_stringn(s.data ? s.data : "", s.len));
    buf_free(&s);
  }
  content = parts_joined(parts, "\n\n"); /* images: keep parts (Anthropic upstreams take them) */
  if (!content) {
    for (size_t i = 0; i < json_array_size(parts); i++)
      json_object_del(json_array_get(parts, i), "cache_control");
    content = json_incref(parts);
  }
  json_decref(parts);
  json_t *m = json_object();
  if (!m || !content) { json_decref(m); json_decref(content); x->oom = 1; return 0; }
  put(x, m, "role", json_string("tool"));
  put(x, m, "tool_call_id", json_incref((json_t *)id));
  put(x, m, "content", content);
  push(x, msgs, m);
  return 0;
}

static int user_convert(rq_ctx *x, size_t mi, const json_t *content, json_t *msgs) {
  json_t *parts = json_array();
  if (!parts) { x->oom = 1; return 0; }
  size_t i, nresults = 0;
  const json_t *b;
  json_array_foreach(content, i, b) {
    char where[64];
    snprintf(where, sizeof where, "messages.%zu.content.%zu", mi, i);
    const char *t = str_or(json_object_get(b, "type"), "");
    int rc;
    if (!strcmp(t, "text")) rc = text_part(x, where, b, parts);
    else if (!strcmp(t, "image")) rc = image_part(x, where, b, parts);
    else if (!strcmp(t, "tool_result")) { rc = tool_message(x, where, b, msgs); nresults++; }
    else rc = bad(x, "%s.type: '%s' blocks are not supported in user messages here", where, t);
    if (rc) { json_decref(parts); return rc; }
  }
  if (json_array_size(parts) || !nresults) {
    if (!json_array_size(parts)) {
      json_decref(parts);
      return bad(x, "messages.%zu: all messages must have non-empty content except for the "
                 "optional final assistant message", mi);
    }
    json_t *m = json_object();
    if (!m) { x->oom = 1; json_decref(parts); return 0; }
    put(x, m, "role", json_string("user"));
    put(x, m, "content", parts_value(parts));
    push(x, msgs, m);
  }
  json_decref(parts);
  return 0;
}

/* tool_use block messages[mi].content[bi] → an OpenAI tool call whose arguments are the
 * client's own bytes of input (0.1 stays 0.1, a big integer stays whole). */
static int tool_call(rq_ctx *x, const char *where, size_t mi, size_t bi, const json_t *blk,
                     json_t *calls) {
  const json_t *id = json_object_get(blk, "id"), *name = json_object_get(blk, "name");
  const json_t *input = json_object_get(blk, "input");
  if (!json_is_string(id) || !json_is_string(name))
    return bad(x, "%s: tool_use blocks need string id and name", where);
  if (input && !json_is_object(input) && !json_is_null(input))
    return bad(x, "%s.input: Input should be a valid dictionary", where);
  json_span_step path[] = {{"messages", 0}, {NULL, mi}, {"content", 0}, {NULL, bi}, {"input", 0}};
  json_t *args = json_is_object(input) ? prov_json_raw(x->body, x->len, path, 5, input)
                                       : json_string("{}");
  if (!args) { x->oom = 1; return 0; }
  push(x, calls, json_pack("{s:O,s:s,s:{s:O,s:o}}", "id", id, "type", "function", "function",
                           "name", name, "arguments", args));
  return 0;
}

static int assistant_convert(rq_ctx *x, size_t mi, const json_t *content, json_t *msgs) {
  json_t *parts = json_array(), *calls = json_array();
  if (!parts || !calls) { json_decref(parts); json_decref(calls); x->oom = 1; return 0; }
  size_t i;
  const json_t *b;
  int rc = 0;
  json_array_foreach(content, i, b) {
    char where[64];
    snprintf(where, sizeof where, "messages.%zu.content.%zu", mi, i);
    const char *t = str_or(json_object_get(b, "type"), "");
    if (!strcmp(t, "text")) rc = text_part(x, where, b, parts);
    else if (!strcmp(t, "tool_use")) rc = tool_call(x, where, mi, i, b, calls);
    else if (!strcmp(t, "thinking") || !strcmp(t, "redacted_thinking")) note_dropped(x, t);
    else rc = bad(x, "%s.type: '%s' blocks are not supported in assistant messages here", where, t);
    if (rc) break;
  }
  json_t *m = rc ? NULL : json_object();
  if (m) {
    put(x, m, "role", json_string("assistant"));
    put(x, m, "content", json_array_size(parts) ? parts_value(parts)
                         : json_array_size(calls) ? json_null() : json_string(""));
    if (json_array_size(calls)) put(x, m, "tool_calls", json_incref(calls));
    push(x, msgs, m);
  } else if (!rc) {
    x->oom = 1;
  }
  json_decref(parts);
  json_decref(calls);
  return rc;
}

static int messages_convert(rq_ctx *x, const json_t *list, json_t *msgs) {
  if (!list) return bad(x, "messages: Field required");
  if (!json_is_array(list)) return bad(x, "messages: Input should be a valid list");
  size_t i;
  const json_t *m;
  json_array_foreach(list, i, m) {
    const char *role = str_or(json_object_get(m, "role"), "");
    const json_t *c = json_object_get(m, "content");
    int user = !strcmp(role, "user");
    if (!user && strcmp(role, "assistant"))
      return bad(x, "messages.%zu.role: Input should be 'user' or 'assistant'", i);
    int rc = 0;
    if (json_is_string(c)) {
      if (user && !json_string_length(c))
        return bad(x, "messages.%zu: all messages must have non-empty content except for the "
                   "optional final assistant message", i);
      push(x, msgs, json_pack("{s:s,s:O}", "role", role, "content", c));
    } else if (json_is_array(c)) {
      rc = user ? user_convert(x, i, c, msgs) : assistant_convert(x, i, c, msgs);
    } else if (!c) {
      return bad(x, "messages.%zu.content: Field required", i);
    } else {
      return bad(x, "messages.%zu.content: Input should be a valid string or list of blocks", i);
    }
    if (rc) return rc;
  }
  return 0;
}

static int tools_convert(rq_ctx *x, const json_t *tools, json_t *body) {
  if (!tools || json_is_null(tools)) return 0;
  if (!json_is_array(tools)) return bad(x, "tools: Input should be a valid list");
  json_t *out = json_array();
  if (!out) { x->oom = 1; return 0; }
  size_t i;
  const json_t *t;
  json_array_foreach(tools, i, t) {
    const char *type = str_or(json_object_get(t, "type"), "custom");
    const json_t *name = json_object_get(t, "name"), *schema = json_object_get(t, "input_schema");
    const json_t *desc = json_object_get(t, "description");
    int rc = 0;
    if (strcmp(type, "custom"))
      rc = bad(x, "tools.%zu.type: server tool '%s' is not supported by this gateway", i, type);
    else if (!json_is_string(name)) rc = bad(x, "tools.%zu.name: Input should be a valid string", i);
    else if (!json_is_object(schema))
      rc = bad(x, "tools.%zu.input_schema: Input should be a valid dictionary", i);
    if (rc) { json_decref(out); return rc; }
    json_t *fn = json_object();
    if (!fn) { x->oom = 1; break; }
    put(x, fn, "name", json_incref((json_t *)name));
    if (json_is_string(desc)) put(x, fn, "description", json_incref((json_t *)desc));
    put(x, fn, "parameters", json_incref((json_t *)schema));
    push(x, out, json_pack("{s:s,s:o}", "type", "function", "function", fn));
  }
  x->info->ntools = (int)json_array_size(out);
  if (json_array_size(out)) put(x, body, "tools", out);
  else json_decref(out);
  return 0;
}

static int tool_choice_convert(rq_ctx *x, const json_t *tc, json_t *body) {
  if (!tc || json_is_null(tc)) return 0;
  if (!json_is_object(tc)) return bad(x, "tool_choice: Input should be a valid dictionary");
  const char *type = str_or(json_object_get(tc, "type"), "");
  json_t *choice = NULL;
  if (!strcmp(type, "auto")) choice = json_string("auto");
  else if (!strcmp(type, "any")) choice = json_string("required");
  else if (!strcmp(type, "none")) choice = json_string("none");
  else if (!strcmp(type, "tool")) {
    const json_t *name = json_object_get(tc, "name");
    if (!json_is_string(name)) return bad(x, "tool_choice.name: Input should be a valid string");
    choice = json_pack("{s:s,s:{s:O}}", "type", "function", "function", "name", name);
  } else {
    return bad(x, "tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'");
  }
  if (!json_object_get(body, "tools")) { json_decref(choice); return 0; } /* OpenAI rejects it alone */
  put(x, body, "tool_choice", choice);
  if (json_is_true(json_object_get(tc, "disable_parallel_tool_use")) && strcmp(type, "none"))
    put(x, body, "parallel_tool_calls", json_false());
  return 0;
}

static int sampling_convert(rq_ctx *x, const json_t *in, json_t *body) {
  static const char *const num[] = {"temperature", "top_p"};
  for (size_t i = 0; i < ARRAY_SIZE(num); i++) {
    const json_t *v = json_object_get(in, num[i]);
    if (!v || json_is_null(v)) continue;
    if (!json_is_number(v)) return bad(x, "%s: Input should be a valid number", num[i]);
    put(x, body, num[i], json_incref((json_t *)v));
  }
  const json_t *k = json_object_get(in, "top_k");
  if (k && !json_is_null(k)) {
    json_int_t kv; /* an integral real too: a big number elsewhere loads every integer so */
    if (!prov_int(k, &kv)) return bad(x, "top_k: Input should be a valid integer");
    put(x, body, "top_k", json_integer(kv));
  }
  const json_t *stop = json_object_get(in, "stop_sequences");
  if (stop && !json_is_null(stop)) {
    size_t i;
    const json_t *s;
    if (!json_is_array(stop)) return bad(x, "stop_sequences: Input should be a valid list");
    json_array_foreach(stop, i, s) {
      if (!json_is_string(s)) return bad(x, "stop_sequences.%zu: Input should be a valid string", i);
    }
    if (json_array_size(stop)) put(x, body, "stop", json_incref((json_t *)stop));
  }
  return 0;
}

/* output_format / output_config.format {type json_schema, schema} → response_format. */
static int output_format_convert(rq_ctx *x, const json_t *in, json_t *body) {
  const json_t *f = json_object_get(json_object_get(in, "output_config"), "format");
  if (!f || json_is_null(f)) f = json_object_get(in, "output_format");
  if (!f || json_is_null(f)) return 0;
  const json_t *schema = json_object_get(f, "schema");
  if (strcmp(str_or(json_object_get(f, "type"), ""), "json_schema") || !json_is_object(schema))
    return bad(x, "output_format: only {\"type\": \"json_schema\", \"schema\": {...}} is supported");
  put(x, body, "response_format", json_pack("{s:s,s:{s:s,s:O}}", "type", "json_schema",
                                            "json_schema", "name", "output", "schema", schema));
  return 0;
}

static int body_convert(rq_ctx *x, const json_t *in, json_t *body) {
  const json_t *model = json_object_get(in, "model"), *mt = json_object_get(in, "max_tokens");
  int rc;
  if (!model) return bad(x, "model: Field required");
  if (!json_is_string(model) || !json_string_length(model))
    return bad(x, "model: Input should be a valid string");
  if (json_string_length(model) >= AI_MODEL_MAX || strlen(json_string_value(model)) != json_string_length(model))
    return bad(x, "model: String should have at most %d characters", AI_MODEL_MAX - 1);
  if (!mt) return bad(x, "max_tokens: Field required");
  json_int_t mtv; /* an integral real too: a big number elsewhere loads every integer so */
  if (!prov_int(mt, &mtv)) return bad(x, "max_tokens: Input should be a valid integer");
  if (mtv < 1) return bad(x, "max_tokens: Input should be greater than or equal to 1");
  const json_t *stream = json_object_get(in, "stream");
  if (stream && !json_is_boolean(stream) && !json_is_null(stream))
    return bad(x, "stream: Input should be a valid boolean");
  snprintf(x->info->model, sizeof x->info->model, "%s", json_string_value(model));
  x->info->stream = json_is_true(stream);

  json_t *msgs = json_array();
  if (!msgs) { x->oom = 1; return 0; }
  put(x, body, "model", json_incref((json_t *)model));
  put(x, body, "messages", msgs);
  if ((rc = system_convert(x, json_object_get(in, "system"), msgs)) ||
      (rc = messages_convert(x, json_object_get(in, "messages"), msgs)))
    return rc;
  put(x, body, "max_tokens", json_integer(mtv));
  if ((rc = sampling_convert(x, in, body)) ||
      (rc = tools_convert(x, json_object_get(in, "tools"), body)) ||
      (rc = tool_choice_convert(x, json_object_get(in, "tool_choice"), body)) ||
      (rc = output_format_convert(x, in, body)))
    return rc;
  const json_t *meta = json_object_get(in, "metadata");
  const json_t *user = json_object_get(meta, "user_id");
  if (json_is_string(user) && json_string_length(user)) put(x, body, "user", json_incref((json_t *)user));
  const json_t *thinking = json_object_get(in, "thinking");
  if (thinking && !json_is_null(thinking)) note_dropped(x, "thinking");
  if (x->info->stream) {
    put(x, body, "stream", json_true());
    put(x, body, "stream_options", json_pack("{s:b}", "include_usage", 1));
  }
  return 0;
}

int ai_request_to_openai(const char *body, size_t len, buf_t *out, ai_req_info *info, char *err,
                         size_t errlen) {
  ai_req_info scratch;
  if (!info) info = &scratch;
  memset(info, 0, sizeof *info);
  rq_ctx x = {.err = err, .errlen = errlen, .info = info, .body = body ? body : "", .len = len};
  json_error_t je;
  json_t *in = prov_json_loadb(body ? body : "", len, 0, &je);
  json_t *o = json_object();
  int rc;
  if (!o) rc = -ENOMEM;
  else if (!in) rc = bad(&x, "The request body is not valid JSON: %s (line %d, column %d)", je.text,
                         je.line, je.column);
  else if (!json_is_object(in)) rc = bad(&x, "The request body must be a JSON object");
  else rc = body_convert(&x, in, o);
  if (!rc && x.oom) rc = -ENOMEM;
  if (!rc) {
    char *s = prov_json_dumps(o, AI_DUMP_FLAGS);
    if (!s || buf_append(out, s, strlen(s))) rc = -ENOMEM;
    free(s);
  }
  if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "Out of memory.");
  if (rc) memset(info, 0, sizeof *info);
  json_decref(o);
  json_decref(in);
  return rc;
}

/* ---------------------------------------------------------------- whole response */

/* Anthropic usage from an OpenAI usage object. */
static json_t *usage_of(const json_t *u) {
  uint64_t p = u64_of(json_object_get(u, "prompt_tokens"));
  uint64_t c = u64_of(json_object_get(u, "completion_tokens"));
  const json_t *cached = json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
  uint64_t k = u64_of(cached);
  if (k > p) k = p;
  json_t *o = json_pack("{s:I,s:I}", "input_tokens", (json_int_t)(p - k), "output_tokens", (json_int_t)c);
  if (o && json_is_integer(cached) &&
      json_object_set_new(o, "cache_read_input_tokens", json_integer((json_int_t)k))) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* arguments text → input object (a splice mark: the text goes out as is); "" → {}; NULL
 * when not an object (*oom set when the mark could not be made). */
static json_t *args_input(const json_t *args, prov_splice *sp, int *oom) {
  if (json_is_object(args)) return json_incref((json_t *)args);
  if (!args || json_is_null(args) ||
      (json_is_string(args) &&
       strspn(json_string_value(args), " \t\r\n") == json_string_length(args)))
    return json_object();
  json_span v;
  if (!json_is_string(args) ||
      !prov_json_object_text(json_string_value(args), json_string_length(args), &v))
    return NULL;
  json_t *m = prov_splice_mark(sp, v.p, v.len);
  if (!m) *oom = 1;
  return m;
}

/* Fills content blocks from an OpenAI message; returns bad-argument count or -ENOMEM. */
static int response_content(const json_t *msg, const char *id_prefix, json_t *content,
                            prov_splice *sp) {
  const json_t *text = json_object_get(msg, "content");
  if (!json_is_string(text) || !json_string_length(text)) text = json_object_get(msg, "refusal");
  if (json_is_string(text) && json_string_length(text) &&
      json_array_append_new(content, json_pack("{s:s,s:O}", "type", "text", "text", text)))
    return -ENOMEM;
  const json_t *calls = json_object_get(msg, "tool_calls");
  size_t i;
  const json_t *tc;
  int nbad = 0;
  json_array_foreach(calls, i, tc) {
    const json_t *fn = json_object_get(tc, "function");
    int oom = 0;
    json_t *input = args_input(json_object_get(fn, "arguments"), sp, &oom);
    if (oom) return -ENOMEM;
    if (!input) { nbad++; input = json_object(); }
    const json_t *id = json_object_get(tc, "id");
    char minted[64];
    snprintf(minted, sizeof minted, "%s%zu", id_prefix, i);
    json_t *b = json_pack("{s:s,s:s,s:s,s:o}", "type", "tool_use", "id",
                          json_is_string(id) && json_string_length(id) ? json_string_value(id) : minted,
                          "name", str_or(json_object_get(fn, "name"), ""), "input", input);
    if (json_array_append_new(content, b)) return -ENOMEM;
  }
  return nbad;
}

int ai_response_from_openai(const char *body, size_t len, const char *model, buf_t *out) {
  json_t *in = prov_json_loadb(body ? body : "", len, 0, NULL);
  const json_t *choice = json_array_get(json_object_get(in, "choices"), 0);
  const json_t *msg = json_object_get(choice, "message");
  if (!json_is_object(in) || !json_is_object(msg)) { json_decref(in); return -EINVAL; }
  int rc = -ENOMEM;
  buf_t o = {0};
  json_t *content = json_array();
  prov_splice sp = {.n = 0};
  buf_t cs = {0};
  int nbad = content ? response_content(msg, "toolu_llmesh_", content, &sp) : -ENOMEM;
  if (nbad < 0) goto done;
  const char *finish = str_or(json_object_get(choice, "finish_reason"), NULL);
  const json_t *matched = json_object_get(choice, "stop_reason"); /* vLLM: the stop string */
  int tools = json_array_size(json_object_get(msg, "tool_calls")) > 0;
  const char *sr = ai_stop_reason(finish, tools);
  int seq = !tools && finish && !strcmp(finish, "stop") && json_is_string(matched);
  if (seq) sr = "stop_sequence";
  json_t *usage = usage_of(json_object_get(in, "usage"));
  char *us = usage ? prov_json_dumps(usage, AI_DUMP_FLAGS) : NULL;
  int splice_rc = prov_splice_dump(&sp, content, AI_DUMP_FLAGS, &cs);
  json_decref(usage);
  if (!splice_rc && us && !LIT(&o, "{\"id\":") &&
      !msg_id_append(&o, str_or(json_object_get(in, "id"), NULL)) &&
      !LIT(&o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":") &&
      !esc_cstr(&o, model ? model : "") && !LIT(&o, ",\"content\":") &&
      !buf_append(&o, cs.data, cs.len) && !buf_printf(&o, ",\"stop_reason\":\"%s\"", sr) &&
      !LIT(&o, ",\"stop_sequence\":") &&
      !(seq ? buf_json_quote(&o, json_string_value(matched), json_string_length(matched))
            : LIT(&o, "null")) &&
      !LIT(&o, ",\"usage\":") && !buf_append(&o, us, strlen(us)) && !LIT(&o, "}") &&
      !buf_append(out, o.data, o.len))
    rc = nbad;
  free(us);
done:
  prov_splice_free(&sp);
  buf_free(&cs);
  buf_free(&o);
  json_decref(content);
  json_decref(in);
  return rc;
}

/* ---------------------------------------------------------------- stream */

enum { TOOL_UNSEEN = 0, TOOL_OPEN, TOOL_CLOSED };

struct ai_stream {
  sse_decoder sse;        /* SSE framing (limit AI_MAX_LINE) */
  /* translation */
  int rc;                /* AI_MORE while running, else the sticky terminal result */
  char *model;           /* model name reported to the client */
  int started;           /* message_start written */
  int open;              /* a content block is open */
  int open_tool;         /* OpenAI tool index of the open block, -1 for text */
  int nblocks;           /* content blocks opened so far (= next Anthropic index) */
  unsigned char *tools;  /* TOOL_* per OpenAI tool_calls[].index */
  int ntools;            /* entries in tools */
  int last_tool;         /* highest tool index opened, -1 none */
  char finish[24];       /* upstream finish_reason, "" until seen */
  char *stop_seq;        /* matched stop string (vLLM stop_reason), NULL when unknown */
  uint64_t prompt;       /* usage chunk: prompt_tokens (incl. cached) */
  uint64_t completion;   /* usage chunk: completion_tokens */
  uint64_t cached;       /* usage chunk: prompt_tokens_details.cached_tokens */
  int usage_seen;        /* a usage object arrived */
  int cached_seen;       /* it carried cached_tokens */
  buf_t *out;            /* where events go during a feed */
};

ai_stream *ai_stream_new(const char *model) {
  ai_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->model = strdup(model ? model : "");
  if (!s->model) { free(s); return NULL; }
  s->open_tool = -1;
  s->last_tool = -1;
  sse_init_opts(&s->sse, AI_MAX_LINE, 0);
  return s;
}

void ai_stream_free(ai_stream *s) {
  if (!s) return;
  sse_free(&s->sse);
  free(s->tools);
  free(s->stop_seq);
  free(s->model);
  free(s);
}

static int ev_begin(buf_t *o, const char *name) {
  return buf_printf(o, "event: %s\ndata: {\"type\":\"%s\"", name, name);
}

static int ev_end(buf_t *o) { return LIT(o, "}\n\n"); }

static int emit_message_start(ai_stream *s, const char *id) {
  buf_t *o = s->out;
  s->started = 1;
  if (ev_begin(o, "message_start") || LIT(o, ",\"message\":{\"id\":") || msg_id_append(o, id) ||
      LIT(o, ",\"type\":\"message\",\"role\":\"assistant\",\"model\":") || esc_cstr(o, s->model) ||
      LIT(o, ",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,"
             "\"usage\":{\"input_tokens\":0,\"output_tokens\":0}}") ||
      ev_end(o))
    return -ENOMEM;
  return 0;
}

static int emit_block_stop(ai_stream *s) {
  if (!s->open) return 0;
  s->open = 0;
  if (s->open_tool >= 0) s->tools[s->open_tool] = TOOL_CLOSED;
  s->open_tool = -1;
  if (ev_begin(s->out, "content_block_stop") || buf_printf(s->out, ",\"index\":%d", s->nblocks - 1) ||
      ev_end(s->out))
    return -ENOMEM;
  return 0;
}

static int emit_text(ai_stream *s, const json_t *text) {
  buf_t *o = s->out;
  if (s->open && s->open_tool >= 0 && emit_block_stop(s)) return -ENOMEM;
  if (!s->open) {
    s->open = 1;
    s->open_tool = -1;
    if (ev_begin(o, "content_block_start") || buf_printf(o, ",\"index\":%d", s->nblocks++) ||
        LIT(o, ",\"content_block\":{\"type\":\"text\",\"text\":\"\"}") || ev_end(o))
      return -ENOMEM;
  }
  if (ev_begin(o, "content_block_delta") || buf_printf(o, ",\"index\":%d", s->nblocks - 1) ||
      LIT(o, ",\"delta\":{\"type\":\"text_delta\",\"text\":") ||
      buf_json_quote(o, json_string_value(text), json_string_length(text)) || LIT(o, "}") || ev_end(o))
    return -ENOMEM;
  return 0;
}

/* One tool_calls[] element. Returns 0, -ENOMEM, or AI_GARBAGE (not expressible). */
static int on_tool_delta(ai_stream *s, const json_t *tc) {
  buf_t *o = s->out;
  const json_t *iv = json_object_get(tc, "index"), *id = json_object_get(tc, "id");
  const json_t *fn = json_object_get(tc, "function");
  const json_t *args = json_object_get(fn, "arguments");
  json_int_t idx;
  if (json_is_integer(iv)) idx = json_integer_value(iv);
  else idx = json_is_string(id) || s->last_tool < 0 ? s->last_tool + 1 : s->last_tool; /* no index */
  if (idx < 0 || idx >= AI_MAX_TOOLS) return AI_GARBAGE;
  if (idx >= s->ntools) {
    unsigned char *t = realloc(s->tools, (size_t)idx + 1);
    if (!t) return -ENOMEM;
    memset(t + s->ntools, TOOL_UNSEEN, (size_t)idx + 1 - (size_t)s->ntools);
    s->tools = t;
    s->ntools = (int)idx + 1;
  }
  if (s->tools[idx] == TOOL_UNSEEN) {
    if (emit_block_stop(s)) return -ENOMEM;
    s->tools[idx] = TOOL_OPEN;
    s->open = 1;
    s->open_tool = (int)idx;
    if (idx > s->last_tool) s->last_tool = (int)idx;
    char minted[64];
    snprintf(minted, sizeof minted, "toolu_llmesh_%d", (int)idx);
    const char *name = str_or(json_object_get(fn, "name"), "");
    if (ev_begin(o, "content_block_start") || buf_printf(o, ",\"index\":%d", s->nblocks++) ||
        LIT(o, ",\"content_block\":{\"type\":\"tool_use\",\"id\":") ||
        esc_cstr(o, json_is_string(id) && json_string_length(id) ? json_string_value(id) : minted) ||
        LIT(o, ",\"name\":") || esc_cstr(o, name) || LIT(o, ",\"input\":{}}") || ev_end(o))
      return -ENOMEM;
  }
  if (!json_is_string(args) || !json_string_length(args)) return 0;
  if (s->tools[idx] != TOOL_OPEN) return AI_GARBAGE; /* interleaved: its block is closed */
  if (ev_begin(o, "content_block_delta") || buf_printf(o, ",\"index\":%d", s->nblocks - 1) ||
      LIT(o, ",\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":") ||
      buf_json_quote(o, json_string_value(args), json_string_length(args)) || LIT(o, "}") || ev_end(o))
    return -ENOMEM;
  return 0;
}

static int emit_error(ai_stream *s, const char *type, const char *msg) {
  buf_t *o = s->out;
  if (ev_begin(o, "error") || LIT(o, ",\"error\":{\"type\":") || esc_cstr(o, type) ||
      LIT(o, ",\"message\":") || esc_cstr(o, msg) || LIT(o, "}") || ev_end(o))
    return -ENOMEM;
  return 0;
}

static int fail_garbage(ai_stream *s, const char *msg) {
  return emit_error(s, "api_error", msg) ? -ENOMEM : AI_GARBAGE;
}

static int on_inband_error(ai_stream *s, const json_t *e) {
  const char *type = error_type_of(e);
  if (!type) type = "api_error";
  const char *msg = error_message_of(e);
  return emit_error(s, type, msg ? msg : "The upstream stream failed.") ? -ENOMEM : AI_ERROR;
}

static void usage_update(ai_stream *s, const json_t *u) {
  if (!json_is_object(u)) return;
  s->usage_seen = 1;
  s->prompt = u64_of(json_object_get(u, "prompt_tokens"));
  s->completion = u64_of(json_object_get(u, "completion_tokens"));
  const json_t *c = json_object_get(json_object_get(u, "prompt_tokens_details"), "cached_tokens");
  s->cached_seen = json_is_integer(c);
  s->cached = u64_of(c);
}

static int on_choice(ai_stream *s, const json_t *ch) {
  const json_t *d = json_object_get(ch, "delta");
  const json_t *text = json_object_get(d, "content");
  if (!json_is_string(text) || !json_string_length(text)) text = json_object_get(d, "refusal");
  if (json_is_string(text) && json_string_length(text) && emit_text(s, text)) return -ENOMEM;
  const json_t *calls = json_object_get(d, "tool_calls");
  size_t i;
  const json_t *tc;
  json_array_foreach(calls, i, tc) {
    int rc = on_tool_delta(s, tc);
    if (rc == AI_GARBAGE)
      return fail_garbage(s, "The upstream interleaved tool call arguments; the answer cannot be "
                             "expressed as Anthropic events.");
    if (rc) return rc;
  }
  const json_t *fr = json_object_get(ch, "finish_reason");
  if (json_is_string(fr)) {
    snprintf(s->finish, sizeof s->finish, "%s", json_string_value(fr));
    const json_t *matched = json_object_get(ch, "stop_reason");
    if (json_is_string(matched) && !s->stop_seq &&
        !(s->stop_seq = strndup(json_string_value(matched), json_string_length(matched))))
      return -ENOMEM;
    if (emit_block_stop(s)) return -ENOMEM;
  }
  return AI_MORE;
}

static int on_done(ai_stream *s) {
  buf_t *o = s->out;
  if ((!s->started && emit_message_start(s, NULL)) || emit_block_stop(s)) return -ENOMEM;
  const char *finish = s->finish[0] ? s->finish : NULL;
  const char *sr = ai_stop_reason(finish, s->last_tool >= 0);
  int seq = s->last_tool < 0 && finish && !strcmp(finish, "stop") && s->stop_seq;
  if (seq) sr = "stop_sequence";
  if (ev_begin(o, "message_delta") ||
      buf_printf(o, ",\"delta\":{\"stop_reason\":\"%s\",\"stop_sequence\":", sr) ||
      (seq ? esc_cstr(o, s->stop_seq) : LIT(o, "null")) || LIT(o, "},\"usage\":{"))
    return -ENOMEM;
  if (s->usage_seen) {
    uint64_t k = s->cached < s->prompt ? s->cached : s->prompt;
    if (buf_printf(o, "\"input_tokens\":%llu,", (unsigned long long)(s->prompt - k)) ||
        (s->cached_seen && buf_printf(o, "\"cache_read_input_tokens\":%llu,", (unsigned long long)k)))
      return -ENOMEM;
  }
  if (buf_printf(o, "\"output_tokens\":%llu}", (unsigned long long)s->completion) || ev_end(o) ||
      ev_begin(o, "message_stop") || ev_end(o))
    return -ENOMEM;
  return AI_DONE;
}

static int on_chunk(ai_stream *s, const json_t *c) {
  const json_t *e = json_object_get(c, "error");
  if (e && !json_is_null(e)) return on_inband_error(s, e);
  if (!s->started && emit_message_start(s, str_or(json_object_get(c, "id"), NULL))) return -ENOMEM;
  usage_update(s, json_object_get(c, "usage"));
  const json_t *choices = json_object_get(c, "choices");
  size_t i;
  const json_t *ch;
  json_array_foreach(choices, i, ch) {
    const json_t *idx = json_object_get(ch, "index");
    if (idx && json_integer_value(idx) != 0) continue; /* we never ask for n > 1 */
    int rc = on_choice(s, ch);
    if (rc != AI_MORE) return rc;
  }
  return AI_MORE;
}

/* One complete SSE event; nonzero stops decoding. */
static int event_dispatch(void *ud, const sse_event *ev) {
  ai_stream *s = ud;
  if (ev->data_len == 6 && !memcmp(ev->data, "[DONE]", 6)) {
    s->rc = on_done(s);
  } else {
    json_t *c = prov_json_loadb(ev->data, ev->data_len, 0, NULL);
    s->rc = json_is_object(c) ? on_chunk(s, c)
                              : fail_garbage(s, "The upstream sent an unreadable stream.");
    json_decref(c);
  }
  return s->rc != AI_MORE;
}

/* A framing failure of sse_decode()/sse_finish() as the stream's result. */
static void framing_fail(ai_stream *s, int rc) {
  if (rc == -ENOMEM) s->rc = -ENOMEM;
  else if (rc < 0) s->rc = fail_garbage(s, "The upstream sent an oversized stream event.");
}

int ai_stream_feed(ai_stream *s, const char *data, size_t len, buf_t *out) {
  s->out = out;
  if (s->rc == AI_MORE) framing_fail(s, sse_decode(&s->sse, data, len, event_dispatch, s));
  return s->rc;
}

/* EOF: a final event missing only its blank line still counts; anything short of
 * [DONE] is a cut stream and says so. */
int ai_stream_end(ai_stream *s, buf_t *out) {
  s->out = out;
  if (s->rc == AI_MORE) framing_fail(s, sse_finish(&s->sse, event_dispatch, s));
  if (s->rc == AI_MORE)
    s->rc = fail_garbage(s, "The upstream stream ended before the answer was complete.");
  return s->rc;
}
