// Delivery: the JS thread hands queued events to lib/'s event sink, in
// batches through the EventWindow (layout: scripts/event-wire.mjs), inside a
// callback scope.
#include <algorithm>
#include <cstdio>

#include "handle/nbd_handle.h"

namespace nbdjs {

// The first exception lib/'s sink let through (a bug there: it catches what
// user callbacks throw), kept as the raw value: node-addon-api's Error
// wrapper would touch it (a Proxy's traps may throw again). The rest of the
// events are delivered first; then it is thrown to the JS caller, or
// reported as uncaught when no JS called.
class FirstException {
 public:
  explicit FirstException(napi_env env) : env_(env) {}
  FirstException(const FirstException&) = delete;
  FirstException& operator=(const FirstException&) = delete;
  ~FirstException() {
    if (kept_ != nullptr) napi_delete_reference(env_, kept_);
  }
  // Takes the pending JS exception (keeping it if it is the first).
  void TakePending() {
    napi_value exception;
    if (napi_get_and_clear_last_exception(env_, &exception) == napi_ok && kept_ == nullptr)
      napi_create_reference(env_, exception, 1, &kept_);
  }
  void Raise(bool to_js_caller) {
    if (kept_ == nullptr) return;
    napi_value e;
    napi_get_reference_value(env_, kept_, &e);
    napi_delete_reference(env_, kept_);
    kept_ = nullptr;
    if (to_js_caller)
      napi_throw(env_, e);  // DrainJs returns; the caller sees it
    else
      napi_fatal_exception(env_, e);
  }

 private:
  napi_env env_;
  napi_ref kept_ = nullptr;
};

void NbdHandle::DeliverFromLoop() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  napi_callback_scope callback_scope;
  if (napi_open_callback_scope(env, nullptr, addon_->async_context, &callback_scope) != napi_ok) return;
  try {
    DeliverEvents(env, false);
  } catch (...) {
    // DeliverEvents reports JS exceptions itself; nothing may unwind into libuv.
    fprintf(stderr, "libnbd: unexpected C++ exception in event dispatch\n");
    napi_value pending;
    napi_get_and_clear_last_exception(env, &pending);
  }
  // Always closed (a scope left open stops microtasks for good): runs
  // microtasks and nextTicks.
  napi_close_callback_scope(env, callback_scope);
}

void NbdHandle::DeliverEvents(Napi::Env env, bool from_js) {
  // A call made from a callback of this delivery (drain() after a call, from
  // lib/) finds it under way: the loop below hands over what it queued. From
  // the loop, the caller holds a callback scope, so microtasks (a Promise's
  // continuation issuing the next command) run once this is over.
  if (delivering_) return;
  struct Delivering {  // cleared however this returns
    bool& flag;
    explicit Delivering(bool& f) : flag(f) { flag = true; }
    ~Delivering() { flag = false; }
  } delivering(delivering_);
  FirstException failure(env);
  bool open = true;
  while (open) {
    MarkRunsDelivered();
    queue_.TakeAll(batch_);
    if (batch_.empty()) break;
    open = HandOverBatch(env, failure);
    batch_.clear();
  }
  RearmAfterDelivery();
  UpdateActive();
  failure.Raise(from_js);
}

bool NbdHandle::HandOverBatch(Napi::Env env, FirstException& failure) {
  for (size_t first = 0; first < batch_.size();) {
    size_t n = std::min(window_.Capacity(), batch_.size() - first);
    Napi::Array payloads;
    for (size_t j = 0; j < n; j++) {
      const Event& e = batch_[first + j];
      if (e.payload) {
        if (payloads.IsEmpty()) payloads = Napi::Array::New(env, n);
        payloads.Set(static_cast<uint32_t>(j), PayloadToJs(env, e));
      }
      if (e.kind == kCompletion) {
        CommandContext* c = e.command;
        if (!c->retired.load()) c->Retire(h_);  // before its record: it carries the retirement's error
        commands_.Delivered(c);
        in_flight_--;
        reply_bytes_in_flight_ -= c->reply_bytes;
      }
      window_.Write(j, e);
    }
    first += n;
    js_thread_events_ = 0;
    window_.SetQueuedFromJs(0);
    Napi::Function sink = on_events_.Value();
    if (sink.IsEmpty()) {  // the facade is gone: nobody to tell
      commands_.ReleaseDelivered();
      return true;
    }
    // Keep delivering the rest of the batch after an exception, then report it.
    napi_value args[2] = {Napi::Number::New(env, static_cast<double>(n)), payloads.IsEmpty() ? nullptr : static_cast<napi_value>(payloads)};
    napi_value result;
    if (napi_call_function(env, env.Undefined(), sink, payloads.IsEmpty() ? 1 : 2, args, &result) != napi_ok)
      failure.TakePending();
    if (h_ == nullptr) {  // a callback closed the handle: Teardown emptied the pool
      commands_.ForgetDelivered();
      return false;
    }
    commands_.ReleaseDelivered();
  }
  return true;
}

void NbdHandle::RearmAfterDelivery() {
  if (!rearm_after_delivery_) return;
  rearm_after_delivery_ = false;
  if (h_ != nullptr) CheckConnectionState(h_);
  if (driver_) driver_->Rearm();
}

Napi::Value NbdHandle::DrainJs(const Napi::CallbackInfo& info) {
  DeliverEvents(info.Env(), true);
  return info.Env().Undefined();
}

Napi::Value NbdHandle::EventsGetter(const Napi::CallbackInfo& info) { return window_.Array(); }

}  // namespace nbdjs
