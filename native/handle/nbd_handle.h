// NbdHandle: the JS object that owns one struct nbd_handle, and the objects
// it is made of. Its own members are defined by stage:
//   handle/nbd_handle.cc          the class: creating the handle and its
//                                 driver, closing, the calls about commands
//   handle/nbd_handle_connect.cc  connects, disconnects, the connection's events
//   handle/nbd_handle_errors.cc   libnbd's errors, kept for lastError()
//   handle/nbd_handle_debug.cc    installing libnbd's debug sink
//   drivers/driver_host.cc        DriverHost: libnbd's state machine for the
//                                 drivers, poll(), keeping the loop alive
//   events/event_delivery.cc      handing queued events to JS
//   generated/api_methods.cc      the table's glue (NBDJS_HANDLE_API_METHODS)
// The objects: CommandPool (handle/command_pool.h), EventQueue, StagedEvents,
// EventWindow (events/), the Driver (drivers/), the DebugSink libnbd owns.
#pragma once

#include <libnbd.h>
#include <napi.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "drivers/driver.h"
#include "drivers/poll_runs.h"
#include "events/debug_sink.h"
#include "events/event_queue.h"
#include "events/event_window.h"
#include "events/staged_events.h"
#include "generated/api_methods.h"
#include "generated/libnbd_loaded.h"
#include "handle/command_context.h"
#include "handle/command_pool.h"
#include "util/arguments.h"
#include "util/inherit_stdio.h"
#include "util/last_error.h"
#include "util/quiet_calls.h"
#include "util/raw_method.h"

namespace nbdjs {

using PropertyDescriptor = Napi::ClassPropertyDescriptor<class NbdHandle>;
class FirstException;  // events/event_delivery.cc

// Per-env state of the module (napi instance data).
struct AddonData {
  napi_async_context async_context = nullptr;  // for the callback scopes of event delivery
};

class NbdHandle final : public Napi::ObjectWrap<NbdHandle>, public DriverHost {
 public:
  static Napi::Function Init(Napi::Env env);
  NbdHandle(const Napi::CallbackInfo& info);
  ~NbdHandle() override;

  // From libnbd's callbacks (generated/closures.cc), on whichever
  // thread runs them: kept with the libnbd call's staged events.
  void Record(Event&& e) {
    StagedEvents* staged = StagedEvents::Current();
    if (staged != nullptr && staged->owner() == this) {
      // Numbered under libnbd's handle lock, in the order libnbd made them.
      if (staged->events.empty()) staged->Began(event_seq_.fetch_add(1, std::memory_order_relaxed) + 1);
      staged->events.push_back(std::move(e));
    } else
      queue_.Push(std::move(e));  // nbd_close's callbacks (libnbd >= 1.18): dropped
  }

 private:
  // Publishes its events here and asks for the libnbd handle.
  friend class StagedEvents;

  // ---- DriverHost (drivers/driver.h), the drivers' only way in
  nbd_handle* handle() const override { return h_; }
  void RunStateMachine(nbd_handle* h, bool readable, bool writable) override;  // driver_host.cc
  void CheckConnectionState(nbd_handle* h) override;                           // nbd_handle_connect.cc
  bool HasEvents() override { return queue_.Size() > 0; }
  bool PollWanted() override { return poll_runs_.Wanted(); }  // driver_host.cc: poll()
  int64_t CommandsInFlight() const override { return in_flight_; }
  uint64_t ReplyBytesInFlight() const override { return reply_bytes_in_flight_; }
  void ConnectStarted(uint64_t id, bool ok, const LastError& error) override;  // nbd_handle_connect.cc
  void OnLoopReady(bool readable, bool writable, bool error) override;        // driver_host.cc
  void OnThreadWake() override;                                               // driver_host.cc
  void OnConnectTaskDone() override;                                          // driver_host.cc
  // Closes everything without calling JS: close(), env teardown,
  // finalization. Returns at once: closing that may wait (a server
  // subprocess to reap, a connect resolving a name) happens on another thread.
  void Teardown() override;

  // ---- JS glue, from scripts/api-table.mjs (generated/api_methods.h): the
  // generated methods and the hand-written ones' declarations (the table's
  // nativeSurface; each defined in the file of its stage).
  NBDJS_HANDLE_API_METHODS
  static void AddGeneratedMethods(std::vector<PropertyDescriptor>& methods);
  // The data commands, as own properties of `target` (util/raw_method.h).
  static void AddRawMethods(napi_env env, napi_value target, HandleLink* link);

  // ---- Staging (events/staged_events.h)
  // Publishes flushed events (StagedEvents::Flush). Events libnbd recorded
  // inside a call made from JS (a completion on a dead connection, debug
  // messages) are delivered before that call returns, as in C: the window's
  // header tells lib/ they are queued (EventWindow::SetQueuedFromJs).
  void Publish(std::vector<Event>& events) {
    bool js = std::this_thread::get_id() == js_thread_;
    if (js) js_thread_events_ += static_cast<int64_t>(events.size());
    queue_.PushAll(events, js ? nullptr : &state_before_);
    if (js) window_.SetQueuedFromJs(js_thread_events_);
  }
  // A connection event (connect or disconnect ended), from either thread.
  void PushConnectionEvent(Event&& e) {
    std::vector<Event> one;
    one.push_back(std::move(e));
    Publish(one);
  }

  // ---- Commands (the pool: handle/command_pool.h)
  // Issues one command: `call(c)` makes the libnbd call with closures whose
  // user_data is `c` and returns libnbd's result (a cookie, or 0 for an
  // option command). Returns the cookie (an option command's id) or -1; on
  // success the command's slot is in the window's header for lib/'s
  // _register (EventWindow::SetIssuedSlot).
  template <typename F>
  Napi::Value Issue(Napi::Env env, const uint8_t* base, uint64_t reply_bytes, bool opt, F&& call) {
    if (h_ == nullptr) return ClosedResult(env);
    CommandContext* c = commands_.Acquire(base, reply_bytes, opt);
    int64_t id;
    {
      StagedEvents staged(this);
      int64_t r = call(c);
      if (r == -1) {
        RecordError();  // before any other libnbd call overwrites it
        commands_.Release(c);
        id = -1;
      } else {
        id = opt ? -(++opt_counter_) - 1 : r;  // -2, -3, ...: -1 means failure
        c->cookie = id;
        in_flight_++;
        reply_bytes_in_flight_ += reply_bytes;
        window_.SetIssuedSlot(c->slot);
      }
      staged.Flush(h_);  // a completion may have run already (dead connection)
    }
    AfterLibnbdCall();
    return Napi::Number::New(env, static_cast<double>(id));
  }

  // ---- Errors (handle/nbd_handle_errors.cc)
  // Error capture: must run on the thread of the failed call, right after it.
  // RecordError: a call made from JS; RecordIoError: the driving thread.
  void RecordError();
  void RecordIoError();
  void RecordClosed();
  Napi::Value ClosedResult(Napi::Env env);  // records "handle is closed", returns -1
  // A call the loaded libnbd lacks (`since`: the release that added it; null: the build's header lacks it).
  void RecordNotSupported(const char* fn, const char* since);
  void RecordErrno(int errnum, const std::string& message);

  // ---- Debug messages (handle/nbd_handle_debug.cc)
  void InstallDebugSink();
  void HandleNameChanged();

  // ---- Connecting (handle/nbd_handle_connect.cc)
  // Common glue of the connect calls: queues `run` on the driver and returns
  // the connect's id (its kConnected event carries it). `subprocess`: the
  // call starts a server process that nbd_close will wait for.
  Napi::Value StartConnect(Napi::Env env, std::function<int(nbd_handle*)> run, bool subprocess);
  // A connect with an argument libnbd refuses before it may block (an empty
  // argv): made here, on the JS thread, so that it fails at once, as in C.
  template <typename F>
  Napi::Value RefusedConnect(Napi::Env env, F&& call) {
    if (h_ == nullptr) return ClosedResult(env);
    {
      StagedEvents staged(this);  // debug messages
      if (call() == -1)
        RecordError();
      else  // not libnbd's way: it checks argv before anything else
        RecordErrno(EINVAL, "the connect was refused");
    }
    AfterLibnbdCall();
    return Napi::Number::New(env, -1);
  }
  // A disconnect-like call (aio_disconnect, aio_opt_abort): its end is
  // awaited as a kDisconnected event.
  template <typename F>
  Napi::Value StartDisconnect(Napi::Env env, F&& call, bool option_abort = false);

  // ---- Driving (drivers/driver_host.cc)
  // After a poll error: drives libnbd while its socket has something to say.
  void DriveAfterSocketError();
  // After a notify_read that completed a command: reads the replies already
  // waiting in the socket (zero-timeout poll, one notify_read each), so that
  // one wake-up delivers them all. See driver_host.cc.
  void ReadWaitingReplies(nbd_handle* h, StagedEvents& staged);
  // After a libnbd call from JS: watch the right fd and direction, notice the
  // end of a connect or disconnect, keep or release the loop.
  void AfterLibnbdCall();
  void UpdateActive();
  // Before the queue is taken for JS: the runs of libnbd done so far are
  // delivered now; if poll() waits, a kPolled event goes after their events.
  void MarkRunsDelivered();

  // ---- Delivery (events/event_delivery.cc)
  // Runs DeliverEvents inside a callback scope (microtasks run after it),
  // reporting a JS exception as uncaught: the loop and TSFN entry points.
  void DeliverFromLoop();
  // Delivers queued events to JS. `from_js`: called from a JS call (drain()),
  // so a JS exception is rethrown there rather than reported as uncaught.
  void DeliverEvents(Napi::Env env, bool from_js);
  // Hands `batch_` to lib/'s event sink, a window's worth at a time; false
  // once a callback closed the handle.
  bool HandOverBatch(Napi::Env env, FirstException& failure);
  // After a delivery: the re-arm the calls made from its callbacks left to it.
  void RearmAfterDelivery();

  nbd_handle* h_ = nullptr;
  AddonData* addon_ = nullptr;
  HandleLink* link_ = nullptr;  // what this handle's raw functions point at
  std::unique_ptr<Driver> driver_;
  EventQueue queue_;
  std::vector<Event> batch_;  // the events being delivered (DeliverEvents)
  EventWindow window_;
  LastError last_error_;

  CommandPool commands_{this};
  int64_t in_flight_ = 0;   // issued, completion not yet delivered to JS
  uint64_t reply_bytes_in_flight_ = 0;  // the data their replies may carry
  int64_t opt_counter_ = 0;  // ids of option commands (negative cookies)
  std::thread::id js_thread_;
  int64_t js_thread_events_ = 0;  // recorded on the JS thread, not yet delivered
  // Event order across threads (events/staged_events.h): the number of the
  // last batch of events begun, and the first number the JS thread holds
  // unpublished (0: none).
  std::atomic<uint64_t> event_seq_{0};
  std::atomic<uint64_t> js_staged_first_{0};
  // Connects asked for whose task has not run yet (keeps the loop alive).
  std::atomic<int> connects_queued_{0};
  // Set by the thread that started the connect (its id) or disconnect,
  // cleared by whichever thread sees its end.
  std::atomic<uint64_t> connecting_id_{0};
  // A connect succeeded and the end of that connection is not reported yet
  // (kDisconnected or kConnectionLost reports it, once).
  std::atomic<bool> connected_{false};
  uint64_t next_connect_id_ = 0;
  bool subprocess_ = false;         // a connect started a server process
  DebugSink* debug_sink_ = nullptr;  // owned by libnbd's debug closure (nbd_handle_debug.cc)
  std::shared_ptr<DebugSink::Closing> closing_messages_;  // set by Teardown, taken by Close
  std::atomic<bool> disconnecting_{false};
  // The disconnect asked for is an option abort: nbd_opt_abort returns 0
  // when libnbd went dead inside nbd_aio_opt_abort itself (a server that is
  // not fixed newstyle), and fails only when driving it later failed (an I/O
  // error was recorded), so only that end is a failure.
  std::atomic<bool> aborting_options_{false};
  // nbd_shutdown runs as a task (nbd_handle_connect.cc, Shutdown): its result, not the
  // state it leaves, is the disconnect's outcome; libnbd's lock is held
  // meanwhile. `shutdown_error_` is its failure, captured on its thread.
  std::atomic<bool> shutdown_running_{false};
  // libnbd's state before the driving thread's current call (not JS's
  // thread: the I/O thread, or the thread of a task), published with the
  // events it makes (EventQueue::PendingBefore).
  StateSnapshot state_before_;
  LastError shutdown_error_;
  std::mutex io_error_mutex_;
  LastError io_error_;  // the error that ended a connect or the connection
  PollRuns poll_runs_;  // what poll() waits for
  bool delivering_ = false;          // inside DeliverEvents
  bool rearm_after_delivery_ = false;  // a call made during delivery left the re-arm to its end
  bool active_ = false;

  Napi::FunctionReference on_events_;  // lib/'s event sink
};

void ExportConstants(Napi::Env env, Napi::Object target);
void ExportModuleFunctions(Napi::Env env, Napi::Object target);

}  // namespace nbdjs
