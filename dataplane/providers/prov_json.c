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
