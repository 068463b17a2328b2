/* provider.h — the provider adapter interface (one file per provider family).
 *
 * The canonical form inside llmesh is OpenAI chat completions. An adapter turns a
 * canonical request into its provider's request (URL, headers, body), decodes the
 * provider's answer back into canonical form — whole or as a stream, chunk by chunk —
 * and classifies the provider's errors. Adapters are pure: no I/O, no libuv, no curl,
 * so golden vectors and fuzz targets drive them directly. JSON translation uses
 * jansson (correctness first); only the openai passthrough avoids a parse. Tool-call
 * arguments are never re-encoded: they travel as the sender's bytes (prov_json.h: raw spans
 * out, splices in), and every dump prints reals in their shortest round-trip form.
 *
 *   canonical request ──build_request──▶ upstream request
 *   upstream body     ──decode_response─▶ canonical chat.completion JSON
 *   upstream bytes    ──stream_feed*────▶ canonical SSE ("data: {chunk}\n\n" … "data: [DONE]\n\n")
 *   status + body     ──classify_error──▶ error class (+ retry hint)
 *
 * Errors are negative numbers; functions that can reject input also fill an
 * `err` message meant for the client (never containing a URL, host or key). */
#ifndef LLMESH_PROVIDER_H
#define LLMESH_PROVIDER_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

/* Why an upstream answer failed; drives failover, health accounting and the client's
 * error. Stable numbering: metrics and logs print prov_error_name(). */
typedef enum prov_error {
  PE_NONE = 0,
  PE_RATE_LIMITED,          /* 429 / quota per minute: cool down, try elsewhere */
  PE_OVERLOADED,            /* 529 / 503 overloaded: retry elsewhere */
  PE_AUTH,                  /* 401/403 or invalid key: credential failed, alert */
  PE_BAD_REQUEST,           /* 400-class: the client's fault, relay, never failover */
  PE_CONTEXT_LENGTH,        /* prompt too long: context_window_fallbacks */
  PE_CONTENT_POLICY,        /* refused by a content filter: content_policy_fallbacks */
  PE_NOT_FOUND,             /* unknown model / deployment */
  PE_SERVER,                /* 5xx */
  PE_TIMEOUT,               /* 408 / 504 / upstream deadline */
  PE_GARBAGE,               /* unparseable answer or stream */
  PE__COUNT
} prov_error;

const char *prov_error_name(prov_error e); /* "rate_limited", ... */

/* What the adapter needs to know about the deployment it talks to. */
typedef struct prov_target {
  const char *api_base;       /* base URL without trailing slash, e.g. "https://api.anthropic.com/v1" */
  const char *api_key;        /* provider credential, "" when none */
  const char *upstream_model; /* model name the provider knows */
  const char *api_version;    /* azure api-version / anthropic-version override, "" = default */
  /* AWS (bedrock): SigV4 credentials and region. NULL or "" when unused; bedrock falls back
   * to api_key as a Bedrock API key (Authorization: Bearer) without an access key id. */
  const char *aws_access_key_id;     /* AKIA.../ASIA..., "" = no SigV4 */
  const char *aws_secret_access_key; /* secret of that key id */
  const char *aws_session_token;     /* STS session token for temporary credentials, "" = none */
  const char *aws_region;            /* e.g. "us-east-1": host and signing scope */
  /* Google Vertex AI (vertex.c): project and location of the deployment, and the OAuth2
   * access token the worker minted for it (gcp_token.h). NULL or "" when unused. */
  const char *gcp_project;  /* project id, e.g. "my-project-123"; "" = from a full Vertex api_base */
  const char *gcp_location; /* region, e.g. "us-central1", or "global"; "" = us-central1 */
  const char *access_token; /* short-lived OAuth2 token sent as "Authorization: Bearer", "" = none */
} prov_target;

/* An upstream request built by an adapter. Free with prov_request_free. */
typedef struct prov_request {
  buf_t url;      /* full URL, NUL-terminated (buf_cstr) */
  buf_t headers;  /* "Name: value\0Name: value\0" — each NUL-terminated, for curl_slist */
  int nheaders;   /* entries in headers */
  buf_t body;     /* request body */
  char dropped[256]; /* comma-separated top-level request fields the adapter dropped
                      * (present in the request, no upstream slot); "" when none. Logged
                      * by the caller as `fields_dropped`. */
} prov_request;

void prov_request_free(prov_request *r);
int prov_request_header(prov_request *r, const char *name, const char *value); /* appends one */
/* Appends field to r->dropped once (no duplicates); a name that does not fit whole is
 * left out, so the list never holds a cut name and stays NUL-terminated. */
void prov_request_dropped(prov_request *r, const char *field);

/* The canonical request as the worker sees it: the client's OpenAI-format body. */
typedef struct prov_canon {
  const char *body;     /* OpenAI chat completions request JSON */
  size_t len;           /* bytes in body */
  int stream;           /* "stream": true */
  int include_usage;    /* stream_options.include_usage: emit a usage chunk at the end */
} prov_canon;

/* Incremental stream decoder state; opaque per adapter. */
typedef struct prov_stream prov_stream;

/* Usage in the provider's native buckets (billing) plus OpenAI-shaped totals. */
typedef struct prov_usage {
  uint64_t prompt_tokens;       /* OpenAI prompt_tokens (includes cached) */
  uint64_t completion_tokens;   /* OpenAI completion_tokens (includes reasoning) */
  uint64_t cached_tokens;       /* prompt tokens read from cache */
  uint64_t cache_write_tokens;  /* prompt tokens written to cache (Anthropic/Bedrock) */
  int seen;                     /* any usage was reported */
} prov_usage;

/* Result of feeding stream bytes. */
enum prov_stream_rc {
  PS_MORE = 0,       /* need more bytes */
  PS_DONE = 1,       /* terminal event seen; canonical stream finished with [DONE] */
  PS_ERROR = -1,     /* in-band provider error; an OpenAI error event was written; see err */
  PS_GARBAGE = -2,   /* unparseable; nothing more can be decoded */
};

typedef struct provider_ops {
  const char *name; /* "openai", "anthropic", "gemini", ... */

  /* Builds the upstream request for canonical request c. Returns 0, or -EINVAL with a
   * client-facing message in err when the request cannot be expressed for this
   * provider (→ 400), or -ENOMEM. */
  int (*build_request)(const prov_target *t, const prov_canon *c, prov_request *out,
                       char *err, size_t errlen);

  /* Decodes a whole 2xx upstream body into a canonical chat.completion JSON appended
   * to out; fills usage. Returns 0 or PS_GARBAGE. model: the name to report. */
  int (*decode_response)(const char *body, size_t len, const char *model, buf_t *out,
                         prov_usage *usage);

  /* Stream decoding. stream_new returns NULL on ENOMEM. stream_feed may be called with
   * any split of the upstream bytes (down to one byte at a time) and must produce the
   * same output for every split. Canonical SSE events are appended to out. stream_end
   * is called at upstream EOF: returns PS_DONE if the stream was complete, else
   * PS_GARBAGE (cut). */
  prov_stream *(*stream_new)(const prov_canon *c, const char *model);
  int (*stream_feed)(prov_stream *s, const char *data, size_t len, buf_t *out, prov_usage *usage,
                     prov_error *err);
  int (*stream_end)(prov_stream *s, buf_t *out, prov_usage *usage);
  void (*stream_free)(prov_stream *s);

  /* Classifies a non-2xx answer. retry_after_ms: from the body when the provider puts
   * it there (Gemini RetryInfo), else left untouched (headers are read by the caller). */
  prov_error (*classify_error)(int status, const char *body, size_t len, uint64_t *retry_after_ms);

  /* Embeddings (optional; NULL = the family has none: never routed an embeddings request).
   * build_embeddings: OpenAI /v1/embeddings request body → upstream request; 0, -EINVAL
   * with a client-facing err (→ 400 when no deployment can take it), or -ENOMEM.
   * decode_embeddings: a 2xx upstream body → OpenAI {"object":"list","data":[{"object":
   * "embedding","index","embedding":[floats]}],"model","usage"} appended to out; 0 or
   * PS_GARBAGE. encoding_format "base64" is applied by the caller (prov_embeddings_base64). */
  int (*build_embeddings)(const prov_target *t, const char *body, size_t len, prov_request *out,
                          char *err, size_t errlen);
  int (*decode_embeddings)(const char *body, size_t len, const char *model, buf_t *out,
                           prov_usage *usage);
} provider_ops;

extern const provider_ops prov_openai;
extern const provider_ops prov_anthropic;
extern const provider_ops prov_gemini;
extern const provider_ops prov_bedrock;
extern const provider_ops prov_vertex; /* Gemini and Claude on Google Vertex AI */
extern const provider_ops prov_azure;
extern const provider_ops prov_ollama;

/* OpenAI embeddings list JSON with float arrays → the same with every `embedding` as the
 * base64 of its little-endian float32 values (encoding_format "base64"), appended to out.
 * Returns 0, PS_GARBAGE (not such a list) or -ENOMEM. (providers/embeddings.c) */
int prov_embeddings_base64(const char *json, size_t len, buf_t *out);

/* Looks an adapter up by provider family name; NULL if unknown. */
const provider_ops *provider_find(const char *name);

#endif
