/* http_server.c — HTTP/1.1 server: libuv TCP + http-parser 2.9, keep-alive, limits,
 * slow-client timers, whole and chunked responses with write-queue backpressure.
 *
 * Per connection: one parser (paused from a request's end until its response is
 * finished, so pipelined requests wait in `pend`), one timer re-armed per phase, and
 * two reusable buffers (URL + headers, body) that survive keep-alive, so the steady
 * state allocates nothing. Reads land in one server-wide buffer; only bytes the parser
 * could not take yet are copied. Writes go out with uv_try_write; only the part the
 * socket did not take is copied into one queued block. */
#include "http_server.h"

#include <errno.h>
#include <http_parser.h>
#include <limits.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>

#include "util.h"

#define HS_READ_BUF (64 * 1024)      /* server-wide read buffer, bytes */
#define HS_PIPELINE_CAP (256 * 1024) /* unparsed bytes kept per connection before reads pause */
#define HS_LINGER_MS 1000            /* after a closing response: wait this long for the peer's FIN */
#define HS_BACKLOG 4096              /* listen backlog (the kernel caps it at somaxconn) */
#define HS_KEEP_BODY_CAP (1024 * 1024) /* body buffer kept across keep-alive requests, bytes */

enum conn_state {
  CS_IDLE,       /* between requests (or before the first) */
  CS_HEADERS,    /* request line / headers arriving */
  CS_BODY,       /* body arriving */
  CS_HANDLING,   /* request dispatched, no response bytes yet */
  CS_RESPONDING, /* streamed response begun */
  CS_CLOSING     /* shutting down / lingering / closed */
};

enum timer_kind {
  TK_NONE,
  TK_IDLE,   /* keep-alive wait (or a fresh connection's first byte): close silently */
  TK_HEADER, /* headers must complete: 408 */
  TK_BODY,   /* body must complete: 408 */
  TK_RESUME, /* 0 ms: parse pipelined bytes outside the handler's stack */
  TK_LINGER, /* after FIN: wait for the peer's FIN, then close */
  TK_SEND    /* stream paused on a client that does not read: cut it off */
};

struct hs_conn {
  uv_tcp_t tcp;          /* client socket; data = this */
  uv_timer_t timer;      /* one timer, re-armed per phase (tkind) */
  uv_shutdown_t sreq;    /* graceful close after a `Connection: close` response */
  http_parser parser;    /* paused from message end until the response is finished */
  hs_server *srv;        /* owner */
  hs_conn *prev, *next;  /* server's connection list */
  hs_request req;        /* current request (valid while req_active) */
  enum conn_state state; /* where the connection is in the request cycle */
  enum timer_kind tkind; /* what the armed timer means */
  int pending_closes;    /* handles (tcp, timer) whose close callback has not run */
  unsigned closing : 1;        /* uv_close called */
  unsigned req_active : 1;     /* dispatched and not finished by the handler */
  unsigned in_feed : 1;        /* inside conn_feed: finishing must not re-enter it */
  unsigned read_stopped : 1;   /* reads paused: pipelined bytes over the cap */
  unsigned want_drain : 1;     /* hs_stream_write returned 1; on_drain owed */
  unsigned http10 : 1;         /* request is HTTP/1.0: no chunked framing */
  unsigned head : 1;           /* HEAD request: response carries no body */
  unsigned url_done : 1;       /* URL terminated in hstore */
  unsigned last_was_value : 1; /* header callback alternation */
  unsigned headers_done : 1;   /* later header callbacks are trailers (ignored) */
  unsigned stream_ka : 1;      /* keep-alive decided at hs_stream_begin */
  unsigned stream_raw : 1;     /* streamed without chunked framing (HTTP/1.0) */
  int err_status;              /* status chosen by a parser callback that failed */
  int nhdr;                    /* headers started in hstore */
  size_t hdr_bytes;            /* request line + header bytes so far */
  uint32_t name_off[HS_MAX_HEADERS];  /* header name offsets in hstore */
  uint32_t value_off[HS_MAX_HEADERS]; /* header value offsets in hstore */
  buf_t hstore;                /* URL and header strings of the current request */
  buf_t body;                  /* de-chunked body of the current request */
  buf_t pend;                  /* received bytes not parsed yet (pipelined) */
  size_t pend_off;             /* bytes of pend already parsed */
};

struct hs_server {
  uv_loop_t *loop;       /* loop everything runs on */
  uv_tcp_t listener;     /* listening socket (when lst_state != 0) */
  int lst_state;         /* 0 none/closed, 1 open, 2 closing */
  int port;              /* bound port */
  hs_config cfg;         /* limits and timeouts */
  hs_callbacks cb;       /* handler */
  void *ud;              /* handler's pointer */
  hs_conn *conns;        /* open connections (including closing ones) */
  uint32_t nconns;       /* entries in conns */
  int draining;          /* hs_server_drain called */
  int freeing;           /* hs_server_free called */
  int done_called;       /* drain callback delivered */
  void (*drain_done)(hs_server *s, void *ud); /* drain callback */
  char *rbuf;            /* HS_READ_BUF bytes, shared by all reads */
  char *scratch;         /* response head builder */
  size_t scratch_cap;    /* bytes in scratch */
};

/* A queued write: the bytes the socket did not take at once. */
typedef struct hs_wreq {
  uv_write_t req; /* libuv request; handle is the connection's tcp */
  size_t len;     /* bytes in data */
  char data[];    /* copied payload */
} hs_wreq;

static const char hs_empty[] = "";

static void conn_close(hs_conn *c);
static void conn_shutdown(hs_conn *c);
static size_t conn_feed(hs_conn *c, const char *data, size_t len);
static void conn_resume(hs_conn *c);
static void on_timer(uv_timer_t *t);
static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b);
static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b);

/* ---- small helpers ------------------------------------------------------------ */

static const char *hs_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 206: return "Partial Content";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 417: return "Expectation Failed";
    case 422: return "Unprocessable Entity";
    case 425: return "Too Early";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 499: return "Client Closed Request";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 529: return "Site Overloaded";
    default: return "Unknown";
  }
}

static size_t put(char *p, const char *s, size_t n) {
  memcpy(p, s, n);
  return n;
}

static size_t put_u64(char *p, uint64_t v) {
  char tmp[24];
  size_t n = 0;
  do { tmp[n++] = (char)('0' + v % 10); v /= 10; } while (v);
  for (size_t i = 0; i < n; i++) p[i] = tmp[n - 1 - i];
  return n;
}

static int has_crlf(const char *s) { return strpbrk(s, "\r\n") != NULL; }

static void conn_arm(hs_conn *c, enum timer_kind k, uint64_t ms) {
  c->tkind = k;
  uv_timer_start(&c->timer, on_timer, ms, 0);
}

static void conn_disarm(hs_conn *c) {
  c->tkind = TK_NONE;
  uv_timer_stop(&c->timer);
}

/* ---- writing ------------------------------------------------------------------ */

static void on_write(uv_write_t *w, int status) {
  hs_wreq *wr = container_of(w, hs_wreq, req);
  hs_conn *c = container_of((uv_tcp_t *)w->handle, hs_conn, tcp);
  free(wr);
  if (c->closing) return; /* cancelled by uv_close; the conn lives until its close cb */
  if (status < 0) { conn_close(c); return; }
  if (c->want_drain && c->req_active && c->state == CS_RESPONDING &&
      uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) <= c->srv->cfg.write_low_water) {
    c->want_drain = 0;
    if (c->tkind == TK_SEND) conn_disarm(c);
    if (c->srv->cb.on_drain) c->srv->cb.on_drain(&c->req, c->srv->ud);
  }
}

/* Writes bufs: as much as the socket takes now, the rest copied into one queued
 * block (callers' buffers may go away). Returns 0 or a negative libuv error. */
static int conn_writev(hs_conn *c, uv_buf_t *bufs, unsigned n) {
  uv_stream_t *st = (uv_stream_t *)&c->tcp;
  size_t total = 0, done = 0;
  for (unsigned i = 0; i < n; i++) total += bufs[i].len;
  if (total == 0) return 0;
  if (uv_stream_get_write_queue_size(st) == 0) {
    int r = uv_try_write(st, bufs, n);
    if (r < 0 && r != UV_EAGAIN) return r;
    if (r > 0) done = (size_t)r;
    if (done == total) return 0;
  }
  size_t rest = total - done;
  hs_wreq *wr = malloc(sizeof *wr + rest);
  if (!wr) return UV_ENOMEM;
  wr->len = rest;
  size_t skip = done, off = 0;
  for (unsigned i = 0; i < n; i++) {
    size_t l = bufs[i].len;
    if (skip >= l) { skip -= l; continue; }
    memcpy(wr->data + off, bufs[i].base + skip, l - skip);
    off += l - skip;
    skip = 0;
  }
  uv_buf_t b = uv_buf_init(wr->data, (unsigned)rest);
  int r = uv_write(&wr->req, st, &b, 1, on_write);
  if (r < 0) { free(wr); return r; }
  return 0;
}

/* Builds the response head in the server's scratch buffer. clen >= 0: Content-Length;
 * -1: chunked; -2: neither (close-delimited). Returns the head's length, 0 on ENOMEM. */
static size_t build_head(hs_conn *c, int status, const char *ctype, const hs_header *extra,
                         int nextra, int64_t clen, int keep_alive) {
  hs_server *s = c->srv;
  const char *reason = hs_reason(status);
  size_t need = 160 + strlen(reason) + (ctype ? strlen(ctype) : 0);
  for (int i = 0; i < nextra; i++)
    if (extra[i].name && extra[i].value) need += strlen(extra[i].name) + strlen(extra[i].value) + 4;
  if (need > s->scratch_cap) {
    size_t cap = s->scratch_cap ? s->scratch_cap : 1024;
    while (cap < need) cap *= 2;
    char *p = realloc(s->scratch, cap);
    if (!p) return 0;
    s->scratch = p;
    s->scratch_cap = cap;
  }
  char *p = s->scratch;
  size_t o = put(p, "HTTP/1.1 ", 9);
  if (status < 100 || status > 999) status = 500;
  p[o++] = (char)('0' + status / 100);
  p[o++] = (char)('0' + status / 10 % 10);
  p[o++] = (char)('0' + status % 10);
  p[o++] = ' ';
  o += put(p + o, reason, strlen(reason));
  o += put(p + o, "\r\n", 2);
  if (ctype && *ctype && !has_crlf(ctype)) {
    o += put(p + o, "Content-Type: ", 14);
    o += put(p + o, ctype, strlen(ctype));
    o += put(p + o, "\r\n", 2);
  }
  for (int i = 0; i < nextra; i++) {
    const char *n = extra[i].name, *v = extra[i].value;
    if (!n || !v || !*n || has_crlf(n) || has_crlf(v)) continue; /* no header injection */
    o += put(p + o, n, strlen(n));
    o += put(p + o, ": ", 2);
    o += put(p + o, v, strlen(v));
    o += put(p + o, "\r\n", 2);
  }
  if (clen >= 0) {
    o += put(p + o, "Content-Length: ", 16);
    o += put_u64(p + o, (uint64_t)clen);
    o += put(p + o, "\r\n", 2);
  } else if (clen == -1) {
    o += put(p + o, "Transfer-Encoding: chunked\r\n", 28);
  }
  if (!keep_alive) o += put(p + o, "Connection: close\r\n", 19);
  else if (c->http10) o += put(p + o, "Connection: keep-alive\r\n", 24);
  o += put(p + o, "\r\n", 2);
  return o;
}

/* The handler finished the request (r: result of the last write). */
static void conn_finish(hs_conn *c, int keep_alive, int r) {
  c->req_active = 0;
  c->want_drain = 0;
  if (c->closing) return;
  if (c->body.cap > HS_KEEP_BODY_CAP) buf_free(&c->body); /* one huge body must not pin memory */
  if (r < 0) { conn_close(c); return; }
  if (!keep_alive || c->srv->draining) { conn_shutdown(c); return; }
  c->state = CS_IDLE;
  http_parser_pause(&c->parser, 0);
  if (c->in_feed) conn_arm(c, TK_IDLE, c->srv->cfg.idle_timeout_ms); /* feed loop goes on */
  else if (c->pend.len > c->pend_off) conn_arm(c, TK_RESUME, 0);  /* outside the handler's stack */
  else conn_arm(c, TK_IDLE, c->srv->cfg.idle_timeout_ms);
}

/* Server-made error: OpenAI-shaped JSON, Connection: close, then shutdown. */
static void conn_fail_status(hs_conn *c, int status) {
  const char *msg, *code;
  switch (status) {
    case 405: msg = "Method not allowed"; code = "method_not_allowed"; break;
    case 408: msg = "Request timed out: the client sent it too slowly"; code = "request_timeout"; break;
    case 413: msg = "Request body too large"; code = "request_too_large"; break;
    case 431: msg = "Request header fields too large or too many"; code = "request_header_fields_too_large"; break;
    case 503: msg = "Server is out of resources"; code = "server_busy"; break;
    default: status = 400; msg = "Malformed HTTP request"; code = "bad_request"; break;
  }
  char body[256];
  int bl = snprintf(body, sizeof body,
                    "{\"error\":{\"message\":\"%s\",\"type\":\"invalid_request_error\",\"code\":\"%s\"}}",
                    msg, code);
  c->http10 = 0;
  size_t hl = build_head(c, status, "application/json", NULL, 0, bl, 0);
  if (hl == 0) { conn_close(c); return; }
  uv_buf_t b[2] = {uv_buf_init(c->srv->scratch, (unsigned)hl), uv_buf_init(body, (unsigned)bl)};
  if (conn_writev(c, b, 2) < 0) { conn_close(c); return; }
  conn_shutdown(c);
}

/* ---- closing ------------------------------------------------------------------ */

static void server_maybe_finish(hs_server *s) {
  if (s->nconns || s->lst_state) return;
  if (s->freeing) {
    free(s->rbuf);
    free(s->scratch);
    free(s);
  } else if (s->draining && s->drain_done && !s->done_called) {
    s->done_called = 1;
    s->drain_done(s, s->ud); /* may free s: touch nothing after */
  }
}

static void on_conn_close(uv_handle_t *h) {
  hs_conn *c = h->data;
  if (--c->pending_closes > 0) return;
  hs_server *s = c->srv;
  if (c->req_active) {
    c->req_active = 0; /* API calls from on_abort become no-ops */
    if (s->cb.on_abort) s->cb.on_abort(&c->req, s->ud);
  }
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  buf_free(&c->hstore);
  buf_free(&c->body);
  buf_free(&c->pend);
  free(c);
  server_maybe_finish(s);
}

/* Closes at once. An unfinished request gets on_abort from the close callback (never
 * from inside an API call the handler is making). */
static void conn_close(hs_conn *c) {
  if (c->closing) return;
  c->closing = 1;
  c->state = CS_CLOSING;
  c->pending_closes = 2;
  uv_close((uv_handle_t *)&c->tcp, on_conn_close);
  uv_close((uv_handle_t *)&c->timer, on_conn_close);
}

static void on_shutdown(uv_shutdown_t *sr, int status) {
  hs_conn *c = container_of(sr, hs_conn, sreq);
  if (c->closing) return;
  if (status < 0) { conn_close(c); return; }
  conn_arm(c, TK_LINGER, HS_LINGER_MS); /* discard input until FIN, so no RST eats the reply */
}

/* Flushes queued writes, sends FIN, then lingers briefly reading and discarding. */
static void conn_shutdown(hs_conn *c) {
  if (c->closing || c->state == CS_CLOSING) return;
  c->state = CS_CLOSING;
  /* bound the flush: a client that never reads must not pin the connection */
  conn_arm(c, TK_LINGER, c->srv->cfg.idle_timeout_ms);
  if (c->read_stopped) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, on_shutdown) < 0) conn_close(c);
}

/* ---- parser callbacks --------------------------------------------------------- */

static int hdr_count(hs_conn *c, size_t len) {
  c->hdr_bytes += len;
  if (c->hdr_bytes > c->srv->cfg.max_header_bytes) {
    c->err_status = 431;
    return -1;
  }
  return 0;
}

static int store_nul(hs_conn *c) { return buf_append(&c->hstore, "", 1); }

/* Terminates the URL or the previous header before a new header or the end. */
static int header_close_last(hs_conn *c) {
  if (!c->url_done) {
    c->url_done = 1;
    return store_nul(c);
  }
  if (c->nhdr == 0) return 0;
  if (!c->last_was_value) { /* name without a value callback */
    if (store_nul(c)) return -1;
    c->value_off[c->nhdr - 1] = (uint32_t)c->hstore.len;
    c->last_was_value = 1;
  } else { /* trim trailing whitespace of the value */
    size_t start = c->value_off[c->nhdr - 1];
    while (c->hstore.len > start &&
           (c->hstore.data[c->hstore.len - 1] == ' ' || c->hstore.data[c->hstore.len - 1] == '\t'))
      c->hstore.len--;
  }
  return store_nul(c);
}

static int on_message_begin(http_parser *p) {
  hs_conn *c = p->data;
  c->state = CS_HEADERS;
  c->hstore.len = 0;
  c->body.len = 0;
  c->nhdr = 0;
  c->hdr_bytes = 0;
  c->err_status = 0;
  c->url_done = 0;
  c->last_was_value = 0;
  c->headers_done = 0;
  c->req.user = NULL;
  c->req.nheaders = 0;
  c->req.start_us = util_now_us();
  conn_arm(c, TK_HEADER, c->srv->cfg.header_timeout_ms);
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  hs_conn *c = p->data;
  if (hdr_count(c, len)) return -1;
  return buf_append(&c->hstore, at, len) ? -1 : 0;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  hs_conn *c = p->data;
  if (hdr_count(c, len + 4)) return -1; /* ": " and CRLF */
  if (c->headers_done) return 0;         /* trailer: counted, not kept */
  if (c->nhdr == 0 || c->last_was_value) {
    if (header_close_last(c)) return -1;
    if (c->nhdr >= HS_MAX_HEADERS) {
      c->err_status = 431;
      return -1;
    }
    c->name_off[c->nhdr++] = (uint32_t)c->hstore.len;
    c->last_was_value = 0;
  }
  size_t o = c->hstore.len;
  if (buf_append(&c->hstore, at, len)) return -1;
  char *d = c->hstore.data + o;
  for (size_t i = 0; i < len; i++)
    if (d[i] >= 'A' && d[i] <= 'Z') d[i] = (char)(d[i] + 32);
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  hs_conn *c = p->data;
  if (hdr_count(c, len)) return -1;
  if (c->headers_done) return 0;
  if (!c->last_was_value) {
    if (store_nul(c)) return -1;
    c->value_off[c->nhdr - 1] = (uint32_t)c->hstore.len;
    c->last_was_value = 1;
  }
  return buf_append(&c->hstore, at, len) ? -1 : 0;
}

/* Points path/query/headers into hstore (stable from here on: trailers are dropped). */
static void request_fix_pointers(hs_conn *c) {
  hs_request *r = &c->req;
  char *base = c->hstore.data;
  char *url = base;
  char *hash = strchr(url, '#');
  if (hash) *hash = '\0';
  char *q = strchr(url, '?');
  if (q) {
    *q = '\0';
    r->query = q + 1;
  } else {
    r->query = hs_empty;
  }
  r->path = url;
  if (url[0] != '/' && url[0] != '*') { /* absolute-form: http://host/path */
    char *scheme = strstr(url, "://");
    char *slash = scheme ? strchr(scheme + 3, '/') : NULL;
    r->path = slash ? slash : "/";
  }
  for (int i = 0; i < c->nhdr; i++) {
    r->headers[i].name = base + c->name_off[i];
    r->headers[i].value = base + c->value_off[i];
  }
  r->nheaders = c->nhdr;
}

static const char hs_continue[] = "HTTP/1.1 100 Continue\r\n\r\n";

static int on_headers_complete(http_parser *p) {
  hs_conn *c = p->data;
  hs_server *s = c->srv;
  if (header_close_last(c)) return -1;
  c->headers_done = 1;
  if (p->method == HTTP_CONNECT) {
    c->err_status = 405;
    return -1;
  }
  uint64_t cl = p->content_length;
  int has_cl = cl != ULLONG_MAX;
  if (has_cl && cl > s->cfg.max_body_bytes) {
    c->err_status = 413;
    return -1;
  }
  request_fix_pointers(c);
  int has_body = (p->flags & F_CHUNKED) || (has_cl && cl > 0);
  if (has_body) {
    const char *ex = hs_header_get(&c->req, "expect");
    if (ex && strcasecmp(ex, "100-continue") == 0 && p->http_minor >= 1) {
      uv_buf_t b = uv_buf_init((char *)hs_continue, sizeof hs_continue - 1);
      if (conn_writev(c, &b, 1) < 0) return -1;
    }
    if (has_cl && cl + 1 > c->body.cap) { /* one allocation for the whole body */
      char *np = realloc(c->body.data, cl + 1);
      if (!np) return -1;
      c->body.data = np;
      c->body.cap = cl + 1;
    }
    c->state = CS_BODY;
    conn_arm(c, TK_BODY, s->cfg.body_timeout_ms);
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  hs_conn *c = p->data;
  if (c->body.len + len > c->srv->cfg.max_body_bytes) {
    c->err_status = 413;
    return -1;
  }
  return buf_append(&c->body, at, len) ? -1 : 0;
}

static int on_message_complete(http_parser *p) {
  hs_conn *c = p->data;
  hs_request *r = &c->req;
  if (c->body.len) {
    r->body = buf_cstr(&c->body);
    if (!r->body) return -1;
    r->body_len = c->body.len;
  } else {
    r->body = hs_empty;
    r->body_len = 0;
  }
  r->method = p->method;
  r->method_str = http_method_str((enum http_method)p->method);
  c->http10 = p->http_major < 1 || (p->http_major == 1 && p->http_minor == 0);
  c->head = p->method == HTTP_HEAD;
  r->keep_alive = http_should_keep_alive(p) && !c->srv->draining;
  conn_disarm(c);
  c->state = CS_HANDLING;
  http_parser_pause(p, 1); /* one request at a time; the rest waits in pend */
  return 0;
}

static const http_parser_settings hs_settings = {
    .on_message_begin = on_message_begin,
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

/* ---- reading and dispatch ----------------------------------------------------- */

/* Parses data until a request is in flight, the data ends or the connection fails.
 * Dispatches complete requests. Returns bytes consumed. */
static size_t conn_feed(hs_conn *c, const char *data, size_t len) {
  hs_server *s = c->srv;
  size_t off = 0;
  c->in_feed = 1;
  while (off < len && !c->closing && c->state <= CS_BODY) {
    size_t n = http_parser_execute(&c->parser, &hs_settings, data + off, len - off);
    off += n;
    enum http_errno e = HTTP_PARSER_ERRNO(&c->parser);
    if (e == HPE_PAUSED) { /* a whole request (upgrade requests too: answered in HTTP/1.1) */
      c->req_active = 1;
      s->cb.on_request(&c->req, s->ud);
      continue; /* if answered synchronously, state is CS_IDLE again */
    }
    if (e != HPE_OK) {
      int st = c->err_status ? c->err_status : e == HPE_HEADER_OVERFLOW ? 431 : 400;
      conn_fail_status(c, st);
      break;
    }
    if (n == 0) break; /* defensive: no progress */
  }
  c->in_feed = 0;
  return off;
}

/* Parses pipelined bytes kept while the previous request was in flight. */
static void conn_resume(hs_conn *c) {
  if (c->closing || c->state != CS_IDLE) return;
  if (c->pend.len > c->pend_off) {
    size_t used = conn_feed(c, c->pend.data + c->pend_off, c->pend.len - c->pend_off);
    if (c->closing) return;
    c->pend_off += used;
    if (c->pend_off >= c->pend.len) c->pend.len = c->pend_off = 0;
  }
  if (c->state == CS_IDLE && c->tkind == TK_RESUME) conn_arm(c, TK_IDLE, c->srv->cfg.idle_timeout_ms);
  if (c->read_stopped && c->state != CS_CLOSING && c->pend.len - c->pend_off < HS_PIPELINE_CAP) {
    c->read_stopped = 0;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  }
}

static int pend_keep(hs_conn *c, const char *data, size_t len) {
  if (c->pend_off && c->pend_off == c->pend.len) c->pend.len = c->pend_off = 0;
  if (c->pend_off > 0) { /* compact before growing */
    memmove(c->pend.data, c->pend.data + c->pend_off, c->pend.len - c->pend_off);
    c->pend.len -= c->pend_off;
    c->pend_off = 0;
  }
  return buf_append(&c->pend, data, len);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *b) {
  hs_conn *c = h->data;
  b->base = c->srv->rbuf;
  b->len = HS_READ_BUF;
}

static void on_read(uv_stream_t *st, ssize_t n, const uv_buf_t *b) {
  hs_conn *c = st->data;
  if (n == 0) return;
  if (n < 0) { conn_close(c); return; } /* EOF or reset: the client left */
  if (c->closing || c->state == CS_CLOSING) return; /* lingering: discard */
  if (c->state >= CS_HANDLING || c->pend.len > c->pend_off) {
    if (pend_keep(c, b->base, (size_t)n)) { conn_close(c); return; }
    if (c->pend.len - c->pend_off > HS_PIPELINE_CAP) {
      uv_read_stop(st);
      c->read_stopped = 1;
    }
    if (c->state == CS_IDLE) conn_resume(c);
    return;
  }
  size_t used = conn_feed(c, b->base, (size_t)n);
  if (used < (size_t)n && !c->closing && c->state >= CS_HANDLING && c->state != CS_CLOSING) {
    if (pend_keep(c, b->base + used, (size_t)n - used)) conn_close(c);
  }
}

static void on_timer(uv_timer_t *t) {
  hs_conn *c = t->data;
  if (c->closing) return;
  switch (c->tkind) {
    case TK_IDLE:
    case TK_LINGER:
    case TK_SEND: conn_close(c); break; /* TK_SEND: on_abort follows */
    case TK_HEADER:
    case TK_BODY:
      if (!c->req_active && (c->state == CS_HEADERS || c->state == CS_BODY)) conn_fail_status(c, 408);
      break;
    case TK_RESUME: conn_resume(c); break;
    case TK_NONE: break;
  }
}

static void on_connection(uv_stream_t *l, int status) {
  hs_server *s = l->data;
  if (status < 0) return;
  hs_conn *c = calloc(1, sizeof *c);
  if (!c) return;
  uv_tcp_init(s->loop, &c->tcp);
  uv_timer_init(s->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->srv = s;
  c->req.conn = c;
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0 || s->nconns > s->cfg.max_connections ||
      s->draining || s->freeing) {
    conn_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  http_parser_init(&c->parser, HTTP_REQUEST);
  c->parser.data = c;
  conn_arm(c, TK_IDLE, s->cfg.header_timeout_ms); /* a fresh connection must start talking */
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) < 0) conn_close(c);
}

/* ---- server ------------------------------------------------------------------- */

void hs_config_default(hs_config *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->max_header_bytes = 16 * 1024;
  cfg->max_body_bytes = 8 * 1024 * 1024;
  cfg->header_timeout_ms = 10000;
  cfg->body_timeout_ms = 30000;
  cfg->idle_timeout_ms = 60000;
  cfg->write_high_water = 256 * 1024;
  cfg->write_low_water = 64 * 1024;
  cfg->max_connections = 65536;
  cfg->reuse_port = 0;
}

int hs_server_new(hs_server **out, uv_loop_t *loop, const hs_config *cfg,
                  const hs_callbacks *cb, void *ud) {
  *out = NULL;
  if (!loop || !cb || !cb->on_request) return UV_EINVAL;
  hs_server *s = calloc(1, sizeof *s);
  if (!s) return UV_ENOMEM;
  hs_config d;
  hs_config_default(&d);
  if (cfg) { /* zero fields take the defaults */
    s->cfg = *cfg;
    if (!s->cfg.max_header_bytes) s->cfg.max_header_bytes = d.max_header_bytes;
    if (!s->cfg.max_body_bytes) s->cfg.max_body_bytes = d.max_body_bytes;
    if (!s->cfg.header_timeout_ms) s->cfg.header_timeout_ms = d.header_timeout_ms;
    if (!s->cfg.body_timeout_ms) s->cfg.body_timeout_ms = d.body_timeout_ms;
    if (!s->cfg.idle_timeout_ms) s->cfg.idle_timeout_ms = d.idle_timeout_ms;
    if (!s->cfg.write_high_water) s->cfg.write_high_water = d.write_high_water;
    if (!s->cfg.write_low_water) s->cfg.write_low_water = d.write_low_water;
    if (!s->cfg.max_connections) s->cfg.max_connections = d.max_connections;
  } else {
    s->cfg = d;
  }
  if (s->cfg.write_low_water > s->cfg.write_high_water) s->cfg.write_low_water = s->cfg.write_high_water;
  s->rbuf = malloc(HS_READ_BUF);
  if (!s->rbuf) {
    free(s);
    return UV_ENOMEM;
  }
  s->loop = loop;
  s->cb = *cb;
  s->ud = ud;
  *out = s;
  return 0;
}

static void on_listener_close(uv_handle_t *h) {
  hs_server *s = h->data;
  s->lst_state = 0;
  server_maybe_finish(s);
}

static void listener_close(hs_server *s) {
  if (s->lst_state != 1) return;
  s->lst_state = 2;
  uv_close((uv_handle_t *)&s->listener, on_listener_close);
}

static int resolve(const char *host, int port, struct sockaddr_storage *ss) {
  memset(ss, 0, sizeof *ss);
  if (!host || !*host) host = "0.0.0.0";
  if (strcmp(host, "localhost") == 0) host = "127.0.0.1";
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)ss) == 0) return 0;
  if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)ss) == 0) return 0;
  return UV_EINVAL;
}

int hs_server_listen(hs_server *s, const char *host, int port) {
  struct sockaddr_storage ss;
  if (s->lst_state) return UV_EBUSY;
  if (port < 0 || port > 65535) return UV_EINVAL;
  int r = resolve(host, port, &ss);
  if (r) return r;
  r = uv_tcp_init_ex(s->loop, &s->listener, ss.ss_family);
  if (r) return r;
  s->listener.data = s;
  s->lst_state = 1;
  if (s->cfg.reuse_port) {
    uv_os_fd_t fd;
    int one = 1;
    r = uv_fileno((uv_handle_t *)&s->listener, &fd);
    if (r == 0 && setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0) r = -errno;
    if (r) goto fail;
  }
  r = uv_tcp_bind(&s->listener, (const struct sockaddr *)&ss, 0);
  if (r) goto fail;
  r = uv_listen((uv_stream_t *)&s->listener, HS_BACKLOG, on_connection); /* EADDRINUSE here */
  if (r) goto fail;
  struct sockaddr_storage got;
  int len = sizeof got;
  r = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&got, &len);
  if (r) goto fail;
  s->port = got.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&got)->sin6_port)
                                      : ntohs(((struct sockaddr_in *)&got)->sin_port);
  return 0;
fail:
  listener_close(s);
  return r;
}

int hs_server_port(const hs_server *s) { return s->port; }

uint32_t hs_server_open_connections(const hs_server *s) { return s->nconns; }

void hs_server_drain(hs_server *s, void (*done)(hs_server *s, void *ud)) {
  s->draining = 1;
  s->drain_done = done;
  listener_close(s);
  for (hs_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (!c->closing && c->state == CS_IDLE && !c->req_active) conn_close(c);
  }
  server_maybe_finish(s);
}

void hs_server_free(hs_server *s) {
  if (!s) return;
  s->freeing = 1;
  listener_close(s);
  for (hs_conn *c = s->conns; c; c = c->next) conn_close(c);
  server_maybe_finish(s);
}

/* ---- requests and responses --------------------------------------------------- */

const char *hs_header_get(const hs_request *req, const char *name) {
  for (int i = 0; i < req->nheaders; i++)
    if (strcasecmp(req->headers[i].name, name) == 0) return req->headers[i].value;
  return NULL;
}

size_t hs_write_queue_size(const hs_request *req) {
  return uv_stream_get_write_queue_size((const uv_stream_t *)&req->conn->tcp);
}

int hs_respond(hs_request *req, int status, const char *content_type,
               const hs_header *extra, int nextra, const char *body, size_t len) {
  hs_conn *c = req->conn;
  if (!c->req_active) return UV_EINVAL;
  if (c->closing || c->state == CS_CLOSING) {
    c->req_active = 0; /* finished: no on_abort follows */
    return UV_ECONNRESET;
  }
  if (c->state != CS_HANDLING) return UV_EINVAL;
  int ka = req->keep_alive && !c->srv->draining;
  size_t hl = build_head(c, status, content_type, extra, nextra, (int64_t)len, ka);
  int r = UV_ENOMEM;
  if (hl) {
    uv_buf_t b[2] = {uv_buf_init(c->srv->scratch, (unsigned)hl),
                     uv_buf_init((char *)(body ? body : ""), (unsigned)len)};
    r = conn_writev(c, b, (c->head || !body || !len) ? 1 : 2);
  }
  conn_finish(c, ka, r);
  return r;
}

int hs_stream_begin(hs_request *req, int status, const char *content_type,
                    const hs_header *extra, int nextra) {
  hs_conn *c = req->conn;
  if (!c->req_active || c->state == CS_RESPONDING) return UV_EINVAL;
  if (c->closing || c->state == CS_CLOSING) return UV_ECONNRESET;
  int ka = req->keep_alive && !c->srv->draining && !c->http10;
  c->stream_raw = c->http10; /* HTTP/1.0 has no chunked framing: close-delimited */
  c->stream_ka = ka;
  size_t hl = build_head(c, status, content_type, extra, nextra, c->stream_raw ? -2 : -1, ka);
  if (!hl) return UV_ENOMEM;
  c->state = CS_RESPONDING;
  uv_buf_t b = uv_buf_init(c->srv->scratch, (unsigned)hl);
  int r = conn_writev(c, &b, 1);
  if (r < 0) conn_close(c); /* on_abort follows from the loop */
  return r;
}

int hs_stream_write(hs_request *req, const char *data, size_t len) {
  hs_conn *c = req->conn;
  if (!c->req_active) return UV_EINVAL;
  if (c->closing || c->state == CS_CLOSING) return UV_ECONNRESET;
  if (c->state != CS_RESPONDING) return UV_EINVAL;
  if (len && !c->head) {
    char size[20];
    size_t sl = 0;
    static const char hex[] = "0123456789abcdef";
    char tmp[16];
    size_t tn = 0;
    for (size_t v = len; v; v >>= 4) tmp[tn++] = hex[v & 15];
    while (tn) size[sl++] = tmp[--tn];
    size[sl++] = '\r';
    size[sl++] = '\n';
    uv_buf_t b[3] = {uv_buf_init(size, (unsigned)sl), uv_buf_init((char *)data, (unsigned)len),
                     uv_buf_init((char *)"\r\n", 2)};
    int r = c->stream_raw ? conn_writev(c, &b[1], 1) : conn_writev(c, b, 3);
    if (r < 0) {
      conn_close(c);
      return r;
    }
  }
  if (uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) > c->srv->cfg.write_high_water) {
    c->want_drain = 1;
    /* a client that stops reading for idle_timeout is cut off (on_abort) */
    if (c->tkind != TK_SEND) conn_arm(c, TK_SEND, c->srv->cfg.idle_timeout_ms);
    return 1;
  }
  return 0;
}

int hs_stream_end(hs_request *req) {
  hs_conn *c = req->conn;
  if (!c->req_active) return UV_EINVAL;
  if (c->closing || c->state == CS_CLOSING) {
    c->req_active = 0;
    return UV_ECONNRESET;
  }
  if (c->state != CS_RESPONDING) return UV_EINVAL;
  int r = 0;
  if (!c->stream_raw && !c->head) {
    uv_buf_t b = uv_buf_init((char *)"0\r\n\r\n", 5);
    r = conn_writev(c, &b, 1);
  }
  conn_finish(c, c->stream_ka, r);
  return r;
}

void hs_abort(hs_request *req) {
  hs_conn *c = req->conn;
  if (!c->req_active) return;
  c->req_active = 0;
  conn_close(c);
}
