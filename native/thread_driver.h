// The thread driver: one I/O thread per handle runs libnbd's state machine
// with its own poll(2) on libnbd's socket and an eventfd (never nbd_poll,
// which sleeps holding the handle lock), and wakes the JS thread once per
// batch of events through a thread-safe function.
#pragma once

#include <napi.h>

#include <atomic>
#include <mutex>
#include <thread>
#include <vector>

#include "driver.h"

namespace nbdjs {

class NbdHandle;

class ThreadDriver final : public Driver {
 public:
  ThreadDriver(NbdHandle* owner, Napi::Env env);
  ~ThreadDriver() override;

  int Connect(ConnectTask task) override;
  void Rearm() override;
  void SetActive(bool active) override;
  void Stop() override;
  bool Stopping() const override { return stop_.load(); }

 private:
  static void CallJs(Napi::Env env, Napi::Function, ThreadDriver* driver, void*);
  static void OnEnvCleanup(void* arg);
  void Run(nbd_handle* h);
  void Wake();

  using Tsfn = Napi::TypedThreadSafeFunction<ThreadDriver, void, CallJs>;

  NbdHandle* owner_;
  napi_env env_;
  Tsfn tsfn_;
  int wake_fd_ = -1;
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;
  bool cleanup_hook_ = false;
  std::atomic<bool> stop_{false};
  // poll(2) events the I/O thread waits for; JS wakes it when libnbd wants more.
  std::atomic<int> polling_{0};
  // A TSFN call is queued and has not reached JS yet: one wake-up per batch.
  std::atomic<bool> wake_pending_{false};
  std::mutex tasks_mutex_;
  std::vector<ConnectTask> tasks_;
};

}  // namespace nbdjs
