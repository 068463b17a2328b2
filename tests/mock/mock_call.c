/* mock_call.c — the answer engine shared by every format: takes the request's fault,
 * waits, answers a scripted error or a whole body, or streams the answer unit by unit
 * (cut, garbage, delays, back-pressure). The healthy non-stream path answers
 * synchronously: it must not be the bottleneck of a benchmark. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "log.h"
#include "mock.h"
#include "util.h"

/* ---- buffers ------------------------------------------------------------------ */

void ob_reserve(obuf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 4096;
  while (cap < b->len + extra + 1) cap *= 2;
  char *p = realloc(b->p, cap);
  if (!p) abort(); /* a mock may die on OOM */
  b->p = p;
  b->cap = cap;
}

void ob_printf(obuf *b, const char *fmt, ...) {
  for (;;) {
    ob_reserve(b, 256);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    ob_reserve(b, (size_t)n + 1);
  }
}

void ob_add(obuf *b, const char *s, size_t n) {
  ob_reserve(b, n);
  memcpy(b->p + b->len, s, n);
  b->len += n;
  b->p[b->len] = '\0';
}

char *esc_dup(const char *s, size_t n) {
  size_t cap = n * 6 + 1;
  char *o = malloc(cap);
  if (!o) abort();
  log_json_escape(o, cap, s, n);
  return o;
}

const char *esc_tmp(const char *s, size_t n) {
  M.esc.len = 0;
  ob_reserve(&M.esc, n * 6 + 1);
  log_json_escape(M.esc.p, M.esc.cap, s, n);
  return M.esc.p;
}

/* ---- small helpers ------------------------------------------------------------ */

void log_request(hs_request *req, int status, const char *note) {
  if (!log_enabled(LOG_LEVEL_INFO)) return;
  LOG_INFO(hs_header_get(req, "x-request-id"), "request", LF_S("method", req->method_str),
           LF_S("path", req->path), LF_I("status", status), LF_I("bytes_in", req->body_len),
           LF_F("ms", (double)(util_now_us() - req->start_us) / 1000.0), LF_S("fault", note));
}

int headers_merge(hs_header *h, int n, const hs_header *defaults, size_t nd, const mock_fault *f) {
  for (size_t i = 0; i < nd && n < 64; i++) {
    int dup = 0; /* a scripted header of the same name wins */
    for (int j = 0; f && j < f->nheaders; j++) dup |= strcasecmp(f->headers[j].name, defaults[i].name) == 0;
    if (!dup) h[n++] = defaults[i];
  }
  for (int j = 0; f && j < f->nheaders && n < 64; j++) h[n++] = f->headers[j];
  return n;
}

const char *query_get(const char *query, const char *name, char *buf, size_t cap) {
  size_t nl = strlen(name);
  for (const char *p = query; p && *p;) {
    const char *amp = strchr(p, '&'), *end = amp ? amp : p + strlen(p);
    if ((size_t)(end - p) > nl && strncmp(p, name, nl) == 0 && p[nl] == '=') {
      size_t vl = (size_t)(end - p) - nl - 1;
      if (vl >= cap) vl = cap - 1;
      memcpy(buf, p + nl + 1, vl);
      buf[vl] = '\0';
      return buf;
    }
    p = amp ? amp + 1 : NULL;
  }
  return NULL;
}

int bearer_ok(const char *auth) {
  if (!auth || strncasecmp(auth, "Bearer ", 7) != 0) return 0;
  for (const char *p = auth + 7; *p; p++)
    if (*p != ' ') return 1;
  return 0;
}

/* FNV-1a of the text seeds splitmix64; the vector is normalised to length 1. */
void embed_vector(const char *s, size_t n, int dims, float *out) {
  uint64_t x = 1469598103934665603ULL;
  for (size_t i = 0; i < n; i++) x = (x ^ (unsigned char)s[i]) * 1099511628211ULL;
  double sum = 0;
  for (int i = 0; i < dims; i++) {
    uint64_t z = (x += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    z ^= z >> 31;
    out[i] = (float)((double)(z >> 11) / (double)(1ULL << 53) * 2.0 - 1.0);
    sum += (double)out[i] * out[i];
  }
  double norm = sqrt(sum);
  for (int i = 0; i < dims && norm > 0; i++) out[i] = (float)(out[i] / norm);
}

void ob_vector(obuf *b, const float *v, int dims) {
  ob_add(b, "[", 1);
  for (int i = 0; i < dims; i++) ob_printf(b, i ? ",%.6f" : "%.6f", (double)v[i]);
  ob_add(b, "]", 1);
}

int json_dims(json_t *v, int dflt) {
  if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= 4096) return (int)json_integer_value(v);
  return dflt;
}

/* Splits the next word: leading spaces (first chunk only), a word, its following spaces. */
static size_t next_word(const char *s, size_t pos) {
  size_t i = pos;
  if (pos == 0) while (s[i] == ' ') i++;
  while (s[i] && s[i] != ' ') i++;
  while (s[i] == ' ') i++;
  return i - pos;
}

static int count_words(const char *s) {
  int n = 0;
  for (size_t pos = 0, l; s[pos]; pos += l, n++) l = next_word(s, pos);
  return n;
}

/* ---- units -------------------------------------------------------------------- */

static int unit_pending(const mock_call *call) {
  return call->content[call->pos] || (call->f && call->tool < call->f->ntools);
}

/* Takes the next unit of the answer: the content's words, then per tool call a start and
 * (formats that split them) its argument fragments. 0 when none is left. */
static int unit_next(mock_call *call, mock_unit *u) {
  const mock_fault *f = call->f;
  memset(u, 0, sizeof *u);
  if (call->content[call->pos]) {
    size_t l = next_word(call->content, call->pos);
    u->kind = MU_TEXT;
    u->s = call->content + call->pos;
    u->n = l;
    call->pos += l;
  } else if (f && call->tool < f->ntools) {
    const mock_tool *t = &f->tools[call->tool];
    u->tool = call->tool;
    if (!call->tool_started) {
      u->kind = MU_TOOL_START;
      call->tool_started = 1;
      call->apos = call->ep->fmt->args_fragments ? 0 : t->args_len;
      u->s = t->args;
      u->n = call->apos;
    } else {
      u->kind = MU_TOOL_ARGS;
      u->s = t->args + call->apos;
      u->n = fault_args_frag(t, call->apos);
      call->apos += u->n;
    }
    if (call->apos >= t->args_len) {
      call->tool++;
      call->tool_started = 0;
    }
  } else {
    return 0;
  }
  u->final = !unit_pending(call) && !(f && (f->cut_after >= 0 || f->error_after >= 0));
  return 1;
}

/* ---- lifecycle ---------------------------------------------------------------- */

static void on_call_timer_close(uv_handle_t *h) {
  mock_call *call = h->data;
  fault_unref(call->f);
  json_decref(call->root);
  free(call->model_esc);
  free(call);
}

/* Ends a call: counts it and releases it (the request is no longer touched). */
static void call_end(mock_call *call, int outcome /* 0 completed, 1 cancelled, 2 cut */) {
  if (outcome == 0) M.completed++;
  else if (outcome == 1) M.cancelled++;
  M.in_flight--;
  if (call->req) call->req->user = NULL;
  call->req = NULL;
  uv_timer_stop(&call->timer);
  uv_close((uv_handle_t *)&call->timer, on_call_timer_close);
}

static void call_step(mock_call *call);

static void on_call_timer(uv_timer_t *t) { call_step(t->data); }

/* Waits ms before the next step; 0 = go on now. Returns 1 when waiting. */
static int call_wait(mock_call *call, uint32_t ms) {
  if (!ms) return 0;
  uv_timer_start(&call->timer, on_call_timer, ms, 0);
  return 1;
}

/* Writes M.out; returns 0 to go on, 1 when stopped (paused, gone). */
static int call_emit(mock_call *call) {
  int r = hs_stream_write(call->req, M.out.p, M.out.len);
  if (r < 0) return 1; /* client gone: on_abort follows */
  if (r == 1) {
    call->paused = 1;
    return 1;
  }
  return 0;
}

/* The format's own headers, then the fault's; h holds 64. */
static int call_headers(mock_call *call, hs_header *h) {
  int n = call->ep->fmt->headers ? call->ep->fmt->headers(call, h) : 0;
  return headers_merge(h, n, NULL, 0, call->f);
}

static void call_cut(mock_call *call) {
  log_request(call->req, 200, "cut");
  hs_abort(call->req);
  call_end(call, 2);
}

/* The format's in-band error event, then a clean end of the response. */
static void call_stream_error(mock_call *call) {
  M.out.len = 0;
  call->ep->fmt->stream_error(call, &M.out);
  if (hs_stream_write(call->req, M.out.p, M.out.len) < 0) return; /* on_abort follows */
  log_request(call->req, 200, "stream_error");
  call_end(call, hs_stream_end(call->req) < 0 ? 1 : 0);
}

static void respond_whole(mock_call *call) {
  hs_request *req = call->req;
  const mock_fault *f = call->f;
  int status = f && f->status ? f->status : 200;
  hs_header h[64];
  int n = call_headers(call, h);
  log_request(req, status, f ? "scripted" : NULL); /* before: answering finishes req */
  if (f && f->garbage) {
    static const char junk[] = "<html><body>502 upstream garbage {\"choices\": [</body>";
    hs_respond(req, 200, "application/json", h, n, junk, sizeof junk - 1);
  } else if (f && f->body) {
    hs_respond(req, status, "application/json", h, n, f->body, strlen(f->body));
  } else {
    M.out.len = 0;
    call->ep->whole(call, &M.out);
    hs_respond(req, status, "application/json", h, n, M.out.p, M.out.len);
  }
}

static void call_finish_stream(mock_call *call) {
  hs_request *req = call->req;
  const mock_fault *f = call->f;
  M.out.len = 0;
  if (f && f->garbage) call->ep->fmt->junk(call, &M.out, MJ_FINISH, "", 0);
  else call->ep->fmt->finish(call, &M.out);
  if (hs_stream_write(req, M.out.p, M.out.len) < 0) return; /* on_abort follows */
  log_request(req, 200, f ? "scripted" : NULL);
  call_end(call, hs_stream_end(req) < 0 ? 1 : 0);
}

/* Runs the call until it must wait (timer, drain) or is done. */
static void call_step(mock_call *call) {
  const mock_fault *f = call->f;
  const mock_format *fmt = call->ep->fmt;
  while (call->req && !call->paused) {
    switch (call->phase) {
      case PH_HEADERS:
        if (f && f->status && (f->status < 200 || f->status > 299)) {
          hs_header h[64];
          int n = fmt->headers ? fmt->headers(call, h) : 0;
          log_request(call->req, f->status, "scripted");
          fmt->error(call, f, h, n);
          call_end(call, 0);
          return;
        }
        if (f && f->cut_after >= 0 && !call->stream) {
          hs_abort(call->req);
          call_end(call, 2);
          return;
        }
        if (!call->stream) {
          respond_whole(call);
          call_end(call, 0);
          return;
        }
        {
          hs_header h[64];
          int n = call_headers(call, h);
          if (hs_stream_begin(call->req, f && f->status ? f->status : 200, call->stream_type, h, n) < 0)
            return; /* on_abort follows */
        }
        call->phase = PH_FIRST;
        if (f && call_wait(call, f->ttft_ms)) return;
        break;
      case PH_FIRST:
        if (f && f->body) { /* raw stream body override */
          M.out.len = 0;
          ob_printf(&M.out, "%s", f->body);
          call->phase = PH_END;
          if (call_emit(call)) return;
          break;
        }
        M.out.len = 0;
        if (f && f->garbage) fmt->junk(call, &M.out, MJ_BEGIN, "", 0);
        else if (fmt->begin) fmt->begin(call, &M.out);
        call->phase = PH_UNITS;
        if (M.out.len) {
          if (call_emit(call)) return;
          if (f && call_wait(call, f->chunk_delay_ms)) return;
        }
        break;
      case PH_UNITS: {
        if (!unit_pending(call)) {
          call->phase = PH_FINISH;
          break;
        }
        if (f && f->cut_after >= 0 && call->chunks >= f->cut_after) {
          call_cut(call);
          return;
        }
        if (f && f->error_after >= 0 && call->chunks >= f->error_after) {
          call_stream_error(call);
          return;
        }
        mock_unit u;
        unit_next(call, &u);
        M.out.len = 0;
        if (f && f->garbage) fmt->junk(call, &M.out, MJ_UNIT, u.s, u.n);
        else fmt->unit(call, &M.out, &u);
        call->chunks++;
        if (call_emit(call)) return;
        if (f && call_wait(call, f->chunk_delay_ms)) return;
        break;
      }
      case PH_FINISH:
        if (f && f->cut_after >= 0) { /* fewer units than cut_after: still cut */
          call_cut(call);
          return;
        }
        if (f && f->error_after >= 0) {
          call_stream_error(call);
          return;
        }
        call_finish_stream(call);
        return;
      case PH_END:
        if (f && f->cut_after >= 0) {
          hs_abort(call->req);
          call_end(call, 2);
          return;
        }
        log_request(call->req, 200, "scripted");
        call_end(call, hs_stream_end(call->req) < 0 ? 1 : 0);
        return;
    }
  }
}

/* ---- entry points ------------------------------------------------------------- */

static mock_lstr last_put(const char *s, size_t n) {
  mock_lstr l = {M.last.arena.len, n, s != NULL};
  if (s) ob_add(&M.last.arena, s, n);
  return l;
}

static mock_lstr last_puts(const char *s) { return last_put(s, s ? strlen(s) : 0); }

static void record_last(hs_request *req, json_t *root, const mock_format *fmt) {
  mock_last *L = &M.last;
  char buf[512];
  L->set = 1;
  L->fmt = fmt;
  L->arena.len = 0;
  L->path = last_puts(req->path);
  L->query = last_puts(req->query ? req->query : "");
  const char *pm = fmt->path_model ? fmt->path_model(req, buf, sizeof buf) : NULL;
  json_t *model = root ? json_object_get(root, "model") : NULL;
  if (pm) L->model = last_puts(pm);
  else if (json_is_string(model)) L->model = last_put(json_string_value(model), json_string_length(model));
  else L->model = last_puts(NULL);
  L->authorization = last_puts(hs_header_get(req, "authorization"));
  L->auth = last_puts(fmt->auth(req, buf, sizeof buf));
  L->body = last_put(req->body, req->body_len);
  L->nheaders = req->nheaders;
  for (int i = 0; i < req->nheaders; i++) {
    L->hname[i] = last_puts(req->headers[i].name);
    L->hvalue[i] = last_puts(req->headers[i].value);
  }
}

static json_t *last_str(const mock_lstr *l) {
  if (!l->set) return json_null();
  const char *s = M.last.arena.p + l->off;
  json_t *v = json_stringn(s, l->len);
  return v ? v : json_stringn_nocheck(s, l->len); /* not UTF-8: kept as is */
}

json_t *last_request_json(void) {
  const mock_last *L = &M.last;
  if (!L->set) return json_null();
  json_t *o = json_object();
  json_object_set_new(o, "format", json_string(L->fmt->name));
  json_object_set_new(o, "path", last_str(&L->path));
  json_object_set_new(o, "query", last_str(&L->query));
  json_object_set_new(o, "model", last_str(&L->model));
  json_object_set_new(o, "authorization", last_str(&L->authorization));
  json_object_set_new(o, "auth", last_str(&L->auth));
  json_object_set_new(o, "body", last_str(&L->body));
  json_t *h = json_object();
  for (int i = 0; i < L->nheaders; i++) {
    const mock_lstr *n = &L->hname[i], *v = &L->hvalue[i];
    json_t *js = json_stringn(M.last.arena.p + v->off, v->len);
    if (js) json_object_setn_new(h, M.last.arena.p + n->off, n->len, js);
  }
  json_object_set_new(o, "headers", h);
  return o;
}

/* Integral reals within int64 → integers, everywhere under j. */
static void ints_restore(json_t *j) {
  const char *k;
  json_t *v;
  size_t i;
  void *tmp;
  if (json_is_object(j)) {
    json_object_foreach_safe(j, tmp, k, v) {
      double d = json_real_value(v);
      if (json_is_real(v) && d == (double)(json_int_t)d && d > -9.2e18 && d < 9.2e18)
        json_object_set_new(j, k, json_integer((json_int_t)d));
      else ints_restore(v);
    }
  } else if (json_is_array(j)) {
    json_array_foreach(j, i, v) {
      double d = json_real_value(v);
      if (json_is_real(v) && d == (double)(json_int_t)d && d > -9.2e18 && d < 9.2e18)
        json_array_set_new(j, i, json_integer((json_int_t)d));
      else ints_restore(v);
    }
  }
}

void call_handle(hs_request *req, const mock_endpoint *ep) {
  M.requests++;
  M.in_flight++;
  json_error_t jerr;
  json_t *root = req->body_len ? json_loadb(req->body, req->body_len, 0, &jerr) : NULL;
  if (!root && req->body_len && json_error_code(&jerr) == json_error_numeric_overflow) {
    /* an integer beyond int64 (tool arguments passed verbatim): every integer was read as a
     * real, so the small ones go back to integers for the format checks (max_tokens, ...) */
    root = json_loadb(req->body, req->body_len, JSON_DECODE_INT_AS_REAL, &jerr);
    ints_restore(root);
  }
  record_last(req, root, ep->fmt);
  mock_call *call = calloc(1, sizeof *call);
  if (!call) abort();
  call->req = req;
  call->ep = ep;
  call->root = root;
  call->seq = ++M.seq;
  call->open_block = -1;
  call->stream_type = ep->fmt->stream_type;
  call->prompt_tokens = req->body_len / 4 > 0 ? (int)(req->body_len / 4) : 1;
  call->created = (long)time(NULL);
  uv_timer_init(M.loop, &call->timer);
  call->timer.data = call;
  /* refusals (auth, validation) are answered inside accept and count as completed */
  if (ep->accept(call, root) < 0) {
    call_end(call, 0);
    return;
  }
  call->f = fault_next();
  const mock_fault *f = call->f;
  call->content = f && f->content ? f->content : f && f->ntools ? "" : M.hello;
  call->words = count_words(call->content);
  for (int i = 0; f && i < f->ntools; i++) call->words += f->tools[i].nfrags > 0 ? f->tools[i].nfrags : 1;
  req->user = call;
  if (f && f->hang) return; /* until the client leaves: on_abort */
  if (f && call_wait(call, f->delay_ms)) return;
  call_step(call);
}

void call_on_abort(hs_request *req) {
  mock_call *call = req->user;
  if (!call) return;
  LOG_INFO(NULL, "request_cancelled", LF_S("path", req->path), LF_I("chunks_sent", call->chunks));
  call_end(call, 1);
}

void call_on_drain(hs_request *req) {
  mock_call *call = req->user;
  if (!call) return;
  call->paused = 0;
  call_step(call);
}
