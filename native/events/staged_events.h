// Staging: events recorded inside one libnbd call are held back until it has
// returned (staged_events.cc), then retired and published to the handle's queue.
#pragma once

#include <libnbd.h>

#include <vector>

#include "events/event_queue.h"

namespace nbdjs {

class NbdHandle;

// The events libnbd's callbacks record during one libnbd call, on the stack
// of the thread making the call. Flush retires the commands that completed
// (libnbd reports a short structured read only at retirement, and it cannot
// be asked from inside a callback) and then publishes the events in order.
class StagedEvents {
 public:
  explicit StagedEvents(NbdHandle* owner);
  ~StagedEvents();
  void Flush(nbd_handle* h);
  static StagedEvents* Current();
  NbdHandle* owner() const { return owner_; }
  // A per-thread buffer, reused from call to call (no allocation per call).
  std::vector<Event>& events;

 private:
  NbdHandle* owner_;
  StagedEvents* previous_;
};

}  // namespace nbdjs
