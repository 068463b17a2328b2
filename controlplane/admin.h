/* admin.h — the admin req/rep server llmesh-ctl talks to (ipc://DATA/admin.sock).
 *
 * A raw REP socket: each request's routing header travels with the message through
 * the NNG→libuv bridge and is copied onto the reply, so requests from several
 * llmesh-ctl processes can never get each other's answers. Replies are sent from the
 * loop with nng_sendmsg(NONBLOCK). */
#ifndef LLMESH_ADMIN_H
#define LLMESH_ADMIN_H

#include <stddef.h>
#include <uv.h>

#include "llmesh.pb-c.h"
#include "telemetry.h"

#define ADMIN_RECV_MAX_BYTES (64 * 1024) /* requests are tiny */

typedef struct admin admin_t;

typedef struct admin_ops {
  /* Fills r (storage in st, released with telem_report_free after packing). */
  int (*status)(Llmesh__StatusReport *r, telem_report *st, void *ud);
  /* Drains (on = 1) or undrains a deployment on behalf of actor (user@host). Returns 0,
   * or a positive AdminResponse.code with a message in err (unknown deployment, ...). */
  int (*drain)(int on, const char *deployment, const char *reason, const char *actor, char *err,
               size_t errlen, void *ud);
  void *ud; /* passed to the callbacks */
} admin_ops;

/* AdminResponse.code values besides 0. */
enum {
  ADMIN_E_INTERNAL = 1,   /* the control plane failed (database, memory) */
  ADMIN_E_MALFORMED = 2,  /* not an AdminRequest */
  ADMIN_E_COMMAND = 3,    /* unknown command */
  ADMIN_E_ARGS = 4,       /* missing or bad arguments */
  ADMIN_E_UNKNOWN = 5,    /* no such deployment */
};

/* Listens on url (ipc: mode 0600). Returns 0 or -1 with err set. */
int admin_start(admin_t **out, uv_loop_t *loop, const char *url, const admin_ops *ops,
                char *err, size_t errlen);
/* Stops receiving and closes the socket; run the loop afterwards. NULL-safe. */
void admin_stop(admin_t *a);

#endif
