// What poll() waits for: the driver's runs of libnbd (a notify call and what
// follows it, a connect task's end) and their delivery to JS.
#pragma once

#include <atomic>
#include <cstdint>

namespace nbdjs {

// Runs are counted when they begin and once their events are published (any
// thread), and handed to JS as a delivery begins (JS thread). A poll() that
// waits is settled by the next kPolled event, queued after the events of the
// runs delivered with it.
class PollRuns {
 public:
  void Began() { begun_++; }
  // After the run's events were published: a delivery that sees it hands them over.
  void Done() { done_++; }
  // A run began that JS has not been handed yet.
  bool Undelivered() const { return begun_ != delivered_; }
  // A poll() waits from now on.
  void Wait() { waiting_ = true; }
  // The kPolled events queued so far (the next one settles the polls waiting).
  uint64_t Polled() const { return polled_; }
  // A poll() waits and runs are done that JS has not been handed.
  bool Wanted() const { return waiting_ && done_ != delivered_; }
  // The delivery hands over the runs done so far: returns the sequence of the
  // kPolled event to queue after them, 0 when no poll() waits for one.
  uint64_t Delivered() {
    uint64_t done = done_.load();
    if (done == delivered_.load()) return 0;
    delivered_ = done;
    if (!waiting_.load() || !waiting_.exchange(false)) return 0;
    return ++polled_;
  }

 private:
  std::atomic<uint64_t> begun_{0};
  std::atomic<uint64_t> done_{0};
  std::atomic<uint64_t> delivered_{0};
  std::atomic<bool> waiting_{false};
  uint64_t polled_ = 0;  // JS thread
};

}  // namespace nbdjs
