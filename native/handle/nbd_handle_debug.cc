// libnbd's debug messages: installing the sink libnbd's debug closure
// carries (events/debug_sink.h; DebugCallback itself is in
// generated/closures.cc).
#include "handle/nbd_handle.h"

namespace nbdjs {

// From the handle's creation: messages go to stderr as libnbd's would, but
// for those of the binding's own queries.
void NbdHandle::InstallDebugSink() {
  auto* sink = new DebugSink(this, false, "");
  QuietCalls quiet;
  if (nbd_set_debug_callback(h_, nbd_debug_callback{DebugCallback, sink, DebugSink::Free}) == -1) {
    delete sink;  // libnbd took nothing: its own stderr output, as before
    return;
  }
  debug_sink_ = sink;
  HandleNameChanged();  // after: the sink drops the query's own messages
}

// After setHandleName: the name stderr lines carry.
void NbdHandle::HandleNameChanged() {
  if (debug_sink_ == nullptr) return;
  std::string name;
  {
    QuietCalls quiet;
    char* n = nbd_get_handle_name(h_);
    if (n != nullptr) name = n;
    free(n);
  }
  std::lock_guard<std::mutex> lock(debug_sink_->mutex);
  debug_sink_->handle_name = std::move(name);
}

Napi::Value NbdHandle::SetDebugCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  StagedEvents staged(this);
  std::string name;
  if (debug_sink_ != nullptr) {
    std::lock_guard<std::mutex> lock(debug_sink_->mutex);
    name = debug_sink_->handle_name;
  }
  auto* sink = new DebugSink(this, true, std::move(name));
  // libnbd frees the previous callback's sink inside the call.
  int r = nbd_set_debug_callback(h_, nbd_debug_callback{DebugCallback, sink, DebugSink::Free});
  if (r == -1)
    RecordError();
  else
    debug_sink_ = sink;
  return Napi::Number::New(env, r);
}

// Back to stderr: the sink stays (the binding's queries stay out of stderr)
// and writes there as libnbd would.
Napi::Value NbdHandle::ClearDebugCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  if (debug_sink_ != nullptr) {
    std::lock_guard<std::mutex> lock(debug_sink_->mutex);
    debug_sink_->to_js = false;
  }
  return Napi::Number::New(env, 0);
}

}  // namespace nbdjs
