/* azure.h — internals of the Azure OpenAI adapter (prov_azure in provider.h), shared by
 * azure.c (chat: URL, splices, answers, streams, error classes) and azure_embed.c
 * (embeddings). Nothing outside the adapter and its tests includes this. */
#ifndef LLMESH_AZURE_H
#define LLMESH_AZURE_H

#include <stddef.h>

#include "provider.h"

/* The upstream URL for operation op ("chat/completions", "embeddings") of t's deployment,
 * classic or v1 surface (rules in azure.c), written to url (a zeroed buf_t; caller frees);
 * the deployment name to dep[0..deplen). 0, -EINVAL with a client-facing err, or -ENOMEM. */
int azure_url(const prov_target *t, const char *op, buf_t *url, char *dep, size_t deplen,
              char *err, size_t errlen);

/* Appends the JSON object text json[0..len) (already accepted by jansson) with its top-level
 * "model" set to model (inserted when absent); every other byte as sent. 0 or -ENOMEM. */
int azure_copy_with_model(buf_t *out, const char *json, size_t len, const char *model);

/* Embeddings (azure_embed.c); contracts as in provider_ops. */
int azure_build_embeddings(const prov_target *t, const char *body, size_t len, prov_request *out,
                           char *err, size_t errlen);
int azure_decode_embeddings(const char *body, size_t len, const char *model, buf_t *out,
                            prov_usage *usage);

#endif
