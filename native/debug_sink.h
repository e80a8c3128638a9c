// libnbd's debug messages reach the handle through a DebugSink.
#pragma once

#include <mutex>

namespace nbdjs {

class NbdHandle;

// The debug callback's user_data. libnbd may call it on a thread that is
// still inside a connect after the NbdHandle is gone (close() does not wait
// for a name lookup), so the link to the handle is cut under a lock; libnbd
// frees the sink with the callback.
struct DebugSink {
  std::mutex mutex;
  NbdHandle* owner;
  explicit DebugSink(NbdHandle* o) : owner(o) {}
  void Detach() {
    std::lock_guard<std::mutex> lock(mutex);
    owner = nullptr;
  }
  static void Free(void* user_data) { delete static_cast<DebugSink*>(user_data); }
};

}  // namespace nbdjs
