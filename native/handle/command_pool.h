// The command pool: one CommandContext per issued command, reused by slot.
// JS keeps its own state for a command in the same slot, so a context is
// reused only once JS has been handed its completion.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "handle/command_context.h"

namespace nbdjs {

class NbdHandle;

class CommandPool {
 public:
  explicit CommandPool(NbdHandle* owner) : owner_(owner) {}

  // A context for a command about to be issued (no allocation once the pool
  // has grown to the queue depth).
  CommandContext* Acquire(const uint8_t* base, uint64_t reply_bytes, bool opt);
  // Back to the pool: a command libnbd refused.
  void Release(CommandContext* c) { free_.push_back(c); }

  // A completion in the batch JS is being handed: its context is reused
  // once JS has seen it (ReleaseDelivered), or dropped with the pool if
  // the handle closes meanwhile (ForgetDelivered).
  void Delivered(CommandContext* c) { delivered_.push_back(c); }
  void ReleaseDelivered();
  void ForgetDelivered() { delivered_.clear(); }

  // Every context, for nbd_close: libnbd may still run callbacks with them
  // (nbd_close on libnbd >= 1.18). The pool is empty afterwards.
  std::vector<std::unique_ptr<CommandContext>> TakeAllForClose();

 private:
  NbdHandle* owner_;
  std::vector<std::unique_ptr<CommandContext>> storage_;  // index: slot
  std::vector<CommandContext*> free_;
  std::vector<CommandContext*> delivered_;
};

}  // namespace nbdjs
