/* vertex.h — Google Vertex AI adapter (prov_vertex in provider.h, family "vertex_ai"):
 * Gemini and Anthropic (Claude) models on Vertex, OAuth2 Bearer auth. The bodies are
 * the Gemini and Anthropic adapters' own; this adapter only places them (URL, headers,
 * anthropic_version) and dispatches decoding. Tokens come from gcp_token.h. */
#ifndef LLMESH_VERTEX_H
#define LLMESH_VERTEX_H

#include "provider.h"

#define VERTEX_ANTHROPIC_VERSION "vertex-2023-10-16" /* body anthropic_version on Vertex */
#define VERTEX_DEFAULT_LOCATION "us-central1"        /* when the deployment names none */

/* Which publisher's API a model speaks on Vertex. */
typedef enum vertex_family {
  VERTEX_GEMINI = 0,    /* publishers/google: generateContent (prov_gemini bodies) */
  VERTEX_ANTHROPIC = 1, /* publishers/anthropic: rawPredict (prov_anthropic bodies) */
} vertex_family;

/* Family of an upstream model name: "claude*" → VERTEX_ANTHROPIC, else VERTEX_GEMINI. */
vertex_family vertex_family_of(const char *upstream_model);

/* The adapter whose decoders fit a family (&prov_gemini or &prov_anthropic). prov_vertex
 * dispatches by looking at the answer; a caller that knows the deployment may use these. */
const provider_ops *vertex_family_ops(vertex_family f);

#endif
