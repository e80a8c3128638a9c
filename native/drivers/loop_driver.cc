#include "drivers/loop_driver.h"

#include <libnbd.h>

#include "util/last_error.h"
#include "util/quiet_calls.h"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace nbdjs {

// One connect on libuv's thread pool. Its async cleanup hook keeps a
// worker's env alive until the call has returned: the handle cannot be
// closed while libnbd is inside it, and a pending request would make the
// loop refuse to close.
struct ConnectWork {
  uv_work_t req;
  LoopDriver* driver;  // null once the driver stopped: then `close` is ours
  nbd_handle* h;
  ConnectTask task;
  int result = 0;
  LastError error;
  CloseFn close;
  napi_async_cleanup_hook_handle hook = nullptr;
  // Run has returned (Stop waits for an interrupted task on it).
  std::mutex mutex;
  std::condition_variable finished_cv;
  bool finished = false;

  static void Run(uv_work_t* req) {
    auto* w = static_cast<ConnectWork*>(req->data);
    w->result = w->task.run(w->h);
    if (w->result == -1) w->error = LastError::Capture();  // this thread's error
    std::lock_guard<std::mutex> lock(w->mutex);
    w->finished = true;
    w->finished_cv.notify_all();
  }

  static void Done(uv_work_t* req, int /*status*/) {
    auto* w = static_cast<ConnectWork*>(req->data);
    if (w->hook != nullptr) napi_remove_async_cleanup_hook(w->hook);
    LoopDriver* d = w->driver;
    if (d == nullptr) {
      if (w->close) w->close();
    } else {
      d->work_ = nullptr;
      d->owner_->ConnectStarted(w->task.id, w->result != -1, w->error);
      d->StartNextConnect();
      d->owner_->OnConnectTaskDone();
    }
    delete w;
  }

  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    auto* w = static_cast<ConnectWork*>(arg);
    if (w->driver != nullptr) w->driver->owner_->Teardown();
  }
};

LoopDriver::LoopDriver(DriverHost* owner, napi_env env) : owner_(owner), env_(env) {
  napi_get_uv_event_loop(env, &loop_);
}

LoopDriver::~LoopDriver() { Stop(nullptr); }

void LoopDriver::OpenWatch(int fd) { watch_ = SocketWatch::Open(env_, loop_, owner_, fd, active_); }

void LoopDriver::CloseWatch() {
  if (watch_ == nullptr) return;
  watch_->Close();
  watch_ = nullptr;
}

void LoopDriver::Connect(ConnectTask task) {
  if (stopped_) return;
  queued_.push_back(std::move(task));
  StartNextConnect();
}

void LoopDriver::StartNextConnect() {
  if (stopped_ || work_ != nullptr || queued_.empty()) return;
  auto* w = new ConnectWork();
  w->req.data = w;
  w->driver = this;
  w->h = owner_->handle();
  w->task = std::move(queued_.front());
  queued_.pop_front();
  // The task holds libnbd's handle lock: a notify call from a poll watch
  // would wait for it on the JS thread (Rearm restarts the watch after).
  if (watch_ != nullptr) watch_->Watch(0);
  if (uv_queue_work(loop_, &w->req, ConnectWork::Run, ConnectWork::Done) != 0) {
    // Cannot happen with a valid loop; report it as the connect's failure.
    LastError e{EAGAIN, "uv_queue_work failed"};
    owner_->ConnectStarted(w->task.id, false, e);
    delete w;
    return;
  }
  napi_add_async_cleanup_hook(env_, ConnectWork::OnEnvCleanup, w, &w->hook);
  work_ = w;
}

void LoopDriver::Rearm() {
  if (stopped_) return;
  // A connect on the thread pool holds libnbd's handle lock: nothing to
  // watch until it returns, and nbd_aio_get_fd would wait for it.
  if (work_ != nullptr) return;
  nbd_handle* h = owner_->handle();
  if (h == nullptr) return CloseWatch();
  // The fd only changes while connecting and vanishes at DEAD/CLOSED; in the
  // connected states skip the (locking) nbd_aio_get_fd.
  bool connected = quiet::IsReady(h) || quiet::IsProcessing(h);
  if (watch_ == nullptr || !connected) {
    int fd = quiet::Fd(h);
    if (fd < 0) return CloseWatch();
    if (watch_ != nullptr && watch_->fd() != fd) CloseWatch();
    if (watch_ == nullptr) OpenWatch(fd);
    if (watch_ == nullptr) return;
  }
  watch_->Watch(UvEvents(quiet::Direction(h)));
}

void LoopDriver::SetActive(bool active) {
  active_ = active;
  if (watch_ != nullptr) watch_->SetRef(active);
}

void LoopDriver::Stop(CloseFn close) {
  if (!stopped_) {
    stopped_ = true;
    CloseWatch();
    queued_.clear();
  }
  if (work_ != nullptr && work_->task.interrupt) {
    // A shutdown waiting for the server: not started yet, it is cancelled;
    // running, it returns once its socket is shut down. Either way the
    // handle is closed here; ConnectWork::Done only frees the request.
    ConnectWork* w = work_;
    work_ = nullptr;
    w->driver = nullptr;
    InterruptTask(w->task);
    if (uv_cancel(reinterpret_cast<uv_req_t*>(&w->req)) != 0) {
      std::unique_lock<std::mutex> lock(w->mutex);
      // wait_for, not wait: GCC 12's condition_variable::wait is a
      // GLIBCXX_3.4.30 symbol, newer than RHEL 9's libstdc++.
      while (!w->finished) w->finished_cv.wait_for(lock, std::chrono::seconds(1));
    }
  } else if (work_ != nullptr) {
    // libnbd is inside the connect on a pool thread: ConnectWork::Done closes.
    work_->driver = nullptr;
    work_->close = std::move(close);
    work_ = nullptr;
    return;
  }
  if (close) close();
}

}  // namespace nbdjs
