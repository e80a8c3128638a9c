// The loop driver: a uv_poll_t on libnbd's socket in the JS thread's own
// loop; libnbd's state machine runs on the JS thread when the socket is ready.
#pragma once

#include <node_api.h>
#include <uv.h>

#include "driver.h"

namespace nbdjs {

class NbdHandle;
struct PollWatch;

class LoopDriver final : public Driver {
 public:
  LoopDriver(NbdHandle* owner, napi_env env);
  ~LoopDriver() override;

  int Connect(ConnectTask task) override;
  void Rearm() override;
  void SetActive(bool active) override;
  void Stop() override;

 private:
  friend struct PollWatch;
  void OpenWatch(int fd);
  void CloseWatch();

  NbdHandle* owner_;
  napi_env env_;
  uv_loop_t* loop_ = nullptr;
  PollWatch* watch_ = nullptr;
  bool active_ = false;
  bool stopped_ = false;
};

}  // namespace nbdjs
