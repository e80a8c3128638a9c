// The command pool: taking and returning CommandContexts. Issuing is
// NbdHandle::Issue (handle/nbd_handle.h, a template the generated glue
// instantiates).
#include "handle/command_pool.h"

#include <utility>

namespace nbdjs {

CommandContext* CommandPool::Acquire(const uint8_t* base, uint64_t reply_bytes, bool opt) {
  CommandContext* c;
  if (free_.empty()) {
    storage_.push_back(std::make_unique<CommandContext>());
    c = storage_.back().get();
    c->owner = owner_;
    c->slot = static_cast<uint32_t>(storage_.size() - 1);
  } else {
    c = free_.back();
    free_.pop_back();
  }
  c->cookie = 0;
  c->opt = opt;
  c->retired = opt;
  c->retire_error = 0;
  c->base = base;
  c->reply_bytes = reply_bytes;
  return c;
}

void CommandPool::ReleaseDelivered() {
  for (CommandContext* c : delivered_) free_.push_back(c);
  delivered_.clear();
}

std::vector<std::unique_ptr<CommandContext>> CommandPool::TakeAllForClose() {
  free_.clear();
  std::vector<std::unique_ptr<CommandContext>> all;
  all.swap(storage_);
  return all;
}

}  // namespace nbdjs
