// NbdHandle's lifecycle: the class, creating the handle and its driver,
// closing (Teardown), finalization; and the calls about commands in flight.
// Each stage of its work has a file of its own (nbd_handle.h lists them).
#include "handle/nbd_handle.h"

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <system_error>
#include <thread>

#include "drivers/loop_driver.h"
#include "drivers/thread_driver.h"

namespace nbdjs {

namespace {

constexpr size_t kEventCapacity = 1024;  // events per JS call
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
  window_.Create(env, kEventCapacity);

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
  InstallDebugSink();
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
  closing->commands = commands_.TakeAllForClose();
  closing->subprocess = subprocess_;
  if (debug_sink_ != nullptr) {
    // libnbd frees the sink in nbd_close, after its last message ("closing
    // handle"), which close() hands to JS as nbd_close hands it to C.
    closing_messages_ = debug_sink_->DetachForClose();
    debug_sink_ = nullptr;
  }
  // The driver stops polling before libnbd closes the fd, and closes now or
  // once its own thread has left libnbd. libnbd >= 1.18 runs pending
  // completion callbacks in nbd_close: they record nothing, and the facade
  // completes every pending command itself.
  CloseFn close = [closing] { ClosingHandle::Close(closing); };
  // h_ is cleared once the driver has stopped: an interrupted task still
  // running until Stop returns reads it (StagedEvents).
  if (driver_)
    driver_->Stop(std::move(close));
  else
    close();
  h_ = nullptr;
  queue_.Clear();
  in_flight_ = 0;
  reply_bytes_in_flight_ = 0;
  connects_queued_ = 0;
  connecting_id_ = 0;
  connected_ = false;
  disconnecting_ = false;
}

Napi::Value NbdHandle::Close(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Teardown();
  UpdateActive();
  // The debug messages of nbd_close, as [context, message] pairs (those of a
  // close still waiting for a connect to return are not known yet).
  std::shared_ptr<DebugSink::Closing> closing = std::move(closing_messages_);
  if (!closing) return env.Undefined();
  std::lock_guard<std::mutex> lock(closing->mutex);
  Napi::Array messages = Napi::Array::New(env, closing->messages.size());
  for (size_t i = 0; i < closing->messages.size(); i++) {
    Napi::Array pair = Napi::Array::New(env, 2);
    pair.Set(0u, Napi::String::New(env, closing->messages[i].first));
    pair.Set(1u, Napi::String::New(env, closing->messages[i].second));
    messages.Set(static_cast<uint32_t>(i), pair);
  }
  return messages;
}

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
  if (shutdown_running_) return Napi::Number::New(env, 0);  // connected, and libnbd's lock is held
  int r = nbd_aio_in_flight(h_);
  if (r == -1) RecordError();
  return Napi::Number::New(env, r);
}

}  // namespace nbdjs
