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
    resp->code = ADMIN_E_INTERNAL;
    resp->error = "internal error building the status";
    return -1;
  }
  resp->status = r;
  return 0;
}

/* drain DEPLOYMENT [REASON...] / undrain DEPLOYMENT. */
static void admin_drain(admin_t *a, int on, const Llmesh__AdminRequest *req, Llmesh__AdminResponse *resp,
                        char *error, size_t errlen) {
  char reason[512] = "";
  size_t used = 0;
  if (req->n_args < 1 || !req->args[0][0] || (!on && req->n_args > 1)) {
    snprintf(error, errlen, "usage: %s DEPLOYMENT%s", req->command, on ? " [REASON]" : "");
    resp->code = ADMIN_E_ARGS;
    resp->error = error;
    return;
  }
  for (size_t i = 1; i < req->n_args && used < sizeof reason; i++) {
    int n = snprintf(reason + used, sizeof reason - used, "%s%s", i > 1 ? " " : "", req->args[i]);
    if (n > 0) used += (size_t)n;
  }
  if (!a->ops.drain) {
    snprintf(error, errlen, "%s is not available", req->command);
    resp->code = ADMIN_E_COMMAND;
  } else {
    resp->code = a->ops.drain(on, req->args[0], reason, req->actor[0] ? req->actor : "unknown", error,
                              errlen, a->ops.ud);
  }
  if (resp->code) resp->error = error;
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
  char error[400];
  Llmesh__AdminRequest *req = llmesh__admin_request__unpack(NULL, nng_msg_len(msg), nng_msg_body(msg));
  if (!req) {
    resp.code = ADMIN_E_MALFORMED;
    resp.error = "malformed AdminRequest";
  } else if (!strcmp(req->command, "status")) {
    admin_status(a, &resp, &report, &st);
  } else if (!strcmp(req->command, "drain") || !strcmp(req->command, "undrain")) {
    admin_drain(a, !strcmp(req->command, "drain"), req, &resp, error, sizeof error);
  } else {
    snprintf(error, sizeof error, "unknown command '%.100s' (known: status, drain, undrain)", req->command);
    resp.code = ADMIN_E_COMMAND;
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
