/* eventstream.h — AWS `application/vnd.amazon.eventstream` framing (Bedrock
 * ConverseStream, provider-wire-formats.md §6.5): CRC32 and an incremental frame
 * decoder. Pure: no I/O; frames are handed out as views, copied only when a frame
 * spans two feeds.
 *
 *   frame := total_len u32be | headers_len u32be | prelude_crc u32be | headers | payload |
 *            message_crc u32be          (CRC32/IEEE; prelude_crc over bytes 0..7,
 *                                        message_crc over everything before it)
 *   header := name_len u8 | name | type u8 | value (size by type, see es_next) */
#ifndef LLMESH_EVENTSTREAM_H
#define LLMESH_EVENTSTREAM_H

#include <stddef.h>
#include <stdint.h>

#include "util.h"

#define ES_PRELUDE 12                   /* bytes: total_len, headers_len, prelude_crc */
#define ES_MIN_FRAME 16                 /* bytes: prelude + message_crc, no headers/payload */
#define ES_MAX_HEADERS (128u << 10)     /* bytes of headers in one frame (AWS limit) */
#define ES_MAX_FRAME ((16u << 20) + ES_MAX_HEADERS + ES_MIN_FRAME) /* 16 MiB payload max */

enum es_rc {
  ES_MORE = 0,  /* all input consumed; a frame is still incomplete (or none started) */
  ES_FRAME = 1, /* *f holds one complete, CRC-checked frame */
  ES_BAD = -1,  /* bad CRC, absurd length or malformed headers: sticky, nothing more decodes */
};

/* One decoded frame: views into the caller's bytes or the decoder's buffer, valid until
 * the next es_next / es_decoder_free. */
typedef struct es_frame {
  const char *headers; /* header block, already validated by es_next */
  size_t headers_len;  /* bytes in headers */
  const char *payload; /* payload (JSON for Converse) */
  size_t payload_len;  /* bytes in payload */
} es_frame;

/* Decoder state; zero-initialise. */
typedef struct es_decoder {
  buf_t part;     /* bytes of a frame that spans feeds */
  uint32_t total; /* total_len of the frame in part once its prelude is checked, else 0 */
  int consumed;   /* the last frame handed out lives in part: drop it on the next call */
  int bad;        /* ES_BAD was returned */
} es_decoder;

/* CRC32/IEEE (zlib's crc32): start with crc = 0, feed pieces in order. */
uint32_t es_crc32(uint32_t crc, const void *p, size_t n);

/* Takes bytes from *data and *len (advancing both) until one frame is complete. Returns
 * ES_FRAME with *f set (call again for the rest of the input), ES_MORE when the input
 * is used up, or ES_BAD. Any split of the input gives the same frames. */
int es_next(es_decoder *d, const char **data, size_t *len, es_frame *f);

/* Value of the string-typed (type 7) header `name` of a frame: 1 with *val and *vlen set,
 * 0 when absent or not a string. */
int es_header(const es_frame *f, const char *name, const char **val, size_t *vlen);

void es_decoder_free(es_decoder *d);

#endif
