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
// against Close's store, sync/internal/flag_pair.h), then a release store and a relaxed load;
// it takes the mutex only while a dump is being taken.
//
// Thread safety: Enter and Exit are called by the topic's sends, which the topic's fan-out
// runs one at a time (a send's word is written by one thread at a time, ordered by the topic's
// lock); Close and Open by one dump at a time. The two sides may run at the same time.

#pragma once

#include <atomic>

#include "plexus/sync/cond_var.h"
#include "plexus/sync/internal/flag_pair.h"
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
      if (!closed_.Enter()) [[likely]] {
        return;
      }
      closed_.Exit();
      MutexLock lock(mu_);
      while (closed_.Load(std::memory_order_relaxed)) cv_.Wait(mu_);
    }
  }

  // Send side: the send is over.
  void Exit() { closed_.Exit(); }

  // Dump side: sends that start from now on wait for Open; returns once a send that started
  // before (it may have missed the fence) is over.
  void Close() { closed_.Raise(true); }

  // Dump side: lets the sends go on.
  void Open() {
    MutexLock lock(mu_);
    closed_.Store(false);
    cv_.NotifyAll();
  }

 private:
  Mutex mu_;
  CondVar cv_;  // sends wait here for Open, Close for the running send
  // The dump's flag and the sends' run word.
  sync_internal::FlagPair<bool> closed_{mu_, cv_};
};

}  // namespace plexus::cluster::cluster_internal
