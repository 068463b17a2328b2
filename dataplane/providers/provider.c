/* provider.c — adapter registry and helpers shared by every adapter. */
#include "provider.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static const char *const error_names[PE__COUNT] = {
    [PE_NONE] = "none",
    [PE_RATE_LIMITED] = "rate_limited",
    [PE_OVERLOADED] = "overloaded",
    [PE_AUTH] = "auth",
    [PE_BAD_REQUEST] = "bad_request",
    [PE_CONTEXT_LENGTH] = "context_length_exceeded",
    [PE_CONTENT_POLICY] = "content_policy",
    [PE_NOT_FOUND] = "not_found",
    [PE_SERVER] = "server",
    [PE_TIMEOUT] = "timeout",
    [PE_GARBAGE] = "garbage",
};

const char *prov_error_name(prov_error e) {
  return (unsigned)e < PE__COUNT ? error_names[e] : "unknown";
}

void prov_request_free(prov_request *r) {
  buf_free(&r->url);
  buf_free(&r->headers);
  buf_free(&r->body);
  r->nheaders = 0;
  r->dropped[0] = '\0';
}

void prov_request_dropped(prov_request *r, const char *field) {
  size_t have = strnlen(r->dropped, sizeof r->dropped), n = strlen(field);
  if (!n) return;
  if (have == sizeof r->dropped) r->dropped[0] = '\0', have = 0; /* never terminated */
  for (const char *p = r->dropped; *p;) { /* already listed? */
    size_t len = strcspn(p, ",");
    if (len == n && !memcmp(p, field, n)) return;
    p += len + (p[len] == ',');
  }
  size_t need = n + (have ? 1 : 0);
  if (have + need >= sizeof r->dropped) return; /* does not fit whole */
  if (have) r->dropped[have++] = ',';
  memcpy(r->dropped + have, field, n);
  r->dropped[have + n] = '\0';
}

int prov_request_header(prov_request *r, const char *name, const char *value) {
  if (buf_printf(&r->headers, "%s: %s", name, value) || buf_append(&r->headers, "", 1))
    return -ENOMEM;
  r->nheaders++;
  return 0;
}

/* Adapters register here, one line each, as they land. */
static const provider_ops *const registry[] = {
    &prov_anthropic,
    &prov_gemini,
    &prov_bedrock,
    &prov_vertex,
    &prov_azure, &prov_ollama,
    NULL,
};

const provider_ops *provider_find(const char *name) {
  for (size_t i = 0; i < sizeof registry / sizeof registry[0]; i++)
    if (registry[i] && strcasecmp(registry[i]->name, name) == 0) return registry[i];
  return NULL;
}
