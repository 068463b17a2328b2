/* ollama_stream.c — Ollama /api/chat answers → canonical OpenAI: whole bodies
 * (decode_response, "stream":false) and NDJSON streams (application/x-ndjson).
 *
 * Response mapping
 *   id              "chatcmpl-ollama-<created>-<salt>-<seq>" (Ollama has no id; counter-based,
 *                   salt = pid; prov_ollama_set_clock pins created, salt 0, seq from 0)
 *   created         wall clock seconds at decode / stream start (Ollama's created_at is the
 *                   server's clock, not ours)
 *   model           the name the caller passes
 *   message.content message.content; null when there are tool calls and no text
 *   message.thinking dropped (no OpenAI slot; like Anthropic thinking blocks and Gemini thoughts)
 *   tool_calls      message.tool_calls[{function{name, arguments{…}}}] → [{id "call_<n>",
 *                   type "function", function{name, arguments = the exact bytes of the
 *                   object in the upstream line (a string passes unchanged, absent → "{}")}}]. n is a running
 *                   counter: from 0 after prov_ollama_set_clock, else seeded from the wall
 *                   clock (µs) and pid, so the ids of one conversation do not repeat across
 *                   turns, workers or restarts (Anthropic rejects repeated tool_use ids)
 *   finish_reason   done_reason "length" → length; else tool_calls when the message has
 *                   calls; else stop ("stop", "load", "unload", absent, unknown)
 *   usage           prompt_tokens = prompt_eval_count (absent when the prompt was fully
 *                   cached → 0), completion_tokens = eval_count, total = sum; omitted when
 *                   both are absent
 *   logprobs        null
 *   not an object with a message object, or an "error" member → PS_GARBAGE
 *
 * Streams: one JSON object per line ('\n'; a '\r' before it and blank lines are ignored).
 * The first object → role chunk {"role":"assistant","content":""}; each non-empty
 * message.content → content delta; each message.tool_calls entry → one complete tool_calls
 * delta (Ollama sends calls whole) with a running index; done:true → its own content/calls,
 * then the finish chunk, the usage chunk when include_usage, data: [DONE] → PS_DONE.
 * {"error":"…"} line → OpenAI error event (message without URLs, ≤ ~300 bytes) + PS_ERROR,
 * class not_found when the message says "not found", else server. A line that is not a JSON
 * object → PS_GARBAGE. EOF before done → PS_GARBAGE (a done line missing only its '\n'
 * still completes). Chunks are written as text around a prefix built once per stream. */
#include "ollama.h"
#include "prov_json.h"

#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define MAX_LINE (16u << 20) /* bytes of one NDJSON line: beyond that it is garbage */
#define LIT(b, s) buf_append((b), (s), sizeof(s) - 1)

/* Token counts as read from the done line. */
typedef struct ol_usage {
  uint64_t prompt;     /* prompt_eval_count */
  uint64_t completion; /* eval_count */
  int seen;            /* either count was present */
} ol_usage;

/* ---- clock and ids ------------------------------------------------------------------- */

static uint64_t fixed_created; /* seconds; 0 = wall clock */
static uint64_t id_seq;        /* chat ids minted so far */
static int pinned;             /* set_clock was called with a fixed time: no salt */
static uint64_t call_seq;      /* next tool call number */
static int call_seeded;        /* call_seq has its starting value */

void prov_ollama_set_clock(uint64_t created_s) {
  fixed_created = created_s;
  pinned = created_s != 0;
  id_seq = 0;
  call_seq = 0;
  call_seeded = pinned;
}

static uint64_t now_s(void) { return fixed_created ? fixed_created : util_wall_ms() / 1000; }

static json_t *make_id(uint64_t created) {
  unsigned salt = pinned ? 0 : (unsigned)getpid() & 0xffff;
  return json_sprintf("chatcmpl-ollama-%" PRIu64 "-%u-%" PRIu64, created, salt, id_seq++);
}

static uint64_t next_call(void) {
  if (!call_seeded) {
    call_seq = util_wall_ms() * 1000 + ((uint64_t)getpid() % 1000);
    call_seeded = 1;
  }
  return call_seq++;
}

/* ---- shared pieces ------------------------------------------------------------------- */

static int read_count(json_t *o, const char *key, uint64_t *v) {
  json_t *j = json_object_get(o, key);
  if (!json_is_number(j)) return 0;
  *v = prov_uint(j);
  return 1;
}

static void read_usage(json_t *resp, ol_usage *u) {
  int p = read_count(resp, "prompt_eval_count", &u->prompt);
  int c = read_count(resp, "eval_count", &u->completion);
  u->seen |= p || c;
}

static void export_usage(const ol_usage *u, prov_usage *out) {
  if (!out || !u->seen) return;
  out->prompt_tokens = u->prompt;
  out->completion_tokens = u->completion;
  out->cached_tokens = 0;
  out->cache_write_tokens = 0;
  out->seen = 1;
}

static const char *finish_reason(json_t *resp, int has_calls) {
  const char *r = json_string_value(json_object_get(resp, "done_reason"));
  if (r && !strcmp(r, "length")) return "length";
  return has_calls ? "tool_calls" : "stop";
}

/* OpenAI tool call for message.tool_calls[i] = {function{name, arguments}} of doc (len
 * bytes): an arguments object goes out as its upstream bytes. NULL on ENOMEM. */
static json_t *tool_call(json_t *call, const char *doc, size_t len, size_t i) {
  json_t *fn = json_object_get(call, "function"), *args = json_object_get(fn, "arguments");
  const char *name = json_string_value(json_object_get(fn, "name"));
  json_span_step path[] = {{"message", 0}, {"tool_calls", 0}, {NULL, i}, {"function", 0},
                           {"arguments", 0}};
  json_t *a = json_is_string(args) ? json_incref(args)
              : args && !json_is_null(args) ? prov_json_raw(doc, len, path, ARRAY_SIZE(path), args)
                                            : json_string("{}");
  return a ? json_pack("{s:o,s:s,s:{s:s,s:o}}", "id", json_sprintf("call_%" PRIu64, next_call()),
                       "type", "function", "function", "name", name ? name : "", "arguments", a)
           : NULL;
}


/* ---- decode_response ----------------------------------------------------------------- */

int ollama_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                           prov_usage *usage) {
  json_t *resp = body ? prov_json_loadb(body, len, 0, NULL) : NULL, *msg, *tcs, *tc;
  int rc = PS_GARBAGE;
  if (!json_is_object(resp) || json_object_get(resp, "error")) goto done;
  msg = json_object_get(resp, "message");
  if (!json_is_object(msg)) goto done;
  tcs = json_object_get(msg, "tool_calls");
  json_t *calls = json_array(), *content = json_object_get(msg, "content");
  size_t i;
  json_array_foreach(tcs, i, tc) json_array_append_new(calls, tool_call(tc, body, len, i));
  int has_calls = json_array_size(calls) > 0;
  const char *text = json_is_string(content) ? json_string_value(content) : "";
  json_t *m = json_pack("{s:s,s:o}", "role", "assistant", "content",
                        *text || !has_calls ? json_string(text) : json_null());
  if (m && has_calls) json_object_set(m, "tool_calls", calls);
  json_decref(calls);
  uint64_t created = now_s();
  ol_usage u = {0};
  read_usage(resp, &u);
  json_t *doc = json_pack("{s:o,s:s,s:I,s:s,s:[{s:i,s:o,s:n,s:s}]}", "id", make_id(created),
                          "object", "chat.completion", "created", (json_int_t)created, "model",
                          model ? model : "", "choices", "index", 0, "message", m, "logprobs",
                          "finish_reason", finish_reason(resp, has_calls));
  if (doc && u.seen)
    json_object_set_new(doc, "usage",
                        json_pack("{s:I,s:I,s:I}", "prompt_tokens", (json_int_t)u.prompt,
                                  "completion_tokens", (json_int_t)u.completion, "total_tokens",
                                  (json_int_t)(u.prompt + u.completion)));
  char *s = doc ? prov_json_dumps(doc, OLLAMA_DUMP_FLAGS) : NULL;
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
  buf_t line;        /* partial line carried across feeds */
  int rc;            /* PS_MORE while open; else the terminal result (sticky) */
  prov_error cls;    /* error class of a terminal PS_ERROR / PS_GARBAGE */
  int include_usage; /* the client asked for the usage chunk */
  int started;       /* role chunk written */
  size_t ntools;     /* tool calls written: the next tool_calls index */
  buf_t head;        /* "data: {"id":…,"object":…,"created":…,"model":…," */
  ol_usage usage;    /* counts from the done line */
};

prov_stream *ollama_stream_new(const prov_canon *c, const char *model) {
  prov_stream *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->include_usage = c ? c->include_usage : 0;
  uint64_t created = now_s();
  json_t *id = make_id(created);
  if (!model) model = "";
  if (!id || LIT(&s->head, "data: {\"id\":") ||
      buf_json_quote(&s->head, json_string_value(id), json_string_length(id)) ||
      buf_printf(&s->head, ",\"object\":\"chat.completion.chunk\",\"created\":%" PRIu64 ",\"model\":",
                 created) ||
      buf_json_quote(&s->head, model, strlen(model)) || LIT(&s->head, ",")) {
    json_decref(id);
    ollama_stream_free(s);
    return NULL;
  }
  json_decref(id);
  return s;
}

void ollama_stream_free(prov_stream *s) {
  if (!s) return;
  buf_free(&s->line);
  buf_free(&s->head);
  free(s);
}

static int fail(prov_stream *s) {
  s->cls = PE_GARBAGE;
  return s->rc = PS_GARBAGE;
}

/* head + choices[0] with the given delta JSON and finish reason (NULL = null). */
static int chunk(prov_stream *s, buf_t *o, const char *delta, size_t dlen, const char *finish) {
  if (buf_append(o, s->head.data, s->head.len) ||
      LIT(o, "\"choices\":[{\"index\":0,\"delta\":") || buf_append(o, delta, dlen))
    return -ENOMEM;
  if (finish ? buf_printf(o, ",\"logprobs\":null,\"finish_reason\":\"%s\"}]", finish)
             : LIT(o, ",\"logprobs\":null,\"finish_reason\":null}]"))
    return -ENOMEM;
  if (s->include_usage && LIT(o, ",\"usage\":null")) return -ENOMEM;
  return LIT(o, "}\n\n") ? -ENOMEM : 0;
}

static int chunk_content(prov_stream *s, buf_t *o, json_t *text) {
  if (!json_is_string(text) || !json_string_length(text)) return 0;
  buf_t d = {0};
  int rc = LIT(&d, "{\"content\":") ||
           buf_json_quote(&d, json_string_value(text), json_string_length(text)) ||
           LIT(&d, "}");
  if (!rc) rc = chunk(s, o, d.data, d.len, NULL);
  buf_free(&d);
  return rc ? -ENOMEM : 0;
}

static int chunk_tool(prov_stream *s, buf_t *o, json_t *call, const char *line, size_t n,
                      size_t i) {
  json_t *tc = json_pack("{s:I}", "index", (json_int_t)s->ntools++);
  json_t *c = tool_call(call, line, n, i);
  json_t *d = tc && c && !json_object_update(tc, c) ? json_pack("{s:[O]}", "tool_calls", tc) : NULL;
  char *txt = d ? prov_json_dumps(d, OLLAMA_DUMP_FLAGS) : NULL; /* index first, as OpenAI writes it */
  int rc = !txt || chunk(s, o, txt, strlen(txt), NULL) ? -ENOMEM : 0;
  free(txt);
  json_decref(d);
  json_decref(tc);
  json_decref(c);
  return rc;
}

static int finish(prov_stream *s, buf_t *o, json_t *ev) {
  read_usage(ev, &s->usage);
  if (chunk(s, o, "{}", 2, finish_reason(ev, s->ntools > 0))) return -ENOMEM;
  if (s->include_usage &&
      (buf_append(o, s->head.data, s->head.len) ||
       buf_printf(o,
                  "\"choices\":[],\"usage\":{\"prompt_tokens\":%" PRIu64 ",\"completion_tokens\":%" PRIu64
                  ",\"total_tokens\":%" PRIu64 "}}\n\n",
                  s->usage.prompt, s->usage.completion, s->usage.prompt + s->usage.completion)))
    return -ENOMEM;
  return LIT(o, "data: [DONE]\n\n") ? -ENOMEM : 0;
}

/* Upstream message with URLs cut, at most ~300 bytes, cut on a UTF-8 boundary. */
static int safe_message(buf_t *b, const char *msg) {
  if (!msg || !*msg) msg = "upstream provider error";
  buf_t t = {0};
  int rc = 0;
  for (const char *p = msg; !rc && *p && (t.len < 300 || ((unsigned char)*p & 0xC0) == 0x80);) {
    if (!strncasecmp(p, "http://", 7) || !strncasecmp(p, "https://", 8)) {
      rc = LIT(&t, "<url>");
      p += strcspn(p, " \t\r\n\"'()<>");
    } else {
      rc = buf_append(&t, p++, 1);
    }
  }
  if (!rc) rc = buf_json_quote(b, t.data ? t.data : "", t.len);
  buf_free(&t);
  return rc;
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

static int in_band_error(prov_stream *s, buf_t *o, json_t *e) {
  const char *msg = json_is_string(e) ? json_string_value(e)
                                      : json_string_value(json_object_get(e, "message"));
  prov_error cls = ollama_error_class(0, msg);
  if (LIT(o, "data: {\"error\":{\"message\":") || safe_message(o, msg) ||
      buf_printf(o, ",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}\n\n", error_type[cls][0],
                 error_type[cls][1]))
    return fail(s);
  s->cls = cls;
  return s->rc = PS_ERROR;
}

/* One NDJSON line, terminator excluded. */
static int on_line(prov_stream *s, const char *p, size_t n, buf_t *o) {
  while (n && (p[n - 1] == '\r' || p[n - 1] == ' ' || p[n - 1] == '\t')) n--;
  size_t k = 0;
  while (k < n && (p[k] == ' ' || p[k] == '\t')) k++;
  if (k == n) return PS_MORE; /* blank line */
  json_t *ev = prov_json_loadb(p, n, 0, NULL), *e, *tcs, *tc;
  if (!json_is_object(ev)) return json_decref(ev), fail(s);
  if ((e = json_object_get(ev, "error")) && !json_is_null(e)) {
    int rc = in_band_error(s, o, e);
    return json_decref(ev), rc;
  }
  int rc = 0;
  size_t i;
  if (!s->started) {
    static const char role[] = "{\"role\":\"assistant\",\"content\":\"\"}";
    rc |= chunk(s, o, role, sizeof role - 1, NULL);
    s->started = 1;
  }
  json_t *msg = json_object_get(ev, "message");
  rc |= chunk_content(s, o, json_object_get(msg, "content"));
  tcs = json_object_get(msg, "tool_calls");
  json_array_foreach(tcs, i, tc) rc |= chunk_tool(s, o, tc, p, n, i);
  if (json_is_true(json_object_get(ev, "done"))) {
    rc |= finish(s, o, ev);
    if (!rc) s->rc = PS_DONE;
  }
  json_decref(ev);
  return rc ? fail(s) : s->rc;
}

int ollama_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                       prov_usage *usage, prov_error *err) {
  size_t i = 0;
  while (s->rc == PS_MORE && i < len) {
    const char *nl = memchr(data + i, '\n', len - i);
    size_t k = nl ? (size_t)(nl - (data + i)) : len - i;
    if (!nl) {
      if (buf_append(&s->line, data + i, k) || s->line.len > MAX_LINE) fail(s);
      break;
    }
    if (s->line.len) {
      if (buf_append(&s->line, data + i, k) || s->line.len > MAX_LINE) {
        fail(s);
        break;
      }
      on_line(s, s->line.data, s->line.len, out);
      buf_reset(&s->line);
    } else {
      on_line(s, data + i, k, out);
    }
    i += k + 1;
  }
  export_usage(&s->usage, usage);
  if (s->rc != PS_MORE && err) *err = s->cls;
  return s->rc;
}

/* EOF: only a done line missing its '\n' can still complete the stream; nothing is
 * written otherwise. */
int ollama_stream_end(prov_stream *s, buf_t *out, prov_usage *usage) {
  if (s->rc == PS_MORE) {
    buf_t tail = {0};
    if (s->line.len) on_line(s, s->line.data, s->line.len, &tail);
    buf_reset(&s->line);
    if (s->rc == PS_DONE) {
      if (buf_append(out, tail.data, tail.len)) fail(s);
    } else {
      fail(s);
    }
    buf_free(&tail);
  }
  export_usage(&s->usage, usage);
  return s->rc;
}
