/* bedrock_stream.c — Bedrock answers → canonical OpenAI: whole Converse responses
 * (decode_response) and ConverseStream `application/vnd.amazon.eventstream` streams.
 *
 * Response mapping
 *   id              "chatcmpl-bedrock-<created>-<pid>-<seq>" (Converse has no id in the body;
 *                   prov_bedrock_set_clock pins created, pid = 0, seq from 0)
 *   created         wall clock seconds at decode / stream start
 *   model           the name the caller passes (the client's deployment name)
 *   choices[0]      output.message.content: text blocks concatenated; toolUse →
 *                   tool_calls[{id = toolUseId, type "function", function{name, arguments =
 *                   the exact bytes of input in the upstream JSON}}]; reasoningContent, image, document and other
 *                   blocks dropped; content null when there are tool calls and no text
 *   finish_reason   tool_use → tool_calls; max_tokens, model_context_window_exceeded →
 *                   length; content_filtered, guardrail_intervened → content_filter;
 *                   end_turn, stop_sequence, missing or unknown (malformed_model_output…) →
 *                   stop, or tool_calls when the message carries tool calls
 *   usage           prompt = inputTokens + cacheReadInputTokens + cacheWriteInputTokens
 *                   (Converse counts the cache apart, §9.4); completion = outputTokens;
 *                   total = their sum; prompt_tokens_details.cached_tokens =
 *                   cacheReadInputTokens; cache writes go to prov_usage.cache_write_tokens.
 *                   Omitted when the body has no usage.
 *   logprobs        null
 *
 * Streams (frames decoded by eventstream.c, both CRCs checked; any bad frame → PS_GARBAGE):
 *   messageStart          role chunk (written before anything else even if it is missing)
 *   contentBlockStart     start.toolUse → tool_calls delta {index, id, type, function{name,
 *                         arguments ""}}; the index counts tool calls, not blocks
 *   contentBlockDelta     delta.text → content delta; delta.toolUse.input (string fragment)
 *                         → arguments delta for that block's tool index (a toolUse delta on
 *                         a block never started as a tool → PS_GARBAGE); reasoningContent
 *                         and unknown deltas dropped
 *   contentBlockStop      a tool block that got no arguments → arguments "{}" (clients
 *                         JSON.parse them)
 *   messageStop           finish chunk (stopReason as above)
 *   metadata              usage; with messageStop seen: usage chunk (include_usage), then
 *                         [DONE] → PS_DONE
 *   unknown event types   ignored
 *   :message-type exception (:exception-type throttlingException, validationException, …)
 *   or error (:error-code) → OpenAI error event {"error":{message, type, param, code}} +
 *                         PS_ERROR with the class from bedrock_error_class
 * EOF after messageStop without metadata: [DONE] without a usage chunk (the answer is
 * whole; usage is unknown and never made up) → PS_DONE. EOF before messageStop → PS_GARBAGE.
 * Payloads' "p" padding fields are ignored like every unknown field. */
#include "bedrock.h"
#include "prov_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "eventstream.h"

#define MAX_BLOCKS 4096 /* contentBlockIndex bound: beyond that the stream is garbage */

/* Token counts as Converse reports them. */
typedef struct br_usage {
  uint64_t input;       /* inputTokens (without cache) */
  uint64_t output;      /* outputTokens */
  uint64_t cache_read;  /* cacheReadInputTokens */
  uint64_t cache_write; /* cacheWriteInputTokens */
  int seen;             /* a usage object was read */
} br_usage;

/* ---- ids ----------------------------------------------------------------------------- */

static uint64_t id_seq; /* minted ids so far */
static int id_pinned;   /* the clock is pinned: no pid salt */

void bedrock_ids_reset(int pinned) {
  id_seq = 0;
  id_pinned = pinned;
}

static json_t *make_id(uint64_t created) {
  unsigned salt = id_pinned ? 0 : (unsigned)getpid() & 0xffff;
  return json_sprintf("chatcmpl-bedrock-%" PRIu64 "-%u-%" PRIu64, created, salt, id_seq++);
}

/* ---- shared pieces ------------------------------------------------------------------- */

static uint64_t count(json_t *o, const char *key) { return prov_uint(json_object_get(o, key)); }

static void read_usage(json_t *u, br_usage *out) {
  if (!json_is_object(u)) return;
  out->input = count(u, "inputTokens");
  out->output = count(u, "outputTokens");
  out->cache_read = count(u, "cacheReadInputTokens");
  out->cache_write = count(u, "cacheWriteInputTokens");
  out->seen = 1;
}

static uint64_t prompt_of(const br_usage *u) { return u->input + u->cache_read + u->cache_write; }

static void export_usage(const br_usage *u, prov_usage *out) {
  if (!out || !u->seen) return;
  out->prompt_tokens = prompt_of(u);
  out->completion_tokens = u->output;
  out->cached_tokens = u->cache_read;
  out->cache_write_tokens = u->cache_write;
  out->seen = 1;
}

static json_t *usage_json(const br_usage *u) {
  return json_pack("{s:I,s:I,s:I,s:{s:I}}", "prompt_tokens", (json_int_t)prompt_of(u),
                   "completion_tokens", (json_int_t)u->output, "total_tokens",
                   (json_int_t)(prompt_of(u) + u->output), "prompt_tokens_details",
                   "cached_tokens", (json_int_t)u->cache_read);
}

static const char *finish_reason(const char *reason, int has_calls) {
  if (reason && !strcmp(reason, "tool_use")) return "tool_calls";
  if (reason && (!strcmp(reason, "max_tokens") || !strcmp(reason, "model_context_window_exceeded")))
    return "length";
  if (reason && (!strcmp(reason, "content_filtered") || !strcmp(reason, "guardrail_intervened")))
    return "content_filter";
  return has_calls ? "tool_calls" : "stop";
}

static int emit_json(buf_t *out, json_t *j) {
  char *s = j ? prov_json_dumps(j, BEDROCK_DUMP_FLAGS) : NULL;
  int rc = !s || buf_printf(out, "data: %s\n\n", s) ? -ENOMEM : 0;
  free(s);
  json_decref(j);
  return rc;
}

/* ---- decode_response ----------------------------------------------------------------- */

/* Upstream response text: tool inputs are copied from it byte for byte. */
typedef struct br_src {
  const char *doc; /* the whole Converse response */
  size_t len;      /* bytes in doc */
} br_src;

/* tool_calls[] entry for output.message.content[i].toolUse. */
static json_t *tool_call(json_t *use, const br_src *src, size_t i) {
  const char *id = json_string_value(json_object_get(use, "toolUseId"));
  const char *name = json_string_value(json_object_get(use, "name"));
  json_t *input = json_object_get(use, "input");
  json_span_step path[] = {{"output", 0}, {"message", 0}, {"content", 0}, {NULL, i},
                           {"toolUse", 0}, {"input", 0}};
  json_t *a = input ? prov_json_raw(src->doc, src->len, path, ARRAY_SIZE(path), input)
                    : json_string("{}");
  return json_pack("{s:s,s:s,s:{s:s,s:o}}", "id", id ? id : "", "type", "function", "function",
                   "name", name ? name : "", "arguments", a);
}

static json_t *choice(json_t *content, const char *stop, const br_src *src) {
  json_t *calls = json_array(), *blk;
  buf_t text = {0};
  size_t i;
  json_array_foreach(content, i, blk) {
    const char *t = json_string_value(json_object_get(blk, "text"));
    json_t *use = json_object_get(blk, "toolUse");
    if (json_is_object(use)) json_array_append_new(calls, tool_call(use, src, i));
    else if (t) buf_append(&text, t, strlen(t));
  }
  int has_calls = json_array_size(calls) > 0;
  json_t *msg = json_pack("{s:s,s:o}", "role", "assistant", "content",
                          text.len || !has_calls ? json_stringn(text.data ? text.data : "", text.len)
                                                 : json_null());
  buf_free(&text);
  if (msg && has_calls) json_object_set(msg, "tool_calls", calls);
  json_decref(calls);
  return json_pack("{s:i,s:o,s:n,s:s}", "index", 0, "message", msg, "logprobs", "finish_reason",
                   finish_reason(stop, has_calls));
}

int bedrock_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                            prov_usage *usage) {
  json_t *resp = prov_json_loadb(body, len, 0, NULL);
  br_src src = {body, len};
  json_t *content = json_object_get(json_object_get(json_object_get(resp, "output"), "message"),
                                    "content");
  int rc = PS_GARBAGE;
  if (!json_is_array(content)) goto done;
  uint64_t created = bedrock_now_s();
  br_usage u = {0};
  read_usage(json_object_get(resp, "usage"), &u);
  json_t *doc = json_pack("{s:o,s:s,s:I,s:s,s:[o]}", "id", make_id(created), "object",
                          "chat.completion", "created", (json_int_t)created, "model",
                          model ? model : "", "choices",
                          choice(content, json_string_value(json_object_get(resp, "stopReason")), &src));
  if (doc && u.seen) json_object_set_new(doc, "usage", usage_json(&u));
  char *s = doc ? prov_json_dumps(doc, BEDROCK_DUMP_FLAGS) : NULL;
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

typedef struct br_block {
  int tool;      /* tool_calls index, -1 when the block is not a toolUse */
  int args_seen; /* a non-empty input fragment was forwarded */
} br_block;

struct prov_stream {
  es_decoder dec;    /* event-stream framing */
  int rc;            /* PS_MORE while open; else the terminal result */
  prov_error cls;    /* class of a terminal PS_ERROR / PS_GARBAGE */
  int include_usage; /* the client asked for the usage chunk */
  int started;       /* role chunk written */
  int stopped;       /* messageStop seen, finish chunk written */
  int has_metadata;  /* metadata seen */
  br_block *blocks;  /* per contentBlockIndex */
  size_t nblocks;    /* entries in blocks */
  int ntools;        /* tool calls started: the next tool_calls index */
  json_t *id;        /* chatcmpl id, minted at stream_new */
  char *model;       /* model name to report */
  uint64_t created;  /* seconds, fixed at stream_new */
  br_usage usage;    /* from metadata */
};

prov_stream *bedrock_stream_new(const prov_canon *c, const char *model) {
  prov_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->model = strdup(model ? model : "");
  s->created = bedrock_now_s();
  s->id = make_id(s->created);
  if (!s->model || !s->id) {
    bedrock_stream_free(s);
    return NULL;
  }
  s->include_usage = c ? c->include_usage : 0;
  return s;
}

void bedrock_stream_free(prov_stream *s) {
  if (!s) return;
  es_decoder_free(&s->dec);
  free(s->blocks);
  json_decref(s->id);
  free(s->model);
  free(s);
}

/* {"id",...,"choices":[{"index":0,"delta":delta,"logprobs":null,"finish_reason"}]}; steals
 * delta. */
static int emit_delta(prov_stream *s, buf_t *out, json_t *delta, const char *finish) {
  json_t *c = json_pack("{s:O,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:o}]}", "id", s->id, "object",
                        "chat.completion.chunk", "created", (json_int_t)s->created, "model",
                        s->model, "choices", "index", 0, "delta", delta, "logprobs",
                        "finish_reason", finish ? json_string(finish) : json_null());
  if (c && s->include_usage) json_object_set_new(c, "usage", json_null());
  return emit_json(out, c);
}

static int start(prov_stream *s, buf_t *out) {
  if (s->started) return 0;
  s->started = 1;
  return emit_delta(s, out, json_pack("{s:s,s:s}", "role", "assistant", "content", ""), NULL);
}

static int emit_tool(prov_stream *s, buf_t *out, int tool, const char *id, const char *name,
                     const char *args, size_t alen) {
  json_t *tc = json_pack("{s:i}", "index", tool);
  if (tc && id) {
    json_object_set_new(tc, "id", json_string(id));
    json_object_set_new(tc, "type", json_string("function"));
  }
  json_t *fn = name ? json_pack("{s:s,s:s%}", "name", name, "arguments", args, alen)
                    : json_pack("{s:s%}", "arguments", args, alen);
  if (tc && fn) json_object_set(tc, "function", fn);
  json_decref(fn);
  return emit_delta(s, out, json_pack("{s:[o]}", "tool_calls", tc), NULL);
}

static br_block *block_at(prov_stream *s, json_t *ev) {
  json_t *iv = json_object_get(ev, "contentBlockIndex");
  json_int_t i = 0; /* absent = 0 */
  if ((iv && !prov_int(iv, &i)) || i < 0 || i >= MAX_BLOCKS) return NULL;
  if ((size_t)i >= s->nblocks) {
    br_block *nb = realloc(s->blocks, ((size_t)i + 1) * sizeof *nb);
    if (!nb) return NULL;
    for (size_t k = s->nblocks; k <= (size_t)i; k++) nb[k] = (br_block){.tool = -1};
    s->blocks = nb;
    s->nblocks = (size_t)i + 1;
  }
  return &s->blocks[i];
}

static int fail(prov_stream *s) {
  s->cls = PE_GARBAGE;
  return s->rc = PS_GARBAGE;
}

static int on_block_start(prov_stream *s, json_t *ev, buf_t *out) {
  br_block *b = block_at(s, ev);
  json_t *use = json_object_get(json_object_get(ev, "start"), "toolUse");
  if (!b) return fail(s);
  if (!use || b->tool >= 0) return PS_MORE; /* other block kinds: nothing to announce */
  const char *id = json_string_value(json_object_get(use, "toolUseId"));
  const char *name = json_string_value(json_object_get(use, "name"));
  if (!id || !name) return fail(s);
  b->tool = s->ntools++;
  return emit_tool(s, out, b->tool, id, name, "", 0) ? fail(s) : PS_MORE;
}

static int on_block_delta(prov_stream *s, json_t *ev, buf_t *out) {
  br_block *b = block_at(s, ev);
  json_t *d = json_object_get(ev, "delta"), *text = json_object_get(d, "text");
  json_t *use = json_object_get(d, "toolUse");
  if (!b) return fail(s);
  if (json_is_string(text)) {
    if (!json_string_length(text)) return PS_MORE;
    json_t *delta = json_pack("{s:O}", "content", text);
    return emit_delta(s, out, delta, NULL) ? fail(s) : PS_MORE;
  }
  if (!use) return PS_MORE; /* reasoningContent, citations, later kinds: no OpenAI slot */
  json_t *in = json_object_get(use, "input");
  if (b->tool < 0 || !json_is_string(in)) return fail(s);
  if (!json_string_length(in)) return PS_MORE;
  b->args_seen = 1;
  return emit_tool(s, out, b->tool, NULL, NULL, json_string_value(in), json_string_length(in))
             ? fail(s) : PS_MORE;
}

static int on_block_stop(prov_stream *s, json_t *ev, buf_t *out) {
  br_block *b = block_at(s, ev);
  if (!b) return fail(s);
  if (b->tool < 0 || b->args_seen) return PS_MORE;
  b->args_seen = 1;
  return emit_tool(s, out, b->tool, NULL, NULL, "{}", 2) ? fail(s) : PS_MORE;
}

/* messageStop and metadata both seen: usage chunk, [DONE]. */
static int maybe_done(prov_stream *s, buf_t *out, int with_usage) {
  if (!s->stopped || (with_usage && !s->has_metadata)) return PS_MORE;
  int rc = 0;
  if (with_usage && s->include_usage && s->usage.seen) {
    json_t *c = json_pack("{s:O,s:s,s:I,s:s,s:[],s:o}", "id", s->id, "object",
                          "chat.completion.chunk", "created", (json_int_t)s->created, "model",
                          s->model, "choices", "usage", usage_json(&s->usage));
    rc = emit_json(out, c);
  }
  if (rc || buf_append(out, "data: [DONE]\n\n", 14)) return fail(s);
  return s->rc = PS_DONE;
}

static int on_event(prov_stream *s, const char *type, size_t tlen, json_t *ev, buf_t *out) {
#define IS(name) (tlen == sizeof(name) - 1 && !memcmp(type, name, tlen))
  int known = IS("messageStart") || IS("contentBlockStart") || IS("contentBlockDelta") ||
              IS("contentBlockStop") || IS("messageStop") || IS("metadata");
  if (!known) return PS_MORE; /* event types added later */
  if (!IS("metadata") && !s->stopped && start(s, out)) return fail(s);
  if (IS("messageStart")) return PS_MORE;
  if (IS("metadata")) {
    read_usage(json_object_get(ev, "usage"), &s->usage);
    s->has_metadata = 1;
    return maybe_done(s, out, 1);
  }
  if (s->stopped) return PS_MORE; /* nothing after the finish chunk reaches the client */
  if (IS("contentBlockStart")) return on_block_start(s, ev, out);
  if (IS("contentBlockDelta")) return on_block_delta(s, ev, out);
  if (IS("contentBlockStop")) return on_block_stop(s, ev, out);
  const char *reason = json_string_value(json_object_get(ev, "stopReason"));
  if (emit_delta(s, out, json_object(), finish_reason(reason, s->ntools > 0))) return fail(s);
  s->stopped = 1;
  return maybe_done(s, out, 1);
#undef IS
}

/* Upstream message with URLs cut (clients never see a provider URL or host), at most
 * ~300 bytes, cut on a UTF-8 boundary. */
static json_t *safe_message(const char *msg, size_t n) {
  buf_t b = {0};
  if (!msg || !n) msg = "upstream provider error", n = strlen(msg);
  const char *end = msg + n;
  for (const char *p = msg; p < end && (b.len < 300 || ((unsigned char)*p & 0xC0) == 0x80);) {
    if ((end - p >= 7 && !strncmp(p, "http://", 7)) || (end - p >= 8 && !strncmp(p, "https://", 8))) {
      buf_append(&b, "<url>", 5);
      while (p < end && !strchr(" \t\r\n\"'()<>", *p)) p++;
    } else {
      buf_append(&b, p++, 1);
    }
  }
  json_t *j = json_stringn(b.data ? b.data : "", b.len);
  if (!j) j = json_string("upstream provider error"); /* not UTF-8 */
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

/* Exception / error frame: OpenAI error event, PS_ERROR. */
static int in_band_error(prov_stream *s, const char *type, size_t tlen, const char *msg,
                         size_t mlen, buf_t *out) {
  char t[96];
  snprintf(t, sizeof t, "%.*s", (int)(tlen < 95 ? tlen : 95), type ? type : "");
  char *m = msg ? strndup(msg, mlen) : NULL;
  prov_error e = bedrock_error_class(0, t, m);
  free(m);
  json_t *j = json_pack("{s:{s:o,s:s,s:n,s:s}}", "error", "message", safe_message(msg, mlen),
                        "type", error_type[e][0], "param", "code", error_type[e][1]);
  if (emit_json(out, j)) return fail(s);
  s->cls = e;
  return s->rc = PS_ERROR;
}

static int on_frame(prov_stream *s, const es_frame *f, buf_t *out) {
  const char *mt, *et;
  size_t mtl, etl;
  if (!es_header(f, ":message-type", &mt, &mtl)) return fail(s);
  if (mtl == 5 && !memcmp(mt, "error", 5)) {
    const char *code = NULL, *msg = NULL;
    size_t cl = 0, ml = 0;
    es_header(f, ":error-code", &code, &cl);
    es_header(f, ":error-message", &msg, &ml);
    return in_band_error(s, code, cl, msg, ml, out);
  }
  int exception = mtl == 9 && !memcmp(mt, "exception", 9);
  if (!exception && !(mtl == 5 && !memcmp(mt, "event", 5))) return fail(s);
  if (!es_header(f, exception ? ":exception-type" : ":event-type", &et, &etl)) {
    if (!exception) return fail(s);
    et = NULL, etl = 0;
  }
  json_t *ev = prov_json_loadb(f->payload, f->payload_len, 0, NULL);
  int rc;
  if (exception) {
    json_t *m = json_object_get(ev, "message");
    if (!m) m = json_object_get(ev, "Message");
    rc = in_band_error(s, et, etl, json_string_value(m), json_string_length(m), out);
  } else {
    rc = json_is_object(ev) ? on_event(s, et, etl, ev, out) : fail(s);
  }
  json_decref(ev);
  return rc;
}

int bedrock_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                        prov_usage *usage, prov_error *err) {
  while (s->rc == PS_MORE) {
    es_frame f;
    int r = es_next(&s->dec, &data, &len, &f);
    if (r == ES_MORE) break;
    if (r == ES_BAD) fail(s);
    else on_frame(s, &f, out);
  }
  export_usage(&s->usage, usage);
  if (s->rc != PS_MORE && err) *err = s->cls;
  return s->rc;
}

int bedrock_stream_end(prov_stream *s, buf_t *out, prov_usage *usage) {
  export_usage(&s->usage, usage);
  if (s->rc != PS_MORE) return s->rc;
  if (!s->stopped) return fail(s); /* cut before messageStop */
  return maybe_done(s, out, 0);    /* metadata lost: the answer is whole, usage unknown */
}
