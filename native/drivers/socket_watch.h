// A uv_poll_t on libnbd's socket in the JS thread's own loop: when the socket
// is ready, the host runs libnbd's state machine on the JS thread
// (DriverHost::OnLoopReady). The loop driver watches with it always; the
// thread driver while the JS thread does the reading (thread_driver.h).
#pragma once

#include <node_api.h>
#include <uv.h>

#include "drivers/driver.h"

namespace nbdjs {

class SocketWatch {
 public:
  // Null if libuv refuses the fd. `ref`: the watch keeps the loop alive.
  static SocketWatch* Open(napi_env env, uv_loop_t* loop, DriverHost* host, int fd, bool ref);
  // Stops watching for good; the object frees itself once libuv is done
  // with it (uv_close completes later, possibly after the driver is gone).
  void Close();

  int fd() const { return fd_; }
  // Watches `events` from now on (0: stops).
  void Watch(int events);
  void SetRef(bool ref);

 private:
  SocketWatch(DriverHost* host, int fd) : host_(host), fd_(fd) {}
  static void OnPoll(uv_poll_t* p, int status, int events);
  static void OnClosed(uv_handle_t* h);
  // Env teardown (worker terminated, process exiting): the host closes the
  // handle without JS. The async cleanup hook makes a worker's teardown wait
  // for the uv_close, so no uv handle is left open when its loop closes.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg);

  uv_poll_t poll_;
  DriverHost* host_;  // null once the watch is closing
  napi_async_cleanup_hook_handle hook_ = nullptr;
  int fd_;
  int events_ = 0;  // libuv events watched (UV_READABLE | UV_WRITABLE); 0 while stopped
};

// libuv events for libnbd's direction (nbd_aio_get_direction).
inline int UvEvents(unsigned dir) {
  return ((dir & LIBNBD_AIO_DIRECTION_READ) ? UV_READABLE : 0) | ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? UV_WRITABLE : 0);
}

}  // namespace nbdjs
