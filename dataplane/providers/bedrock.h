/* bedrock.h — internals of the AWS Bedrock adapter (prov_bedrock in provider.h), shared
 * by bedrock.c (request building, SigV4, error classes) and bedrock_stream.c (Converse
 * responses and ConverseStream event streams). Only the adapter and its tests include it. */
#ifndef LLMESH_BEDROCK_H
#define LLMESH_BEDROCK_H

#include <jansson.h>
#include <stdint.h>

#include "provider.h"

/* Every JSON the adapter writes: compact, insertion order, reals with 15 significant
 * digits so a client's 0.7 stays 0.7. */
#define BEDROCK_DUMP_FLAGS JSON_COMPACT /* with prov_json_dumps: shortest reals */

/* Tests: pin the clock to now_s seconds (SigV4 x-amz-date, `created`) and restart the
 * minted-id counter; 0 returns to the wall clock. Not thread-safe (workers are
 * single-threaded). */
void prov_bedrock_set_clock(uint64_t now_s);
uint64_t bedrock_now_s(void);

/* Restarts the minted-id counter; pinned: ids carry no pid salt (bedrock_stream.c). */
void bedrock_ids_reset(int pinned);

/* Error class of an AWS error type ("ThrottlingException", "throttlingException", a
 * "prefix#Type" or "Type:uri" form; NULL = unknown) and message answered with HTTP status
 * `http` (0 = in-band exception frame). */
prov_error bedrock_error_class(int http, const char *type, const char *msg);

/* Converse responses and ConverseStream (bedrock_stream.c); contracts as in provider_ops. */
int bedrock_decode_response(const char *body, size_t len, const char *model, buf_t *out,
                            prov_usage *usage);
prov_stream *bedrock_stream_new(const prov_canon *c, const char *model);
int bedrock_stream_feed(prov_stream *s, const char *data, size_t len, buf_t *out,
                        prov_usage *usage, prov_error *err);
int bedrock_stream_end(prov_stream *s, buf_t *out, prov_usage *usage);
void bedrock_stream_free(prov_stream *s);

#endif
