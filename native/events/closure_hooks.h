// What libnbd's rules add to the generated trampolines
// (native/generated/closures.cc, from scripts/api-table.mjs `closures`): the
// helpers they copy arguments with, and the hooks the table names. The
// trampolines run inside libnbd with the handle lock held, on whichever
// thread made the libnbd call: they only record an Event and return; JS sees
// it after libnbd has returned (docs/architecture.md, "The two rules
// everything follows").
#pragma once

#include <libnbd.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "events/event.h"
#include "generated/libnbd_loaded.h"  // nbd_extent where libnbd.h lacks it
#include "handle/command_context.h"

namespace nbdjs {

inline const char* NonNull(const char* s) { return s != nullptr ? s : ""; }

// Where a chunk lies in the command's buffer (JS rebuilds the absolute
// offset from the request's).
inline uint64_t SubOffset(const CommandContext* c, const void* subbuf) {
  return static_cast<uint64_t>(static_cast<const uint8_t*>(subbuf) - c->base);
}

inline void CopyExtents(std::vector<uint32_t>* to, const uint32_t* entries, size_t nr_entries) {
  to->assign(entries, entries + nr_entries);
}

inline void CopyExtents(std::vector<uint64_t>* to, const nbd_extent* entries, size_t nr_entries) {
  to->reserve(nr_entries * 2);
  for (size_t i = 0; i < nr_entries; i++) {
    to->push_back(entries[i].length);
    to->push_back(entries[i].flags);
  }
}

// After a chunk is recorded: a READ_ERROR chunk fails the command in libnbd
// with the marker. A plain error reply earlier in the same command leaves no
// event, so JS cannot tell whether libnbd already recorded an error. Asked
// this way, libnbd records the marker only if it had none, and the command's
// next event (a chunk or the completion) carries what it recorded
// (lib/semantics.ts applies the rule). Any other chunk: the facade applies
// the user callback's result (docs/architecture.md, "Where libnbd's rules
// live").
inline int ChunkRecorded(const void* /*subbuf*/, size_t /*count*/, uint64_t /*offset*/, unsigned status, int* error) {
  if (status != LIBNBD_READ_ERROR) return 0;
  *error = kReadErrorMarker;
  return -1;
}

// Before an option's failed completion is recorded: what libnbd recorded,
// on this thread (the reason a server gave, or the failure that killed the
// connection), which C's sync call fails with (lib/opt.c). A completion never
// auto-retires (the trampoline returns 0): StagedEvents::Flush retires, to
// see libnbd's short-read error.
inline void AttachOptionFailure(const CommandContext* c, Event* e) {
  if (!c->opt || e->error == 0) return;
  e->payload = std::make_unique<Payload>();
  e->payload->message = NonNull(nbd_get_error());
  e->payload->errnum = nbd_get_errno();
}

}  // namespace nbdjs
