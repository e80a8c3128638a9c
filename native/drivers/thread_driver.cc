#include "drivers/thread_driver.h"

#include <libnbd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "util/last_error.h"
#include "util/quiet_calls.h"

namespace nbdjs {

namespace {

// The JS thread takes the reading at or below the first pair (commands in
// flight, bytes their replies may carry) and keeps it at or below the second,
// so that a load moving between one and two commands does not move it back
// and forth. Larger replies stay on the I/O thread: reading them is the work
// the thread driver keeps off the JS thread.
constexpr int64_t kJsTakesCommands = 1;
constexpr uint64_t kJsTakesBytes = 64 * 1024;
constexpr int64_t kJsKeepsCommands = 2;
constexpr uint64_t kJsKeepsBytes = 128 * 1024;

}  // namespace

ThreadDriver::ThreadDriver(DriverHost* owner, Napi::Env env) : owner_(owner), env_(env) {
  napi_get_uv_event_loop(env, &loop_);
  wake_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (wake_fd_ == -1) {
    Napi::Error::New(env, "eventfd failed").ThrowAsJavaScriptException();
    return;
  }
  tsfn_ = Tsfn::New(env, "libnbd-io", 0, 1, this);
  tsfn_.Unref(env);
  // Registered after the TSFN, so it runs before Node's cleanup of the TSFN.
  napi_add_env_cleanup_hook(env, OnEnvCleanup, this);
  cleanup_hook_ = true;
}

ThreadDriver::~ThreadDriver() { Stop(nullptr); }

// Env teardown (worker terminated, process exiting): stop the I/O thread and
// close the handle without JS.
void ThreadDriver::OnEnvCleanup(void* arg) {
  auto* self = static_cast<ThreadDriver*>(arg);
  self->cleanup_hook_ = false;  // Node drops it after running it
  self->owner_->Teardown();
}

void ThreadDriver::Connect(ConnectTask task) {
  if (stopped_) return;
  // The task holds libnbd's lock: a notify from a watch on the JS thread
  // would wait for it there.
  ReadOnIoThread();
  tasks_outstanding_++;
  uint64_t id = task.id;
  {
    std::lock_guard<std::mutex> lock(control_->mutex);
    control_->tasks.push_back(std::move(task));
  }
  if (!started_) {
    try {
      thread_ = std::thread(&ThreadDriver::Run, this, control_, owner_->handle());
      started_ = true;
    } catch (const std::system_error& e) {
      {
        std::lock_guard<std::mutex> lock(control_->mutex);
        control_->tasks.clear();
      }
      tasks_outstanding_ = 0;
      owner_->ConnectStarted(id, false, LastError{e.code().value(), std::string("cannot start the I/O thread: ") + e.what()});
      return;
    }
  }
  Wake();
}

void ThreadDriver::Wake() {
  uint64_t one = 1;
  ssize_t r;
  do r = write(wake_fd_, &one, sizeof one);
  while (r == -1 && errno == EINTR);
}

void ThreadDriver::Rearm() {
  nbd_handle* h = owner_->handle();
  if (!started_ || stopped_ || h == nullptr) return;
  ChooseReader(h);
  if (reader_.load() == kJsThread) return WatchOnJsThread(h);
  // Wake the I/O thread only when libnbd wants an event it is not polling
  // for (issuing a command usually sends it at once and leaves READ).
  if (PollEvents(quiet::Direction(h)) & ~polling_.load()) Wake();
}

// Asking costs the I/O thread a wake-up and JS another (the hand-over);
// taking it back costs the I/O thread one. Only JS moves the reading to the
// JS thread's side or back; the I/O thread completes a hand-over JS asked for.
void ThreadDriver::ChooseReader(nbd_handle* h) {
  int64_t commands = owner_->CommandsInFlight();
  uint64_t bytes = owner_->ReplyBytesInFlight();
  bool tasks = tasks_outstanding_.load() != 0;
  if (reader_.load() == kIoThread) {
    if (tasks || commands > kJsTakesCommands || bytes > kJsTakesBytes) return;
    if (!quiet::IsReady(h) && !quiet::IsProcessing(h)) return;
    reader_ = kJsWanted;
    Wake();
  } else if (tasks || commands > kJsKeepsCommands || bytes > kJsKeepsBytes || (!quiet::IsReady(h) && !quiet::IsProcessing(h))) {
    ReadOnIoThread();
  }
}

void ThreadDriver::WatchOnJsThread(nbd_handle* h) {
  if (watch_ == nullptr) {
    int fd = quiet::Fd(h);
    if (fd >= 0) watch_ = SocketWatch::Open(env_, loop_, owner_, fd, active_);
    // Nothing to watch (the connection ended meanwhile) or libuv refused
    // the fd: the I/O thread reads.
    if (watch_ == nullptr) return ReadOnIoThread();
  }
  watch_->Watch(UvEvents(quiet::Direction(h)));
}

void ThreadDriver::ReadOnIoThread() {
  if (reader_.load() == kIoThread) return;
  CloseWatch();  // JS reads no more from here on
  // From kJsWanted the I/O thread may have just handed over (kJsThread):
  // JS had no watch yet, and this takes it back before JS opens one.
  reader_ = kIoThread;
  if (started_) Wake();
}

void ThreadDriver::CloseWatch() {
  if (watch_ == nullptr) return;
  watch_->Close();
  watch_ = nullptr;
}

void ThreadDriver::DeliverRuns() {
  // The I/O thread wakes JS for them (PollWanted) when it next looks.
  if (started_ && !stopped_) Wake();
}

void ThreadDriver::SetActive(bool active) {
  if (stopped_) return;
  active_ = active;
  if (watch_ != nullptr) watch_->SetRef(active);
  if (active)
    tsfn_.Ref(env_);
  else
    tsfn_.Unref(env_);
}

void ThreadDriver::Stop(CloseFn close) {
  if (stopped_) {
    if (close) close();
    return;
  }
  stopped_ = true;
  CloseWatch();
  bool handed_off = false;
  if (started_) {
    {
      std::lock_guard<std::mutex> lock(control_->mutex);
      control_->stop = true;
      control_->tasks.clear();
      if (control_->in_task && control_->task_interrupt) {
        // A shutdown waiting for the server: it returns once its socket is
        // shut down, and the thread is joined below.
        InterruptTask(ConnectTask{0, nullptr, control_->task_interrupt});
      } else if (control_->in_task) {
        // A connect may be resolving a name: never wait for it. The thread
        // closes the handle when libnbd returns, and touches nothing else.
        control_->close = std::move(close);
        handed_off = true;
      }
    }
    if (handed_off) {
      thread_.detach();
    } else {
      Wake();
      thread_.join();  // it is in poll(2) or a non-blocking notify call
    }
  }
  if (!handed_off && close) close();
  // Abort: calls still queued reach CallJs without an env and do nothing.
  tsfn_.Abort();
  if (cleanup_hook_) {
    napi_remove_env_cleanup_hook(env_, OnEnvCleanup, this);
    cleanup_hook_ = false;
  }
  // Every OS resource goes with close(), not with garbage collection.
  if (wake_fd_ != -1) {
    ::close(wake_fd_);
    wake_fd_ = -1;
  }
}

void ThreadDriver::CallJs(Napi::Env env, Napi::Function, ThreadDriver* driver, void*) {
  if (env == nullptr || driver == nullptr || driver->stopped_) return;
  driver->owner_->OnThreadWake();
  if (driver->stopped_) return;  // close() from a callback
  // The batch is delivered. Events the I/O thread published meanwhile found
  // a wake-up pending and were left to this one: JS schedules their delivery
  // itself rather than waking the I/O thread to do it (at queue depth 1 that
  // was a third wake-up per command). Clearing the flag before looking pairs
  // with the I/O thread publishing before it tests the flag: one of the two
  // sees the other.
  driver->wake_pending_ = false;
  DriverHost* owner = driver->owner_;
  // The I/O thread handed the reading over (it tests the flag after).
  nbd_handle* h = owner->handle();
  if (driver->reader_.load() == kJsThread && driver->watch_ == nullptr && h != nullptr) driver->WatchOnJsThread(h);
  if ((owner->HasEvents() || owner->PollWanted()) && !driver->wake_pending_.exchange(true))
    driver->tsfn_.NonBlockingCall();
}

bool ThreadDriver::RunTasks(const std::shared_ptr<Control>& control, ThreadDriver* self, nbd_handle* h) {
  for (;;) {
    ConnectTask task;
    {
      std::lock_guard<std::mutex> lock(control->mutex);
      if (control->stop || control->tasks.empty()) return true;
      task = std::move(control->tasks.front());
      control->tasks.pop_front();
      control->in_task = true;
      control->task_interrupt = task.interrupt;
    }
    int r = task.run(h);
    LastError error;
    if (r == -1) error = LastError::Capture();  // this thread's error, right after the call
    CloseFn close;
    bool handed_off;
    {
      std::lock_guard<std::mutex> lock(control->mutex);
      control->in_task = false;
      control->task_interrupt.reset();
      handed_off = control->stop;
      close = std::move(control->close);
    }
    if (handed_off) {
      // Stop detached this thread: `self` may be gone.
      if (close) close();
      return false;
    }
    self->tasks_outstanding_--;
    self->owner_->ConnectStarted(task.id, r != -1, error);
  }
}

void ThreadDriver::Run(std::shared_ptr<Control> control, nbd_handle* h) {
  int fd = -1;
  for (;;) {
    if (!RunTasks(control, this, h)) return;
    if (control->stop) break;  // Stop is joining: `this` is alive
    // The fd only changes while connecting and vanishes at DEAD/CLOSED.
    if (fd < 0 || (!quiet::IsReady(h) && !quiet::IsProcessing(h))) fd = quiet::Fd(h);
    owner_->CheckConnectionState(h);
    if ((owner_->HasEvents() || owner_->PollWanted()) && !wake_pending_.exchange(true)) tsfn_.NonBlockingCall();

    // JS asked to read (ChooseReader): hand over between two runs, and
    // wake JS to watch the socket. From then on this thread polls only its
    // eventfd, until JS takes the reading back.
    int wanted = kJsWanted;
    bool handed = reader_.compare_exchange_strong(wanted, kJsThread);
    bool js_reads = reader_.load() == kJsThread;
    if (handed && !wake_pending_.exchange(true)) tsfn_.NonBlockingCall();

    // The socket is read while JS delivers a batch too: a server sending
    // large replies is held up by every pause in reading (its send buffer
    // holds ~200 KiB), and JS's commands take libnbd's lock only briefly.
    unsigned dir = quiet::Direction(h);
    short events = fd >= 0 && !js_reads ? PollEvents(dir) : 0;
    polling_ = events;
    // JS reads `polling_` after changing the direction: look again after
    // publishing, so that a change made in between is not slept through.
    if (quiet::Direction(h) != dir) continue;

    struct pollfd fds[2] = {{wake_fd_, POLLIN, 0}, {fd, events, 0}};
    int n = poll(fds, events != 0 ? 2 : 1, -1);
    if (n == -1) continue;  // EINTR
    if (fds[0].revents & POLLIN) {
      uint64_t count;
      while (read(wake_fd_, &count, sizeof count) == -1 && errno == EINTR) {
      }
    }
    if (control->stop) break;
    if (events != 0 && fds[1].revents != 0) {
      bool readable = (fds[1].revents & (POLLIN | POLLHUP | POLLERR | POLLNVAL)) != 0;
      // An error or hang-up ends libnbd's wait whichever way it waits.
      bool writable = (fds[1].revents & (POLLOUT | POLLHUP | POLLERR | POLLNVAL)) != 0;
      owner_->RunStateMachine(h, readable, writable);
      // A run that recorded nothing is still what a waiting poll() waits for.
      if ((owner_->HasEvents() || owner_->PollWanted()) && !wake_pending_.exchange(true)) tsfn_.NonBlockingCall();
    }
  }
  polling_ = 0;
}

}  // namespace nbdjs
