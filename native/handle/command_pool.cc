// The command pool (slots): taking and returning CommandContexts, and the
// glue of the calls about commands in flight. Issuing is NbdHandle::Issue
// (nbd_handle.h, a template the generated glue instantiates).
#include "handle/nbd_handle.h"

namespace nbdjs {

CommandContext* NbdHandle::AcquireCommand(const uint8_t* base, uint64_t reply_bytes, bool opt) {
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
  c->opt = opt;
  c->retired = opt;
  c->retire_error = 0;
  c->base = base;
  c->reply_bytes = reply_bytes;
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
  if (shutdown_running_) return Napi::Number::New(env, 0);  // connected, and libnbd's lock is held
  int r = nbd_aio_in_flight(h_);
  if (r == -1) RecordError();
  return Napi::Number::New(env, r);
}

}  // namespace nbdjs
