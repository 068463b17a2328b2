/* nng_bridge.c — NNG → libuv hand-off without a shared lock (see nng_bridge.h). */
#include "nng_bridge.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

struct bridge_node {
  struct bridge_node *next; /* older message (stack order) */
  nng_msg *msg;
};

struct nng_bridge {
  uv_async_t wake;                         /* loop-side wake-up; first: freed in its close cb */
  uv_loop_t *loop;
  nng_socket sock;
  nng_aio *aio;                            /* receive aio, callback on NNG threads */
  enum nng_bridge_mode mode;
  nng_bridge_cb cb;
  void *arg;
  _Atomic(nng_msg *) latest;               /* NNG_BRIDGE_LATEST slot */
  _Atomic(struct bridge_node *) head;      /* NNG_BRIDGE_ALL stack, newest first */
  atomic_int stopping;                     /* set by stop(): do not re-arm */
};

static void bridge_on_recv(void *arg) { /* NNG thread */
  nng_bridge *b = arg;
  int rv = nng_aio_result(b->aio);
  if (rv == 0) {
    nng_msg *m = nng_aio_get_msg(b->aio);
    if (b->mode == NNG_BRIDGE_LATEST) {
      nng_msg *old = atomic_exchange(&b->latest, m);
      if (old) nng_msg_free(old);
    } else {
      struct bridge_node *n = malloc(sizeof *n);
      if (!n) {
        nng_msg_free(m);
      } else {
        n->msg = m;
        n->next = atomic_load(&b->head);
        while (!atomic_compare_exchange_weak(&b->head, &n->next, n)) {
        }
      }
    }
    if (!atomic_load(&b->stopping)) uv_async_send(&b->wake);
  }
  if (rv == NNG_ECLOSED || rv == NNG_ECANCELED || atomic_load(&b->stopping)) return;
  nng_recv_aio(b->sock, b->aio);
}

static void bridge_on_wake(uv_async_t *h) { /* loop thread */
  nng_bridge *b = (nng_bridge *)h; /* wake is the first member */
  if (b->mode == NNG_BRIDGE_LATEST) {
    nng_msg *m = atomic_exchange(&b->latest, NULL);
    if (m) b->cb(m, b->arg);
    return;
  }
  struct bridge_node *n = atomic_exchange(&b->head, NULL), *rev = NULL;
  while (n) { /* reverse into arrival order */
    struct bridge_node *next = n->next;
    n->next = rev;
    rev = n;
    n = next;
  }
  while (rev) {
    struct bridge_node *next = rev->next;
    b->cb(rev->msg, b->arg);
    free(rev);
    rev = next;
  }
}

int nng_bridge_start(nng_bridge **out, uv_loop_t *loop, nng_socket sock,
                     enum nng_bridge_mode mode, nng_bridge_cb cb, void *arg) {
  nng_bridge *b = calloc(1, sizeof *b);
  if (!b) return -ENOMEM;
  b->loop = loop;
  b->sock = sock;
  b->mode = mode;
  b->cb = cb;
  b->arg = arg;
  int rv = uv_async_init(loop, &b->wake, bridge_on_wake);
  if (rv) { free(b); return rv; }
  if ((rv = nng_aio_alloc(&b->aio, bridge_on_recv, b)) != 0) {
    uv_close((uv_handle_t *)&b->wake, (uv_close_cb)free);
    return -rv;
  }
  nng_recv_aio(sock, b->aio);
  *out = b;
  return 0;
}

static void bridge_on_close(uv_handle_t *h) {
  nng_bridge *b = (nng_bridge *)h;
  nng_msg *m = atomic_exchange(&b->latest, NULL);
  if (m) nng_msg_free(m);
  struct bridge_node *n = atomic_exchange(&b->head, NULL);
  while (n) {
    struct bridge_node *next = n->next;
    nng_msg_free(n->msg);
    free(n);
    n = next;
  }
  free(b);
}

void nng_bridge_stop(nng_bridge *b) {
  if (!b) return;
  atomic_store(&b->stopping, 1);
  nng_aio_stop(b->aio); /* waits for a running callback; it will not re-arm */
  nng_aio_free(b->aio);
  b->aio = NULL;
  uv_close((uv_handle_t *)&b->wake, bridge_on_close);
}
