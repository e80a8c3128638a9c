// The window through which JS reads events: one Float64Array shared with
// lib/ (layout: scripts/event-wire.mjs), made once per handle.
//
// Record 0 is a header of cells that carry values beside the events, from a
// call made from JS to lib/, read as soon as that call returns:
//   kHeaderQueued  SetQueuedFromJs: events libnbd recorded inside calls made
//                  from JS and not handed over yet (lib/handle/handle.ts
//                  `_afterCall` calls drain() when it is not 0);
//   kHeaderSlot    SetIssuedSlot: the CommandContext slot of the command the
//                  aio call just issued (lib/handle/handle.ts `_register`,
//                  `_registerOpt` keep the command's JS state in that slot).
// Records 1..Capacity() hold the events of one call to lib/'s event sink.
#pragma once

#include <napi.h>

#include <cstddef>
#include <cstdint>

#include "events/event.h"
#include "generated/event_records.h"
#include "handle/command_context.h"

namespace nbdjs {

class EventWindow {
 public:
  // Makes the array: `capacity` event records after the header.
  void Create(Napi::Env env, size_t capacity);
  Napi::Float64Array Array() const { return array_.Value(); }
  size_t Capacity() const { return capacity_; }

  void SetQueuedFromJs(int64_t events) { data_[kHeaderQueued] = static_cast<double>(events); }
  void SetIssuedSlot(uint32_t slot) { data_[kHeaderSlot] = slot; }

  // Writes `e` as event record `index` (0-based, after the header):
  // generated/event_records.h. Inline: it runs for every event.
  void Write(size_t index, const Event& e);

 private:
  Napi::Reference<Napi::Float64Array> array_;
  double* data_ = nullptr;
  size_t capacity_ = 0;
};

inline void EventWindow::Write(size_t index, const Event& e) {
  WriteEventRecord(data_ + (index + 1) * kEventStride, e);
}

// An event's payload (its strings and arrays) as the JS object lib/ reads
// (generated/closures.cc).
Napi::Value PayloadToJs(Napi::Env env, const Event& e);

}  // namespace nbdjs
