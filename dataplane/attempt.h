/* attempt.h — one upstream try at a time per chat request, and the failover decision.
 *
 * A `chat` is one client chat-completion request from routing to its last byte. It
 * holds a snapshot reference, the upstream body (model rewritten, outlives every
 * transfer), the route state and the current attempt. An attempt fails over on
 * connect error, timeout, 401/403 (our credential), 408/429/5xx or garbage while the
 * client has seen nothing; a context-length or content-policy refusal goes to the group's
 * fallbacks of that kind; other 4xx are relayed as they are. Every attempt reports its
 * outcome to the deployment's breaker (breaker.h); the request's total_timeout bounds
 * every attempt, backoff and Retry-After wait. Curl callbacks only record decisions; they are
 * acted on when the transfer is done (curl_uv's done callback) or from a uv timer.
 *
 * Deployments of the OpenAI family pass the client body through (model rewritten in
 * place). Others go through their adapter (providers/provider.h): the request is built
 * per attempt, a non-2xx error body is read (capped) and classified — retryable classes
 * fail over, the client's faults are answered OpenAI-shaped without the provider's body —
 * and answers are decoded into canonical form (whole, or chunk by chunk for streams).
 *
 * In a group that hedges, a late first token starts a second chat for the same client
 * request (hedge.h); the first of the two to write to the client wins, the other is cancelled. */
#ifndef LLMESH_ATTEMPT_H
#define LLMESH_ATTEMPT_H

#include <curl/curl.h>
#include <stdint.h>
#include <uv.h>

#include "anthropic_ingress.h"
#include "curl_uv.h"
#include "gcp_auth.h"
#include "http_server.h"
#include "metrics.h"
#include "midstream.h"
#include "provider.h"
#include "ratelimit.h"
#include "request.h"
#include "route.h"
#include "snapshot.h"
#include "sse.h"
#include "util.h"

#define ATTEMPT_MAX_BODY (32u << 20)      /* non-stream upstream body cap, bytes */
#define ATTEMPT_MAX_PRECOMMIT (256u << 10) /* stream bytes buffered before the first event */
#define ATTEMPT_STREAM_IDLE_MS 30000u     /* stream idle bound when the deployment has no timeout */
#define ATTEMPT_MAX_ERROR_BODY (64u << 10) /* adapter: non-2xx body bytes read for classification */

/* What the client asked for (the upstream operation). */
enum chat_op {
  CHAT_OP_COMPLETIONS = 0, /* chat completions (also what /v1/messages becomes) */
  CHAT_OP_EMBEDDINGS,      /* embeddings: non-stream only */
};

/* The client's dialect: how canonical (OpenAI) answers are written to the client
 * (egress.h). The attempt machinery only ever sees canonical bytes. */
enum chat_egress {
  EGRESS_OPENAI = 0,  /* as is: the passthrough hot path */
  EGRESS_ANTHROPIC,   /* Anthropic Messages (POST /v1/messages) */
};

/* How a request is served beyond its group; zero = an OpenAI chat completion. */
typedef struct chat_opts {
  enum chat_op op;         /* upstream operation */
  enum chat_egress egress; /* client dialect */
  buf_t *canon;            /* canonical body built by an ingress, moved into the chat
                            * (emptied); NULL: the client's body is canonical */
  const req_info *native;  /* the client's own (non-canonical) body scanned by req_parse:
                            * deployments speaking the client's dialect get it as is, model
                            * rewritten (Anthropic → anthropic family); NULL = never */
} chat_opts;

/* Which part of a continued stream the current attempt is (chat.ms_phase). */
enum attempt_ms_phase {
  MS_ORIGINAL = 0, /* the first committed attempt (or no continuation at all) */
  MS_PENDING,      /* a continuation that has not written anything yet: its failure fails
                    * over to the next continuation, the held failure stays the client's */
  MS_SPLICED,      /* a continuation whose events reach the client; it may die and be
                    * continued again */
};

/* Why a committed stream died (chat.ms_dead / ms_fail). */
enum attempt_ms_why {
  MS_ALIVE = 0,
  MS_CUT,       /* ended without [DONE] */
  MS_STALL,     /* silent past the idle bound */
  MS_ERROR,     /* an in-band error event (held in ms_err) */
  MS_MALFORMED, /* an event that is not a JSON object */
};

typedef struct chat {
  hs_request *req;            /* client request; NULL once answered or aborted */
  snapshot *snap;             /* reference for the request's lifetime */
  char rid[72];               /* request id, in every log line */
  req_info ri;                /* model, stream flag, model span in the client body */
  const char *body;           /* canonical body: the client's (owned by req: valid while req is
                               * set) or canon's */
  buf_t canon;                /* canonical body an ingress built (egress != OPENAI) */
  int op;                     /* enum chat_op */
  int egress;                 /* enum chat_egress */
  int embed_b64;              /* embeddings asked with encoding_format "base64" */
  ai_stream *ais;             /* Anthropic egress of a stream: canonical SSE → Anthropic SSE */
  buf_t eg;                   /* egress bytes translated from one canonical chunk */
  int egress_ended;           /* the egress wrote its terminal event (stop or error) */
  size_t body_len;            /* bytes in body */
  int has_native;             /* native_ri is valid: passthrough to the client's own dialect */
  req_info native_ri;         /* model span etc. of the client's body (req->body) */
  int pt;                     /* this attempt passes the client's native body through and
                               * relays the upstream bytes as they are (no translation) */
  int native_error;           /* passthrough stream: an upstream event: error was relayed */
  buf_t up_body;              /* upstream body, model rewritten; outlives the transfer */
  const char *up_model;       /* upstream model up_body carries (NULL: none built) */
  route_state route;          /* what was tried */
  int dep;                    /* deployment of the current/last attempt, -1 none */
  int attempts;               /* attempts started */
  CURL *easy;                 /* current transfer, NULL when none */
  cu_owner cu;                /* owner tag of its transfers (curl_uv.h): on_done */
  gcp_waiter gw;              /* parked waiting for a Vertex access token (gcp_auth.h) */
  const char *access_token;   /* token for the attempt being built, NULL = none */
  uint64_t token_gen;         /* generation of the token the attempt sent (401 → drop it) */
  int used_token;             /* the current attempt sent a minted access token */
  int in_multi;               /* easy is added to the multi */
  int in_curl;                /* inside a curl callback: no multi calls, no freeing */
  uv_timer_t timer;           /* attempt deadline (first byte for streams, total otherwise);
                               * after commit: the stream idle check */
  uint64_t attempt_start_us;  /* monotonic µs at the attempt's start */
  /* per attempt */
  int status;                 /* status of the last upstream header block */
  int headers_done;           /* a final (non-1xx) header block was seen */
  int relay;                  /* relay the upstream answer as is (non-retryable 4xx, 3xx) */
  char content_type[96];      /* upstream Content-Type */
  enum metrics_class fail_class; /* recorded failover decision (valid when fail_reason) */
  char fail_reason[24];       /* "" = none recorded */
  buf_t resp;                 /* non-stream body, or stream bytes held before commit */
  /* stream relay */
  int committed;              /* the client has response bytes (status line sent) */
  int first_event;            /* 0 none yet, 1 valid, -1 garbage */
  int saw_done;               /* data: [DONE] seen */
  int client_full;            /* hs_stream_write asked to pause */
  int paused;                 /* the transfer is paused by CURL_WRITEFUNC_PAUSE */
  int client_gone;            /* an hs_* call failed: the connection is gone */
  sse_decoder sse;            /* framing of the upstream stream */
  uint64_t last_byte_ms;      /* loop time of the last upstream bytes after commit, ms */
  uint32_t idle_ms;           /* stream idle bound after commit, ms */
  uint64_t prompt_tokens;     /* from the usage chunk / body */
  uint64_t completion_tokens;
  int have_usage;             /* usage was seen */
  /* adapter attempts (snap_dep.ops != NULL) */
  prov_request preq;          /* upstream request built by the adapter; outlives the transfer */
  struct curl_slist *up_hdrs; /* preq's headers as curl wants them; freed with the attempt */
  prov_stream *ps;            /* stream decoder of the current attempt, NULL when none */
  const provider_ops *ps_ops; /* adapter that owns ps */
  buf_t out;                  /* canonical bytes decoded from one upstream chunk / body */
  prov_usage usage;           /* usage decoded by the adapter this attempt */
  int err_body;               /* non-2xx answer: reading its body for classify_error */
  size_t precommit_in;        /* upstream stream bytes decoded before commit, bytes */
  int terminal_sent;          /* the adapter wrote an in-band error event: no cut event */
  int n_unexpressible;        /* deployments skipped: request not expressible for them */
  char bad_request[256];      /* the adapter's message for the last such skip */
  /* outcome */
  char failures[384];         /* "gpt-4-1 http_500, gpt-4-2 timeout" for the final error */
  size_t failures_len;
  int n_failed;               /* failed attempts */
  int n_rate_limited;         /* of which 429 */
  enum metrics_class last_class; /* class of the last failure */
  /* resilience (docs/resilience.md): breakers, cooldowns, budgets, the total deadline */
  int brk_open;               /* breaker_attempt_start ran for the current attempt, its end not yet */
  double hdr_latency_ms;      /* current attempt: time to response headers, ms (0 = none yet) */
  double ttft_ms;             /* current attempt: time to the committed first event, ms */
  uint64_t reset_ms;          /* current attempt: the provider's reset hint (retry-after & co.), ms */
  ratelimit_hint rl;          /* current attempt: reset headers seen so far (ratelimit.h) */
  uint64_t deadline_ms;       /* loop ms when the request's total_timeout passes, 0 = none */
  int clipped;                /* the current attempt's deadline was cut to the total deadline */
  int pending_dep;            /* deployment waiting out its retry backoff, -1 = none (a
                               * Retry-After wait re-picks instead) */
  int waited_retry_after;     /* a cooldown was already waited for in-line (only once) */
  int n_auth;                 /* failed attempts whose credential the provider refused */
  int n_budget_refused;       /* retries the deployments' retry budgets refused */
  uint64_t soonest_reset_ms;  /* shortest cooldown left among rate-limited attempts, ms (0 = none) */
  uint32_t retry_after_s;     /* Retry-After of a 429/503 answer to the client, s (0 = default) */
  uint64_t skip_logged;       /* route_skip already logged, bit per deployment index < 64 */
  /* mid-stream continuation (docs/resilience.md "Mid-stream failover", midstream.h) */
  int ms_on;                  /* the committed stream is relayed event by event and tracked:
                               * its group continues (mid_stream_continue), canonical, not pt */
  int ms_phase;               /* enum attempt_ms_phase: which part of the spliced stream runs */
  int ms_dead;                /* enum attempt_ms_why: how the running stream died (0 = alive) */
  int ms_fail;                /* enum attempt_ms_why of the failure the client gets if no
                               * continuation succeeds (held; 0 = none yet) */
  int ms_from;                /* deployment whose stream died last, -1 = none */
  size_t ms_delivered;        /* text bytes the client had when it died, bytes */
  midstream_tracker ms;       /* what the client received (valid while ms_on) */
  midstream_splicer splice;   /* the running continuation's splicer (ms_phase != MS_ORIGINAL) */
  int splice_live;            /* splice is initialised (free it) */
  buf_t ms_out;               /* one event framed or spliced for the client */
  buf_t ms_err;               /* held in-band error event (framed canonical SSE), if any */
  buf_t ms_body;              /* the continuation's canonical request body (current attempt) */
  req_info ms_ri;             /* its model span */
  char hdr_deployment[128];   /* x-llmesh-deployment value */
  char hdr_attempts[16];      /* x-llmesh-attempts value */
  /* hedging (hedge.h): a second chat racing this one before the client has anything */
  struct chat *peer;          /* the other chat of a running race, NULL = none */
  int is_hedge;               /* this chat is the hedge its peer started */
  int hedged;                 /* the request hedged already (at most once), or must not */
  int hedge_lost;             /* lost the race: never writes to the client, being cancelled */
  int hedge_arm_attempt;      /* c->attempts when hedge_timer was armed (a later attempt disarms) */
  uint64_t hedge_arm_ms;      /* loop ms when hedge_timer was armed */
  uv_timer_t hedge_timer;     /* fires when the current attempt's first token is late */
  int handles_open;           /* uv handles (timer, hedge_timer) not yet closed: freed at 0 */
} chat;

/* Sets up the worker's curl multi on loop. Returns 0 or <0. */
int attempt_init(uv_loop_t *loop);
/* Closes the multi (every chat must be finished). Run the loop afterwards. */
void attempt_shutdown(void);

/* Serves a chat completion for group `group` of snap (takes a snapshot reference);
 * answers req sooner or later. rid: the request id. */
void attempt_chat(hs_request *req, snapshot *snap, const req_info *ri, const char *rid, int group);
/* attempt_chat for another operation or client dialect (o may be NULL). */
void attempt_serve(hs_request *req, snapshot *snap, const req_info *ri, const char *rid, int group,
                   const chat_opts *o);
void attempt_on_abort(hs_request *req); /* hs on_abort for a chat request */
/* The stream was committed: from now on the chat's timer checks that upstream bytes keep
 * coming (at most idle_ms apart, the deployment's timeout_ms), else ends the stream. */
void attempt_stream_committed(chat *c);
void attempt_on_drain(hs_request *req); /* hs on_drain for a chat request */
uint64_t attempt_chats_in_flight(void);
/* The worker loop's time, ms (breakers and cooldowns are kept in it); 0 before attempt_init. */
uint64_t attempt_now_ms(void);
/* A continuation wrote its first event to the client (stream.c): counted and logged. */
void attempt_ms_spliced(chat *c);
/* Counter class of an adapter's error class (failover accounting). */
enum metrics_class attempt_error_class(prov_error e);

#endif
