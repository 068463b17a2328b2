/* ollama.c — Ollama native API adapter: canonical OpenAI chat request → POST /api/chat,
 * and error classes. Whole answers and NDJSON streams are decoded in ollama_stream.c.
 *
 * URL   {api_base}/api/chat. api_base "" → http://localhost:11434; trailing '/' dropped; a
 *       base ending in /v1 (Ollama's OpenAI-compatible surface, a common paste) or /api has
 *       that suffix stripped, so http://host:11434, http://host:11434/ and
 *       http://host:11434/v1 all reach the native endpoint. Must be http(s)://host….
 * Headers content-type: application/json; authorization: Bearer <key> only when a key is
 *       set (ollama.com cloud; a local server needs none).
 *
 * OpenAI request field      → Ollama /api/chat (or what happens)
 * ------------------------- ------------------------------------------------------------
 * model                     model = the deployment's upstream_model (client's ignored)
 * stream                    stream: true/false, ALWAYS written (Ollama streams by default)
 * messages[system|developer] role "system", content = text parts joined with "\n" (non-text
 *                           parts → 400); kept in place (Ollama takes system anywhere)
 * messages[user]            role "user"; text parts joined with "\n"; image_url data:
 *                           URL (must be ;base64) → images[] (raw base64, mime dropped);
 *                           image_url http(s) → 400 (adapters never fetch: SSRF; Ollama
 *                           only takes inline bytes); input_audio, file, others → 400
 * messages[assistant]       role "assistant"; text parts joined, refusal parts dropped,
 *                           null → ""; tool_calls[] → tool_calls[{function:{name,
 *                           arguments: the arguments text spliced in as sent}}] ("" →
 *                           {}; invalid or non-object JSON → 400); legacy function_call → one tool call
 * messages[tool]            role "tool", tool_name = function name of the nearest earlier
 *                           assistant tool_call with that tool_call_id (unknown → 400),
 *                           content = text (parts joined)
 * messages[function]        (legacy) role "tool", tool_name = name
 * messages[].name           dropped (no slot)
 * consecutive same role     kept as is (Ollama accepts them)
 * tools[type=function]      tools, passed through unchanged (same shape as OpenAI); other
 *                           tool types → 400
 * tool_choice               "auto" → nothing (Ollama's only mode); "none" → tools omitted;
 *                           "required" / {"type":"function",...} → 400 (cannot be enforced)
 * parallel_tool_calls       dropped (no switch)
 * functions / function_call legacy request fields → 400 (use tools / tool_choice)
 * max_completion_tokens     options.num_predict (wins over max_tokens)
 * max_tokens                options.num_predict
 * temperature, top_p        options.temperature, options.top_p
 * top_k (vLLM extension)    options.top_k
 * stop                      options.stop (string → [string]; array of strings)
 * seed                      options.seed
 * presence_penalty          options.presence_penalty
 * frequency_penalty         options.frequency_penalty
 * n                         1 ok; anything else → 400 (one choice per answer)
 * response_format           text → nothing; json_object → format "json"; json_schema →
 *                           format = json_schema.schema (a JSON Schema object); other → 400
 * reasoning_effort          dropped: `think` 400s on models that cannot think, and a
 *                           failover target must not turn a working request into a 400
 * logprobs, top_logprobs    dropped: response logprobs stay null (never fabricated)
 * logit_bias                dropped (no Ollama equivalent)
 * stream_options            handled by the stream decoder (include_usage); not sent
 * user, metadata, store, service_tier, modalities, audio, prediction, safety_identifier,
 * prompt_cache_key, web_search_options
 *                           dropped (no Ollama equivalent; not needed for an answer)
 * JSON null for any field   same as absent
 * Dropped fields present in a request are listed in prov_request.dropped and logged by the
 * worker as a `fields_dropped` warning (and counted in llmesh_fields_dropped_total).
 * Not sent: keep_alive, options.num_ctx (server defaults apply: over-long prompts are
 * truncated by Ollama, not rejected). Numbers are re-serialised by jansson (exact, up to
 * 17 significant digits). */
#include "ollama.h"
#include "prov_json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A client error: message into b->err, returns -EINVAL (prov_json.h). */
#define reject(b, ...) prov_reject((b)->err, (b)->errlen, __VA_ARGS__)

#define DEFAULT_BASE "http://localhost:11434"

/* Per-request translation state. */
typedef struct ol_build {
  json_t *msgs;   /* messages[] being built */
  json_t *calls;  /* tool_call id → function name, latest assistant turn wins */
  char *err;      /* client-facing message */
  size_t errlen;  /* bytes in err */
  prov_splice sp; /* argument objects spliced in as the client wrote them */
} ol_build;

static int set(json_t *o, const char *key, json_t *v) {
  return !v || json_object_set_new(o, key, v) ? -ENOMEM : 0;
}

/* ---- content ------------------------------------------------------------------------- */

static int add_text(buf_t *t, const char *s, size_t n) {
  if (t->len && buf_append(t, "\n", 1)) return -ENOMEM;
  return buf_append(t, s, n) ? -ENOMEM : 0;
}

/* data:<mime>[;param]*;base64,<data> → images[] entry (raw base64). */
static int add_image(ol_build *b, json_t *images, json_t *img, const char *what) {
  const char *url = json_is_string(img) ? json_string_value(img) : prov_str_field(img, "url");
  if (!url) return reject(b, "%s: image_url.url must be a string", what);
  if (!strncasecmp(url, "https://", 8) || !strncasecmp(url, "http://", 7))
    return reject(b, "%s: image URLs are not supported by this provider; send the image as a "
                     "data:<mime type>;base64,<data> URL", what);
  const char *comma = strncmp(url, "data:", 5) ? NULL : strchr(url, ',');
  if (!comma || comma - url < 12 || strncmp(comma - 7, ";base64", 7) ||
      strcspn(url + 5, ";,") == 0)
    return reject(b, "%s: image_url.url must be a data:<mime type>;base64,<data> URL", what);
  return json_array_append_new(images, json_string(comma + 1)) ? -ENOMEM : 0;
}

/* Flattens content (string, array of parts or null) into text; images (when non-NULL)
 * collects image parts; refusal parts are skipped when allow_refusal. */
static int flatten(ol_build *b, json_t *content, buf_t *text, json_t *images, int allow_refusal,
                   const char *what) {
  size_t i;
  json_t *part;
  if (!content) return 0;
  if (json_is_string(content))
    return buf_append(text, json_string_value(content), json_string_length(content)) ? -ENOMEM : 0;
  if (!json_is_array(content)) return reject(b, "%s: content must be a string, an array or null", what);
  json_array_foreach(content, i, part) {
    const char *type = prov_str_field(part, "type");
    json_t *t = json_object_get(part, "text");
    int rc;
    if (!type) return reject(b, "%s.content[%zu]: content part needs a type", what, i);
    if (!strcmp(type, "text")) {
      if (!json_is_string(t)) return reject(b, "%s.content[%zu]: text part needs a string text", what, i);
      rc = add_text(text, json_string_value(t), json_string_length(t));
    } else if (!strcmp(type, "refusal") && allow_refusal) {
      continue; /* an assistant's earlier refusal has no Ollama slot */
    } else if (!strcmp(type, "image_url") && images) {
      char w[96];
      snprintf(w, sizeof w, "%s.content[%zu]", what, i);
      rc = add_image(b, images, prov_field(part, "image_url"), w);
    } else {
      return reject(b, "%s.content[%zu]: content part type '%.40s' is not supported here by this "
                       "provider", what, i, type);
    }
    if (rc) return rc;
  }
  return 0;
}

/* {"role":role,"content":text} appended to b->msgs; returns it (borrowed) or NULL. */
static json_t *push_msg(ol_build *b, const char *role, buf_t *text) {
  json_t *m = json_pack("{s:s,s:s%}", "role", role, "content", text->data ? text->data : "",
                        text->len);
  if (!m || json_array_append_new(b->msgs, m)) return NULL;
  return m;
}

/* ---- messages ------------------------------------------------------------------------ */

static int text_msg(ol_build *b, json_t *msg, const char *role, const char *what) {
  buf_t text = {0};
  int rc = flatten(b, prov_field(msg, "content"), &text, NULL, 0, what);
  if (!rc && !push_msg(b, role, &text)) rc = -ENOMEM;
  buf_free(&text);
  return rc;
}

static int user_msg(ol_build *b, json_t *msg, const char *what) {
  buf_t text = {0};
  json_t *images = json_array(), *m;
  int rc = images ? flatten(b, prov_field(msg, "content"), &text, images, 0, what) : -ENOMEM;
  if (!rc && !(m = push_msg(b, "user", &text))) rc = -ENOMEM;
  if (!rc && json_array_size(images)) rc = set(m, "images", json_incref(images));
  json_decref(images);
  buf_free(&text);
  return rc;
}

/* One OpenAI call {id?, function{name, arguments}} → {function{name, arguments:{…}}}. */
static int add_call(ol_build *b, json_t *calls, json_t *fn, const char *id, const char *what) {
  const char *name = prov_str_field(fn, "name");
  json_t *av = prov_field(fn, "arguments"), *args;
  if (!name || !*name) return reject(b, "%s: function.name must be a non-empty string", what);
  if (!av || (json_is_string(av) && json_string_length(av) == 0)) {
    args = json_object();
  } else if (json_is_string(av)) {
    json_span v;
    if (!prov_json_object_text(json_string_value(av), json_string_length(av), &v))
      return reject(b, "%s: function.arguments must be a JSON object encoded as a string", what);
    args = prov_splice_mark(&b->sp, v.p, v.len); /* the client's bytes, spliced at dump time */
    if (!args) return -ENOMEM;
  } else if (json_is_object(av)) {
    args = json_incref(av);
  } else {
    return reject(b, "%s: function.arguments must be a JSON object encoded as a string", what);
  }
  if (id && json_object_set_new(b->calls, id, json_string(name))) return json_decref(args), -ENOMEM;
  json_t *c = json_pack("{s:{s:s,s:o}}", "function", "name", name, "arguments", args);
  return json_array_append_new(calls, c) ? -ENOMEM : 0;
}

static int assistant_msg(ol_build *b, json_t *msg, const char *what) {
  buf_t text = {0};
  json_t *calls = json_array(), *tcs = prov_field(msg, "tool_calls"), *tc, *m;
  size_t i;
  int rc = calls ? flatten(b, prov_field(msg, "content"), &text, NULL, 1, what) : -ENOMEM;
  if (!rc && tcs && !json_is_array(tcs)) rc = reject(b, "%s: tool_calls must be an array", what);
  if (!rc) json_array_foreach(tcs, i, tc) {
      char w[96];
      snprintf(w, sizeof w, "%s.tool_calls[%zu]", what, i);
      const char *type = prov_str_field(tc, "type");
      if (type && strcmp(type, "function")) {
        rc = reject(b, "%s: only function tool calls are supported by this provider", w);
        break;
      }
      if ((rc = add_call(b, calls, prov_field(tc, "function"), prov_str_field(tc, "id"), w))) break;
    }
  if (!rc && prov_field(msg, "function_call"))
    rc = add_call(b, calls, prov_field(msg, "function_call"), NULL, what);
  if (!rc && !(m = push_msg(b, "assistant", &text))) rc = -ENOMEM;
  if (!rc && json_array_size(calls)) rc = set(m, "tool_calls", json_incref(calls));
  json_decref(calls);
  buf_free(&text);
  return rc;
}

static int tool_msg(ol_build *b, json_t *msg, int legacy, const char *what) {
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
  buf_t text = {0};
  json_t *m;
  int rc = flatten(b, prov_field(msg, "content"), &text, NULL, 0, what);
  if (!rc && !(m = push_msg(b, "tool", &text))) rc = -ENOMEM;
  if (!rc) rc = set(m, "tool_name", json_string(name));
  buf_free(&text);
  return rc;
}

static int translate_messages(ol_build *b, json_t *msgs) {
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
    if (!strcmp(role, "system") || !strcmp(role, "developer")) rc = text_msg(b, m, "system", what);
    else if (!strcmp(role, "user")) rc = user_msg(b, m, what);
    else if (!strcmp(role, "assistant")) rc = assistant_msg(b, m, what);
    else if (!strcmp(role, "tool")) rc = tool_msg(b, m, 0, what);
    else if (!strcmp(role, "function")) rc = tool_msg(b, m, 1, what);
    else rc = reject(b, "%s: unknown role '%.32s'", what, role);
    if (rc) return rc;
  }
  return 0;
}

/* ---- tools --------------------------------------------------------------------------- */

static int translate_tools(ol_build *b, json_t *req, json_t *body) {
  json_t *tools = prov_field(req, "tools"), *tc = prov_field(req, "tool_choice"), *t;
  size_t i;
  if (tc) {
    const char *s = json_string_value(tc), *type = prov_str_field(tc, "type");
    int named =
        type && !strcmp(type, "function") && prov_str_field(prov_field(tc, "function"), "name");
    if (!named && !(s && (!strcmp(s, "auto") || !strcmp(s, "none") || !strcmp(s, "required"))))
      return reject(b, "tool_choice must be \"auto\", \"none\", \"required\" or "
                       "{\"type\":\"function\",\"function\":{\"name\":...}}");
    if (named || !strcmp(s, "required"))
      return reject(b, "tool_choice \"required\" or a named function is not supported by this "
                       "provider (only \"auto\" and \"none\")");
  }
  if (!tools) return 0;
  if (!json_is_array(tools)) return reject(b, "tools must be an array");
  json_array_foreach(tools, i, t) {
    const char *type = prov_str_field(t, "type");
    const char *name = prov_str_field(prov_field(t, "function"), "name");
    if (!type || strcmp(type, "function") || !json_is_object(prov_field(t, "function")))
      return reject(b, "tools[%zu]: only function tools are supported by this provider", i);
    if (!name || !*name) return reject(b, "tools[%zu]: function.name must be a non-empty string", i);
  }
  if (json_array_size(tools) == 0 || (tc && json_is_string(tc) && !strcmp(json_string_value(tc), "none")))
    return 0; /* "none": the model sees no tools, which is what none means */
  return json_object_set(body, "tools", tools) ? -ENOMEM : 0;
}

/* ---- options ------------------------------------------------------------------------- */



static int translate_stop(ol_build *b, json_t *stop, json_t *opt) {
  size_t i;
  json_t *s;
  if (json_is_string(stop)) return set(opt, "stop", json_pack("[O]", stop));
  if (!json_is_array(stop)) return reject(b, "stop must be a string or an array of strings");
  json_array_foreach(stop, i, s) if (!json_is_string(s))
    return reject(b, "stop must be a string or an array of strings");
  return json_object_set(opt, "stop", stop) ? -ENOMEM : 0;
}

static int translate_format(ol_build *b, json_t *rf, json_t *body) {
  const char *type = prov_str_field(rf, "type");
  if (!type) return reject(b, "response_format.type must be a string");
  if (!strcmp(type, "text")) return 0;
  if (!strcmp(type, "json_object")) return set(body, "format", json_string("json"));
  if (strcmp(type, "json_schema"))
    return reject(b, "response_format.type '%.32s' is not supported by this provider", type);
  json_t *schema = prov_field(prov_field(rf, "json_schema"), "schema");
  if (!json_is_object(schema)) return reject(b, "response_format.json_schema.schema must be an object");
  return json_object_set(body, "format", schema) ? -ENOMEM : 0;
}

static int translate_options(ol_build *b, json_t *req, json_t *body) {
  json_t *opt = json_object(), *v;
  int rc = 0;
  if (!opt) return -ENOMEM;
  const char *max =
      prov_field(req, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (!rc) rc = prov_copy_integer(req, max, opt, "num_predict", 1, b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "temperature", opt, "temperature", b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "top_p", opt, "top_p", b->err, b->errlen);
  if (!rc) rc = prov_copy_integer(req, "top_k", opt, "top_k", 1, b->err, b->errlen);
  if (!rc && (v = prov_field(req, "stop"))) rc = translate_stop(b, v, opt);
  if (!rc) rc = prov_copy_integer(req, "seed", opt, "seed", INT64_MIN, b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "presence_penalty", opt, "presence_penalty",
                                 b->err, b->errlen);
  if (!rc) rc = prov_copy_number(req, "frequency_penalty", opt, "frequency_penalty",
                                 b->err, b->errlen);
  if (!rc && (v = prov_field(req, "n")) && (!json_is_integer(v) || json_integer_value(v) != 1))
    rc = reject(b, "n must be 1 for this provider");
  if (!rc && (v = prov_field(req, "response_format"))) rc = translate_format(b, v, body);
  if (!rc && json_object_size(opt)) rc = json_object_set(body, "options", opt) ? -ENOMEM : 0;
  json_decref(opt);
  return rc;
}

/* ---- URL and headers ----------------------------------------------------------------- */

static int has_suffix(const char *s, size_t n, const char *suffix) {
  size_t m = strlen(suffix);
  return n >= m && !strncasecmp(s + n - m, suffix, m);
}

static int build_url(ol_build *b, const prov_target *t, buf_t *url) {
  const char *base = t->api_base && *t->api_base ? t->api_base : DEFAULT_BASE;
  size_t scheme = !strncasecmp(base, "http://", 7) ? 7 : !strncasecmp(base, "https://", 8) ? 8 : 0;
  size_t n = strlen(base);
  if (!scheme || strpbrk(base, "?# \r\n"))
    return reject(b, "the deployment's api_base must be an http(s) URL such as "
                     "http://localhost:11434");
  while (n > scheme && base[n - 1] == '/') n--;
  if (has_suffix(base, n, "/v1")) n -= 3;
  else if (has_suffix(base, n, "/api")) n -= 4;
  while (n > scheme && base[n - 1] == '/') n--;
  if (n == scheme || base[scheme] == '/') return reject(b, "the deployment's api_base has no host");
  if (buf_append(url, base, n) || buf_printf(url, "/api/chat") || !buf_cstr(url)) return -ENOMEM;
  return 0;
}

static int build_headers(ol_build *b, const prov_target *t, prov_request *out) {
  const char *key = t->api_key ? t->api_key : "";
  if (strpbrk(key, "\r\n")) return reject(b, "the deployment's credential is not valid");
  if (prov_request_header(out, "content-type", "application/json")) return -ENOMEM;
  if (*key) {
    buf_t h = {0};
    int rc = buf_printf(&h, "Bearer %s", key) || !buf_cstr(&h) ||
             prov_request_header(out, "authorization", h.data);
    buf_free(&h);
    if (rc) return -ENOMEM;
  }
  return 0;
}

/* ---- build_request ------------------------------------------------------------------- */

static int translate(ol_build *b, const prov_target *t, json_t *req, const prov_canon *c,
                     json_t *body) {
  int rc;
  const char *model = t->upstream_model ? t->upstream_model : "";
  if (!*model) return reject(b, "the deployment has no model name");
  if (prov_field(req, "functions") || prov_field(req, "function_call"))
    return reject(b, "functions/function_call are not supported by this provider; use tools");
  if ((rc = translate_messages(b, prov_field(req, "messages")))) return rc;
  if (set(body, "model", json_string(model)) || json_object_set(body, "messages", b->msgs) ||
      set(body, "stream", json_boolean(c->stream)))
    return -ENOMEM;
  if ((rc = translate_tools(b, req, body))) return rc;
  return translate_options(b, req, body);
}

/* The table's "dropped" rows that the request actually carries (prov_request.dropped). */
static const char *const ollama_dropped[] = {
    "parallel_tool_calls", "reasoning_effort", "logprobs", "top_logprobs", "logit_bias", "user",
    "metadata", "store", "service_tier", "modalities", "audio", "prediction",
    "safety_identifier", "prompt_cache_key", "web_search_options", NULL};

static int ollama_build_request(const prov_target *t, const prov_canon *c, prov_request *out,
                                char *err, size_t errlen) {
  ol_build b = {.msgs = json_array(), .calls = json_object(), .err = err, .errlen = errlen};
  json_t *req = c->body ? prov_json_loadb(c->body, c->len, 0, NULL) : NULL, *body = json_object();
  int rc = -ENOMEM;
  if (!b.msgs || !b.calls || !body) goto done;
  if (!json_is_object(req)) {
    rc = reject(&b, "request body must be a JSON object");
    goto done;
  }
  if ((rc = build_url(&b, t, &out->url)) || (rc = build_headers(&b, t, out)) ||
      (rc = translate(&b, t, req, c, body)))
    goto done;
  prov_drop_present(out, req, ollama_dropped);
  rc = prov_splice_dump(&b.sp, body, OLLAMA_DUMP_FLAGS, &out->body);
  if (rc == -EINVAL) rc = reject(&b, "function arguments are not a valid JSON object");
done:
  prov_splice_free(&b.sp);
  json_decref(req);
  json_decref(body);
  json_decref(b.msgs);
  json_decref(b.calls);
  if (rc) prov_request_free(out);
  return rc;
}

/* ---- errors -------------------------------------------------------------------------- */

prov_error ollama_error_class(int http, const char *msg) {
  if (!msg) msg = "";
  if (http == 0) return strcasestr(msg, "not found") ? PE_NOT_FOUND : PE_SERVER;
  if (http == 429) return PE_RATE_LIMITED;
  if (http == 401 || http == 403) return PE_AUTH;
  if (http == 404) return PE_NOT_FOUND; /* model not pulled (or no such endpoint) */
  if (http == 408 || http == 504) return PE_TIMEOUT;
  if (http == 503) return PE_OVERLOADED; /* "server busy": OLLAMA_MAX_QUEUE exceeded */
  if (http >= 500) return PE_SERVER;
  if (http >= 400) {
    if (strcasestr(msg, "context length") || strcasestr(msg, "context window") ||
        strcasestr(msg, "too many tokens"))
      return PE_CONTEXT_LENGTH;
    return PE_BAD_REQUEST;
  }
  return PE_GARBAGE; /* a non-error status is not an error answer we understand */
}

static prov_error ollama_classify_error(int status, const char *body, size_t len,
                                        uint64_t *retry_after_ms) {
  (void)retry_after_ms; /* Ollama sends no retry hints */
  json_t *doc = body ? prov_json_loadb(body, len, 0, NULL) : NULL, *e = json_object_get(doc, "error");
  const char *msg = json_is_string(e) ? json_string_value(e) : prov_str_field(e, "message");
  prov_error cls = ollama_error_class(status ? status : 500, msg);
  json_decref(doc);
  return cls;
}

const provider_ops prov_ollama = {
    .name = "ollama",
    .build_request = ollama_build_request,
    .decode_response = ollama_decode_response,
    .stream_new = ollama_stream_new,
    .stream_feed = ollama_stream_feed,
    .stream_end = ollama_stream_end,
    .stream_free = ollama_stream_free,
    .classify_error = ollama_classify_error,
    .build_embeddings = ollama_build_embeddings,
    .decode_embeddings = ollama_decode_embeddings,
};
