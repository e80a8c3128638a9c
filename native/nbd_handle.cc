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
constexpr double kMaxSafeInteger = 9007199254740991.0;
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

// What a zero-length buffer points at: C callers always pass some address.
uint8_t* EmptyBuffer() {
  static uint8_t byte;
  return &byte;
}

}  // namespace

InheritStdio::InheritStdio() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (users_++ != 0) return;
  for (int fd = 0; fd < 3; fd++) {
    saved_flags_[fd] = fcntl(fd, F_GETFD);
    if (saved_flags_[fd] != -1 && (saved_flags_[fd] & FD_CLOEXEC)) fcntl(fd, F_SETFD, saved_flags_[fd] & ~FD_CLOEXEC);
  }
}

InheritStdio::~InheritStdio() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--users_ != 0) return;
  for (int fd = 0; fd < 3; fd++)
    if (saved_flags_[fd] != -1 && (saved_flags_[fd] & FD_CLOEXEC)) fcntl(fd, F_SETFD, saved_flags_[fd]);
}

std::mutex InheritStdio::mutex_;
int InheritStdio::users_ = 0;
int InheritStdio::saved_flags_[3] = {-1, -1, -1};

// ------------------------------------------------------------ staged events

namespace {
thread_local StagedEvents* current_staged = nullptr;
// One buffer per nesting depth (a JS callback may issue a command while an
// outer call's events are staged), kept for the thread's lifetime.
thread_local std::vector<std::unique_ptr<std::vector<Event>>> staging_buffers;
thread_local size_t staging_depth = 0;

std::vector<Event>& AcquireStagingBuffer() {
  if (staging_depth == staging_buffers.size()) staging_buffers.push_back(std::make_unique<std::vector<Event>>());
  return *staging_buffers[staging_depth++];
}
}  // namespace

StagedEvents::StagedEvents(NbdHandle* owner)
    : events(AcquireStagingBuffer()), owner_(owner), previous_(current_staged) {
  current_staged = this;
}

StagedEvents::~StagedEvents() {
  if (!events.empty() && owner_->handle() != nullptr) Flush(owner_->handle());
  events.clear();
  staging_depth--;
  current_staged = previous_;
}

StagedEvents* StagedEvents::Current() { return current_staged; }

void StagedEvents::Flush(nbd_handle* h) {
  if (events.empty()) return;
  // A command whose issuing call has not returned yet is retired by Drain.
  for (const Event& e : events)
    if (e.kind == kCompletion) e.command->Retire(h);
  owner_->Publish(events);
}

Napi::Function NbdHandle::Init(Napi::Env env) {
  // Every method, hand-written ones included, is declared in scripts/api-table.mjs.
  std::vector<PropertyDescriptor> methods;
  AddGeneratedMethods(methods);
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

// ------------------------------------------------------------ libnbd callbacks

int NbdHandle::ChunkCallback(void* user_data, const void* subbuf, size_t count, uint64_t /*offset*/,
                             unsigned status, int* error) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e{};
  e.kind = kChunk;
  e.status = status;
  e.error = *error;
  e.command = c;
  e.sub_offset = static_cast<uint64_t>(static_cast<const uint8_t*>(subbuf) - c->base);
  e.count = count;
  c->owner->Record(std::move(e));
  if (status == LIBNBD_READ_ERROR) {
    // A plain error reply earlier in the same command leaves no event, so JS
    // cannot tell whether libnbd already recorded an error. Ask libnbd: it
    // records the marker only if it had none, and the command's next event
    // (a chunk or the completion) carries what it recorded.
    *error = kReadErrorMarker;
    return -1;
  }
  return 0;  // the facade applies the callback's result (DESIGN §4)
}

int NbdHandle::CompletionCallback(void* user_data, int* error) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e{};
  e.kind = kCompletion;
  e.error = *error;
  e.command = c;
  c->owner->Record(std::move(e));
  return 0;  // never auto-retire: StagedEvents::Flush retires, to see libnbd's short-read error
}

// An event of a command that carries a payload.
static Event PayloadEvent(EventKind kind, CommandContext* c, int error) {
  Event e{};
  e.kind = kind;
  e.error = error;
  e.command = c;
  e.payload = std::make_unique<Payload>();
  return e;
}

int NbdHandle::ExtentCallback(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries,
                              size_t nr_entries, int* error) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e = PayloadEvent(kExtent, c, *error);
  e.payload->text = metacontext;
  e.payload->offset = offset;
  e.payload->entries32.assign(entries, entries + nr_entries);
  c->owner->Record(std::move(e));
  return 0;  // the facade applies the callback's result (lib/semantics.ts)
}

#ifdef LIBNBD_HAVE_NBD_EXTENT64_CALLBACK
int NbdHandle::Extent64Callback(void* user_data, const char* metacontext, uint64_t offset, nbd_extent* entries,
                                size_t nr_entries, int* error) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e = PayloadEvent(kExtent, c, *error);
  e.payload->text = metacontext;
  e.payload->offset = offset;
  for (size_t i = 0; i < nr_entries; i++) {
    e.payload->entries64.push_back(entries[i].length);
    e.payload->entries64.push_back(entries[i].flags);
  }
  c->owner->Record(std::move(e));
  return 0;
}
#endif

int NbdHandle::ListCallback(void* user_data, const char* name, const char* description) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e = PayloadEvent(kList, c, 0);
  e.payload->text = name;
  e.payload->text2 = description;
  c->owner->Record(std::move(e));
  return 0;
}

int NbdHandle::ContextCallback(void* user_data, const char* name) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e = PayloadEvent(kContext, c, 0);
  e.payload->text = name;
  c->owner->Record(std::move(e));
  return 0;
}

int NbdHandle::DebugCallback(void* user_data, const char* context, const char* msg) {
  if (QuietCalls::Active()) return 0;  // the binding's own bookkeeping call
  auto* sink = static_cast<DebugSink*>(user_data);
  std::lock_guard<std::mutex> lock(sink->mutex);
  if (sink->owner == nullptr) return 0;  // the handle is closed
  Event e = PayloadEvent(kDebug, nullptr, 0);
  e.payload->text = context ? context : "";
  e.payload->text2 = msg ? msg : "";
  sink->owner->Record(std::move(e));
  return 0;
}

// ------------------------------------------------------------ errors

LastError LastError::Capture() {
  const char* msg = nbd_get_error();
  return LastError{nbd_get_errno(), msg ? msg : "unknown libnbd error"};
}

Napi::Value LastError::ToJs(Napi::Env env) const {
  Napi::Array a = Napi::Array::New(env, 2);
  a.Set(0u, Napi::Number::New(env, errnum));
  a.Set(1u, Napi::String::New(env, message));
  return a;
}

void NbdHandle::RecordError() { last_error_ = LastError::Capture(); }

void NbdHandle::RecordErrno(int errnum, const std::string& message) {
  last_error_.errnum = errnum;
  last_error_.message = message;
}

void NbdHandle::RecordClosed() { RecordErrno(EINVAL, "handle is closed"); }

Napi::Value NbdHandle::ClosedResult(Napi::Env env) {
  RecordClosed();
  return Napi::Number::New(env, -1);
}

void NbdHandle::RecordNotSupported(const char* fn) {
  RecordErrno(ENOTSUP, std::string(fn) +
                           ": function missing because the binding was compiled against an older libnbd: " +
                           strerror(ENOTSUP));
}

Napi::Value NbdHandle::LastErrorJs(const Napi::CallbackInfo& info) { return last_error_.ToJs(info.Env()); }

// ------------------------------------------------------------ arguments

std::vector<std::string> NbdHandle::ArgStrings(const Napi::Value& v) {
  std::vector<std::string> out;
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); i++) out.push_back(a.Get(i).As<Napi::String>().Utf8Value());
  return out;
}

std::vector<char*> NbdHandle::Argv(std::vector<std::string>& strings) {
  std::vector<char*> argv;
  for (auto& s : strings) argv.push_back(&s[0]);
  argv.push_back(nullptr);
  return argv;
}

Napi::Value NbdHandle::ThrowBufferType(Napi::Env env) {
  Napi::TypeError::New(env, "buf must be an ArrayBufferView").ThrowAsJavaScriptException();
  return env.Undefined();
}

uint64_t NbdHandle::ArgUint64(const Napi::Value& v) {
  if (v.IsBigInt()) {
    bool lossless;
    return v.As<Napi::BigInt>().Uint64Value(&lossless);
  }
  return static_cast<uint64_t>(v.As<Napi::Number>().DoubleValue());
}

Napi::Value NbdHandle::Int64ToJs(Napi::Env env, int64_t v) {
  double d = static_cast<double>(v);
  if (d <= kMaxSafeInteger && d >= -kMaxSafeInteger) return Napi::Number::New(env, d);
  return Napi::BigInt::New(env, v);
}

Napi::Value NbdHandle::Uint64ToJs(Napi::Env env, uint64_t v) {
  if (v <= static_cast<uint64_t>(kMaxSafeInteger)) return Napi::Number::New(env, static_cast<double>(v));
  return Napi::BigInt::New(env, v);
}

bool NbdHandle::ArgBuffer(const Napi::Value& v, uint8_t** data, size_t* length) {
  napi_env env = v.Env();
  bool is = false;
  void* ptr = nullptr;
  if (napi_is_typedarray(env, v, &is) == napi_ok && is) {
    napi_typedarray_type type;
    size_t elements;
    napi_value ab;
    size_t offset;
    if (napi_get_typedarray_info(env, v, &type, &elements, &ptr, &ab, &offset) != napi_ok) return false;
    size_t size = 1;
    switch (type) {
      case napi_int16_array: case napi_uint16_array: size = 2; break;
      case napi_int32_array: case napi_uint32_array: case napi_float32_array: size = 4; break;
      case napi_float64_array: case napi_bigint64_array: case napi_biguint64_array: size = 8; break;
      default: size = 1;
    }
    *data = static_cast<uint8_t*>(ptr);
    *length = elements * size;
    if (*data == nullptr) *data = EmptyBuffer();  // an empty view has no memory; libnbd wants non-NULL
    return true;
  }
  if (napi_is_dataview(env, v, &is) == napi_ok && is) {
    napi_value ab;
    size_t offset;
    if (napi_get_dataview_info(env, v, length, &ptr, &ab, &offset) != napi_ok) return false;
    *data = ptr != nullptr ? static_cast<uint8_t*>(ptr) : EmptyBuffer();
    return true;
  }
  return false;
}

// ------------------------------------------------------------ commands

CommandContext* NbdHandle::AcquireCommand(const uint8_t* base, bool opt) {
  CommandContext* c;
  if (free_commands_.empty()) {
    command_storage_.push_back(std::make_unique<CommandContext>());
    c = command_storage_.back().get();
    c->owner = this;
    c->slot = static_cast<uint32_t>(command_storage_.size() - 1);
  } else {
    c = free_commands_.back();
    free_commands_.pop_back();
  }
  c->cookie = 0;
  c->retired = opt;
  c->retire_error = 0;
  c->base = base;
  return c;
}

void NbdHandle::ReleaseCommand(CommandContext* c) { free_commands_.push_back(c); }

Napi::Value NbdHandle::AioCommandCompleted(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  int r = nbd_aio_command_completed(h_, ArgUint64(info[0]));
  if (r == -1) RecordError();
  return Napi::Number::New(env, r);
}

Napi::Value NbdHandle::AioInFlight(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  int r = nbd_aio_in_flight(h_);
  if (r == -1) RecordError();
  return Napi::Number::New(env, r);
}

// ------------------------------------------------------------ connecting

Napi::Value NbdHandle::StartConnect(Napi::Env env, std::function<int(nbd_handle*)> run, bool subprocess) {
  if (h_ == nullptr) return ClosedResult(env);
  if (subprocess) subprocess_ = true;
  uint64_t id = ++next_connect_id_;
  connects_queued_++;
  driver_->Connect(ConnectTask{id, std::move(run)});
  AfterLibnbdCall();
  return Napi::Number::New(env, static_cast<double>(id));
}

template <typename F>
Napi::Value NbdHandle::StartDisconnect(Napi::Env env, F&& call) {
  if (h_ == nullptr) return ClosedResult(env);
  int r;
  {
    StagedEvents staged(this);
    // Set before the call: the thread driver's I/O thread may see the
    // connection end before the call returns (else it reports it as lost).
    bool was_disconnecting = disconnecting_.exchange(true);
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

Napi::Value NbdHandle::AioOptAbort(const Napi::CallbackInfo& info) {
  return StartDisconnect(info.Env(), [&] { return nbd_aio_opt_abort(h_); });
}

Napi::Value NbdHandle::SetDebugCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  StagedEvents staged(this);
  auto* sink = new DebugSink(this);
  // libnbd frees the previous callback's sink inside the call.
  int r = nbd_set_debug_callback(h_, nbd_debug_callback{DebugCallback, sink, DebugSink::Free});
  if (r == -1)
    RecordError();
  else
    debug_sink_ = sink;
  return Napi::Number::New(env, r);
}

Napi::Value NbdHandle::ClearDebugCallback(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  if (h_ == nullptr) return ClosedResult(env);
  StagedEvents staged(this);
  int r = nbd_clear_debug_callback(h_);  // frees the sink
  if (r == -1)
    RecordError();
  else
    debug_sink_ = nullptr;
  return Napi::Number::New(env, r);
}

// ------------------------------------------------------------ driving

void NbdHandle::RecordIoError() {
  LastError e = LastError::Capture();
  std::lock_guard<std::mutex> lock(io_error_mutex_);
  io_error_ = std::move(e);
}

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

namespace {

// A connection event; a failure carries libnbd's message (its errno may be 0).
Event ConnectionEvent(EventKind kind, uint64_t id, const LastError* failure) {
  Event e{};
  e.kind = kind;
  e.id = id;
  if (failure != nullptr) {
    e.error = failure->errnum;
    e.payload = std::make_unique<Payload>();
    e.payload->text = failure->message;
  }
  return e;
}

}  // namespace

void NbdHandle::ConnectStarted(uint64_t id, bool ok, const LastError& error) {
  connects_queued_--;
  if (ok) {
    {
      std::lock_guard<std::mutex> lock(io_error_mutex_);
      io_error_ = LastError();
    }
    connecting_id_ = id;
    return;
  }
  PushConnectionEvent(ConnectionEvent(kConnected, id, &error));
}

// The error that ended the connection (RecordIoError), or one that says so.
static LastError ConnectionFailure(std::mutex& mutex, const LastError& recorded) {
  std::lock_guard<std::mutex> lock(mutex);
  if (recorded.errnum != 0 || !recorded.message.empty()) return recorded;
  return LastError{ENOTCONN, "connection failed: server disconnected"};
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
  if (disconnecting_ && ended && disconnecting_.exchange(false)) {
    connected_ = false;
    if (quiet::IsDead(h)) {
      LastError failure = ConnectionFailure(io_error_mutex_, io_error_);
      PushConnectionEvent(ConnectionEvent(kDisconnected, 0, &failure));
    } else {
      PushConnectionEvent(ConnectionEvent(kDisconnected, 0, nullptr));
    }
  } else if (ended && !disconnecting_ && connected_.exchange(false)) {
    // libnbd 1.14 reports a server that hung up on an idle connection as
    // CLOSED, not DEAD, with no error recorded: say what happened.
    LastError failure;
    {
      std::lock_guard<std::mutex> lock(io_error_mutex_);
      failure = io_error_;
    }
    if (failure.errnum == 0 && failure.message.empty()) failure = LastError{ENOTCONN, "the server closed the connection"};
    PushConnectionEvent(ConnectionEvent(kConnectionLost, 0, &failure));
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
