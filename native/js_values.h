/* Reading arguments from JavaScript and throwing errors at it: shared by the addon's parts. */
#ifndef STAGEFS_JS_VALUES_H
#define STAGEFS_JS_VALUES_H

#include <errno.h>
#include <node_api.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#define CHECK(call)                                                   \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error(env, NULL, "stagefs native: " #call " failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static inline napi_value throw_errno(napi_env env, int err, const char *message) {
  napi_value code, text, error;
  napi_create_string_utf8(env, strerror(err), NAPI_AUTO_LENGTH, &code);
  napi_create_string_utf8(env, message, NAPI_AUTO_LENGTH, &text);
  napi_create_error(env, NULL, text, &error);
  napi_value errno_value;
  napi_create_int32(env, err, &errno_value);
  napi_set_named_property(env, error, "errno", errno_value);
  napi_throw(env, error);
  return NULL;
}

static inline int get_string(napi_env env, napi_value object, const char *name, char *out, size_t size) {
  napi_value value;
  size_t length;
  if (napi_get_named_property(env, object, name, &value) != napi_ok) return 0;
  return napi_get_value_string_utf8(env, value, out, size, &length) == napi_ok && length > 0 && length < size - 1;
}

static inline int get_bool(napi_env env, napi_value object, const char *name) {
  napi_value value;
  bool result = false;
  if (napi_get_named_property(env, object, name, &value) == napi_ok) napi_get_value_bool(env, value, &result);
  return result;
}

static inline int64_t get_int(napi_env env, napi_value object, const char *name, int64_t fallback) {
  napi_value value;
  int64_t result = fallback;
  napi_valuetype type;
  if (napi_get_named_property(env, object, name, &value) == napi_ok && napi_typeof(env, value, &type) == napi_ok &&
      type == napi_number)
    napi_get_value_int64(env, value, &result);
  return result;
}

#endif
