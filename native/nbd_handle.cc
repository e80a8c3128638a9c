#include "nbd_handle.h"

#include <fcntl.h>
#include <poll.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <system_error>
#include <thread>

#include "loop_driver.h"
#include "thread_driver.h"

namespace nbdjs {

namespace {

constexpr size_t kEventCapacity = 1024;  // events per JS call
// Extra notify_read calls per wake-up at most (DrainReadyReplies).
constexpr int kMaxDrainedReplies = 64;
// notify calls after a poll error, per wake-up (one reply each); the poll
// reports the error again if more remain.
constexpr int kMaxErrorRounds = 1024;
// How long close() waits for a connectCommand server to exit after EOF
// before leaving the rest of nbd_close to its thread.
constexpr std::chrono::milliseconds kSubprocessCloseWait{100};

// What nbd_close needs once no other thread is inside libnbd for the handle.
struct ClosingHandle {
  nbd_handle* h = nullptr;
  // The user_data of callbacks libnbd may still run (nbd_close on >= 1.18).
  std::vector<std::unique_ptr<CommandContext>> commands;
  bool subprocess = false;
  // The closer thread's end, for the bounded wait below.
  std::mutex mutex;
  std::condition_variable closed_cv;
  bool closed = false;

  static void Close(const std::shared_ptr<ClosingHandle>& self) {
    for (auto& c : self->commands) c->owner = nullptr;
    if (self->subprocess) {
      // nbd_close closes the socket, then waits for the server process to
      // exit, however long it lingers: on a thread of its own. A server
      // normally exits as soon as it sees EOF, so wait for that a little:
      // then close() has released everything (socket, child) when it
      // returns; a lingering one is left to the thread.
      try {
        std::thread([self] {
          nbd_close(self->h);
          std::lock_guard<std::mutex> lock(self->mutex);
          self->closed = true;
          self->closed_cv.notify_all();
        }).detach();
        std::unique_lock<std::mutex> lock(self->mutex);
        self->closed_cv.wait_for(lock, kSubprocessCloseWait, [&] { return self->closed; });
        return;
      } catch (const std::system_error&) {
        // No thread to be had: closing here is all that is left.
      }
    }
    nbd_close(self->h);
  }
};

}  // namespace

Napi::Function NbdHandle::Init(Napi::Env env) {
  std::vector<PropertyDescriptor> methods = {
      InstanceMethod<&NbdHandle::AioDisconnect>("aioDisconnect"),
      InstanceMethod<&NbdHandle::AioOptAbort>("aioOptAbort"),
      InstanceMethod<&NbdHandle::SetDebugCallback>("setDebugCallback"),
      InstanceMethod<&NbdHandle::ClearDebugCallback>("clearDebugCallback"),
      InstanceMethod<&NbdHandle::AioCommandCompleted>("aioCommandCompleted"),
      InstanceMethod<&NbdHandle::AioInFlight>("aioInFlight"),
      InstanceMethod<&NbdHandle::Close>("close"),
      InstanceMethod<&NbdHandle::LastErrorJs>("lastError"),
      InstanceMethod<&NbdHandle::DrainJs>("drain"),
      InstanceAccessor<&NbdHandle::EventsGetter>("events"),
  };
  std::vector<PropertyDescriptor> generated;
  AddGeneratedMethods(generated);
  methods.insert(methods.end(), generated.begin(), generated.end());
  return DefineClass(env, "NbdHandle", methods);
}

NbdHandle::NbdHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<NbdHandle>(info) {
  Napi::Env env = info.Env();
  if (!info[0].IsFunction()) {
    Napi::TypeError::New(env, "onEvents must be a function").ThrowAsJavaScriptException();
    return;
  }
  on_events_ = Napi::Weak(info[0].As<Napi::Function>());
  events_capacity_ = kEventCapacity;
  // Record 0 is a header: [0] = events queued by the last call from JS.
  Napi::Float64Array events = Napi::Float64Array::New(env, (events_capacity_ + 1) * kEventStride);
  events_data_ = events.Data();
  events_array_ = Napi::Persistent(events);

  link_ = new HandleLink{this, 1};
  AddRawMethods(env, info.This(), link_);

  h_ = nbd_create();
  if (h_ == nullptr) {
    Napi::Error e = Napi::Error::New(env, nbd_get_error() ? nbd_get_error() : "nbd_create failed");
    e.Set("errno", Napi::Number::New(env, nbd_get_errno()));
    e.ThrowAsJavaScriptException();
    return;
  }
  addon_ = env.GetInstanceData<AddonData>();
  js_thread_ = std::this_thread::get_id();
  std::string driver = info[1].IsString() ? info[1].As<Napi::String>().Utf8Value() : "loop";
  if (driver == "thread")
    driver_ = std::make_unique<ThreadDriver>(this, env);
  else
    driver_ = std::make_unique<LoopDriver>(this, env);
}

NbdHandle::~NbdHandle() {
  Teardown();
  driver_.reset();
  if (link_ != nullptr) {
    link_->handle = nullptr;  // its functions may be finalized later
    HandleLink::Release(link_);
  }
}

void NbdHandle::Teardown() {
  if (h_ == nullptr) return;
  auto closing = std::make_shared<ClosingHandle>();
  closing->h = h_;
  closing->commands = std::move(command_storage_);
  closing->subprocess = subprocess_;
  h_ = nullptr;
  if (debug_sink_ != nullptr) {
    debug_sink_->Detach();  // libnbd frees it with the handle
    debug_sink_ = nullptr;
  }
  // The driver stops polling before libnbd closes the fd, and closes now or
  // once its own thread has left libnbd. libnbd >= 1.18 runs pending
  // completion callbacks in nbd_close: they record nothing, and the facade
  // completes every pending command itself.
  CloseFn close = [closing] { ClosingHandle::Close(closing); };
  if (driver_)
    driver_->Stop(std::move(close));
  else
    close();
  queue_.Clear();
  in_flight_ = 0;
  connects_queued_ = 0;
  connecting_id_ = 0;
  connected_ = false;
  disconnecting_ = false;
  free_commands_.clear();
}

// ------------------------------------------------------------ driving

void NbdHandle::RunStateMachine(nbd_handle* h, bool readable, bool writable) {
  unsigned dir = quiet::Direction(h);
  int r = 0;
  StagedEvents staged(this);
  // Read first; never notify_read an fd that is not readable (libnbd would
  // park in REPLY.START and hang).
  if (readable && (dir & LIBNBD_AIO_DIRECTION_READ)) {
    r = nbd_aio_notify_read(h);
    if (r != -1) DrainReadyReplies(h, staged);
  } else if (writable && (dir & LIBNBD_AIO_DIRECTION_WRITE)) {
    r = nbd_aio_notify_write(h);
  }
  if (r == -1) RecordIoError();
  staged.Flush(h);
  CheckConnectionState(h);
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
// JS callbacks after libnbd returns. Stops after kMaxDrainedReplies rounds,
// on an error, or when the driver is stopping.
void NbdHandle::DrainReadyReplies(nbd_handle* h, StagedEvents& staged) {
  int fd = -1;
  for (int round = 0; round < kMaxDrainedReplies; round++) {
    // A data command's completion: option commands (negotiation, when
    // nbd_aio_in_flight is not allowed) start out retired, data commands are
    // retired by the flush below.
    bool completed = false;
    for (const Event& e : staged.events) {
      if (e.kind == kCompletion && !e.command->retired.load()) {
        completed = true;
        break;
      }
    }
    staged.Flush(h);
    if (!completed || driver_->Stopping()) return;
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
  if (dispatching_) {
    // Commands issued from callbacks: the delivery re-arms once at its end.
    rearm_pending_ = true;
  } else {
    if (h_ != nullptr) CheckConnectionState(h_);
    if (driver_) driver_->Rearm();
  }
  // Events libnbd recorded inside this very call (a completion on a dead
  // connection) are delivered before the call returns, as in C; those of the
  // I/O thread arrive through its own wake-up.
  events_data_[kHeaderQueued] = static_cast<double>(js_thread_events_);
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

void NbdHandle::OnConnectTaskDone() {
  if (h_ == nullptr) return;
  AfterLibnbdCall();
  DeliverFromLoop();
}

void NbdHandle::OnThreadWake() {
  if (h_ == nullptr) return;
  DeliverFromLoop();
}

void NbdHandle::DeliverFromLoop() {
  Napi::Env env = Env();
  Napi::HandleScope scope(env);
  napi_callback_scope callback_scope;
  if (napi_open_callback_scope(env, nullptr, addon_->async_context, &callback_scope) != napi_ok) return;
  try {
    Drain(env, false);
  } catch (...) {
    // Drain reports JS exceptions itself; nothing may unwind into libuv.
    fprintf(stderr, "libnbd: unexpected C++ exception in event dispatch\n");
    napi_value pending;
    napi_get_and_clear_last_exception(env, &pending);
  }
  // Always closed (a scope left open stops microtasks for good): runs
  // microtasks and nextTicks.
  napi_close_callback_scope(env, callback_scope);
}

void NbdHandle::Drain(Napi::Env env, bool from_js) {
  // From the loop, the caller holds a callback scope: microtasks (a Promise's
  // continuation issuing the next command) run once Drain is over, never
  // while `dispatching_` would hold back the drain of their own events.
  if (dispatching_) return;  // the outer Drain delivers what JS queues meanwhile
  struct Dispatching {
    bool& flag;
    explicit Dispatching(bool& f) : flag(f) { flag = true; }
    ~Dispatching() { flag = false; }
  } dispatching(dispatching_);
  // The first exception lib/ let through (a bug there: it catches what user
  // callbacks throw), kept as the raw value: node-addon-api's Error wrapper
  // would touch it (a Proxy's traps may throw again).
  napi_ref failure = nullptr;
  bool closed = false;
  while (!closed) {
    queue_.TakeAll(batch_);
    if (batch_.empty()) break;
    size_t i = 0;
    while (i < batch_.size() && !closed) {
      size_t n = std::min(events_capacity_, batch_.size() - i);
      double* out = events_data_ + kEventStride;
      Napi::Array payloads;
      for (size_t j = 0; j < n; j++, out += kEventStride) {
        const Event& e = batch_[i + j];
        if (e.payload) {
          if (payloads.IsEmpty()) payloads = Napi::Array::New(env, n);
          payloads.Set(static_cast<uint32_t>(j), PayloadToJs(env, e));
        }
        CommandContext* c = e.command;
        out[field::kKind] = e.kind;
        switch (e.kind) {
          case kChunk:
            out[field::kChunkSlot] = c->slot;
            out[field::kChunkStatus] = e.status;
            out[field::kChunkError] = e.error;
            out[field::kChunkSubOffset] = static_cast<double>(e.sub_offset);
            out[field::kChunkCount] = static_cast<double>(e.count);
            break;
          case kCompletion:
            if (!c->retired.load()) c->Retire(h_);
            out[field::kCompletionSlot] = c->slot;
            out[field::kCompletionError] = e.error;
            out[field::kCompletionRetireError] = c->retire_error;
            delivered_.push_back(c);  // its slot is reused once JS has seen this
            in_flight_--;
            break;
          case kConnected:
            out[field::kConnectedId] = static_cast<double>(e.id);
            out[field::kConnectedError] = e.error;
            break;
          case kDisconnected:
            out[field::kDisconnectedError] = e.error;
            break;
          case kConnectionLost:
            out[field::kConnectionLostError] = e.error;
            break;
          case kExtent:
            out[field::kExtentSlot] = c->slot;
            out[field::kExtentError] = e.error;
            break;
          case kList:
            out[field::kListSlot] = c->slot;
            break;
          case kContext:
            out[field::kContextSlot] = c->slot;
            break;
          case kDebug:
            break;
        }
      }
      i += n;
      js_thread_events_ = 0;
      events_data_[kHeaderQueued] = 0;
      Napi::Function fn = on_events_.Value();
      if (fn.IsEmpty()) {  // the facade is gone: nobody to tell
        for (CommandContext* c : delivered_) ReleaseCommand(c);
        delivered_.clear();
        break;
      }
      // Keep delivering the rest of the batch after an exception, then report it.
      napi_value args[2] = {Napi::Number::New(env, static_cast<double>(n)), payloads.IsEmpty() ? nullptr : static_cast<napi_value>(payloads)};
      napi_value result;
      if (napi_call_function(env, env.Undefined(), fn, payloads.IsEmpty() ? 1 : 2, args, &result) != napi_ok) {
        napi_value exception;
        if (napi_get_and_clear_last_exception(env, &exception) == napi_ok && failure == nullptr)
          napi_create_reference(env, exception, 1, &failure);
      }
      closed = h_ == nullptr;
      // After close() the pool is gone (Teardown emptied the free list).
      if (!closed)
        for (CommandContext* c : delivered_) ReleaseCommand(c);
      delivered_.clear();
    }
    batch_.clear();
  }
  batch_.clear();
  if (rearm_pending_) {
    rearm_pending_ = false;
    if (h_ != nullptr) CheckConnectionState(h_);
    if (driver_) driver_->Rearm();
  }
  UpdateActive();
  if (failure != nullptr) {
    napi_value e;
    napi_get_reference_value(env, failure, &e);
    napi_delete_reference(env, failure);
    if (from_js)
      napi_throw(env, e);  // DrainJs returns; the caller sees it
    else
      napi_fatal_exception(env, e);
  }
}

Napi::Value NbdHandle::PayloadToJs(Napi::Env env, const Event& e) {
  const Payload& p = *e.payload;
  Napi::Object o = Napi::Object::New(env);
  switch (e.kind) {
    case kExtent: {
      o.Set("context", Napi::String::New(env, p.text));
      o.Set("offset", Int64ToJs(env, static_cast<int64_t>(p.offset)));
      if (!p.entries64.empty()) {
        auto a = Napi::BigUint64Array::New(env, p.entries64.size());
        std::copy(p.entries64.begin(), p.entries64.end(), a.Data());
        o.Set("entries", a);
      } else {
        auto a = Napi::Uint32Array::New(env, p.entries32.size());
        std::copy(p.entries32.begin(), p.entries32.end(), a.Data());
        o.Set("entries", a);
      }
      break;
    }
    case kList:
      o.Set("name", Napi::String::New(env, p.text));
      o.Set("description", Napi::String::New(env, p.text2));
      break;
    case kDebug:
      o.Set("context", Napi::String::New(env, p.text));
      o.Set("message", Napi::String::New(env, p.text2));
      break;
    case kConnected:
    case kDisconnected:
    case kConnectionLost:
      o.Set("message", Napi::String::New(env, p.text));
      break;
    default:
      o.Set("name", Napi::String::New(env, p.text));
  }
  return o;
}

Napi::Value NbdHandle::DrainJs(const Napi::CallbackInfo& info) {
  Drain(info.Env(), true);
  return info.Env().Undefined();
}

Napi::Value NbdHandle::EventsGetter(const Napi::CallbackInfo& info) { return events_array_.Value(); }

Napi::Value NbdHandle::Close(const Napi::CallbackInfo& info) {
  Teardown();
  UpdateActive();
  return info.Env().Undefined();
}

}  // namespace nbdjs
