// Events recorded by libnbd's C callbacks (and by the binding: a
// connection's end, poll()), delivered to JS after libnbd returns.
//
// libnbd runs its callbacks with the handle lock held, so they only append a
// record (no JS, no allocation once the vectors have grown) and return.
// NbdHandle::DeliverEvents hands them to JS through the EventWindow
// (events/event_window.h), laid out as scripts/event-wire.mjs says
// (generated/event_wire.h here, lib/generated/event-wire.ts there). Absolute
// offsets are rebuilt in JS from the request offset, which JS already has.
#pragma once

#include <cstdint>
#include <memory>

#include "generated/event_wire.h"

namespace nbdjs {

struct CommandContext;

struct Event {
  EventKind kind;
  uint32_t status;
  int32_t error;
  CommandContext* command;  // null for connection and debug events
  uint64_t id;              // connection events: the connect's id
  uint64_t sub_offset;
  uint64_t count;
  std::unique_ptr<Payload> payload;  // strings and arrays (generated/event_wire.h), for the kinds that carry them
};

// An event of `kind` about command `c` (null: the handle's own), with an
// empty payload when it carries one.
inline Event NewEvent(EventKind kind, CommandContext* c, bool with_payload) {
  Event e{};
  e.kind = kind;
  e.command = c;
  if (with_payload) e.payload = std::make_unique<Payload>();
  return e;
}

// libnbd's connection state as its lock-free queries (aio_is_*,
// connection_state) answered at one moment.
struct StateSnapshot {
  bool known = false;
  uint8_t is = 0;  // state::k* bits (generated/event_wire.h)
  const char* name = nullptr;  // nbd_connection_state's static string
};

}  // namespace nbdjs
