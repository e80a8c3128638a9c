// Staging: StagedEvents, the per-thread buffers that hold the events of one
// libnbd call until Flush retires and publishes them.
#include "events/staged_events.h"

#include <memory>
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
  staging_depth--;
  current_staged = previous_;
}

StagedEvents* StagedEvents::Current() { return current_staged; }

void StagedEvents::Flush(nbd_handle* h) {
  if (events.empty()) return;
  // A command whose issuing call has not returned yet is retired by NbdHandle::DeliverEvents.
  for (const Event& e : events)
    if (e.kind == kCompletion) e.command->Retire(h);
  owner_->Publish(events);
}

}  // namespace nbdjs
