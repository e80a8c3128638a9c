// libnbd's debug messages: the sink libnbd's debug closure carries, and the
// glue that installs it (DebugCallback itself is in libnbd_callbacks.cc).
#include "debug_sink.h"

#include "nbd_handle.h"

namespace nbdjs {

Napi::Value NbdHandle::SetDebugCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  StagedEvents staged(this);
  auto* sink = new DebugSink(this);
  // libnbd frees the previous callback's sink inside the call.
  int r = nbd_set_debug_callback(h_, nbd_debug_callback{DebugCallback, sink, DebugSink::Free});
  if (r == -1)
    RecordError();
  else
    debug_sink_ = sink;
  return Napi::Number::New(env, r);
}

Napi::Value NbdHandle::ClearDebugCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  StagedEvents staged(this);
  int r = nbd_clear_debug_callback(h_);  // frees the sink
  if (r == -1)
    RecordError();
  else
    debug_sink_ = nullptr;
  return Napi::Number::New(env, r);
}

}  // namespace nbdjs
