// libnbd logs every API call when debug is on ("enter:", "leave: ret=1").
// The binding's own bookkeeping calls (state queries, retirement) are not
// the user's: their messages are dropped (DebugSink::Admit, events/debug_sink.h, asks
// QuietCalls::Active()). Beyond the noise, the thread driver's I/O thread
// would otherwise make events of its own queries, wake JS for them, and be
// woken again, without end.
#pragma once

#include <libnbd.h>

#include <cstdint>

#include "events/event.h"

namespace nbdjs {

class QuietCalls {
 public:
  QuietCalls() : previous_(active_) { active_ = true; }
  ~QuietCalls() { active_ = previous_; }
  static bool Active() { return active_; }

 private:
  bool previous_;
  static thread_local bool active_;
};

inline thread_local bool QuietCalls::active_ = false;

// The binding's own libnbd queries, without debug messages.
namespace quiet {
inline unsigned Direction(nbd_handle* h) { QuietCalls q; return nbd_aio_get_direction(h); }
inline int Fd(nbd_handle* h) { QuietCalls q; return nbd_aio_get_fd(h); }
inline bool IsCreated(nbd_handle* h) { QuietCalls q; return nbd_aio_is_created(h) == 1; }
inline bool IsConnecting(nbd_handle* h) { QuietCalls q; return nbd_aio_is_connecting(h) == 1; }
inline bool IsNegotiating(nbd_handle* h) { QuietCalls q; return nbd_aio_is_negotiating(h) == 1; }
inline bool IsReady(nbd_handle* h) { QuietCalls q; return nbd_aio_is_ready(h) == 1; }
inline bool IsProcessing(nbd_handle* h) { QuietCalls q; return nbd_aio_is_processing(h) == 1; }
inline bool IsDead(nbd_handle* h) { QuietCalls q; return nbd_aio_is_dead(h) == 1; }
inline bool IsClosed(nbd_handle* h) { QuietCalls q; return nbd_aio_is_closed(h) == 1; }
inline int64_t InFlight(nbd_handle* h) { QuietCalls q; return nbd_aio_in_flight(h); }
inline int CommandCompleted(nbd_handle* h, uint64_t cookie) { QuietCalls q; return nbd_aio_command_completed(h, cookie); }
inline StateSnapshot State(nbd_handle* h) {
  QuietCalls q;
  StateSnapshot s;
  s.known = true;
  s.name = nbd_connection_state(h);
  s.is = (nbd_aio_is_created(h) == 1 ? state::kCreated : 0) | (nbd_aio_is_connecting(h) == 1 ? state::kConnecting : 0) |
         (nbd_aio_is_negotiating(h) == 1 ? state::kNegotiating : 0) | (nbd_aio_is_ready(h) == 1 ? state::kReady : 0) |
         (nbd_aio_is_processing(h) == 1 ? state::kProcessing : 0) | (nbd_aio_is_dead(h) == 1 ? state::kDead : 0) |
         (nbd_aio_is_closed(h) == 1 ? state::kClosed : 0);
  return s;
}
}  // namespace quiet

}  // namespace nbdjs
