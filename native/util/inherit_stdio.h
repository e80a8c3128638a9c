#pragma once

#include <mutex>

namespace nbdjs {

// aio_connect_command and socket activation fork and exec the server with
// fds 0-2 as they are (connect_command replaces 0 and 1 with the socket,
// socket activation passes it as fd 3); Node marks them close-on-exec, which
// leaves the server without them (nbdkit then refuses or exits at once).
// Clear the flag around the call. The fds belong to the process, not to an
// env: workers connecting at the same time share one clearing per fd,
// counted under a process-wide lock.
class InheritStdio {
 public:
  InheritStdio();
  ~InheritStdio();

 private:
  static std::mutex mutex_;
  static int users_;
  static int saved_flags_[3];
};

}  // namespace nbdjs
