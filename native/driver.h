// A driver runs libnbd's state machine for one handle: it watches libnbd's
// socket and calls nbd_aio_notify_read/write when it is ready. Drivers only
// differ in where that happens (LoopDriver: the JS thread's libuv loop;
// ThreadDriver: an I/O thread of the handle's own); both feed the handle's
// EventQueue and leave delivery to NbdHandle::Drain on the JS thread.
#pragma once

#include <functional>

struct nbd_handle;

namespace nbdjs {

// One nbd_aio_connect_* call, returning its result.
using ConnectTask = std::function<int(nbd_handle*)>;

class Driver {
 public:
  virtual ~Driver() = default;
  // Starts a connect. The loop driver runs it now and returns its result
  // (-1: the error is this thread's); the thread driver runs it on its I/O
  // thread (name lookups and forks stay off the JS thread) and returns 0.
  virtual int Connect(ConnectTask task) = 0;
  // After any libnbd call from JS that may change the fd or the direction.
  virtual void Rearm() = 0;
  // Keep the event loop alive (commands or a connect in flight) or not.
  virtual void SetActive(bool active) = 0;
  // Stop driving for good; called before libnbd closes the fd. No libnbd
  // call is made by the driver once this returns.
  virtual void Stop() = 0;
  // Stop() has begun on another thread: the driving thread should return
  // to its loop rather than keep reading (the thread driver's I/O thread).
  virtual bool Stopping() const { return false; }
};

}  // namespace nbdjs
