// libnbd's debug messages reach the handle through a DebugSink.
#pragma once

#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include <mutex>

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
  static void Free(void* user_data) { delete static_cast<DebugSink*>(user_data); }
};

}  // namespace nbdjs
