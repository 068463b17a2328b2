/* mock_faults.c — fault F parsing, the FIFO queue and the default fault.
 * A fault with a `rate` < 1 hits only that share of the requests that draw it; the
 * draw uses a seeded PRNG (--seed, or a fault's `seed`) so chaos runs are reproducible. */
#include <stdlib.h>
#include <string.h>

#include "mock.h"

#define ARGS_FRAG 8 /* bytes per streamed tool-argument fragment (UTF-8 kept whole) */

void fault_unref(mock_fault *f) {
  if (!f || --f->refs > 0) return;
  free(f->body);
  free(f->content);
  for (int i = 0; i < f->nheaders; i++) {
    free((char *)f->headers[i].name);
    free((char *)f->headers[i].value);
  }
  free(f->headers);
  for (int i = 0; i < f->ntools; i++) {
    free(f->tools[i].id_esc);
    free(f->tools[i].name_esc);
    free(f->tools[i].args);
    free(f->tools[i].args_esc);
  }
  free(f->tools);
  free(f);
}

static int json_uint(json_t *v, uint32_t *out) {
  if (!v) return 0;
  if (!json_is_number(v) || json_number_value(v) < 0) return -1;
  *out = (uint32_t)json_number_value(v);
  return 0;
}

static int json_flag(json_t *v) { return v && (json_is_true(v) || (json_is_integer(v) && json_integer_value(v))); }

/* Length of the fragment of s[0..len) starting at pos: ARGS_FRAG bytes, extended so a
 * UTF-8 sequence is never split (each fragment is a valid JSON string on its own). */
static size_t frag_len(const char *s, size_t len, size_t pos) {
  size_t e = pos + ARGS_FRAG < len ? pos + ARGS_FRAG : len;
  while (e < len && ((unsigned char)s[e] & 0xC0) == 0x80) e++;
  return e - pos;
}

/* tool_calls: [{"name": "...", "arguments": {...} | "raw json text", "id": "..."}]. */
static int tools_parse(mock_fault *f, json_t *arr, const char **err) {
  if (!json_is_array(arr)) { *err = "tool_calls must be an array"; return -1; }
  f->tools = calloc(json_array_size(arr) + 1, sizeof *f->tools);
  if (!f->tools) abort();
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    json_t *name = json_object_get(v, "name"), *args = json_object_get(v, "arguments"), *id = json_object_get(v, "id");
    if (!json_is_string(name) || !json_string_length(name)) { *err = "tool_calls[].name must be a non-empty string"; return -1; }
    if (args && !json_is_null(args) && !json_is_object(args) && !json_is_string(args)) {
      *err = "tool_calls[].arguments must be an object (or a string used verbatim)";
      return -1;
    }
    if (id && !json_is_null(id) && !json_is_string(id)) { *err = "tool_calls[].id must be a string"; return -1; }
    mock_tool *t = &f->tools[f->ntools++];
    t->name_esc = esc_dup(json_string_value(name), json_string_length(name));
    if (json_is_string(id)) t->id_esc = esc_dup(json_string_value(id), json_string_length(id));
    if (json_is_string(args)) t->args = strdup(json_string_value(args));
    else if (json_is_object(args)) t->args = json_dumps(args, JSON_COMPACT); /* key order kept */
    else t->args = strdup("{}");
    if (!t->args) abort();
    t->args_len = strlen(t->args);
    t->args_esc = esc_dup(t->args, t->args_len);
    for (size_t p = 0; p < t->args_len; p += frag_len(t->args, t->args_len, p)) t->nfrags++;
  }
  return 0;
}

/* Length of the next argument fragment of t from pos (mock_call.c streams them). */
size_t fault_args_frag(const mock_tool *t, size_t pos) { return frag_len(t->args, t->args_len, pos); }

mock_fault *fault_parse(json_t *o, const char **err) {
  if (!json_is_object(o)) { *err = "a fault must be a JSON object"; return NULL; }
  mock_fault *f = calloc(1, sizeof *f);
  if (!f) abort();
  f->refs = 1;
  f->cut_after = -1;
  f->error_after = -1;
  json_t *v;
  if ((v = json_object_get(o, "status"))) {
    if (!json_is_integer(v) || json_integer_value(v) < 100 || json_integer_value(v) > 599) { *err = "status must be an HTTP status"; goto bad; }
    f->status = (int)json_integer_value(v);
  }
  if ((v = json_object_get(o, "body")) && !json_is_null(v)) {
    f->body = json_is_string(v) ? strdup(json_string_value(v)) : json_dumps(v, JSON_COMPACT);
  }
  if ((v = json_object_get(o, "headers"))) {
    if (!json_is_object(v)) { *err = "headers must be an object"; goto bad; }
    f->headers = calloc(json_object_size(v) + 1, sizeof *f->headers);
    const char *k;
    json_t *hv;
    json_object_foreach(v, k, hv) {
      char *val = json_is_string(hv) ? strdup(json_string_value(hv)) : json_dumps(hv, JSON_ENCODE_ANY | JSON_COMPACT);
      f->headers[f->nheaders].name = strdup(k);
      f->headers[f->nheaders].value = val;
      f->nheaders++;
    }
  }
  if (json_uint(json_object_get(o, "delay_ms"), &f->delay_ms) ||
      json_uint(json_object_get(o, "ttft_ms"), &f->ttft_ms) ||
      json_uint(json_object_get(o, "chunk_delay_ms"), &f->chunk_delay_ms)) {
    *err = "delays must be non-negative numbers (ms)";
    goto bad;
  }
  if ((v = json_object_get(o, "content")) && !json_is_null(v)) {
    if (!json_is_string(v)) { *err = "content must be a string"; goto bad; }
    f->content = strdup(json_string_value(v));
  }
  if ((v = json_object_get(o, "cut_after")) && !json_is_null(v)) {
    uint32_t n;
    if (json_uint(v, &n)) { *err = "cut_after must be a non-negative integer"; goto bad; }
    f->cut_after = (int)n;
  }
  if ((v = json_object_get(o, "error_after")) && !json_is_null(v)) {
    uint32_t n;
    if (json_uint(v, &n)) { *err = "error_after must be a non-negative integer"; goto bad; }
    f->error_after = (int)n;
  }
  if ((v = json_object_get(o, "tool_calls")) && !json_is_null(v) && tools_parse(f, v, err)) goto bad;
  f->rate = 1;
  if ((v = json_object_get(o, "rate")) && !json_is_null(v)) {
    if (!json_is_number(v) || json_number_value(v) < 0 || json_number_value(v) > 1) { *err = "rate must be a number in 0..1"; goto bad; }
    f->rate = json_number_value(v);
  }
  f->seed = -1;
  if ((v = json_object_get(o, "seed")) && !json_is_null(v)) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) { *err = "seed must be a non-negative integer"; goto bad; }
    f->seed = json_integer_value(v);
  }
  f->garbage = json_flag(json_object_get(o, "garbage"));
  f->hang = json_flag(json_object_get(o, "hang"));
  return f;
bad:
  fault_unref(f);
  return NULL;
}

void queue_clear(void) {
  while (M.qhead) {
    mock_fault *f = M.qhead;
    M.qhead = f->next;
    fault_unref(f);
  }
  M.qtail = NULL;
  M.queued = 0;
}

/* splitmix64: tiny, any seed (0 too) gives a good sequence; [0, 1) with 53 bits. */
static double rng_unit(void) {
  uint64_t z = (M.rng += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return (double)(z >> 11) * 0x1.0p-53;
}

void fault_posted(const mock_fault *f) {
  if (f->seed >= 0) M.rng = (uint64_t)f->seed;
}

/* A drawn fault with rate r hits with probability r; a miss is a healthy answer (the
 * queue entry is consumed either way, so a queue of N faults still covers N requests). */
static mock_fault *fault_hit(mock_fault *f) {
  if (!f || f->rate >= 1 || rng_unit() < f->rate) return f;
  fault_unref(f);
  return NULL;
}

mock_fault *fault_next(void) {
  mock_fault *f = M.qhead;
  if (f) {
    M.qhead = f->next;
    if (!M.qhead) M.qtail = NULL;
    M.queued--;
    f->next = NULL;
    return fault_hit(f);
  }
  if (M.deflt) M.deflt->refs++;
  return fault_hit(M.deflt);
}
