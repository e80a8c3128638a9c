// Staging: StagedEvents, the per-thread buffers that hold the events of one
// libnbd call until Flush retires and publishes them.
#include "events/staged_events.h"

#include <atomic>
#include <memory>
#include <thread>
#include <vector>

#include "handle/nbd_handle.h"

namespace nbdjs {

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
  Unannounce();  // also when nothing was published (the handle closed meanwhile)
  staging_depth--;
  current_staged = previous_;
}

StagedEvents* StagedEvents::Current() { return current_staged; }

void StagedEvents::Began(uint64_t seq) {
  first_seq_ = seq;
  // Asked only once there are events: most calls from JS record none.
  on_js_thread_ = std::this_thread::get_id() == owner_->js_thread_;
  if (!on_js_thread_) return;
  // An outer call's events, if any, are earlier: they keep the announcement.
  uint64_t none = 0;
  announced_ = owner_->js_staged_first_.compare_exchange_strong(none, seq, std::memory_order_acq_rel);
}

void StagedEvents::Unannounce() {
  if (!announced_) return;
  announced_ = false;
  owner_->js_staged_first_.store(0, std::memory_order_release);
}

void StagedEvents::Flush(nbd_handle* h) {
  if (events.empty()) return;
  if (!on_js_thread_) {
    // Earlier events the JS thread holds go first: it publishes them right
    // after its libnbd call returns, without waiting for anything.
    for (;;) {
      uint64_t js_first = owner_->js_staged_first_.load(std::memory_order_acquire);
      if (js_first == 0 || js_first > first_seq_) break;
      std::this_thread::yield();
    }
  }
  // A command whose issuing call has not returned yet is retired by NbdHandle::DeliverEvents.
  for (const Event& e : events)
    if (e.kind == kCompletion) e.command->Retire(h);
  owner_->Publish(events);
  Unannounce();
}

}  // namespace nbdjs
