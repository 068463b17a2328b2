/* prov_json.c — small jansson and error helpers (see prov_json.h). */
#include "prov_json.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>

json_t *prov_field(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  return json_is_null(v) ? NULL : v;
}

const char *prov_str_field(json_t *o, const char *key) {
  return json_string_value(json_object_get(o, key));
}

void prov_drop_present(prov_request *r, json_t *req, const char *const *keys) {
  for (; *keys; keys++) {
    json_t *v = prov_field(req, *keys);
    if (v && !json_is_false(v)) prov_request_dropped(r, *keys);
  }
}

int prov_reject(char *err, size_t errlen, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  if (err && errlen) vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  return -EINVAL;
}

int prov_copy_number(json_t *req, const char *from, json_t *dst, const char *to, char *err,
                     size_t errlen) {
  json_t *v = prov_field(req, from);
  if (!v) return 0;
  if (!json_is_number(v)) return prov_reject(err, errlen, "%s must be a number", from);
  return json_object_set(dst, to, v) ? -ENOMEM : 0;
}

int prov_copy_integer(json_t *req, const char *from, json_t *dst, const char *to, json_int_t min,
                      char *err, size_t errlen) {
  json_t *v = prov_field(req, from);
  if (!v) return 0;
  if (!json_is_integer(v) || json_integer_value(v) < min)
    return prov_reject(err, errlen, "%s must be an integer >= %lld", from, (long long)min);
  return json_object_set(dst, to, v) ? -ENOMEM : 0;
}
