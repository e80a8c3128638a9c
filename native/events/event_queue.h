// Events recorded by libnbd's C callbacks, delivered to JS after libnbd returns.
//
// libnbd runs its callbacks with the handle lock held, so they only append a
// record here (no JS, no allocation once the vector has grown) and return.
// NbdHandle::Drain hands them to JS through one shared Float64Array laid out
// as scripts/event-wire.mjs says (generated/event_wire.h here,
// lib/generated/event-wire.ts there). Absolute offsets are rebuilt in JS from
// the request offset, which JS already has.
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <mutex>
#include <vector>

#include "generated/event_wire.h"

namespace nbdjs {

struct CommandContext;

// What an event carries beyond numbers (extent, list, context, debug). The
// strings and arrays libnbd passes are valid only during the callback.
struct Payload {
  std::string text;   // extent: meta context; list, context: name; debug: context; connection: message
  std::string text2;  // list: description; debug: message
  uint64_t offset = 0;
  std::vector<uint32_t> entries32;  // extent: (length, flags) pairs
  std::vector<uint64_t> entries64;  // extent64: (length, flags) pairs
  int32_t errnum = 0;               // completion of a failed option: libnbd's recorded errno (text: its message)
};

struct Event {
  EventKind kind;
  uint32_t status;
  int32_t error;
  CommandContext* command;  // null for connection and debug events
  uint64_t id;              // connection events: the connect's id
  uint64_t sub_offset;
  uint64_t count;
  std::unique_ptr<Payload> payload;
};

// libnbd's connection state as its lock-free queries (aio_is_*,
// connection_state) answered at one moment.
struct StateSnapshot {
  bool known = false;
  uint8_t is = 0;  // state::k* bits (generated/event_wire.h)
  const char* name = nullptr;  // nbd_connection_state's static string
};

// Shared between the thread that runs libnbd (JS thread for the loop driver,
// I/O thread for the thread driver) and the JS thread that drains it.
class EventQueue {
 public:
  void Push(Event&& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(e));
  }
  // Appends `events` in order and empties it. `before`: libnbd's state
  // before the call that made them, when another thread than JS's made it:
  // what JS sees of the state until it has these events (PendingBefore).
  void PushAll(std::vector<Event>& events, const StateSnapshot* before = nullptr) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (before != nullptr && before->known && !pending_before_.known && ChangeWhatStateImplies(events)) pending_before_ = *before;
    events_.insert(events_.end(), std::make_move_iterator(events.begin()), std::make_move_iterator(events.end()));
    events.clear();
  }
  // Moves everything queued into `out` (which must be empty); O(1).
  void TakeAll(std::vector<Event>& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    out.swap(events_);
    pending_before_ = StateSnapshot();
  }
  // The state as of the events JS has been handed, while events another
  // thread recorded wait for JS: in C, once aio_is_dead is true every
  // command has completed, and JS has not seen these completions yet.
  // While another thread is inside a libnbd call, the state before it: the
  // state may change before that call's events are published.
  bool PendingBefore(StateSnapshot* out) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (pending_before_.known) *out = pending_before_;
    else if (in_call_.known) *out = in_call_;
    else return false;
    return true;
  }
  // Around a libnbd call another thread than JS's makes (RunStateMachine).
  void EnterCall(const StateSnapshot& before) {
    std::lock_guard<std::mutex> lock(mutex_);
    in_call_ = before;
  }
  void LeaveCall() {
    std::lock_guard<std::mutex> lock(mutex_);
    in_call_ = StateSnapshot();
  }
  size_t Size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_.size();
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.clear();
    pending_before_ = StateSnapshot();
    in_call_ = StateSnapshot();
  }

 private:
  // Completions and connects: the state says they happened (in C, once
  // aio_is_dead is true every command has completed). Debug messages and the
  // news of a lost connection imply nothing the state does not say itself.
  static bool ChangeWhatStateImplies(const std::vector<Event>& events) {
    for (const Event& e : events)
      if (e.kind != kDebug && e.kind != kConnectionLost) return true;
    return false;
  }

  std::mutex mutex_;
  std::vector<Event> events_;
  StateSnapshot pending_before_;
  StateSnapshot in_call_;
};

}  // namespace nbdjs
