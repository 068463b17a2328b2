/* test_midstream.c — mid-stream continuation: the tracker on realistic streams, the cases
 * that cannot be continued, the continuation request (prefill and instruction variants,
 * splicing into raw bodies), and the splicer (role dropped, ids rewritten, whitespace rule,
 * usage adjusted) fed through the SSE decoder split at every byte. */
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "json_span.h"
#include "midstream.h"
#include "sse_decoder.h"

/* ---- helpers ------------------------------------------------------------------------- */

#define ID_A "\"chatcmpl-9xYz\""
#define HEAD_A "{\"id\":" ID_A ",\"object\":\"chat.completion.chunk\",\"created\":1735000000," \
               "\"model\":\"gpt-4o-mini-2024-07-18\",\"system_fingerprint\":\"fp_abc123\","

/* An OpenAI stream as a provider sends it: role chunk, contents with escapes (\n, \", é
 * both raw and as \u00e9, an emoji as a surrogate pair), finish, usage, [DONE]. */
static const char STREAM_A[] =
    "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\\n\\\"caf\\u00e9\\\" "
    "\xC3\xA9 \"},\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ud83d\\ude00 \\/ \\t\"},"
    "\"finish_reason\":null}],\"usage\":null}\n\n"
    "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":"
    "\"stop\"}],\"usage\":null}\n\n"
    "data: " HEAD_A "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5,"
    "\"total_tokens\":17}}\n\n"
    "data: [DONE]\n\n";
static const char TEXT_A[] = "Hello\n\"caf\xC3\xA9\" \xC3\xA9 \xF0\x9F\x98\x80 / \t";

typedef struct feed_ctx {
  midstream_tracker *t;  /* tracker fed (track mode) */
  midstream_splicer *s;  /* splicer fed (splice mode) */
  buf_t out;             /* splicer output */
  int kinds[32];         /* result of each event */
  int n;                 /* events */
} feed_ctx;

static void on_event(void *ud, const sse_event *ev) {
  feed_ctx *f = ud;
  int rc = f->s ? midstream_splice(f->s, ev->event, ev->data, ev->data_len, &f->out)
                : midstream_track(f->t, ev->data, ev->data_len);
  if (f->n < 32) f->kinds[f->n] = rc;
  f->n++;
}

/* Decodes bytes with the SSE decoder, cut at `at` (and fed whole when at == n). */
static void feed_at(feed_ctx *f, const char *s, size_t n, size_t at) {
  sse_decoder d;
  sse_init(&d);
  assert_int_equal(sse_feed(&d, s, at, on_event, f), 0);
  assert_int_equal(sse_feed(&d, s + at, n - at, on_event, f), 0);
  sse_free(&d);
}

static void track_str(midstream_tracker *t, const char *s) {
  feed_ctx f = {.t = t};
  feed_at(&f, s, strlen(s), strlen(s));
}

/* One chunk event whose choice 0 delta is `delta` (JSON object text). */
static int track_delta(midstream_tracker *t, const char *delta) {
  char ev[1024];
  snprintf(ev, sizeof ev, HEAD_A "\"choices\":[{\"index\":0,\"delta\":%s,\"finish_reason\":null}]}",
           delta);
  return midstream_track(t, ev, strlen(ev));
}

static void assert_buf(const buf_t *b, const char *want) {
  size_t n = strlen(want);
  if (b->len != n || memcmp(b->data, want, n)) {
    fprintf(stderr, "got:  %.*s\nwant: %s\n", (int)b->len, b->data ? b->data : "", want);
    fail();
  }
}

static void assert_valid_json(const buf_t *b) {
  json_span all;
  assert_int_equal(json_span_whole(b->data, b->len, &all), 0);
}

/* ---- tracker ------------------------------------------------------------------------- */

static void test_track_stream(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_tracker_init(&t);
  feed_ctx f = {.t = &t};
  feed_at(&f, STREAM_A, sizeof STREAM_A - 1, sizeof STREAM_A - 1);
  assert_int_equal(f.n, 7);
  for (int i = 0; i < 6; i++) assert_int_equal(f.kinds[i], MIDSTREAM_EV_CHUNK);
  assert_int_equal(f.kinds[6], MIDSTREAM_EV_DONE);
  assert_true(t.continuable);
  assert_null(t.why_not);
  assert_buf(&t.text, TEXT_A);
  assert_int_equal(t.id_len, strlen(ID_A));
  assert_memory_equal(t.id, ID_A, t.id_len);
  assert_int_equal(t.created_len, 10);
  assert_memory_equal(t.created, "1735000000", 10);
  assert_int_equal(t.model_len, strlen("\"gpt-4o-mini-2024-07-18\""));
  assert_memory_equal(t.model, "\"gpt-4o-mini-2024-07-18\"", t.model_len);
  assert_string_equal(t.finish_reason, "stop");
  assert_int_equal(t.chunks, 6);
  assert_int_equal(midstream_delivered_tokens(&t), (strlen(TEXT_A) + 3) / 4);
  midstream_tracker_free(&t);
}

/* The tracker's result does not depend on how the relayed bytes were chunked. */
static void test_track_every_split(void **st) {
  (void)st;
  size_t n = sizeof STREAM_A - 1;
  for (size_t at = 0; at <= n; at++) {
    midstream_tracker t;
    midstream_tracker_init(&t);
    feed_ctx f = {.t = &t};
    feed_at(&f, STREAM_A, n, at);
    assert_int_equal(f.n, 7);
    assert_buf(&t.text, TEXT_A);
    assert_string_equal(t.finish_reason, "stop");
    midstream_tracker_free(&t);
  }
}

/* Azure's first chunk is a filter annotation with an empty id and created 0: the stream's
 * identity comes from the first chunk with a real id. Keys may be escaped. */
static void test_track_azure_ids(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_tracker_init(&t);
  track_str(&t,
            "data: {\"choices\":[],\"created\":0,\"id\":\"\",\"model\":\"\",\"object\":\"\","
            "\"prompt_filter_results\":[{\"prompt_index\":0,\"content_filter_results\":{}}]}\n\n"
            "data: {\"id\":\"chatcmpl-AZ\",\"created\":1735000001,\"model\":\"gpt-4o\",\"choices\":"
            "[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},\"finish_reason\":"
            "null}]}\n\n"
            "data: {\"id\":\"chatcmpl-other\",\"created\":5,\"choices\":[{\"index\":0,\"delta\":"
            "{\"cont\\u0065nt\":\"Hi\"},\"content_filter_results\":{}}]}\n\n");
  assert_true(t.continuable);
  assert_int_equal(t.id_len, strlen("\"chatcmpl-AZ\""));
  assert_memory_equal(t.id, "\"chatcmpl-AZ\"", t.id_len);
  assert_memory_equal(t.created, "1735000001", t.created_len);
  assert_memory_equal(t.model, "\"gpt-4o\"", t.model_len);
  assert_buf(&t.text, "Hi");
  assert_string_equal(t.finish_reason, "");
  midstream_tracker_free(&t);
}

static void test_track_error_and_malformed(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_tracker_init(&t);
  assert_int_equal(track_delta(&t, "{\"content\":\"abc\"}"), MIDSTREAM_EV_CHUNK);
  const char *err = "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\"}}";
  assert_int_equal(midstream_track(&t, err, strlen(err)), MIDSTREAM_EV_ERROR);
  const char *bad[] = {"{\"id\":\"x\",\"choices\":[{\"delta\":{\"content\":\"zz\"}}]",
                       "{\"choices\":[{\"delta\":{\"content\":\"\\ud800\"}}]}",
                       "[1,2]", "", "{\"a\":1} x", "{\"a\":01}"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(midstream_track(&t, bad[i], strlen(bad[i])), -EINVAL);
  assert_true(t.continuable);
  assert_buf(&t.text, "abc");
  assert_int_equal(t.chunks, 1);
  midstream_tracker_free(&t);
}

/* What cannot be continued faithfully turns continuability off for good (text released). */
static const char BODY_MIN[] = "{\"messages\":[],\"stream\":true}";

static void test_track_not_continuable(void **st) {
  (void)st;
  static const struct {
    const char *ev;  /* chunk data after one content chunk */
    const char *why; /* expected why_not */
  } cases[] = {
      {HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"id\":\"call_A\","
              "\"type\":\"function\",\"function\":{\"name\":\"f\",\"arguments\":\"\"}}]}}]}",
       "tool_calls"},
      {HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"name\":\"f\"}}}]}",
       "tool_calls"},
      {HEAD_A "\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"}}]}", "choice_index"},
      {HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"I can't\"}}]}", "refusal"},
      {HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"logprobs\":{\"content\":"
              "[{\"token\":\"x\",\"logprob\":-0.1}]}}]}",
       "logprobs"},
      {HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":[{\"type\":\"text\",\"text\":"
              "\"x\"}]}}]}",
       "content_not_text"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    midstream_tracker t;
    buf_t out = {0};
    midstream_tracker_init(&t);
    assert_int_equal(track_delta(&t, "{\"content\":\"abc\",\"tool_calls\":null,\"refusal\":null}"),
                     MIDSTREAM_EV_CHUNK);
    assert_true(t.continuable);
    assert_int_equal(midstream_track(&t, cases[i].ev, strlen(cases[i].ev)), MIDSTREAM_EV_CHUNK);
    assert_false(t.continuable);
    assert_string_equal(t.why_not, cases[i].why);
    assert_null(t.text.data);
    assert_int_equal(track_delta(&t, "{\"content\":\"more\"}"), MIDSTREAM_EV_CHUNK);
    assert_false(t.continuable); /* sticky */
    assert_int_equal(midstream_build_request(BODY_MIN, strlen(BODY_MIN), &t, 1, &out),
                     -EINVAL);
    buf_free(&out);
    midstream_tracker_free(&t);
  }
}

static void test_track_text_cap(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_tracker_init(&t);
  size_t piece = 60000;
  char *ev = malloc(piece + 256);
  int m = sprintf(ev, "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"");
  memset(ev + m, 'a', piece);
  strcpy(ev + m + piece, "\"}}]}");
  size_t n = strlen(ev);
  size_t fed = 0;
  while (fed + piece <= MIDSTREAM_MAX_TEXT) {
    assert_int_equal(midstream_track(&t, ev, n), MIDSTREAM_EV_CHUNK);
    fed += piece;
    assert_true(t.continuable);
    assert_int_equal(t.text.len, fed);
  }
  assert_int_equal(midstream_track(&t, ev, n), MIDSTREAM_EV_CHUNK);
  assert_false(t.continuable);
  assert_string_equal(t.why_not, "text_cap");
  assert_null(t.text.data);
  free(ev);
  midstream_tracker_free(&t);
}

/* ---- tracker fast path ---------------------------------------------------------------
 * midstream_track reads the common text chunk in one pass and leaves everything else to
 * midstream_track_full. Both must agree on every input: the result and the whole tracker. */

/* Events a fast path could get wrong: every shape it accepts and many it must decline. */
static const char *const FAST_CORPUS[] = {
    HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel\"},\"logprobs\":null,"
    "\"finish_reason\":null}],\"usage\":null}",
    "{\"id\":\"chatcmpl-mock-1\",\"object\":\"chat.completion.chunk\",\"created\":1795713260,"
    "\"model\":\"gpt-4o\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"w1 \"},"
    "\"finish_reason\":null}]}",
    HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\","
    "\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],\"usage\":null}",
    HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lo\\n\\\"caf\\u00e9\\\" "
    "\xC3\xA9 \"},\"finish_reason\":null}]}",
    HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"\\ud83d\\ude00 \\/ \\t\"}}]}",
    HEAD_A "\"choices\":[{\"index\":0,\"delta\":{},\"logprobs\":null,\"finish_reason\":\"stop\"}]}",
    HEAD_A "\"choices\":[],\"usage\":{\"prompt_tokens\":12,\"completion_tokens\":5}}",
    " { \"id\" : \"x\" , \"choices\" : [ { \"index\" : 0 , \"delta\" : { \"content\" : \"a\" } } ] } ",
    "{\"id\":\"\",\"created\":0,\"model\":\"\",\"choices\":[{\"delta\":{\"content\":\"no index\"}}]}",
    "{\"id\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":null}}]}",
    "{\"id\":\"a\",\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"dup id\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],\"choices\":[{\"index\":0,"
    "\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\",\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":0,\"finish_reason\":\"length\",\"finish_reason\":null}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}},{\"index\":0,\"delta\":"
    "{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":1,\"delta\":{\"content\":\"b\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[{\"index\":0,\"function\":"
    "{\"arguments\":\"{\\\"a\"}}]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\",\"tool_calls\":[]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"function_call\":{\"name\":\"f\"}}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"refusal\":\"no\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"logprobs\":{\"content\":[]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"logprobs\":{}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":42}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":[\"a\"]}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":null}]}",
    "{\"choices\":null}",
    "{\"choices\":{\"index\":0}}",
    "{\"choices\":[1]}",
    "{\"error\":null,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"e\"}}]}",
    "{\"error\":{\"message\":\"boom\",\"type\":\"server_error\"}}",
    "{\"\\u0069d\":\"escaped key\",\"choices\":[{\"index\":0,\"delta\":{\"c\\u006fntent\":\"k\"}}]}",
    "{\"caf\xC3\xA9\":1,\"choices\":[{\"index\":0,\"delta\":{\"content\":\"u\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"bad\xC3\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"lone \\udc00\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"ctl\x01\"}}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]} x",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},}]}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}],}",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"}}]",
    "{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"a\"},\"content_filter_results\":"
    "{\"hate\":{\"filtered\":false,\"severity\":\"safe\"}}}],\"created\":1.5e3}",
    "{}",
    "[]",
    "[DONE]",
    "",
};

/* A tracker with some text already, another whose continuability is already off. */
static void fast_start(midstream_tracker *t, int variant) {
  midstream_tracker_init(t);
  const char *pre = variant == 0 ? NULL
                  : variant == 1 ? "{\"id\":\"p\",\"created\":1,\"choices\":[{\"index\":0,\"delta\":"
                                   "{\"content\":\"Hi \"}}]}"
                                 : "{\"choices\":[{\"index\":0,\"delta\":{\"tool_calls\":[1]}}]}";
  if (pre) assert_int_equal(midstream_track_full(t, pre, strlen(pre)), MIDSTREAM_EV_CHUNK);
}

static void assert_same_tracking(const char *ev, size_t n) {
  for (int variant = 0; variant < 3; variant++) {
    midstream_tracker a, b;
    fast_start(&a, variant);
    fast_start(&b, variant);
    int ra = midstream_track(&a, ev, n), rb = midstream_track_full(&b, ev, n);
    int same = ra == rb && a.chunks == b.chunks && a.continuable == b.continuable &&
               a.why_not == b.why_not && a.text.len == b.text.len &&
               (!a.text.len || !memcmp(a.text.data, b.text.data, a.text.len)) &&
               a.id_len == b.id_len && !memcmp(a.id, b.id, a.id_len) &&
               a.created_len == b.created_len && !memcmp(a.created, b.created, a.created_len) &&
               a.model_len == b.model_len && !memcmp(a.model, b.model, a.model_len) &&
               !strcmp(a.finish_reason, b.finish_reason);
    if (!same) {
      fprintf(stderr, "fast path differs (variant %d, rc %d vs %d) on: %.*s\n", variant, ra, rb,
              (int)n, ev);
      fail();
    }
    midstream_tracker_free(&a);
    midstream_tracker_free(&b);
  }
}

/* Every corpus event, each of its prefixes, and each byte replaced by a byte that matters to
 * JSON: the fast path and the full scan agree on all of them. */
static void test_track_fast_same_as_full(void **st) {
  (void)st;
  static const char bytes[] = {'"', '\\', '{', '}', '[', ']', ',', ':', ' ', '0', '1', 'n', 'x',
                               '\x01', '\x80', '\xC3', 'u', 'e', '-'};
  char ev[1024];
  for (size_t i = 0; i < ARRAY_SIZE(FAST_CORPUS); i++) {
    size_t n = strlen(FAST_CORPUS[i]);
    assert_true(n < sizeof ev);
    for (size_t k = 0; k <= n; k++) assert_same_tracking(FAST_CORPUS[i], k);
    for (size_t k = 0; k < n; k++)
      for (size_t b = 0; b < sizeof bytes; b++) {
        memcpy(ev, FAST_CORPUS[i], n);
        ev[k] = bytes[b];
        assert_same_tracking(ev, n);
      }
  }
}

/* Nesting near JSON_SPAN_MAX_DEPTH inside a choice, at the top level, and a large skipped
 * container: the depth limit applies as in the full scan. */
static void test_track_fast_depth(void **st) {
  (void)st;
  static const char *const at[] = {("{\"choices\":[{\"index\":0,\"delta\":{\"content\":\"d\","
                                    "\"x\":"),
                                   "{\"choices\":[{\"index\":0,\"x\":", "{\"x\":"};
  static const char *const close[] = {"}}]}", "}]}", ",\"choices\":[]}"};
  for (size_t w = 0; w < ARRAY_SIZE(at); w++)
    for (int depth = 500; depth <= 515; depth++) {
      buf_t ev = {0};
      assert_int_equal(buf_append(&ev, at[w], strlen(at[w])), 0);
      for (int i = 0; i < depth; i++) assert_int_equal(BUF_LIT(&ev, "["), 0);
      for (int i = 0; i < depth; i++) assert_int_equal(BUF_LIT(&ev, "]"), 0);
      assert_int_equal(buf_append(&ev, close[w], strlen(close[w])), 0);
      assert_same_tracking(ev.data, ev.len);
      buf_free(&ev);
    }
}

/* A whole realistic stream through the decoder, split at every byte: the same tracker as
 * the full scan gives. */
static void test_track_fast_stream(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_tracker_init(&t);
  track_str(&t, STREAM_A);
  assert_int_equal(t.text.len, strlen(TEXT_A));
  assert_memory_equal(t.text.data, TEXT_A, t.text.len);
  assert_string_equal(t.finish_reason, "stop");
  assert_int_equal(t.chunks, 6);
  midstream_tracker_free(&t);
}

/* ---- continuation request ------------------------------------------------------------ */

static void tracker_with(midstream_tracker *t, const char *text_json) {
  midstream_tracker_init(t);
  char delta[512];
  snprintf(delta, sizeof delta, "{\"content\":%s}", text_json);
  assert_int_equal(track_delta(t, delta), MIDSTREAM_EV_CHUNK);
}

static const char BODY1[] =
    "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"count\"}],"
    "\"stream\":true,\"stream_options\":{\"include_usage\":true}}";

static void test_request_prefill(void **st) {
  (void)st;
  midstream_tracker t;
  buf_t out = {0};
  tracker_with(&t, "\"one two three \"");
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 1, &out), 0);
  assert_buf(&out,
             "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"count\"},"
             "{\"role\":\"assistant\",\"content\":\"one two three\"}],"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
  assert_int_equal(t.ws_cut, 1);
  assert_valid_json(&out);
  buf_free(&out);
  midstream_tracker_free(&t);
}

static void test_request_instruction(void **st) {
  (void)st;
  midstream_tracker t;
  buf_t out = {0};
  tracker_with(&t, "\"one two three \"");
  t.ws_cut = 7; /* a previous prefill build: the instruction variant cuts nothing */
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 0, &out), 0);
  assert_buf(&out,
             "{\"model\":\"gpt-4o\",\"messages\":[{\"role\":\"user\",\"content\":\"count\"},"
             "{\"role\":\"assistant\",\"content\":\"one two three \"},"
             "{\"role\":\"user\",\"content\":\"" MIDSTREAM_CONTINUE_PROMPT "\"}],"
             "\"stream\":true,\"stream_options\":{\"include_usage\":true}}");
  assert_int_equal(t.ws_cut, 0);
  assert_valid_json(&out);
  buf_free(&out);
  midstream_tracker_free(&t);
}

/* messages not last, nested arrays and brackets in strings inside it, white space before
 * its ']', unicode and escapes in the delivered text; the rest is copied byte for byte. */
static void test_request_raw_splice(void **st) {
  (void)st;
  midstream_tracker t;
  buf_t out = {0};
  tracker_with(&t, "\"Caf\\u00e9 \\\"]\\\" \\ud83d\\ude00\\n\\ttab\\u2028\\n\\n\"");
  const char *body =
      "{ \"stream\" : true , \"messages\" : [ {\"role\":\"system\",\"content\":\"be [brief]\"},"
      " {\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"a ] b\"},"
      "{\"type\":\"image_url\",\"image_url\":{\"url\":\"data:x\"}}]} \n ] ,"
      " \"temperature\":0.10000000000000001, \"n\":1, \"max_tokens\":12345678901234567890,"
      " \"tools_ext\":[[1,[2]],{\"k\":[]}] }";
  assert_int_equal(midstream_build_request(body, strlen(body), &t, 1, &out), 0);
  const char *close = strstr(body, "} \n ]") + 4;
  buf_t want = {0};
  buf_append(&want, body, (size_t)(close - body));
  BUF_LIT(&want, ",{\"role\":\"assistant\",\"content\":\"Caf\xC3\xA9 \\\"]\\\" \xF0\x9F\x98\x80\\n\\ttab\"}");
  buf_append(&want, close, strlen(close));
  buf_cstr(&want);
  assert_buf(&out, want.data);
  assert_int_equal(t.ws_cut, strlen("\xE2\x80\xA8\n\n"));
  assert_valid_json(&out);
  /* the assistant message is the array's last element */
  json_span_step path[] = {{"messages", 0}, {NULL, 2}, {"content", 0}};
  json_span v;
  assert_int_equal(json_span_find(out.data, out.len, path, 3, &v), 0);
  buf_free(&want);
  buf_free(&out);
  midstream_tracker_free(&t);
}

static void test_request_empty_messages(void **st) {
  (void)st;
  midstream_tracker t;
  buf_t out = {0};
  tracker_with(&t, "\"x\"");
  const char *body = "{\"messages\":[ \t],\"stream\":true,\"model\":\"m\"}";
  assert_int_equal(midstream_build_request(body, strlen(body), &t, 0, &out), 0);
  assert_buf(&out, "{\"messages\":[ \t{\"role\":\"assistant\",\"content\":\"x\"},{\"role\":\"user\","
                   "\"content\":\"" MIDSTREAM_CONTINUE_PROMPT "\"}],\"stream\":true,\"model\":\"m\"}");
  assert_valid_json(&out);
  buf_free(&out);
  midstream_tracker_free(&t);
}

/* Nothing delivered, or only white space: the original request starts over. */
static void test_request_nothing_said(void **st) {
  (void)st;
  midstream_tracker t;
  buf_t out = {0};
  midstream_tracker_init(&t);
  track_delta(&t, "{\"role\":\"assistant\",\"content\":\"\"}");
  for (int prefill = 0; prefill < 2; prefill++) {
    assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, prefill, &out), 0);
    assert_buf(&out, BODY1);
  }
  track_delta(&t, "{\"content\":\"\\n\\u00a0 \"}");
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 1, &out), 0);
  assert_buf(&out, BODY1);
  assert_int_equal(t.ws_cut, 4);
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 0, &out), 0);
  assert_buf(&out, BODY1);
  assert_int_equal(t.ws_cut, 0);
  buf_free(&out);
  midstream_tracker_free(&t);
}

static void test_request_refused(void **st) {
  (void)st;
  midstream_tracker t;
  buf_t out = {0};
  tracker_with(&t, "\"abc\"");
  const char *bad[] = {
      "{\"messages\":[],\"stream\":true,\"n\":2}",
      "{\"messages\":[],\"stream\":true,\"n\":1.0}",
      "{\"messages\":[],\"stream\":false}",
      "{\"messages\":[]}",
      "{\"stream\":true}",
      "{\"messages\":{},\"stream\":true}",
      "{\"messages\":[],\"stream\":true",
      "{\"messages\":[],\"stream\":true} {}",
      "[]",
      "",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
    assert_int_equal(midstream_build_request(bad[i], strlen(bad[i]), &t, 1, &out), -EINVAL);
  const char *ok[] = {"{\"messages\":[],\"stream\":true,\"n\":1}",
                      "{\"messages\":[],\"stream\":true,\"n\":null}",
                      "{\"messages\":{},\"messages\":[],\"stream\":false,\"stream\":true}"};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    assert_int_equal(midstream_build_request(ok[i], strlen(ok[i]), &t, 1, &out), 0);
    assert_valid_json(&out);
  }
  buf_free(&out);
  midstream_tracker_free(&t);
}

/* ---- splicer ------------------------------------------------------------------------- */

#define HEAD_B "{\"id\":\"msg_01B\",\"object\":\"chat.completion.chunk\",\"created\":1735000099," \
               "\"model\":\"claude-sonnet-4-5\","
#define HEAD_OUT "{\"id\":" ID_A ",\"object\":\"chat.completion.chunk\",\"created\":1735000000," \
                 "\"model\":\"claude-sonnet-4-5\","

/* The continuation as an adapter writes it (CRLF framing thrown in: the decoder's job). */
static const char CONT_B[] =
    "data: " HEAD_B "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\"},"
    "\"finish_reason\":null}]}\r\n\r\n"
    ": keep-alive\n\n"
    "data: " HEAD_B "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" four\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: " HEAD_B "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" five six\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: " HEAD_B "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: " HEAD_B "\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":3,"
    "\"total_tokens\":33}}\n\n"
    "data: [DONE]\n\n";

/* With the prefill " " cut: the first content loses its leading space. */
static const char CONT_B_OUT[] =
    "data: " HEAD_OUT "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"four\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: " HEAD_OUT "\"choices\":[{\"index\":0,\"delta\":{\"content\":\" five six\"},"
    "\"finish_reason\":null}]}\n\n"
    "data: " HEAD_OUT "\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n"
    "data: " HEAD_OUT "\"choices\":[],\"usage\":{\"prompt_tokens\":30,\"completion_tokens\":7,"
    "\"total_tokens\":37}}\n\n"
    "data: [DONE]\n\n";

/* The original stream of the resilience test: "one two three " delivered, then cut. */
static void original_cut(midstream_tracker *t) {
  midstream_tracker_init(t);
  track_str(t, "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
               "\"content\":\"\"},\"finish_reason\":null}]}\n\n"
               "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"one \"}}]}\n\n"
               "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"two \"}}]}\n\n"
               "data: " HEAD_A "\"choices\":[{\"index\":0,\"delta\":{\"content\":\"three \"}}]}\n\n");
  assert_true(t->continuable);
}

static void splice_at(midstream_tracker *t, int prefill, const char *cont, size_t n, size_t at,
                      feed_ctx *f) {
  midstream_splicer *s = malloc(sizeof *s);
  buf_t body = {0};
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, t, prefill, &body), 0);
  assert_int_equal(midstream_splice_init(s, t, 4), 0);
  *f = (feed_ctx){.s = s};
  feed_at(f, cont, n, at);
  midstream_splice_free(s);
  free(s);
  buf_free(&body);
}

static void test_splice_stream(void **st) {
  (void)st;
  midstream_tracker t;
  feed_ctx f;
  original_cut(&t);
  splice_at(&t, 1, CONT_B, sizeof CONT_B - 1, 0, &f);
  assert_buf(&f.out, CONT_B_OUT);
  assert_int_equal(f.n, 6);
  int want[] = {MIDSTREAM_EV_DROPPED, MIDSTREAM_EV_CHUNK, MIDSTREAM_EV_CHUNK,
                MIDSTREAM_EV_CHUNK,   MIDSTREAM_EV_CHUNK, MIDSTREAM_EV_DONE};
  for (int i = 0; i < 6; i++) assert_int_equal(f.kinds[i], want[i]);
  /* the tracker saw what the client saw: one answer, ready to be continued again */
  assert_buf(&t.text, "one two three four five six");
  assert_string_equal(t.finish_reason, "stop");
  assert_memory_equal(t.id, ID_A, t.id_len);
  buf_free(&f.out);
  midstream_tracker_free(&t);
}

/* The output does not depend on where the continuation's bytes were split. */
static void test_splice_every_split(void **st) {
  (void)st;
  size_t n = sizeof CONT_B - 1;
  for (size_t at = 0; at <= n; at++) {
    midstream_tracker t;
    feed_ctx f;
    original_cut(&t);
    splice_at(&t, 1, CONT_B, n, at, &f);
    assert_buf(&f.out, CONT_B_OUT);
    buf_free(&f.out);
    midstream_tracker_free(&t);
  }
  /* and byte by byte */
  midstream_tracker t;
  midstream_splicer s;
  buf_t body = {0};
  original_cut(&t);
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 1, &body), 0);
  assert_int_equal(midstream_splice_init(&s, &t, 4), 0);
  feed_ctx f = {.s = &s};
  sse_decoder d;
  sse_init(&d);
  for (size_t i = 0; i < n; i++) assert_int_equal(sse_feed(&d, CONT_B + i, 1, on_event, &f), 0);
  sse_free(&d);
  assert_buf(&f.out, CONT_B_OUT);
  buf_free(&f.out);
  buf_free(&body);
  midstream_splice_free(&s);
  midstream_tracker_free(&t);
}

/* Instruction variant: nothing was cut, the leading space stays. */
static void test_splice_no_prefill(void **st) {
  (void)st;
  midstream_tracker t;
  feed_ctx f;
  original_cut(&t);
  splice_at(&t, 0, CONT_B, sizeof CONT_B - 1, 0, &f);
  assert_non_null(strstr(f.out.data, "{\"content\":\" four\"}"));
  assert_buf(&t.text, "one two three  four five six");
  buf_free(&f.out);
  midstream_tracker_free(&t);
}

/* Contents (JSON string bodies) of the continuation → what the client gets, for a prefill
 * that had `cut` (raw text) removed. */
static void check_strip(const char *delivered_json, const char *const *contents, size_t n,
                        const char *want_json_out) {
  midstream_tracker t;
  midstream_splicer s;
  buf_t body = {0}, out = {0};
  tracker_with(&t, delivered_json);
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 1, &body), 0);
  assert_int_equal(midstream_splice_init(&s, &t, 0), 0);
  for (size_t i = 0; i < n; i++) {
    char ev[256];
    snprintf(ev, sizeof ev, "{\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"%s\"}}]}",
             contents[i]);
    assert_true(midstream_splice(&s, NULL, ev, strlen(ev), &out) >= 0);
  }
  assert_buf(&out, want_json_out);
  buf_free(&out);
  buf_free(&body);
  midstream_splice_free(&s);
  midstream_tracker_free(&t);
}

#define OUT_EV(c) "data: {\"id\":" ID_A ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"" c "\"}}]}\n\n"

static void test_splice_whitespace_rule(void **st) {
  (void)st;
  /* a different first character: kept as is */
  const char *c1[] = {"Next", " and"};
  check_strip("\"end.\\n\\n\"", c1, 2, OUT_EV("Next") OUT_EV(" and"));
  /* the same whitespace, escaped: removed once, not from later contents */
  const char *c2[] = {"\\n\\nNext", "\\n\\nmore"};
  check_strip("\"end.\\n\\n\"", c2, 2, OUT_EV("Next") OUT_EV("\\n\\nmore"));
  /* only part of it: that part goes, the rest is kept */
  const char *c3[] = {"\\n\\tNext"};
  check_strip("\"end.\\n\\n\"", c3, 1, OUT_EV("\\tNext"));
  /* spread over contents: a content that is only whitespace disappears (dropped chunk) */
  const char *c4[] = {"", " ", " x", " y"};
  check_strip("\"a  \"", c4, 4, OUT_EV("x") OUT_EV(" y"));
  /* unicode whitespace, raw in one place and escaped in the other */
  const char *c5[] = {"\\u00a0\xC2\xA0z"};
  check_strip("\"a\xC2\xA0\"", c5, 1, OUT_EV("\xC2\xA0z"));
  /* a multi-byte character that merely starts like the cut: kept whole */
  const char *c6[] = {"\xC2\xA9!"};
  check_strip("\"a\\u00a0\"", c6, 1, OUT_EV("\xC2\xA9!"));
}

static void test_splice_passthrough_events(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_splicer s;
  buf_t out = {0};
  original_cut(&t);
  assert_int_equal(midstream_splice_init(&s, &t, 10), 0);
  const char *err = "{\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}";
  assert_int_equal(midstream_splice(&s, "", err, strlen(err), &out), MIDSTREAM_EV_ERROR);
  assert_buf(&out, "data: {\"error\":{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}\n\n");
  buf_reset(&out);
  /* named event, multi-line data: each line framed */
  const char *ml = "{\"id\":\"x\",\n\"choices\":[]}";
  assert_int_equal(midstream_splice(&s, "note", ml, strlen(ml), &out), MIDSTREAM_EV_CHUNK);
  assert_buf(&out, "event: note\ndata: {\"id\":" ID_A ",\ndata: \"choices\":[]}\n\n");
  buf_reset(&out);
  const char *bad = "{\"id\":\"x\"";
  assert_int_equal(midstream_splice(&s, NULL, bad, strlen(bad), &out), -EINVAL);
  assert_int_equal(out.len, 0);
  /* usage on a content chunk (vLLM continuous usage), no created in the chunk, null usage */
  const char *u = "{\"id\":\"x\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}],"
                  "\"usage\":{\"total_tokens\":5,\"prompt_tokens\":4,\"completion_tokens\":1}}";
  assert_int_equal(midstream_splice(&s, NULL, u, strlen(u), &out), MIDSTREAM_EV_CHUNK);
  assert_buf(&out, "data: {\"id\":" ID_A ",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"z\"}}],"
                   "\"usage\":{\"total_tokens\":15,\"prompt_tokens\":4,\"completion_tokens\":11}}\n\n");
  buf_reset(&out);
  /* OpenAI's role chunk shape (refusal null, logprobs null, usage null): dropped */
  const char *role = "{\"id\":\"y\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\","
                     "\"content\":\"\",\"refusal\":null},\"logprobs\":null,\"finish_reason\":null}],"
                     "\"usage\":null}";
  assert_int_equal(midstream_splice(&s, NULL, role, strlen(role), &out), MIDSTREAM_EV_DROPPED);
  /* a role chunk that also carries text is kept */
  const char *role2 = "{\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"w\"}}]}";
  assert_int_equal(midstream_splice(&s, NULL, role2, strlen(role2), &out), MIDSTREAM_EV_CHUNK);
  assert_buf(&out, "data: {\"choices\":[{\"delta\":{\"role\":\"assistant\",\"content\":\"w\"}}]}\n\n");
  assert_buf(&t.text, "one two three zw");
  buf_free(&out);
  midstream_splice_free(&s);
  midstream_tracker_free(&t);
}

/* A continuation that dies too is continued from everything delivered. */
static void test_splice_chained(void **st) {
  (void)st;
  midstream_tracker t;
  midstream_splicer s;
  buf_t out = {0}, body = {0};
  original_cut(&t);
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 1, &body), 0);
  assert_int_equal(midstream_splice_init(&s, &t, midstream_delivered_tokens(&t)), 0);
  const char *c = "{\"id\":\"b\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\" four \"}}]}";
  assert_int_equal(midstream_splice(&s, NULL, c, strlen(c), &out), MIDSTREAM_EV_CHUNK);
  midstream_splice_free(&s);
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 0, &body), 0);
  assert_non_null(strstr(body.data, "{\"role\":\"assistant\",\"content\":\"one two three four \"}"));
  assert_int_equal(midstream_build_request(BODY1, sizeof BODY1 - 1, &t, 1, &body), 0);
  assert_non_null(strstr(body.data, "{\"role\":\"assistant\",\"content\":\"one two three four\"}"));
  buf_free(&out);
  buf_free(&body);
  midstream_tracker_free(&t);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_track_stream),
      cmocka_unit_test(test_track_every_split),
      cmocka_unit_test(test_track_azure_ids),
      cmocka_unit_test(test_track_error_and_malformed),
      cmocka_unit_test(test_track_not_continuable),
      cmocka_unit_test(test_track_text_cap),
      cmocka_unit_test(test_track_fast_same_as_full),
      cmocka_unit_test(test_track_fast_depth),
      cmocka_unit_test(test_track_fast_stream),
      cmocka_unit_test(test_request_prefill),
      cmocka_unit_test(test_request_instruction),
      cmocka_unit_test(test_request_raw_splice),
      cmocka_unit_test(test_request_empty_messages),
      cmocka_unit_test(test_request_nothing_said),
      cmocka_unit_test(test_request_refused),
      cmocka_unit_test(test_splice_stream),
      cmocka_unit_test(test_splice_every_split),
      cmocka_unit_test(test_splice_no_prefill),
      cmocka_unit_test(test_splice_whitespace_rule),
      cmocka_unit_test(test_splice_passthrough_events),
      cmocka_unit_test(test_splice_chained),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
