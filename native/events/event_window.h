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

  // Writes `e` as event record `index` (0-based, after the header). Inline:
  // it runs for every event.
  void Write(size_t index, const Event& e);

 private:
  Napi::Reference<Napi::Float64Array> array_;
  double* data_ = nullptr;
  size_t capacity_ = 0;
};

inline void EventWindow::Write(size_t index, const Event& e) {
  double* out = data_ + (index + 1) * kEventStride;
  const CommandContext* c = e.command;
  out[field::kKind] = e.kind;
  switch (e.kind) {
    case kChunk:
      out[field::kChunkSlot] = c->slot;
      out[field::kChunkStatus] = e.status;
      out[field::kChunkError] = e.error;
      out[field::kChunkSubOffset] = static_cast<double>(e.sub_offset);
      out[field::kChunkCount] = static_cast<double>(e.count);
      break;
    case kCompletion:
      out[field::kCompletionSlot] = c->slot;
      out[field::kCompletionError] = e.error;
      out[field::kCompletionRetireError] = c->retire_error;
      break;
    case kConnected:
      out[field::kConnectedId] = static_cast<double>(e.id);
      out[field::kConnectedError] = e.error;
      break;
    case kDisconnected:
      out[field::kDisconnectedError] = e.error;
      break;
    case kConnectionLost:
      out[field::kConnectionLostError] = e.error;
      break;
    case kExtent:
      out[field::kExtentSlot] = c->slot;
      out[field::kExtentError] = e.error;
      break;
    case kList:
      out[field::kListSlot] = c->slot;
      break;
    case kContext:
      out[field::kContextSlot] = c->slot;
      break;
    case kDebug:
      break;
    case kPolled:
      out[field::kPolledSequence] = static_cast<double>(e.id);
      break;
  }
}

// An event's payload (its strings and arrays) as the JS object lib/ reads.
Napi::Value PayloadToJs(Napi::Env env, const Event& e);

}  // namespace nbdjs
