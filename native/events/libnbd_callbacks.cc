// libnbd's C callbacks. libnbd runs them with the handle lock held, on
// whichever thread made the libnbd call: they only record an Event and
// return; JS sees it after libnbd has returned (docs/architecture.md, "The
// two rules everything follows").
#include <cstdio>
#include <memory>
#include <mutex>
#include <utility>

#include "events/debug_sink.h"
#include "handle/nbd_handle.h"

namespace nbdjs {

int ChunkCallback(void* user_data, const void* subbuf, size_t count, uint64_t /*offset*/,
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
  return 0;  // the facade applies the callback's result (docs/architecture.md, "Where libnbd's rules live")
}

int CompletionCallback(void* user_data, int* error) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e{};
  e.kind = kCompletion;
  e.error = *error;
  e.command = c;
  if (c->opt && *error != 0) {
    // What libnbd recorded as the option failed, on this thread: the reason
    // a server gave, or the failure that killed the connection; C's sync
    // call fails with it (lib/opt.c).
    e.payload = std::make_unique<Payload>();
    const char* message = nbd_get_error();
    e.payload->text = message != nullptr ? message : "";
    e.payload->errnum = nbd_get_errno();
  }
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

int ExtentCallback(void* user_data, const char* metacontext, uint64_t offset, uint32_t* entries,
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

int Extent64Callback(void* user_data, const char* metacontext, uint64_t offset, nbd_extent* entries,
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

int ListCallback(void* user_data, const char* name, const char* description) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e = PayloadEvent(kList, c, 0);
  e.payload->text = name;
  e.payload->text2 = description;
  c->owner->Record(std::move(e));
  return 0;
}

int ContextCallback(void* user_data, const char* name) {
  auto* c = static_cast<CommandContext*>(user_data);
  if (c->owner == nullptr) return 0;  // closing
  Event e = PayloadEvent(kContext, c, 0);
  e.payload->text = name;
  c->owner->Record(std::move(e));
  return 0;
}

int DebugCallback(void* user_data, const char* context, const char* msg) {
  if (QuietCalls::Active()) return 0;  // the binding's own bookkeeping call
  auto* sink = static_cast<DebugSink*>(user_data);
  std::lock_guard<std::mutex> lock(sink->mutex);
  if (!sink->to_js) {  // no JS callback: libnbd's own output (lib/debug.c)
    fprintf(stderr, "libnbd: debug: %s: %s: %s\n", sink->handle_name.c_str(), context ? context : "unknown", msg ? msg : "");
    return 0;
  }
  if (sink->owner == nullptr) {
    if (sink->closing) {  // nbd_close's own messages, for close() to deliver
      std::lock_guard<std::mutex> closing_lock(sink->closing->mutex);
      sink->closing->messages.emplace_back(context ? context : "", msg ? msg : "");
    }
    return 0;
  }
  Event e = PayloadEvent(kDebug, nullptr, 0);
  e.payload->text = context ? context : "";
  e.payload->text2 = msg ? msg : "";
  sink->owner->Record(std::move(e));
  return 0;
}

}  // namespace nbdjs
