/* The reference for isZero's figures (bench/iszero.ts): nbdcopy's is_zero
 * (libnbd common/include/iszero.h) as a N-API function taking a TypedArray,
 * compiled by bench/run.ts with cc. Not part of the addon. */
#define NAPI_VERSION 8
#include <node_api.h>
#include <stdbool.h>
#include <string.h>

static inline bool is_zero(const char *buffer, size_t size) {
  size_t i;
  const size_t limit = size < 16 ? size : 16;
  for (i = 0; i < limit; ++i)
    if (buffer[i]) return false;
  if (size != limit) return !memcmp(buffer, buffer + 16, size - 16);
  return true;
}

static napi_value IsZero(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1], result;
  napi_typedarray_type type;
  size_t length, offset;
  void *data;
  napi_value ab;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok ||
      napi_get_typedarray_info(env, argv[0], &type, &length, &data, &ab, &offset) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "a Uint8Array is needed");
    return NULL;
  }
  napi_get_boolean(env, is_zero(data, length), &result);
  return result;
}

NAPI_MODULE_INIT() {
  napi_value fn;
  napi_create_function(env, "isZero", NAPI_AUTO_LENGTH, IsZero, NULL, &fn);
  napi_set_named_property(env, exports, "isZero", fn);
  return exports;
}
