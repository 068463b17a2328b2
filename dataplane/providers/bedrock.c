/* bedrock.c — AWS Bedrock Converse adapter: canonical OpenAI chat request → Converse /
 * ConverseStream request signed with SigV4, and error classes. Responses and event
 * streams are decoded in bedrock_stream.c.
 *
 * URL   https://bedrock-runtime.{aws_region}.amazonaws.com/model/{modelId}/converse, or
 *       /converse-stream when stream. modelId (model id, inference profile or ARN) is
 *       percent-encoded as one path segment (':' → %3A, '/' → %2F). A non-empty api_base
 *       (scheme://host[:port][/prefix], e.g. http://127.0.0.1:9000 for a mock) replaces
 *       the scheme, host and port and may add a path prefix; the signature then covers that
 *       host (SigV4 still needs aws_region for its scope).
 * Auth  aws_access_key_id + aws_secret_access_key set → SigV4, service "bedrock", region
 *       aws_region: headers host, x-amz-date, x-amz-security-token (with aws_session_token)
 *       and content-type are signed; the canonical URI is the sent path encoded once more
 *       (non-S3 rule: "%3A" signs as "%253A"); the payload hash covers the exact body.
 *       Otherwise a non-empty api_key is a Bedrock API key: `authorization: Bearer <key>`.
 *       Neither → unsigned (a signing proxy or a mock in front). The clock is injectable
 *       (prov_bedrock_set_clock).
 *
 * OpenAI request field      → Converse (or what happens)
 * ------------------------- ------------------------------------------------------------
 * model                     ignored: the deployment's upstream_model goes in the URL
 * messages[system|developer] system[{text}], all of them hoisted in order (one system slot;
 *                           §9.7.2 (a)); string or text parts, empty ones dropped
 * messages[user]            role user; string → {text}; parts text → {text}, image_url
 *                           data:image/(png|jpeg|jpg|gif|webp);base64 → {image:{format,
 *                           source:{bytes}}}; image_url http(s) → 400 (Converse has no URL
 *                           source and the adapter never fetches: SSRF); other image types,
 *                           input_audio, file, unknown part types → 400
 * messages[assistant]       role assistant; text (string or text parts; refusal parts
 *                           dropped) + tool_calls → {toolUse:{toolUseId = id, name, input =
 *                           the arguments text spliced in as sent}} ("" = {}; invalid,
 *                           non-object or duplicate-key JSON → 400)
 * messages[tool]            {toolResult:{toolUseId = tool_call_id, content:[{text}]}} in a
 *                           user message, placed after earlier toolResults but before other
 *                           blocks of that message; empty content → "(empty)" (Converse
 *                           rejects blank text); no `status` (only some models accept it)
 * messages[function], functions, function_call
 *                           400 (legacy; use tools)
 * messages[].name           dropped (no slot)
 * consecutive same role     merged into one message (Converse requires alternation); tool
 *                           results and a following user text share one user message; empty
 *                           text dropped; messages left empty dropped
 * tools[type=function]      toolConfig.tools[{toolSpec:{name, description, inputSchema:{json:
 *                           parameters, default {"type":"object","properties":{}}}}}];
 *                           function.strict dropped; other tool types → 400
 * (history has tool blocks, no tools)
 *                           toolConfig.tools = one stub toolSpec per function name used in
 *                           the history (Converse rejects toolUse/toolResult without a
 *                           toolConfig)
 * tool_choice               "auto" → {auto:{}}, "required" → {any:{}}, {"type":"function",
 *                           "function":{"name":n}} → {tool:{name:n}}; "none" → no toolChoice
 *                           and no tools (kept as stubs when the history needs them: the
 *                           model may then still call one); anything else → 400; dropped
 *                           without tools
 * parallel_tool_calls       dropped (no switch)
 * max_completion_tokens     inferenceConfig.maxTokens (wins over max_tokens); integer >= 1
 * max_tokens                inferenceConfig.maxTokens
 * temperature               inferenceConfig.temperature, clamped to 1 (Bedrock models take
 *                           0–1); < 0 or not a number → 400
 * top_p                     inferenceConfig.topP
 * stop                      inferenceConfig.stopSequences (string or array of strings; empty
 *                           strings dropped); other types → 400
 * n                         1 ok, other → 400 (one choice per Converse call)
 * response_format           text → nothing; json_object → system text BEDROCK_JSON_HINT
 *                           appended (no native JSON mode); json_schema → 400 (would need a
 *                           forced tool and unwrapping; not done); other → 400
 * top_k (vLLM extension)    dropped: a model-specific additionalModelRequestFields key that
 *                           other Bedrock models reject
 * seed, presence_penalty, frequency_penalty, logit_bias, logprobs, top_logprobs,
 * reasoning_effort, user, safety_identifier, metadata, store, service_tier, modalities,
 * audio, prediction, web_search_options, prompt_cache_key
 *                           dropped (no Converse slot; responses carry logprobs: null)
 * stream                    selects /converse-stream
 * stream_options            handled by the stream decoder (include_usage); not sent
 * JSON null for any field   same as absent
 * Dropped fields present in a request are listed in prov_request.dropped and logged by the
 * worker as a `fields_dropped` warning (and counted in llmesh_fields_dropped_total).
 * Not done: a conversation whose first kept message is from the assistant is sent as is
 * (Converse answers 400, relayed); toolUseIds that break Bedrock's [a-zA-Z0-9_-]{1,64} are
 * not rewritten; documents (file parts) and cachePoint blocks are not mapped. */
#include "bedrock.h"
#include "prov_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "sigv4.h"
#include "util.h"

/* A client error: message into b->err, returns -EINVAL (prov_json.h). */
#define reject(b, ...) prov_reject((b)->err, (b)->errlen, __VA_ARGS__)

#define BEDROCK_JSON_HINT "Respond only with a single valid JSON object, without any other text."
#define SERVICE "bedrock"
#define EMPTY_RESULT "(empty)"

/* ---- clock --------------------------------------------------------------------------- */

static uint64_t fixed_now; /* seconds; 0 = wall clock */

uint64_t bedrock_now_s(void) { return fixed_now ? fixed_now : util_wall_ms() / 1000; }

/* Per-request translation state. */
typedef struct br_build {
  json_t *messages; /* Converse messages[]: {role, content} */
  json_t *system;   /* system[]: {text} */
  json_t *used;     /* function names of toolUse blocks in the history: name → true */
  int tool_blocks;  /* the history has toolUse or toolResult blocks */
  char *err;        /* client-facing message */
  size_t errlen;    /* bytes in err */
  prov_splice sp;   /* argument objects spliced in as the client wrote them */
} br_build;

/* ---- content blocks ------------------------------------------------------------------ */

static int add_text(json_t *blocks, const char *text) {
  if (!text || !*text) return 0; /* Converse rejects blank text blocks */
  return json_array_append_new(blocks, json_pack("{s:s}", "text", text)) ? -ENOMEM : 0;
}

/* data:image/<png|jpeg|jpg|gif|webp>[;param]*;base64,<data> → {image:{format, source}}. */
static int add_image(br_build *b, json_t *blocks, json_t *img, const char *what) {
  static const char *const formats[][2] = {
      {"png", "png"}, {"jpeg", "jpeg"}, {"jpg", "jpeg"}, {"gif", "gif"}, {"webp", "webp"}};
  const char *url = json_is_string(img) ? json_string_value(img) : prov_str_field(img, "url");
  if (!url) return reject(b, "%s: image_url.url must be a string", what);
  if (strncmp(url, "data:", 5) != 0)
    return reject(b, "%s: image URLs are not supported by this provider; send the image as a "
                     "data: URL (data:image/png;base64,...)", what);
  const char *hdr = url + 5, *comma = strchr(hdr, ',');
  size_t mlen = strcspn(hdr, ";,");
  if (!comma || comma - hdr < 7 || strncmp(comma - 7, ";base64", 7) != 0)
    return reject(b, "%s: data URL must be data:<mime type>;base64,<data>", what);
  const char *fmt = NULL;
  if (mlen > 6 && !strncasecmp(hdr, "image/", 6))
    for (size_t i = 0; i < ARRAY_SIZE(formats) && !fmt; i++)
      if (mlen - 6 == strlen(formats[i][0]) && !strncasecmp(hdr + 6, formats[i][0], mlen - 6))
        fmt = formats[i][1];
  if (!fmt)
    return reject(b, "%s: image type must be png, jpeg, gif or webp for this provider", what);
  json_t *blk = json_pack("{s:{s:s,s:{s:s}}}", "image", "format", fmt, "source", "bytes", comma + 1);
  return json_array_append_new(blocks, blk) ? -ENOMEM : 0;
}

static int add_user_part(br_build *b, json_t *blocks, json_t *part, const char *what) {
  const char *type = prov_str_field(part, "type");
  if (!type) return reject(b, "%s: content part needs a type", what);
  if (!strcmp(type, "text")) {
    if (!json_is_string(json_object_get(part, "text")))
      return reject(b, "%s: text part needs a string text", what);
    return add_text(blocks, prov_str_field(part, "text"));
  }
  if (!strcmp(type, "image_url")) return add_image(b, blocks, prov_field(part, "image_url"), what);
  return reject(b, "%s: content part type '%.40s' is not supported by this provider", what, type);
}

/* Text of a string or text-parts content (system, tool); NULL content = "". Fills *out
 * with a new reference. */
static int content_text(br_build *b, json_t *content, json_t **out, const char *what) {
  if (!content) return (*out = json_string("")) ? 0 : -ENOMEM;
  if (json_is_string(content)) return (*out = json_incref(content)), 0;
  if (!json_is_array(content)) return reject(b, "%s: content must be a string or an array", what);
  buf_t t = {0};
  size_t i;
  json_t *part;
  json_array_foreach(content, i, part) {
    const char *type = prov_str_field(part, "type"), *text = prov_str_field(part, "text");
    if (!type || strcmp(type, "text") || !text) {
      buf_free(&t);
      return reject(b, "%s: only text content parts are allowed here", what);
    }
    if (buf_append(&t, text, strlen(text))) return buf_free(&t), -ENOMEM;
  }
  *out = json_stringn(t.data ? t.data : "", t.len);
  buf_free(&t);
  return *out ? 0 : -ENOMEM;
}

/* ---- messages ------------------------------------------------------------------------ */

static size_t leading_results(json_t *content) {
  size_t n = 0;
  while (json_object_get(json_array_get(content, n), "toolResult")) n++;
  return n;
}

/* Appends blocks as a message of role, merging with the previous message of the same
 * role; toolResult blocks go after the previous message's leading toolResults. Steals
 * blocks. */
static int push_msg(br_build *b, const char *role, json_t *blocks, int results) {
  int rc = 0;
  size_t n = json_array_size(b->messages);
  json_t *last = n ? json_array_get(b->messages, n - 1) : NULL;
  if (json_array_size(blocks) == 0) {
    /* nothing to send */
  } else if (last && !strcmp(prov_str_field(last, "role"), role)) {
    json_t *content = json_object_get(last, "content"), *blk;
    size_t at = leading_results(content), i;
    if (!results) rc = json_array_extend(content, blocks) ? -ENOMEM : 0;
    else json_array_foreach(blocks, i, blk) rc |= json_array_insert(content, at++, blk) ? -ENOMEM : 0;
  } else {
    json_t *msg = json_pack("{s:s,s:O}", "role", role, "content", blocks);
    rc = json_array_append_new(b->messages, msg) ? -ENOMEM : 0;
  }
  json_decref(blocks);
  return rc;
}

static int system_msg(br_build *b, json_t *msg, const char *what) {
  json_t *text = NULL;
  int rc = content_text(b, prov_field(msg, "content"), &text, what);
  if (rc == 0) rc = add_text(b->system, json_string_value(text));
  json_decref(text);
  return rc;
}

static int user_msg(br_build *b, json_t *msg, const char *what) {
  json_t *content = prov_field(msg, "content"), *blocks = json_array(), *part;
  size_t i;
  int rc = 0;
  if (!blocks) return -ENOMEM;
  if (json_is_string(content)) {
    rc = add_text(blocks, json_string_value(content));
  } else if (json_is_array(content)) {
    json_array_foreach(content, i, part) {
      char w[96];
      snprintf(w, sizeof w, "%s.content[%zu]", what, i);
      if ((rc = add_user_part(b, blocks, part, w))) break;
    }
  } else if (content) {
    rc = reject(b, "%s: content must be a string or an array", what);
  }
  if (rc) return json_decref(blocks), rc;
  return push_msg(b, "user", blocks, 0);
}

/* arguments string → object: "" (or blanks) = {}; anything but a JSON object (duplicate
 * keys included: Bedrock rejects them) → 400. The object goes upstream as the client's own
 * bytes, spliced at dump time. */
static int parse_arguments(br_build *b, json_t *av, json_t **out, const char *what) {
  const char *args = json_string_value(av);
  size_t n = json_string_length(av);
  json_span v;
  if (!args) return reject(b, "%s: function.arguments must be a string", what);
  if (strspn(args, " \t\r\n") == n) return (*out = json_object()) ? 0 : -ENOMEM;
  json_t *dup_check = prov_json_loadb(args, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, NULL);
  int ok = json_is_object(dup_check) && prov_json_object_text(args, n, &v);
  json_decref(dup_check);
  if (!ok) return reject(b, "%s: function.arguments must be a JSON object", what);
  return (*out = prov_splice_mark(&b->sp, v.p, v.len)) ? 0 : -ENOMEM;
}

static int add_calls(br_build *b, json_t *calls, json_t *blocks, const char *what) {
  size_t i;
  json_t *tc;
  if (!json_is_array(calls)) return reject(b, "%s: tool_calls must be an array", what);
  json_array_foreach(calls, i, tc) {
    char w[96];
    snprintf(w, sizeof w, "%s.tool_calls[%zu]", what, i);
    json_t *fn = prov_field(tc, "function"), *input = NULL;
    const char *id = prov_str_field(tc, "id"), *name = prov_str_field(fn, "name");
    if (!id || !*id) return reject(b, "%s: id must be a non-empty string", w);
    if (!name || !*name) return reject(b, "%s: function.name must be a non-empty string", w);
    int rc = parse_arguments(b, prov_field(fn, "arguments"), &input, w);
    if (rc) return rc;
    json_t *blk = json_pack("{s:{s:s,s:s,s:o}}", "toolUse", "toolUseId", id, "name", name,
                            "input", input);
    if (!blk || json_array_append_new(blocks, blk) || json_object_set_new(b->used, name, json_true()))
      return -ENOMEM;
    b->tool_blocks = 1;
  }
  return 0;
}

static int assistant_msg(br_build *b, json_t *msg, const char *what) {
  json_t *content = prov_field(msg, "content"), *blocks = json_array(), *part;
  size_t i;
  int rc = 0;
  if (!blocks) return -ENOMEM;
  if (json_is_string(content)) {
    rc = add_text(blocks, json_string_value(content));
  } else if (json_is_array(content)) {
    json_array_foreach(content, i, part) {
      const char *type = prov_str_field(part, "type");
      if (type && !strcmp(type, "refusal")) continue;
      if (!type || strcmp(type, "text") || !prov_str_field(part, "text")) {
        rc = reject(b, "%s: assistant content parts must be text", what);
        break;
      }
      if ((rc = add_text(blocks, prov_str_field(part, "text")))) break;
    }
  } else if (content) {
    rc = reject(b, "%s: content must be a string, an array or null", what);
  }
  if (!rc && prov_field(msg, "function_call"))
    rc = reject(b, "%s: function_call is not supported by this provider; use tool_calls", what);
  if (!rc && prov_field(msg, "tool_calls"))
    rc = add_calls(b, prov_field(msg, "tool_calls"), blocks, what);
  if (rc) return json_decref(blocks), rc;
  return push_msg(b, "assistant", blocks, 0);
}

static int tool_msg(br_build *b, json_t *msg, const char *what) {
  const char *id = prov_str_field(msg, "tool_call_id");
  if (!id || !*id) return reject(b, "%s: tool message needs a non-empty string tool_call_id", what);
  json_t *text = NULL;
  int rc = content_text(b, prov_field(msg, "content"), &text, what);
  if (rc) return rc;
  const char *t = json_string_value(text);
  json_t *blocks = json_pack("[{s:{s:s,s:[{s:s}]}}]", "toolResult", "toolUseId", id, "content",
                             "text", *t ? t : EMPTY_RESULT);
  json_decref(text);
  if (!blocks) return -ENOMEM;
  b->tool_blocks = 1;
  return push_msg(b, "user", blocks, 1);
}

static int translate_messages(br_build *b, json_t *msgs) {
  size_t i;
  json_t *m;
  if (!json_is_array(msgs) || json_array_size(msgs) == 0)
    return reject(b, "messages must be a non-empty array");
  json_array_foreach(msgs, i, m) {
    char what[48];
    snprintf(what, sizeof what, "messages[%zu]", i);
    const char *role = prov_str_field(m, "role");
    int rc;
    if (!role) return reject(b, "%s: role must be a string", what);
    if (!strcmp(role, "system") || !strcmp(role, "developer")) rc = system_msg(b, m, what);
    else if (!strcmp(role, "user")) rc = user_msg(b, m, what);
    else if (!strcmp(role, "assistant")) rc = assistant_msg(b, m, what);
    else if (!strcmp(role, "tool")) rc = tool_msg(b, m, what);
    else if (!strcmp(role, "function"))
      rc = reject(b, "%s: role 'function' is not supported by this provider; use tool", what);
    else rc = reject(b, "%s: unknown role '%.32s'", what, role);
    if (rc) return rc;
  }
  if (json_array_size(b->messages) == 0)
    return reject(b, "messages must contain at least one non-empty user or assistant message");
  return 0;
}

/* ---- tools --------------------------------------------------------------------------- */

static json_t *tool_spec(const char *name, const char *desc, json_t *schema) {
  json_t *spec = json_pack("{s:s}", "name", name);
  if (spec && desc) json_object_set_new(spec, "description", json_string(desc));
  if (spec)
    json_object_set_new(spec, "inputSchema",
                        json_pack("{s:o}", "json", schema ? json_deep_copy(schema)
                                                          : json_pack("{s:s,s:{}}", "type", "object",
                                                                      "properties")));
  return json_pack("{s:o}", "toolSpec", spec);
}

/* Client tools → toolSpecs appended to specs. */
static int translate_tools(br_build *b, json_t *tools, json_t *specs) {
  size_t i;
  json_t *t;
  if (!json_is_array(tools)) return reject(b, "tools must be an array");
  json_array_foreach(tools, i, t) {
    const char *type = prov_str_field(t, "type");
    json_t *fn = prov_field(t, "function");
    if (!type || strcmp(type, "function") || !json_is_object(fn))
      return reject(b, "tools[%zu]: only function tools are supported by this provider", i);
    const char *name = prov_str_field(fn, "name"), *desc = prov_str_field(fn, "description");
    json_t *params = prov_field(fn, "parameters");
    if (!name || !*name) return reject(b, "tools[%zu]: function.name must be a non-empty string", i);
    if (params && !json_is_object(params))
      return reject(b, "tools[%zu]: function.parameters must be an object", i);
    if (json_array_append_new(specs, tool_spec(name, desc && *desc ? desc : NULL, params)))
      return -ENOMEM;
  }
  return 0;
}

/* toolChoice for tc, or NULL with *none set for "none"; -EINVAL for anything else. */
static int translate_tool_choice(br_build *b, json_t *tc, json_t **choice, int *none) {
  *choice = NULL;
  *none = 0;
  if (json_is_string(tc)) {
    const char *s = json_string_value(tc);
    if (!strcmp(s, "auto")) *choice = json_pack("{s:{}}", "auto");
    else if (!strcmp(s, "required")) *choice = json_pack("{s:{}}", "any");
    else if (!strcmp(s, "none")) return *none = 1, 0;
  } else if (json_is_object(tc) && prov_str_field(tc, "type") &&
             !strcmp(prov_str_field(tc, "type"), "function")) {
    const char *name = prov_str_field(prov_field(tc, "function"), "name");
    if (name && *name) *choice = json_pack("{s:{s:s}}", "tool", "name", name);
  }
  if (*choice) return 0;
  return reject(b, "tool_choice must be \"auto\", \"none\", \"required\" or "
                   "{\"type\":\"function\",\"function\":{\"name\":...}}");
}

static int translate_tool_config(br_build *b, json_t *req, json_t *body) {
  json_t *tools = prov_field(req, "tools"), *tc = prov_field(req, "tool_choice"), *choice = NULL;
  json_t *specs = json_array();
  int none = 0, rc = 0;
  if (!specs) return -ENOMEM;
  if (tools) rc = translate_tools(b, tools, specs);
  if (!rc && tc) rc = translate_tool_choice(b, tc, &choice, &none);
  if (!rc && none) json_array_clear(specs);
  if (!rc && json_array_size(specs) == 0 && b->tool_blocks) {
    const char *name;
    json_t *v;
    json_object_foreach(b->used, name, v) /* stubs: the history needs a toolConfig */
      rc |= json_array_append_new(specs, tool_spec(name, "Used earlier in this conversation.", NULL))
                ? -ENOMEM : 0;
    json_decref(choice); /* no tool is on offer: nothing to choose */
    choice = NULL;
  }
  if (!rc && json_array_size(specs)) {
    json_t *cfg = json_pack("{s:O}", "tools", specs);
    if (cfg && choice) json_object_set(cfg, "toolChoice", choice);
    rc = json_object_set_new(body, "toolConfig", cfg) ? -ENOMEM : 0;
  }
  json_decref(choice);
  json_decref(specs);
  return rc;
}

/* ---- inference config ---------------------------------------------------------------- */

static int translate_stop(br_build *b, json_t *stop, json_t *ic) {
  json_t *seqs = json_array(), *s;
  size_t i;
  if (!seqs) return -ENOMEM;
  if (json_is_string(stop)) {
    if (json_string_length(stop)) json_array_append(seqs, stop);
  } else if (json_is_array(stop)) {
    json_array_foreach(stop, i, s) {
      if (!json_is_string(s)) break;
      if (json_string_length(s)) json_array_append(seqs, s);
    }
    if (i < json_array_size(stop)) stop = NULL;
  } else {
    stop = NULL;
  }
  if (!stop) {
    json_decref(seqs);
    return reject(b, "stop must be a string or an array of strings");
  }
  if (json_array_size(seqs) == 0) return json_decref(seqs), 0;
  return json_object_set_new(ic, "stopSequences", seqs) ? -ENOMEM : 0;
}

static int translate_format(br_build *b, json_t *rf) {
  const char *type = prov_str_field(rf, "type");
  if (!type) return reject(b, "response_format.type must be a string");
  if (!strcmp(type, "text")) return 0;
  if (!strcmp(type, "json_object")) return add_text(b->system, BEDROCK_JSON_HINT);
  if (!strcmp(type, "json_schema"))
    return reject(b, "response_format json_schema is not supported by this provider");
  return reject(b, "response_format.type '%.32s' is not supported by this provider", type);
}

static int translate_config(br_build *b, json_t *req, json_t *body) {
  json_t *ic = json_object(), *v;
  int rc = 0;
  if (!ic) return -ENOMEM;
  const char *max =
      prov_field(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if ((v = prov_field(req, max))) {
    if (!json_is_integer(v) || json_integer_value(v) < 1)
      rc = reject(b, "%s must be an integer >= 1", max);
    else json_object_set(ic, "maxTokens", v);
  }
  if (!rc && (v = prov_field(req, "temperature"))) {
    if (!json_is_number(v) || json_number_value(v) < 0)
      rc = reject(b, "temperature must be a number >= 0");
    else if (json_number_value(v) > 1) json_object_set_new(ic, "temperature", json_real(1.0));
    else json_object_set(ic, "temperature", v);
  }
  if (!rc && (v = prov_field(req, "top_p"))) {
    if (!json_is_number(v)) rc = reject(b, "top_p must be a number");
    else json_object_set(ic, "topP", v);
  }
  if (!rc && (v = prov_field(req, "stop"))) rc = translate_stop(b, v, ic);
  if (!rc && (v = prov_field(req, "n")) && (!json_is_integer(v) || json_integer_value(v) != 1))
    rc = reject(b, "n must be 1 for this provider");
  if (!rc && (v = prov_field(req, "response_format"))) rc = translate_format(b, v);
  if (!rc && json_object_size(ic)) rc = json_object_set(body, "inferenceConfig", ic) ? -ENOMEM : 0;
  json_decref(ic);
  return rc;
}

static int translate(br_build *b, json_t *req, json_t *body) {
  int rc;
  if (prov_field(req, "functions") || prov_field(req, "function_call"))
    return reject(b, "functions/function_call are not supported by this provider; use tools");
  if ((rc = translate_messages(b, prov_field(req, "messages")))) return rc;
  if ((rc = translate_config(b, req, body))) return rc; /* may append the JSON hint */
  if ((rc = translate_tool_config(b, req, body))) return rc;
  if (json_array_size(b->system) && json_object_set(body, "system", b->system)) return -ENOMEM;
  return json_object_set(body, "messages", b->messages) ? -ENOMEM : 0;
}

/* ---- URL, headers, signing ----------------------------------------------------------- */

/* Where the request goes. */
typedef struct br_url {
  buf_t host; /* authority as sent in Host, lowercased */
  buf_t path; /* percent-encoded path as sent */
} br_url;

static int region_ok(const char *r) {
  size_t n = strlen(r);
  return n > 0 && n <= 32 && strspn(r, "abcdefghijklmnopqrstuvwxyz0123456789-") == n;
}

static int model_ok(const char *m) {
  if (!*m || strlen(m) > 2048) return 0;
  for (; *m; m++)
    if ((unsigned char)*m < 0x21 || *m == 0x7f) return 0;
  return 1;
}

static int build_url(br_build *b, const prov_target *t, int stream, prov_request *out, br_url *u) {
  const char *region = t->aws_region ? t->aws_region : "", *base = t->api_base;
  const char *model = t->upstream_model ? t->upstream_model : "";
  buf_t def = {0};
  int rc = -ENOMEM;
  if (!base || !*base) {
    if (!region_ok(region)) return reject(b, "the deployment's AWS region is not set or not valid");
    if (buf_printf(&def, "https://bedrock-runtime.%s.amazonaws.com", region) || !buf_cstr(&def))
      return -ENOMEM;
    base = def.data;
  }
  size_t n = strlen(base), scheme;
  while (n && base[n - 1] == '/') n--;
  if (!strncasecmp(base, "https://", 8)) scheme = 8;
  else if (!strncasecmp(base, "http://", 7)) scheme = 7;
  else scheme = 0;
  size_t alen = scheme ? strcspn(base + scheme, "/") : 0;
  if (alen > n - scheme) alen = n - scheme;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)base[i] <= 0x20 || base[i] == 0x7f || base[i] == '?' || base[i] == '#' ||
        base[i] == '@' || base[i] == '\\')
      scheme = 0;
  if (!scheme || alen == 0) {
    rc = reject(b, "the deployment's api_base is not a valid URL");
    goto done;
  }
  if (!model_ok(model)) {
    rc = reject(b, "the deployment's model name is not valid for this provider");
    goto done;
  }
  for (size_t i = 0; i < alen; i++) {
    char c = base[scheme + i];
    c = (char)(c >= 'A' && c <= 'Z' ? c + 32 : c);
    if (buf_append(&u->host, &c, 1)) goto done;
  }
  if (buf_append(&u->path, base + scheme + alen, n - scheme - alen) ||
      buf_printf(&u->path, "/model/") || sigv4_uri_encode(&u->path, model, strlen(model), 0) ||
      buf_printf(&u->path, "/%s", stream ? "converse-stream" : "converse") || !buf_cstr(&u->path) ||
      !buf_cstr(&u->host) || buf_append(&out->url, base, scheme) ||
      buf_append(&out->url, u->host.data, u->host.len) ||
      buf_append(&out->url, u->path.data, u->path.len) || !buf_cstr(&out->url))
    goto done;
  rc = 0;
done:
  buf_free(&def);
  return rc;
}

static int header_ok(const char *v) { return !v || !strpbrk(v, "\r\n"); }

static int sign(br_build *b, const prov_target *t, br_url *u, const char *body, size_t blen,
                prov_request *out) {
  const char *token = t->aws_session_token && *t->aws_session_token ? t->aws_session_token : NULL;
  const char *region = t->aws_region ? t->aws_region : "";
  char date[17], hash[65];
  buf_t auth = {0};
  if (!t->aws_secret_access_key || !*t->aws_secret_access_key)
    return reject(b, "the deployment's AWS credentials are incomplete");
  if (!region_ok(region)) return reject(b, "the deployment's AWS region is not set or not valid");
  sigv4_amz_date(bedrock_now_s(), date);
  if (sigv4_sha256_hex(body, blen, hash)) return -ENOMEM;
  sigv4_header h[] = {{"content-type", "application/json"},
                      {"host", u->host.data},
                      {"x-amz-date", date},
                      {"x-amz-security-token", token}};
  sigv4_creds c = {t->aws_access_key_id, t->aws_secret_access_key, token};
  sigv4_request r = {"POST", u->path.data, "", h, token ? 4 : 3, hash, date, region, SERVICE};
  int rc = sigv4_authorization(&c, &r, &auth);
  if (rc == -EINVAL) rc = reject(b, "the deployment's AWS credentials are not valid");
  if (!rc && (!buf_cstr(&auth) || prov_request_header(out, "host", u->host.data) ||
              prov_request_header(out, "x-amz-date", date) ||
              (token && prov_request_header(out, "x-amz-security-token", token)) ||
              prov_request_header(out, "authorization", auth.data)))
    rc = -ENOMEM;
  buf_free(&auth);
  return rc;
}

static int build_headers(br_build *b, const prov_target *t, br_url *u, const char *body,
                         size_t blen, prov_request *out) {
  const char *akid = t->aws_access_key_id, *key = t->api_key ? t->api_key : "";
  if (!header_ok(akid) || !header_ok(t->aws_secret_access_key) ||
      !header_ok(t->aws_session_token) || !header_ok(key))
    return reject(b, "the deployment's credential is not valid");
  if (prov_request_header(out, "content-type", "application/json")) return -ENOMEM;
  if (akid && *akid) return sign(b, t, u, body, blen, out);
  if (!*key) return 0;
  buf_t v = {0};
  int rc = buf_printf(&v, "Bearer %s", key) || !buf_cstr(&v) ||
           prov_request_header(out, "authorization", v.data) ? -ENOMEM : 0;
  buf_free(&v);
  return rc;
}

/* ---- build_request ------------------------------------------------------------------- */

/* The table's "dropped" rows that the request actually carries (prov_request.dropped). */
static const char *const bedrock_dropped[] = {
    "parallel_tool_calls", "top_k", "seed", "presence_penalty", "frequency_penalty",
    "logit_bias", "logprobs", "top_logprobs", "reasoning_effort", "user", "safety_identifier",
    "metadata", "store", "service_tier", "modalities", "audio", "prediction",
    "web_search_options", "prompt_cache_key", NULL};

static int bedrock_build_request(const prov_target *t, const prov_canon *c, prov_request *out,
                                 char *err, size_t errlen) {
  br_build b = {.messages = json_array(), .system = json_array(), .used = json_object(),
                .err = err, .errlen = errlen};
  json_t *req = prov_json_loadb(c->body, c->len, 0, NULL), *body = json_object();
  br_url u = {{0}, {0}};
  int rc = -ENOMEM;
  if (!b.messages || !b.system || !b.used || !body) goto done;
  if (!json_is_object(req)) {
    rc = reject(&b, "request body must be a JSON object");
    goto done;
  }
  if ((rc = build_url(&b, t, c->stream, out, &u)) || (rc = translate(&b, req, body))) goto done;
  prov_drop_present(out, req, bedrock_dropped);
  /* the signature covers the final bytes, spliced arguments included */
  if ((rc = prov_splice_dump(&b.sp, body, BEDROCK_DUMP_FLAGS, &out->body))) {
    if (rc == -EINVAL) rc = reject(&b, "function arguments are not a valid JSON object");
    goto done;
  }
  rc = build_headers(&b, t, &u, out->body.data, out->body.len, out);
done:
  prov_splice_free(&b.sp);
  buf_free(&u.host);
  buf_free(&u.path);
  json_decref(req);
  json_decref(body);
  json_decref(b.messages);
  json_decref(b.system);
  json_decref(b.used);
  if (rc) prov_request_free(out);
  return rc;
}

/* ---- errors -------------------------------------------------------------------------- */

/* Case-insensitive: is the error type (after any "prefix#", before any ":") `name`? */
static int type_is(const char *type, const char *name) {
  if (!type) return 0;
  const char *hash = strrchr(type, '#');
  if (hash) type = hash + 1;
  size_t n = strcspn(type, ":");
  return n == strlen(name) && !strncasecmp(type, name, n);
}

static int has(const char *msg, const char *needle) { return msg && strcasestr(msg, needle); }

prov_error bedrock_error_class(int http, const char *type, const char *msg) {
  if (type_is(type, "ModelNotReadyException") || type_is(type, "ServiceUnavailableException") ||
      http == 503)
    return PE_OVERLOADED;
  if (http == 429 || type_is(type, "ThrottlingException") ||
      type_is(type, "ServiceQuotaExceededException") || type_is(type, "TooManyRequestsException"))
    return PE_RATE_LIMITED;
  if (http == 401 || http == 403 || type_is(type, "UnrecognizedClientException") ||
      type_is(type, "AccessDeniedException") || type_is(type, "InvalidSignatureException") ||
      type_is(type, "SignatureDoesNotMatch") || type_is(type, "IncompleteSignatureException") ||
      type_is(type, "MissingAuthenticationTokenException") ||
      type_is(type, "ExpiredTokenException") || type_is(type, "InvalidClientTokenId") ||
      has(msg, "request signature we calculated does not match") ||
      has(msg, "security token included in the request is"))
    return PE_AUTH;
  if (http == 404 || type_is(type, "ResourceNotFoundException")) return PE_NOT_FOUND;
  if (http == 408 || http == 504 || type_is(type, "ModelTimeoutException")) return PE_TIMEOUT;
  if (http >= 500 || type_is(type, "InternalServerException") ||
      type_is(type, "ModelStreamErrorException") || type_is(type, "ModelErrorException"))
    return PE_SERVER;
  if (http == 424) return PE_SERVER; /* ModelErrorException without a body */
  if (http >= 400 || type_is(type, "ValidationException")) {
    if (has(msg, "input is too long") || has(msg, "too many tokens") ||
        has(msg, "too many input tokens") || has(msg, "prompt is too long") ||
        has(msg, "maximum context length") || has(msg, "context window"))
      return PE_CONTEXT_LENGTH;
    return PE_BAD_REQUEST;
  }
  return http ? PE_GARBAGE : PE_SERVER; /* a 2xx/3xx is no error answer; unknown in-band: theirs */
}

static const char *body_str(json_t *doc, const char *a, const char *b) {
  const char *s = json_string_value(json_object_get(doc, a));
  return s ? s : json_string_value(json_object_get(doc, b));
}

static prov_error bedrock_classify_error(int status, const char *body, size_t len,
                                         uint64_t *retry_after_ms) {
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL;
  const char *type = body_str(doc, "__type", "code");
  if (!type) type = body_str(doc, "Code", "type");
  prov_error e = bedrock_error_class(status, type, body_str(doc, "message", "Message"));
  json_decref(doc);
  return e;
}

void prov_bedrock_set_clock(uint64_t now_s) {
  fixed_now = now_s;
  bedrock_ids_reset(now_s != 0);
}

const provider_ops prov_bedrock = {
    .name = "bedrock",
    .build_request = bedrock_build_request,
    .decode_response = bedrock_decode_response,
    .stream_new = bedrock_stream_new,
    .stream_feed = bedrock_stream_feed,
    .stream_end = bedrock_stream_end,
    .stream_free = bedrock_stream_free,
    .classify_error = bedrock_classify_error,
};
