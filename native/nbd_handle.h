// NbdHandle: the JS object that owns one struct nbd_handle.
#pragma once

#include <libnbd.h>
#include <napi.h>

#include <atomic>
#include <functional>
#include <cstdint>
#include <mutex>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "driver.h"
#include "event_queue.h"
#include "quiet.h"
#include "raw_method.h"

namespace nbdjs {

using PropertyDescriptor = Napi::ClassPropertyDescriptor<class NbdHandle>;

// One issued command, as seen by libnbd's callbacks (their user_data).
// Pooled per handle so that issuing a command does not allocate.
struct CommandContext {
  // Null once the handle is being closed: callbacks libnbd still runs (those
  // of nbd_close on libnbd >= 1.18) then record nothing.
  NbdHandle* owner = nullptr;
  // Its index in the handle's pool: events name the command by slot, and
  // lib/ keeps its own state for the command in the same slot. Released for
  // reuse only once JS has seen the completion.
  uint32_t slot = 0;
  // The cookie (an option command's id, negative), set by the JS thread once
  // the aio call has returned; the I/O thread may see the command complete
  // before that.
  std::atomic<int64_t> cookie{0};
  const uint8_t* base = nullptr;
  // Option commands are retired by libnbd itself: they start out retired.
  std::atomic<bool> retired{false};
  int retire_error = 0;        // errno of nbd_aio_command_completed, 0 = success

  // Retires the completed command (once its cookie is known).
  bool Retire(nbd_handle* h) {
    int64_t id = cookie.load();
    if (id <= 0 || retired.load()) return false;
    int r = quiet::CommandCompleted(h, static_cast<uint64_t>(id));
    retire_error = r == -1 ? nbd_get_errno() : 0;
    retired.store(true);
    return true;
  }
};

// The debug callback's user_data. libnbd may call it on a thread that is
// still inside a connect after the NbdHandle is gone (close() does not wait
// for a name lookup), so the link to the handle is cut under a lock; libnbd
// frees the sink with the callback.
struct DebugSink {
  std::mutex mutex;
  NbdHandle* owner;
  explicit DebugSink(NbdHandle* o) : owner(o) {}
  void Detach() {
    std::lock_guard<std::mutex> lock(mutex);
    owner = nullptr;
  }
  static void Free(void* user_data) { delete static_cast<DebugSink*>(user_data); }
};

// The events libnbd's callbacks record during one libnbd call, on the stack
// of the thread making the call. Flush retires the commands that completed
// (libnbd reports a short structured read only at retirement, and it cannot
// be asked from inside a callback) and then publishes the events in order.
class StagedEvents {
 public:
  explicit StagedEvents(NbdHandle* owner);
  ~StagedEvents();
  void Flush(nbd_handle* h);
  static StagedEvents* Current();
  NbdHandle* owner() const { return owner_; }
  // A per-thread buffer, reused from call to call (no allocation per call).
  std::vector<Event>& events;

 private:
  NbdHandle* owner_;
  StagedEvents* previous_;
};

// Per-env state of the module (napi instance data).
struct AddonData {
  napi_async_context async_context = nullptr;  // for the callback scopes of event delivery
};

struct LastError {
  int errnum = 0;  // may be 0: libnbd has no errno for some failures (a name lookup)
  std::string message;
  // libnbd's thread-local error: right after the failed call, on its thread.
  static LastError Capture();
  Napi::Value ToJs(Napi::Env env) const;  // [errno, message]
};

class NbdHandle : public Napi::ObjectWrap<NbdHandle> {
 public:
  static Napi::Function Init(Napi::Env env);
  NbdHandle(const Napi::CallbackInfo& info);
  ~NbdHandle() override;

  nbd_handle* handle() const { return h_; }

  // Runs libnbd's state machine for a ready socket: one notify call (and,
  // after a reply, the replies already waiting: DrainReadyReplies), then
  // notes the end of a connect or disconnect. On the thread that drives the
  // handle (JS thread for the loop driver, the I/O thread for the thread
  // driver); errors are kept in io_error_.
  void RunStateMachine(nbd_handle* h, bool readable, bool writable);
  // Notes the end of a connect or disconnect as an event (any thread).
  void CheckConnectionState(nbd_handle* h);
  // A connect task ran (on the thread of `error`): from now on its end is
  // awaited, or it failed and that is reported as the connect's end.
  void ConnectStarted(uint64_t id, bool ok, const LastError& error);
  // Connects asked for whose task has not run yet (keeps the loop alive).
  std::atomic<int> connects_queued_{0};
  bool HasEvents() { return queue_.Size() > 0; }
  // From libnbd's callbacks, on whichever thread runs them.
  void Record(Event&& e) {
    StagedEvents* staged = StagedEvents::Current();
    if (staged != nullptr && staged->owner() == this)
      staged->events.push_back(std::move(e));
    else
      queue_.Push(std::move(e));  // nbd_close's callbacks (libnbd >= 1.18): dropped
  }
  // Publishes flushed events (StagedEvents::Flush). Events libnbd recorded
  // inside a call made from JS (a completion on a dead connection, debug
  // messages) are delivered before that call returns, as in C; the header
  // slot tells lib/ to drain.
  void Publish(std::vector<Event>& events) {
    bool js = std::this_thread::get_id() == js_thread_;
    if (js) js_thread_events_ += static_cast<int64_t>(events.size());
    queue_.PushAll(events);
    if (js) events_data_[kHeaderQueued] = static_cast<double>(js_thread_events_);
  }

  // A connection event (connect or disconnect ended), from either thread.
  void PushConnectionEvent(Event&& e) {
    std::vector<Event> one;
    one.push_back(std::move(e));
    Publish(one);
  }

  // JS-thread entry points of the drivers: deliver what was recorded.
  // `error`: the poll failed (a socket error); libnbd reads until it sees it.
  void OnLoopReady(bool readable, bool writable, bool error);
  void OnThreadWake();
  void OnConnectTaskDone();

  // Closes everything without calling JS: close(), env teardown,
  // finalization. Returns at once: closing that may wait (a server
  // subprocess to reap, a connect resolving a name) happens on another thread.
  void Teardown();

  // Issues one command: `call(c)` makes the libnbd call with closures whose
  // user_data is `c` and returns libnbd's result (a cookie, or 0 for an
  // option command). Returns the cookie (an option command's id) or -1.
  template <typename F>
  Napi::Value Issue(Napi::Env env, const uint8_t* base, bool opt, F&& call) {
    if (h_ == nullptr) return ClosedResult(env);
    CommandContext* c = AcquireCommand(base, opt);
    int64_t id;
    {
      StagedEvents staged(this);
      int64_t r = call(c);
      if (r == -1) {
        RecordError();  // before any other libnbd call overwrites it
        ReleaseCommand(c);
        id = -1;
      } else {
        id = opt ? -(++opt_counter_) - 1 : r;  // -2, -3, ...: -1 means failure
        c->cookie = id;
        in_flight_++;
        events_data_[kHeaderSlot] = c->slot;  // lib/ registers the command in this slot
      }
      staged.Flush(h_);  // a completion may have run already (dead connection)
    }
    AfterLibnbdCall();
    return Napi::Number::New(env, static_cast<double>(id));
  }

 private:
  // libnbd's callbacks (trampolines) and closure makers, the generated glue's
  // methods and the hand-written ones' declarations: from scripts/api-table.mjs.
#include "generated/api_methods.h"
  static void AddGeneratedMethods(std::vector<PropertyDescriptor>& methods);
  // The data commands, as own properties of `target` (native/raw_method.h).
  static void AddRawMethods(napi_env env, napi_value target, HandleLink* link);

  // Error capture: must run on the thread of the failed call, right after it.
  // RecordError: a call made from JS; RecordIoError: the driving thread.
  void RecordError();
  void RecordIoError();
  void RecordClosed();
  Napi::Value ClosedResult(Napi::Env env);  // records "handle is closed", returns -1
  void RecordNotSupported(const char* fn);
  void RecordErrno(int errnum, const std::string& message);

  static uint64_t ArgUint64(const Napi::Value& v);
  static Napi::Value Int64ToJs(Napi::Env env, int64_t v);
  static Napi::Value Uint64ToJs(Napi::Env env, uint64_t v);
  // Reads a Buffer/TypedArray/DataView; false if `v` is none of them.
  static bool ArgBuffer(const Napi::Value& v, uint8_t** data, size_t* length);
  static std::vector<std::string> ArgStrings(const Napi::Value& v);
  // NULL-terminated argv pointing into `strings`.
  static std::vector<char*> Argv(std::vector<std::string>& strings);
  static Napi::Value ThrowBufferType(Napi::Env env);
  // A disconnect-like call (aio_disconnect, aio_opt_abort): its end is
  // awaited as a kDisconnected event.
  template <typename F>
  Napi::Value StartDisconnect(Napi::Env env, F&& call);

  CommandContext* AcquireCommand(const uint8_t* base, bool opt);
  void ReleaseCommand(CommandContext* c);
  Napi::Value PayloadToJs(Napi::Env env, const Event& e);
  // Common glue of the connect calls: queues `run` on the driver and returns
  // the connect's id (its kConnected event carries it). `subprocess`: the
  // call starts a server process that nbd_close will wait for.
  Napi::Value StartConnect(Napi::Env env, std::function<int(nbd_handle*)> run, bool subprocess);
  // After a poll error: drives libnbd while its socket has something to say.
  void DriveAfterSocketError();

  // After a notify_read that completed a command: reads the replies already
  // in the socket (zero-timeout poll, one notify_read each), so that one
  // wake-up delivers them all. See nbd_handle.cc.
  void DrainReadyReplies(nbd_handle* h, StagedEvents& staged);

  // After a libnbd call from JS: watch the right fd and direction, notice the
  // end of a connect or disconnect, keep or release the loop.
  void AfterLibnbdCall();
  void UpdateActive();
  // Runs Drain inside a callback scope (microtasks run after it), reporting
  // a JS exception as uncaught: the loop and TSFN entry points.
  void DeliverFromLoop();
  // Delivers queued events to JS. `from_js`: called from a JS call, so a JS
  // exception is rethrown there rather than reported as uncaught.
  void Drain(Napi::Env env, bool from_js);

  nbd_handle* h_ = nullptr;
  AddonData* addon_ = nullptr;
  HandleLink* link_ = nullptr;  // what this handle's raw functions point at
  std::unique_ptr<Driver> driver_;
  EventQueue queue_;
  std::vector<Event> batch_;
  LastError last_error_;

  std::vector<std::unique_ptr<CommandContext>> command_storage_;
  std::vector<CommandContext*> free_commands_;
  std::vector<CommandContext*> delivered_;  // completed in the batch JS is being handed
  int64_t in_flight_ = 0;   // issued, completion not yet delivered to JS
  int64_t opt_counter_ = 0;  // ids of option commands (negative cookies)
  std::thread::id js_thread_;
  int64_t js_thread_events_ = 0;  // recorded on the JS thread, not yet delivered
  // Set by the thread that started the connect (its id) or disconnect,
  // cleared by whichever thread sees its end.
  std::atomic<uint64_t> connecting_id_{0};
  // A connect succeeded and the end of that connection is not reported yet
  // (kDisconnected or kConnectionLost reports it, once).
  std::atomic<bool> connected_{false};
  uint64_t next_connect_id_ = 0;
  bool subprocess_ = false;         // a connect started a server process
  DebugSink* debug_sink_ = nullptr;  // owned by libnbd's debug closure
  std::atomic<bool> disconnecting_{false};
  std::mutex io_error_mutex_;
  LastError io_error_;  // the error that ended a connect or the connection
  bool dispatching_ = false;
  bool rearm_pending_ = false;  // a call made during delivery left the re-arm to its end
  bool active_ = false;

  Napi::FunctionReference on_events_;
  Napi::Reference<Napi::Float64Array> events_array_;
  double* events_data_ = nullptr;
  size_t events_capacity_ = 0;  // in events
  napi_async_context async_context_ = nullptr;
};

void ExportConstants(Napi::Env env, Napi::Object target);
void ExportModuleFunctions(Napi::Env env, Napi::Object target);

// aio_connect_command and socket activation fork and exec the server with
// fds 0-2 as they are (connect_command replaces 0 and 1 with the socket,
// socket activation passes it as fd 3); Node marks them close-on-exec, which
// leaves the server without them (nbdkit then refuses or exits at once).
// Clear the flag around the call. The fds belong to the process, not to an
// env: workers connecting at the same time share one clearing per fd,
// counted under a process-wide lock.
class InheritStdio {
 public:
  InheritStdio();
  ~InheritStdio();

 private:
  static std::mutex mutex_;
  static int users_;
  static int saved_flags_[3];
};

}  // namespace nbdjs
