// Delivery: the JS thread hands queued events to the facade's sink, in
// batches through one shared Float64Array (layout: scripts/event-wire.mjs),
// inside a callback scope.
#include <algorithm>
#include <cstdio>

#include "handle/nbd_handle.h"

namespace nbdjs {

void NbdHandle::DeliverFromLoop() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  napi_callback_scope callback_scope;
  if (napi_open_callback_scope(env, nullptr, addon_->async_context, &callback_scope) != napi_ok) return;
  try {
    Drain(env, false);
  } catch (...) {
    // Drain reports JS exceptions itself; nothing may unwind into libuv.
    fprintf(stderr, "libnbd: unexpected C++ exception in event dispatch\n");
    napi_value pending;
    napi_get_and_clear_last_exception(env, &pending);
  }
  // Always closed (a scope left open stops microtasks for good): runs
  // microtasks and nextTicks.
  napi_close_callback_scope(env, callback_scope);
}

void NbdHandle::Drain(Napi::Env env, bool from_js) {
  // From the loop, the caller holds a callback scope: microtasks (a Promise's
  // continuation issuing the next command) run once Drain is over, never
  // while `dispatching_` would hold back the drain of their own events.
  if (dispatching_) return;  // the outer Drain delivers what JS queues meanwhile
  struct Dispatching {
    bool& flag;
    explicit Dispatching(bool& f) : flag(f) { flag = true; }
    ~Dispatching() { flag = false; }
  } dispatching(dispatching_);
  // The first exception lib/ let through (a bug there: it catches what user
  // callbacks throw), kept as the raw value: node-addon-api's Error wrapper
  // would touch it (a Proxy's traps may throw again).
  napi_ref failure = nullptr;
  bool closed = false;
  while (!closed) {
    MarkRunsDelivered();
    queue_.TakeAll(batch_);
    if (batch_.empty()) break;
    size_t i = 0;
    while (i < batch_.size() && !closed) {
      size_t n = std::min(events_capacity_, batch_.size() - i);
      double* out = events_data_ + kEventStride;
      Napi::Array payloads;
      for (size_t j = 0; j < n; j++, out += kEventStride) {
        const Event& e = batch_[i + j];
        if (e.payload) {
          if (payloads.IsEmpty()) payloads = Napi::Array::New(env, n);
          payloads.Set(static_cast<uint32_t>(j), PayloadToJs(env, e));
        }
        CommandContext* c = e.command;
        out[field::kKind] = e.kind;
        switch (e.kind) {
          case kChunk:
            out[field::kChunkSlot] = c->slot;
            out[field::kChunkStatus] = e.status;
            out[field::kChunkError] = e.error;
            out[field::kChunkSubOffset] = static_cast<double>(e.sub_offset);
            out[field::kChunkCount] = static_cast<double>(e.count);
            break;
          case kCompletion:
            if (!c->retired.load()) c->Retire(h_);
            out[field::kCompletionSlot] = c->slot;
            out[field::kCompletionError] = e.error;
            out[field::kCompletionRetireError] = c->retire_error;
            delivered_.push_back(c);  // its slot is reused once JS has seen this
            in_flight_--;
            break;
          case kConnected:
            out[field::kConnectedId] = static_cast<double>(e.id);
            out[field::kConnectedError] = e.error;
            break;
          case kDisconnected:
            out[field::kDisconnectedError] = e.error;
            break;
          case kConnectionLost:
            out[field::kConnectionLostError] = e.error;
            break;
          case kExtent:
            out[field::kExtentSlot] = c->slot;
            out[field::kExtentError] = e.error;
            break;
          case kList:
            out[field::kListSlot] = c->slot;
            break;
          case kContext:
            out[field::kContextSlot] = c->slot;
            break;
          case kDebug:
            break;
          case kPolled:
            out[field::kPolledSequence] = static_cast<double>(e.id);
            break;
        }
      }
      i += n;
      js_thread_events_ = 0;
      events_data_[kHeaderQueued] = 0;
      Napi::Function fn = on_events_.Value();
      if (fn.IsEmpty()) {  // the facade is gone: nobody to tell
        for (CommandContext* c : delivered_) ReleaseCommand(c);
        delivered_.clear();
        break;
      }
      // Keep delivering the rest of the batch after an exception, then report it.
      napi_value args[2] = {Napi::Number::New(env, static_cast<double>(n)), payloads.IsEmpty() ? nullptr : static_cast<napi_value>(payloads)};
      napi_value result;
      if (napi_call_function(env, env.Undefined(), fn, payloads.IsEmpty() ? 1 : 2, args, &result) != napi_ok) {
        napi_value exception;
        if (napi_get_and_clear_last_exception(env, &exception) == napi_ok && failure == nullptr)
          napi_create_reference(env, exception, 1, &failure);
      }
      closed = h_ == nullptr;
      // After close() the pool is gone (Teardown emptied the free list).
      if (!closed)
        for (CommandContext* c : delivered_) ReleaseCommand(c);
      delivered_.clear();
    }
    batch_.clear();
  }
  batch_.clear();
  if (rearm_pending_) {
    rearm_pending_ = false;
    if (h_ != nullptr) CheckConnectionState(h_);
    if (driver_) driver_->Rearm();
  }
  UpdateActive();
  if (failure != nullptr) {
    napi_value e;
    napi_get_reference_value(env, failure, &e);
    napi_delete_reference(env, failure);
    if (from_js)
      napi_throw(env, e);  // DrainJs returns; the caller sees it
    else
      napi_fatal_exception(env, e);
  }
}

Napi::Value NbdHandle::PayloadToJs(Napi::Env env, const Event& e) {
  const Payload& p = *e.payload;
  Napi::Object o = Napi::Object::New(env);
  switch (e.kind) {
    case kExtent: {
      o.Set("context", Napi::String::New(env, p.text));
      o.Set("offset", Int64ToJs(env, static_cast<int64_t>(p.offset)));
      if (!p.entries64.empty()) {
        auto a = Napi::BigUint64Array::New(env, p.entries64.size());
        std::copy(p.entries64.begin(), p.entries64.end(), a.Data());
        o.Set("entries", a);
      } else {
        auto a = Napi::Uint32Array::New(env, p.entries32.size());
        std::copy(p.entries32.begin(), p.entries32.end(), a.Data());
        o.Set("entries", a);
      }
      break;
    }
    case kList:
      o.Set("name", Napi::String::New(env, p.text));
      o.Set("description", Napi::String::New(env, p.text2));
      break;
    case kDebug:
      o.Set("context", Napi::String::New(env, p.text));
      o.Set("message", Napi::String::New(env, p.text2));
      break;
    case kConnected:
    case kDisconnected:
    case kConnectionLost:
      o.Set("message", Napi::String::New(env, p.text));
      break;
    case kCompletion:
      o.Set("message", Napi::String::New(env, p.text));
      o.Set("errno", Napi::Number::New(env, p.errnum));
      break;
    default:
      o.Set("name", Napi::String::New(env, p.text));
  }
  return o;
}

Napi::Value NbdHandle::DrainJs(const Napi::CallbackInfo& info) {
  Drain(info.Env(), true);
  return info.Env().Undefined();
}

Napi::Value NbdHandle::EventsGetter(const Napi::CallbackInfo& info) { return events_array_.Value(); }

}  // namespace nbdjs
