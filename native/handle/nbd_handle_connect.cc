// Connecting and disconnecting: the glue that starts them, and the
// connection's events (kConnected, kDisconnected, kConnectionLost), each
// reported once whichever thread sees the end first.
#include <cerrno>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include <fcntl.h>
#include <unistd.h>

#include "handle/nbd_handle.h"

namespace nbdjs {

Napi::Value NbdHandle::StartConnect(Napi::Env env, std::function<int(nbd_handle*)> run, bool subprocess) {
  if (h_ == nullptr) return ClosedResult(env);
  if (subprocess) subprocess_ = true;
  uint64_t id = ++next_connect_id_;
  connects_queued_++;
  driver_->Connect(ConnectTask{id, std::move(run), nullptr});
  AfterLibnbdCall();
  return Napi::Number::New(env, static_cast<double>(id));
}

template <typename F>
Napi::Value NbdHandle::StartDisconnect(Napi::Env env, F&& call, bool option_abort) {
  if (h_ == nullptr) return ClosedResult(env);
  int r;
  {
    StagedEvents staged(this);
    // Set before the call: the thread driver's I/O thread may see the
    // connection end before the call returns (else it reports it as lost).
    bool was_disconnecting = disconnecting_.exchange(true);
    if (!was_disconnecting) aborting_options_ = option_abort;
    r = call();
    if (r == -1) {
      if (!was_disconnecting) disconnecting_ = false;
      RecordError();  // before the staged events' flush makes libnbd calls
    }
  }
  AfterLibnbdCall();
  return Napi::Number::New(env, r);
}

Napi::Value NbdHandle::AioDisconnect(const Napi::CallbackInfo& info) {
  uint32_t flags = info[0].As<Napi::Number>().Uint32Value();
  return StartDisconnect(info.Env(), [&] { return nbd_aio_disconnect(h_, flags); });
}

// nbd_shutdown itself, for what only it does (SHUTDOWN_ABANDON_PENDING fails
// the commands not yet sent, ENOTCONN): it waits for the server, so it runs
// as the driver's task, which close() interrupts through a duplicate of the
// socket. Commands completed inside it are staged on its thread.
Napi::Value NbdHandle::Shutdown(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  uint32_t flags = info[0].As<Napi::Number>().Uint32Value();
  std::shared_ptr<const int> interrupt;
  int fd = quiet::Fd(h_);
  if (fd >= 0) {
    int dup = fcntl(fd, F_DUPFD_CLOEXEC, 0);
    if (dup >= 0) interrupt = std::shared_ptr<const int>(new int(dup), [](const int* p) { ::close(*p); delete p; });
  }
  if (!disconnecting_.exchange(true)) aborting_options_ = false;
  shutdown_running_ = true;
  connects_queued_++;
  driver_->Connect(ConnectTask{0, [this, flags](nbd_handle* h) {
    state_before_ = quiet::State(h);
    StagedEvents staged(this);
    int r = nbd_shutdown(h, flags);
    if (r == -1) shutdown_error_ = LastError::Capture();  // before the flush's calls
    return r;
  }, std::move(interrupt)});
  AfterLibnbdCall();
  return Napi::Number::New(env, 0);
}

Napi::Value NbdHandle::StateJs(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), h_ == nullptr ? 0 : quiet::State(h_).is);
}

Napi::Value NbdHandle::AioOptAbort(const Napi::CallbackInfo& info) {
  return StartDisconnect(info.Env(), [&] { return nbd_aio_opt_abort(h_); }, /*option_abort=*/true);
}

namespace {

// A connection event; a failure carries libnbd's message (its errno may be 0).
Event ConnectionEvent(EventKind kind, uint64_t id, const LastError* failure) {
  Event e = NewEvent(kind, nullptr, failure != nullptr);
  e.id = id;
  if (failure != nullptr) {
    e.error = failure->errnum;
    e.payload->message = failure->message;
  }
  return e;
}

}  // namespace

void NbdHandle::ConnectStarted(uint64_t id, bool ok, const LastError& error) {
  // The task was a run of libnbd (poll() waits for it): counted before it
  // leaves the queue, done once its event is published.
  poll_runs_.Began();
  connects_queued_--;
  if (id == 0) {
    // nbd_shutdown returned: 0 once the connection closed (or died without
    // an error), -1 with its error otherwise.
    shutdown_running_ = false;
    if (disconnecting_.exchange(false)) {
      connected_ = false;
      PushConnectionEvent(ConnectionEvent(kDisconnected, 0, ok ? nullptr : &shutdown_error_));
    }
    return;
  }
  if (ok) {
    {
      std::lock_guard<std::mutex> lock(io_error_mutex_);
      io_error_ = LastError();
    }
    connecting_id_ = id;
  } else {
    PushConnectionEvent(ConnectionEvent(kConnected, id, &error));
  }
  poll_runs_.Done();
}

// The error that ended the connection (RecordIoError), or ENOTCONN with
// `otherwise` when none was recorded.
static LastError ConnectionFailure(std::mutex& mutex, const LastError& recorded,
                                   const char* otherwise = "connection failed: server disconnected") {
  std::lock_guard<std::mutex> lock(mutex);
  if (recorded.errnum != 0 || !recorded.message.empty()) return recorded;
  return LastError{ENOTCONN, otherwise};
}

// Either thread may see the end first; the exchange makes one event of it.
void NbdHandle::CheckConnectionState(nbd_handle* h) {
  uint64_t id = connecting_id_.load();
  if (id != 0 && !quiet::IsConnecting(h) && connecting_id_.compare_exchange_strong(id, 0)) {
    if (quiet::IsReady(h) || quiet::IsNegotiating(h)) {
      connected_ = true;
      PushConnectionEvent(ConnectionEvent(kConnected, id, nullptr));
    } else {
      LastError failure = ConnectionFailure(io_error_mutex_, io_error_);
      PushConnectionEvent(ConnectionEvent(kConnected, id, &failure));
    }
  }
  bool ended = quiet::IsClosed(h) || quiet::IsDead(h);
  if (shutdown_running_) return;  // its end is ConnectStarted's to report
  if (disconnecting_ && ended && disconnecting_.exchange(false)) {
    connected_ = false;
    bool failed = quiet::IsDead(h);
    if (failed && aborting_options_) {
      std::lock_guard<std::mutex> lock(io_error_mutex_);
      failed = io_error_.errnum != 0 || !io_error_.message.empty();
    }
    if (failed) {
      LastError failure = ConnectionFailure(io_error_mutex_, io_error_);
      PushConnectionEvent(ConnectionEvent(kDisconnected, 0, &failure));
    } else {
      PushConnectionEvent(ConnectionEvent(kDisconnected, 0, nullptr));
    }
  } else if (ended && !disconnecting_ && connected_.exchange(false)) {
    // libnbd 1.14 reports a server that hung up on an idle connection as
    // CLOSED, not DEAD, with no error recorded: say what happened.
    LastError failure = ConnectionFailure(io_error_mutex_, io_error_, "the server closed the connection");
    PushConnectionEvent(ConnectionEvent(kConnectionLost, 0, &failure));
  }
}

}  // namespace nbdjs
