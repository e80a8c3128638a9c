// The window's array.
#include "events/event_window.h"

namespace nbdjs {

void EventWindow::Create(Napi::Env env, size_t capacity) {
  capacity_ = capacity;
  Napi::Float64Array array = Napi::Float64Array::New(env, (capacity_ + 1) * kEventStride);
  data_ = array.Data();
  array_ = Napi::Persistent(array);
}

}  // namespace nbdjs
