/* server.c — the worker's HTTP surface: dispatch, request ids, OpenAI-shaped errors,
 * the access log (see server.h). */
#include "server.h"

#include <errno.h>
#include <http_parser.h>
#include <stdio.h>
#include <string.h>

#include "anthropic_ingress.h"
#include "attempt.h"
#include "auth.h"
#include "log.h"
#include "metrics.h"
#include "request.h"
#include "route.h"
#include "snapshot.h"

#define RID_MAX 64 /* longest client x-request-id we echo */

/* ---- the one exit ------------------------------------------------------------------ */

/* One line per request costs a format and a write(2) each: opt-in (--access-log) or at
 * debug level. Failover decisions, cuts and stalls are logged at info regardless. */
static int access_log_on;

void server_set_access_log(int on) { access_log_on = on; }

void server_access_log(const hs_request *req, const char *rid, int status, const char *dep,
                       int attempts) {
  if (!(access_log_on ? log_enabled(LOG_LEVEL_INFO) : log_enabled(LOG_LEVEL_DEBUG))) return;
  LOG_INFO(rid, "access", LF_S("method", req->method_str), LF_S("path", req->path),
           LF_I("status", status), LF_I("duration_us", util_now_us() - req->start_us),
           LF_S("deployment", dep), LF_I("attempts", attempts));
}

/* extra + x-request-id into out; returns the count. */
static int with_rid(hs_header *out, const char *rid, const hs_header *extra, int nextra) {
  int n = 0;
  out[n++] = (hs_header){"x-request-id", rid};
  for (int i = 0; i < nextra && n < SERVER_MAX_EXTRA + 1; i++) out[n++] = extra[i];
  return n;
}

int server_respond(hs_request *req, const char *rid, int status, const char *ctype,
                   const hs_header *extra, int nextra, const char *body, size_t len,
                   const char *dep, int attempts) {
  hs_header h[SERVER_MAX_EXTRA + 1];
  int nh = with_rid(h, rid, extra, nextra);
  metrics_http_response(status);
  server_access_log(req, rid, status, dep, attempts);
  return hs_respond(req, status, ctype, h, nh, body, len);
}

int server_stream_begin(hs_request *req, const char *rid, int status, const char *ctype,
                        const hs_header *extra, int nextra) {
  hs_header h[SERVER_MAX_EXTRA + 1];
  int nh = with_rid(h, rid, extra, nextra);
  metrics_http_response(status);
  return hs_stream_begin(req, status, ctype, h, nh);
}

int server_error(hs_request *req, const char *rid, int status, const char *type,
                 const char *code, const char *message, const hs_header *extra, int nextra,
                 const char *dep, int attempts) {
  char esc[2048], body[2400];
  log_json_escape(esc, sizeof esc, message, strlen(message));
  int n = snprintf(body, sizeof body,
                   "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}",
                   esc, type, code);
  if (n < 0 || (size_t)n >= sizeof body) n = (int)strlen(body);
  return server_respond(req, rid, status, "application/json", extra, nextra, body, (size_t)n,
                        dep, attempts);
}

/* ---- request ids -------------------------------------------------------------------- */

static void request_id(const hs_request *req, char *out, size_t cap) {
  const char *v = hs_header_get(req, "x-request-id");
  if (v) {
    size_t n = strlen(v), ok = n > 0 && n <= RID_MAX;
    for (size_t i = 0; ok && i < n; i++) {
      char c = v[i];
      ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '_' || c == '-';
    }
    if (ok) { snprintf(out, cap, "%s", v); return; }
  }
  const route_rng *r = route_rng_default();
  snprintf(out, cap, "req-%016llx", (unsigned long long)r->next(r->ctx));
}

/* ---- handlers ----------------------------------------------------------------------- */

static int check_auth(hs_request *req, const char *rid, const snapshot *s) {
  if (auth_check(s->has_master_key ? s->master_key_sha256 : NULL,
                 hs_header_get(req, "authorization")) == 0)
    return 0;
  static const char body[] = AUTH_ERROR_BODY;
  hs_header h = {"www-authenticate", "Bearer"};
  server_respond(req, rid, 401, "application/json", &h, 1, body, sizeof body - 1, NULL, 0);
  return -1;
}

static const char *parse_error_code(int err) {
  switch (err) {
    case REQ_ENOMODEL: return "missing_model";
    case REQ_EMODELTYPE: return "invalid_model";
    case REQ_EDUPMODEL: return "duplicate_model";
    case REQ_EDEPTH: return "nesting_too_deep";
    case REQ_ESTREAM: return "invalid_stream";
    case REQ_EOBJECT: return "invalid_body";
    default: return "invalid_json";
  }
}

/* POST /v1/chat/completions (op CHAT_OP_COMPLETIONS) and POST /v1/embeddings. */
static void handle_openai(hs_request *req, const char *rid, enum chat_op op) {
  snapshot *s = snapshot_current();
  req_info ri;
  char msg[400];
  if (!s) {
    server_error(req, rid, 503, "server_error", "not_ready",
                 "The gateway has no routing configuration yet; retry shortly.", NULL, 0, NULL, 0);
    return;
  }
  if (check_auth(req, rid, s)) return;
  int rc = req_parse(req->body, req->body_len, &ri);
  if (rc) {
    server_error(req, rid, 400, "invalid_request_error", parse_error_code(rc), req_strerror(rc),
                 NULL, 0, NULL, 0);
    return;
  }
  int g = snapshot_group_find(s, ri.model);
  if (g < 0) {
    snprintf(msg, sizeof msg, "The model '%.200s' does not exist or is not served by this gateway.",
             ri.model);
    server_error(req, rid, 404, "invalid_request_error", "model_not_found", msg, NULL, 0, NULL, 0);
    return;
  }
  chat_opts o = {.op = op, .egress = EGRESS_OPENAI, .canon = NULL};
  attempt_serve(req, s, &ri, rid, g, &o);
}

/* ---- POST /v1/messages: Anthropic in, canonical inside, Anthropic out ------------------ */

/* Anthropic-shaped error {"type":"error","error":{type,message}}, type from the status. */
static void messages_error(hs_request *req, const char *rid, int status, const char *message) {
  buf_t b = {0};
  if (ai_error_body(ai_error_type(status), message, &b))
    server_error(req, rid, 503, "server_error", "server_busy", "Out of memory.", NULL, 0, NULL, 0);
  else
    server_respond(req, rid, status, "application/json", NULL, 0, b.data, b.len, NULL, 0);
  buf_free(&b);
}

static void handle_messages(hs_request *req, const char *rid) {
  snapshot *s = snapshot_current();
  char msg[400], err[400];
  if (!s) {
    messages_error(req, rid, 503, "The gateway has no routing configuration yet; retry shortly.");
    return;
  }
  const uint8_t *mk = s->has_master_key ? s->master_key_sha256 : NULL;
  if (auth_check(mk, hs_header_get(req, "authorization")) &&
      auth_check_key(mk, hs_header_get(req, "x-api-key"))) {
    messages_error(req, rid, 401, "Invalid or missing API key. Pass it as 'x-api-key: <key>' or "
                                  "'Authorization: Bearer <key>'.");
    return;
  }
  buf_t canon = {0};
  ai_req_info ai;
  req_info ri;
  int rc = ai_request_to_openai(req->body, req->body_len, &canon, &ai, err, sizeof err);
  if (rc == -EINVAL) {
    messages_error(req, rid, 400, err);
  } else if (rc) {
    messages_error(req, rid, 503, "Out of memory.");
  } else if ((rc = req_parse(canon.data, canon.len, &ri))) { /* our own output: not expected */
    messages_error(req, rid, 400, req_strerror(rc));
  } else {
    int g = snapshot_group_find(s, ri.model);
    if (g < 0) {
      snprintf(msg, sizeof msg, "model: '%.200s' does not exist or is not served by this gateway.",
               ri.model);
      messages_error(req, rid, 404, msg);
    } else {
      if (ai.dropped[0]) LOG_WARN(rid, "ingress_dropped", LF_S("fields", ai.dropped));
      req_info nri; /* the client's body as is: Anthropic deployments get it, model rewritten */
      int native = req_parse(req->body, req->body_len, &nri) == REQ_OK;
      chat_opts o = {.op = CHAT_OP_COMPLETIONS, .egress = EGRESS_ANTHROPIC, .canon = &canon,
                     .native = native ? &nri : NULL};
      attempt_serve(req, s, &ri, rid, g, &o); /* takes canon */
    }
  }
  buf_free(&canon);
}

static void handle_models(hs_request *req, const char *rid) {
  snapshot *s = snapshot_current();
  buf_t b = {0};
  char esc[512], own[128];
  if (!s) {
    server_error(req, rid, 503, "server_error", "not_ready",
                 "The gateway has no routing configuration yet; retry shortly.", NULL, 0, NULL, 0);
    return;
  }
  if (check_auth(req, rid, s)) return;
  int rc = buf_printf(&b, "{\"object\":\"list\",\"data\":[");
  for (int i = 0; i < s->ngroups; i++) {
    const snap_group *g = &s->groups[i];
    const char *owner = "llmesh"; /* no deployment this worker can route to */
    for (int k = 0; k < g->ndeps; k++) {
      const snap_dep *d = &s->deps[g->deps[k]];
      if (d->unsupported) continue;
      owner = *d->provider ? d->provider : "openai"; /* "": an old control plane, all openai */
      break;
    }
    log_json_escape(esc, sizeof esc, g->name, strlen(g->name));
    log_json_escape(own, sizeof own, owner, strlen(owner));
    rc |= buf_printf(&b, "%s{\"id\":\"%s\",\"object\":\"model\",\"created\":%llu,\"owned_by\":\"%s\"}",
                     i ? "," : "", esc, (unsigned long long)(s->epoch / 1000), own);
  }
  rc |= buf_printf(&b, "]}");
  if (rc) server_error(req, rid, 503, "server_error", "server_busy", "Out of memory.", NULL, 0, NULL, 0);
  else server_respond(req, rid, 200, "application/json", NULL, 0, b.data, b.len, NULL, 0);
  buf_free(&b);
}

static void handle_metrics(hs_request *req, const char *rid, server_ctx *ctx) {
  buf_t b = {0};
  snapshot *s = snapshot_current();
  metrics_gauges g = {.snapshot_version = s ? s->version : 0,
                      .open_connections = ctx->hs ? hs_server_open_connections(ctx->hs) : 0,
                      .now_ms = attempt_now_ms()};
  if (metrics_render(&b, &g))
    server_error(req, rid, 503, "server_error", "server_busy", "Out of memory.", NULL, 0, NULL, 0);
  else
    server_respond(req, rid, 200, "text/plain; version=0.0.4", NULL, 0, b.data, b.len, NULL, 0);
  buf_free(&b);
}

static void plain(hs_request *req, const char *rid, int status, const char *body) {
  server_respond(req, rid, status, "application/json", NULL, 0, body, strlen(body), NULL, 0);
}

void server_on_request(hs_request *req, void *ud) {
  server_ctx *ctx = ud;
  char rid[RID_MAX + 8];
  const char *p = req->path;
  int get = req->method == HTTP_GET || req->method == HTTP_HEAD;
  request_id(req, rid, sizeof rid);
  req->user = NULL;
  if (strcmp(p, "/v1/chat/completions") == 0 || strcmp(p, "/chat/completions") == 0) {
    if (req->method == HTTP_POST) handle_openai(req, rid, CHAT_OP_COMPLETIONS);
    else server_error(req, rid, 405, "invalid_request_error", "method_not_allowed",
                      "Use POST for /v1/chat/completions.", NULL, 0, NULL, 0);
    return;
  }
  if (strcmp(p, "/v1/messages") == 0) {
    if (req->method == HTTP_POST) handle_messages(req, rid);
    else messages_error(req, rid, 405, "Use POST for /v1/messages.");
    return;
  }
  if (strcmp(p, "/v1/embeddings") == 0 || strcmp(p, "/embeddings") == 0) {
    if (req->method == HTTP_POST) handle_openai(req, rid, CHAT_OP_EMBEDDINGS);
    else server_error(req, rid, 405, "invalid_request_error", "method_not_allowed",
                      "Use POST for /v1/embeddings.", NULL, 0, NULL, 0);
    return;
  }
  int known = strcmp(p, "/v1/models") == 0 || strcmp(p, "/healthz") == 0 ||
              strcmp(p, "/readyz") == 0 || strcmp(p, "/metrics") == 0;
  if (known && !get) {
    server_error(req, rid, 405, "invalid_request_error", "method_not_allowed",
                 "Method not allowed on this path.", NULL, 0, NULL, 0);
  } else if (strcmp(p, "/v1/models") == 0) {
    handle_models(req, rid);
  } else if (strcmp(p, "/healthz") == 0) {
    plain(req, rid, 200, "{\"status\":\"ok\"}");
  } else if (strcmp(p, "/readyz") == 0) {
    if (snapshot_current()) plain(req, rid, 200, "{\"status\":\"ready\"}");
    else server_error(req, rid, 503, "server_error", "not_ready", "No snapshot applied yet.",
                      NULL, 0, NULL, 0);
  } else if (strcmp(p, "/metrics") == 0) {
    handle_metrics(req, rid, ctx);
  } else {
    char msg[300];
    snprintf(msg, sizeof msg, "Unknown path '%.150s'.", p);
    server_error(req, rid, 404, "invalid_request_error", "not_found", msg, NULL, 0, NULL, 0);
  }
}

void server_on_abort(hs_request *req, void *ud) {
  (void)ud;
  if (req->user) attempt_on_abort(req);
}

void server_on_drain(hs_request *req, void *ud) {
  (void)ud;
  if (req->user) attempt_on_drain(req);
}
