/* http_server.h — HTTP/1.1 server on libuv + http-parser, used by the worker and the
 * mock providers.
 *
 * One request at a time per connection (pipelined requests wait, parser paused), whole
 * request body buffered before on_request (failover needs it), keep-alive, limits on
 * header bytes (431), body bytes (413), header count, and timers against slow clients:
 * header timeout (headers must complete in time), body timeout, idle keep-alive
 * timeout. Responses are either whole (Content-Length) or streamed (chunked), with a
 * write-queue high/low water mark so a slow client can pause the producer.
 *
 * Ownership: an hs_request lives from on_request until the handler finishes the
 * response (hs_respond / hs_stream_end / hs_abort) or until on_abort has returned,
 * whichever comes first. After on_abort the handler must not touch the request. */
#ifndef LLMESH_HTTP_SERVER_H
#define LLMESH_HTTP_SERVER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#define HS_MAX_HEADERS 64 /* request headers kept; more → 431 */

typedef struct hs_server hs_server;
typedef struct hs_conn hs_conn;

typedef struct hs_header {
  const char *name;  /* NUL-terminated; request names are lower-cased */
  const char *value; /* NUL-terminated */
} hs_header;

typedef struct hs_request {
  hs_conn *conn;           /* owning connection */
  int method;              /* enum http_method from http_parser.h */
  const char *method_str;  /* "GET", "POST", ... */
  const char *path;        /* NUL-terminated path without the query */
  const char *query;       /* NUL-terminated query without '?', "" if none */
  hs_header headers[HS_MAX_HEADERS];
  int nheaders;            /* entries used in headers */
  const char *body;        /* whole body (de-chunked), NUL-terminated, may be "" */
  size_t body_len;         /* bytes in body */
  int keep_alive;          /* 1 if the connection stays open after the response; the
                            * handler may clear it before responding to close after */
  uint64_t start_us;       /* monotonic µs when the first byte of the request arrived */
  void *user;              /* free for the handler */
} hs_request;

typedef struct hs_config {
  size_t max_header_bytes;    /* request line + headers, bytes; over → 431 (default 16 KiB) */
  size_t max_body_bytes;      /* body, bytes; over → 413 (default 8 MiB) */
  uint32_t header_timeout_ms; /* first byte → headers complete; over → 408 + close (default 10 s) */
  uint32_t body_timeout_ms;   /* headers complete → body complete (default 30 s) */
  uint32_t idle_timeout_ms;   /* idle keep-alive connection is closed after (default 60 s) */
  size_t write_high_water;    /* queued response bytes at which hs_stream_write asks to pause (default 256 KiB) */
  size_t write_low_water;     /* queued bytes at which on_drain fires again (default 64 KiB) */
  uint32_t max_connections;   /* accepted at once; over → accept and close (default 65536) */
  int reuse_port;             /* set SO_REUSEPORT on the listener */
} hs_config;

typedef struct hs_callbacks {
  /* A complete request arrived. The handler answers now or later (async). */
  void (*on_request)(hs_request *req, void *ud);
  /* The client went away (EOF, reset, timeout) before the response was finished.
   * Cancel upstream work here; the request is freed when this returns. */
  void (*on_abort)(hs_request *req, void *ud);
  /* The write queue fell below write_low_water after hs_stream_write returned 1. */
  void (*on_drain)(hs_request *req, void *ud);
} hs_callbacks;

/* Fills cfg with the defaults above. */
void hs_config_default(hs_config *cfg);

/* Creates a server on loop. Returns 0 or a negative libuv error. */
int hs_server_new(hs_server **out, uv_loop_t *loop, const hs_config *cfg,
                  const hs_callbacks *cb, void *ud);
/* Binds and listens on host:port ("127.0.0.1", 4000). Port 0 picks one; see
 * hs_server_port. Returns 0 or a negative libuv error (EADDRINUSE surfaces here). */
int hs_server_listen(hs_server *s, const char *host, int port);
int hs_server_port(const hs_server *s);            /* bound port, after listen */
/* Stops accepting, closes idle connections, lets in-flight requests finish, then
 * calls done (once every connection is closed). Graceful drain on SIGTERM. */
void hs_server_drain(hs_server *s, void (*done)(hs_server *s, void *ud));
/* Closes everything now (aborting in-flight requests) and frees the server once the
 * loop has run the close callbacks. */
void hs_server_free(hs_server *s);
uint32_t hs_server_open_connections(const hs_server *s);

/* Case-insensitive lookup of a request header; NULL if absent. */
const char *hs_header_get(const hs_request *req, const char *name);

/* Whole response with Content-Length. extra: additional headers (may be NULL/0);
 * Content-Length, Date-free, and Connection are added by the server. Returns 0 or <0
 * if the connection is gone. Finishes the request. */
int hs_respond(hs_request *req, int status, const char *content_type,
               const hs_header *extra, int nextra, const char *body, size_t len);

/* Streamed response (Transfer-Encoding: chunked). */
int hs_stream_begin(hs_request *req, int status, const char *content_type,
                    const hs_header *extra, int nextra);
/* Queues one chunk (copied). Returns 0, 1 when the queue is above the high-water mark
 * (pause the producer until on_drain), or <0 when the client is gone. After <0 (here or
 * from hs_stream_begin) on_abort follows from the loop, never from inside this call;
 * the request stays valid until then. A client that leaves the queue above the
 * high-water mark for idle_timeout_ms is cut off (on_abort). Empty writes are no-ops. */
int hs_stream_write(hs_request *req, const char *data, size_t len);
/* Writes the terminating chunk; finishes the request. */
int hs_stream_end(hs_request *req);
/* Closes the connection at once without finishing the response (no terminating
 * chunk): the client sees a cut. Finishes the request; on_abort is not called. */
void hs_abort(hs_request *req);

/* Bytes queued for the client and not yet written. */
size_t hs_write_queue_size(const hs_request *req);

#endif
