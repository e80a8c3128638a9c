// The thread driver: one I/O thread per handle runs libnbd's state machine
// with its own poll(2) on libnbd's socket and an eventfd (never nbd_poll,
// which sleeps holding the handle lock), and wakes the JS thread once per
// batch of events through a thread-safe function.
//
// While at most one small command is in flight, the JS thread reads the
// socket itself (a SocketWatch, as the loop driver): it would only wait for
// that reply, and a reply read by the I/O thread costs two thread wake-ups
// (the I/O thread's, then JS's) where C pays one. One thread reads at a
// time (a notify_read on a socket with nothing to read parks libnbd):
// `reader_` says which, and the reading moves as described at ChooseReader.
#pragma once

#include <napi.h>
#include <uv.h>

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>

#include "drivers/driver.h"
#include "drivers/socket_watch.h"

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
  // JS thread: moves the reading to where the commands in flight want it.
  void ChooseReader(nbd_handle* h);
  // JS thread: the I/O thread handed the reading over, or the direction
  // changed: watch the socket for what libnbd wants.
  void WatchOnJsThread(nbd_handle* h);
  // JS thread: takes the reading back to the I/O thread.
  void ReadOnIoThread();
  void CloseWatch();

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

  // Who reads libnbd's socket. JS asks for it (kJsWanted); the I/O thread
  // hands it over between two runs (kJsThread) and wakes JS, which then
  // watches the socket; JS hands it back at once (it stops its watch first).
  enum Reader : int { kIoThread, kJsWanted, kJsThread };
  std::atomic<int> reader_{kIoThread};
  SocketWatch* watch_ = nullptr;  // JS thread; only while reader_ is kJsThread
  uv_loop_t* loop_ = nullptr;
  bool active_ = false;
  // Connect tasks queued or running (they hold libnbd's lock for long: the
  // I/O thread reads meanwhile). Counted by JS, ended by the I/O thread.
  std::atomic<int> tasks_outstanding_{0};
};

}  // namespace nbdjs
