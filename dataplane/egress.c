/* egress.c — the client's dialect (see egress.h). */
#include "egress.h"

#include <errno.h>
#include <string.h>

#include "log.h"
#include "stream.h"

int egress_stream_write(chat *c, const char *p, size_t n) {
  if (c->egress == EGRESS_OPENAI || c->pt) return hs_stream_write(c->req, p, n);
  if (c->egress_ended || !c->ais) return 0;
  buf_reset(&c->eg);
  int rc = ai_stream_feed(c->ais, p, n, &c->eg);
  if (rc == -ENOMEM) { /* cannot translate: end it as a cut the client can see */
    c->egress_ended = 1;
    buf_reset(&c->eg);
    if (ai_error_body("api_error", "llmesh ran out of memory translating the stream.", &c->eg) == 0) {
      int w = hs_stream_write(c->req, "event: error\ndata: ", 19);
      if (w >= 0) w = hs_stream_write(c->req, c->eg.data, c->eg.len);
      if (w >= 0) w = hs_stream_write(c->req, "\n\n", 2);
      c->terminal_sent = 1;
      return w;
    }
    c->terminal_sent = 1;
    return 0;
  }
  if (rc == AI_DONE) c->egress_ended = 1;
  if (rc == AI_ERROR || rc == AI_GARBAGE) {
    c->egress_ended = 1;
    c->terminal_sent = 1; /* the translator wrote the error event */
    LOG_WARN(c->rid, "egress_stream_error", LF_S("dialect", "anthropic"),
             LF_S("why", rc == AI_ERROR ? "upstream in-band error" : "untranslatable stream"));
  }
  return hs_stream_write(c->req, c->eg.data, c->eg.len);
}

void egress_stream_fail(chat *c, int stalled) {
  if (c->terminal_sent || c->egress_ended) return;
  if (c->egress == EGRESS_OPENAI) {
    if (stalled) hs_stream_write(c->req, STREAM_STALL_EVENT, sizeof STREAM_STALL_EVENT - 1);
    else hs_stream_write(c->req, STREAM_CUT_EVENT, sizeof STREAM_CUT_EVENT - 1);
    return;
  }
  c->egress_ended = 1;
  buf_reset(&c->eg);
  const char *msg = stalled
      ? "upstream stream stalled: no data within the idle timeout (upstream_stream_stalled)"
      : "upstream stream ended before completion (upstream_stream_cut)";
  if (buf_printf(&c->eg, "event: error\ndata: ") || ai_error_body("api_error", msg, &c->eg) ||
      buf_append(&c->eg, "\n\n", 2))
    return; /* ENOMEM: the stream ends without message_stop, which the SDK reports too */
  hs_stream_write(c->req, c->eg.data, c->eg.len);
}

int egress_whole(chat *c, int *status, const char **ctype, const char *body, size_t len,
                 buf_t *out) {
  if (c->egress == EGRESS_OPENAI || c->pt) return 1; /* pt: already in the client's dialect */
  *ctype = "application/json";
  if (*status >= 200 && *status < 300) {
    int rc = ai_response_from_openai(body, len, c->ri.model, out);
    if (rc >= 0) {
      if (rc > 0) LOG_INFO(c->rid, "egress_tool_input_dropped", LF_I("calls", rc));
      return 0;
    }
    if (rc == -ENOMEM) return rc;
    buf_reset(out);
    *status = 502;
    LOG_WARN(c->rid, "egress_untranslatable", LF_S("dialect", "anthropic"));
    return ai_error_body("api_error", "The upstream answer could not be translated to an Anthropic message.", out)
               ? -ENOMEM : 0;
  }
  return ai_error_from_openai(*status, body, len, out) ? -ENOMEM : 0;
}

int egress_error_body(int egress, int status, const char *type, const char *code,
                      const char *message, buf_t *out) {
  if (egress == EGRESS_ANTHROPIC)
    return ai_error_body(ai_error_type(status), message, out) ? -ENOMEM : 0;
  char esc[2048];
  log_json_escape(esc, sizeof esc, message, strlen(message));
  return buf_printf(out, "{\"error\":{\"message\":\"%s\",\"type\":\"%s\",\"param\":null,\"code\":\"%s\"}}",
                    esc, type, code) ? -ENOMEM : 0;
}
