// Epoch-based reclamation for the cache's lock-free read path.
//
// A reader brackets its look-up with an EpochGuard: it announces the global epoch it saw, reads
// pointers it loaded from shared structures, takes the references it wants to keep, and leaves.
// A writer that unlinks an object (a cache entry, a retired table) does not free it at once: it
// stamps it with Current() and keeps it until SafeToFree(stamp) holds, which is once the global
// epoch has moved two steps past the stamp. The epoch moves a step only when every reader inside
// a guard has announced the current epoch (TryAdvance), so two steps past the stamp no reader can
// still be inside a guard that started before the unlink.
//
// Readers never wait and never write a shared line: a guard stores the reader's own slot twice
// (announce, leave); nesting is counted in a thread-local and costs nothing. The writer's side
// (TryAdvance, NoReaderInside) reads every registered reader's slot, a cache miss for each
// reader that read lately, so its cost grows with the threads that read: writers call
// TryAdvance once per batch of retired objects as large as the number of reader threads
// (LiveReaders), and NoReaderInside answers without a scan once there are more than a few.
//
// Ordering: the announce store, the readers' loads of the shared pointers, the writers' unlink
// stores and TryAdvance's scan are all sequentially consistent: either the scan sees a reader's
// announcement, or that reader's loads see the unlink (the store-load pattern needs the single
// total order; on x86 the seq_cst loads are plain loads, the announce an xchg).
//
// Thread safety: thread-safe. Reader slots are per thread, registered on a thread's first guard
// and handed back (for another thread to reuse) when the thread exits. The domain is
// process-wide and never destroyed.

#pragma once

#include <atomic>
#include <cstdint>

namespace plexus::bus_internal {

class EpochDomain {
 public:
  // The process-wide domain.
  static EpochDomain& Get() noexcept { return instance_; }

  // The epoch to stamp an object unlinked just before this call with.
  std::uint64_t Current() const noexcept { return epoch_.load(std::memory_order_seq_cst); }
  // Whether an object stamped `stamp` can no longer be reached by any reader. Advances the
  // epoch if it can.
  bool SafeToFree(std::uint64_t stamp) noexcept;
  // Advances the epoch by one if every reader inside a guard has announced the current one.
  // Returns the epoch after the attempt.
  std::uint64_t TryAdvance() noexcept;
  // Whether no reader is inside a guard now. Called by a writer just after it unlinked an
  // object (a sequentially consistent store): true means every reader that could have loaded
  // the object has left its guard, with whatever references it took, so the writer may let the
  // object go (or hand its reference on) at once, without stamping it. Stops at the first
  // reader inside a guard (see "Ordering" above: either this scan sees a reader's announcement,
  // or that reader's loads see the unlink; a slot read as 0 was last written by a leave, a
  // release store that follows every reference its reader took). With more than
  // kMaxScannedReaders reader threads it does not scan and answers false ("maybe"), which is
  // always safe: the writer then stamps the object as usual. A scan per write that reads a
  // line per reader thread would make every write slower with each thread that reads.
  bool NoReaderInside() const noexcept;
  static constexpr std::uint32_t kMaxScannedReaders = 8;

  // Threads that hold a reader slot now (took one with their first guard and have not exited).
  // A count kept as threads come and go, not by a scan.
  std::uint32_t LiveReaders() const noexcept {
    return live_readers_.load(std::memory_order_relaxed);
  }

  struct Slot {
    // 0: not inside a guard; otherwise the epoch the reader announced.
    alignas(64) std::atomic<std::uint64_t> announced{0};
    std::atomic<bool> in_use{false};
    Slot* next = nullptr;  // immutable once the slot is linked
  };

  // This thread's slot (registered on first use).
  static Slot& ThisThread() noexcept;

 private:
  constexpr EpochDomain() = default;
  Slot* Acquire() noexcept;
  friend struct SlotReturn;

  // Constant-initialized and trivially destructible: never torn down, so threads that exit
  // after static destruction still hand their slot back; and reached without a guard check.
  static EpochDomain instance_;

  std::atomic<std::uint64_t> epoch_{1};
  std::atomic<Slot*> slots_{nullptr};
  std::atomic<std::uint32_t> live_readers_{0};
};

// A thread's slot and how deep its guards are nested. Plain data, constant-initialized, so a
// guard reaches it with one thread-pointer-relative access (no TLS wrapper, no init check);
// the slot goes back to the domain through a separate thread_local registered with the slot.
struct EpochReader {
  EpochDomain::Slot* slot = nullptr;
  std::uint32_t depth = 0;
};
extern constinit thread_local EpochReader tl_epoch_reader
    __attribute__((tls_model("initial-exec")));

// A read-side section: objects loaded inside it stay allocated until it ends. Inline: it is
// most of a cache read's fixed cost.
class EpochGuard {
 public:
  // (The thread_local is named at each use rather than bound to a reference: with GCC 12's
  // UndefinedBehaviorSanitizer, the reference to this initial-exec thread_local was reported as
  // null where uninstrumented builds read it correctly.)
  EpochGuard() noexcept {
    if (tl_epoch_reader.depth++ != 0) return;
    EpochDomain::Slot* slot = tl_epoch_reader.slot;
    if (slot == nullptr) [[unlikely]] {
      slot = &EpochDomain::ThisThread();
    }
    // Announce before loading anything the guard protects (see "Ordering" above).
    slot->announced.store(EpochDomain::Get().Current(), std::memory_order_seq_cst);
  }
  ~EpochGuard() {
    if (--tl_epoch_reader.depth != 0) return;
    tl_epoch_reader.slot->announced.store(0, std::memory_order_release);
  }
  EpochGuard(const EpochGuard&) = delete;
  EpochGuard& operator=(const EpochGuard&) = delete;
};

}  // namespace plexus::bus_internal
