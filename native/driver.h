// A driver runs libnbd's state machine for one handle: it watches libnbd's
// socket and calls nbd_aio_notify_read/write when it is ready. Drivers only
// differ in where that happens (LoopDriver: the JS thread's libuv loop;
// ThreadDriver: an I/O thread of the handle's own); both feed the handle's
// EventQueue and leave delivery to NbdHandle::Drain on the JS thread.
//
// Connects run off the JS thread with both drivers (libnbd resolves host
// names and forks servers inside nbd_aio_connect_*, holding the handle lock),
// one at a time in the order they were asked for.
#pragma once

#include <libnbd.h>
#include <poll.h>

#include <cstdint>
#include <functional>

namespace nbdjs {

// poll(2) events for libnbd's direction (nbd_aio_get_direction).
inline short PollEvents(unsigned dir) {
  return static_cast<short>(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                            ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
}

// One nbd_aio_connect_* call. `id` names it in the kConnected event that
// reports its end (or its failure to start).
struct ConnectTask {
  uint64_t id = 0;
  std::function<int(nbd_handle*)> run;
};

// Closes the libnbd handle (NbdHandle::Teardown builds it). Runs exactly
// once, on a thread that is the only one inside libnbd for that handle.
using CloseFn = std::function<void()>;

class Driver {
 public:
  virtual ~Driver() = default;
  // Queues a connect; it runs on another thread, and its outcome comes back
  // through NbdHandle::ConnectStarted and the state machine.
  virtual void Connect(ConnectTask task) = 0;
  // After any libnbd call from JS that may change the fd or the direction.
  virtual void Rearm() = 0;
  // Keep the event loop alive (commands or a connect in flight) or not.
  virtual void SetActive(bool active) = 0;
  // Stops driving for good and closes the handle with `close`: now, or, when
  // a thread of the driver is still inside a libnbd call that may take long
  // (a connect resolving a name), on that thread once the call returns. The
  // JS thread never waits for it. No libnbd call is made for the NbdHandle
  // once this returns, and connects still queued are dropped.
  virtual void Stop(CloseFn close) = 0;
  // Stop() has begun: the driving thread should go back to its loop rather
  // than keep reading replies (the thread driver's I/O thread).
  virtual bool Stopping() const { return false; }
};

}  // namespace nbdjs
