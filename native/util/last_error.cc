// LastError: libnbd's thread-local error, captured, and as JS sees it.
#include "util/last_error.h"

#include <libnbd.h>

namespace nbdjs {

LastError LastError::Capture() {
  const char* msg = nbd_get_error();
  return LastError{nbd_get_errno(), msg ? msg : "unknown libnbd error"};
}

Napi::Value LastError::ToJs(Napi::Env env) const {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, errnum));
  a.Set(1u, Napi::String::New(env, message));
  return a;
}

}  // namespace nbdjs
