/* mock_provider.c — llmesh-mock-provider: a provider mock speaking the OpenAI,
 * Anthropic, Gemini and Ollama wire formats with fault scripting, the upstream of the
 * integration tests and the benchmark.
 *
 *   llmesh-mock-provider --listen 127.0.0.1:9001 [--name NAME] [--log-level L]
 *
 * Provider requests take the next fault from a FIFO queue (POST /mock/faults), else the
 * default fault (POST /mock/default), whatever their format; GET /mock/stats counts
 * what happened. This file: routing, control API, main. See mock.h for the rest. */
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_server.h"
#include "log.h"
#include "mock.h"
#include "util.h"

struct mock M;

/* ---- control API -------------------------------------------------------------- */

static void respond_json(hs_request *req, int status, const char *body) {
  hs_respond(req, status, "application/json", NULL, 0, body, strlen(body));
}
static json_t *body_json(hs_request *req) {
  json_error_t e;
  if (req->body_len == 0) return json_object();
  return json_loadb(req->body, req->body_len, 0, &e);
}

static void handle_faults(hs_request *req) {
  json_t *root = body_json(req);
  json_t *arr = root ? json_object_get(root, "faults") : NULL;
  if (!json_is_array(arr)) {
    openai_error(req, 400, "invalid_request_error", "invalid_value", "expected {\"faults\":[F...]}", NULL, 0);
    json_decref(root);
    return;
  }
  size_t i, n = json_array_size(arr);
  mock_fault *head = NULL, *tail = NULL;
  const char *err = NULL;
  json_t *v;
  json_array_foreach(arr, i, v) {
    mock_fault *f = fault_parse(v, &err);
    if (!f) break;
    if (tail) tail->next = f;
    else head = f;
    tail = f;
  }
  for (mock_fault *f = err ? NULL : head; f; f = f->next) fault_posted(f);
  if (err) { /* all or nothing */
    while (head) {
      mock_fault *f = head;
      head = f->next;
      fault_unref(f);
    }
    openai_error(req, 400, "invalid_request_error", "invalid_value", err, NULL, 0);
  } else {
    if (head) {
      if (M.qtail) M.qtail->next = head;
      else M.qhead = head;
      M.qtail = tail;
      M.queued += (int)n;
    }
    char out[64];
    snprintf(out, sizeof out, "{\"queued\":%d}", M.queued);
    respond_json(req, 200, out);
  }
  json_decref(root);
}

static void handle_default(hs_request *req) {
  json_t *root = body_json(req);
  const char *err = "malformed JSON";
  mock_fault *f = root ? fault_parse(root, &err) : NULL;
  json_decref(root);
  if (!f) {
    openai_error(req, 400, "invalid_request_error", "invalid_value", err, NULL, 0);
    return;
  }
  fault_posted(f);
  fault_unref(M.deflt);
  M.deflt = f;
  respond_json(req, 200, "{\"ok\":true}");
}

static void handle_reset(hs_request *req) {
  queue_clear();
  fault_unref(M.deflt);
  M.deflt = NULL;
  M.requests = M.completed = M.cancelled = 0; /* in_flight is a gauge: kept */
  M.last.set = 0;
  M.rng = M.seed; /* the same script after a reset draws the same sequence */
  vertex_reset();
  respond_json(req, 200, "{\"ok\":true}");
}

static void handle_stats(hs_request *req) {
  json_t *o = json_pack("{sIsIsIsIsisI}", "requests", (json_int_t)M.requests, "completed",
                        (json_int_t)M.completed, "cancelled", (json_int_t)M.cancelled, "in_flight",
                        (json_int_t)M.in_flight, "queued", M.queued, "tokens_issued", (json_int_t)M.tokens_issued);
  json_object_set_new(o, "last_request", last_request_json());
  char *s = json_dumps(o, JSON_COMPACT);
  respond_json(req, 200, s);
  free(s);
  json_decref(o);
}

static void handle_models(hs_request *req) {
  M.out.len = 0;
  ob_printf(&M.out,
            "{\"object\":\"list\",\"data\":[{\"id\":\"%s\",\"object\":\"model\",\"created\":1721172741,"
            "\"owned_by\":\"llmesh-mock\"}]}",
            esc_tmp(M.name, strlen(M.name)));
  hs_respond(req, 200, "application/json", NULL, 0, M.out.p, M.out.len);
}

static void on_request(hs_request *req, void *ud) {
  const char *p = req->path;
  int is_post = strcmp(req->method_str, "POST") == 0, is_get = strcmp(req->method_str, "GET") == 0;
  const mock_endpoint *ep = NULL;
  if (is_post) { /* the benchmark's path first */
    if (strcmp(p, "/v1/chat/completions") == 0) ep = &mock_openai_chat;
    else if (strcmp(p, "/v1/messages") == 0) ep = &mock_anthropic_messages;
    else if (strcmp(p, "/api/chat") == 0) ep = &mock_ollama_chat;
    else if (strcmp(p, "/v1/embeddings") == 0) ep = &mock_openai_embed;
    else if (strcmp(p, "/api/embed") == 0) ep = &mock_ollama_embed;
    else if (!(ep = gemini_route(p)) && !(ep = azure_route(p)) && !(ep = bedrock_route(p)))
      ep = vertex_route(p);
  }
  if (ep) { call_handle(req, ep); return; }
  if (is_get && strcmp(p, "/v1/models") == 0) handle_models(req);
  else if (is_post && strcmp(p, "/mock/faults") == 0) handle_faults(req);
  else if (is_post && strcmp(p, "/mock/default") == 0) handle_default(req);
  else if (is_post && strcmp(p, "/mock/reset") == 0) handle_reset(req);
  else if (is_get && strcmp(p, "/mock/stats") == 0) handle_stats(req);
  else if (is_post && strcmp(p, "/token") == 0) vertex_token(req);
  else if (is_post && strcmp(p, "/mock/token") == 0) vertex_token_control(req);
  else if (is_get && strcmp(p, "/healthz") == 0) respond_json(req, 200, "{\"ok\":true}");
  else {
    log_request(req, 404, NULL);
    openai_error(req, 404, "invalid_request_error", "unknown_url", "Unknown request URL (mock)", NULL, 0);
  }
}

static void on_abort(hs_request *req, void *ud) { call_on_abort(req); }

static void on_drain(hs_request *req, void *ud) { call_on_drain(req); }

/* ---- main --------------------------------------------------------------------- */

static void on_signal(uv_signal_t *h, int signum) {
  if (M.stopping) return;
  M.stopping = 1;
  LOG_INFO(NULL, "stopping", LF_I("signal", signum));
  hs_server_free(M.srv); /* aborts in-flight calls: their timers close */
  M.srv = NULL;
  uv_close((uv_handle_t *)&M.sigterm, NULL);
  uv_close((uv_handle_t *)&M.sigint, NULL);
}

static void usage(FILE *out) {
  fprintf(out,
          "usage: llmesh-mock-provider --listen HOST:PORT [--name NAME] [--log-level L] [--aws-secret S] [--seed N]\n"
          "\n"
          "A provider mock (OpenAI, Anthropic, Gemini, Ollama, Azure OpenAI, Bedrock, Vertex AI\n"
          "formats) with fault scripting (tests and benchmarks).\n"
          "  --listen HOST:PORT  address to serve on (required; port 0 picks one, logged as \"listening\")\n"
          "  --name NAME         name used in the reply \"[NAME] Hello from the mock.\" (default mock)\n"
          "  --log-level L       debug|info|warn|error (default info)\n"
          "  --aws-secret S      verify Bedrock SigV4 signatures with this secret key (default: shape only)\n"
          "  --seed N            seed of the PRNG behind faults with a rate (default 1; /mock/reset restores it)\n"
          "  --help              this text\n"
          "\n"
          "Provider endpoints (POST): /v1/chat/completions, /v1/embeddings (OpenAI); /v1/messages\n"
          "(Anthropic); /v1beta/models/M:generateContent, :streamGenerateContent?alt=sse,\n"
          ":embedContent, :batchEmbedContents (Gemini); /api/chat, /api/embed (Ollama);\n"
          "/openai/deployments/D/chat/completions?api-version=V, .../embeddings, /openai/v1/chat/completions\n"
          "(Azure, api-key); /model/M/converse, /model/M/converse-stream (Bedrock, SigV4 or Bearer);\n"
          "/v1/projects/P/locations/L/publishers/google/models/M:generateContent, :streamGenerateContent,\n"
          ".../publishers/anthropic/models/M:rawPredict, :streamRawPredict (Vertex AI, Bearer token from\n"
          "POST /token, a JWT-bearer grant). Also GET /v1/models, GET /healthz.\n"
          "Control: POST /mock/faults {\"faults\":[F..]}, POST /mock/default F, POST /mock/reset,\n"
          "GET /mock/stats, POST /mock/token {\"expires_in\":N,\"fail\":0|status,\"revoke\":true}. F fields: status, body, headers, delay_ms, ttft_ms, chunk_delay_ms,\n"
          "content, cut_after, error_after, garbage, hang, tool_calls [{name, arguments, id}],\n"
          "rate (0..1: share of requests the fault hits, the rest are healthy), seed (reseeds the PRNG).\n");
}

static int split_hostport(const char *s, char *host, size_t hcap, int *port) {
  const char *colon = strrchr(s, ':');
  if (!colon || colon == s) return -1;
  size_t hl = (size_t)(colon - s);
  const char *h = s;
  if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { h++; hl -= 2; }
  if (hl + 1 > hcap) return -1;
  memcpy(host, h, hl);
  host[hl] = '\0';
  char *end;
  long p = strtol(colon + 1, &end, 10);
  if (*end || p < 0 || p > 65535 || end == colon + 1) return -1;
  *port = (int)p;
  return 0;
}

int main(int argc, char **argv) {
  signal(SIGPIPE, SIG_IGN);
  const char *listen = NULL, *level = "info";
  M.name = "mock";
  M.seed = 1;
  static const struct option opts[] = {
      {"listen", required_argument, NULL, 'l'},
      {"name", required_argument, NULL, 'n'},
      {"log-level", required_argument, NULL, 'v'},
      {"aws-secret", required_argument, NULL, 's'},
      {"seed", required_argument, NULL, 'r'},
      {"help", no_argument, NULL, 'h'},
      {NULL, 0, NULL, 0},
  };
  int c;
  opterr = 0;
  while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (c) {
      case 'l': listen = optarg; break;
      case 'n': M.name = optarg; break;
      case 'v': level = optarg; break;
      case 's': M.aws_secret = optarg; break;
      case 'r': {
        char *end;
        unsigned long long v = strtoull(optarg, &end, 10);
        if (!*optarg || *end || optarg[0] == '-') {
          fprintf(stderr, "llmesh-mock-provider: --seed wants a non-negative integer, got '%s'\n", optarg);
          return 2;
        }
        M.seed = v;
        break;
      }
      case 'h': usage(stdout); return 0;
      default:
        fprintf(stderr, "llmesh-mock-provider: bad flag '%s' (see --help)\n", argv[optind - 1]);
        return 2;
    }
  }
  if (optind < argc) {
    fprintf(stderr, "llmesh-mock-provider: unexpected argument '%s' (see --help)\n", argv[optind]);
    return 2;
  }
  char host[256];
  int port;
  if (!listen) {
    fprintf(stderr, "llmesh-mock-provider: --listen HOST:PORT is required (see --help)\n");
    return 2;
  }
  if (split_hostport(listen, host, sizeof host, &port)) {
    fprintf(stderr, "llmesh-mock-provider: --listen wants HOST:PORT, got '%s'\n", listen);
    return 2;
  }
  log_init("mock", log_level_parse(level));
  M.rng = M.seed;

  size_t hl = strlen(M.name) + 32;
  M.hello = malloc(hl);
  snprintf(M.hello, hl, "[%s] Hello from the mock.", M.name);
  M.loop = uv_default_loop();
  vertex_init();

  hs_config cfg;
  hs_config_default(&cfg);
  cfg.max_body_bytes = 32 * 1024 * 1024;
  hs_callbacks cb = {.on_request = on_request, .on_abort = on_abort, .on_drain = on_drain};
  int r = hs_server_new(&M.srv, M.loop, &cfg, &cb, NULL);
  if (r == 0) r = hs_server_listen(M.srv, host, port);
  if (r < 0) {
    LOG_ERROR(NULL, "listen_failed", LF_S("listen", listen), LF_S("error", uv_strerror(r)));
    fprintf(stderr, "llmesh-mock-provider: cannot listen on %s: %s\n", listen, uv_strerror(r));
    if (M.srv) hs_server_free(M.srv);
    uv_run(M.loop, UV_RUN_DEFAULT);
    uv_loop_close(M.loop);
    free(M.hello);
    return 1;
  }
  uv_signal_init(M.loop, &M.sigterm);
  uv_signal_init(M.loop, &M.sigint);
  uv_signal_start(&M.sigterm, on_signal, SIGTERM);
  uv_signal_start(&M.sigint, on_signal, SIGINT);
  LOG_INFO(NULL, "listening", LF_S("listen", listen), LF_I("port", hs_server_port(M.srv)), LF_S("name", M.name));

  uv_run(M.loop, UV_RUN_DEFAULT);

  queue_clear();
  fault_unref(M.deflt);
  free(M.last.arena.p);
  free(M.out.p);
  free(M.esc.p);
  free(M.hello);
  vertex_free();
  uv_loop_close(M.loop);
  return 0;
}
