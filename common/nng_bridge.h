/* nng_bridge.h — hands NNG messages from NNG's threads to a libuv loop.
 *
 * NNG callbacks run on NNG's task threads and must never touch loop state. The bridge
 * receives with an nng_aio, parks the message in a lock-free slot (latest-wins, for
 * snapshots) or a lock-free stack (every message, in arrival order, for telemetry),
 * and wakes the loop with uv_async_send. No lock is shared between the two sides.
 * uv_async_send coalesces, so the loop side drains everything at each wake-up. */
#ifndef LLMESH_NNG_BRIDGE_H
#define LLMESH_NNG_BRIDGE_H

#include <nng/nng.h>
#include <uv.h>

typedef struct nng_bridge nng_bridge;

/* Runs on the loop thread; owns msg (free it with nng_msg_free). */
typedef void (*nng_bridge_cb)(nng_msg *msg, void *arg);

enum nng_bridge_mode {
  NNG_BRIDGE_LATEST = 0, /* only the newest pending message is delivered */
  NNG_BRIDGE_ALL = 1,    /* every message is delivered, in order */
};

/* Starts receiving on sock. Returns 0 or a negative errno / -NNG error. */
int nng_bridge_start(nng_bridge **out, uv_loop_t *loop, nng_socket sock,
                     enum nng_bridge_mode mode, nng_bridge_cb cb, void *arg);

/* Stops receiving, drops pending messages and frees the bridge once libuv has closed
 * its handle (run the loop afterwards). Call on the loop thread, before or after
 * nng_close(sock). */
void nng_bridge_stop(nng_bridge *b);

#endif
