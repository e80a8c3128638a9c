// A driver runs libnbd's state machine for one handle: it watches libnbd's
// socket and calls nbd_aio_notify_read/write when it is ready. Drivers only
// differ in where that happens; both feed the handle's EventQueue and leave
// delivery to NbdHandle::Drain on the JS thread.
#pragma once

namespace nbdjs {

class Driver {
 public:
  virtual ~Driver() = default;
  // After any libnbd call that may change the fd or the direction.
  virtual void Rearm() = 0;
  // Keep the event loop alive (commands or a connect in flight) or not.
  virtual void SetActive(bool active) = 0;
  // Stop watching the fd for good; called before libnbd closes it.
  virtual void Stop() = 0;
};

}  // namespace nbdjs
