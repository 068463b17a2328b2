/* mock_bedrock.c — AWS Bedrock Converse: POST /model/{modelId}/converse (JSON) and
 * /model/{modelId}/converse-stream (application/vnd.amazon.eventstream: binary frames with
 * prelude and message CRC32). modelId is one percent-encoded path segment (decoded for the
 * answer). Auth: `Authorization: Bearer <key>` or a SigV4 header of the right shape
 * (service bedrock, x-amz-date present; with --aws-secret the signature is recomputed and
 * must match), else 403 UnrecognizedClientException. Errors {"message"} with
 * x-amzn-ErrorType and x-amzn-RequestId; stream errors are exception frames. */
#include <ctype.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "log.h"
#include "mock.h"
#include "util.h"

/* ---- event-stream frames ------------------------------------------------------- */

static uint32_t crc32_ieee(uint32_t crc, const unsigned char *p, size_t n) {
  static uint32_t tbl[256];
  if (!tbl[1])
    for (uint32_t i = 0; i < 256; i++) {
      uint32_t c = i;
      for (int k = 0; k < 8; k++) c = c & 1 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
      tbl[i] = c;
    }
  crc = ~crc;
  while (n--) crc = tbl[(crc ^ *p++) & 0xff] ^ (crc >> 8);
  return ~crc;
}

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16), p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

static void hdr_str(obuf *b, const char *name, const char *val) {
  size_t nl = strlen(name), vl = strlen(val);
  unsigned char pre[1] = {(unsigned char)nl}, mid[3] = {7, (unsigned char)(vl >> 8), (unsigned char)vl};
  ob_add(b, (const char *)pre, 1);
  ob_add(b, name, nl);
  ob_add(b, (const char *)mid, 3);
  ob_add(b, val, vl);
}

/* Appends one frame: message-type mt, kind header (":event-type" or ":exception-type") = type,
 * JSON payload. bad_crc: the message CRC is wrong (garbage). */
static void frame(obuf *b, const char *mt, const char *type, const char *payload, size_t plen, int bad_crc) {
  size_t start = b->len;
  ob_add(b, "\0\0\0\0\0\0\0\0\0\0\0\0", 12);
  size_t h0 = b->len;
  int exc = strcmp(mt, "exception") == 0;
  hdr_str(b, exc ? ":exception-type" : ":event-type", type);
  hdr_str(b, ":content-type", "application/json");
  hdr_str(b, ":message-type", mt);
  size_t hlen = b->len - h0;
  ob_add(b, payload, plen);
  ob_add(b, "\0\0\0\0", 4);
  unsigned char *p = (unsigned char *)b->p + start;
  uint32_t total = (uint32_t)(b->len - start);
  put32(p, total);
  put32(p + 4, (uint32_t)hlen);
  put32(p + 8, crc32_ieee(0, p, 8));
  put32(p + total - 4, crc32_ieee(0, p, total - 4) ^ (bad_crc ? 0xdeadbeefu : 0));
}

/* An event frame whose payload is printf-formatted (into a scratch buffer). */
__attribute__((format(printf, 3, 4))) static void event(obuf *b, const char *type, const char *fmt, ...) {
  static obuf pl;
  pl.len = 0;
  for (;;) {
    ob_reserve(&pl, 256);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(pl.p + pl.len, pl.cap - pl.len, fmt, ap);
    va_end(ap);
    if (n < 0) return;
    if ((size_t)n < pl.cap - pl.len) {
      pl.len += (size_t)n;
      break;
    }
    ob_reserve(&pl, (size_t)n + 1);
  }
  frame(b, "event", type, pl.p, pl.len, 0);
}

/* ---- auth ---------------------------------------------------------------------- */

static const char *bedrock_auth(const hs_request *req, char *buf, size_t cap) {
  return hs_header_get(req, "authorization");
}

static void hex(const unsigned char *d, size_t n, char *out) {
  for (size_t i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
}

static void sha256_hex(const char *s, size_t n, char out[65]) {
  unsigned char d[32];
  SHA256((const unsigned char *)s, n, d);
  hex(d, 32, out);
}

static void hmac(const void *key, size_t kl, const char *msg, size_t ml, unsigned char out[32]) {
  unsigned int ol = 32;
  HMAC(EVP_sha256(), key, (int)kl, (const unsigned char *)msg, ml, out, &ol);
}

/* Recomputes the SigV4 signature (§6.6) of req with --aws-secret; 1 = matches. */
static int sigv4_verify(const hs_request *req, const char *amz_date, const char *scope_date, const char *region,
                        const char *signed_headers, size_t shl, const char *sig) {
  obuf cr = {0}, sts = {0};
  ob_reserve(&cr, 0);
  ob_reserve(&sts, 0);
  ob_printf(&cr, "%s\n", req->method_str);
  for (const unsigned char *p = (const unsigned char *)req->path; *p; p++) /* the sent path, encoded again */
    if (isalnum(*p) || strchr("-._~/", *p)) ob_add(&cr, (const char *)p, 1);
    else ob_printf(&cr, "%%%02X", *p);
  ob_printf(&cr, "\n%s\n", req->query ? req->query : ""); /* Converse sends no query */
  for (const char *h = signed_headers, *end = signed_headers + shl; h < end;) {
    const char *semi = memchr(h, ';', (size_t)(end - h));
    size_t hl = semi ? (size_t)(semi - h) : (size_t)(end - h);
    char name[64];
    snprintf(name, sizeof name, "%.*s", (int)hl, h);
    const char *v = hs_header_get(req, name);
    if (!v) v = "";
    while (*v == ' ') v++;
    size_t vl = strlen(v);
    while (vl && v[vl - 1] == ' ') vl--;
    ob_printf(&cr, "%s:%.*s\n", name, (int)vl, v);
    h += hl + 1;
  }
  char bh[65], ch[65];
  sha256_hex(req->body, req->body_len, bh);
  ob_printf(&cr, "\n%.*s\n%s", (int)shl, signed_headers, bh);
  sha256_hex(cr.p, cr.len, ch);
  ob_printf(&sts, "AWS4-HMAC-SHA256\n%s\n%s/%s/bedrock/aws4_request\n%s", amz_date, scope_date, region, ch);
  unsigned char k[32];
  char k0[256];
  snprintf(k0, sizeof k0, "AWS4%s", M.aws_secret);
  hmac(k0, strlen(k0), scope_date, strlen(scope_date), k);
  hmac(k, 32, region, strlen(region), k);
  hmac(k, 32, "bedrock", 7, k);
  hmac(k, 32, "aws4_request", 12, k);
  hmac(k, 32, sts.p, sts.len, k);
  char mine[65];
  hex(k, 32, mine);
  LOG_DEBUG(NULL, "sigv4", LF_S("canonical_request", cr.p), LF_S("string_to_sign", sts.p));
  free(cr.p);
  free(sts.p);
  return strcmp(mine, sig) == 0;
}

/* NULL when acceptable, else why not (2 = bad signature, see *bad_sig). */
static const char *check_auth(const hs_request *req, int *bad_sig) {
  const char *a = hs_header_get(req, "authorization");
  *bad_sig = 0;
  if (!a || !*a) return "Missing Authentication Token";
  if (bearer_ok(a)) return NULL;
  static const char alg[] = "AWS4-HMAC-SHA256 Credential=";
  if (strncmp(a, alg, sizeof alg - 1) != 0) return "Authorization header requires 'Credential' parameter.";
  const char *cred = a + sizeof alg - 1, *comma = strchr(cred, ',');
  if (!comma) return "Authorization header requires 'SignedHeaders' parameter.";
  char c[256];
  snprintf(c, sizeof c, "%.*s", (int)(comma - cred), cred);
  char *parts[6] = {0}, *save = NULL;
  int np = 0;
  for (char *t = strtok_r(c, "/", &save); t && np < 6; t = strtok_r(NULL, "/", &save)) parts[np++] = t;
  if (np != 5 || strlen(parts[1]) != 8 || strcmp(parts[4], "aws4_request") != 0)
    return "Credential should be scoped to a valid region, service and date (AKID/YYYYMMDD/region/bedrock/aws4_request).";
  if (strcmp(parts[3], "bedrock") != 0) return "Credential should be scoped to correct service: 'bedrock'.";
  const char *sh = strstr(comma, "SignedHeaders="), *sg = strstr(comma, "Signature=");
  if (!sh || !sg) return "Authorization header requires 'SignedHeaders' and 'Signature' parameters.";
  sh += 14;
  size_t shl = strcspn(sh, ", ");
  sg += 10;
  size_t sgl = strcspn(sg, ", ");
  if (sgl != 64 || strspn(sg, "0123456789abcdef") < 64) return "Signature must be 64 lowercase hex digits.";
  const char *date = hs_header_get(req, "x-amz-date");
  if (!date || strlen(date) != 16 || date[8] != 'T' || date[15] != 'Z')
    return "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header.";
  if (strncmp(date, parts[1], 8) != 0) return "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP.";
  char shs[512];
  snprintf(shs, sizeof shs, ";%.*s;", (int)shl, sh);
  if (!strstr(shs, ";host;") || !strstr(shs, ";x-amz-date;")) return "SignedHeaders must include host and x-amz-date.";
  if (M.aws_secret) {
    char sig[65];
    memcpy(sig, sg, 64);
    sig[64] = '\0';
    if (!sigv4_verify(req, date, parts[1], parts[2], sh, shl, sig)) {
      *bad_sig = 1;
      return "The request signature we calculated does not match the signature you provided. Check your AWS "
             "Secret Access Key and signing method. Consult the service documentation for details.";
    }
  }
  return NULL;
}

/* ---- answers ------------------------------------------------------------------- */

/* "/model/us.anthropic.claude%3A0/converse" → "us.anthropic.claude:0" (decoded). */
static const char *bedrock_path_model(const hs_request *req, char *buf, size_t cap) {
  const char *m = req->path + 7, *slash = strrchr(req->path, '/');
  if (strncmp(req->path, "/model/", 7) != 0 || !slash || slash < m) return NULL;
  size_t o = 0;
  for (const char *p = m; p < slash && o + 1 < cap; p++) {
    if (*p == '%' && p + 2 < slash && isxdigit((unsigned char)p[1]) && isxdigit((unsigned char)p[2])) {
      char h[3] = {p[1], p[2], 0};
      buf[o++] = (char)strtol(h, NULL, 16);
      p += 2;
    } else {
      buf[o++] = *p;
    }
  }
  buf[o] = '\0';
  return buf;
}

static int bedrock_headers(mock_call *call, hs_header *h) {
  if (!call->request_id[0])
    snprintf(call->request_id, sizeof call->request_id, "0d7e5a1c-mock-4000-8000-%012llu", (unsigned long long)call->seq);
  h[0] = (hs_header){"x-amzn-RequestId", call->request_id};
  return 1;
}

static void bedrock_error_body(mock_call *call, int status, const char *type, const char *msg, hs_header *h, int n,
                               const mock_fault *f) {
  char et[160];
  snprintf(et, sizeof et, "%s:http://internal.amazon.com/coral/com.amazon.bedrock/", type);
  hs_header d[1] = {{"x-amzn-ErrorType", et}};
  n = headers_merge(h, n, d, 1, f);
  if (f && f->body) {
    hs_respond(call->req, status, "application/json", h, n, f->body, strlen(f->body));
    return;
  }
  M.out.len = 0;
  ob_printf(&M.out, "{\"message\":\"%s\"}", msg);
  hs_respond(call->req, status, "application/json", h, n, M.out.p, M.out.len);
}

static int refuse(mock_call *call, int status, const char *type, const char *msg) {
  hs_header h[64];
  int n = bedrock_headers(call, h);
  log_request(call->req, status, NULL);
  bedrock_error_body(call, status, type, msg, h, n, NULL);
  return -1;
}

static void bedrock_status(mock_call *call, const mock_fault *f, hs_header *h, int n) {
  const char *type = "ValidationException", *msg = "Invalid request (scripted by the mock)";
  switch (f->status) {
    case 403: type = "AccessDeniedException"; msg = "You don't have access to the model with the specified model ID. (scripted by the mock)"; break;
    case 404: type = "ResourceNotFoundException"; msg = "Could not resolve the foundation model from the provided model identifier. (scripted by the mock)"; break;
    case 408: type = "ModelTimeoutException"; msg = "Model has timed out in processing the request. (scripted by the mock)"; break;
    case 424: type = "ModelErrorException"; msg = "The model returned an error. (scripted by the mock)"; break;
    case 429: type = "ThrottlingException"; msg = "Too many tokens, please wait before trying again. (scripted by the mock)"; break;
    case 503: type = "ServiceUnavailableException"; msg = "Bedrock is unable to process your request. (scripted by the mock)"; break;
    default:
      if (f->status >= 500) { type = "InternalServerException"; msg = "The server encountered an internal error. (scripted by the mock)"; }
      break;
  }
  bedrock_error_body(call, f->status, type, msg, h, n, f);
}

static int converse_accept(mock_call *call, json_t *root) {
  hs_request *req = call->req;
  int bad_sig;
  const char *why = check_auth(req, &bad_sig);
  if (why) {
    if (bad_sig) return refuse(call, 403, "InvalidSignatureException", why);
    hs_header h[64];
    int n = bedrock_headers(call, h);
    h[n++] = (hs_header){"x-amzn-ErrorType", "UnrecognizedClientException:http://internal.amazon.com/coral/com.amazon.coral.service/"};
    log_request(req, 403, NULL);
    M.out.len = 0;
    ob_printf(&M.out, "{\"message\":\"%s\"}", why);
    hs_respond(req, 403, "application/json", h, n, M.out.p, M.out.len);
    return -1;
  }
  char buf[512];
  const char *model = bedrock_path_model(req, buf, sizeof buf);
  if (!model || !*model) return refuse(call, 400, "ValidationException", "The provided model identifier is invalid.");
  if (!json_is_object(root)) return refuse(call, 400, "ValidationException", "Malformed input request, please reformat your input and try again.");
  json_t *msgs = json_object_get(root, "messages");
  if (!json_is_array(msgs) || !json_array_size(msgs))
    return refuse(call, 400, "ValidationException", "A conversation must start with a user message. Try again with a conversation that starts with a user message.");
  if (json_object_get(root, "model"))
    return refuse(call, 400, "ValidationException", "Malformed input request: extraneous key [model] is not permitted, please reformat your input and try again.");
  call->model_esc = esc_dup(model, strlen(model));
  call->stream = strcmp(strrchr(req->path, '/'), "/converse-stream") == 0;
  return 0;
}

static int has_text(const mock_call *call) { return call->content[0] || !call->f || !call->f->ntools; }

static void tool_id(obuf *b, const mock_fault *f, int i) {
  if (f->tools[i].id_esc) ob_printf(b, "%s", f->tools[i].id_esc);
  else ob_printf(b, "tooluse_mock_%d", i);
}

static const char *stop_reason(const mock_call *call) { return call->f && call->f->ntools ? "tool_use" : "end_turn"; }

static long latency_ms(const mock_call *call) {
  return call->req ? (long)((util_now_us() - call->req->start_us) / 1000) : 0;
}

static void converse_whole(mock_call *call, obuf *b) {
  const mock_fault *f = call->f;
  ob_printf(b, "{\"output\":{\"message\":{\"role\":\"assistant\",\"content\":[");
  if (has_text(call)) ob_printf(b, "{\"text\":\"%s\"}", esc_tmp(call->content, strlen(call->content)));
  for (int i = 0; f && i < f->ntools; i++) {
    ob_printf(b, "%s{\"toolUse\":{\"toolUseId\":\"", i || has_text(call) ? "," : "");
    tool_id(b, f, i);
    ob_printf(b, "\",\"name\":\"%s\",\"input\":%s}}", f->tools[i].name_esc, f->tools[i].args);
  }
  ob_printf(b, "]}},\"stopReason\":\"%s\",\"usage\":{\"inputTokens\":%d,\"outputTokens\":%d,\"totalTokens\":%d},"
               "\"metrics\":{\"latencyMs\":%ld}}",
            stop_reason(call), call->prompt_tokens, call->words, call->prompt_tokens + call->words, latency_ms(call));
}

static void block_stop(mock_call *call, obuf *b) {
  if (call->open_block < 0) return;
  event(b, "contentBlockStop", "{\"contentBlockIndex\":%d,\"p\":\"abcdefgh\"}", call->open_block);
  call->open_block = -1;
}

static void stream_begin(mock_call *call, obuf *b) {
  event(b, "messageStart", "{\"p\":\"abcdefghijklmnopqrstu\",\"role\":\"assistant\"}");
}

static void stream_unit(mock_call *call, obuf *b, const mock_unit *u) {
  int idx = u->tool + has_text(call);
  switch (u->kind) {
    case MU_TEXT: /* text blocks start with a delta, no contentBlockStart */
      call->open_block = 0;
      event(b, "contentBlockDelta", "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"%s\"},\"p\":\"abcd\"}", esc_tmp(u->s, u->n));
      break;
    case MU_TOOL_START: {
      block_stop(call, b);
      obuf id = {0};
      tool_id(&id, call->f, u->tool);
      event(b, "contentBlockStart", "{\"contentBlockIndex\":%d,\"start\":{\"toolUse\":{\"toolUseId\":\"%s\",\"name\":\"%s\"}},\"p\":\"abc\"}",
            idx, id.p, call->f->tools[u->tool].name_esc);
      free(id.p);
      call->open_block = idx;
      break;
    }
    case MU_TOOL_ARGS:
      event(b, "contentBlockDelta", "{\"contentBlockIndex\":%d,\"delta\":{\"toolUse\":{\"input\":\"%s\"}},\"p\":\"ab\"}", idx,
            esc_tmp(u->s, u->n));
      break;
  }
}

static void stream_finish(mock_call *call, obuf *b) {
  block_stop(call, b);
  event(b, "messageStop", "{\"p\":\"abcdefg\",\"stopReason\":\"%s\"}", stop_reason(call));
  event(b, "metadata", "{\"metrics\":{\"latencyMs\":%ld},\"p\":\"abcdefghijkl\",\"usage\":{\"inputTokens\":%d,"
                       "\"outputTokens\":%d,\"totalTokens\":%d}}",
        latency_ms(call), call->prompt_tokens, call->words, call->prompt_tokens + call->words);
}

static void stream_error(mock_call *call, obuf *b) {
  static const char msg[] = "{\"message\":\"Too many tokens, please wait before trying again. (scripted mid-stream by the mock)\"}";
  frame(b, "exception", "throttlingException", msg, sizeof msg - 1, 0);
}

static void stream_junk(mock_call *call, obuf *b, enum mock_junk where, const char *s, size_t n) {
  if (where != MJ_UNIT) return;
  char pl[512]; /* a well-formed frame whose message CRC is wrong */
  int l = snprintf(pl, sizeof pl, "{\"contentBlockIndex\":0,\"delta\":{\"text\":\"%s\"}}", esc_tmp(s, n));
  frame(b, "event", "contentBlockDelta", pl, l > 0 && (size_t)l < sizeof pl ? (size_t)l : 0, 1);
}

static const mock_format mock_bedrock = {
    .name = "bedrock",
    .stream_type = "application/vnd.amazon.eventstream",
    .args_fragments = 1,
    .auth = bedrock_auth,
    .path_model = bedrock_path_model,
    .headers = bedrock_headers,
    .error = bedrock_status,
    .begin = stream_begin,
    .unit = stream_unit,
    .finish = stream_finish,
    .stream_error = stream_error,
    .junk = stream_junk,
};

static const mock_endpoint bedrock_converse = {&mock_bedrock, converse_accept, converse_whole};

const mock_endpoint *bedrock_route(const char *path) {
  if (strncmp(path, "/model/", 7) != 0) return NULL;
  const char *slash = strrchr(path, '/');
  if (slash <= path + 7) return NULL;
  if (strcmp(slash, "/converse") == 0 || strcmp(slash, "/converse-stream") == 0) return &bedrock_converse;
  return NULL;
}
