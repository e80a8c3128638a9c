// The handle's last error (lastError()): libnbd's, captured right after the
// failed call, and the binding's own (closed handle, call missing from the
// libnbd compiled against).
#include <cerrno>
#include <cstring>
#include <mutex>
#include <string>

#include "handle/nbd_handle.h"

namespace nbdjs {

void NbdHandle::RecordError() { last_error_ = LastError::Capture(); }

void NbdHandle::RecordErrno(int errnum, const std::string& message) {
  last_error_.errnum = errnum;
  last_error_.message = message;
}

void NbdHandle::RecordClosed() { RecordErrno(EINVAL, "handle is closed"); }

Napi::Value NbdHandle::ClosedResult(Napi::Env env) {
  RecordClosed();
  return Napi::Number::New(env, -1);
}

void NbdHandle::RecordNotSupported(const char* fn, const char* since) {
  // As lib/errors.ts words it for the module functions.
  std::string what = since == nullptr
                         ? "function missing because the binding was compiled against an older libnbd"
                         : std::string("function missing from the libnbd loaded (") + loaded::Version() +
                               "): it needs libnbd >= " + since;
  RecordErrno(ENOTSUP, std::string(fn) + ": " + what + ": " + strerror(ENOTSUP));
}

Napi::Value NbdHandle::LastErrorJs(const Napi::CallbackInfo& info) { return last_error_.ToJs(info.Env()); }

void NbdHandle::RecordIoError() {
  LastError e = LastError::Capture();
  std::lock_guard<std::mutex> lock(io_error_mutex_);
  io_error_ = std::move(e);
}

}  // namespace nbdjs
