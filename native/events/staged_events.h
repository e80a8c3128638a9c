// Staging: events recorded inside one libnbd call are held back until it has
// returned (staged_events.cc), then retired and published to the handle's queue.
#pragma once

#include <libnbd.h>

#include <cstdint>
#include <vector>

#include "events/event_queue.h"

namespace nbdjs {

class NbdHandle;

// The events libnbd's callbacks record during one libnbd call, on the stack
// of the thread making the call. Flush retires the commands that completed
// (libnbd reports a short structured read only at retirement, and it cannot
// be asked from inside a callback) and then publishes the events in order.
//
// Order across threads: libnbd's handle lock orders the calls, so the events
// are numbered as they are recorded (NbdHandle::Record); the JS thread
// announces the number of the first event it holds, and the I/O thread
// publishes only once no earlier event is still held by the JS thread (a
// call from JS returned, but its events were not yet published when the
// reply it caused was read). The JS thread never waits.
class StagedEvents {
 public:
  explicit StagedEvents(NbdHandle* owner);
  ~StagedEvents();
  void Flush(nbd_handle* h);
  static StagedEvents* Current();
  NbdHandle* owner() const { return owner_; }
  // The first event is recorded: `seq` is its number.
  void Began(uint64_t seq);
  // A per-thread buffer, reused from call to call (no allocation per call).
  std::vector<Event>& events;

 private:
  void Unannounce();
  NbdHandle* owner_;
  StagedEvents* previous_;
  bool on_js_thread_ = false;  // set by Began, with the first event
  uint64_t first_seq_ = 0;
  bool announced_ = false;  // the handle's js_staged_first_ is this one's
};

}  // namespace nbdjs
