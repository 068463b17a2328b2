/* test_http_server.c — common/http_server.c against real loopback sockets.
 *
 * One thread: the server runs on a libuv loop that the test steps with UV_RUN_NOWAIT
 * while raw non-blocking client sockets send bytes and collect answers, so timing
 * (slow clients, timeouts, a client that does not read) is under the test's control. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include "http_server.h"
#include "util.h"

#define CHECK(cond)                                                                   \
  do {                                                                                \
    if (!(cond)) {                                                                    \
      fprintf(stderr, "%s:%d: %s: check failed: %s\n", __FILE__, __LINE__, cur_test, #cond); \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

static const char *cur_test = "";
static uv_loop_t *loop;
static hs_server *srv;
static int port;

/* ---- server side: a handler driven by the path -------------------------------- */

static hs_request *held;     /* request kept unanswered (/hold, /big) */
static int aborts;           /* on_abort calls */
static int drains;           /* on_drain calls */
static int requests;         /* on_request calls */
static int drain_done;       /* hs_server_drain callback ran */
static uv_timer_t late_timer; /* /late answers from a timer */
static hs_request *late_req;

static void respond_echo(hs_request *req) {
  char out[4096];
  const char *xt = hs_header_get(req, "X-TEST");
  int n = snprintf(out, sizeof out, "%s %s q=%s x=%s len=%zu body=%s", req->method_str, req->path,
                   req->query, xt ? xt : "-", req->body_len, req->body);
  hs_header extra[] = {{"X-Echo", "1"}};
  hs_respond(req, 200, "text/plain", extra, 1, out, (size_t)n);
}

static void on_late(uv_timer_t *t) {
  hs_request *r = late_req;
  late_req = NULL;
  if (r) respond_echo(r);
}

static void on_request(hs_request *req, void *ud) {
  requests++;
  if (strcmp(req->path, "/hold") == 0 || strcmp(req->path, "/big") == 0) {
    held = req;
    if (strcmp(req->path, "/big") == 0) CHECK(hs_stream_begin(req, 200, "application/octet-stream", NULL, 0) == 0);
    return;
  }
  if (strcmp(req->path, "/late") == 0) {
    late_req = req;
    uv_timer_start(&late_timer, on_late, 30, 0);
    return;
  }
  if (strcmp(req->path, "/stream") == 0) {
    CHECK(hs_stream_begin(req, 200, "text/event-stream", NULL, 0) == 0);
    CHECK(hs_stream_write(req, "hello", 5) == 0);
    CHECK(hs_stream_write(req, "", 0) == 0); /* an empty write must not end the stream */
    CHECK(hs_stream_write(req, "data: 0123456789abcdef\n\n", 24) == 0);
    CHECK(hs_stream_end(req) == 0);
    return;
  }
  respond_echo(req);
}

static void on_abort(hs_request *req, void *ud) {
  aborts++;
  if (req == held) held = NULL;
  if (req == late_req) late_req = NULL;
}

static void on_drain(hs_request *req, void *ud) { drains++; }

/* Frees the server from inside its own drain callback, as the worker does. */
static void on_drain_done(hs_server *s, void *ud) {
  drain_done = 1;
  CHECK(s == srv);
  hs_server_free(s);
  srv = NULL;
}

static void server_start(const hs_config *cfg) {
  hs_callbacks cb = {.on_request = on_request, .on_abort = on_abort, .on_drain = on_drain};
  held = late_req = NULL;
  aborts = drains = requests = drain_done = 0;
  CHECK(hs_server_new(&srv, loop, cfg, &cb, NULL) == 0);
  CHECK(hs_server_listen(srv, "127.0.0.1", 0) == 0);
  port = hs_server_port(srv);
  CHECK(port > 0);
}

static void step(int ms) {
  uint64_t end = util_now_ms() + (uint64_t)ms;
  do {
    uv_run(loop, UV_RUN_NOWAIT);
    usleep(500);
  } while (util_now_ms() < end);
}

static void server_stop(void) {
  if (srv) hs_server_free(srv);
  srv = NULL;
  for (int i = 0; i < 50; i++) uv_run(loop, UV_RUN_NOWAIT); /* close callbacks */
}

/* ---- client side ---------------------------------------------------------------- */

typedef struct cli {
  int fd;        /* non-blocking socket */
  char *buf;     /* received bytes */
  size_t len;    /* bytes in buf */
  size_t cap;    /* allocated */
  int eof;       /* peer closed (FIN or RST) */
} cli;

static cli cli_open_rcvbuf(int rcvbuf) {
  cli c = {0};
  c.fd = socket(AF_INET, SOCK_STREAM, 0);
  CHECK(c.fd >= 0);
  if (rcvbuf) setsockopt(c.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(c.fd, (struct sockaddr *)&a, sizeof a) == 0);
  int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  fcntl(c.fd, F_SETFL, fcntl(c.fd, F_GETFL) | O_NONBLOCK);
  c.cap = 1 << 16;
  c.buf = malloc(c.cap);
  c.buf[0] = '\0';
  return c;
}

static cli cli_open(void) { return cli_open_rcvbuf(0); }

static void cli_close(cli *c) {
  if (c->fd >= 0) close(c->fd);
  c->fd = -1;
  free(c->buf);
  c->buf = NULL;
}

static void cli_send_n(cli *c, const char *s, size_t n) {
  size_t off = 0;
  uint64_t end = util_now_ms() + 3000;
  while (off < n) {
    ssize_t w = send(c->fd, s + off, n - off, MSG_NOSIGNAL);
    if (w > 0) off += (size_t)w;
    else if (w < 0 && errno != EAGAIN) break;
    else step(1);
    CHECK(util_now_ms() < end);
  }
}

static void cli_send(cli *c, const char *s) { cli_send_n(c, s, strlen(s)); }

/* Reads what is there (no waiting). */
static void cli_pump(cli *c) {
  for (;;) {
    if (c->cap - c->len < 4096) {
      c->cap *= 2;
      c->buf = realloc(c->buf, c->cap);
    }
    ssize_t n = recv(c->fd, c->buf + c->len, c->cap - c->len - 1, 0);
    if (n > 0) {
      c->len += (size_t)n;
      c->buf[c->len] = '\0';
      continue;
    }
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) c->eof = 1;
    break;
  }
  if (c->buf) c->buf[c->len] = '\0';
}

typedef struct resp {
  int status;        /* status code */
  char head[4096];   /* status line + headers */
  char body[65536];  /* decoded body (truncated if bigger) */
  size_t body_len;   /* decoded bytes (full count) */
  size_t raw_len;    /* bytes of the message on the wire */
  int chunked;       /* Transfer-Encoding: chunked */
} resp;

/* Parses one response at the start of b; returns 1 when complete. */
static int parse_resp(const char *b, size_t len, resp *r) {
  const char *end = memmem(b, len, "\r\n\r\n", 4);
  if (!end) return 0;
  size_t hl = (size_t)(end - b) + 4;
  memset(r, 0, sizeof *r);
  memcpy(r->head, b, hl < sizeof r->head - 1 ? hl : sizeof r->head - 1);
  r->status = atoi(b + 9);
  const char *cl = strcasestr(r->head, "\r\ncontent-length:");
  r->chunked = strcasestr(r->head, "\r\ntransfer-encoding: chunked") != NULL;
  if (cl) {
    size_t n = strtoul(cl + 17, NULL, 10);
    if (len < hl + n) return 0;
    memcpy(r->body, b + hl, n < sizeof r->body - 1 ? n : sizeof r->body - 1);
    r->body_len = n;
    r->raw_len = hl + n;
    return 1;
  }
  if (!r->chunked) return 0; /* close-delimited: not used by these tests */
  size_t off = hl;
  for (;;) {
    const char *le = memmem(b + off, len - off, "\r\n", 2);
    if (!le) return 0;
    size_t n = strtoul(b + off, NULL, 16);
    off = (size_t)(le - b) + 2;
    if (n == 0) {
      if (len < off + 2) return 0;
      r->raw_len = off + 2;
      return 1;
    }
    if (len < off + n + 2) return 0;
    if (r->body_len + n < sizeof r->body) memcpy(r->body + r->body_len, b + off, n);
    r->body_len += n;
    off += n + 2;
  }
}

/* Steps the loop until the client holds `count` complete responses or EOF. */
static int cli_wait_responses(cli *c, int count, resp *out, int timeout_ms) {
  uint64_t end = util_now_ms() + (uint64_t)timeout_ms;
  for (;;) {
    step(1);
    cli_pump(c);
    size_t off = 0;
    int got = 0;
    resp r;
    while (got < count && parse_resp(c->buf + off, c->len - off, &r)) {
      if (out) out[got] = r;
      off += r.raw_len;
      got++;
    }
    if (got == count) return got;
    if (c->eof || util_now_ms() > end) return got;
  }
}

static int cli_wait_eof(cli *c, int timeout_ms) {
  uint64_t end = util_now_ms() + (uint64_t)timeout_ms;
  while (!c->eof && util_now_ms() < end) {
    step(2);
    cli_pump(c);
  }
  return c->eof;
}

static void cfg_small(hs_config *cfg) {
  hs_config_default(cfg);
  cfg->max_header_bytes = 2048;
  cfg->max_body_bytes = 4096;
  cfg->header_timeout_ms = 300;
  cfg->body_timeout_ms = 300;
  cfg->idle_timeout_ms = 300;
  cfg->write_high_water = 64 * 1024;
  cfg->write_low_water = 16 * 1024;
}

/* ---- tests -------------------------------------------------------------------- */

static void test_get_and_post(void) {
  cli c = cli_open();
  resp r[3];
  cli_send(&c, "GET /echo?a=1&b=2 HTTP/1.1\r\nHost: x\r\nX-Test:   Mixed Case  \r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 200);
  CHECK(strstr(r[0].head, "HTTP/1.1 200 OK\r\n") == r[0].head);
  CHECK(strstr(r[0].head, "X-Echo: 1\r\n"));
  CHECK(strstr(r[0].head, "Content-Type: text/plain\r\n"));
  CHECK(!strstr(r[0].head, "Connection: close"));
  CHECK(strcmp(r[0].body, "GET /echo q=a=1&b=2 x=Mixed Case len=0 body=") == 0);
  c.len = 0;

  cli_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(strcmp(r[0].body, "POST /echo q= x=- len=11 body=hello world") == 0);
  c.len = 0;

  /* chunked request body, sent in pieces, with a trailer */
  cli_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel");
  step(20);
  cli_send(&c, "lo\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(strcmp(r[0].body, "POST /echo q= x=- len=11 body=hello world") == 0);
  CHECK(!c.eof); /* keep-alive: three requests, one connection */
  CHECK(hs_server_open_connections(srv) == 1);
  cli_close(&c);
}

static void test_pipelined(void) {
  cli c = cli_open();
  resp r[3];
  /* the first is answered late (from a timer): the others must wait their turn */
  cli_send(&c, "GET /late?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
               "GET /echo?n=2 HTTP/1.1\r\nHost: x\r\n\r\n"
               "POST /echo?n=3 HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc");
  CHECK(cli_wait_responses(&c, 3, r, 3000) == 3);
  CHECK(strstr(r[0].body, "q=n=1"));
  CHECK(strstr(r[1].body, "q=n=2"));
  CHECK(strstr(r[2].body, "q=n=3") && strstr(r[2].body, "body=abc"));
  CHECK(requests == 3);
  cli_close(&c);
}

/* More pipelined bytes than the server buffers behind an in-flight request: reads
 * pause at the cap and resume once the request is answered; nothing is lost. */
static void test_pipeline_cap(void) {
  enum { N = 400 };
  cli c = cli_open();
  cli_send(&c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  uint64_t end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held);
  char pad[1001];
  memset(pad, 'p', 1000);
  pad[1000] = '\0';
  char *all = malloc((size_t)N * 1100);
  size_t len = 0;
  for (int i = 0; i < N; i++)
    len += (size_t)sprintf(all + len, "GET /echo?i=%d HTTP/1.1\r\nHost: x\r\nX-Pad: %s\r\n\r\n", i, pad);
  cli_send_n(&c, all, len); /* ~420 KB: over the 256 KiB cap */
  free(all);
  step(20);
  CHECK(requests == 1);
  CHECK(hs_respond(held, 200, "text/plain", NULL, 0, "held", 4) == 0);
  held = NULL;
  int got = 0;
  size_t off = 0;
  resp *r = malloc(sizeof *r);
  end = util_now_ms() + 5000;
  while (got < N + 1 && util_now_ms() < end && !c.eof) {
    step(1);
    cli_pump(&c);
    while (parse_resp(c.buf + off, c.len - off, r)) {
      off += r->raw_len;
      if (got == 0) CHECK(strcmp(r->body, "held") == 0);
      else {
        char want[32];
        snprintf(want, sizeof want, "q=i=%d ", got - 1);
        CHECK(strstr(r->body, want)); /* in order */
      }
      got++;
    }
  }
  free(r);
  CHECK(got == N + 1);
  CHECK(requests == N + 1);
  cli_close(&c);
}

static void test_limits(void) {
  resp r[1];
  /* Content-Length over the limit: 413 at once, before the body */
  cli c = cli_open();
  cli_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 413);
  CHECK(strstr(r[0].body, "\"code\":\"request_too_large\""));
  CHECK(strstr(r[0].body, "{\"error\":{\"message\":"));
  CHECK(strstr(r[0].head, "Connection: close"));
  CHECK(cli_wait_eof(&c, 2000));
  cli_close(&c);

  /* chunked body over the limit */
  c = cli_open();
  cli_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n");
  char chunk[1100];
  memset(chunk, 'a', sizeof chunk);
  memcpy(chunk, "400\r\n", 5);
  memcpy(chunk + 5 + 1024, "\r\n", 2);
  for (int i = 0; i < 5 && !c.eof; i++) {
    cli_send_n(&c, chunk, 5 + 1024 + 2);
    step(5);
    cli_pump(&c);
  }
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 413);
  cli_close(&c);

  /* header bytes over the limit */
  c = cli_open();
  char big[4096];
  int n = snprintf(big, sizeof big, "GET / HTTP/1.1\r\nHost: x\r\nX-Big: %03000d\r\n\r\n", 7);
  cli_send_n(&c, big, (size_t)n);
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 431);
  CHECK(strstr(r[0].body, "\"type\":\"invalid_request_error\""));
  cli_close(&c);

  /* too many headers */
  c = cli_open();
  char many[4096];
  int o = snprintf(many, sizeof many, "GET / HTTP/1.1\r\n");
  for (int i = 0; i < HS_MAX_HEADERS + 1; i++) o += snprintf(many + o, sizeof many - (size_t)o, "H%d: v\r\n", i);
  o += snprintf(many + o, sizeof many - (size_t)o, "\r\n");
  cli_send_n(&c, many, (size_t)o);
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 431);
  cli_close(&c);

  /* exactly HS_MAX_HEADERS is fine */
  c = cli_open();
  o = snprintf(many, sizeof many, "GET /echo HTTP/1.1\r\n");
  for (int i = 0; i < HS_MAX_HEADERS; i++) o += snprintf(many + o, sizeof many - (size_t)o, "H%d: v\r\n", i);
  o += snprintf(many + o, sizeof many - (size_t)o, "\r\n");
  cli_send_n(&c, many, (size_t)o);
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 200);
  cli_close(&c);

  /* garbage → 400 JSON + close; CONNECT → 405 */
  c = cli_open();
  cli_send(&c, "HELLO THERE\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 400);
  CHECK(strstr(r[0].body, "\"error\""));
  CHECK(cli_wait_eof(&c, 2000));
  cli_close(&c);
  c = cli_open();
  cli_send(&c, "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(r[0].status == 405);
  cli_close(&c);
  CHECK(requests == 1);
}

static void test_expect_upgrade_http10(void) {
  resp r[2];
  cli c = cli_open();
  cli_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n");
  uint64_t end = util_now_ms() + 2000;
  while (!strstr(c.buf ? c.buf : "", "\r\n\r\n") && util_now_ms() < end) { step(1); cli_pump(&c); }
  CHECK(c.len == 25 && memcmp(c.buf, "HTTP/1.1 100 Continue\r\n\r\n", 25) == 0);
  c.len = 0;
  cli_send(&c, "ping");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(strstr(r[0].body, "body=ping"));
  c.len = 0;
  /* Upgrade is ignored: answered in HTTP/1.1 and the next request still parsed */
  cli_send(&c, "GET /echo?u=1 HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n"
               "GET /echo?u=2 HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(cli_wait_responses(&c, 2, r, 2000) == 2);
  CHECK(r[0].status == 200 && strstr(r[0].body, "q=u=1"));
  CHECK(strstr(r[1].body, "q=u=2"));
  cli_close(&c);

  /* HTTP/1.0 without keep-alive: Connection: close and the server closes */
  c = cli_open();
  cli_send(&c, "GET /echo HTTP/1.0\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(strstr(r[0].head, "Connection: close"));
  CHECK(cli_wait_eof(&c, 2000));
  cli_close(&c);
  /* HTTP/1.0 with keep-alive */
  c = cli_open();
  cli_send(&c, "GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  CHECK(strstr(r[0].head, "Connection: keep-alive"));
  step(30);
  cli_pump(&c);
  CHECK(!c.eof);
  cli_close(&c);
}

static void test_timeouts(void) {
  resp r[1];
  /* slowloris: partial headers, trickled → 408 (or close) within the header timeout */
  cli c = cli_open();
  uint64_t t0 = util_now_ms();
  cli_send(&c, "GET /echo HTTP/1.1\r\nHost: x\r\n");
  for (int i = 0; i < 10 && !c.eof; i++) {
    cli_send(&c, "X-Slow: 1\r\n");
    step(50);
    cli_pump(&c);
  }
  CHECK(cli_wait_eof(&c, 2000));
  uint64_t took = util_now_ms() - t0;
  CHECK(took >= 250 && took < 1500);
  CHECK(parse_resp(c.buf, c.len, r) && r[0].status == 408);
  CHECK(strstr(r[0].body, "request_timeout"));
  cli_close(&c);

  /* body timeout: headers complete, body never comes */
  c = cli_open();
  cli_send(&c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc");
  CHECK(cli_wait_eof(&c, 2000));
  CHECK(parse_resp(c.buf, c.len, r) && r[0].status == 408);
  cli_close(&c);

  /* idle keep-alive connection is closed silently */
  c = cli_open();
  cli_send(&c, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(cli_wait_responses(&c, 1, r, 2000) == 1);
  c.len = 0;
  t0 = util_now_ms();
  CHECK(cli_wait_eof(&c, 2000));
  took = util_now_ms() - t0;
  CHECK(took >= 200 && took < 1500);
  CHECK(c.len == 0);
  cli_close(&c);

  /* a connection that never says anything */
  c = cli_open();
  CHECK(cli_wait_eof(&c, 2000));
  cli_close(&c);
  step(10);
  CHECK(hs_server_open_connections(srv) == 0);
}

static void test_disconnect_aborts(void) {
  cli c = cli_open();
  cli_send(&c, "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi");
  uint64_t end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held && strcmp(held->body, "hi") == 0);
  CHECK(aborts == 0);
  cli_close(&c); /* client leaves while the request is in flight */
  end = util_now_ms() + 2000;
  while (aborts == 0 && util_now_ms() < end) step(1);
  CHECK(aborts == 1);
  CHECK(held == NULL);
  step(5);
  CHECK(hs_server_open_connections(srv) == 0);

  /* a stream in flight: the client resets */
  c = cli_open();
  cli_send(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held);
  CHECK(hs_stream_write(held, "abc", 3) == 0);
  struct linger lg = {1, 0};
  setsockopt(c.fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg); /* RST */
  cli_close(&c);
  end = util_now_ms() + 2000;
  while (aborts == 1 && util_now_ms() < end) step(1);
  CHECK(aborts == 2 && held == NULL);
}

static void test_stream_framing(void) {
  cli c = cli_open();
  cli_send(&c, "GET /stream HTTP/1.1\r\nHost: x\r\n\r\nGET /echo?after=1 HTTP/1.1\r\nHost: x\r\n\r\n");
  resp r[2];
  CHECK(cli_wait_responses(&c, 2, r, 2000) == 2);
  CHECK(r[0].chunked && !strstr(r[0].head, "Content-Length"));
  CHECK(strstr(r[0].head, "Content-Type: text/event-stream\r\n"));
  const char *hb = strstr(c.buf, "\r\n\r\n") + 4;
  static const char want[] = "5\r\nhello\r\n18\r\ndata: 0123456789abcdef\n\n\r\n0\r\n\r\n";
  CHECK(strncmp(hb, want, sizeof want - 1) == 0);
  CHECK(r[0].body_len == 29);
  CHECK(strstr(r[1].body, "q=after=1"));
  cli_close(&c);
}

static void test_backpressure(void) {
  cli c = cli_open_rcvbuf(16 * 1024);
  cli_send(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  uint64_t end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held);
  static char block[32 * 1024];
  memset(block, 'z', sizeof block);
  size_t sent = 0;
  int r = 0;
  for (int i = 0; i < 4096 && r == 0; i++) { /* the client does not read: the queue grows */
    r = hs_stream_write(held, block, sizeof block);
    sent += sizeof block;
    uv_run(loop, UV_RUN_NOWAIT);
  }
  CHECK(r == 1);
  CHECK(hs_write_queue_size(held) > 64 * 1024);
  step(50);
  CHECK(drains == 0); /* nobody read yet */
  /* the client reads: the queue drains below the low-water mark → on_drain */
  end = util_now_ms() + 5000;
  while (drains == 0 && util_now_ms() < end) {
    step(1);
    cli_pump(&c);
  }
  CHECK(drains == 1);
  CHECK(hs_write_queue_size(held) <= 16 * 1024);
  CHECK(hs_stream_write(held, "tail", 4) == 0);
  CHECK(hs_stream_end(held) == 0);
  held = NULL;
  resp *rr = malloc(sizeof *rr);
  end = util_now_ms() + 5000;
  int got = 0;
  while (!got && util_now_ms() < end) {
    step(1);
    cli_pump(&c);
    got = parse_resp(c.buf, c.len, rr);
  }
  CHECK(got);
  CHECK(rr->body_len == sent + 4);
  free(rr);
  cli_close(&c);
}

static void test_slow_reader_cut(void) {
  cli c = cli_open_rcvbuf(16 * 1024);
  cli_send(&c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n");
  uint64_t end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held);
  static char block[32 * 1024];
  int r = 0;
  for (int i = 0; i < 4096 && r == 0; i++) {
    r = hs_stream_write(held, block, sizeof block);
    uv_run(loop, UV_RUN_NOWAIT);
  }
  CHECK(r == 1);
  uint64_t t0 = util_now_ms();
  end = t0 + 3000;
  while (aborts == 0 && util_now_ms() < end) step(2); /* never reads */
  CHECK(aborts == 1 && held == NULL);
  CHECK(util_now_ms() - t0 >= 250); /* cut by the 300 ms idle timeout, not at once */
  cli_close(&c);
}

static void test_drain(void) {
  cli idle = cli_open(), busy = cli_open();
  resp r[1];
  cli_send(&idle, "GET /echo HTTP/1.1\r\nHost: x\r\n\r\n");
  CHECK(cli_wait_responses(&idle, 1, r, 2000) == 1);
  cli_send(&busy, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  uint64_t end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held);
  hs_server_drain(srv, on_drain_done);
  CHECK(cli_wait_eof(&idle, 150)); /* idle connection closed now, not by its 300 ms timeout */
  step(20);
  CHECK(!drain_done);               /* the in-flight request holds the drain */
  cli_pump(&busy);
  CHECK(!busy.eof);
  /* no new connections */
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  CHECK(connect(fd, (struct sockaddr *)&a, sizeof a) < 0);
  close(fd);
  /* the in-flight request finishes, with Connection: close */
  CHECK(hs_respond(held, 200, "text/plain", NULL, 0, "bye", 3) == 0);
  held = NULL;
  CHECK(cli_wait_responses(&busy, 1, r, 2000) == 1);
  CHECK(strcmp(r[0].body, "bye") == 0 && strstr(r[0].head, "Connection: close"));
  CHECK(cli_wait_eof(&busy, 2000));
  end = util_now_ms() + 3000;
  while (!drain_done && util_now_ms() < end) step(1);
  CHECK(drain_done);
  CHECK(aborts == 0);
  cli_close(&idle);
  cli_close(&busy);
}

static void test_free_aborts(void) {
  cli c = cli_open();
  cli_send(&c, "GET /hold HTTP/1.1\r\nHost: x\r\n\r\n");
  uint64_t end = util_now_ms() + 2000;
  while (!held && util_now_ms() < end) step(1);
  CHECK(held);
  hs_server_free(srv);
  srv = NULL;
  for (int i = 0; i < 20; i++) uv_run(loop, UV_RUN_NOWAIT);
  CHECK(aborts == 1 && held == NULL);
  CHECK(cli_wait_eof(&c, 2000));
  cli_close(&c);
}

static void test_reuse_port(void) {
  hs_config cfg;
  hs_config_default(&cfg);
  cfg.reuse_port = 1;
  server_start(&cfg);
  hs_server *a = srv;
  hs_server *b;
  hs_callbacks cb = {.on_request = on_request, .on_abort = on_abort};
  CHECK(hs_server_new(&b, loop, &cfg, &cb, NULL) == 0);
  CHECK(hs_server_listen(b, "127.0.0.1", port) == 0); /* both have SO_REUSEPORT */
  hs_server_free(b);
  hs_config_default(&cfg);
  CHECK(hs_server_new(&b, loop, &cfg, &cb, NULL) == 0);
  CHECK(hs_server_listen(b, "127.0.0.1", port) == UV_EADDRINUSE);
  hs_server_free(b);
  srv = a;
  server_stop();
}

typedef void (*test_fn)(void);

static void run(const char *name, test_fn fn, int small) {
  hs_config cfg;
  if (small) cfg_small(&cfg);
  else hs_config_default(&cfg);
  cur_test = name;
  server_start(&cfg);
  fn();
  server_stop();
  printf("ok - %s\n", name);
}

int main(void) {
  signal(SIGPIPE, SIG_IGN);
  loop = uv_default_loop();
  uv_timer_init(loop, &late_timer);
  run("get_and_post", test_get_and_post, 1);
  run("pipelined", test_pipelined, 1);
  run("pipeline_cap", test_pipeline_cap, 1);
  run("limits", test_limits, 1);
  run("expect_upgrade_http10", test_expect_upgrade_http10, 1);
  run("timeouts", test_timeouts, 1);
  run("disconnect_aborts", test_disconnect_aborts, 1);
  run("stream_framing", test_stream_framing, 1);
  run("backpressure", test_backpressure, 1);
  run("slow_reader_cut", test_slow_reader_cut, 1);
  run("drain", test_drain, 1);
  run("free_aborts", test_free_aborts, 1);
  cur_test = "reuse_port";
  test_reuse_port();
  printf("ok - reuse_port\n");
  uv_close((uv_handle_t *)&late_timer, NULL);
  uv_run(loop, UV_RUN_DEFAULT);
  CHECK(uv_loop_close(loop) == 0);
  return 0;
}
