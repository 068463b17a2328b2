/* gemini.c — Google Gemini (Generative Language API) adapter: canonical OpenAI chat
 * request → generateContent request, and error classes. Responses and streams are
 * decoded in gemini_stream.c.
 *
 * URL   {api_base}/models/{model}:generateContent, or :streamGenerateContent?alt=sse
 *       when stream. api_base "" → https://generativelanguage.googleapis.com/v1beta; a
 *       trailing '/' is dropped; a bare scheme://host gets "/v1beta" appended. A leading
 *       "models/" in the model name is dropped. The key goes in `x-goog-api-key`, never
 *       in the URL (`?key=` ends up in access logs).
 *
 * OpenAI request field      → Gemini (or what happens)
 * ------------------------- ------------------------------------------------------------
 * model                     ignored: the deployment's upstream_model goes in the URL
 * messages[system|developer] systemInstruction.parts[].text, all of them hoisted in order
 *                           (Gemini has one system slot; mid-conversation ones move up)
 * messages[user]            contents[] role "user"; text / image_url / input_audio / file
 *                           parts (below); other part types → 400
 * messages[assistant]       role "model"; text parts + tool_calls → functionCall{name,
 *                           args = the arguments text spliced in as sent} ("" = {};
 *                           invalid or non-object JSON → 400); tool_calls[].extra_content.google.thought_signature
 *                           → thoughtSignature (Google's OpenAI-compat convention; the
 *                           decoder emits it the same way); refusal parts dropped;
 *                           legacy function_call handled like one tool call
 * messages[tool]            role "user" functionResponse{name = function name of the
 *                           nearest earlier tool_call with that id (unknown → 400),
 *                           response = the content if it is a JSON object, else
 *                           {"result": content}}; role "function" (legacy) uses `name`
 * messages[].name           dropped (no Gemini slot)
 * consecutive same role     merged into one content (tool results + following user text
 *                           share one user turn); empty text dropped; empty turns dropped
 * tool_call ids             never sent upstream: Gemini matches results by name and order
 * image_url data: URL       inlineData{mimeType, data} (must be ;base64)
 * image_url http(s)/gs://   fileData{mimeType from the extension (png jpg jpeg webp gif heic
 *                           heif pdf), else "image/jpeg", fileUri}. The adapter is pure and
 *                           never fetches (SSRF); Gemini fetches or answers 400, relayed
 * image_url.detail          dropped (no Gemini equivalent)
 * input_audio{data,format}  inlineData{mimeType "audio/<format>", data}
 * file.file_data (data URL) inlineData; file.file_id → 400 (OpenAI Files are not shared)
 * tools[type=function]      tools[0].functionDeclarations[{name, description, parameters}];
 *                           parameters lose $schema, $id, $comment, additionalProperties
 *                           and strict at every schema level (the legacy OpenAPI subset
 *                           rejects them); an object schema without properties is omitted
 *                           (Gemini rejects empty OBJECT properties); function.strict
 *                           dropped; other tool types → 400
 * tool_choice               "auto" → AUTO, "none" → NONE, "required" → ANY,
 *                           {"type":"function","function":{"name":n}} → ANY +
 *                           allowedFunctionNames [n]; anything else → 400
 * parallel_tool_calls       dropped: Gemini has no switch (false cannot be enforced)
 * functions / function_call legacy request fields → 400 (use tools / tool_choice)
 * max_completion_tokens     generationConfig.maxOutputTokens (wins over max_tokens)
 * max_tokens                generationConfig.maxOutputTokens
 * temperature, top_p        temperature, topP
 * top_k (vLLM extension)    topK
 * stop                      stopSequences (string or array of strings; > 5 → 400)
 * n                         candidateCount; n > 1 with stream → 400 (one choice per stream)
 * seed                      seed
 * presence_penalty          presencePenalty
 * frequency_penalty         frequencyPenalty
 * response_format           text → nothing; json_object → responseMimeType
 *                           "application/json"; json_schema → responseMimeType +
 *                           responseJsonSchema (= json_schema.schema, real JSON Schema,
 *                           unchanged); other types → 400
 * logprobs, top_logprobs    dropped: response logprobs stay null (never fabricated); a
 *                           failover target must not turn a working request into a 400
 * logit_bias                dropped (no Gemini equivalent)
 * reasoning_effort          dropped: thinking budgets are model-specific (2.5 vs 3)
 * stream                    selects :streamGenerateContent?alt=sse
 * stream_options            handled by the stream decoder (include_usage); not sent
 * user, metadata, store, service_tier, modalities, audio, prediction,
 * web_search_options, safety_identifier, prompt_cache_key
 *                           dropped (no Gemini equivalent; not needed for an answer)
 * JSON null for any field   same as absent
 * Dropped fields present in a request are listed in prov_request.dropped and logged by the
 * worker as a `fields_dropped` warning (and counted in llmesh_fields_dropped_total).
 * Not done: thought signatures are only round-tripped through extra_content (clients that
 * drop unknown fields lose them → Gemini 3 tool turns fail 400); a functionCall turn that
 * does not follow a user turn is sent as is (Gemini may 400). */
#include "gemini.h"
#include "prov_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A client error: message into b->err, returns -EINVAL (prov_json.h). */
#define reject(b, ...) prov_reject((b)->err, (b)->errlen, __VA_ARGS__)

#define DEFAULT_BASE "https://generativelanguage.googleapis.com/v1beta"
#define MAX_STOP 5 /* Gemini's stopSequences limit */

/* Per-request translation state. */
typedef struct gm_build {
  json_t *contents; /* contents[]: {role, parts} */
  json_t *system;   /* systemInstruction.parts[] */
  json_t *calls;    /* tool_call id → function name, latest assistant turn wins */
  char *err;        /* client-facing message */
  size_t errlen;    /* bytes in err */
  prov_splice sp;   /* argument objects spliced in as the client wrote them */
} gm_build;

/* ---- parts --------------------------------------------------------------------------- */

static int add_text(json_t *parts, const char *text) {
  if (!text || !*text) return 0; /* Gemini rejects empty text parts */
  return json_array_append_new(parts, json_pack("{s:s}", "text", text)) ? -ENOMEM : 0;
}

static int add_inline(json_t *parts, const char *mime, size_t mlen, const char *data) {
  json_t *p = json_pack("{s:{s:s%,s:s}}", "inlineData", "mimeType", mime, mlen, "data", data);
  return json_array_append_new(parts, p) ? -ENOMEM : 0;
}

/* data:<mime>[;param]*;base64,<data> → inlineData. */
static int add_data_url(gm_build *b, json_t *parts, const char *url, const char *what) {
  const char *hdr = url + 5, *comma = strchr(hdr, ',');
  size_t mlen = strcspn(hdr, ";,");
  if (!comma || mlen == 0 || comma - hdr < 7 || strncmp(comma - 7, ";base64", 7) != 0)
    return reject(b, "%s: data URL must be data:<mime type>;base64,<data>", what);
  return add_inline(parts, hdr, mlen, comma + 1);
}

static const char *mime_from_path(const char *url) {
  static const char *const map[][2] = {
      {".png", "image/png"},   {".jpg", "image/jpeg"},  {".jpeg", "image/jpeg"},
      {".webp", "image/webp"}, {".gif", "image/gif"},   {".heic", "image/heic"},
      {".heif", "image/heif"}, {".pdf", "application/pdf"},
  };
  size_t end = strcspn(url, "?#");
  for (size_t i = 0; i < ARRAY_SIZE(map); i++) {
    size_t n = strlen(map[i][0]);
    if (end > n && strncasecmp(url + end - n, map[i][0], n) == 0) return map[i][1];
  }
  return "image/jpeg";
}

static int add_image(gm_build *b, json_t *parts, json_t *img, const char *what) {
  const char *url = json_is_string(img) ? json_string_value(img) : prov_str_field(img, "url");
  if (!url) return reject(b, "%s: image_url.url must be a string", what);
  if (strncmp(url, "data:", 5) == 0) return add_data_url(b, parts, url, what);
  if (strncasecmp(url, "https://", 8) && strncasecmp(url, "http://", 7) &&
      strncmp(url, "gs://", 5))
    return reject(b, "%s: image_url.url must be a data: URL or an http(s) URL", what);
  json_t *p = json_pack("{s:{s:s,s:s}}", "fileData", "mimeType", mime_from_path(url),
                        "fileUri", url);
  return json_array_append_new(parts, p) ? -ENOMEM : 0;
}

static int add_audio(gm_build *b, json_t *parts, json_t *audio, const char *what) {
  const char *data = prov_str_field(audio, "data"), *fmt = prov_str_field(audio, "format");
  if (!data || !fmt || !*fmt)
    return reject(b, "%s: input_audio needs string data and format", what);
  char mime[64];
  snprintf(mime, sizeof mime, "audio/%s", fmt);
  return add_inline(parts, mime, strlen(mime), data);
}

static int add_file(gm_build *b, json_t *parts, json_t *file, const char *what) {
  const char *data = prov_str_field(file, "file_data");
  if (!data || strncmp(data, "data:", 5) != 0)
    return reject(b, "%s: file parts need file_data as a data: URL (file_id is not supported "
                     "by this provider)", what);
  return add_data_url(b, parts, data, what);
}

/* One content part of a user message. */
static int add_user_part(gm_build *b, json_t *parts, json_t *part, const char *what) {
  const char *type = prov_str_field(part, "type");
  if (!type) return reject(b, "%s: content part needs a type", what);
  if (!strcmp(type, "text")) {
    if (!json_is_string(json_object_get(part, "text")))
      return reject(b, "%s: text part needs a string text", what);
    return add_text(parts, prov_str_field(part, "text"));
  }
  if (!strcmp(type, "image_url")) return add_image(b, parts, prov_field(part, "image_url"), what);
  if (!strcmp(type, "input_audio"))
    return add_audio(b, parts, prov_field(part, "input_audio"), what);
  if (!strcmp(type, "file")) return add_file(b, parts, prov_field(part, "file"), what);
  return reject(b, "%s: content part type '%.40s' is not supported by this provider", what, type);
}

/* Text of a string or text-parts content (system, tool); NULL content = "". Fills *out
 * with a new reference. */
static int content_text(gm_build *b, json_t *content, json_t **out, const char *what) {
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
  return *out ? 0 : -ENOMEM; /* parts were valid UTF-8, so is their concatenation */
}

/* ---- messages ------------------------------------------------------------------------ */

/* Appends parts as a turn of role, merging with the previous turn of the same role.
 * Steals parts. */
static int push_turn(gm_build *b, const char *role, json_t *parts) {
  int rc = 0;
  size_t n = json_array_size(b->contents);
  json_t *last = n ? json_array_get(b->contents, n - 1) : NULL;
  if (json_array_size(parts) == 0) {
    /* nothing to send */
  } else if (last && !strcmp(prov_str_field(last, "role"), role)) {
    rc = json_array_extend(json_object_get(last, "parts"), parts) ? -ENOMEM : 0;
  } else {
    json_t *turn = json_pack("{s:s,s:O}", "role", role, "parts", parts);
    rc = json_array_append_new(b->contents, turn) ? -ENOMEM : 0;
  }
  json_decref(parts);
  return rc;
}

static int system_msg(gm_build *b, json_t *msg, const char *what) {
  json_t *text = NULL;
  int rc = content_text(b, prov_field(msg, "content"), &text, what);
  if (rc == 0) rc = add_text(b->system, json_string_value(text));
  json_decref(text);
  return rc;
}

static int user_msg(gm_build *b, json_t *msg, const char *what) {
  json_t *content = prov_field(msg, "content"), *parts = json_array(), *part;
  size_t i;
  int rc = 0;
  if (!parts) return -ENOMEM;
  if (json_is_string(content)) {
    rc = add_text(parts, json_string_value(content));
  } else if (json_is_array(content)) {
    json_array_foreach(content, i, part) {
      char w[96];
      snprintf(w, sizeof w, "%s.content[%zu]", what, i);
      if ((rc = add_user_part(b, parts, part, w))) break;
    }
  } else if (content) {
    rc = reject(b, "%s: content must be a string or an array", what);
  }
  if (rc) return json_decref(parts), rc;
  return push_turn(b, "user", parts);
}

/* functionCall part for one call; "" arguments mean no arguments. */
static int add_call(gm_build *b, json_t *parts, json_t *fn, const char *sig, const char *what) {
  const char *name = prov_str_field(fn, "name"), *args = prov_str_field(fn, "arguments");
  if (!name || !*name) return reject(b, "%s: function.name must be a non-empty string", what);
  size_t alen = args ? json_string_length(json_object_get(fn, "arguments")) : 0;
  json_span v;
  if (alen && json_span_whole(args, alen, &v))
    return reject(b, "%s: function.arguments is not valid JSON", what);
  if (alen && !json_span_is_object(&v))
    return reject(b, "%s: function.arguments must be a JSON object", what);
  /* the client's own bytes go upstream (spliced at dump time), not a jansson re-print */
  json_t *obj = alen ? prov_splice_mark(&b->sp, v.p, v.len) : json_object();
  if (!obj) return -ENOMEM;
  json_t *p = json_pack("{s:{s:s,s:o}}", "functionCall", "name", name, "args", obj);
  if (p && sig) json_object_set_new(p, "thoughtSignature", json_string(sig));
  return json_array_append_new(parts, p) ? -ENOMEM : 0;
}

static int assistant_calls(gm_build *b, json_t *calls, json_t *parts, const char *what) {
  size_t i;
  json_t *tc;
  if (!json_is_array(calls)) return reject(b, "%s: tool_calls must be an array", what);
  json_array_foreach(calls, i, tc) {
    char w[96];
    snprintf(w, sizeof w, "%s.tool_calls[%zu]", what, i);
    const char *type = prov_str_field(tc, "type"), *id = prov_str_field(tc, "id");
    if (type && strcmp(type, "function"))
      return reject(b, "%s: only function tool calls are supported", w);
    json_t *fn = prov_field(tc, "function");
    json_t *google = json_object_get(prov_field(tc, "extra_content"), "google");
    const char *sig = json_string_value(json_object_get(google, "thought_signature"));
    int rc = add_call(b, parts, fn, sig, w);
    if (rc) return rc;
    if (id && json_object_set_new(b->calls, id, json_string(prov_str_field(fn, "name"))))
      return -ENOMEM;
  }
  return 0;
}

static int assistant_msg(gm_build *b, json_t *msg, const char *what) {
  json_t *content = prov_field(msg, "content"), *parts = json_array(), *part;
  size_t i;
  int rc = 0;
  if (!parts) return -ENOMEM;
  if (json_is_string(content)) {
    rc = add_text(parts, json_string_value(content));
  } else if (json_is_array(content)) {
    json_array_foreach(content, i, part) {
      const char *type = prov_str_field(part, "type");
      if (type && !strcmp(type, "refusal")) continue;
      if (!type || strcmp(type, "text") || !prov_str_field(part, "text")) {
        rc = reject(b, "%s: assistant content parts must be text", what);
        break;
      }
      if ((rc = add_text(parts, prov_str_field(part, "text")))) break;
    }
  } else if (content) {
    rc = reject(b, "%s: content must be a string, an array or null", what);
  }
  if (!rc && prov_field(msg, "tool_calls"))
    rc = assistant_calls(b, prov_field(msg, "tool_calls"), parts, what);
  if (!rc && prov_field(msg, "function_call"))
    rc = add_call(b, parts, prov_field(msg, "function_call"), NULL, what);
  if (rc) return json_decref(parts), rc;
  return push_turn(b, "model", parts);
}

/* functionResponse.response must be an object: a JSON-object content passes through, as
 * its own bytes (spliced). */
static json_t *response_object(gm_build *b, json_t *text) {
  json_span v;
  if (prov_json_object_text(json_string_value(text), json_string_length(text), &v))
    return prov_splice_mark(&b->sp, v.p, v.len);
  return json_pack("{s:O}", "result", text);
}

static int tool_msg(gm_build *b, json_t *msg, int legacy, const char *what) {
  const char *name;
  if (legacy) {
    name = prov_str_field(msg, "name");
    if (!name) return reject(b, "%s: function message needs a name", what);
  } else {
    const char *id = prov_str_field(msg, "tool_call_id");
    if (!id) return reject(b, "%s: tool message needs a string tool_call_id", what);
    name = prov_str_field(b->calls, id);
    if (!name)
      return reject(b, "%s: tool_call_id '%.64s' does not match any earlier assistant tool call",
                    what, id);
  }
  json_t *text = NULL;
  int rc = content_text(b, prov_field(msg, "content"), &text, what);
  if (rc) return rc;
  json_t *parts = json_pack("[{s:{s:s,s:o}}]", "functionResponse", "name", name, "response",
                            response_object(b, text));
  json_decref(text);
  return parts ? push_turn(b, "user", parts) : -ENOMEM;
}

static int translate_messages(gm_build *b, json_t *msgs) {
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
    else if (!strcmp(role, "tool")) rc = tool_msg(b, m, 0, what);
    else if (!strcmp(role, "function")) rc = tool_msg(b, m, 1, what);
    else rc = reject(b, "%s: unknown role '%.32s'", what, role);
    if (rc) return rc;
  }
  if (json_array_size(b->contents) == 0)
    return reject(b, "messages must contain at least one non-empty user or assistant message");
  return 0;
}

/* ---- tools --------------------------------------------------------------------------- */

static int schema_strip_key(const char *k) {
  return !strcmp(k, "$schema") || !strcmp(k, "$id") || !strcmp(k, "$comment") ||
         !strcmp(k, "additionalProperties") || !strcmp(k, "strict");
}

/* Copy of a JSON schema without the keys Gemini's OpenAPI subset rejects. Property
 * names under "properties" are data, not keywords, and are kept. */
static json_t *schema_clean(json_t *s) {
  if (!json_is_object(s)) return json_deep_copy(s);
  json_t *out = json_object(), *v;
  const char *k;
  json_object_foreach(s, k, v) {
    json_t *c;
    if (schema_strip_key(k)) continue;
    if ((!strcmp(k, "properties") || !strcmp(k, "$defs") || !strcmp(k, "definitions")) &&
        json_is_object(v)) {
      const char *pk;
      json_t *pv;
      c = json_object();
      json_object_foreach(v, pk, pv) json_object_set_new(c, pk, schema_clean(pv));
    } else if (!strcmp(k, "items") || !strcmp(k, "not")) {
      c = schema_clean(v);
    } else if ((!strcmp(k, "anyOf") || !strcmp(k, "oneOf") || !strcmp(k, "allOf") ||
                !strcmp(k, "prefixItems")) && json_is_array(v)) {
      size_t i;
      json_t *e;
      c = json_array();
      json_array_foreach(v, i, e) json_array_append_new(c, schema_clean(e));
    } else {
      c = json_deep_copy(v);
    }
    json_object_set_new(out, k, c);
  }
  return out;
}

/* An object schema with no properties: Gemini rejects it, and it carries nothing. */
static int schema_is_empty_object(json_t *s) {
  const char *type = prov_str_field(s, "type");
  return type && !strcasecmp(type, "object") &&
         json_object_size(prov_field(s, "properties")) == 0 && !prov_field(s, "anyOf") && !prov_field(s, "oneOf") && !prov_field(s, "allOf");
}

static int translate_tools(gm_build *b, json_t *tools, json_t *body) {
  size_t i;
  json_t *t;
  if (!json_is_array(tools)) return reject(b, "tools must be an array");
  if (json_array_size(tools) == 0) return 0;
  json_t *decls = json_array();
  json_object_set_new(body, "tools", json_pack("[{s:o}]", "functionDeclarations", decls));
  json_array_foreach(tools, i, t) {
    const char *type = prov_str_field(t, "type");
    json_t *fn = prov_field(t, "function");
    if (!type || strcmp(type, "function") || !json_is_object(fn))
      return reject(b, "tools[%zu]: only function tools are supported by this provider", i);
    const char *name = prov_str_field(fn, "name"), *desc = prov_str_field(fn, "description");
    if (!name || !*name) return reject(b, "tools[%zu]: function.name must be a non-empty string", i);
    json_t *d = json_pack("{s:s}", "name", name), *params = prov_field(fn, "parameters");
    if (desc) json_object_set_new(d, "description", json_string(desc));
    if (params && !json_is_object(params))
      return json_decref(d), reject(b, "tools[%zu]: function.parameters must be an object", i);
    if (params && !schema_is_empty_object(params))
      json_object_set_new(d, "parameters", schema_clean(params));
    json_array_append_new(decls, d);
  }
  return 0;
}

static int translate_tool_choice(gm_build *b, json_t *tc, json_t *body) {
  const char *mode = NULL, *only = NULL;
  if (json_is_string(tc)) {
    const char *s = json_string_value(tc);
    if (!strcmp(s, "auto")) mode = "AUTO";
    else if (!strcmp(s, "none")) mode = "NONE";
    else if (!strcmp(s, "required")) mode = "ANY";
  } else if (json_is_object(tc) && prov_str_field(tc, "type") &&
             !strcmp(prov_str_field(tc, "type"), "function")) {
    only = prov_str_field(prov_field(tc, "function"), "name");
    mode = only ? "ANY" : NULL;
  }
  if (!mode)
    return reject(b, "tool_choice must be \"auto\", \"none\", \"required\" or "
                     "{\"type\":\"function\",\"function\":{\"name\":...}}");
  json_t *cfg = json_pack("{s:s}", "mode", mode);
  if (only) json_object_set_new(cfg, "allowedFunctionNames", json_pack("[s]", only));
  json_object_set_new(body, "toolConfig", json_pack("{s:o}", "functionCallingConfig", cfg));
  return 0;
}

/* ---- generation config --------------------------------------------------------------- */



static int translate_stop(gm_build *b, json_t *stop, json_t *gc) {
  json_t *seqs;
  if (json_is_string(stop)) {
    seqs = json_pack("[O]", stop);
  } else if (json_is_array(stop)) {
    size_t i;
    json_t *s;
    if (json_array_size(stop) > MAX_STOP)
      return reject(b, "stop: at most %d sequences are supported by this provider", MAX_STOP);
    json_array_foreach(stop, i, s) if (!json_is_string(s))
      return reject(b, "stop must be a string or an array of strings");
    seqs = json_incref(stop);
  } else {
    return reject(b, "stop must be a string or an array of strings");
  }
  return json_object_set_new(gc, "stopSequences", seqs) ? -ENOMEM : 0;
}

static int translate_format(gm_build *b, json_t *rf, json_t *gc) {
  const char *type = prov_str_field(rf, "type");
  if (!type) return reject(b, "response_format.type must be a string");
  if (!strcmp(type, "text")) return 0;
  if (strcmp(type, "json_object") && strcmp(type, "json_schema"))
    return reject(b, "response_format.type '%.32s' is not supported by this provider", type);
  json_object_set_new(gc, "responseMimeType", json_string("application/json"));
  if (!strcmp(type, "json_schema")) {
    json_t *schema = prov_field(prov_field(rf, "json_schema"), "schema");
    if (!json_is_object(schema))
      return reject(b, "response_format.json_schema.schema must be an object");
    json_object_set(gc, "responseJsonSchema", schema);
  }
  return 0;
}

static int translate_config(gm_build *b, json_t *req, const prov_canon *c, json_t *body) {
  json_t *gc = json_object(), *v;
  int rc = 0;
  if (!gc) return -ENOMEM;
  const char *max =
      prov_field(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (!rc) rc = prov_copy_integer(req, max, gc, "maxOutputTokens", 1, b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "temperature", gc, "temperature", b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "top_p", gc, "topP", b->err, b->errlen);
  if (!rc) rc = prov_copy_integer(req, "top_k", gc, "topK", 1, b->err, b->errlen);
  if (!rc && (v = prov_field(req, "stop"))) rc = translate_stop(b, v, gc);
  if (!rc) rc = prov_copy_integer(req, "n", gc, "candidateCount", 1, b->err, b->errlen);
  if (!rc && c->stream && json_integer_value(prov_field(req, "n")) > 1)
    rc = reject(b, "n > 1 is not supported with stream for this provider");
  if (!rc) rc = prov_copy_integer(req, "seed", gc, "seed", INT64_MIN, b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "presence_penalty", gc, "presencePenalty", b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "frequency_penalty", gc, "frequencyPenalty",
                                 b->err, b->errlen);
  if (!rc && (v = prov_field(req, "response_format"))) rc = translate_format(b, v, gc);
  if (!rc && json_object_size(gc)) rc = json_object_set(body, "generationConfig", gc) ? -ENOMEM : 0;
  json_decref(gc);
  return rc;
}

/* ---- URL and headers ----------------------------------------------------------------- */

static int model_name_ok(const char *m) {
  if (!*m) return 0;
  for (; *m; m++)
    if (!(*m >= 'a' && *m <= 'z') && !(*m >= 'A' && *m <= 'Z') && !(*m >= '0' && *m <= '9') &&
        *m != '-' && *m != '.' && *m != '_')
      return 0;
  return 1;
}

static int build_url(gm_build *b, const prov_target *t, int stream, buf_t *url) {
  const char *base = t->api_base && *t->api_base ? t->api_base : DEFAULT_BASE;
  const char *model = t->upstream_model ? t->upstream_model : "";
  size_t n = strlen(base);
  while (n && base[n - 1] == '/') n--;
  const char *host = strstr(base, "://");
  if (!host || host + 3 >= base + n) /* no scheme, or nothing after it */
    return reject(b, "the deployment's api_base is not a valid URL");
  int bare = memchr(host + 3, '/', (size_t)(base + n - host - 3)) == NULL;
  if (!strncmp(model, "models/", 7)) model += 7;
  if (!model_name_ok(model)) return reject(b, "the deployment's model name is not valid for this provider");
  if (buf_append(url, base, n) || (bare && buf_printf(url, "/v1beta")) ||
      buf_printf(url, "/models/%s:%s", model,
                 stream ? "streamGenerateContent?alt=sse" : "generateContent") ||
      !buf_cstr(url))
    return -ENOMEM;
  return 0;
}

static int build_headers(gm_build *b, const prov_target *t, prov_request *out) {
  const char *key = t->api_key ? t->api_key : "";
  if (strpbrk(key, "\r\n")) return reject(b, "the deployment's credential is not valid");
  if (prov_request_header(out, "content-type", "application/json")) return -ENOMEM;
  if (*key && prov_request_header(out, "x-goog-api-key", key)) return -ENOMEM;
  return 0;
}

/* ---- build_request ------------------------------------------------------------------- */

static int translate(gm_build *b, json_t *req, const prov_canon *c, json_t *body) {
  json_t *v;
  int rc;
  if (prov_field(req, "functions") || prov_field(req, "function_call"))
    return reject(b, "functions/function_call are not supported by this provider; use tools");
  if ((rc = translate_messages(b, prov_field(req, "messages")))) return rc;
  json_object_set(body, "contents", b->contents);
  if (json_array_size(b->system))
    json_object_set_new(body, "systemInstruction", json_pack("{s:O}", "parts", b->system));
  if ((v = prov_field(req, "tools")) && (rc = translate_tools(b, v, body))) return rc;
  if ((v = prov_field(req, "tool_choice")) && (rc = translate_tool_choice(b, v, body))) return rc;
  return translate_config(b, req, c, body);
}

/* The table's "dropped" rows that the request actually carries (prov_request.dropped). */
static const char *const gemini_dropped[] = {
    "parallel_tool_calls", "logprobs", "top_logprobs", "logit_bias", "reasoning_effort", "user",
    "metadata", "store", "service_tier", "modalities", "audio", "prediction",
    "web_search_options", "safety_identifier", "prompt_cache_key", NULL};

static int gemini_build_request(const prov_target *t, const prov_canon *c, prov_request *out,
                                char *err, size_t errlen) {
  gm_build b = {.contents = json_array(), .system = json_array(), .calls = json_object(),
                .err = err, .errlen = errlen};
  json_t *req = prov_json_loadb(c->body, c->len, 0, NULL), *body = json_object();
  int rc = -ENOMEM;
  if (!b.contents || !b.system || !b.calls || !body) goto done;
  if (!json_is_object(req)) {
    rc = reject(&b, "request body must be a JSON object");
    goto done;
  }
  if ((rc = build_url(&b, t, c->stream, &out->url)) || (rc = build_headers(&b, t, out)) ||
      (rc = translate(&b, req, c, body)))
    goto done;
  prov_drop_present(out, req, gemini_dropped);
  rc = prov_splice_dump(&b.sp, body, GEMINI_DUMP_FLAGS, &out->body);
  if (rc == -EINVAL) rc = reject(&b, "function arguments are not a valid JSON object");
done:
  prov_splice_free(&b.sp);
  json_decref(req);
  json_decref(body);
  json_decref(b.contents);
  json_decref(b.system);
  json_decref(b.calls);
  if (rc) prov_request_free(out);
  return rc;
}

/* ---- errors -------------------------------------------------------------------------- */

/* google.protobuf.Duration JSON ("12s", "1.5s") → ms, rounded up. -1 if malformed. */
static int64_t duration_ms(const char *s) {
  int64_t sec = 0, frac_ms = 0, scale = 100;
  int digits = 0, round_up = 0;
  for (; *s >= '0' && *s <= '9'; s++, digits++)
    if (digits > 12) return -1;
    else sec = sec * 10 + (*s - '0');
  if (*s == '.')
    for (s++; *s >= '0' && *s <= '9'; s++, digits++) {
      if (scale) frac_ms += (*s - '0') * scale, scale /= 10;
      else if (*s != '0') round_up = 1;
    }
  if (!digits || s[0] != 's' || s[1]) return -1;
  return sec * 1000 + frac_ms + round_up;
}

static int has_suffix(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && !strcmp(s + n - m, suffix);
}

/* Reads RetryInfo.retryDelay and ErrorInfo.reason from details[]. */
static void read_details(json_t *details, uint64_t *retry_after_ms, const char **reason) {
  size_t i;
  json_t *d;
  json_array_foreach(details, i, d) {
    const char *type = prov_str_field(d, "@type");
    if (!type) continue;
    if (has_suffix(type, "google.rpc.RetryInfo") && retry_after_ms) {
      const char *delay = prov_str_field(d, "retryDelay");
      int64_t ms = delay ? duration_ms(delay) : -1;
      if (ms >= 0) *retry_after_ms = (uint64_t)ms;
    } else if (has_suffix(type, "google.rpc.ErrorInfo") && prov_str_field(d, "reason")) {
      *reason = prov_str_field(d, "reason");
    }
  }
}

static int is(const char *a, const char *b) { return a && !strcmp(a, b); }

prov_error gemini_error_class(int http, json_t *st, uint64_t *retry_after_ms) {
  const char *status = prov_str_field(st, "status"), *msg = prov_str_field(st, "message");
  const char *reason = NULL;
  read_details(json_object_get(st, "details"), retry_after_ms, &reason);
  if (!msg) msg = "";
  if (http == 0) http = (int)json_integer_value(json_object_get(st, "code"));
  if (http == 429 || is(status, "RESOURCE_EXHAUSTED")) return PE_RATE_LIMITED;
  if (http == 401 || http == 403 || is(reason, "API_KEY_INVALID") ||
      is(status, "UNAUTHENTICATED") || is(status, "PERMISSION_DENIED") ||
      strstr(msg, "API key not valid"))
    return PE_AUTH;
  if (http == 404 || is(status, "NOT_FOUND")) return PE_NOT_FOUND;
  if (http == 408 || http == 504 || is(status, "DEADLINE_EXCEEDED")) return PE_TIMEOUT;
  if (http == 503 || is(status, "UNAVAILABLE")) return PE_OVERLOADED;
  if (http >= 500 || is(status, "INTERNAL") || is(status, "UNKNOWN")) return PE_SERVER;
  if (http >= 400 || is(status, "INVALID_ARGUMENT") || is(status, "FAILED_PRECONDITION")) {
    if (strstr(msg, "exceeds the maximum number of tokens") ||
        (strstr(msg, "input token count") && strstr(msg, "exceeds")))
      return PE_CONTEXT_LENGTH;
    return PE_BAD_REQUEST;
  }
  return PE_SERVER; /* a non-2xx we cannot place: treat as the upstream's fault */
}

static prov_error gemini_classify_error(int status, const char *body, size_t len,
                                        uint64_t *retry_after_ms) {
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL;
  /* streamGenerateContent without alt=sse wraps the status in an array */
  json_t *top = json_is_array(doc) ? json_array_get(doc, 0) : doc;
  json_t *st = json_object_get(top, "error");
  prov_error e = gemini_error_class(status, json_is_object(st) ? st : NULL, retry_after_ms);
  json_decref(doc);
  return e;
}

const provider_ops prov_gemini = {
    .name = "gemini",
    .build_request = gemini_build_request,
    .decode_response = gemini_decode_response,
    .stream_new = gemini_stream_new,
    .stream_feed = gemini_stream_feed,
    .stream_end = gemini_stream_end,
    .stream_free = gemini_stream_free,
    .classify_error = gemini_classify_error,
    .build_embeddings = gemini_build_embeddings,
    .decode_embeddings = gemini_decode_embeddings,
};
