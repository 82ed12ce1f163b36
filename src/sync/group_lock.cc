// GroupLock: the lock word protocol, chained locks, destruction, replacement. See the header
// for the contract; this file explains the mechanisms.
//
// The lock word packs [refs:32][waiters:29][parked:1][destroyed:1][locked:1] into one 64-bit
// atomic, so that "no reference, no holder, no waiter" is a single observable value (0). Whichever
// read-modify-write takes the word to 0 destroys the group; nothing else can, so a holder or
// a waiter can never see the group die under it, and holding the lock pins the group without
// a reference-count change per acquisition (PJLIB adds and drops a reference on every
// acquire/release).
//
// A waiter registers itself (waiters += 1) before it spins or sleeps, which pins the group
// and tells releasers to wake someone. Acquiring converts the registration into the locked
// bit in one CAS. Threads sleep on a process-wide parking lot (parking_lot.h) rather than on
// the word, so a wake never touches memory that may already have been freed.
//
// Chains are immutable snapshots swapped under the group's own lock. A thread walking a
// chain towards the own lock is registered as a waiter the whole time, so a retired snapshot
// is freed only when no thread is registered; a walker that finds the chain changed once it
// holds the own lock lets go of what it took from the old snapshot and walks the new one.
//
// Chains between groups never form a cycle: an acquisition would walk it forever. Chain
// refuses a group from which this one is reachable; the check and every chain swap are
// serialized by one process-wide mutex, so the walk of other groups' chains never meets a
// freed snapshot and two racing Chain calls cannot close a cycle between them.

#include "plexus/sync/group_lock.h"

#include <pthread.h>

#include <algorithm>
#include <cstdio>
#include <deque>
#include <system_error>

#include "group_lock_registry.h"
#include "plexus/core/internal/cpu_relax.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/sync/internal/parking_lot.h"

namespace plexus {

using sync_internal::ChainEntry;
using sync_internal::ChainSnapshot;

namespace sync_internal {

const ChainedLockOps* GroupLockChainedOps() noexcept {
  static constexpr ChainedLockOps ops{
      [](void* l, SourceLocation where)
          PLEXUS_NO_THREAD_SAFETY_ANALYSIS { static_cast<GroupLock*>(l)->Acquire(where); },
      [](void* l, SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
        return static_cast<GroupLock*>(l)->TryAcquire(where);
      },
      [](void* l) PLEXUS_NO_THREAD_SAFETY_ANALYSIS { (void)static_cast<GroupLock*>(l)->Release(); },
      [](void* l) { static_cast<GroupLock*>(l)->AddRef(); },
      [](void* l) { (void)static_cast<GroupLock*>(l)->DecRef(); },
      true};
  return &ops;
}

}  // namespace sync_internal

// Small helpers used only in this file; forcing them inline keeps the chained path flat.
#define PLEXUS_HOT_INLINE [[gnu::always_inline]] inline

namespace {

// About 700 pauses (a few microseconds) of polling with backoff before a waiter sleeps.
constexpr int kSpinLimit = 16;

using core_internal::CpuRelax;

constexpr std::uint32_t RefsOf(std::uint64_t word) {
  return static_cast<std::uint32_t>(word >> 32);
}

// Destroyed groups are parked here instead of freed while reference debugging is on, so that
// a DecRef or Acquire on a destroyed group is reported instead of touching freed memory.
constexpr std::size_t kQuarantineCapacity = 4096;
std::mutex g_quarantine_mu;
std::deque<const GroupLock*>& Quarantine() {
  static auto* quarantine = new std::deque<const GroupLock*>();
  return *quarantine;
}

// Serializes chain swaps with cycle checks (see the file comment). A leaf: only atomics are
// read while it is held; snapshots are freed after it is let go.
std::mutex g_topology_mu;

constexpr const char* kCycleMessage =
    "Chain: the group lock to chain reaches this one through its chained group locks; the "
    "chain would close a cycle";

bool IsGroupEntry(const ChainEntry& entry) {
  return entry.ops == sync_internal::GroupLockChainedOps();
}

// A chained lock's own operations, without validation: a standard mutex through its native
// handle (what its lock/try_lock/unlock call), anything else through its type-erased ops.
static_assert(std::is_same_v<sync_internal::NativeMutex, pthread_mutex_t*>);

PLEXUS_HOT_INLINE void RawLock(const ChainEntry& entry, SourceLocation where) {
  if (entry.native != nullptr) {
    if (const int error = pthread_mutex_lock(entry.native); PLEXUS_UNLIKELY(error != 0)) {
      throw std::system_error(error, std::system_category(), "chained mutex lock");
    }
    return;
  }
  entry.ops->lock(entry.lock, where);
}

PLEXUS_HOT_INLINE bool RawTryLock(const ChainEntry& entry, SourceLocation where) {
  if (entry.native != nullptr) return pthread_mutex_trylock(entry.native) == 0;
  return entry.ops->try_lock(entry.lock, where);
}

PLEXUS_HOT_INLINE void RawUnlock(const ChainEntry& entry) {
  if (entry.native != nullptr) {
    (void)pthread_mutex_unlock(entry.native);
    return;
  }
  entry.ops->unlock(entry.lock);
}

// Fills in what a snapshot derives from its entries, once they are final.
void Seal(ChainSnapshot& snapshot) {
  snapshot.before_own =
      static_cast<std::size_t>(std::count_if(snapshot.entries.begin(), snapshot.entries.end(),
                                             [](const ChainEntry& e) { return e.position <= 0; }));
  snapshot.sole = snapshot.entries.size() == 1 ? &snapshot.entries.front() : nullptr;
}

}  // namespace

// -----------------------------------------------------------------------------
// Creation and destruction
// -----------------------------------------------------------------------------

GroupLock::GroupLock(const GroupLockConfig& config, SourceLocation where)
    : word_(kRef), class_{config.lock_class, where} {
  if (config.handler != nullptr) {
    first_handler_ = Handler{config.member, config.handler};  // not shared yet: no lock
  }
  sync_internal::GroupLockRegistryAccess::Register(*this);
}

GroupLock::~GroupLock() {
  sync_internal::GroupLockRegistryAccess::Unregister(*this);
}

Ref<GroupLock> GroupLock::Create(const GroupLockConfig& config, SourceLocation where) {
  return Ref<GroupLock>::Adopt(new GroupLock(config, where), where);
}

Liveness GroupLock::Finish(std::uint64_t final_word) const {
  if (final_word == 0) {
    DestroyNow();
  } else {
    FreeMemory();  // destroyed earlier (forced or replaced): only the memory is left
  }
  return Liveness::kGone;
}

void GroupLock::DestroyNow() const {
  // Nothing refers to the group any more; mark it so that a handler that tries to resurrect
  // it (AddRef) is reported instead of re-entering destruction (PJLIB runs every handler again).
  word_.store(kDestroyed, std::memory_order_relaxed);
  for (const Handler& handler : TakeHandlers()) {
    core_internal::RunCatching([&] { handler.fn(handler.member); },
                               [] { return std::string("group lock destroy handler"); },
                               class_.site);
  }
  DeleteSnapshot(chain_.exchange(nullptr, std::memory_order_relaxed));
  FreeRetiredChains();
  FreeMemory();
}

void GroupLock::FreeMemory() const {
  if (core_internal::RefDebugEver()) core_internal::RefTrackDestroyed(this);
  if (!core_internal::RefDebugOn()) {
    DeleteSnapshot(chain_.exchange(nullptr, std::memory_order_relaxed));
    FreeRetiredChains();
    delete this;
    return;
  }
  word_.store(kDestroyed, std::memory_order_relaxed);
  const GroupLock* evicted = nullptr;
  {
    std::lock_guard lock(g_quarantine_mu);
    Quarantine().push_back(this);
    if (Quarantine().size() > kQuarantineCapacity) {
      evicted = Quarantine().front();
      Quarantine().pop_front();
    }
  }
  if (evicted != nullptr) {
    DeleteSnapshot(evicted->chain_.exchange(nullptr, std::memory_order_relaxed));
    evicted->FreeRetiredChains();
    delete evicted;
  }
}

void GroupLock::DeleteSnapshot(ChainSnapshot* snapshot) {
  if (snapshot == nullptr) return;
  for (const ChainEntry& entry : snapshot->entries) {
    if (entry.ops->drop != nullptr) entry.ops->drop(entry.lock);
  }
  delete snapshot;
}

void GroupLock::FreeRetiredChains() const {
  std::vector<ChainSnapshot*> retired;
  {
    MutexLock lock(admin_mu_);
    retired.swap(retired_);
  }
  for (ChainSnapshot* snapshot : retired) DeleteSnapshot(snapshot);
}

std::vector<GroupLock::Handler> GroupLock::TakeHandlers() const {
  std::vector<Handler> out;
  MutexLock lock(admin_mu_);
  if (first_handler_.fn == nullptr) return out;
  out.reserve(1 + more_handlers_.size());
  out.push_back(first_handler_);
  out.insert(out.end(), more_handlers_.begin(), more_handlers_.end());
  first_handler_ = Handler{nullptr, nullptr};
  more_handlers_.clear();
  return out;
}

// -----------------------------------------------------------------------------
// The own lock
// -----------------------------------------------------------------------------

Liveness GroupLock::ReleaseOwnLock(bool stay_pinned_while_waking) {
  // Clear locked and parked together; whoever was parked is woken below and re-parks if it
  // loses the race for the lock. Staying pinned trades the locked bit for a waiter
  // registration in the same step: the caller still needs the group (and its chain snapshot)
  // after letting go of the own lock.
  const std::uint64_t add = stay_pinned_while_waking ? kWaiter : 0;
  std::uint64_t w = word_.load(std::memory_order_relaxed);
  std::uint64_t now = (w & ~(kLocked | kParked)) + add;
  if (sync_internal::ProcessIsSingleThreaded()) {
    word_.store(now, std::memory_order_relaxed);
  } else {
    while (!word_.compare_exchange_weak(w, now, std::memory_order_acq_rel,
                                        std::memory_order_relaxed)) {
      now = (w & ~(kLocked | kParked)) + add;
    }
  }
  // From here on `this` may be freed by another thread unless `now` says we finish it; the
  // wake-up touches only the parking lot.
  if ((w & kParked) != 0) UnparkAll(sync_internal::ParkingSlotFor(this));
  if ((now & ~kDestroyed) == 0) return Finish(now);
  return Liveness::kAlive;
}

PLEXUS_HOT_INLINE std::uint64_t GroupLock::AddToWord(std::uint64_t delta) const {
  if (sync_internal::ProcessIsSingleThreaded()) {
    const std::uint64_t w = word_.load(std::memory_order_relaxed);
    word_.store(w + delta, std::memory_order_relaxed);
    return w;
  }
  return word_.fetch_add(delta, std::memory_order_seq_cst);
}

PLEXUS_HOT_INLINE Liveness GroupLock::Unpin() const {
  const std::uint64_t now = AddToWord(-kWaiter) - kWaiter;
  if ((now & ~kDestroyed) == 0) return Finish(now);
  return Liveness::kAlive;
}

PLEXUS_HOT_INLINE bool GroupLock::RegisterWaiter(GroupLock*& forward, bool& destroyed) {
  const std::uint64_t before = AddToWord(kWaiter);
  if (PLEXUS_LIKELY((before & kDestroyed) == 0 && RefsOf(before) != 0)) return true;
  destroyed = (before & kDestroyed) != 0;
  forward = (before & kDestroyed) != 0 ? replaced_by_.load(std::memory_order_acquire) : nullptr;
  if ((before & ~kDestroyed) != 0) {
    (void)Unpin();
  } else {
    word_.fetch_sub(kWaiter, std::memory_order_relaxed);  // already dead: never finish twice
  }
  return false;
}

void GroupLock::LetGoOwnAndBefore(const ChainSnapshot* chain, std::size_t before_own) {
  if (sync_internal::LockOrderEver()) LockOrderNoteRelease(this);
  (void)ReleaseOwnLock(true);
  if (chain != nullptr) UnlockEntries(*chain, 0, before_own);
}

void GroupLock::AbandonOwnership(const ChainSnapshot* chain, std::size_t before_own,
                                 std::size_t after_own_taken) {
  if (chain != nullptr) UnlockEntries(*chain, before_own, before_own + after_own_taken);
  depth_ = 0;
  owner_.store(0, std::memory_order_relaxed);
  LetGoOwnAndBefore(chain, before_own);
  (void)Unpin();
}

bool GroupLock::LockOwnAsWaiter(const ChainSnapshot* walked) {
  int spins = 0;
  for (;;) {
    // A walker that holds locks of a snapshot that is no longer current must not keep
    // waiting: the holder may be chaining one of those very locks again and be blocked on
    // it (unchain e, another walker takes e, chain e again while held). Backing off lets
    // the walker give its locks back and walk the current chain.
    if (chain_.load(std::memory_order_seq_cst) != walked) return false;
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    if ((w & kLocked) == 0) {
      if (sync_internal::ProcessIsSingleThreaded()) {
        word_.store((w - kWaiter) | kLocked, std::memory_order_relaxed);
        return true;
      }
      if (word_.compare_exchange_weak(w, (w - kWaiter) | kLocked, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
      continue;
    }
    if (spins < kSpinLimit) {
      // Exponential backoff: a waiter that polls the word constantly steals its cache line
      // from the holder on every poll (measured: 3x slower under two-thread contention).
      const int pauses = 1 << (spins < 6 ? spins : 6);
      ++spins;
      for (int i = 0; i < pauses; ++i) CpuRelax();
      continue;
    }
    // Announce that someone may sleep, so the holder's release wakes the slot.
    if ((w & kParked) == 0 &&
        !word_.compare_exchange_weak(w, w | kParked, std::memory_order_relaxed,
                                     std::memory_order_relaxed)) {
      continue;
    }
    sync_internal::ParkingSlot& slot = sync_internal::ParkingSlotFor(this);
    const std::uint32_t ticket = slot.sequence.load(std::memory_order_acquire);
    w = word_.load(std::memory_order_acquire);
    if ((w & kLocked) == 0 || (w & kParked) == 0) continue;  // released meanwhile
    // PublishChain wakes the slot after swapping the chain; a change it made before this
    // ticket was read is seen here.
    if (chain_.load(std::memory_order_seq_cst) != walked) return false;
    slot.sequence.wait(ticket, std::memory_order_acquire);
  }
}

PLEXUS_HOT_INLINE bool GroupLock::TryLockOwnAsWaiter() {
  std::uint64_t w = word_.load(std::memory_order_relaxed);
  while ((w & kLocked) == 0) {
    if (word_.compare_exchange_weak(w, (w - kWaiter) | kLocked, std::memory_order_acquire,
                                    std::memory_order_relaxed)) {
      return true;
    }
  }
  return false;
}

// -----------------------------------------------------------------------------
// Chain entries
// -----------------------------------------------------------------------------

PLEXUS_HOT_INLINE void GroupLock::LockEntry(const ChainEntry& entry, SourceLocation where) {
  const bool validate = !entry.ops->self_validating && sync_internal::LockOrderOn();
  if (validate) LockOrderGuardAcquire(entry.lock, entry.cls, where);
  try {
    RawLock(entry, where);
  } catch (...) {
    if (validate) LockOrderCancelAcquire(entry.lock);
    throw;
  }
}

PLEXUS_HOT_INLINE bool GroupLock::TryLockEntry(const ChainEntry& entry, SourceLocation where) {
  if (!RawTryLock(entry, where)) return false;
  if (!entry.ops->self_validating && sync_internal::LockOrderOn()) {
    LockOrderNoteTryAcquired(entry.lock, entry.cls, where);
  }
  return true;
}

PLEXUS_HOT_INLINE void GroupLock::UnlockEntry(const ChainEntry& entry) {
  RawUnlock(entry);
  if (!entry.ops->self_validating && sync_internal::LockOrderEver()) {
    LockOrderNoteRelease(entry.lock);
  }
}

PLEXUS_HOT_INLINE void GroupLock::UnlockEntries(const ChainSnapshot& chain, std::size_t from,
                                                std::size_t to) {
  for (std::size_t i = to; i > from; --i) UnlockEntry(chain.entries[i - 1]);
}

// -----------------------------------------------------------------------------
// Acquire / TryAcquire / Release
// -----------------------------------------------------------------------------

GroupLock* GroupLock::ForwardTarget(SourceLocation where, const char* operation) const {
  if ((word_.load(std::memory_order_acquire) & kDestroyed) == 0) return nullptr;
  if (GroupLock* target = replaced_by_.load(std::memory_order_acquire)) return target;
  ReportMisuse(std::string(operation) + " on a destroyed group lock", where);
  return nullptr;
}

void GroupLock::AcquireRecursive(SourceLocation where) {
  ChainSnapshot* chain = chain_.load(std::memory_order_relaxed);  // stable: we hold the group
  const std::size_t n = chain != nullptr ? chain->entries.size() : 0;
  const std::size_t before_own = chain != nullptr ? chain->before_own : 0;
  std::size_t i = 0;
  bool own = false;
  try {
    for (; i < before_own; ++i) LockEntry(chain->entries[i], where);
    if (sync_internal::LockOrderOn()) LockOrderGuardAcquire(this, class_, where);
    own = true;
    for (; i < n; ++i) LockEntry(chain->entries[i], where);
  } catch (...) {
    // A refused or failing chained lock: this level leaves every lock as it found it.
    if (own) {
      UnlockEntries(*chain, before_own, i);
      if (sync_internal::LockOrderEver()) LockOrderNoteRelease(this);
      i = before_own;
    }
    if (chain != nullptr) UnlockEntries(*chain, 0, i);
    throw;
  }
  ++depth_;
}

bool GroupLock::TryAcquireRecursive(SourceLocation where) {
  ChainSnapshot* chain = chain_.load(std::memory_order_relaxed);  // stable: we hold the group
  const std::size_t n = chain != nullptr ? chain->entries.size() : 0;
  const std::size_t before_own = chain != nullptr ? chain->before_own : 0;
  std::size_t i = 0;
  for (; i < before_own; ++i) {
    if (!TryLockEntry(chain->entries[i], where)) {
      UnlockEntries(*chain, 0, i);
      return false;
    }
  }
  if (sync_internal::LockOrderOn()) LockOrderNoteTryAcquired(this, class_, where);
  for (; i < n; ++i) {
    if (!TryLockEntry(chain->entries[i], where)) {
      UnlockEntries(*chain, before_own, i);
      if (sync_internal::LockOrderEver()) LockOrderNoteRelease(this);
      UnlockEntries(*chain, 0, before_own);
      return false;
    }
  }
  ++depth_;
  return true;
}

// Called with the own lock just taken (as a registered waiter, now converted) when the word
// says the group was destroyed or replaced meanwhile: lets go and forwards or reports.
void GroupLock::AfterLockedDestroyed(SourceLocation where) {
  (void)ReleaseOwnLock(true);
  GroupLock* target = replaced_by_.load(std::memory_order_acquire);
  (void)Unpin();  // the caller's own reference (if any) keeps the stub alive for the forward
  if (target != nullptr) {
    target->Acquire(where);
    return;
  }
  ReportMisuse("Acquire on a destroyed group lock", where);
}

void GroupLock::AcquireSlow(SourceLocation where) {
  const ThreadToken me = CurrentThreadToken();
  // Register first: from here on this thread pins the group, even before it blocks.
  GroupLock* forward = nullptr;
  bool destroyed = false;
  if (PLEXUS_UNLIKELY(!RegisterWaiter(forward, destroyed))) {
    if (forward != nullptr) return forward->Acquire(where);
    ReportMisuse(destroyed ? "Acquire on a destroyed group lock"
                           : "Acquire on a group lock with no references (destroyed or "
                             "being destroyed); hold a reference while acquiring",
                 where);
    return;
  }
  for (;;) {
    ChainSnapshot* chain = chain_.load(std::memory_order_seq_cst);
    const std::size_t before_own = chain != nullptr ? chain->before_own : 0;
    std::size_t taken = 0;
    bool validated = false;
    bool stale = false;
    try {
      for (; taken < before_own; ++taken) {
        // Holding locks of a snapshot that is no longer current, do not block on the next:
        // its holder may be the thread that changed the chain, about to block on ours.
        if (taken > 0 && chain_.load(std::memory_order_seq_cst) != chain) {
          stale = true;
          break;
        }
        LockEntry(chain->entries[taken], where);
      }
      if (!stale && sync_internal::LockOrderOn()) {
        LockOrderGuardAcquire(this, class_, where);
        validated = true;
      }
    } catch (...) {
      if (chain != nullptr) UnlockEntries(*chain, 0, taken);
      (void)Unpin();
      throw;
    }
    if (stale) {
      UnlockEntries(*chain, 0, taken);
      continue;
    }
    if (!TryLockOwnAsWaiter() && !LockOwnAsWaiter(chain)) {
      // Stale snapshot while waiting (see LockOwnAsWaiter): still registered, so `chain` is
      // alive; give back what was taken from it and walk again.
      if (validated) LockOrderCancelAcquire(this);
      if (chain != nullptr) UnlockEntries(*chain, 0, before_own);
      continue;
    }
    if (PLEXUS_UNLIKELY(chain_.load(std::memory_order_relaxed) != chain)) {
      // The chain changed while this thread walked the old one: give back exactly what was
      // taken from the old snapshot (still alive: we are registered again) and walk again.
      LetGoOwnAndBefore(chain, before_own);
      continue;
    }
    if (PLEXUS_UNLIKELY((word_.load(std::memory_order_relaxed) & kDestroyed) != 0)) {
      if (sync_internal::LockOrderEver()) LockOrderNoteRelease(this);
      if (chain != nullptr) UnlockEntries(*chain, 0, before_own);
      return AfterLockedDestroyed(where);
    }
    owner_.store(me, std::memory_order_relaxed);
    depth_ = 1;
    validated_ = validated;
    if (chain != nullptr) {
      std::size_t i = before_own;
      try {
        for (; i < chain->entries.size(); ++i) LockEntry(chain->entries[i], where);
      } catch (...) {
        AbandonOwnership(chain, before_own, i - before_own);
        throw;
      }
    }
    return;
  }
}

// The chained fast path: the own lock is taken first (one CAS, no waiter registration: holding
// it pins the group and its chain snapshot, which changes only under the own lock), then the
// locks chained before it are only tried, since taking them after the own lock is out of
// order and blocking there could deadlock against a walker that holds one of them and waits
// for ours. An uncontended chained pair so costs the word's CAS at each end plus the chained
// locks' own operations, against a registration, a CAS, a CAS and an unpin on the walk.
//
// A chain of exactly one standard mutex (the common shape: one external lock) is taken here
// in straight-line code while validation is off, through the mutex's native handle; every
// other chain is walked by TakeChainWalk. A mutex chained before the own lock is still only
// tried: taking it before the own lock would need a waiter registration to pin the snapshot,
// the RMW this path exists to save. One chained after it is taken in order, blocking.
bool GroupLock::TakeChainHoldingOwn(SourceLocation where) {
  const ChainSnapshot* chain = chain_.load(std::memory_order_relaxed);
  const ChainEntry* sole = chain->sole;
  if (PLEXUS_UNLIKELY(sole == nullptr || sole->native == nullptr || sync_internal::LockOrderOn())) {
    return TakeChainWalk(where);
  }
  if (PLEXUS_LIKELY(chain->before_own != 0)) {
    if (PLEXUS_LIKELY(pthread_mutex_trylock(sole->native) == 0)) return true;
    LetGoOwnAfterBusyChain();
    return false;
  }
  if (const int error = pthread_mutex_lock(sole->native); PLEXUS_UNLIKELY(error != 0)) {
    LetGoOwnAfterBusyChain();
    throw std::system_error(error, std::system_category(), "chained mutex lock");
  }
  return true;
}

void GroupLock::LetGoOwnAfterBusyChain() {
  depth_ = 0;
  owner_.store(0, std::memory_order_relaxed);
  (void)ReleaseOwnLock(false);  // the caller's reference keeps the group alive
}

bool GroupLock::TakeChainWalk(SourceLocation where) {
  const ChainSnapshot* chain = chain_.load(std::memory_order_relaxed);
  const std::size_t before_own = chain->before_own;
  std::size_t i = 0;
  try {
    for (; i < before_own; ++i) {
      if (!TryLockEntry(chain->entries[i], where)) break;
    }
    if (i == before_own) {
      for (; i < chain->entries.size(); ++i) LockEntry(chain->entries[i], where);
      return true;
    }
  } catch (...) {
    UnlockEntries(*chain, 0, i);
    LetGoOwnAfterBusyChain();
    throw;
  }
  UnlockEntries(*chain, 0, i);
  LetGoOwnAfterBusyChain();
  return false;
}

bool GroupLock::TryAcquire(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  const ThreadToken me = CurrentThreadToken();
  if (owner_.load(std::memory_order_relaxed) == me) return TryAcquireRecursive(where);
  if (PLEXUS_LIKELY(!NeedsSlowPath())) {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    for (;;) {
      if ((w & kDestroyed) != 0 || w < kRef) break;  // misuse or forwarding: slow path
      if ((w & kLocked) != 0) return false;
      if (word_.compare_exchange_weak(w, w | kLocked, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        if (chain_.load(std::memory_order_relaxed) == nullptr) {
          owner_.store(me, std::memory_order_relaxed);
          depth_ = 1;
          validated_ = false;
          return true;
        }
        (void)ReleaseOwnLock(false);
        break;
      }
    }
  }
  return TryAcquireSlow(where);
}

bool GroupLock::TryAcquireSlow(SourceLocation where) {
  GroupLock* forward = nullptr;
  bool destroyed = false;
  if (PLEXUS_UNLIKELY(!RegisterWaiter(forward, destroyed))) {
    if (forward != nullptr) return forward->TryAcquire(where);
    ReportMisuse("TryAcquire on a destroyed group lock or one with no references", where);
    return false;
  }
  ChainSnapshot* chain = chain_.load(std::memory_order_seq_cst);
  const std::size_t n = chain != nullptr ? chain->entries.size() : 0;
  const std::size_t before_own = chain != nullptr ? chain->before_own : 0;
  std::size_t taken = 0;
  for (; taken < before_own; ++taken) {
    if (!TryLockEntry(chain->entries[taken], where)) break;
  }
  if (taken < before_own || !TryLockOwnAsWaiter()) {
    if (chain != nullptr) UnlockEntries(*chain, 0, taken);
    (void)Unpin();
    return false;
  }
  if (chain_.load(std::memory_order_relaxed) != chain ||
      (word_.load(std::memory_order_relaxed) & kDestroyed) != 0) {
    // Raced a chain change or a destruction: report "busy" rather than block. Nothing of the
    // own lock is on the validator's stack yet.
    (void)ReleaseOwnLock(true);
    if (chain != nullptr) UnlockEntries(*chain, 0, before_own);
    (void)Unpin();
    return false;
  }
  validated_ = sync_internal::LockOrderOn();
  if (validated_) LockOrderNoteTryAcquired(this, class_, where);
  owner_.store(CurrentThreadToken(), std::memory_order_relaxed);
  depth_ = 1;
  for (std::size_t i = before_own; i < n; ++i) {
    if (!TryLockEntry(chain->entries[i], where)) {
      AbandonOwnership(chain, before_own, i - before_own);
      return false;
    }
  }
  return true;
}

// The counterpart of TakeChainHoldingOwn's one-mutex path, for any hold of one level whose
// own lock was not validated (a validated one is popped by ReleaseSlow). The mutex may have
// been pushed on the validator's stack all the same (chained while held, or taken by a walk
// while validation was on), so once validation was ever on it is popped, as UnlockEntry does.
Liveness GroupLock::ReleaseChained(SourceLocation where) {
  const ChainSnapshot* chain = chain_.load(std::memory_order_relaxed);
  const ChainEntry* sole = chain->sole;
  if (PLEXUS_UNLIKELY(sole == nullptr || sole->native == nullptr)) return ReleaseSlow(where);
  // Let go of the mutex while the own lock still pins the snapshot; no pin needed.
  (void)pthread_mutex_unlock(sole->native);
  if (sync_internal::LockOrderEver()) LockOrderNoteRelease(sole->lock);
  depth_ = 0;
  owner_.store(0, std::memory_order_relaxed);
  return DropOwnLock();
}

Liveness GroupLock::ReleaseSlow(SourceLocation where) {
  if (owner_.load(std::memory_order_relaxed) != CurrentThreadToken()) {
    if ((word_.load(std::memory_order_acquire) & kDestroyed) != 0) {
      if (GroupLock* target = replaced_by_.load(std::memory_order_acquire)) {
        return target->Release(where);
      }
      if (destroyer_.load(std::memory_order_relaxed) == CurrentThreadToken()) {
        // A level the destroying thread held before Destroy let go of it (see Destroy).
        if (--owed_releases_ != 0) return Liveness::kAlive;
        destroyer_.store(0, std::memory_order_relaxed);
        return Unpin();
      }
    }
    ReportMisuse("Release of a group lock that the calling thread does not hold", where);
    return Liveness::kAlive;
  }
  ChainSnapshot* chain = chain_.load(std::memory_order_relaxed);
  const std::size_t n = chain != nullptr ? chain->entries.size() : 0;
  const std::size_t before_own = chain != nullptr ? chain->before_own : 0;
  if (chain != nullptr) UnlockEntries(*chain, before_own, n);
  if (sync_internal::LockOrderEver()) LockOrderNoteRelease(this);
  if (depth_ > 1) {
    --depth_;
    if (chain != nullptr) UnlockEntries(*chain, 0, before_own);
    return Liveness::kAlive;
  }
  depth_ = 0;
  owner_.store(0, std::memory_order_relaxed);
  // The locks chained before the own lock go while it is still held: the snapshot cannot
  // change or be freed meanwhile, so the release needs no pin (one CAS on the word, not two
  // read-modify-writes). A walker that takes one of them now waits for the own lock briefly.
  if (chain != nullptr) UnlockEntries(*chain, 0, before_own);
  return ReleaseOwnLock(false);
}

bool GroupLock::HeldByCurrentThread() const noexcept {
  if (owner_.load(std::memory_order_relaxed) == CurrentThreadToken()) return true;
  if ((word_.load(std::memory_order_acquire) & kDestroyed) != 0) {
    if (GroupLock* target = replaced_by_.load(std::memory_order_acquire)) {
      return target->HeldByCurrentThread();
    }
  }
  return false;
}

std::uint32_t GroupLock::HoldCount() const noexcept {
  return owner_.load(std::memory_order_relaxed) == CurrentThreadToken() ? depth_ : 0;
}

// -----------------------------------------------------------------------------
// References
// -----------------------------------------------------------------------------

void GroupLock::AddRefSlow(std::uint64_t previous, SourceLocation where) const {
  if ((previous & kDestroyed) != 0) {
    if (GroupLock* target = replaced_by_.load(std::memory_order_acquire)) {
      target->AddRef(where);  // the stub's count mirrors the references moved to the target
      return;
    }
  }
  word_.fetch_sub(kRef, std::memory_order_relaxed);
  if (core_internal::RefDebugOn()) core_internal::RefTrackDrop(this, nullptr, where);
  ReportMisuse((previous & kDestroyed) != 0
                   ? "AddRef on a destroyed group lock"
                   : "AddRef on a group lock that was already destroyed (no references, "
                     "holders or waiters were left)",
               where);
}

Liveness GroupLock::DecRefSlow(std::uint64_t previous, SourceLocation where) const {
  if (RefsOf(previous) == 0) {
    word_.fetch_add(kRef, std::memory_order_relaxed);
    ReportMisuse((previous & kDestroyed) != 0
                     ? "DecRef on a destroyed group lock"
                     : "DecRef on a group lock with no references left (dropped more than taken)",
                 where);
    return Liveness::kAlive;
  }
  const std::uint64_t now = previous - kRef;
  GroupLock* target =
      (previous & kDestroyed) != 0 ? replaced_by_.load(std::memory_order_acquire) : nullptr;
  // A drop forwarded while ReplaceWith is still moving the counted references over must wait
  // for them, or it could take the replacement to zero under references not yet counted there.
  if (target != nullptr) {
    while (!references_moved_.load(std::memory_order_acquire)) CpuRelax();
  }
  Liveness result = Liveness::kAlive;
  if ((now & ~kDestroyed) == 0) result = Finish(now);
  if (target != nullptr) return target->DecRef(where);
  return result;
}

std::uint32_t GroupLock::RefCount() const noexcept {
  const std::uint64_t w = word_.load(std::memory_order_relaxed);
  if ((w & kDestroyed) != 0) {
    if (GroupLock* target = replaced_by_.load(std::memory_order_acquire)) {
      return target->RefCount();
    }
  }
  return RefsOf(w);
}

std::uint32_t GroupLock::WaiterCount() const noexcept {
  return static_cast<std::uint32_t>((word_.load(std::memory_order_relaxed) & kWaiterMask) /
                                    kWaiter);
}

bool GroupLock::IsDestroyed() const noexcept {
  return (word_.load(std::memory_order_acquire) & kDestroyed) != 0;
}

// -----------------------------------------------------------------------------
// Destroy handlers
// -----------------------------------------------------------------------------

bool GroupLock::AddHandler(void* member, DestroyHandler handler, SourceLocation where) {
  if (handler == nullptr) {
    ReportMisuse("AddHandler with a null handler", where);
    return false;
  }
  if (GroupLock* target = ForwardTarget(where, "AddHandler")) {
    return target->AddHandler(member, handler, where);
  }
  const char* refusal = nullptr;
  {
    MutexLock lock(admin_mu_);
    if (IsDestroyed()) {
      refusal = "AddHandler on a destroyed group lock";
    } else if (!AppendHandler(Handler{member, handler})) {
      refusal = "AddHandler: this (member, handler) pair is already registered";
    }
  }
  if (refusal != nullptr) {
    ReportMisuse(refusal, where);
    return false;
  }
  return true;
}

bool GroupLock::AppendHandler(Handler handler) const {
  const auto same = [&](const Handler& h) {
    return h.member == handler.member && h.fn == handler.fn;
  };
  if ((first_handler_.fn != nullptr && same(first_handler_)) ||
      std::any_of(more_handlers_.begin(), more_handlers_.end(), same)) {
    return false;
  }
  if (first_handler_.fn == nullptr) {
    first_handler_ = handler;
  } else {
    more_handlers_.push_back(handler);
  }
  return true;
}

bool GroupLock::DelHandler(void* member, DestroyHandler handler, SourceLocation where) {
  if (GroupLock* target = ForwardTarget(where, "DelHandler")) {
    return target->DelHandler(member, handler, where);
  }
  MutexLock lock(admin_mu_);
  if (first_handler_.fn == nullptr) return false;
  if (first_handler_.member == member && first_handler_.fn == handler) {
    if (more_handlers_.empty()) {
      first_handler_ = Handler{nullptr, nullptr};
    } else {
      first_handler_ = more_handlers_.front();
      more_handlers_.erase(more_handlers_.begin());
    }
    return true;
  }
  auto it = std::find_if(more_handlers_.begin(), more_handlers_.end(),
                         [&](const Handler& h) { return h.member == member && h.fn == handler; });
  if (it == more_handlers_.end()) return false;
  more_handlers_.erase(it);
  return true;
}

std::size_t GroupLock::HandlerCount() const {
  MutexLock lock(admin_mu_);
  return first_handler_.fn == nullptr ? 0 : 1 + more_handlers_.size();
}

// -----------------------------------------------------------------------------
// Chains
// -----------------------------------------------------------------------------

bool GroupLock::ReachableThroughChains(const GroupLock& from, const GroupLock* target) {
  // Chains between groups form a DAG (this check keeps it one), so a visited list keeps the
  // walk linear in its size. Every group met is alive: the root is the caller's, and each
  // other one is referenced by a current snapshot, which no swap can free while the
  // topology mutex is held.
  std::vector<const GroupLock*> pending{&from};
  std::vector<const GroupLock*> seen;
  while (!pending.empty()) {
    const GroupLock* group = pending.back();
    pending.pop_back();
    if (group == target) return true;
    if (std::find(seen.begin(), seen.end(), group) != seen.end()) continue;
    seen.push_back(group);
    if (const GroupLock* forward = group->replaced_by_.load(std::memory_order_acquire)) {
      pending.push_back(forward);
    }
    if (const ChainSnapshot* chain = group->chain_.load(std::memory_order_acquire)) {
      for (const ChainEntry& e : chain->entries) {
        if (IsGroupEntry(e)) pending.push_back(static_cast<const GroupLock*>(e.lock));
      }
    }
  }
  return false;
}

bool GroupLock::ClosesCycle(const GroupLock& chained) const {
  std::lock_guard topology(g_topology_mu);
  return ReachableThroughChains(chained, this);
}

bool GroupLock::PublishChain(ChainSnapshot* next, const GroupLock* chained) {
  ChainSnapshot* old = nullptr;
  {
    std::lock_guard topology(g_topology_mu);
    if (chained != nullptr && ReachableThroughChains(*chained, this)) return false;
    old = chain_.exchange(next, std::memory_order_seq_cst);
  }
  // Wake parked walkers so that one holding locks of the old snapshot backs off. Always, not
  // only when the parked bit is seen: a walker reads its ticket before it re-checks the
  // chain, so either it sees `next` or this wake changes its ticket (chains change rarely).
  sync_internal::UnparkAll(sync_internal::ParkingSlotFor(this));
  std::vector<ChainSnapshot*> to_free;
  {
    MutexLock lock(admin_mu_);
    if (old != nullptr) retired_.push_back(old);
    // A walker registers (seq_cst) before it loads the chain (seq_cst); we swapped the chain
    // before looking for walkers, so one that still uses an old snapshot is counted here.
    if ((word_.load(std::memory_order_seq_cst) & kWaiterMask) == 0) to_free.swap(retired_);
  }
  for (ChainSnapshot* snapshot : to_free) DeleteSnapshot(snapshot);
  return true;
}

namespace {

// A copy of `chain` (null: empty) with `entry` inserted after the entries of its position.
ChainSnapshot* SnapshotWith(const ChainSnapshot* chain, const ChainEntry& entry) {
  auto* next = new ChainSnapshot();
  try {
    if (chain != nullptr) next->entries = chain->entries;
    auto at = std::upper_bound(next->entries.begin(), next->entries.end(), entry.position,
                               [](int pos, const ChainEntry& e) { return pos < e.position; });
    next->entries.insert(at, entry);
  } catch (...) {
    delete next;
    throw;
  }
  Seal(*next);
  return next;
}

// Takes the references a snapshot owns on its chained groups: all of them, or none.
void RetainEntries(const ChainSnapshot& snapshot) {
  std::size_t i = 0;
  try {
    for (; i < snapshot.entries.size(); ++i) {
      const ChainEntry& e = snapshot.entries[i];
      if (e.ops->retain != nullptr) e.ops->retain(e.lock);
    }
  } catch (...) {
    while (i > 0) {
      const ChainEntry& e = snapshot.entries[--i];
      if (e.ops->drop != nullptr) e.ops->drop(e.lock);
    }
    throw;
  }
}

}  // namespace

void GroupLock::ChainErased(void* lock, const sync_internal::ChainedLockOps* ops, int position,
                            LockClassRef cls, SourceLocation where) {
  if (lock == this) {
    ReportMisuse("Chain: a group lock cannot be chained to itself", where);
    return;
  }
  if (GroupLock* target = ForwardTarget(where, "Chain")) {
    return target->ChainErased(lock, ops, position, cls, where);
  }
  if (IsDestroyed()) return;  // ForwardTarget reported it
  const ChainEntry entry{lock, ops, position, cls,
                         ops->native != nullptr ? ops->native(lock) : nullptr};
  const GroupLock* chained = IsGroupEntry(entry) ? static_cast<const GroupLock*>(lock) : nullptr;
  if (chained != nullptr) {
    if (chained->IsDestroyed() &&
        chained->replaced_by_.load(std::memory_order_acquire) == nullptr) {
      ReportMisuse("Chain: the lock to chain is a destroyed group lock", where);
      return;
    }
    // Refused before anything is taken: taking the new group while holding this one would
    // walk the cycle.
    if (ClosesCycle(*chained)) {
      ReportMisuse(kCycleMessage, where);
      return;
    }
  }
  Acquire(where);
  const ChainSnapshot* current = chain_.load(std::memory_order_relaxed);
  if (current != nullptr && std::any_of(current->entries.begin(), current->entries.end(),
                                        [lock](const ChainEntry& e) { return e.lock == lock; })) {
    (void)Release(where);
    ReportMisuse("Chain: this lock is already chained to the group", where);
    return;
  }
  ChainSnapshot* next = nullptr;
  bool retained = false;
  std::uint32_t levels = 0;
  bool published = false;
  try {
    next = SnapshotWith(current, entry);
    RetainEntries(*next);  // each snapshot owns its references
    retained = true;
    // Hold the new lock once per level this thread holds the group (ours included), so the
    // releases that follow, which walk the new chain, balance. A lock that goes before the
    // own lock is taken out of order here; try first, and block only if it is busy (PJLIB
    // blocks).
    for (; levels < depth_; ++levels) {
      if (!TryLockEntry(entry, where)) LockEntry(entry, where);
    }
    // Checked again at the swap: another thread may have chained a path back meanwhile.
    published = PublishChain(next, chained);
  } catch (...) {
    ForgetChaining(entry, next, retained, levels);
    (void)Release(where);
    throw;
  }
  if (!published) {
    ForgetChaining(entry, next, retained, levels);
    (void)Release(where);
    ReportMisuse(kCycleMessage, where);
    return;
  }
  (void)Release(where);
}

void GroupLock::ForgetChaining(const ChainEntry& entry, ChainSnapshot* next, bool retained,
                               std::uint32_t levels) {
  for (std::uint32_t i = 0; i < levels; ++i) UnlockEntry(entry);
  if (retained) {
    DeleteSnapshot(next);
  } else {
    delete next;
  }
}

bool GroupLock::UnchainErased(void* lock, SourceLocation where) {
  if (GroupLock* target = ForwardTarget(where, "Unchain")) {
    return target->UnchainErased(lock, where);
  }
  if (IsDestroyed()) return false;
  Acquire(where);
  const ChainSnapshot* current = chain_.load(std::memory_order_relaxed);
  if (current == nullptr) {
    (void)Release(where);
    return false;
  }
  auto found = std::find_if(current->entries.begin(), current->entries.end(),
                            [lock](const ChainEntry& e) { return e.lock == lock; });
  if (found == current->entries.end()) {
    (void)Release(where);
    return false;
  }
  const ChainEntry entry = *found;
  ChainSnapshot* next = nullptr;
  if (current->entries.size() > 1) {
    next = new ChainSnapshot();
    next->entries = current->entries;
    next->entries.erase(next->entries.begin() + (found - current->entries.begin()));
    Seal(*next);
    RetainEntries(*next);
  }
  // The lock leaves the chain: let go of it once per level held (ours included), since the
  // releases that follow walk the new chain without it. Publish first: a walker that takes
  // the lock after this thread lets go of it must find its own snapshot stale, and back off
  // rather than block while holding it (a later Chain of the same lock would wait for it).
  // Holding the lock pins a chained group even if its old snapshot is freed here.
  (void)PublishChain(next);
  for (std::uint32_t level = 0; level < depth_; ++level) UnlockEntry(entry);
  (void)Release(where);
  return true;
}

std::size_t GroupLock::ChainLength() const noexcept {
  const ChainSnapshot* chain = chain_.load(std::memory_order_acquire);
  return chain == nullptr ? 0 : chain->entries.size();
}

// -----------------------------------------------------------------------------
// Replacement and forced destruction
// -----------------------------------------------------------------------------

Liveness GroupLock::ReplaceWith(GroupLock& replacement, SourceLocation where) {
  if (&replacement == this) {
    ReportMisuse("ReplaceWith: a group lock cannot replace itself", where);
    return Liveness::kAlive;
  }
  if (IsDestroyed() || replacement.IsDestroyed()) {
    ReportMisuse("ReplaceWith involving a destroyed group lock", where);
    return Liveness::kAlive;
  }
  // Take the own lock without an owner: nobody may hold or wait for this group now, and
  // threads that arrive later wait, then find it replaced and follow the forwarding.
  std::uint64_t w = word_.load(std::memory_order_relaxed);
  do {
    if ((w & (kLocked | kWaiterMask)) != 0) {
      ReportMisuse("ReplaceWith on a group lock that is held or waited for", where);
      return Liveness::kAlive;
    }
  } while (!word_.compare_exchange_weak(w, w | kLocked, std::memory_order_acquire,
                                        std::memory_order_relaxed));

  if (const ChainSnapshot* chain = chain_.load(std::memory_order_relaxed)) {
    for (const ChainEntry& e : chain->entries) {
      replacement.ChainErased(e.lock, e.ops, e.position, e.cls, where);
    }
    (void)PublishChain(nullptr);
  }
  for (const Handler& h : TakeHandlers()) {
    MutexLock lock(replacement.admin_mu_);
    (void)replacement.AppendHandler(h);  // a pair both groups had is kept once
  }
  // Publish the forwarding, then the destroyed bit: every AddRef/DecRef from here on is
  // mirrored on the replacement, so the references counted at this instant move over.
  replaced_by_.store(&replacement, std::memory_order_release);
  const std::uint64_t at_switch = word_.fetch_or(kDestroyed, std::memory_order_acq_rel);
  const std::uint32_t moved = RefsOf(at_switch);
  replacement.word_.fetch_add(kRef * moved, std::memory_order_relaxed);
  references_moved_.store(true, std::memory_order_release);
  if (core_internal::RefDebugOn()) {
    for (std::uint32_t i = 0; i < moved; ++i) {
      core_internal::RefTrackAdd(&replacement, typeid(GroupLock).name(), nullptr, where);
    }
  }
  (void)ReleaseOwnLock(false);
  return Liveness::kGone;
}

void GroupLock::Destroy(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  if (GroupLock* target = ForwardTarget(where, "Destroy")) return target->Destroy(where);
  if (IsDestroyed()) return;  // ForwardTarget reported it
  Acquire(where);
  const ThreadToken me = CurrentThreadToken();
  const std::uint32_t levels = depth_;
  word_.fetch_or(kDestroyed, std::memory_order_acq_rel);
  // Let go of every chained lock at every level this thread holds, then forget the chain.
  if (ChainSnapshot* chain = chain_.load(std::memory_order_relaxed)) {
    for (std::uint32_t level = 0; level < levels; ++level) {
      UnlockEntries(*chain, chain->before_own, chain->entries.size());
      UnlockEntries(*chain, 0, chain->before_own);
    }
    (void)PublishChain(nullptr);
  }
  std::vector<Handler> handlers = TakeHandlers();
  // The own lock goes too, every level of it, so the handlers run with no lock of the group
  // held (they may take other locks, and the validator must not see this one ordering them).
  // The levels the caller held before this call stay owed: its balancing releases are
  // accepted silently, and they keep the group pinned until the last of them.
  if (sync_internal::LockOrderEver()) {
    for (std::uint32_t level = 0; level < levels; ++level) LockOrderNoteRelease(this);
  }
  validated_ = false;
  depth_ = 0;
  owner_.store(0, std::memory_order_relaxed);
  if (levels > 1) {
    owed_releases_ = levels - 1;
    destroyer_.store(me, std::memory_order_relaxed);
    (void)AddToWord(kWaiter);
  }
  // Stay pinned while the handlers run: letting go may otherwise free the memory.
  (void)ReleaseOwnLock(true);
  for (const Handler& handler : handlers) {
    core_internal::RunCatching([&] { handler.fn(handler.member); },
                               [] { return std::string("group lock destroy handler"); }, where);
  }
  (void)Unpin();
}

// -----------------------------------------------------------------------------
// Dump
// -----------------------------------------------------------------------------

std::string GroupLock::Dump() const {
  char head[160];
  const std::uint64_t w = word_.load(std::memory_order_acquire);
  std::snprintf(
      head, sizeof head, "GroupLock %p: refs=%u waiters=%u %s%s", static_cast<const void*>(this),
      RefsOf(w), static_cast<unsigned>((w & kWaiterMask) / kWaiter),
      (w & kLocked) != 0 ? "locked" : "unlocked", (w & kDestroyed) != 0 ? " destroyed" : "");
  std::string out = head;
  out += ", created at " + FormatLocation(class_.site);
  if (class_.named != nullptr) out += std::string(", class ") + class_.named->Name();
  out += "\n";
  if (const ChainSnapshot* chain = chain_.load(std::memory_order_acquire)) {
    out += "  chain:";
    for (std::size_t i = 0; i <= chain->entries.size(); ++i) {
      if (i == chain->before_own) out += " [own lock @0]";
      if (i == chain->entries.size()) break;
      char item[64];
      std::snprintf(item, sizeof item, " %p@%d", chain->entries[i].lock,
                    chain->entries[i].position);
      out += item;
    }
    out += "\n";
  }
  out += "  destroy handlers: " + std::to_string(HandlerCount()) + "\n";
  if (!core_internal::RefDebugOn()) {
    out += "  reference holders: reference debugging is off\n";
  } else {
    for (const RefHolder& holder : RefHoldersOf(this)) {
      out += "  reference held from " + FormatLocationLong(holder.where) + " by thread " +
             std::to_string(holder.thread) + "\n";
    }
  }
  return out;
}

// Here rather than with the registry: Unpin is inlined into this file's hot paths.
void sync_internal::GroupLockRegistryAccess::Unpin(const GroupLock& group) {
  (void)group.Unpin();
}

}  // namespace plexus
