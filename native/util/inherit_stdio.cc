// fds 0-2 for the servers that connects fork (inherit_stdio.h says why).
#include "util/inherit_stdio.h"

#include <fcntl.h>

#include <mutex>

namespace nbdjs {

InheritStdio::InheritStdio() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (users_++ != 0) return;
  for (int fd = 0; fd < 3; fd++) {
    saved_flags_[fd] = fcntl(fd, F_GETFD);
    if (saved_flags_[fd] != -1 && (saved_flags_[fd] & FD_CLOEXEC)) fcntl(fd, F_SETFD, saved_flags_[fd] & ~FD_CLOEXEC);
  }
}

InheritStdio::~InheritStdio() {
  std::lock_guard<std::mutex> lock(mutex_);
  if (--users_ != 0) return;
  for (int fd = 0; fd < 3; fd++)
    if (saved_flags_[fd] != -1 && (saved_flags_[fd] & FD_CLOEXEC)) fcntl(fd, F_SETFD, saved_flags_[fd]);
}

std::mutex InheritStdio::mutex_;
int InheritStdio::users_ = 0;
int InheritStdio::saved_flags_[3] = {-1, -1, -1};

}  // namespace nbdjs
