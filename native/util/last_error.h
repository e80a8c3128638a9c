// libnbd's errors as the binding keeps them: captured on the thread of the
// failed call (libnbd's error is thread-local), handed to JS as
// [errno, message]. NbdHandle's Record* members (handle/nbd_handle_errors.cc)
// keep the last one.
#pragma once

#include <napi.h>

#include <string>

namespace nbdjs {

struct LastError {
  int errnum = 0;  // may be 0: libnbd has no errno for some failures (a name lookup)
  std::string message;
  // libnbd's thread-local error: right after the failed call, on its thread.
  static LastError Capture();
  Napi::Value ToJs(Napi::Env env) const;  // [errno, message]
};

}  // namespace nbdjs
