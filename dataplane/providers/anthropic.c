/* anthropic.c — Anthropic Messages adapter: OpenAI chat completions ⇄ POST /v1/messages.
 *
 * URL: api_base + "/messages" when api_base ends in "/v1" (trailing slashes ignored), else
 * api_base + "/v1/messages", so both "https://api.anthropic.com/v1" and
 * "https://api.anthropic.com" work. Headers: x-api-key (when a key is set),
 * anthropic-version (t->api_version, default 2023-06-01), content-type, and
 * accept: text/event-stream when streaming.
 *
 * Request mapping, every OpenAI field (anything not listed is dropped: unknown = ignored):
 * | OpenAI                          | Anthropic                                   | How                   |
 * |---------------------------------|---------------------------------------------|-----------------------|
 * | model                           | model = t->upstream_model                   | mapped                |
 * | messages[system|developer]      | top-level system, in order, joined "\n\n";  | mapped (hoisted from  |
 * |                                 | text blocks if any part has cache_control   | anywhere, §9.7.2 (a)) |
 * | messages[user]                  | role user; string → text block              | mapped                |
 * | messages[assistant].content     | text blocks ("refusal" parts dropped)       | mapped                |
 * | messages[assistant].tool_calls  | tool_use {id, name, input = the arguments   | mapped; args "" → {}; |
 * |                                 | text spliced in as sent (prov_splice)       | bad JSON/non-object → |
 * |                                 |                                             | 400                   |
 * | messages[tool]                  | tool_result in a user message, placed before| mapped                |
 * |                                 | that message's other blocks                 |                       |
 * | messages[function], functions,  | –                                           | 400 (legacy; use      |
 * |   function_call                 |                                             | tools)                |
 * | consecutive same role           | one message, blocks concatenated            | merged                |
 * | empty text / empty message      | –                                           | dropped (Anthropic    |
 * |                                 |                                             | rejects empty content)|
 * | content image_url data: URL     | image {source: base64, media_type, data}    | mapped                |
 * | content image_url http(s) URL   | image {source: url}                         | mapped; other → 400   |
 * | image_url.detail                | –                                           | dropped (no slot)     |
 * | content input_audio, file, ...  | –                                           | 400                   |
 * | max_completion_tokens           | max_tokens (wins over max_tokens)           | mapped                |
 * | max_tokens                      | max_tokens                                  | mapped                |
 * | (neither)                       | max_tokens = default by model, see below    | required upstream     |
 * | temperature (0–2)               | temperature, clamped to 1.0 (range 0–1)     | mapped; <0 → 400      |
 * | top_p / top_k (vLLM extension)  | top_p / top_k                               | passthrough           |
 * | stop (string or array)          | stop_sequences (array; empty strings drop)  | mapped                |
 * | n                               | –                                           | 1 ok, other → 400     |
 * | tools[].function                | tools[] {name, description, input_schema}   | mapped; strict drops; |
 * |                                 |                                             | non-function → 400    |
 * | tool_choice auto/required/none  | {type: auto / any / none}                   | mapped                |
 * | tool_choice {function:{name}}   | {type: tool, name}                          | mapped                |
 * | parallel_tool_calls: false      | tool_choice.disable_parallel_tool_use: true | mapped (not on none)  |
 * | tool_choice / parallel, no tools| –                                           | dropped (Anthropic    |
 * |                                 |                                             | rejects them)         |
 * | response_format text            | –                                           | dropped (default)     |
 * | response_format json_object     | system instruction appended (ANTH_JSON_HINT)| mapped (no native     |
 * |                                 |                                             | JSON mode)            |
 * | response_format json_schema     | –                                           | 400 (no portable      |
 * |                                 |                                             | native equivalent)    |
 * | user (or safety_identifier)     | metadata.user_id                            | mapped                |
 * | stream                          | stream (from prov_canon)                    | mapped                |
 * | stream_options.include_usage    | – (Anthropic always streams usage)          | consumed by decoder   |
 * | reasoning_effort                | –                                           | dropped: thinking     |
 * |                                 |                                             | blocks need signature |
 * |                                 |                                             | round-trip (§9.7.11)  |
 * | seed, presence/frequency_penalty| –                                           | dropped (unsupported) |
 * | logit_bias, logprobs,           | –                                           | dropped; responses    |
 * |   top_logprobs                  |                                             | carry logprobs: null  |
 * | metadata, store, service_tier,  | –                                           | dropped (OpenAI-side  |
 * |   prediction, modalities, audio |                                             | features)             |
 * Dropped fields present in a request are listed in prov_request.dropped and logged by the
 * worker as a `fields_dropped` warning (and counted in llmesh_fields_dropped_total).
 *
 * Default max_tokens (no client limit): 8192 for the claude-3-5, claude-3-7,
 * claude-{sonnet,haiku,opus}-4 families (their documented output limit is ≥ 8192),
 * 4096 for anything else (the Claude 3 limit, safe everywhere).
 *
 * Response: id = the message id, created = now, model = the caller's name, text blocks
 * concatenated into content (null when there are only tool calls), tool_use → tool_calls
 * (arguments = the exact bytes of input in the answer: no re-encoding, so 0.1 and integers
 * beyond int64 arrive as sent), thinking blocks dropped. stop_reason → finish_reason:
 * end_turn/stop_sequence/pause_turn/unknown → stop, max_tokens/model_context_window_exceeded
 * → length, tool_use → tool_calls, refusal → content_filter. prompt_tokens = input +
 * cache_read + cache_creation, cached_tokens = cache_read.
 *
 * Stream: §9.6 of provider-wire-formats.md. Chunks are written as text around a prefix
 * built once per stream, so a text delta costs one JSON parse and no re-serialisation. */
#include <errno.h>
#include <jansson.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "prov_json.h"
#include "provider.h"
#include "sse_decoder.h"

/* A client error: message into x->err, returns -EINVAL (prov_json.h). */
#define fail(x, ...) prov_reject((x)->err, (x)->errlen, __VA_ARGS__)

#define ANTH_VERSION "2023-06-01"
#define ANTH_JSON_HINT "Respond only with a single valid JSON object, without any other text."
#define ANTH_MAX_LINE (8u << 20)   /* bytes; an SSE line or event above this is garbage */
#define ANTH_MAX_BLOCKS 4096       /* content blocks per message; more is garbage */
#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1) /* appends a string literal */
#define ANTH_DUMP_FLAGS JSON_COMPACT /* with prov_json_dumps: reals in their shortest form */

/* Test hook: a fixed "created" time (seconds); 0 = wall clock. Declared by the tests. */
void prov_anthropic_set_clock(int64_t now_s);

static int64_t anth_fixed_now;

void prov_anthropic_set_clock(int64_t now_s) { anth_fixed_now = now_s; }

static int64_t anth_now(void) { return anth_fixed_now ? anth_fixed_now : (int64_t)time(NULL); }

/* ---------------------------------------------------------------- shared helpers */


static int esc_json(buf_t *b, const json_t *str) {
  if (!json_is_string(str)) return buf_json_quote(b, "", 0);
  return buf_json_quote(b, json_string_value(str), json_string_length(str));
}

static const char *str_or(const json_t *v, const char *dflt) {
  return json_is_string(v) ? json_string_value(v) : dflt;
}

static uint64_t u64_of(const json_t *v) { return prov_uint(v); }

static const char *anth_finish_reason(const char *stop_reason) {
  if (!stop_reason) return "stop";
  if (!strcmp(stop_reason, "max_tokens") || !strcmp(stop_reason, "model_context_window_exceeded"))
    return "length";
  if (!strcmp(stop_reason, "tool_use")) return "tool_calls";
  if (!strcmp(stop_reason, "refusal")) return "content_filter";
  return "stop"; /* end_turn, stop_sequence, pause_turn, and values added later */
}

/* Native token buckets; OpenAI prompt_tokens is their sum (§9.4). */
typedef struct anth_tokens {
  uint64_t input;        /* input_tokens: uncached prompt tokens */
  uint64_t cache_read;   /* cache_read_input_tokens */
  uint64_t cache_write;  /* cache_creation_input_tokens */
  uint64_t output;       /* output_tokens (cumulative in streams) */
} anth_tokens;

/* Overwrites the buckets present in an Anthropic usage object (latest non-null wins). */
static void tokens_update(anth_tokens *t, const json_t *u) {
  const json_t *v;
  if ((v = json_object_get(u, "input_tokens")) && json_is_number(v)) t->input = u64_of(v);
  if ((v = json_object_get(u, "cache_read_input_tokens")) && json_is_number(v))
    t->cache_read = u64_of(v);
  if ((v = json_object_get(u, "cache_creation_input_tokens")) && json_is_number(v))
    t->cache_write = u64_of(v);
  if ((v = json_object_get(u, "output_tokens")) && json_is_number(v)) t->output = u64_of(v);
}

static uint64_t tokens_prompt(const anth_tokens *t) {
  return t->input + t->cache_read + t->cache_write;
}

static void tokens_export(const anth_tokens *t, prov_usage *u) {
  if (!u) return;
  u->prompt_tokens = tokens_prompt(t);
  u->completion_tokens = t->output;
  u->cached_tokens = t->cache_read;
  u->cache_write_tokens = t->cache_write;
  u->seen = 1;
}

/* ---------------------------------------------------------------- request */

typedef struct req_ctx {
  char *err;        /* client-facing message on -EINVAL */
  size_t errlen;    /* bytes in err */
  int oom;          /* an allocation failed somewhere while building */
  json_t *sys;      /* system text blocks collected so far */
  prov_splice sp;   /* tool-call arguments spliced into the body as the client wrote them */
  int sys_cached;   /* a system block carries cache_control: send blocks, not a string */
} req_ctx;

static void put(req_ctx *x, json_t *obj, const char *key, json_t *v) {
  if (!v || json_object_set_new(obj, key, v)) x->oom = 1;
}

static void push(req_ctx *x, json_t *arr, json_t *v) {
  if (!v || json_array_append_new(arr, v)) x->oom = 1;
}

static json_t *text_block(req_ctx *x, const char *text, json_t *cache_control) {
  json_t *b = json_object();
  if (!b) { x->oom = 1; return NULL; }
  put(x, b, "type", json_string("text"));
  put(x, b, "text", json_string(text));
  if (json_is_object(cache_control)) put(x, b, "cache_control", json_incref(cache_control));
  return b;
}

/* data:<mime>;base64,<data> → base64 source; http(s) → url source. */
static int image_block(req_ctx *x, const char *where, const json_t *part, json_t *blocks) {
  const json_t *iu = json_object_get(part, "image_url");
  const char *url = json_is_string(iu) ? json_string_value(iu) : str_or(json_object_get(iu, "url"), NULL);
  if (!url) return fail(x, "%s: image_url.url must be a string", where);
  json_t *src = json_object(), *b = json_object();
  if (!src || !b) { json_decref(src); json_decref(b); x->oom = 1; return 0; }
  if (!strncmp(url, "data:", 5)) {
    const char *comma = strchr(url, ',');
    const char *semi = comma ? memchr(url, ';', (size_t)(comma - url)) : NULL;
    if (!semi || (size_t)(comma - semi) != 7 || strncmp(semi, ";base64", 7) || semi == url + 5) {
      json_decref(src); json_decref(b);
      return fail(x, "%s: image data URLs must look like data:<mime type>;base64,<data>", where);
    }
    put(x, src, "type", json_string("base64"));
    put(x, src, "media_type", json_stringn(url + 5, (size_t)(semi - url - 5)));
    put(x, src, "data", json_string(comma + 1));
  } else if (!strncmp(url, "https://", 8) || !strncmp(url, "http://", 7)) {
    put(x, src, "type", json_string("url"));
    put(x, src, "url", json_string(url));
  } else {
    json_decref(src); json_decref(b);
    return fail(x, "%s: image_url.url must be an http(s) URL or a base64 data URL", where);
  }
  put(x, b, "type", json_string("image"));
  put(x, b, "source", src);
  push(x, blocks, b);
  return 0;
}

/* OpenAI content (string, array of parts or null) → Anthropic blocks appended to blocks.
 * Empty text is dropped: Anthropic rejects empty text blocks. */
static int content_blocks(req_ctx *x, const char *where, const json_t *content, int images,
                          json_t *blocks) {
  if (!content || json_is_null(content)) return 0;
  if (json_is_string(content)) {
    if (json_string_length(content)) push(x, blocks, text_block(x, json_string_value(content), NULL));
    return 0;
  }
  if (!json_is_array(content)) return fail(x, "%s: content must be a string or an array", where);
  size_t i;
  const json_t *part;
  json_array_foreach(content, i, part) {
    const char *type = str_or(json_object_get(part, "type"), "");
    if (!strcmp(type, "text")) {
      const json_t *t = json_object_get(part, "text");
      if (!json_is_string(t)) return fail(x, "%s: content[%zu].text must be a string", where, i);
      if (json_string_length(t))
        push(x, blocks, text_block(x, json_string_value(t), json_object_get(part, "cache_control")));
    } else if (!strcmp(type, "refusal")) {
      continue; /* an assistant's earlier refusal has no Anthropic slot */
    } else if (!strcmp(type, "image_url") && images) {
      int rc = image_block(x, where, part, blocks);
      if (rc) return rc;
    } else {
      return fail(x, "%s: content part type '%s' is not supported by this model's provider", where,
                  type);
    }
  }
  return 0;
}

static int system_add(req_ctx *x, const char *where, const json_t *m) {
  json_t *blocks = json_array();
  if (!blocks) { x->oom = 1; return 0; }
  int rc = content_blocks(x, where, json_object_get(m, "content"), 0, blocks);
  size_t i;
  json_t *b;
  json_array_foreach(blocks, i, b) {
    if (json_object_get(b, "cache_control")) x->sys_cached = 1;
    push(x, x->sys, json_incref(b));
  }
  json_decref(blocks);
  return rc;
}

/* The system slot: a string unless a block needs its cache_control kept. */
static json_t *system_value(req_ctx *x) {
  if (!json_array_size(x->sys)) return NULL;
  if (x->sys_cached) return json_incref(x->sys);
  buf_t s = {0};
  size_t i;
  json_t *b;
  json_array_foreach(x->sys, i, b) {
    if ((i && LIT(&s, "\n\n")) ||
        buf_append(&s, json_string_value(json_object_get(b, "text")),
                   json_string_length(json_object_get(b, "text"))))
      x->oom = 1;
  }
  json_t *v = json_stringn(s.data ? s.data : "", s.len);
  buf_free(&s);
  if (!v) x->oom = 1;
  return v;
}

static int tool_use_block(req_ctx *x, size_t mi, size_t ti, const json_t *tc, json_t *blocks) {
  const json_t *fn = json_object_get(tc, "function");
  const json_t *id = json_object_get(tc, "id"), *name = json_object_get(fn, "name");
  const json_t *args = json_object_get(fn, "arguments");
  if (!json_is_string(id) || !json_is_string(name))
    return fail(x, "messages[%zu].tool_calls[%zu]: id and function.name must be strings", mi, ti);
  json_t *input = NULL;
  json_span obj;
  if (json_is_object(args)) {
    input = json_incref((json_t *)args);
  } else if (!args || json_is_null(args) ||
             (json_is_string(args) && strspn(json_string_value(args), " \t\r\n") ==
                                          json_string_length(args))) {
    input = json_object(); /* no arguments */
  } else if (json_is_string(args) &&
             prov_json_object_text(json_string_value(args), json_string_length(args), &obj)) {
    input = prov_splice_mark(&x->sp, obj.p, obj.len); /* the client's bytes, not a re-print */
    if (!input) { x->oom = 1; return 0; }
  } else {
    return fail(x, "messages[%zu].tool_calls[%zu].function.arguments is not a valid JSON object",
                mi, ti);
  }
  json_t *b = json_object();
  if (!b) { json_decref(input); x->oom = 1; return 0; }
  put(x, b, "type", json_string("tool_use"));
  put(x, b, "id", json_incref((json_t *)id));
  put(x, b, "name", json_incref((json_t *)name));
  put(x, b, "input", input);
  push(x, blocks, b);
  return 0;
}

static int assistant_blocks(req_ctx *x, size_t mi, const json_t *m, json_t *blocks) {
  char where[48];
  snprintf(where, sizeof where, "messages[%zu]", mi);
  int rc = content_blocks(x, where, json_object_get(m, "content"), 0, blocks);
  const json_t *calls = json_object_get(m, "tool_calls");
  if (rc || !calls || json_is_null(calls)) return rc;
  if (!json_is_array(calls)) return fail(x, "%s.tool_calls must be an array", where);
  size_t i;
  const json_t *tc;
  json_array_foreach(calls, i, tc) {
    if ((rc = tool_use_block(x, mi, i, tc, blocks))) return rc;
  }
  return 0;
}

static int tool_result_block(req_ctx *x, size_t mi, const json_t *m, json_t *blocks) {
  char where[48];
  snprintf(where, sizeof where, "messages[%zu]", mi);
  const json_t *id = json_object_get(m, "tool_call_id");
  if (!json_is_string(id)) return fail(x, "%s: tool messages need a string tool_call_id", where);
  json_t *b = json_object(), *parts = json_array();
  if (!b || !parts) { json_decref(b); json_decref(parts); x->oom = 1; return 0; }
  put(x, b, "type", json_string("tool_result"));
  put(x, b, "tool_use_id", json_incref((json_t *)id));
  const json_t *content = json_object_get(m, "content");
  int rc = 0;
  if (json_is_string(content)) {
    if (json_string_length(content)) put(x, b, "content", json_incref((json_t *)content));
    json_decref(parts);
  } else {
    rc = content_blocks(x, where, content, 1, parts);
    if (json_array_size(parts)) put(x, b, "content", parts);
    else json_decref(parts);
  }
  push(x, blocks, b);
  return rc;
}

/* Appends one converted message, merging it into the previous one when the role repeats.
 * tool_result blocks go before any other block of their user message (Anthropic rule). */
static void message_append(req_ctx *x, json_t *msgs, const char *role, json_t *blocks) {
  if (!json_array_size(blocks)) { json_decref(blocks); return; } /* empty: dropped */
  json_t *last = json_array_get(msgs, json_array_size(msgs) - 1);
  if (!last || strcmp(str_or(json_object_get(last, "role"), ""), role)) {
    json_t *m = json_object();
    if (!m) { json_decref(blocks); x->oom = 1; return; }
    put(x, m, "role", json_string(role));
    put(x, m, "content", blocks);
    push(x, msgs, m);
    return;
  }
  json_t *dst = json_object_get(last, "content");
  size_t i, nres = 0;
  json_t *b;
  while (nres < json_array_size(dst) &&
         !strcmp(str_or(json_object_get(json_array_get(dst, nres), "type"), ""), "tool_result"))
    nres++;
  json_array_foreach(blocks, i, b) {
    int is_result = !strcmp(str_or(json_object_get(b, "type"), ""), "tool_result");
    if (is_result ? json_array_insert(dst, nres++, b) : json_array_append(dst, b)) x->oom = 1;
  }
  json_decref(blocks);
}

static int messages_convert(req_ctx *x, const json_t *in, json_t *msgs) {
  const json_t *list = json_object_get(in, "messages");
  if (!json_is_array(list) || !json_array_size(list))
    return fail(x, "messages must be a non-empty array");
  size_t i;
  const json_t *m;
  json_array_foreach(list, i, m) {
    char where[48];
    snprintf(where, sizeof where, "messages[%zu]", i);
    const char *role = str_or(json_object_get(m, "role"), NULL);
    if (!role) return fail(x, "%s: role must be a string", where);
    json_t *blocks = json_array();
    if (!blocks) { x->oom = 1; return 0; }
    int rc = 0;
    const char *to = "user";
    if (!strcmp(role, "system") || !strcmp(role, "developer")) {
      json_decref(blocks);
      if ((rc = system_add(x, where, m))) return rc;
      continue;
    } else if (!strcmp(role, "user")) {
      rc = content_blocks(x, where, json_object_get(m, "content"), 1, blocks);
    } else if (!strcmp(role, "assistant")) {
      to = "assistant";
      rc = assistant_blocks(x, i, m, blocks);
    } else if (!strcmp(role, "tool")) {
      rc = tool_result_block(x, i, m, blocks);
    } else {
      rc = fail(x, "%s: role '%s' is not supported by this model's provider", where, role);
    }
    if (rc) { json_decref(blocks); return rc; }
    message_append(x, msgs, to, blocks);
  }
  if (!json_array_size(msgs))
    return fail(x, "messages must contain at least one non-empty user or assistant message");
  return 0;
}

static int tools_convert(req_ctx *x, const json_t *in, json_t *body) {
  const json_t *tools = json_object_get(in, "tools");
  if (!tools || json_is_null(tools)) return 0;
  if (!json_is_array(tools)) return fail(x, "tools must be an array");
  json_t *out = json_array();
  if (!out) { x->oom = 1; return 0; }
  size_t i;
  const json_t *t;
  json_array_foreach(tools, i, t) {
    const json_t *fn = json_object_get(t, "function");
    const char *type = str_or(json_object_get(t, "type"), "function");
    if (strcmp(type, "function") || !json_is_string(json_object_get(fn, "name"))) {
      json_decref(out);
      return fail(x, "tools[%zu]: only function tools with a name are supported", i);
    }
    json_t *o = json_object(), *params = json_object_get(fn, "parameters");
    if (!o) { x->oom = 1; break; }
    put(x, o, "name", json_incref(json_object_get(fn, "name")));
    if (json_is_string(json_object_get(fn, "description")))
      put(x, o, "description", json_incref(json_object_get(fn, "description")));
    put(x, o, "input_schema",
        json_is_object(params) ? json_incref(params) : json_pack("{s:s,s:{}}", "type", "object", "properties"));
    push(x, out, o);
  }
  if (json_array_size(out)) put(x, body, "tools", out);
  else json_decref(out);
  return 0;
}

static int tool_choice_convert(req_ctx *x, const json_t *in, json_t *body) {
  if (!json_object_get(body, "tools")) return 0; /* Anthropic rejects tool_choice alone */
  const json_t *tc = json_object_get(in, "tool_choice");
  const json_t *ptc = json_object_get(in, "parallel_tool_calls");
  json_t *choice = NULL;
  if (json_is_string(tc)) {
    const char *s = json_string_value(tc);
    const char *type = !strcmp(s, "auto") ? "auto" : !strcmp(s, "required") ? "any"
                     : !strcmp(s, "none") ? "none" : NULL;
    if (!type) return fail(x, "tool_choice must be auto, required, none or a function");
    choice = json_pack("{s:s}", "type", type);
  } else if (json_is_object(tc)) {
    const json_t *name = json_object_get(json_object_get(tc, "function"), "name");
    if (!json_is_string(name)) return fail(x, "tool_choice.function.name must be a string");
    choice = json_pack("{s:s,s:O}", "type", "tool", "name", name);
  } else if (tc && !json_is_null(tc)) {
    return fail(x, "tool_choice must be a string or an object");
  }
  if (json_is_false(ptc)) {
    if (!choice) choice = json_pack("{s:s}", "type", "auto");
    if (choice && strcmp(str_or(json_object_get(choice, "type"), ""), "none"))
      put(x, choice, "disable_parallel_tool_use", json_true());
  }
  if (choice) put(x, body, "tool_choice", choice);
  else if ((tc && !json_is_null(tc)) || json_is_false(ptc)) x->oom = 1;
  return 0;
}

static int max_tokens_value(req_ctx *x, const prov_target *t, const json_t *in, json_t *body) {
  static const struct { const char *family; json_int_t max_tokens; } defaults[] = {
      {"claude-3-5-", 8192}, {"claude-3-7-", 8192}, {"claude-sonnet-4", 8192},
      {"claude-haiku-4", 8192}, {"claude-opus-4", 8192},
  };
  const char *key = "max_completion_tokens";
  const json_t *v = json_object_get(in, key);
  if (!v || json_is_null(v)) v = json_object_get(in, key = "max_tokens");
  if (v && !json_is_null(v)) {
    if (!json_is_integer(v) || json_integer_value(v) < 1)
      return fail(x, "%s must be a positive integer", key);
    put(x, body, "max_tokens", json_integer(json_integer_value(v)));
    return 0;
  }
  json_int_t dflt = 4096;
  for (size_t i = 0; i < ARRAY_SIZE(defaults); i++)
    if (t->upstream_model && strstr(t->upstream_model, defaults[i].family))
      dflt = defaults[i].max_tokens;
  put(x, body, "max_tokens", json_integer(dflt));
  return 0;
}

static int stop_convert(req_ctx *x, const json_t *in, json_t *body) {
  const json_t *stop = json_object_get(in, "stop");
  if (!stop || json_is_null(stop)) return 0;
  json_t *seq = json_array();
  if (!seq) { x->oom = 1; return 0; }
  if (json_is_string(stop)) {
    if (json_string_length(stop)) push(x, seq, json_incref((json_t *)stop));
  } else if (json_is_array(stop)) {
    size_t i;
    const json_t *s;
    json_array_foreach(stop, i, s) {
      if (!json_is_string(s)) { json_decref(seq); return fail(x, "stop must hold strings"); }
      if (json_string_length(s)) push(x, seq, json_incref((json_t *)s));
    }
  } else {
    json_decref(seq);
    return fail(x, "stop must be a string or an array of strings");
  }
  if (json_array_size(seq)) put(x, body, "stop_sequences", seq);
  else json_decref(seq);
  return 0;
}

static int sampling_convert(req_ctx *x, const json_t *in, json_t *body) {
  const json_t *temp = json_object_get(in, "temperature");
  if (temp && !json_is_null(temp)) {
    if (!json_is_number(temp) || json_number_value(temp) < 0)
      return fail(x, "temperature must be a number between 0 and 2");
    /* Anthropic's range is 0–1: an OpenAI 1.5 means "very random", which 1.0 is here. */
    put(x, body, "temperature",
        json_number_value(temp) > 1.0 ? json_real(1.0) : json_incref((json_t *)temp));
  }
  const json_t *top_p = json_object_get(in, "top_p");
  if (json_is_number(top_p)) put(x, body, "top_p", json_incref((json_t *)top_p));
  const json_t *top_k = json_object_get(in, "top_k");
  if (json_is_integer(top_k)) put(x, body, "top_k", json_incref((json_t *)top_k));
  return 0;
}

/* Fields Anthropic cannot express: 400 rather than a silently different answer. */
static int reject_unsupported(req_ctx *x, const json_t *in, int *json_hint) {
  const json_t *n = json_object_get(in, "n");
  if (n && !json_is_null(n) && !(json_is_integer(n) && json_integer_value(n) == 1))
    return fail(x, "n must be 1: this model's provider returns a single choice");
  if (json_object_get(in, "functions") || json_object_get(in, "function_call"))
    return fail(x, "functions/function_call are not supported by this model's provider; use tools");
  const json_t *rf = json_object_get(in, "response_format");
  if (!rf || json_is_null(rf)) return 0;
  const char *type = str_or(json_object_get(rf, "type"), "");
  if (!strcmp(type, "json_object")) *json_hint = 1;
  else if (!strcmp(type, "json_schema"))
    return fail(x, "response_format json_schema is not supported by this model's provider");
  else if (strcmp(type, "text"))
    return fail(x, "response_format type must be text, json_object or json_schema");
  return 0;
}

static int body_convert(req_ctx *x, const prov_target *t, const prov_canon *c, const json_t *in,
                        json_t *body) {
  int json_hint = 0, rc;
  json_t *msgs = json_array();
  if (!msgs) { x->oom = 1; return 0; }
  if ((rc = reject_unsupported(x, in, &json_hint)) || (rc = messages_convert(x, in, msgs))) {
    json_decref(msgs);
    return rc;
  }
  if (json_hint) push(x, x->sys, text_block(x, ANTH_JSON_HINT, NULL));
  put(x, body, "model", json_string(t->upstream_model ? t->upstream_model : ""));
  if ((rc = max_tokens_value(x, t, in, body))) { json_decref(msgs); return rc; }
  json_t *sys = system_value(x);
  if (sys) put(x, body, "system", sys);
  put(x, body, "messages", msgs);
  if ((rc = tools_convert(x, in, body)) || (rc = tool_choice_convert(x, in, body)) ||
      (rc = stop_convert(x, in, body)) || (rc = sampling_convert(x, in, body)))
    return rc;
  const json_t *user = json_object_get(in, "user");
  if (!json_is_string(user) || !json_string_length(user)) user = json_object_get(in, "safety_identifier");
  if (json_is_string(user) && json_string_length(user))
    put(x, body, "metadata", json_pack("{s:O}", "user_id", user));
  if (c->stream) put(x, body, "stream", json_true());
  return 0;
}

static int request_url(const prov_target *t, buf_t *url) {
  const char *base = t->api_base ? t->api_base : "";
  size_t n = strlen(base);
  while (n && base[n - 1] == '/') n--;
  int v1 = n >= 3 && !memcmp(base + n - 3, "/v1", 3);
  if (buf_append(url, base, n) || buf_printf(url, "%s", v1 ? "/messages" : "/v1/messages") ||
      !buf_cstr(url))
    return -ENOMEM;
  return 0;
}

static int request_headers(const prov_target *t, const prov_canon *c, prov_request *out) {
  const char *version = t->api_version && *t->api_version ? t->api_version : ANTH_VERSION;
  if ((t->api_key && *t->api_key && prov_request_header(out, "x-api-key", t->api_key)) ||
      prov_request_header(out, "anthropic-version", version) ||
      prov_request_header(out, "content-type", "application/json") ||
      (c->stream && prov_request_header(out, "accept", "text/event-stream")))
    return -ENOMEM;
  return 0;
}

/* The table's "dropped" rows that the request actually carries (prov_request.dropped). */
static const char *const anth_dropped[] = {
    "reasoning_effort", "seed", "presence_penalty", "frequency_penalty", "logit_bias",
    "logprobs", "top_logprobs", "metadata", "store", "service_tier", "prediction",
    "modalities", "audio", NULL};

static int anth_build_request(const prov_target *t, const prov_canon *c, prov_request *out,
                              char *err, size_t errlen) {
  req_ctx x = {.err = err, .errlen = errlen, .sys = json_array()};
  json_t *in = prov_json_loadb(c->body ? c->body : "", c->len, 0, NULL);
  json_t *body = json_object();
  int rc = 0;
  if (!x.sys || !body) rc = -ENOMEM;
  else if (!json_is_object(in)) rc = fail(&x, "request body must be a JSON object");
  else rc = body_convert(&x, t, c, in, body);
  if (!rc && x.oom) rc = -ENOMEM;
  if (!rc) {
    prov_drop_present(out, in, anth_dropped);
    rc = prov_splice_dump(&x.sp, body, ANTH_DUMP_FLAGS, &out->body);
    if (!rc && (request_url(t, &out->url) || request_headers(t, c, out))) rc = -ENOMEM;
    if (rc == -EINVAL) rc = fail(&x, "tool call arguments are not a valid JSON object");
  }
  if (rc == -ENOMEM && err && errlen) snprintf(err, errlen, "out of memory");
  if (rc) prov_request_free(out);
  json_decref(body);
  json_decref(in);
  json_decref(x.sys);
  prov_splice_free(&x.sp);
  return rc;
}

/* ---------------------------------------------------------------- whole response */

static json_t *usage_json(const anth_tokens *t) {
  uint64_t p = tokens_prompt(t);
  return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)p, "completion_tokens",
                   (json_int_t)t->output, "total_tokens", (json_int_t)(p + t->output),
                   "prompt_tokens_details", "cached_tokens", (json_int_t)t->cache_read);
}

/* Fills text (concatenated text blocks) and calls (tool_use → OpenAI tool_calls, arguments
 * = the exact bytes of input in body). */
static int response_blocks(const char *body, size_t len, const json_t *content, buf_t *text,
                           int *has_text, json_t *calls) {
  size_t i;
  const json_t *b;
  json_array_foreach(content, i, b) {
    const char *type = str_or(json_object_get(b, "type"), "");
    if (!strcmp(type, "text")) {
      const json_t *t = json_object_get(b, "text");
      *has_text = 1;
      if (json_is_string(t) && buf_append(text, json_string_value(t), json_string_length(t)))
        return -ENOMEM;
    } else if (!strcmp(type, "tool_use")) {
      const json_t *input = json_object_get(b, "input");
      json_span_step path[] = {{"content", 0}, {NULL, i}, {"input", 0}};
      json_t *args = json_is_object(input) ? prov_json_raw(body, len, path, 3, input) : json_string("{}");
      json_t *tc = json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", str_or(json_object_get(b, "id"), ""),
                             "type", "function", "function", "name",
                             str_or(json_object_get(b, "name"), ""), "arguments", args);
      if (!tc || json_array_append_new(calls, tc)) return -ENOMEM;
    } /* thinking, redacted_thinking, server tool blocks: no OpenAI slot */
  }
  return 0;
}

static int anth_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                                prov_usage *usage) {
  json_t *in = prov_json_loadb(body, len, 0, NULL);
  const json_t *content = json_object_get(in, "content");
  if (!json_is_object(in) || !json_is_array(content)) { json_decref(in); return PS_GARBAGE; }
  anth_tokens tk = {0};
  tokens_update(&tk, json_object_get(in, "usage"));
  buf_t text = {0};
  int has_text = 0, rc = PS_GARBAGE;
  json_t *calls = json_array(), *msg = json_object(), *res = NULL;
  if (!calls || !msg || response_blocks(body, len, content, &text, &has_text, calls)) goto done;
  json_object_set_new(msg, "role", json_string("assistant"));
  json_object_set_new(msg, "content", has_text || !json_array_size(calls)
                                          ? json_stringn(text.data ? text.data : "", text.len)
                                          : json_null());
  if (json_array_size(calls)) json_object_set(msg, "tool_calls", calls);
  const json_t *sr = json_object_get(in, "stop_reason");
  res = json_pack("{s:s,s:s,s:I,s:s,s:[{s:i,s:O,s:n,s:s}],s:o}", "id",
                  str_or(json_object_get(in, "id"), ""), "object", "chat.completion", "created",
                  (json_int_t)anth_now(), "model", model ? model : "", "choices", "index", 0,
                  "message", msg, "logprobs", "finish_reason", anth_finish_reason(str_or(sr, NULL)),
                  "usage", usage_json(&tk));
  char *s = res ? prov_json_dumps(res, ANTH_DUMP_FLAGS) : NULL;
  if (s && !buf_append(out, s, strlen(s))) {
    rc = 0;
    if (json_object_get(in, "usage")) tokens_export(&tk, usage);
  }
  free(s);
done:
  buf_free(&text);
  json_decref(res);
  json_decref(msg);
  json_decref(calls);
  json_decref(in);
  return rc;
}

/* ---------------------------------------------------------------- stream */

typedef struct anth_block {
  int tool;        /* OpenAI tool_calls index, -1 when the block is not a tool_use */
  int args_seen;   /* a non-empty input_json_delta was forwarded */
} anth_block;

struct prov_stream {
  /* SSE framing */
  sse_decoder sse;      /* lines and events (limit ANTH_MAX_LINE) */
  const char *event;    /* event: name of the event being translated */
  /* translation */
  int rc;               /* PS_MORE while running, else the sticky terminal result */
  int include_usage;    /* client asked for the usage chunk (and usage: null per chunk) */
  char *model;          /* model name reported to the client */
  int64_t created;      /* seconds, fixed at stream_new */
  buf_t head;           /* "data: {"id":..,"object":..,"created":..,"model":..," */
  int started;          /* message_start seen (role chunk written) */
  anth_block *blocks;   /* per Anthropic content block index */
  size_t nblocks;       /* entries in blocks */
  int ntools;           /* tool calls started so far */
  char finish[24];      /* OpenAI finish_reason from message_delta, "" until then */
  anth_tokens tokens;   /* usage so far */
  /* per-feed outputs */
  buf_t *out;           /* where chunks go */
  prov_usage *usage;    /* caller's usage, may be NULL */
  prov_error *err;      /* caller's error class, may be NULL */
};

static prov_stream *anth_stream_new(const prov_canon *c, const char *model) {
  prov_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->model = strdup(model ? model : "");
  if (!s->model) { free(s); return NULL; }
  s->include_usage = c && c->include_usage;
  s->created = anth_now();
  sse_init_opts(&s->sse, ANTH_MAX_LINE, 0);
  return s;
}

static void anth_stream_free(prov_stream *s) {
  if (!s) return;
  sse_free(&s->sse);
  buf_free(&s->head);
  free(s->blocks);
  free(s->model);
  free(s);
}

/* Writes head + choices[0] with the given delta JSON and finish reason (NULL = null). */
static int chunk_write(prov_stream *s, const char *delta, size_t dlen, const char *finish) {
  buf_t *o = s->out;
  if (buf_append(o, s->head.data, s->head.len) ||
      LIT(o, "\"choices\":[{\"index\":0,\"delta\":") || buf_append(o, delta, dlen))
    return -ENOMEM;
  if (finish ? buf_printf(o, ",\"finish_reason\":\"%s\"}]", finish)
             : LIT(o, ",\"finish_reason\":null}]"))
    return -ENOMEM;
  if (s->include_usage && LIT(o, ",\"usage\":null")) return -ENOMEM;
  return LIT(o, "}\n\n");
}

static int chunk_content(prov_stream *s, const json_t *text) {
  if (!json_is_string(text) || !json_string_length(text)) return 0;
  buf_t d = {0};
  int rc = LIT(&d, "{\"content\":") || esc_json(&d, text) || LIT(&d, "}");
  if (!rc) rc = chunk_write(s, d.data, d.len, NULL);
  buf_free(&d);
  return rc ? -ENOMEM : 0;
}

static int chunk_tool(prov_stream *s, int tool, const json_t *id, const json_t *name,
                      const char *args, size_t alen) {
  buf_t d = {0};
  int rc = buf_printf(&d, "{\"tool_calls\":[{\"index\":%d,", tool);
  if (!rc && id) {
    rc = LIT(&d, "\"id\":") || esc_json(&d, id) ||
         LIT(&d, ",\"type\":\"function\",\"function\":{\"name\":") || esc_json(&d, name) ||
         LIT(&d, ",");
  } else if (!rc) {
    rc = LIT(&d, "\"function\":{");
  }
  if (!rc) rc = LIT(&d, "\"arguments\":") || buf_json_quote(&d, args, alen) ||
                LIT(&d, "}}]}");
  if (!rc) rc = chunk_write(s, d.data, d.len, NULL);
  buf_free(&d);
  return rc ? -ENOMEM : 0;
}

static anth_block *block_at(prov_stream *s, const json_t *ev) {
  json_int_t iv;
  if (!prov_int(json_object_get(ev, "index"), &iv) || iv < 0 || iv >= ANTH_MAX_BLOCKS) return NULL;
  size_t i = (size_t)iv;
  if (i >= s->nblocks) {
    anth_block *nb = realloc(s->blocks, (i + 1) * sizeof *nb);
    if (!nb) return NULL;
    for (size_t k = s->nblocks; k <= i; k++) nb[k] = (anth_block){.tool = -1};
    s->blocks = nb;
    s->nblocks = i + 1;
  }
  return &s->blocks[i];
}

static int on_message_start(prov_stream *s, const json_t *ev) {
  const json_t *msg = json_object_get(ev, "message");
  if (s->started) return PS_MORE; /* a repeat carries nothing new for the client */
  if (!json_is_object(msg)) return PS_GARBAGE;
  s->started = 1;
  tokens_update(&s->tokens, json_object_get(msg, "usage"));
  tokens_export(&s->tokens, s->usage);
  buf_t *h = &s->head;
  if (LIT(h, "data: {\"id\":") || esc_json(h, json_object_get(msg, "id")) ||
      buf_printf(h, ",\"object\":\"chat.completion.chunk\",\"created\":%lld,\"model\":",
                 (long long)s->created) ||
      buf_json_quote(h, s->model, strlen(s->model)) || LIT(h, ","))
    return PS_GARBAGE;
  static const char role[] = "{\"role\":\"assistant\",\"content\":\"\"}";
  return chunk_write(s, role, sizeof role - 1, NULL) ? PS_GARBAGE : PS_MORE;
}

static int on_block_start(prov_stream *s, const json_t *ev) {
  const json_t *cb = json_object_get(ev, "content_block");
  anth_block *b = block_at(s, ev);
  if (!b) return PS_GARBAGE;
  const char *type = str_or(json_object_get(cb, "type"), "");
  if (!strcmp(type, "text")) return chunk_content(s, json_object_get(cb, "text")) ? PS_GARBAGE : PS_MORE;
  if (strcmp(type, "tool_use") || b->tool >= 0) return PS_MORE; /* thinking etc.: not forwarded */
  b->tool = s->ntools++;
  return chunk_tool(s, b->tool, json_object_get(cb, "id"), json_object_get(cb, "name"), "", 0)
             ? PS_GARBAGE : PS_MORE;
}

static int on_block_delta(prov_stream *s, const json_t *ev) {
  const json_t *d = json_object_get(ev, "delta");
  anth_block *b = block_at(s, ev);
  if (!b) return PS_GARBAGE;
  const char *type = str_or(json_object_get(d, "type"), "");
  if (!strcmp(type, "text_delta"))
    return chunk_content(s, json_object_get(d, "text")) ? PS_GARBAGE : PS_MORE;
  const json_t *pj = json_object_get(d, "partial_json");
  if (strcmp(type, "input_json_delta") || b->tool < 0 || !json_is_string(pj) ||
      !json_string_length(pj))
    return PS_MORE; /* thinking/signature/citations deltas: no OpenAI slot */
  b->args_seen = 1;
  return chunk_tool(s, b->tool, NULL, NULL, json_string_value(pj), json_string_length(pj))
             ? PS_GARBAGE : PS_MORE;
}

static int on_block_stop(prov_stream *s, const json_t *ev) {
  anth_block *b = block_at(s, ev);
  if (!b) return PS_GARBAGE;
  if (b->tool < 0 || b->args_seen) return PS_MORE;
  b->args_seen = 1; /* a tool without arguments: "{}" so clients can JSON.parse */
  return chunk_tool(s, b->tool, NULL, NULL, "{}", 2) ? PS_GARBAGE : PS_MORE;
}

static int on_message_delta(prov_stream *s, const json_t *ev) {
  const json_t *sr = json_object_get(json_object_get(ev, "delta"), "stop_reason");
  if (json_is_string(sr))
    snprintf(s->finish, sizeof s->finish, "%s", anth_finish_reason(json_string_value(sr)));
  tokens_update(&s->tokens, json_object_get(ev, "usage"));
  tokens_export(&s->tokens, s->usage);
  return PS_MORE;
}

static int on_message_stop(prov_stream *s) {
  buf_t *o = s->out;
  if (chunk_write(s, "{}", 2, s->finish[0] ? s->finish : "stop")) return PS_GARBAGE;
  if (s->include_usage) {
    uint64_t p = tokens_prompt(&s->tokens);
    if (buf_append(o, s->head.data, s->head.len) ||
        buf_printf(o,
                   "\"choices\":[],\"usage\":{\"prompt_tokens\":%llu,\"completion_tokens\":%llu,"
                   "\"total_tokens\":%llu,\"prompt_tokens_details\":{\"cached_tokens\":%llu}}}\n\n",
                   (unsigned long long)p, (unsigned long long)s->tokens.output,
                   (unsigned long long)(p + s->tokens.output),
                   (unsigned long long)s->tokens.cache_read))
      return PS_GARBAGE;
  }
  tokens_export(&s->tokens, s->usage);
  return LIT(o, "data: [DONE]\n\n") ? PS_GARBAGE : PS_DONE;
}

/* In-band error (e.g. overload after the 200): an OpenAI error event, then the stream ends. */
static int on_error(prov_stream *s, const json_t *ev) {
  const json_t *e = json_object_get(ev, "error");
  const char *type = str_or(json_object_get(e, "type"), "api_error");
  const char *msg = str_or(json_object_get(e, "message"), "the upstream stream failed");
  prov_error cls = !strcmp(type, "overloaded_error")   ? PE_OVERLOADED
                   : !strcmp(type, "rate_limit_error") ? PE_RATE_LIMITED
                                                       : PE_SERVER;
  const char *otype = cls == PE_RATE_LIMITED ? "rate_limit_exceeded"
                      : !strcmp(type, "invalid_request_error") ? "invalid_request_error"
                                                               : "server_error";
  buf_t *o = s->out;
  if (LIT(o, "data: {\"error\":{\"message\":") || buf_json_quote(o, msg, strlen(msg)) ||
      buf_printf(o, ",\"type\":\"%s\",\"code\":", otype) || buf_json_quote(o, type, strlen(type)) ||
      LIT(o, "}}\n\n"))
    return PS_GARBAGE;
  if (s->err) *s->err = cls;
  return PS_ERROR;
}

static int event_translate(prov_stream *s, const json_t *ev) {
  const char *type = str_or(json_object_get(ev, "type"), "");
  if (!strcmp(type, "error") || !strcmp(s->event, "error")) return on_error(s, ev);
  if (!strcmp(type, "message_start")) return on_message_start(s, ev);
  if (!strcmp(type, "ping") || !*type) return PS_MORE;
  int known = !strcmp(type, "content_block_start") || !strcmp(type, "content_block_delta") ||
              !strcmp(type, "content_block_stop") || !strcmp(type, "message_delta") ||
              !strcmp(type, "message_stop");
  if (!known) return PS_MORE; /* event types added later */
  if (!s->started) return PS_GARBAGE; /* content before message_start: not a Messages stream */
  if (!strcmp(type, "content_block_start")) return on_block_start(s, ev);
  if (!strcmp(type, "content_block_delta")) return on_block_delta(s, ev);
  if (!strcmp(type, "content_block_stop")) return on_block_stop(s, ev);
  if (!strcmp(type, "message_delta")) return on_message_delta(s, ev);
  return on_message_stop(s);
}

/* One complete SSE event; nonzero stops decoding. */
static int event_dispatch(void *ud, const sse_event *e) {
  prov_stream *s = ud;
  json_t *ev = prov_json_loadb(e->data, e->data_len, 0, NULL);
  s->event = e->event;
  s->rc = json_is_object(ev) ? event_translate(s, ev) : PS_GARBAGE;
  if (s->rc == PS_GARBAGE && s->err) *s->err = PE_GARBAGE;
  json_decref(ev);
  return s->rc != PS_MORE;
}

static int anth_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                            prov_usage *usage, prov_error *err) {
  s->out = out;
  s->usage = usage;
  s->err = err;
  if (s->rc == PS_MORE && sse_decode(&s->sse, data, len, event_dispatch, s) < 0)
    s->rc = PS_GARBAGE;
  if (s->rc == PS_GARBAGE && err) *err = PE_GARBAGE;
  return s->rc;
}

/* EOF: a final event missing only its blank line still counts; anything short of
 * message_stop is a cut stream. */
static int anth_stream_end(prov_stream *s, buf_t *out, prov_usage *usage) {
  s->out = out;
  s->usage = usage;
  s->err = NULL;
  if (s->rc == PS_MORE && sse_finish(&s->sse, event_dispatch, s) < 0) s->rc = PS_GARBAGE;
  if (s->rc == PS_MORE) s->rc = PS_GARBAGE;
  return s->rc;
}

/* ---------------------------------------------------------------- errors */

static prov_error anth_classify_error(int status, const char *body, size_t len,
                                      uint64_t *retry_after_ms) {
  json_t *j = body ? prov_json_loadb(body, len, 0, NULL) : NULL;
  const json_t *e = json_object_get(j, "error");
  const char *type = str_or(json_object_get(e, "type"), "");
  const char *msg = str_or(json_object_get(e, "message"), "");
  prov_error cls;
  if (status == 429 || !strcmp(type, "rate_limit_error")) cls = PE_RATE_LIMITED;
  else if (status == 529 || status == 503 || !strcmp(type, "overloaded_error")) cls = PE_OVERLOADED;
  else if (status == 401 || status == 403 || status == 402 || !strcmp(type, "authentication_error") ||
           !strcmp(type, "permission_error") || !strcmp(type, "billing_error"))
    cls = PE_AUTH; /* 402 billing: this credential cannot be used; fail over and alert */
  else if (status == 404 || !strcmp(type, "not_found_error")) cls = PE_NOT_FOUND;
  else if (status == 408 || status == 504 || !strcmp(type, "timeout_error")) cls = PE_TIMEOUT;
  else if (status == 400 &&
           (strstr(msg, "prompt is too long") || strstr(msg, "exceed context limit")))
    cls = PE_CONTEXT_LENGTH;
  else if (status >= 500) cls = PE_SERVER;
  else if (status >= 400) cls = PE_BAD_REQUEST; /* 400, 413 request_too_large, other 4xx */
  else cls = PE_GARBAGE; /* a non-error status is not an error answer we understand */
  json_decref(j);
  return cls;
}

const provider_ops prov_anthropic = {
    .name = "anthropic",
    .build_request = anth_build_request,
    .decode_response = anth_decode_response,
    .stream_new = anth_stream_new,
    .stream_feed = anth_stream_feed,
    .stream_end = anth_stream_end,
    .stream_free = anth_stream_free,
    .classify_error = anth_classify_error,
};
