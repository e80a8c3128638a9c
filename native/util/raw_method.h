// The issue path of the data commands without node-addon-api's per-call
// glue: each NbdHandle gets its own JS functions for them, installed as own
// properties of the native object (shadowing nothing: they are not on the
// prototype), whose data is a link to the handle. No napi_unwrap per call,
// no Napi::CallbackInfo.
#pragma once

#include <napi.h>

namespace nbdjs {

class NbdHandle;

// The raw pointer JS holds (as a function's data). The handle cuts it when
// it goes away; each function's finalizer drops its reference; the last one
// frees it. JS thread only.
struct HandleLink {
  NbdHandle* handle;
  int refs;
  static void Release(HandleLink* link) {
    if (--link->refs == 0) delete link;
  }
};

// The arguments of one call, read once with napi_get_cb_info.
class RawArgs {
 public:
  RawArgs(napi_env env, napi_callback_info cbinfo) : env_(env) {
    napi_get_cb_info(env, cbinfo, &argc_, argv_, nullptr, &data_);
  }
  Napi::Env Env() const { return Napi::Env(env_); }
  Napi::Value operator[](size_t i) const {
    return i < argc_ ? Napi::Value(env_, argv_[i]) : Env().Undefined();
  }
  HandleLink* Link() const { return static_cast<HandleLink*>(data_); }

 private:
  static constexpr size_t kMaxArgs = 6;
  napi_env env_;
  size_t argc_ = kMaxArgs;
  napi_value argv_[kMaxArgs];
  void* data_ = nullptr;
};

// A napi callback calling `Method` on the linked handle; no C++ exception
// leaves it (it becomes the pending JS exception, as node-addon-api does).
template <Napi::Value (NbdHandle::*Method)(const RawArgs&)>
napi_value RawMethod(napi_env env, napi_callback_info cbinfo) {
  try {
    RawArgs args(env, cbinfo);
    NbdHandle* self = args.Link() != nullptr ? args.Link()->handle : nullptr;
    if (self == nullptr) {
      napi_throw_error(env, nullptr, "libnbd: the native handle is gone");
      return nullptr;
    }
    return (self->*Method)(args);
  } catch (const Napi::Error& e) {
    e.ThrowAsJavaScriptException();
    return nullptr;
  } catch (...) {
    napi_throw_error(env, nullptr, "libnbd: unexpected C++ exception");
    return nullptr;
  }
}

// Installs `method` as the own property `name` of `target`, linked to `link`.
template <Napi::Value (NbdHandle::*Method)(const RawArgs&)>
void InstallRawMethod(napi_env env, napi_value target, const char* name, HandleLink* link) {
  napi_value fn;
  if (napi_create_function(env, name, NAPI_AUTO_LENGTH, RawMethod<Method>, link, &fn) != napi_ok) return;
  link->refs++;
  napi_add_finalizer(
      env, fn, link, [](napi_env, void* data, void*) { HandleLink::Release(static_cast<HandleLink*>(data)); }, nullptr,
      nullptr);
  napi_set_named_property(env, target, name, fn);
}

}  // namespace nbdjs
