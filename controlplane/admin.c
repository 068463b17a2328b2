/* admin.c — AdminRequest → AdminResponse over a raw REP socket (see admin.h). */
#include "admin.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <nng/nng.h>
#include <nng/protocol/reqrep0/rep.h>

#include "log.h"
#include "nng_bridge.h"

struct admin {
  nng_socket sock;     /* raw REP */
  nng_bridge *bridge;  /* requests → loop */
  admin_ops ops;       /* command handlers */
  uint64_t served;     /* requests answered */
};

static int admin_status(admin_t *a, Llmesh__AdminResponse *resp, Llmesh__StatusReport *r,
                        telem_report *st) {
  if (a->ops.status(r, st, a->ops.ud) < 0) {
    resp->code = 1;
    resp->error = "internal error building the status";
    return -1;
  }
  resp->status = r;
  return 0;
}

/* Packs resp behind req's routing header and sends it. */
static void admin_reply(admin_t *a, nng_msg *req, const Llmesh__AdminResponse *resp) {
  nng_msg *m;
  size_t n = llmesh__admin_response__get_packed_size(resp);
  if (nng_msg_alloc(&m, n) != 0) return;
  llmesh__admin_response__pack(resp, nng_msg_body(m));
  int rv = nng_msg_header_append(m, nng_msg_header(req), nng_msg_header_len(req));
  if (rv == 0) rv = nng_sendmsg(a->sock, m, NNG_FLAG_NONBLOCK);
  if (rv != 0) {
    LOG_WARN(NULL, "admin_reply_failed", LF_S("error", nng_strerror(rv)));
    nng_msg_free(m);
  }
}

static void admin_on_request(nng_msg *msg, void *arg) { /* loop thread */
  admin_t *a = arg;
  Llmesh__AdminResponse resp = LLMESH__ADMIN_RESPONSE__INIT;
  Llmesh__StatusReport report = LLMESH__STATUS_REPORT__INIT;
  telem_report st = {0};
  char error[160];
  Llmesh__AdminRequest *req = llmesh__admin_request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
  if (!req) {
    resp.code = 2;
    resp.error = "malformed AdminRequest";
  } else if (!strcmp(req->command, "status")) {
    admin_status(a, &resp, &report, &st);
  } else {
    snprintf(error, sizeof error, "unknown command '%.100s' (known: status)", req->command);
    resp.code = 3;
    resp.error = error;
  }
  LOG_DEBUG(NULL, "admin_request", LF_S("command", req ? req->command : "?"), LF_I("code", resp.code));
  admin_reply(a, msg, &resp);
  a->served++;
  telem_report_free(&st);
  if (req) llmesh__admin_request__free_unpacked(req, NULL);
  nng_msg_free(msg);
}

static int admin_listen(admin_t *a, const char *url, char *err, size_t errlen) {
  nng_listener l;
  int rv = nng_listener_create(&l, a->sock, url);
  if (rv == 0) rv = nng_listener_set_size(l, NNG_OPT_RECVMAXSZ, ADMIN_RECV_MAX_BYTES);
  if (rv == 0 && strncmp(url, "ipc://", 6) == 0) rv = nng_listener_set_int(l, NNG_OPT_IPC_PERMISSIONS, 0600);
  if (rv == 0) rv = nng_listener_start(l, 0);
  if (rv != 0) snprintf(err, errlen, "admin: cannot listen on %s: %s", url, nng_strerror(rv));
  return rv ? -1 : 0;
}

int admin_start(admin_t **out, uv_loop_t *loop, const char *url, const admin_ops *ops,
                char *err, size_t errlen) {
  admin_t *a = calloc(1, sizeof *a);
  if (!a) {
    snprintf(err, errlen, "admin: out of memory");
    return -1;
  }
  a->ops = *ops;
  int rv = nng_rep0_open_raw(&a->sock);
  if (rv != 0) {
    snprintf(err, errlen, "admin: cannot open socket: %s", nng_strerror(rv));
    free(a);
    return -1;
  }
  if (admin_listen(a, url, err, errlen) < 0 ||
      nng_bridge_start(&a->bridge, loop, a->sock, NNG_BRIDGE_ALL, admin_on_request, a) != 0) {
    if (!a->bridge && !err[0]) snprintf(err, errlen, "admin: cannot start the receive bridge");
    nng_close(a->sock);
    free(a);
    return -1;
  }
  *out = a;
  return 0;
}

void admin_stop(admin_t *a) {
  if (!a) return;
  nng_bridge_stop(a->bridge);
  nng_close(a->sock);
  free(a);
}
