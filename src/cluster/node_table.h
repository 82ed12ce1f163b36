// NodeTable keeps one 64-bit value per node (by a node id's 48-bit key) for the bridge's receive
// path, which touches it once per frame: it counts the frames accepted per origin node and reads
// each node's resync watermark. Both must cost an atomic operation, not a lock and a map lookup.
//
// A fixed open-addressed table of kSlots keys claimed once (compare-and-swap on an empty slot)
// and never released: a cluster has a handful of nodes, and a node that left and returns counts
// on where it left off. Should more than kSlots nodes ever be seen, the rest go to a map under a
// mutex (correct, slower).
//
// Thread safety: thread-safe. Add, Store and Get may run concurrently from any threads; Get sees
// every Add or Store that happened before it (a Store publishes with release ordering, so what
// its writer did before it is visible to the thread whose Get returns the stored value).

#pragma once

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <map>

#include "plexus/sync/mutex.h"

namespace plexus::cluster::cluster_internal {

class NodeTable {
 public:
  static constexpr std::size_t kSlots = 64;

  // Adds one to `key`'s value; key 0 (no node) is ignored.
  void Add(std::uint64_t key) {
    if (key == 0) return;
    if (Slot* slot = Claim(key)) {
      slot->value.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    MutexLock lock(overflow_mu_);
    ++overflow_[key];
  }

  // Sets `key`'s value (0 is as good as never set).
  void Store(std::uint64_t key, std::uint64_t value) {
    if (key == 0) return;
    if (Slot* slot = Claim(key)) {
      slot->value.store(value, std::memory_order_release);
      return;
    }
    MutexLock lock(overflow_mu_);
    overflow_[key] = value;
  }

  // `key`'s value; 0 if it was never added to or stored.

  std::uint64_t Get(std::uint64_t key) const {
    if (key == 0) return 0;
    for (std::size_t i = 0, at = Hash(key); i < kSlots; ++i, at = (at + 1) % kSlots) {
      const Slot& slot = slots_[at];
      const std::uint64_t seen = slot.key.load(std::memory_order_acquire);
      if (seen == key) return slot.value.load(std::memory_order_acquire);
      if (seen == 0) return 0;  // slots are claimed in probe order: it was never added
    }
    MutexLock lock(overflow_mu_);
    const auto it = overflow_.find(key);
    return it == overflow_.end() ? 0 : it->second;
  }

 private:
  struct Slot {
    std::atomic<std::uint64_t> key{0};  // 0: free; claimed once, never released
    std::atomic<std::uint64_t> value{0};
  };

  // The slot holding `key`, claiming a free one on its probe path; null when the table is full.
  Slot* Claim(std::uint64_t key) noexcept {
    for (std::size_t i = 0, at = Hash(key); i < kSlots; ++i, at = (at + 1) % kSlots) {
      Slot& slot = slots_[at];
      std::uint64_t seen = slot.key.load(std::memory_order_acquire);
      if (seen == 0 && slot.key.compare_exchange_strong(seen, key, std::memory_order_acq_rel)) {
        return &slot;
      }
      if (seen == key) return &slot;  // its own, or claimed for it by a racing thread
    }
    return nullptr;
  }

  static std::size_t Hash(std::uint64_t key) noexcept {
    return static_cast<std::size_t>((key * 0x9E3779B97F4A7C15ull) >> 58) % kSlots;
  }

  std::array<Slot, kSlots> slots_{};
  mutable Mutex overflow_mu_;
  std::map<std::uint64_t, std::uint64_t> overflow_ PLEXUS_GUARDED_BY(overflow_mu_);
};

}  // namespace plexus::cluster::cluster_internal
