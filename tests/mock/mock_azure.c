/* mock_azure.c — Azure OpenAI: POST /openai/deployments/{deployment}/chat/completions and
 * /embeddings (api-version query required), POST /openai/v1/chat/completions and
 * /openai/v1/embeddings (api-version optional). Key: api-key header. Answers are the
 * OpenAI handler's with the deployment as model and Azure's content-filter annotations
 * (a prompt_filter_results chunk first, choices[].content_filter_results, one
 * asynchronous-filter chunk without a delta); errors {"error":{"code":"<status>",...}}. */
#include <stdio.h>
#include <string.h>

#include "mock.h"
#include "util.h"

static const char *azure_auth(const hs_request *req, char *buf, size_t cap) {
  return hs_header_get(req, "api-key");
}

/* The deployment named by a /openai/deployments/{d}/... path into buf, else NULL. */
static const char *azure_deployment(const hs_request *req, char *buf, size_t cap) {
  static const char pre[] = "/openai/deployments/";
  if (strncmp(req->path, pre, sizeof pre - 1) != 0) return NULL;
  const char *d = req->path + sizeof pre - 1, *slash = strchr(d, '/');
  if (!slash || slash == d) return NULL;
  size_t n = (size_t)(slash - d);
  if (n >= cap) n = cap - 1;
  memcpy(buf, d, n);
  buf[n] = '\0';
  return buf;
}

static void azure_body(hs_request *req, int status, const char *code, const char *msg, const hs_header *h, int n) {
  M.out.len = 0;
  ob_printf(&M.out, "{\"error\":{\"code\":\"%s\",\"message\":\"%s\"}}", code, msg);
  hs_respond(req, status, "application/json", h, n, M.out.p, M.out.len);
}

static int azure_refuse(mock_call *call, int status, const char *code, const char *msg) {
  log_request(call->req, status, NULL);
  azure_body(call->req, status, code, msg, NULL, 0);
  return -1;
}

static void azure_status(mock_call *call, const mock_fault *f, hs_header *h, int n) {
  static const hs_header rl[] = {
      {"retry-after", "1"},
      {"retry-after-ms", "1000"},
      {"x-ratelimit-remaining-requests", "0"},
      {"x-ratelimit-remaining-tokens", "0"},
  };
  n = headers_merge(h, n, rl, f->status == 429 ? ARRAY_SIZE(rl) : 0, f);
  if (f->body) {
    hs_respond(call->req, f->status, "application/json", h, n, f->body, strlen(f->body));
    return;
  }
  char code[32];
  snprintf(code, sizeof code, "%d", f->status);
  const char *msg = "Mock provider error (scripted by the mock)";
  switch (f->status) {
    case 400: msg = "Invalid request (scripted by the mock)"; break;
    case 401: msg = "Access denied due to invalid subscription key or wrong API endpoint. (scripted by the mock)"; break;
    case 404:
      snprintf(code, sizeof code, "DeploymentNotFound");
      msg = "The API deployment for this resource does not exist. (scripted by the mock)";
      break;
    case 429:
      msg = "Requests to the ChatCompletions_Create Operation under Azure OpenAI API version 2024-10-21 have "
            "exceeded token rate limit of your current tier. Please retry after 1 second. (scripted by the mock)";
      break;
    case 500: msg = "The server had an error while processing your request. (scripted by the mock)"; break;
    case 503: msg = "The service is temporarily unable to process your request. (scripted by the mock)"; break;
    default: break;
  }
  azure_body(call->req, f->status, code, msg, h, n);
}

/* api-key, and api-version on the deployments surface. */
static int azure_common(mock_call *call, json_t *root) {
  hs_request *req = call->req;
  char buf[64];
  const char *key = hs_header_get(req, "api-key");
  if (!key || !*key)
    return azure_refuse(call, 401, "401",
                        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide "
                        "a valid key for an active subscription and use a correct regional API endpoint for your "
                        "resource. (mock: api-key header required)");
  const char *ver = query_get(req->query, "api-version", buf, sizeof buf);
  if (strncmp(req->path, "/openai/deployments/", 20) == 0 && (!ver || !*ver))
    return azure_refuse(call, 400, "BadRequest", "Missing required query parameter: api-version (mock)");
  if (!json_is_object(root)) return azure_refuse(call, 400, "BadRequest", "Could not parse the JSON body of your request.");
  call->azure = 1;
  return 0;
}

/* The answer's model: the deployment, else (v1 surface) the body's model. */
static int azure_model(mock_call *call, json_t *root, const char **m, size_t *n, char *buf, size_t cap) {
  json_t *model = json_object_get(root, "model");
  if ((*m = azure_deployment(call->req, buf, cap))) {
    *n = strlen(*m);
    return 0;
  }
  if (!json_is_string(model)) return azure_refuse(call, 400, "BadRequest", "model is required (the deployment name)");
  *m = json_string_value(model);
  *n = json_string_length(model);
  return 0;
}

static int chat_accept(mock_call *call, json_t *root) {
  char buf[256];
  const char *m;
  size_t n;
  if (azure_common(call, root) < 0 || azure_model(call, root, &m, &n, buf, sizeof buf) < 0) return -1;
  openai_chat_setup(call, root, m, n);
  return 0;
}

static int embed_accept(mock_call *call, json_t *root) {
  char buf[256];
  const char *m;
  size_t n;
  if (azure_common(call, root) < 0 || azure_model(call, root, &m, &n, buf, sizeof buf) < 0) return -1;
  if (!openai_embed_input_ok(json_object_get(root, "input")))
    return azure_refuse(call, 400, "BadRequest", "'input' must be a string or an array of strings or token arrays");
  call->model_esc = esc_dup(m, n);
  return 0;
}

static const char *azure_path_model(const hs_request *req, char *buf, size_t cap) {
  return azure_deployment(req, buf, cap);
}

/* OpenAI's stream hooks, with Azure's auth and errors (filled in by azure_route's first call). */
static mock_format mock_azure;
static int azure_ready;

static mock_endpoint azure_chat, azure_embed;

const mock_endpoint *azure_route(const char *path) {
  if (strncmp(path, "/openai/", 8) != 0) return NULL;
  if (!azure_ready) {
    mock_azure = mock_openai;
    mock_azure.name = "azure";
    mock_azure.auth = azure_auth;
    mock_azure.path_model = azure_path_model;
    mock_azure.error = azure_status;
    azure_chat = (mock_endpoint){&mock_azure, chat_accept, mock_openai_chat.whole};
    azure_embed = (mock_endpoint){&mock_azure, embed_accept, mock_openai_embed.whole};
    azure_ready = 1;
  }
  const char *tail = NULL;
  if (strncmp(path, "/openai/v1/", 11) == 0) {
    tail = path + 11;
  } else if (strncmp(path, "/openai/deployments/", 20) == 0) {
    const char *slash = strchr(path + 20, '/');
    if (!slash || slash == path + 20) return NULL;
    tail = slash + 1;
  }
  if (!tail) return NULL;
  if (strcmp(tail, "chat/completions") == 0) return &azure_chat;
  if (strcmp(tail, "embeddings") == 0) return &azure_embed;
  return NULL;
}
