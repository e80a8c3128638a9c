// libnbd's debug messages reach the handle through a DebugSink.
#pragma once

#include <cstdio>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "util/quiet_calls.h"

namespace nbdjs {

class NbdHandle;

// The debug callback's user_data. A sink is installed from the handle's
// creation on, so that the binding's own queries never reach libnbd's
// stderr output: without a JS callback (`to_js` false) the sink writes the
// other messages to stderr as libnbd would. libnbd may call it on a thread
// that is still inside a connect after the NbdHandle is gone (close() does
// not wait for a name lookup), so the link to the handle is cut under a
// lock; libnbd frees the sink with the callback.
struct DebugSink {
  // What nbd_close says before it frees the sink ("closing handle"): kept
  // apart from the handle, which close() hands them to (DebugSink::Closing).
  struct Closing {
    std::mutex mutex;
    std::vector<std::pair<std::string, std::string>> messages;
  };

  std::mutex mutex;
  NbdHandle* owner;
  bool to_js;
  std::string handle_name;  // libnbd's name of the handle, for stderr lines
  std::shared_ptr<Closing> closing;
  DebugSink(NbdHandle* o, bool js, std::string name) : owner(o), to_js(js), handle_name(std::move(name)) {}
  void Detach() {
    std::lock_guard<std::mutex> lock(mutex);
    owner = nullptr;
  }
  // From now on messages are kept in the returned record, on whatever
  // thread runs nbd_close, until libnbd frees the sink.
  std::shared_ptr<Closing> DetachForClose() {
    std::lock_guard<std::mutex> lock(mutex);
    owner = nullptr;
    if (!to_js) return nullptr;  // they go to stderr, as libnbd's own
    closing = std::make_shared<Closing>();
    return closing;
  }
  // A message the handle is to get as an event: `owner` set, and the lock
  // held until the admission ends, so that the handle cannot detach before
  // the event is recorded.
  struct Admission {
    std::unique_lock<std::mutex> lock;
    NbdHandle* owner = nullptr;
    explicit operator bool() const { return owner != nullptr; }
  };
  // Admits a message, or keeps it where the handle is not to see it: the
  // binding's own bookkeeping calls (dropped), no JS callback (stderr, as
  // libnbd writes it: lib/debug.c), nbd_close's own (for close() to deliver).
  Admission Admit(const char* context, const char* msg) {
    Admission a;
    if (QuietCalls::Active()) return a;
    a.lock = std::unique_lock<std::mutex>(mutex);
    if (!to_js) {
      fprintf(stderr, "libnbd: debug: %s: %s: %s\n", handle_name.c_str(), context ? context : "unknown", msg ? msg : "");
      return a;
    }
    if (owner == nullptr) {
      if (closing) {
        std::lock_guard<std::mutex> closing_lock(closing->mutex);
        closing->messages.emplace_back(context ? context : "", msg ? msg : "");
      }
      return a;
    }
    a.owner = owner;
    return a;
  }
  static void Free(void* user_data) { delete static_cast<DebugSink*>(user_data); }
};

}  // namespace nbdjs
