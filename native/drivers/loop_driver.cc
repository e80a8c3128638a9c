#include "drivers/loop_driver.h"

#include <libnbd.h>

#include "util/last_error.h"
#include "util/quiet_calls.h"

#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <mutex>

namespace nbdjs {

// One watched fd. Heap-allocated on its own because uv_close completes
// later, possibly after the handle (and driver) are gone. The async cleanup
// hook makes a worker's teardown wait for the uv_close, so no uv handle is
// left open when the worker's loop closes.
struct PollWatch {
  uv_poll_t poll;
  LoopDriver* driver;  // null once the watch is closing
  napi_async_cleanup_hook_handle hook = nullptr;
  int fd;
  int events = 0;  // what the poll watches; 0 while stopped

  static void OnPoll(uv_poll_t* p, int status, int events) {
    auto* w = reinterpret_cast<PollWatch*>(p->data);
    if (w->driver == nullptr) return;
    if (status < 0) {
      // A socket error (POLLERR): libuv has stopped the poll and reports no
      // events. libnbd must read until it sees the error (every command in
      // flight then completes); the poll restarts on the next Rearm.
      w->events = 0;
      w->driver->owner_->OnLoopReady(true, true, true);
      return;
    }
    bool readable = (events & (UV_READABLE | UV_DISCONNECT)) != 0;
    bool writable = (events & UV_WRITABLE) != 0;
    w->driver->owner_->OnLoopReady(readable, writable, false);
  }

  static void OnClosed(uv_handle_t* h) {
    auto* w = reinterpret_cast<PollWatch*>(h->data);
    if (w->hook != nullptr) napi_remove_async_cleanup_hook(w->hook);
    delete w;
  }

  // Env teardown (worker terminated, process exiting): close the handle
  // without JS. If the watch is already closing, OnClosed ends the hook.
  static void OnEnvCleanup(napi_async_cleanup_hook_handle, void* arg) {
    auto* w = static_cast<PollWatch*>(arg);
    if (w->driver != nullptr) w->driver->owner_->Teardown();
  }
};

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

void LoopDriver::OpenWatch(int fd) {
  auto* w = new PollWatch();
  w->driver = this;
  w->fd = fd;
  if (uv_poll_init(loop_, &w->poll, fd) != 0) {
    delete w;
    return;
  }
  w->poll.data = w;
  napi_add_async_cleanup_hook(env_, PollWatch::OnEnvCleanup, w, &w->hook);
  if (!active_) uv_unref(reinterpret_cast<uv_handle_t*>(&w->poll));
  watch_ = w;
}

void LoopDriver::CloseWatch() {
  PollWatch* w = watch_;
  if (w == nullptr) return;
  watch_ = nullptr;
  w->driver = nullptr;
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t*>(&w->poll), PollWatch::OnClosed);
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
  if (watch_ != nullptr && watch_->events != 0) {
    uv_poll_stop(&watch_->poll);
    watch_->events = 0;
  }
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
    if (watch_ != nullptr && watch_->fd != fd) CloseWatch();
    if (watch_ == nullptr) OpenWatch(fd);
    if (watch_ == nullptr) return;
  }
  unsigned dir = quiet::Direction(h);
  int events = ((dir & LIBNBD_AIO_DIRECTION_READ) ? UV_READABLE : 0) |
               ((dir & LIBNBD_AIO_DIRECTION_WRITE) ? UV_WRITABLE : 0);
  if (events == watch_->events) return;
  watch_->events = events;
  if (events != 0)
    uv_poll_start(&watch_->poll, events, PollWatch::OnPoll);
  else
    uv_poll_stop(&watch_->poll);
}

void LoopDriver::SetActive(bool active) {
  active_ = active;
  if (watch_ == nullptr) return;
  auto* h = reinterpret_cast<uv_handle_t*>(&watch_->poll);
  if (active)
    uv_ref(h);
  else
    uv_unref(h);
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
