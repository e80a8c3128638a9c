// Driving: running libnbd's state machine for the drivers (one notify call,
// then the replies already waiting), and what follows every libnbd call made
// from JS (watch the right fd and direction, keep or release the loop).
#include <poll.h>

#include <cstdint>
#include <thread>

#include "handle/nbd_handle.h"

namespace nbdjs {

namespace {

// Extra notify_read calls per wake-up at most (ReadWaitingReplies).
constexpr int kMaxWaitingRepliesRead = 64;
// On the JS thread, no new round once the reads completed so far carried this
// much data (their buffers: a reply with chunks or without counts alike):
// 64 large replies (256 KiB each) would hold the event loop for milliseconds,
// 64 small ones take a fraction of one. Counted in bytes, not time, so that
// the batches are the same under callgrind (bench --instructions).
constexpr uint64_t kMaxWaitingReplyBytesOnJsThread = 1 << 20;
// notify calls after a poll error, per wake-up (one reply each); the poll
// reports the error again if more remain.
constexpr int kMaxErrorRounds = 1024;

}  // namespace

void NbdHandle::RunStateMachine(nbd_handle* h, bool readable, bool writable) {
  // Off the JS thread, what JS will see of the state until it has this
  // call's events (EventQueue::PendingBefore).
  const bool off_js_thread = std::this_thread::get_id() != js_thread_;
  if (off_js_thread) {
    state_before_ = quiet::State(h);
    queue_.EnterCall(state_before_);
  }
  poll_runs_.Began();
  unsigned dir = quiet::Direction(h);
  int r = 0;
  StagedEvents staged(this);
  // Read first; never notify_read an fd that is not readable (libnbd would
  // park in REPLY.START and hang).
  if (readable && (dir & LIBNBD_AIO_DIRECTION_READ)) {
    r = nbd_aio_notify_read(h);
    if (r != -1) ReadWaitingReplies(h, staged);
  } else if (writable && (dir & LIBNBD_AIO_DIRECTION_WRITE)) {
    r = nbd_aio_notify_write(h);
  }
  if (r == -1) RecordIoError();
  staged.Flush(h);
  CheckConnectionState(h);
  if (off_js_thread) queue_.LeaveCall();
  poll_runs_.Done();
}

// libnbd's notify_read returns at READY after each reply, so waiting for the
// socket again would cost one wake-up (a libuv turn and a JS delivery, or an
// I/O-thread poll) per reply. After a notify_read that completed a command,
// while commands are in flight and libnbd still wants to read, ask the socket
// with a zero-timeout poll(2) whether more is waiting and read it with
// another notify_read; the driver's own wait resumes afterwards (the loop
// driver re-arms from libnbd's direction as after any notify). Only after a
// completion: probing after every notify (a write, part of a reply) finds an
// empty socket at queue depth 1. Each round's events are flushed (retired,
// published) before the next, as separate wake-ups would do: libnbd's order,
// JS callbacks after libnbd returns. Stops after kMaxWaitingRepliesRead rounds
// (or kMaxWaitingReplyBytesOnJsThread of data on the JS thread), on an error, or
// when the driver is stopping.
void NbdHandle::ReadWaitingReplies(nbd_handle* h, StagedEvents& staged) {
  int fd = -1;
  const bool on_js_thread = std::this_thread::get_id() == js_thread_;
  uint64_t bytes = 0;
  for (int round = 0; round < kMaxWaitingRepliesRead; round++) {
    // A data command's completion: option commands (negotiation, when
    // nbd_aio_in_flight is not allowed) start out retired, data commands are
    // retired by the flush below.
    bool completed = false;
    for (const Event& e : staged.events) {
      if (e.kind == kCompletion && !e.command->retired.load()) {
        completed = true;
        bytes += e.command->reply_bytes;
      }
    }
    staged.Flush(h);
    if (!completed || driver_->Stopping()) return;
    if (on_js_thread && bytes >= kMaxWaitingReplyBytesOnJsThread) return;
    if (quiet::InFlight(h) <= 0) return;
    if ((quiet::Direction(h) & LIBNBD_AIO_DIRECTION_READ) == 0) return;
    if (fd < 0 && (fd = quiet::Fd(h)) < 0) return;
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 0) != 1 || (p.revents & (POLLIN | POLLHUP | POLLERR)) == 0) return;
    if (nbd_aio_notify_read(h) == -1) {
      RecordIoError();
      return;
    }
  }
}

void NbdHandle::AfterLibnbdCall() {
  if (delivering_) {
    // Commands issued from callbacks: the delivery re-arms once at its end.
    rearm_after_delivery_ = true;
  } else {
    if (h_ != nullptr) CheckConnectionState(h_);
    if (driver_) driver_->Rearm();
  }
  // Events libnbd recorded inside this very call (a completion on a dead
  // connection) are delivered before the call returns, as in C; those of the
  // I/O thread arrive through its own wake-up.
  window_.SetQueuedFromJs(js_thread_events_);
  UpdateActive();
}

void NbdHandle::UpdateActive() {
  bool want = h_ != nullptr &&
              (in_flight_ > 0 || connects_queued_ > 0 || connecting_id_ != 0 || disconnecting_ || queue_.Size() > 0);
  if (want == active_) return;
  active_ = want;
  // While active, this object and its JS event sink stay reachable (commands
  // hold buffers and callbacks) and the loop stays alive.
  // Raw napi calls: these must not throw (this runs under libuv callbacks).
  uint32_t count;
  napi_env env = Env();
  if (want) {
    napi_reference_ref(env, napi_ref(*this), &count);
    napi_reference_ref(env, on_events_, &count);
  } else {
    napi_reference_unref(env, napi_ref(*this), &count);
    napi_reference_unref(env, on_events_, &count);
  }
  if (driver_) driver_->SetActive(want);
}

void NbdHandle::OnLoopReady(bool readable, bool writable, bool error) {
  if (h_ == nullptr) return;
  if (error)
    DriveAfterSocketError();
  else
    RunStateMachine(h_, readable, writable);
  AfterLibnbdCall();
  DeliverFromLoop();
}

void NbdHandle::DriveAfterSocketError() {
  // One notify_read handles one reply: replies queued ahead of the error (or
  // EOF) each take a call, and the last one leaves libnbd DEAD, completing
  // every command in flight. Stop when the socket has nothing more to say.
  for (int round = 0; round < kMaxErrorRounds && h_ != nullptr; round++) {
    if (quiet::IsDead(h_) || quiet::IsClosed(h_)) break;
    int fd = quiet::Fd(h_);
    if (fd < 0) break;
    struct pollfd p = {fd, PollEvents(quiet::Direction(h_)), 0};
    if (p.events == 0 || poll(&p, 1, 0) <= 0 || p.revents == 0) break;
    bool failed = (p.revents & (POLLERR | POLLHUP | POLLNVAL)) != 0;
    RunStateMachine(h_, failed || (p.revents & POLLIN) != 0, failed || (p.revents & POLLOUT) != 0);
  }
}

// poll(): C's nbd_poll runs libnbd once; here the driver runs it, and a
// poll() waits for the delivery of the next run (a kPolled event after its
// events, MarkRunsDelivered). A run that began before the call and that JS
// has not been handed yet counts: its events may be what the caller waits
// for (a completion the I/O thread read, not yet delivered). Where libnbd
// waits for nothing (created, negotiating, dead, closed) and no run or
// connect is under way, nbd_poll fails at once without polling: it is called
// for libnbd's own error. Returns -1, or the kPolled events so far: the
// next one settles this poll.
Napi::Value NbdHandle::PollJs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  // A queued connect's task holds libnbd's lock: read before the runs
  // (ConnectStarted counts its run before it leaves the queue).
  bool connecting = connects_queued_ > 0;
  bool undelivered = poll_runs_.Undelivered();
  if (!connecting && !undelivered && quiet::Direction(h_) == 0) {
    StagedEvents staged(this);  // debug messages
    if (nbd_poll(h_, 0) == -1) {
      RecordError();
      return Napi::Number::New(env, -1);
    }
  }
  poll_runs_.Wait();
  if (undelivered && driver_) driver_->DeliverRuns();
  return Napi::Number::New(env, static_cast<double>(poll_runs_.Polled()));
}

void NbdHandle::MarkRunsDelivered() {
  uint64_t sequence = poll_runs_.Delivered();
  if (sequence == 0) return;
  Event e = NewEvent(kPolled, nullptr, false);
  e.id = sequence;
  queue_.Push(std::move(e));
}

void NbdHandle::OnConnectTaskDone() {
  if (h_ == nullptr) return;
  AfterLibnbdCall();
  DeliverFromLoop();
}

void NbdHandle::OnThreadWake() {
  if (h_ == nullptr) return;
  DeliverFromLoop();
}

}  // namespace nbdjs
