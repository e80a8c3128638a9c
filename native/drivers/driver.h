// A driver runs libnbd's state machine for one handle: it watches libnbd's
// socket and calls nbd_aio_notify_read/write when it is ready. Drivers only
// differ in where that happens (LoopDriver: the JS thread's libuv loop;
// ThreadDriver: an I/O thread of the handle's own); both feed the handle's
// EventQueue and leave delivery to NbdHandle::DeliverEvents on the JS thread. They
// reach the handle only through DriverHost.
//
// Connects run off the JS thread with both drivers (libnbd resolves host
// names and forks servers inside nbd_aio_connect_*, holding the handle lock),
// one at a time in the order they were asked for.
#pragma once

#include <libnbd.h>
#include <poll.h>
#include <sys/socket.h>

#include <cstdint>
#include <functional>
#include <memory>

#include "util/last_error.h"

namespace nbdjs {

// poll(2) events for libnbd's direction (nbd_aio_get_direction).
inline short PollEvents(unsigned dir) {
  return static_cast<short>(((dir & LIBNBD_AIO_DIRECTION_READ) ? POLLIN : 0) |
                            ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? POLLOUT : 0));
}

// A libnbd call that may block, run off the JS thread: a connect
// (nbd_aio_connect_* resolves names and forks servers, holding the handle
// lock), or nbd_shutdown with SHUTDOWN_ABANDON_PENDING (it waits for the
// server). `id` names a connect in the kConnected event that reports its end
// (or its failure to start); 0 is a shutdown. `interrupt`: a duplicate of the
// connected socket, through which Stop shuts the socket down to end the call
// at once (a connect has none: Stop hands it the close instead).
struct ConnectTask {
  uint64_t id = 0;
  std::function<int(nbd_handle*)> run;
  std::shared_ptr<const int> interrupt;
};

// Ends a blocking task's wait on the server: the socket is shut down both
// ways (its duplicate keeps it from being reused meanwhile), so libnbd's next
// read or write fails and the call returns.
inline void InterruptTask(const ConnectTask& task) {
  if (task.interrupt) ::shutdown(*task.interrupt, SHUT_RDWR);
}

// Closes the libnbd handle (NbdHandle::Teardown builds it). Runs exactly
// once, on a thread that is the only one inside libnbd for that handle.
using CloseFn = std::function<void()>;

// What a driver may ask of the handle it drives (NbdHandle implements it);
// drivers see nothing else of the handle.
class DriverHost {
 public:
  // libnbd's handle; null once the handle is closed.
  virtual nbd_handle* handle() const = 0;

  // Runs libnbd's state machine for a ready socket: one notify call (and,
  // after a reply, the replies already waiting), then notes the end of a
  // connect or disconnect. On the thread that drives the handle (the JS
  // thread for the loop driver, the I/O thread for the thread driver);
  // errors are kept for the connection's events.
  virtual void RunStateMachine(nbd_handle* h, bool readable, bool writable) = 0;
  // Notes the end of a connect or disconnect as an event (any thread).
  virtual void CheckConnectionState(nbd_handle* h) = 0;
  // Events are queued for JS (any thread).
  virtual bool HasEvents() = 0;
  // JS waits in poll() and a run of libnbd ended that JS has not been handed
  // (any thread): wake JS even if the run recorded no event.
  virtual bool PollWanted() = 0;
  // Commands issued from JS whose completion JS has not had yet, and the
  // data their replies may carry (JS thread).
  virtual int64_t CommandsInFlight() const = 0;
  virtual uint64_t ReplyBytesInFlight() const = 0;
  // A connect task ran (on the thread of `error`): from now on its end is
  // awaited, or it failed and that is reported as the connect's end.
  virtual void ConnectStarted(uint64_t id, bool ok, const LastError& error) = 0;

  // JS-thread entry points: run libnbd if needed, then deliver what was
  // recorded. OnLoopReady: the loop driver's poll fired (`error`: the poll
  // failed, a socket error; libnbd reads until it sees it).
  // OnConnectTaskDone: a connect on the thread pool returned. OnThreadWake:
  // the I/O thread has events for JS.
  virtual void OnLoopReady(bool readable, bool writable, bool error) = 0;
  virtual void OnConnectTaskDone() = 0;
  virtual void OnThreadWake() = 0;

  // Env teardown (a worker terminated, the process exiting): closes the
  // handle without calling JS.
  virtual void Teardown() = 0;

 protected:
  ~DriverHost() = default;
};

class Driver {
 public:
  virtual ~Driver() = default;
  // Queues a connect; it runs on another thread, and its outcome comes back
  // through DriverHost::ConnectStarted and the state machine.
  virtual void Connect(ConnectTask task) = 0;
  // After any libnbd call from JS that may change the fd or the direction.
  virtual void Rearm() = 0;
  // Keep the event loop alive (commands or a connect in flight) or not.
  virtual void SetActive(bool active) = 0;
  // poll() began while a run of libnbd is not delivered to JS yet: see that
  // its delivery comes (the loop driver delivers each run in the callback
  // that made it; the thread driver's I/O thread wakes JS).
  virtual void DeliverRuns() {}
  // Stops driving for good and closes the handle with `close`: now, or, when
  // a thread of the driver is still inside a libnbd call that may take long
  // (a connect resolving a name), on that thread once the call returns. The
  // JS thread never waits for it, but for a task it can interrupt (a
  // shutdown), which returns as soon as its socket is shut down. No libnbd call is made for the NbdHandle
  // once this returns, and connects still queued are dropped.
  virtual void Stop(CloseFn close) = 0;
  // Stop() has begun: the driving thread should go back to its loop rather
  // than keep reading replies (the thread driver's I/O thread).
  virtual bool Stopping() const { return false; }
};

}  // namespace nbdjs
