// ResyncGate orders one bridged topic's live frames of a node against a resync of that node, so
// that a message crossing both ways is delivered once, and a dump never puts an older snapshot
// back over a newer one that arrived live.
//
// Two threads meet here. The live thread (libnats' delivery thread of the topic's subscription:
// one thread, its callbacks never overlap) publishes the frames it receives. The resync thread
// (the bridge's membership thread: one resync at a time) installs a node's dump. While a node is
// resyncing, its live frames are held in the gate instead of being published. Once the dump has
// come, the resync thread publishes the held frames sent before the dump was taken (numbered
// below its watermark), installs the dump, and releases the rest in arrival order; live
// publishing of that node resumes only when nothing is held any more. So a node's messages
// reach the local topic in one order: what was published live before the resync, what was sent
// before the dump, the dump (only what the cache lacks), and what was sent after it.
//
// Begin does not return while a live publish that started before it is still running (it may
// not have seen the mark): the dump is compared with a cache that holds what that publish
// carried. The live side pays one sequentially consistent store and one load per frame (a
// Dekker pair against Begin's store of the mark, sync/internal/flag_pair.h), then a release store
// and a relaxed load when its publish ends; it takes the gate's mutex only for frames of the node
// being resynced, and to wake a Begin that waits for it. No user code runs under the gate's mutex:
// the caller publishes, the gate only holds and hands out.
//
// Usage, live thread:
//   if (gate.Hold(node, seq, frame)) return;   // kept for the resync to release
//   ... publish frame ...
//   gate.EndLive();
// Resync thread:
//   gate.Begin(node);        // before the dump is asked for
//   ... fetch the dump ...
//   while (gate.TakeBelow(watermark, batch)) { publish batch in order; batch.clear(); }
//   ... install the dump ...
//   while (gate.TakeOrEnd(batch)) { release batch in order; batch.clear(); }
//
// Thread safety: Hold and EndLive are called by one live thread; Begin, TakeBelow and TakeOrEnd
// by one resync thread; the two may run at the same time. Every Begin must be followed by
// TakeOrEnd until it returns false, on every path (a failed resync releases what it held as
// live frames), before the next Begin. Node key 0 means no node.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "plexus/sync/cond_var.h"
#include "plexus/sync/internal/flag_pair.h"
#include "plexus/sync/mutex.h"

namespace plexus::cluster::cluster_internal {

template <class Frame>
class ResyncGate {
 public:
  struct Held {
    std::uint64_t seq = 0;
    Frame frame;
  };

  ResyncGate() = default;
  ResyncGate(const ResyncGate&) = delete;
  ResyncGate& operator=(const ResyncGate&) = delete;

  // Live thread. If `node` is resyncing, keeps (seq, frame) and returns true (the frame was
  // moved from). Otherwise returns false, with a live publish marked as running: the caller
  // publishes, then calls EndLive.
  bool Hold(std::uint64_t node, std::uint64_t seq, Frame& frame) {
    for (;;) {
      const std::uint64_t resyncing = resyncing_.Enter();
      if (resyncing == 0 || resyncing != node) [[likely]] {
        return false;
      }
      resyncing_.Exit();
      MutexLock lock(mu_);
      // Checked again under the lock: TakeOrEnd ends the resync under it when nothing is held,
      // so a frame is either held before that or published after it, never in between.
      if (resyncing_.Load(std::memory_order_relaxed) == node) {
        held_.push_back(Held{seq, std::move(frame)});
        held_total_.fetch_add(1, std::memory_order_relaxed);
        return true;
      }
    }
  }

  // Live thread: the publish Hold let through has finished.
  void EndLive() { resyncing_.Exit(); }

  // Resync thread: holds `node`'s live frames from now on, and returns once a live publish
  // that may have missed the mark has finished. Only the publish running now may have missed
  // it: the live thread's next ones see it.
  void Begin(std::uint64_t node) { resyncing_.Raise(node); }

  // Resync thread: appends what is held to `out` (arrival order) and returns true; when
  // nothing is held, ends the resync (live publishing of the node resumes) and returns false.
  // Release `out` before calling again, so nothing is published ahead of it.
  bool TakeOrEnd(std::vector<Held>& out) {
    MutexLock lock(mu_);
    if (held_.empty()) {
      resyncing_.Store(0);
      return false;
    }
    if (out.empty()) {
      out.swap(held_);
    } else {
      for (Held& h : held_) out.push_back(std::move(h));
      held_.clear();
    }
    return true;
  }

  // Resync thread: moves to `out` the held frames at the front numbered below `watermark`
  // (arrival order) and returns whether there were any; the resync goes on. A node's frames
  // arrive in the order they were numbered, so these are the ones sent before its dump was
  // taken: released ahead of the dump, they are delivered rather than dropped.
  bool TakeBelow(std::uint64_t watermark, std::vector<Held>& out) {
    MutexLock lock(mu_);
    std::size_t n = 0;
    while (n < held_.size() && held_[n].seq < watermark) ++n;
    if (n == 0) return false;
    for (std::size_t i = 0; i < n; ++i) out.push_back(std::move(held_[i]));
    held_.erase(held_.begin(), held_.begin() + static_cast<std::ptrdiff_t>(n));
    return true;
  }

  // Whether a resync is running (for tests and assertions).
  bool Resyncing() const noexcept { return resyncing_.Load(std::memory_order_acquire) != 0; }

  // Frames held since construction.
  std::uint64_t HeldTotal() const noexcept { return held_total_.load(std::memory_order_relaxed); }

 private:
  Mutex mu_;
  CondVar cv_;  // Begin waits here for the running live publish
  // The node whose frames are held (0: none) and the live thread's run word.
  sync_internal::FlagPair<std::uint64_t> resyncing_{mu_, cv_};
  std::atomic<std::uint64_t> held_total_{0};
  std::vector<Held> held_ PLEXUS_GUARDED_BY(mu_);
};

}  // namespace plexus::cluster::cluster_internal
