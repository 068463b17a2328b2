/* curl_uv.c — libcurl multi-socket on libuv (see curl_uv.h and integration-notes §1). */
#include "curl_uv.h"

#include <stdlib.h>

#include "util.h"

#define CU_POOL_MAX 256 /* idle easy handles kept */

typedef struct cu_sock {
  uv_poll_t poll;     /* watches fd; freed in its close callback only */
  cu_multi *m;        /* owner */
  curl_socket_t fd;   /* curl's socket */
} cu_sock;

static void reap_done(cu_multi *m) {
  CURLMsg *msg;
  int left;
  while ((msg = curl_multi_info_read(m->multi, &left))) {
    if (msg->msg != CURLMSG_DONE) continue;
    CURL *e = msg->easy_handle;
    CURLcode res = msg->data.result; /* read before remove: msg dies with it */
    char *priv = NULL;
    curl_easy_getinfo(e, CURLINFO_PRIVATE, &priv);
    curl_multi_remove_handle(m->multi, e);
    m->in_flight--;
    cu_owner *o = (cu_owner *)(void *)priv;
    if (o && o->done) o->done(e, res, o);
  }
}

static void on_poll(uv_poll_t *p, int status, int events) {
  cu_sock *s = container_of(p, cu_sock, poll);
  cu_multi *m = s->m;
  int running, flags = status < 0 ? CURL_CSELECT_ERR : 0;
  if (events & UV_READABLE) flags |= CURL_CSELECT_IN;
  if (events & UV_WRITABLE) flags |= CURL_CSELECT_OUT;
  curl_multi_socket_action(m->multi, s->fd, flags, &running);
  reap_done(m);
}

static void on_sock_closed(uv_handle_t *h) { free(container_of((uv_poll_t *)h, cu_sock, poll)); }

static int on_socket(CURL *e, curl_socket_t fd, int what, void *userp, void *sockp) {
  cu_multi *m = userp;
  cu_sock *s = sockp;
  (void)e;
  if (what == CURL_POLL_REMOVE) {
    if (s) {
      curl_multi_assign(m->multi, fd, NULL);
      uv_poll_stop(&s->poll);
      uv_close((uv_handle_t *)&s->poll, on_sock_closed);
    }
    return 0;
  }
  if (!s) {
    if (!(s = calloc(1, sizeof *s))) return -1;
    s->m = m;
    s->fd = fd;
    if (uv_poll_init_socket(m->loop, &s->poll, fd)) { free(s); return -1; }
    curl_multi_assign(m->multi, fd, s);
  }
  int ev = ((what & CURL_POLL_IN) ? UV_READABLE : 0) | ((what & CURL_POLL_OUT) ? UV_WRITABLE : 0);
  return uv_poll_start(&s->poll, ev, on_poll) ? -1 : 0;
}

static void on_timer(uv_timer_t *t) {
  cu_multi *m = container_of(t, cu_multi, timer);
  int running;
  curl_multi_socket_action(m->multi, CURL_SOCKET_TIMEOUT, 0, &running);
  reap_done(m);
}

/* curl asks for a timeout; never call socket_action from here (recursion). */
static int on_timeout(CURLM *multi, long ms, void *userp) {
  cu_multi *m = userp;
  (void)multi;
  if (ms < 0) uv_timer_stop(&m->timer);
  else uv_timer_start(&m->timer, on_timer, (uint64_t)ms, 0);
  return 0;
}

int cu_init(cu_multi *m, uv_loop_t *loop) {
  int rc;
  m->loop = loop;
  for (int k = 0; k < 2; k++) {
    m->pool[k] = NULL;
    m->npool[k] = m->cappool[k] = 0;
  }
  m->in_flight = 0;
  if (!(m->multi = curl_multi_init())) return -1;
  if ((rc = uv_timer_init(loop, &m->timer))) { curl_multi_cleanup(m->multi); return rc; }
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
  curl_multi_setopt(m->multi, CURLMOPT_SOCKETDATA, m);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERFUNCTION, on_timeout);
  curl_multi_setopt(m->multi, CURLMOPT_TIMERDATA, m);
  curl_multi_setopt(m->multi, CURLMOPT_MAXCONNECTS, 1024L); /* idle connections kept */
  return 0;
}

static void easy_base(CURL *e) {
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_QUICK_EXIT, 1L); /* no join of a DNS thread on removal */
  curl_easy_setopt(e, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPIDLE, 30L);
  curl_easy_setopt(e, CURLOPT_TCP_KEEPINTVL, 15L);
  curl_easy_setopt(e, CURLOPT_TCP_NODELAY, 1L);
  curl_easy_setopt(e, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
  curl_easy_setopt(e, CURLOPT_PROTOCOLS_STR, "http,https");
  /* 16 KiB minimum; only touched by TLS uploads, which copy the request body there */
  curl_easy_setopt(e, CURLOPT_UPLOAD_BUFFERSIZE, 16384L);
}

/* No curl_easy_reset on reuse: it re-initialises every option and frees per-handle
 * state for nothing, since every transfer sets the same per-transfer options anyway. */
CURL *cu_easy_get(cu_multi *m, int stream) {
  CURL *e;
  int k = stream ? 1 : 0;
  if (m->npool[k]) return m->pool[k][--m->npool[k]];
  if (!(e = curl_easy_init())) return NULL;
  easy_base(e);
  /* set once per handle: curl sizes the buffer at its first transfer and keeps it */
  if (k) curl_easy_setopt(e, CURLOPT_BUFFERSIZE, CU_STREAM_RECV_BUF);
  return e;
}

void cu_easy_put(cu_multi *m, CURL *e, int stream) {
  int k = stream ? 1 : 0;
  if (m->npool[k] == m->cappool[k] && m->cappool[k] < CU_POOL_MAX) {
    int cap = m->cappool[k] ? m->cappool[k] * 2 : 16;
    CURL **p = realloc(m->pool[k], (size_t)cap * sizeof *p);
    if (p) { m->pool[k] = p; m->cappool[k] = cap; }
  }
  if (m->npool[k] < m->cappool[k]) m->pool[k][m->npool[k]++] = e;
  else curl_easy_cleanup(e);
}

int cu_start(cu_multi *m, CURL *e, cu_owner *owner) {
  curl_easy_setopt(e, CURLOPT_PRIVATE, (void *)owner);
  if (curl_multi_add_handle(m->multi, e) != CURLM_OK) return -1;
  m->in_flight++;
  return 0;
}

void cu_cancel(cu_multi *m, CURL *e) {
  if (curl_multi_remove_handle(m->multi, e) == CURLM_OK) m->in_flight--;
}

void cu_close(cu_multi *m, uv_close_cb cb) {
  for (int k = 0; k < 2; k++) {
    for (int i = 0; i < m->npool[k]; i++) curl_easy_cleanup(m->pool[k][i]);
    free(m->pool[k]);
    m->pool[k] = NULL;
    m->npool[k] = m->cappool[k] = 0;
  }
  curl_multi_cleanup(m->multi); /* may still call on_timeout: the timer is open */
  m->multi = NULL;
  uv_close((uv_handle_t *)&m->timer, cb);
}
