// CommandContext: one issued command as libnbd's callbacks see it. Pooled
// per handle (handle/command_pool.h); JS keeps its own state for a command
// in the same slot.
#pragma once

#include <libnbd.h>

#include <atomic>
#include <cstdint>

#include "util/quiet_calls.h"

namespace nbdjs {

class NbdHandle;

// One issued command, as seen by libnbd's callbacks (their user_data).
// Pooled per handle so that issuing a command does not allocate.
struct CommandContext {
  // Null once the handle is being closed: callbacks libnbd still runs (those
  // of nbd_close on libnbd >= 1.18) then record nothing.
  NbdHandle* owner = nullptr;
  // Its index in the handle's pool: events name the command by slot, and
  // lib/ keeps its own state for the command in the same slot. Released for
  // reuse only once JS has seen the completion.
  uint32_t slot = 0;
  // The cookie (an option command's id, negative), set by the JS thread once
  // the aio call has returned; the I/O thread may see the command complete
  // before that.
  std::atomic<int64_t> cookie{0};
  const uint8_t* base = nullptr;
  // The data its reply carries (a read's buffer length; 0 for other
  // commands): what ReadWaitingReplies counts of the replies it has read.
  uint64_t reply_bytes = 0;
  // An option command (libnbd retires it itself: it starts out retired).
  bool opt = false;
  std::atomic<bool> retired{false};
  int retire_error = 0;        // errno of nbd_aio_command_completed, 0 = success

  // Retires the completed command (once its cookie is known).
  bool Retire(nbd_handle* h) {
    int64_t id = cookie.load();
    if (id <= 0 || retired.load()) return false;
    int r = quiet::CommandCompleted(h, static_cast<uint64_t>(id));
    retire_error = r == -1 ? nbd_get_errno() : 0;
    retired.store(true);
    return true;
  }
};

}  // namespace nbdjs
