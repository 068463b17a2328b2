/* prov_json.h — small jansson and error helpers the request translators share. */
#ifndef LLMESH_PROV_JSON_H
#define LLMESH_PROV_JSON_H

#include <jansson.h>
#include <stddef.h>

#include "provider.h"

/* o[key], with JSON null counted as absent (NULL). */
json_t *prov_field(json_t *o, const char *key);
/* o[key] when it is a string, else NULL. */
const char *prov_str_field(json_t *o, const char *key);
/* Formats a client-facing message into err (errlen bytes, NUL included; nothing when err is
 * NULL or errlen 0). Returns -EINVAL, so a translator can `return prov_reject(...)`. */
int prov_reject(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* dst[to] = req[from] when present. A value of the wrong type (not a number; not an integer
 * >= min) is a client error: message in err, -EINVAL. Returns 0 or -ENOMEM otherwise. */
int prov_copy_number(json_t *req, const char *from, json_t *dst, const char *to, char *err,
                     size_t errlen);
int prov_copy_integer(json_t *req, const char *from, json_t *dst, const char *to, json_int_t min,
                      char *err, size_t errlen);

/* For each name in keys (NULL-terminated) whose value in req is present and not null or
 * false, prov_request_dropped(r, name): the adapter's documented dropped fields. */
void prov_drop_present(prov_request *r, json_t *req, const char *const *keys);

#endif
