// Internal: how many threads may spin-wait at once, process-wide.
//
// A worker that has run dry spins a moment before it sleeps, so a producer that keeps
// producing never pays a wake-up. That is a good bet while spinners are few; with many threads
// (sixteen dedicated subscriptions on two cores) the spinners only take the CPU from the
// threads that have work. So, as Go's scheduler does with its spinning threads, at most half
// the hardware threads (at least one) spin at a time; the others sleep at once.

#pragma once

#include <atomic>
#include <thread>

namespace plexus::exec_internal {

inline std::atomic<int>& Spinners() {
  static std::atomic<int> spinners{0};
  return spinners;
}

inline int MaxSpinners() {
  static const int max = [] {
    const int hw = static_cast<int>(std::thread::hardware_concurrency());
    return hw > 2 ? hw / 2 : 1;
  }();
  return max;
}

// Holds one of the spin slots for its lifetime, if one was free.
class SpinSlot {
 public:
  SpinSlot() noexcept {
    int n = Spinners().load(std::memory_order_relaxed);
    while (n < MaxSpinners()) {
      if (Spinners().compare_exchange_weak(n, n + 1, std::memory_order_relaxed)) {
        held_ = true;
        return;
      }
    }
  }
  ~SpinSlot() {
    if (held_) Spinners().fetch_sub(1, std::memory_order_relaxed);
  }
  SpinSlot(const SpinSlot&) = delete;
  SpinSlot& operator=(const SpinSlot&) = delete;
  explicit operator bool() const noexcept { return held_; }

 private:
  bool held_ = false;
};

}  // namespace plexus::exec_internal
