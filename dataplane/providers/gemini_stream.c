/* gemini_stream.c — Gemini answers → canonical OpenAI: whole GenerateContentResponse
 * bodies (decode_response) and `:streamGenerateContent?alt=sse` streams.
 *
 * Response mapping
 *   id              "chatcmpl-" + responseId, else "chatcmpl-gemini-<created>-<pid>-<seq>"
 *                   (counter-based; prov_gemini_set_clock pins created, pid = 0, seq from 0)
 *   created         wall clock seconds at decode / stream start
 *   model           the name the caller passes (the client's deployment name)
 *   choices[i]      one per candidate (index = candidate.index); text parts concatenated,
 *                   `thought: true` parts and executableCode/codeExecutionResult skipped;
 *                   functionCall → tool_calls[{id = functionCall.id or "call_<n>" (n = position
 *                   in the message), type "function", function{name, arguments = the
 *                   exact bytes of args in the upstream JSON}}] plus extra_content.google.thought_signature when
 *                   the part has a thoughtSignature (see gemini.c); content null when there
 *                   are tool calls and no text, else the text ("" when none)
 *   finish_reason   STOP → stop (tool_calls when the message has calls); MAX_TOKENS → length;
 *                   SAFETY RECITATION BLOCKLIST PROHIBITED_CONTENT SPII IMAGE_SAFETY →
 *                   content_filter; anything else (OTHER, LANGUAGE, MALFORMED_FUNCTION_CALL…)
 *                   → stop, or tool_calls when calls were emitted
 *   prompt blocked  no candidates + promptFeedback.blockReason → one choice, content "",
 *                   finish content_filter
 *   usage           prompt = promptTokenCount + toolUsePromptTokenCount; completion =
 *                   candidatesTokenCount + thoughtsTokenCount (reasoning_tokens =
 *                   thoughtsTokenCount); cached = cachedContentTokenCount; total = sum.
 *                   Omitted when usageMetadata is absent.
 *   logprobs        null (never requested upstream, see gemini.c)
 *
 * Streams: role chunk on the first event, one content delta per event's text, one complete
 * tool_calls delta per functionCall (Gemini sends them whole) with a running index, the
 * finish chunk on the event with finishReason. Gemini has no terminator event, so the stream
 * is complete only at EOF after a finishReason: stream_end then writes the usage chunk (when
 * include_usage) and [DONE]. An event still pending at EOF (no blank line) is dropped.
 * Events after the finish only update usage. `{"error":{...}}` → OpenAI error event +
 * PS_ERROR; undecodable → PS_GARBAGE with nothing written. Candidates other than index 0 are
 * ignored (n > 1 is rejected for streams). */
#include "gemini.h"
#include "prov_json.h"
#include "sse_decoder.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_EVENT (16u << 20) /* bytes of one SSE line or event: beyond that it is garbage */

/* Token counts as read from usageMetadata. */
typedef struct gm_usage {
  uint64_t prompt;     /* promptTokenCount + toolUsePromptTokenCount */
  uint64_t completion; /* candidatesTokenCount + thoughtsTokenCount */
  uint64_t cached;     /* cachedContentTokenCount */
  uint64_t reasoning;  /* thoughtsTokenCount */
  int seen;            /* usageMetadata was present */
} gm_usage;

/* ---- clock and ids ------------------------------------------------------------------- */

static uint64_t fixed_created; /* seconds; 0 = wall clock */
static uint64_t id_seq;        /* minted ids so far */
static int id_pinned;          /* set_clock was called with a fixed time: no pid salt */

void prov_gemini_set_clock(uint64_t created_s) {
  fixed_created = created_s;
  id_pinned = created_s != 0;
  id_seq = 0;
}

static uint64_t now_s(void) { return fixed_created ? fixed_created : util_wall_ms() / 1000; }

static json_t *make_id(json_t *resp, uint64_t created) {
  const char *rid = json_string_value(json_object_get(resp, "responseId"));
  if (rid && *rid) return json_sprintf("chatcmpl-%s", rid);
  unsigned salt = id_pinned ? 0 : (unsigned)getpid() & 0xffff;
  return json_sprintf("chatcmpl-gemini-%" PRIu64 "-%u-%" PRIu64, created, salt, id_seq++);
}

/* ---- shared pieces ------------------------------------------------------------------- */

static uint64_t count(json_t *o, const char *key) { return prov_uint(json_object_get(o, key)); }

static void read_usage(json_t *resp, gm_usage *u) {
  json_t *m = json_object_get(resp, "usageMetadata");
  if (!json_is_object(m)) return;
  u->prompt = count(m, "promptTokenCount") + count(m, "toolUsePromptTokenCount");
  u->reasoning = count(m, "thoughtsTokenCount");
  u->completion = count(m, "candidatesTokenCount") + u->reasoning;
  u->cached = count(m, "cachedContentTokenCount");
  u->seen = 1;
}

static void export_usage(const gm_usage *u, prov_usage *out) {
  if (!out || !u->seen) return;
  out->prompt_tokens = u->prompt;
  out->completion_tokens = u->completion;
  out->cached_tokens = u->cached;
  out->cache_write_tokens = 0;
  out->seen = 1;
}

static json_t *usage_json(const gm_usage *u) {
  return json_pack("{s:I,s:I,s:I,s:{s:I},s:{s:I}}", "prompt_tokens", (json_int_t)u->prompt,
                   "completion_tokens", (json_int_t)u->completion, "total_tokens",
                   (json_int_t)(u->prompt + u->completion), "prompt_tokens_details",
                   "cached_tokens", (json_int_t)u->cached, "completion_tokens_details",
                   "reasoning_tokens", (json_int_t)u->reasoning);
}

static const char *finish_reason(const char *reason, int has_calls) {
  static const char *const filtered[] = {"SAFETY", "RECITATION", "BLOCKLIST",
                                         "PROHIBITED_CONTENT", "SPII", "IMAGE_SAFETY"};
  if (!reason) return NULL;
  if (!strcmp(reason, "MAX_TOKENS")) return "length";
  for (size_t i = 0; i < ARRAY_SIZE(filtered); i++)
    if (!strcmp(reason, filtered[i])) return "content_filter";
  return has_calls ? "tool_calls" : "stop";
}

/* Where a part sits in the upstream JSON text: its arguments are copied from there. */
typedef struct gm_src {
  const char *doc; /* the whole response or stream event */
  size_t len;      /* bytes in doc */
  size_t cand;     /* candidates[] index */
  size_t part;     /* content.parts[] index */
} gm_src;

/* tool_calls[] entry for a functionCall part; n = its index in the message; arguments are
 * the upstream bytes of functionCall.args. */
static json_t *tool_call(json_t *part, size_t n, const gm_src *src) {
  json_t *fc = json_object_get(part, "functionCall"), *args = json_object_get(fc, "args");
  const char *name = json_string_value(json_object_get(fc, "name"));
  const char *id = json_string_value(json_object_get(fc, "id"));
  const char *sig = json_string_value(json_object_get(part, "thoughtSignature"));
  json_span_step path[] = {{"candidates", 0}, {NULL, src->cand}, {"content", 0}, {"parts", 0},
                           {NULL, src->part}, {"functionCall", 0}, {"args", 0}};
  json_t *a = args ? prov_json_raw(src->doc, src->len, path, ARRAY_SIZE(path), args)
                   : json_string("{}");
  json_t *tc = json_pack("{s:o,s:s,s:{s:s,s:o}}", "id",
                         id && *id ? json_string(id) : json_sprintf("call_%zu", n), "type",
                         "function", "function", "name", name ? name : "", "arguments", a);
  if (tc && sig)
    json_object_set_new(tc, "extra_content",
                        json_pack("{s:{s:s}}", "google", "thought_signature", sig));
  return tc;
}

static int is_call(json_t *part) { return json_is_object(json_object_get(part, "functionCall")); }

static const char *part_text(json_t *part) {
  if (json_is_true(json_object_get(part, "thought"))) return NULL;
  return json_string_value(json_object_get(part, "text"));
}

static int emit_json(buf_t *out, json_t *j) {
  char *s = j ? prov_json_dumps(j, GEMINI_DUMP_FLAGS) : NULL;
  int rc = !s || buf_printf(out, "data: %s\n\n", s) ? -ENOMEM : 0;
  free(s);
  json_decref(j);
  return rc;
}

/* ---- decode_response ----------------------------------------------------------------- */

static json_t *choice(json_t *cand, size_t pos, const char *doc, size_t len) {
  json_t *parts = json_object_get(json_object_get(cand, "content"), "parts"), *part;
  json_t *calls = json_array();
  buf_t text = {0};
  size_t i;
  json_array_foreach(parts, i, part) {
    const char *t = part_text(part);
    gm_src src = {doc, len, pos, i};
    if (is_call(part)) json_array_append_new(calls, tool_call(part, json_array_size(calls), &src));
    else if (t) buf_append(&text, t, strlen(t));
  }
  int has_calls = json_array_size(calls) > 0;
  const char *fr = finish_reason(json_string_value(json_object_get(cand, "finishReason")), has_calls);
  json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content",
                          text.len || !has_calls ? json_stringn(text.data ? text.data : "", text.len)
                                                 : json_null());
  buf_free(&text);
  if (has_calls) json_object_set(msg, "tool_calls", calls);
  json_decref(calls);
  json_int_t idx = (json_int_t)pos;
  prov_int(json_object_get(cand, "index"), &idx);
  return json_pack("{s:I,s:o,s:n,s:s}", "index", idx, "message", msg,
                   "logprobs", "finish_reason", fr ? fr : "stop");
}

static json_t *blocked_choice(void) {
  return json_pack("{s:i,s:{s:s,s:s},s:n,s:s}", "index", 0, "message", "role", "assistant",
                   "content", "", "logprobs", "finish_reason", "content_filter");
}

int gemini_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                           prov_usage *usage) {
  json_t *resp = prov_json_loadb(body, len, 0, NULL), *cands, *cand;
  int rc = PS_GARBAGE;
  if (!json_is_object(resp) || json_object_get(resp, "error")) goto done;
  cands = json_object_get(resp, "candidates");
  json_t *choices = json_array();
  size_t i;
  json_array_foreach(cands, i, cand) json_array_append_new(choices, choice(cand, i, body, len));
  if (json_array_size(choices) == 0 &&
      json_string_value(json_object_get(json_object_get(resp, "promptFeedback"), "blockReason")))
    json_array_append_new(choices, blocked_choice());
  if (json_array_size(choices) == 0) {
    json_decref(choices);
    goto done;
  }
  uint64_t created = now_s();
  gm_usage u = {0};
  read_usage(resp, &u);
  json_t *doc = json_pack("{s:o,s:s,s:I,s:s,s:o}", "id", make_id(resp, created), "object",
                          "chat.completion", "created", (json_int_t)created, "model",
                          model ? model : "", "choices", choices);
  if (doc && u.seen) json_object_set_new(doc, "usage", usage_json(&u));
  char *s = doc ? prov_json_dumps(doc, GEMINI_DUMP_FLAGS) : NULL;
  if (s && buf_append(out, s, strlen(s)) == 0) {
    export_usage(&u, usage);
    rc = 0;
  }
  free(s);
  json_decref(doc);
done:
  json_decref(resp);
  return rc;
}

/* ---- streams ------------------------------------------------------------------------- */

struct prov_stream {
  sse_decoder sse;   /* SSE framing: data: lines only, every line within MAX_EVENT */
  buf_t *out;        /* where chunks go during a feed */
  int rc;            /* PS_MORE while open; else the terminal result */
  prov_error cls;    /* error class of a terminal PS_ERROR / PS_GARBAGE */
  int include_usage; /* the client asked for the usage chunk */
  int started;       /* role chunk written */
  int finished;      /* finish chunk written */
  size_t ntools;     /* tool calls written: the next tool_calls index */
  json_t *id;        /* chatcmpl id, fixed by the first event */
  char *model;       /* model name to report */
  uint64_t created;  /* seconds, fixed at stream_new */
  gm_usage usage;    /* last usageMetadata (cumulative upstream) */
};

prov_stream *gemini_stream_new(const prov_canon *c, const char *model) {
  prov_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->model = strdup(model ? model : "");
  if (!s->model) return free(s), NULL;
  s->include_usage = c ? c->include_usage : 0;
  s->created = now_s();
  sse_init_opts(&s->sse, MAX_EVENT, SSE_DATA_NEEDS_COLON | SSE_LIMIT_ALL_LINES);
  return s;
}

void gemini_stream_free(prov_stream *s) {
  if (!s) return;
  sse_free(&s->sse);
  json_decref(s->id);
  free(s->model);
  free(s);
}

/* {"id",...,"choices":[{"index":0,"delta":delta,...}]}; steals delta. */
static int emit_delta(prov_stream *s, buf_t *out, json_t *delta, const char *finish) {
  json_t *c = json_pack("{s:O,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:o}]}", "id", s->id, "object",
                        "chat.completion.chunk", "created", (json_int_t)s->created, "model",
                        s->model, "choices", "index", 0, "delta", delta, "logprobs",
                        "finish_reason", finish ? json_string(finish) : json_null());
  if (c && s->include_usage) json_object_set_new(c, "usage", json_null());
  return emit_json(out, c);
}

static int emit_text(prov_stream *s, buf_t *out, buf_t *text) {
  if (!text->len) return 0;
  json_t *d = json_pack("{s:s%}", "content", text->data, text->len);
  buf_reset(text);
  return emit_delta(s, out, d, NULL);
}

static int emit_parts(prov_stream *s, buf_t *out, json_t *parts, const char *doc, size_t len,
                      int *rc) {
  buf_t text = {0};
  size_t i;
  json_t *part;
  json_array_foreach(parts, i, part) {
    const char *t = part_text(part);
    if (is_call(part)) {
      gm_src src = {doc, len, 0, i};
      json_t *tc = json_pack("{s:I}", "index", (json_int_t)s->ntools);
      json_t *call = tool_call(part, s->ntools++, &src);
      if (tc && call) json_object_update(tc, call);
      json_decref(call);
      *rc |= emit_text(s, out, &text);
      *rc |= emit_delta(s, out, json_pack("{s:[o]}", "tool_calls", tc), NULL);
    } else if (t) {
      *rc |= buf_append(&text, t, strlen(t));
    }
  }
  *rc |= emit_text(s, out, &text);
  buf_free(&text);
  return *rc;
}

/* Upstream message with URLs cut (clients never see a provider URL or host), at most
 * ~300 bytes, cut on a UTF-8 boundary. */
static json_t *safe_message(const char *msg) {
  buf_t b = {0};
  if (!msg || !*msg) msg = "upstream provider error";
  for (const char *p = msg; *p && (b.len < 300 || ((unsigned char)*p & 0xC0) == 0x80);) {
    if (!strncmp(p, "http://", 7) || !strncmp(p, "https://", 8)) {
      buf_append(&b, "<url>", 5);
      p += strcspn(p, " \t\r\n\"'()<>");
    } else {
      buf_append(&b, p++, 1);
    }
  }
  json_t *j = json_stringn(b.data ? b.data : "", b.len);
  buf_free(&b);
  return j;
}

static const char *const error_type[PE__COUNT][2] = {
    [PE_NONE] = {"server_error", "upstream_error"},
    [PE_RATE_LIMITED] = {"rate_limit_error", "rate_limit_exceeded"},
    [PE_OVERLOADED] = {"server_error", "overloaded"},
    [PE_AUTH] = {"authentication_error", "invalid_api_key"},
    [PE_BAD_REQUEST] = {"invalid_request_error", "invalid_request"},
    [PE_CONTEXT_LENGTH] = {"invalid_request_error", "context_length_exceeded"},
    [PE_CONTENT_POLICY] = {"invalid_request_error", "content_filter"},
    [PE_NOT_FOUND] = {"invalid_request_error", "model_not_found"},
    [PE_SERVER] = {"server_error", "server_error"},
    [PE_TIMEOUT] = {"server_error", "timeout"},
    [PE_GARBAGE] = {"server_error", "upstream_garbage"},
};

static int in_band_error(prov_stream *s, json_t *st, buf_t *out) {
  prov_error e = gemini_error_class(0, json_is_object(st) ? st : NULL, NULL);
  json_t *j = json_pack("{s:{s:o,s:s,s:n,s:s}}", "error", "message",
                        safe_message(json_string_value(json_object_get(st, "message"))), "type",
                        error_type[e][0], "param", "code", error_type[e][1]);
  emit_json(out, j);
  s->cls = e;
  return s->rc = PS_ERROR;
}

static int fail(prov_stream *s) {
  s->cls = PE_GARBAGE;
  return s->rc = PS_GARBAGE;
}

/* One complete SSE event's data. */
static int on_event(prov_stream *s, const char *p, size_t n, buf_t *out) {
  if (n == 6 && !memcmp(p, "[DONE]", 6)) return PS_MORE; /* not Gemini's, but harmless */
  json_t *ev = prov_json_loadb(p, n, 0, NULL);
  int rc = 0;
  if (!json_is_object(ev)) return json_decref(ev), fail(s);
  if (json_object_get(ev, "error")) {
    rc = in_band_error(s, json_object_get(ev, "error"), out);
    return json_decref(ev), rc;
  }
  if (!s->started) {
    s->id = make_id(ev, s->created);
    rc |= emit_delta(s, out, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL);
    s->started = 1;
  }
  read_usage(ev, &s->usage);
  json_t *cand = json_array_get(json_object_get(ev, "candidates"), 0);
  const char *reason = json_string_value(json_object_get(cand, "finishReason"));
  if (!s->finished && cand)
    emit_parts(s, out, json_object_get(json_object_get(cand, "content"), "parts"), p, n, &rc);
  if (!s->finished && !cand &&
      json_string_value(json_object_get(json_object_get(ev, "promptFeedback"), "blockReason")))
    reason = "SAFETY";
  if (!s->finished && reason) {
    rc |= emit_delta(s, out, json_object(), finish_reason(reason, s->ntools > 0));
    s->finished = 1;
  }
  json_decref(ev);
  return rc ? fail(s) : PS_MORE;
}

/* sse_decode()'s callback: nonzero once the stream is over. */
static int on_sse_event(void *ud, const sse_event *ev) {
  prov_stream *s = ud;
  on_event(s, ev->data, ev->data_len, s->out);
  return s->rc != PS_MORE;
}

int gemini_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                       prov_usage *usage, prov_error *err) {
  s->out = out;
  if (s->rc == PS_MORE && sse_decode(&s->sse, data, len, on_sse_event, s) < 0) fail(s);
  export_usage(&s->usage, usage);
  if (s->rc != PS_MORE && err) *err = s->cls;
  return s->rc;
}

int gemini_stream_end(prov_stream *s, buf_t *out, prov_usage *usage) {
  /* An event without its blank line is incomplete (SSE): dropped, so PS_ERROR never
   * comes from here. */
  export_usage(&s->usage, usage);
  if (s->rc != PS_MORE) return s->rc;
  if (!s->finished) return fail(s); /* cut: no finishReason before EOF */
  int rc = 0;
  if (s->include_usage) {
    json_t *c = json_pack("{s:O,s:s,s:I,s:s,s:[],s:o}", "id", s->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)s->created, "model",
                          s->model, "choices", "usage", usage_json(&s->usage));
    rc = emit_json(out, c);
  }
  if (rc || buf_append(out, "data: [DONE]\n\n", 14)) return fail(s);
  return s->rc = PS_DONE;
}
