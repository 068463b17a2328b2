/* curl_uv.h — libcurl's multi-socket interface driven by a libuv loop (libuv + libcurl
 * only). The worker's upstream attempts and token fetches share one; the control plane's
 * health probes have their own.
 *
 * One CURLM per loop (it owns the connection, DNS and CA caches), one uv_poll_t per
 * curl socket, one uv_timer_t for curl's timeouts. After every socket_action the
 * finished transfers are read with curl_multi_info_read, removed, and handed to the
 * done callback, which runs outside any curl callback and may start new transfers.
 * Easy handles are pooled and reused as they are (keeps TLS sessions): the base options
 * are set once, and every user sets all of its per-transfer options on each use. */
#ifndef LLMESH_CURL_UV_H
#define LLMESH_CURL_UV_H

#include <curl/curl.h>
#include <uv.h>

#define CU_STREAM_RECV_BUF 2048L /* receive buffer of stream transfers, bytes */

struct cu_owner;

/* A transfer finished (success or error). The handle is already removed from the
 * multi; owner is its CURLOPT_PRIVATE (embed it, use container_of). Not called for
 * cu_cancel()ed transfers. */
typedef void (*cu_done_cb)(CURL *easy, CURLcode result, struct cu_owner *owner);

/* Who a transfer belongs to (a chat, a token fetch, ...): every transfer's
 * CURLOPT_PRIVATE points to one, embedded in the owner's struct. */
typedef struct cu_owner {
  cu_done_cb done; /* called when the transfer finishes */
} cu_owner;

typedef struct cu_multi {
  uv_loop_t *loop;     /* the loop that drives it */
  CURLM *multi;        /* the one multi handle */
  uv_timer_t timer;    /* curl's timeout (CURLMOPT_TIMERFUNCTION) */
  CURL **pool[2];      /* idle easy handles: [0] whole answers, [1] streams */
  int npool[2];        /* entries in pool[k] */
  int cappool[2];      /* allocated entries of pool[k] */
  int in_flight;       /* transfers added and not yet done or cancelled */
} cu_multi;

int cu_init(cu_multi *m, uv_loop_t *loop);
/* An easy handle with the base options set (NOSIGNAL, QUICK_EXIT, TCP
 * keepalive, HTTP/1.1). stream = 1: a small receive buffer (CU_STREAM_RECV_BUF), since
 * SSE arrives in small pieces and a held stream should cost little memory; 0: curl's
 * default 16 KiB for whole answers. NULL on ENOMEM. */
CURL *cu_easy_get(cu_multi *m, int stream);
void cu_easy_put(cu_multi *m, CURL *e, int stream); /* back to its pool (not while added) */
/* Sets CURLOPT_PRIVATE to owner and adds the transfer (curl_multi_add_handle); 0 or -1. */
int cu_start(cu_multi *m, CURL *e, cu_owner *owner);
/* Removes a running transfer at once; no done callback follows. Never call it from
 * inside a curl callback. */
void cu_cancel(cu_multi *m, CURL *e);
/* Frees pooled handles and the multi, closes the timer (run the loop afterwards); cb
 * (may be NULL) runs when the timer is closed: only then may the struct holding m be
 * freed. Every transfer must be finished or cancelled before. */
void cu_close(cu_multi *m, uv_close_cb cb);

#endif
