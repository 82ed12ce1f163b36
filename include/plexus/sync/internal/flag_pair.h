// Internal: the Dekker handshake between a frequent side and a rare side of one object. Not API.
//
// The frequent side (one thread at a time: a topic's send, a subscription's delivery thread)
// runs often and must stay cheap; the rare side (a dump, a resync) now and then needs to know
// that from some moment on every run sees its flag, and that a run which started before that
// moment, and so may have missed the flag, is over. FlagPair holds the two words of the
// handshake: the rare side's flag (a T; T{} means lowered) and the frequent side's run word
// ((runs << 1) | 1 while a run is on, runs << 1 after). The frequent side stores its run word,
// then loads the flag (Enter); the rare side stores the flag, then loads the run word (Raise).
//
// Why sequentially consistent on both sides: each side stores one word and then loads the
// other's, and store-then-load is the one reordering that release and acquire allow (x86's
// store buffer does it too). With weaker orders both loads could read the old values: a run
// would go ahead without the flag while the rare side saw no run to wait for. With all four
// sequentially consistent the two stores and the two loads fall in one total order, so at
// least one side sees the other's store: the run sees the flag, or the rare side sees the run
// (and waits for the run word to change). The end of a run needs no such order: a release
// store that a waiting rare side's acquire load picks up.
//
// Cost: a run costs the frequent side one sequentially consistent store and a load, then a
// release store and a relaxed load at its end; it takes the owner's mutex only to wake a rare
// side that waits for it. The rare side takes the mutex only when a run was on.
//
// The mutex and the condition variable are the owner's (it waits on them for its own reasons
// as well, and a wake-up here wakes its waiters too); they must outlive the FlagPair.
//
// Thread safety: Enter and Exit by one thread at a time (the frequent side: its run count is a
// plain word); Raise by one thread at a time (the rare side), not holding the owner's mutex;
// Store and Load from any thread. The two sides may run at the same time.

#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"

namespace plexus::sync_internal {

template <class T>
class FlagPair {
 public:
  FlagPair(Mutex& mu, CondVar& cv) noexcept : mu_(mu), cv_(cv) {}
  FlagPair(const FlagPair&) = delete;
  FlagPair& operator=(const FlagPair&) = delete;

  // Frequent side: marks a run as on, then returns the flag as it is now. Every Enter is
  // followed by Exit, whether the caller goes on with the run or not.
  T Enter() noexcept {
    run_.store((++runs_ << 1) | 1, std::memory_order_seq_cst);
    return flag_.load(std::memory_order_seq_cst);
  }

  // Frequent side: the run is over.
  void Exit() {
    run_.store(runs_ << 1, std::memory_order_release);
    // A plain load: Raise does not rely on this wake-up alone (it polls as well), so the end of
    // a run costs no fence.
    if (waiting_.load(std::memory_order_relaxed)) [[unlikely]] {
      MutexLock lock(mu_);
      cv_.NotifyAll();
    }
  }

  // Rare side: stores `value` as the flag; returns once a run that was on at that moment (it
  // may have missed the flag) is over. Only that one run is waited for, not a moment with no
  // run on, so a busy frequent side cannot starve it.
  void Raise(T value) {
    flag_.store(value, std::memory_order_seq_cst);
    const std::uint64_t running = run_.load(std::memory_order_seq_cst);
    if ((running & 1) == 0) return;
    MutexLock lock(mu_);
    waiting_.store(true, std::memory_order_relaxed);
    while (run_.load(std::memory_order_acquire) == running) {
      cv_.WaitFor(mu_, std::chrono::milliseconds(1));
    }
    waiting_.store(false, std::memory_order_relaxed);
  }

  // Stores the flag without waiting (to lower it, typically under the owner's mutex).
  void Store(T value) noexcept { flag_.store(value, std::memory_order_seq_cst); }

  T Load(std::memory_order order = std::memory_order_seq_cst) const noexcept {
    return flag_.load(order);
  }

 private:
  std::atomic<T> flag_{T{}};
  std::atomic<std::uint64_t> run_{0};
  std::uint64_t runs_ = 0;            // the frequent side's own count
  std::atomic<bool> waiting_{false};  // Raise waits for run_ to change
  Mutex& mu_;
  CondVar& cv_;
};

}  // namespace plexus::sync_internal
