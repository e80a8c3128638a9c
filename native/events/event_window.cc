// The window's array, and an event as a record and a payload object.
#include "events/event_window.h"

#include <algorithm>

#include "util/arguments.h"

namespace nbdjs {

void EventWindow::Create(Napi::Env env, size_t capacity) {
  capacity_ = capacity;
  Napi::Float64Array array = Napi::Float64Array::New(env, (capacity_ + 1) * kEventStride);
  data_ = array.Data();
  array_ = Napi::Persistent(array);
}

Napi::Value PayloadToJs(Napi::Env env, const Event& e) {
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

}  // namespace nbdjs
