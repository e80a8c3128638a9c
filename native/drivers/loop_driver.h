// The loop driver: a uv_poll_t on libnbd's socket in the JS thread's own
// loop; libnbd's state machine runs on the JS thread when the socket is
// ready. Connects run on libuv's thread pool.
#pragma once

#include <node_api.h>
#include <uv.h>

#include <deque>

#include "drivers/driver.h"
#include "drivers/socket_watch.h"

namespace nbdjs {

struct ConnectWork;

class LoopDriver final : public Driver {
 public:
  LoopDriver(DriverHost* owner, napi_env env);
  ~LoopDriver() override;

  void Connect(ConnectTask task) override;
  void Rearm() override;
  void SetActive(bool active) override;
  void Stop(CloseFn close) override;

 private:
  friend struct ConnectWork;
  void OpenWatch(int fd);
  void CloseWatch();
  // Starts the next queued connect on the thread pool, if none runs.
  void StartNextConnect();

  DriverHost* owner_;
  napi_env env_;
  uv_loop_t* loop_ = nullptr;
  SocketWatch* watch_ = nullptr;
  // The connect running on the thread pool (it holds libnbd's handle lock:
  // no locking libnbd call may be made from JS meanwhile), and those queued.
  ConnectWork* work_ = nullptr;
  std::deque<ConnectTask> queued_;
  bool active_ = false;
  bool stopped_ = false;
};

}  // namespace nbdjs
