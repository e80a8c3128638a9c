// The thread driver: one I/O thread per handle runs libnbd's state machine
// with its own poll(2) on libnbd's socket and an eventfd (never nbd_poll,
// which sleeps holding the handle lock), and wakes the JS thread once per
// batch of events through a thread-safe function.
#pragma once

#include <napi.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "drivers/driver.h"

namespace nbdjs {

class ThreadDriver final : public Driver {
 public:
  ThreadDriver(DriverHost* owner, Napi::Env env);
  ~ThreadDriver() override;

  void Connect(ConnectTask task) override;
  void Rearm() override;
  void SetActive(bool active) override;
  void DeliverRuns() override;
  void Stop(CloseFn close) override;
  bool Stopping() const override { return control_->stop.load(); }

 private:
  // What the I/O thread and Stop decide together under `mutex`: whether the
  // thread is inside a connect (then Stop hands it the handle to close and
  // does not wait) and the connects queued.
  struct Control {
    std::mutex mutex;
    std::atomic<bool> stop{false};
    bool in_task = false;
    std::shared_ptr<const int> task_interrupt;  // the running task's (ConnectTask::interrupt)
    std::deque<ConnectTask> tasks;
    CloseFn close;  // set by Stop while in_task
  };

  static void CallJs(Napi::Env env, Napi::Function, ThreadDriver* driver, void*);
  static void OnEnvCleanup(void* arg);
  // Touches `this` only while `control->stop` is false or Stop is joining.
  void Run(std::shared_ptr<Control> control, nbd_handle* h);
  // Runs queued connects; false when Stop took over the handle meanwhile
  // (the thread must then leave without touching `this`).
  static bool RunTasks(const std::shared_ptr<Control>& control, ThreadDriver* self, nbd_handle* h);
  void Wake();

  using Tsfn = Napi::TypedThreadSafeFunction<ThreadDriver, void, CallJs>;

  DriverHost* owner_;
  napi_env env_;
  Tsfn tsfn_;
  int wake_fd_ = -1;
  std::shared_ptr<Control> control_ = std::make_shared<Control>();
  std::thread thread_;
  bool started_ = false;
  bool stopped_ = false;
  bool cleanup_hook_ = false;
  // poll(2) events the I/O thread waits for; JS wakes it when libnbd wants more.
  std::atomic<int> polling_{0};
  // A TSFN call is queued or JS is delivering its batch: one wake-up per
  // batch (events published meanwhile wait for the next one).
  std::atomic<bool> wake_pending_{false};
};

}  // namespace nbdjs
