/* server.h — the request dispatcher and the one exit every client response takes
 * (status counted in /metrics, an access-log line when enabled, x-request-id added). */
#ifndef LLMESH_SERVER_H
#define LLMESH_SERVER_H

#include <stddef.h>

#include "http_server.h"

#define SERVER_MAX_EXTRA 8 /* extra response headers a handler may pass */

/* Whole response. dep/attempts go to the access log (NULL/0 when none). */
int server_respond(hs_request *req, const char *rid, int status, const char *ctype,
                   const hs_header *extra, int nextra, const char *body, size_t len,
                   const char *dep, int attempts);
/* OpenAI-shaped error {"error":{"message","type","code"}}; message is escaped. */
int server_error(hs_request *req, const char *rid, int status, const char *type,
                 const char *code, const char *message, const hs_header *extra, int nextra,
                 const char *dep, int attempts);
/* Streamed response: begin (counted now) and the access-log line at its end. */
int server_stream_begin(hs_request *req, const char *rid, int status, const char *ctype,
                        const hs_header *extra, int nextra);
void server_access_log(const hs_request *req, const char *rid, int status, const char *dep,
                       int attempts);
/* Access-log lines at info when on (--access-log); otherwise only at debug level. */
void server_set_access_log(int on);

/* hs callbacks of the worker. */
void server_on_request(hs_request *req, void *ud);
void server_on_abort(hs_request *req, void *ud);
void server_on_drain(hs_request *req, void *ud);

/* State the dispatcher needs from main. */
typedef struct server_ctx {
  hs_server *hs;        /* for open connection counts */
  const char *region;   /* --region */
} server_ctx;

#endif
