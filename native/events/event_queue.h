// The queue of events waiting for JS: filled by whichever thread runs libnbd
// (StagedEvents publishes a libnbd call's events here once it has returned),
// emptied by the JS thread's delivery (NbdHandle::DeliverEvents, events/
// event_delivery.cc).
#pragma once

#include <iterator>
#include <mutex>
#include <vector>

#include "events/event.h"

namespace nbdjs {

// Shared between the thread that runs libnbd (JS thread for the loop driver,
// I/O thread for the thread driver) and the JS thread that empties it.
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
