// DumpFence keeps a bridged topic's sends out of the moment a dump of its cache is taken, so the
// dump's watermark (the sequence number taken with it) splits the node's frames cleanly.
//
// A local message reaches the cache and then the bridge inside one publish on the topic: the
// caching topic's synchronous subscription runs first (it subscribed first), the bridge's send
// (which numbers the frame) after it, and the topic runs one publish's fan-out at a time. A dump
// taken while publishes go on would be fuzzy: a snapshot cached during the walk may be in the
// dump although its frame is numbered above the watermark, and a peer would deliver it twice, or
// a newer one ahead of an older one. With the fence closed, a send that would start waits until
// the snapshots are collected; the publish waiting there holds the topic, so no other snapshot
// can be cached meanwhile. Only that one publish (cached just before or during the collection,
// numbered after the watermark: the node's first frame on the topic at or above it) may or may
// not be in the dump; the receiving side compares that one frame with what the dump installed.
//
// The send side costs one sequentially consistent store and a load per message (a Dekker pair
// against Close's store), then a release store and a relaxed load; it takes the mutex only
// while a dump is being taken.
//
// Thread safety: Enter and Exit are called by the topic's sends, which the topic's fan-out
// runs one at a time (a send's word is written by one thread at a time, ordered by the topic's
// lock); Close and Open by one dump at a time. The two sides may run at the same time.

#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"

namespace plexus::cluster::cluster_internal {

class DumpFence {
 public:
  DumpFence() = default;
  DumpFence(const DumpFence&) = delete;
  DumpFence& operator=(const DumpFence&) = delete;

  // Send side: returns once no dump is being taken, with the send marked as running.
  void Enter() {
    for (;;) {
      busy_.store((++sends_ << 1) | 1, std::memory_order_seq_cst);
      if (!closed_.load(std::memory_order_seq_cst)) [[likely]] {
        return;
      }
      Exit();
      MutexLock lock(mu_);
      while (closed_.load(std::memory_order_relaxed)) cv_.Wait(mu_);
    }
  }

  // Send side: the send is over.
  void Exit() {
    busy_.store(sends_ << 1, std::memory_order_release);
    // A plain load: Close does not rely on this wake-up alone (it polls as well).
    if (waiting_.load(std::memory_order_relaxed)) [[unlikely]] {
      MutexLock lock(mu_);
      cv_.NotifyAll();
    }
  }

  // Dump side: sends that start from now on wait for Open; returns once a send that started
  // before (it may have missed the fence) is over.
  void Close() {
    closed_.store(true, std::memory_order_seq_cst);
    const std::uint64_t running = busy_.load(std::memory_order_seq_cst);
    if ((running & 1) == 0) return;
    MutexLock lock(mu_);
    waiting_.store(true, std::memory_order_relaxed);
    while (busy_.load(std::memory_order_acquire) == running) {
      cv_.WaitFor(mu_, std::chrono::milliseconds(1));
    }
    waiting_.store(false, std::memory_order_relaxed);
  }

  // Dump side: lets the sends go on.
  void Open() {
    MutexLock lock(mu_);
    closed_.store(false, std::memory_order_seq_cst);
    cv_.NotifyAll();
  }

 private:
  std::atomic<bool> closed_{false};
  // The send side's word: (sends << 1) | 1 while a send runs, sends << 1 after.
  std::atomic<std::uint64_t> busy_{0};
  std::uint64_t sends_ = 0;  // written by the running send only
  std::atomic<bool> waiting_{false};
  Mutex mu_;
  CondVar cv_;
};

}  // namespace plexus::cluster::cluster_internal
