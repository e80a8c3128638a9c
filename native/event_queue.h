// Events recorded by libnbd's C callbacks, delivered to JS after libnbd returns.
//
// libnbd runs its callbacks with the handle lock held, so they only append a
// record here (no JS, no allocation once the vector has grown) and return.
// The records reach JS through one shared Float64Array of kEventStride
// doubles per event:
//
//   [0] kind        an EventKind
//   [1] slot        the command's slot (CommandContext::slot); connection events:
//                   the connect's id (0 otherwise)
//   [2] status      chunk: READ_DATA / READ_HOLE / READ_ERROR
//   [3] error       chunk: libnbd's *error on entry; completion: libnbd's *error;
//                   connection events: errno of the failure, 0 on success
//   [4] a           chunk: offset of the chunk within the caller's buffer;
//                   completion: errno of nbd_aio_command_completed (0 = success)
//   [5] count       chunk: byte count
//
// Every field is below 2^53, so doubles carry them exactly; absolute offsets
// are rebuilt in JS from the request offset, which JS already has.
#pragma once

#include <cstdint>
#include <iterator>
#include <memory>
#include <string>
#include <mutex>
#include <vector>

namespace nbdjs {

constexpr int kEventStride = 6;
// Record 0 of the shared array is a header, not an event.
constexpr int kHeaderQueued = 0;  // events a call made from JS queued (lib/ drains them)
constexpr int kHeaderSlot = 1;    // slot of the command the last aio call issued

// Recorded in libnbd as a READ_ERROR chunk's error when libnbd had none;
// larger than any errno, so it cannot be confused with one (lib/semantics.ts).
constexpr int kReadErrorMarker = 0x4e424400;

enum EventKind : uint32_t {
  kChunk = 1,
  kCompletion = 2,
  kConnected = 3,     // payload on failure: libnbd's message
  kDisconnected = 4,  // payload on failure: libnbd's message
  kExtent = 5,   // [3] libnbd's *error on entry; payload: context, offset, entries
  kList = 6,     // payload: name, description
  kContext = 7,  // payload: name
  kDebug = 8,    // payload: context, message (no command)
  // The connection ended without a disconnect being asked for (the server
  // went away, even while idle): [3] errno; payload: libnbd's message.
  kConnectionLost = 9,
};

struct CommandContext;

// What an event carries beyond numbers (extent, list, context, debug). The
// strings and arrays libnbd passes are valid only during the callback.
struct Payload {
  std::string text;   // extent: meta context; list, context: name; debug: context; connection: message
  std::string text2;  // list: description; debug: message
  uint64_t offset = 0;
  std::vector<uint32_t> entries32;  // extent: (length, flags) pairs
  std::vector<uint64_t> entries64;  // extent64: (length, flags) pairs
};

struct Event {
  EventKind kind;
  uint32_t status;
  int32_t error;
  CommandContext* command;  // null for connection and debug events
  uint64_t id;              // connection events: the connect's id
  uint64_t sub_offset;
  uint64_t count;
  std::unique_ptr<Payload> payload;
};

// Shared between the thread that runs libnbd (JS thread for the loop driver,
// I/O thread for the thread driver) and the JS thread that drains it.
class EventQueue {
 public:
  void Push(Event&& e) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.push_back(std::move(e));
  }
  // Appends `events` in order and empties it.
  void PushAll(std::vector<Event>& events) {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.insert(events_.end(), std::make_move_iterator(events.begin()), std::make_move_iterator(events.end()));
    events.clear();
  }
  // Moves everything queued into `out` (which must be empty); O(1).
  void TakeAll(std::vector<Event>& out) {
    std::lock_guard<std::mutex> lock(mutex_);
    out.swap(events_);
  }
  size_t Size() {
    std::lock_guard<std::mutex> lock(mutex_);
    return events_.size();
  }
  void Clear() {
    std::lock_guard<std::mutex> lock(mutex_);
    events_.clear();
  }

 private:
  std::mutex mutex_;
  std::vector<Event> events_;
};

}  // namespace nbdjs
