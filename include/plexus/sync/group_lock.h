// -----------------------------------------------------------------------------
// plexus/sync/group_lock.h
// -----------------------------------------------------------------------------
//
// GroupLock is PJLIB's group lock (pj_grp_lock_t) with a C++ face: one recursive lock and
// one reference count shared by a group of objects that live and die together (a SIP dialog
// with its invite session and transactions; an ICE transport with its session and sockets).
//
//   * Lock: Acquire/TryAcquire/Release, recursive for the owning thread, and Lockable
//     (lock/try_lock/unlock), so std::scoped_lock and std::unique_lock work on it.
//   * Lifetime: AddRef/DecRef; the group starts with one reference, its creator's. Holding or
//     waiting for the lock keeps the group alive without touching the count. The DecRef or
//     Release that leaves no reference, no holder and no waiter destroys the group: it runs
//     the destroy handlers and returns Liveness::kGone.
//   * Destroy handlers: (member, callback) pairs, called exactly once each at destruction, in
//     registration order (first registered, first called), with no group lock held.
//   * Chained locks: external Lockables (a std::mutex, a plexus::Mutex, another GroupLock)
//     with a position. Positions <= 0 are taken before the group's own lock, positive ones
//     after; Acquire takes them all in ascending position (equal positions in the order they
//     were chained) and Release lets them go in reverse, the group's own lock last. (An
//     uncontended Acquire may take the own lock first and only try the locks chained before
//     it, falling back to the ordered walk if one is busy: it never blocks out of order.)
//   * ReplaceWith, forced Destroy, Dump, and reference debugging with source locations.
//
// Example:
//
//   struct Dialog { plexus::Ref<plexus::GroupLock> lock; ... };
//   auto lock = plexus::GroupLock::Create({.member = dialog, .handler = &FreeDialog});
//   {
//     std::scoped_lock guard(*lock);   // acquire: the group cannot die while held
//     ...
//   }
//   lock.Reset();                      // the last reference: FreeDialog(dialog) runs
//
// Thread safety: thread-safe. Every member function may be called from any thread on a group
// the caller keeps alive (by a reference, or by holding its lock). Release must be called by
// the thread that acquired. Chain/Unchain/AddHandler/DelHandler may be called with or without
// the lock held.
//
// Requirements:
//   * The caller of any member function keeps the group alive for the call's duration: it
//     holds a reference or holds the lock. (A thread *waiting* in Acquire keeps it alive too:
//     unlike PJLIB, a waiter cannot find the group destroyed under it.)
//   * A chained lock must outlive its chaining; a chained GroupLock is kept alive by the chain
//     (one reference, dropped when it is unchained or the group dies).
//   * Each recursion level of Acquire takes every chained lock again (as PJLIB does), so a
//     chained lock must tolerate recursion if the group is acquired recursively.
//
// Guarantees:
//   * Acquire takes chained locks in chain order even while other threads chain and unchain:
//     a thread whose walk raced a chain change lets go of what it took and walks the new
//     chain, so it never releases a lock it did not take (PJLIB's #4893 hazard).
//   * Destroy handlers run after every lock of the group was let go by the destroying thread.
//   * Chain is all-or-nothing, and a cycle of chained groups (G1 -> G2 -> G1, or longer) is
//     refused when it would be chained, with lock-order validation on or off.
//   * Misuse (releasing a lock the thread does not hold, DecRef below zero, chaining a lock
//     twice, to itself, a destroyed group or a group that would close a cycle of chains,
//     replacing with itself, using a destroyed group) is reported through
//     plexus::ReportMisuse with the caller's file and line. With reference debugging on,
//     destroyed groups are quarantined (not freed at once), so a DecRef on a destroyed group
//     is caught rather than being a use-after-free.
//
// Memory ordering: Acquire is an acquire operation and Release a release operation, as for
// std::mutex. The destruction that follows the last DecRef/Release happens after every write
// made under the lock or before any DecRef.
//
// Lock-order validation (lock_order.h) sees the group's own lock (its class is the
// GroupLockConfig::lock_class, or the line that created it) and every chained lock.
//
// Limitations: at most 2^32-1 references and kMaxWaiters (2^29-1) simultaneous waiters. Waiters
// sleep on a process-wide table of futex words; a release wakes all sleepers that hash to its slot.
// A chain change keeps the previous chain array until no thread is inside Acquire (or
// until the group dies).

#pragma once

#include <atomic>
#include <cstdint>
#include <mutex>
#include <string>
#include <type_traits>
#include <vector>

#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/core/thread_id.h"
#include "plexus/sync/internal/lock_order_flag.h"
#include "plexus/sync/internal/parking_lot.h"
#include "plexus/sync/lock_order.h"
#include "plexus/sync/mutex.h"

namespace plexus {

class GroupLock;

namespace sync_internal {

struct GroupLockRegistryAccess;

// A standard mutex's native handle (a pthread mutex). A chained std::mutex or
// std::recursive_mutex is taken through it directly: its lock/try_lock/unlock are exactly the
// native calls, so the type-erased call and the wrapper around it are skipped.
using NativeMutex = std::mutex::native_handle_type;

// Type-erased operations on a chained lock.
struct ChainedLockOps {
  void (*lock)(void* lock, SourceLocation where);
  bool (*try_lock)(void* lock, SourceLocation where);
  void (*unlock)(void* lock);
  void (*retain)(void* lock);  // keeps a chained GroupLock alive; null for other locks
  void (*drop)(void* lock);
  bool self_validating;  // the lock reports itself to the lock-order validator
  NativeMutex (*native)(void* lock) = nullptr;  // the native handle, for standard mutexes
};

// A lock with plexus's explicit spelling (Acquire/TryAcquire/Release taking the caller's
// location), as plexus::Mutex has: chained, it is told where the group was acquired.
template <class L>
concept HasLocatedLock = requires(L& l, SourceLocation where) {
  l.Acquire(where);
  { l.TryAcquire(where) } -> std::convertible_to<bool>;
  l.Release();
};

template <class L>
const ChainedLockOps* ChainedLockOpsFor() noexcept {
  static constexpr ChainedLockOps ops = [] {
    if constexpr (std::is_same_v<L, GroupLock>) {
      return ChainedLockOps{nullptr, nullptr, nullptr,
                            nullptr, nullptr, true};  // see group_lock.cc
    } else if constexpr (HasLocatedLock<L>) {
      // Type-erased lock/unlock pairs: the analysis cannot follow them across calls.
      return ChainedLockOps{
          [](void* l, SourceLocation where)
              PLEXUS_NO_THREAD_SAFETY_ANALYSIS { static_cast<L*>(l)->Acquire(where); },
          [](void* l, SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
            return static_cast<bool>(static_cast<L*>(l)->TryAcquire(where));
          },
          [](void* l) PLEXUS_NO_THREAD_SAFETY_ANALYSIS { (void)static_cast<L*>(l)->Release(); },
          nullptr,
          nullptr,
          true};
    } else if constexpr (std::is_same_v<L, std::mutex> || std::is_same_v<L, std::recursive_mutex>) {
      static_assert(std::is_same_v<typename L::native_handle_type, NativeMutex>);
      return ChainedLockOps{
          [](void* l, SourceLocation)
              PLEXUS_NO_THREAD_SAFETY_ANALYSIS { static_cast<L*>(l)->lock(); },
          [](void* l, SourceLocation)
              PLEXUS_NO_THREAD_SAFETY_ANALYSIS { return static_cast<L*>(l)->try_lock(); },
          [](void* l) PLEXUS_NO_THREAD_SAFETY_ANALYSIS { static_cast<L*>(l)->unlock(); },
          nullptr,
          nullptr,
          false,
          [](void* l) { return static_cast<L*>(l)->native_handle(); }};
    } else {
      return ChainedLockOps{[](void* l, SourceLocation)
                                PLEXUS_NO_THREAD_SAFETY_ANALYSIS { static_cast<L*>(l)->lock(); },
                            [](void* l, SourceLocation) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
                              return static_cast<bool>(static_cast<L*>(l)->try_lock());
                            },
                            [](void* l)
                                PLEXUS_NO_THREAD_SAFETY_ANALYSIS { static_cast<L*>(l)->unlock(); },
                            nullptr,
                            nullptr,
                            false};
    }
  }();
  return &ops;
}

const ChainedLockOps* GroupLockChainedOps() noexcept;

struct ChainEntry {
  void* lock;
  const ChainedLockOps* ops;
  int position;
  LockClassRef cls;      // used to validate locks that do not validate themselves
  NativeMutex native{};  // ops->native(lock), resolved once at chaining; null if none
};

// An immutable snapshot of a group's chain, swapped as a whole on every change.
struct ChainSnapshot {
  ChainSnapshot() = default;
  ChainSnapshot(const ChainSnapshot&) = delete;  // `sole` points into `entries`
  ChainSnapshot& operator=(const ChainSnapshot&) = delete;

  std::vector<ChainEntry> entries;  // ascending position
  std::size_t before_own = 0;       // entries[0, before_own) are taken before the own lock
  // The chain's only entry when it has exactly one (the common shape: one external lock),
  // else null. Acquire and Release take and let go of a sole standard mutex in straight-line
  // code.
  const ChainEntry* sole = nullptr;
};

}  // namespace sync_internal

// Options for GroupLock::Create. All optional.
struct GroupLockConfig {
  // The class the lock-order validator files the group's own lock under; by default the
  // source line that called Create.
  const LockClass* lock_class = nullptr;
  // A destroy handler registered at creation (PJLIB's pj_grp_lock_create_w_handler). It is
  // the first handler called.
  void* member = nullptr;
  void (*handler)(void* member) = nullptr;
};

class PLEXUS_CAPABILITY("mutex") GroupLock {
 public:
  using DestroyHandler = void (*)(void* member);

  // How many threads may wait for one group at once (the width of the word's waiter field).
  static constexpr std::uint32_t kMaxWaiters = (1u << 29) - 1;

  // Creates a group holding one reference, the returned Ref's.
  static Ref<GroupLock> Create(const GroupLockConfig& config = {},
                               SourceLocation where = SourceLocation::current());

  GroupLock(const GroupLock&) = delete;
  GroupLock& operator=(const GroupLock&) = delete;

  // ---------------------------------------------------------------------------
  // Locking
  // ---------------------------------------------------------------------------

  // Blocks until the calling thread holds the group and every chained lock. Recursive.
  void Acquire(SourceLocation where = SourceLocation::current()) PLEXUS_ACQUIRE();

  // Takes the group and its chained locks if that can be done without blocking; otherwise
  // leaves every lock as it was and returns false.
  bool TryAcquire(SourceLocation where = SourceLocation::current()) PLEXUS_TRY_ACQUIRE(true);

  // Releases one level of acquisition. Returns kGone when this release let go of the last
  // thing keeping the group alive and it was destroyed (the handlers have run).
  Liveness Release(SourceLocation where = SourceLocation::current()) PLEXUS_RELEASE();

  // Lockable.
  void lock() PLEXUS_ACQUIRE() { Acquire(); }
  bool try_lock() PLEXUS_TRY_ACQUIRE(true) { return TryAcquire(); }
  void unlock() PLEXUS_RELEASE() { (void)Release(); }

  bool HeldByCurrentThread() const noexcept;
  // How many times the calling thread holds the group (0 when it does not).
  std::uint32_t HoldCount() const noexcept;

  // ---------------------------------------------------------------------------
  // References
  // ---------------------------------------------------------------------------

  void AddRef(SourceLocation where = SourceLocation::current(), const void* holder = nullptr) const;
  Liveness DecRef(SourceLocation where = SourceLocation::current(),
                  const void* holder = nullptr) const;
  // A snapshot of the count (references only; holders and waiters are not counted).
  std::uint32_t RefCount() const noexcept;
  // A snapshot of how many threads are inside Acquire/TryAcquire waiting for (or walking the
  // chain towards) the group's own lock. Each of them keeps the group alive.
  std::uint32_t WaiterCount() const noexcept;

  // ---------------------------------------------------------------------------
  // Destroy handlers
  // ---------------------------------------------------------------------------

  // Registers handler(member) to run at destruction. A pair already registered is reported
  // as misuse and not added again (returns false). Returns false on a destroyed group.
  bool AddHandler(void* member, DestroyHandler handler,
                  SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(admin_mu_);
  // Removes a registered pair; returns false if it was not registered.
  bool DelHandler(void* member, DestroyHandler handler,
                  SourceLocation where = SourceLocation::current()) PLEXUS_EXCLUDES(admin_mu_);
  std::size_t HandlerCount() const PLEXUS_EXCLUDES(admin_mu_);

  // ---------------------------------------------------------------------------
  // Chained locks
  // ---------------------------------------------------------------------------

  // Chains `lock` at `position`. If the calling thread holds the group (n times), the new
  // lock is taken n times now, so the balanced releases that follow leave it unlocked.
  // Chaining the same lock twice, a group to itself, a destroyed group, or a group from
  // which this one is reachable through chained groups (a cycle) is misuse. If taking the
  // new lock throws (a lock-order refusal, a misuse report), nothing is chained and the
  // group is held as before the call.
  template <class L>
  void Chain(L& lock, int position, SourceLocation where = SourceLocation::current()) {
    ChainErased(&lock, OpsFor<L>(), position, LockClassRef{nullptr, where}, where);
  }
  // As above, filing the chained lock under `cls` for lock-order validation (for locks that
  // do not validate themselves, such as std::mutex).
  template <class L>
  void Chain(L& lock, int position, const LockClass& cls,
             SourceLocation where = SourceLocation::current()) {
    ChainErased(&lock, OpsFor<L>(), position, LockClassRef{&cls, {}}, where);
  }
  // Removes `lock` from the chain; if the calling thread holds the group (n times), the lock
  // is released n times. Returns false if it was not chained.
  template <class L>
  bool Unchain(L& lock, SourceLocation where = SourceLocation::current()) {
    return UnchainErased(&lock, where);
  }
  // Number of chained locks (the group's own lock not counted).
  std::size_t ChainLength() const noexcept;

  // ---------------------------------------------------------------------------
  // Replacement, forced destruction, introspection
  // ---------------------------------------------------------------------------

  // Moves this group's destroy handlers (after the replacement's own), chained locks and
  // references to `replacement`. This group then forwards every operation to the replacement
  // and is freed when its moved references have been dropped. No thread may hold or wait for
  // this group. Returns kGone: this group no longer exists as a group of its own.
  Liveness ReplaceWith(GroupLock& replacement, SourceLocation where = SourceLocation::current());

  // Runs the destroy handlers now, whatever the count (PJLIB's pj_grp_lock_destroy), and
  // unchains every chained lock. A caller that holds the group lets go of every level before
  // the handlers run; its later releases of the levels it held are accepted. Other later use
  // than DecRef is misuse. The memory is freed when the last
  // reference is dropped, so references held elsewhere stay safe to drop.
  void Destroy(SourceLocation where = SourceLocation::current());
  bool IsDestroyed() const noexcept;

  // A human-readable description: count, holder thread, chain, handlers and (with reference
  // debugging on) the source location of every reference holder.
  std::string Dump() const;

 private:
  friend class Ref<GroupLock>;
  friend struct sync_internal::GroupLockRegistryAccess;
  struct Handler {
    void* member;
    DestroyHandler fn;
  };

  // Word layout: [refs:32][waiters:29][parked:1][destroyed:1][locked:1]. "parked" says a
  // waiter may be asleep, so the release must wake the parking-lot slot.
  static constexpr std::uint64_t kLocked = 1;
  static constexpr std::uint64_t kDestroyed = 2;
  static constexpr std::uint64_t kParked = 4;
  static constexpr std::uint64_t kWaiter = 8;
  static constexpr std::uint64_t kWaiterMask = 0xFFFFFFF8ull;
  static constexpr std::uint64_t kRef = 1ull << 32;
  static_assert(kWaiterMask / kWaiter == kMaxWaiters && (kWaiterMask + kWaiter) == kRef);

  GroupLock(const GroupLockConfig& config, SourceLocation where);
  ~GroupLock();

  template <class L>
  static const sync_internal::ChainedLockOps* OpsFor() noexcept {
    if constexpr (std::is_same_v<L, GroupLock>) {
      return sync_internal::GroupLockChainedOps();
    } else {
      return sync_internal::ChainedLockOpsFor<L>();
    }
  }

  bool NeedsSlowPath() const noexcept {
    return chain_.load(std::memory_order_relaxed) != nullptr || sync_internal::LockOrderOn();
  }

  void AcquireSlow(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // With the own lock just taken (owner set), takes the chained locks: those before the own
  // lock without blocking (they are out of order here), those after it in order. On a busy
  // one it lets go of everything, own lock included, and returns false.
  bool TakeChainHoldingOwn(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // TakeChainHoldingOwn's walk over any chain, and its way out (owner cleared, own lock let go).
  bool TakeChainWalk(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  void LetGoOwnAfterBusyChain() PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  void AcquireRecursive(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  bool TryAcquireSlow(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  bool TryAcquireRecursive(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // Registers the caller as a waiter. False, unregistered, when the group is destroyed or
  // dead; `forward` then names a replacement to forward to, if any.
  bool RegisterWaiter(GroupLock*& forward, bool& destroyed);
  // Rollbacks of a walk that took the own lock as a registered waiter: let go of it and of
  // the entries before it, staying registered (the snapshot stays alive) ...
  void LetGoOwnAndBefore(const sync_internal::ChainSnapshot* chain,
                         std::size_t before_own) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // ... or, once the caller became the owner and took `after_own_taken` entries after the
  // own lock, let go of everything and unregister.
  void AbandonOwnership(const sync_internal::ChainSnapshot* chain, std::size_t before_own,
                        std::size_t after_own_taken) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // Release of the outermost level of a chained hold whose own lock was not validated:
  // straight-line when the chain is one standard mutex, otherwise ReleaseSlow.
  Liveness ReleaseChained(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  Liveness ReleaseSlow(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // Drops the own lock of a hold whose owner fields are already cleared: one CAS when nobody
  // is parked and a reference is left, else ReleaseOwnLock.
  Liveness DropOwnLock() PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  Liveness ReleaseOwnLock(bool stay_pinned_while_waking) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  // Returns false, without the lock, when the chain changed from `walked` while waiting.
  bool LockOwnAsWaiter(const sync_internal::ChainSnapshot* walked) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  bool TryLockOwnAsWaiter() PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  Liveness Unpin() const;
  // word_ += delta (mod 2^64), as a plain store while the process is single-threaded.
  std::uint64_t AddToWord(std::uint64_t delta) const;
  Liveness Finish(std::uint64_t final_word) const;
  void DestroyNow() const;
  void FreeMemory() const;
  static void DeleteSnapshot(sync_internal::ChainSnapshot* snapshot);
  void AfterLockedDestroyed(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  void AddRefSlow(std::uint64_t previous, SourceLocation where) const;
  Liveness DecRefSlow(std::uint64_t previous, SourceLocation where) const;
  GroupLock* ForwardTarget(SourceLocation where, const char* operation) const;
  void ChainErased(void* lock, const sync_internal::ChainedLockOps* ops, int position,
                   LockClassRef cls, SourceLocation where);
  bool UnchainErased(void* lock, SourceLocation where);
  // Swaps in `next`; refuses (false) when `chained`, the group being chained, reaches this
  // one through chains.
  bool PublishChain(sync_internal::ChainSnapshot* next, const GroupLock* chained = nullptr)
      PLEXUS_EXCLUDES(admin_mu_);
  static bool ReachableThroughChains(const GroupLock& from, const GroupLock* target);
  bool ClosesCycle(const GroupLock& chained) const;
  void ForgetChaining(const sync_internal::ChainEntry& entry, sync_internal::ChainSnapshot* next,
                      bool retained, std::uint32_t levels) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  void LockEntry(const sync_internal::ChainEntry& entry,
                 SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  bool TryLockEntry(const sync_internal::ChainEntry& entry,
                    SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockEntry(const sync_internal::ChainEntry& entry) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  void UnlockEntries(const sync_internal::ChainSnapshot& chain, std::size_t from,
                     std::size_t to) PLEXUS_NO_THREAD_SAFETY_ANALYSIS;
  std::vector<Handler> TakeHandlers() const PLEXUS_EXCLUDES(admin_mu_);
  bool AppendHandler(Handler handler) const PLEXUS_REQUIRES(admin_mu_);
  void FreeRetiredChains() const PLEXUS_EXCLUDES(admin_mu_);

  // The lock word, the owner and the chain pointer are read on every acquisition; they
  // share the first cache line.
  mutable std::atomic<std::uint64_t> word_;
  std::atomic<ThreadToken> owner_{0};
  std::uint32_t depth_ = 0;  // written only by the owner
  // Whether the outermost acquisition was pushed on the lock-order validator's held stack, so
  // the release must pop it; written only by the owner. Lets the release fast path ignore
  // the validator unless this hold used it.
  bool validated_ = false;
  mutable std::atomic<sync_internal::ChainSnapshot*> chain_{nullptr};
  std::atomic<GroupLock*> replaced_by_{nullptr};
  // Set once ReplaceWith added the moved references to the replacement.
  std::atomic<bool> references_moved_{false};
  // The thread that destroyed the group while holding it, and how many of its earlier levels
  // it has yet to release (written and read by that thread only).
  std::atomic<ThreadToken> destroyer_{0};
  std::uint32_t owed_releases_ = 0;
  LockClassRef class_;

  // Guards the handler list and the retired chain arrays. A leaf lock: nothing else is
  // taken while it is held, and it is never held while a handler runs.
  mutable sync_internal::AnnotatedMutex admin_mu_;
  mutable Handler first_handler_ PLEXUS_GUARDED_BY(admin_mu_){nullptr, nullptr};
  mutable std::vector<Handler> more_handlers_ PLEXUS_GUARDED_BY(admin_mu_);
  mutable std::vector<sync_internal::ChainSnapshot*> retired_ PLEXUS_GUARDED_BY(admin_mu_);

  // Links in the live-group registry (group_lock_stats.cc), guarded by the registry shard
  // that `this` hashes to; touched only at creation, at destruction and by listings.
  GroupLock* registry_prev_ = nullptr;
  GroupLock* registry_next_ = nullptr;
};

// Fast paths, inline: an uncontended, unvalidated acquire/release is one CAS each plus the
// owner bookkeeping (and the chained locks' own operations, see TakeChainHoldingOwn). While the
// process has never started a second thread, the CAS becomes a plain store, as glibc's own mutexes
// do (and libstdc++'s shared_ptr for its counts): no other thread exists that could observe the
// word.

inline void GroupLock::Acquire(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  const ThreadToken me = CurrentThreadToken();
  if (owner_.load(std::memory_order_relaxed) == me) return AcquireRecursive(where);
  if (PLEXUS_LIKELY(!sync_internal::LockOrderOn())) {
    std::uint64_t w = word_.load(std::memory_order_relaxed);
    if (PLEXUS_LIKELY((w & (kLocked | kDestroyed)) == 0 && w >= kRef)) {
      bool locked = true;
      if (sync_internal::ProcessIsSingleThreaded()) {
        word_.store(w | kLocked, std::memory_order_relaxed);
      } else {
        locked = word_.compare_exchange_strong(w, w | kLocked, std::memory_order_acquire,
                                               std::memory_order_relaxed);
      }
      if (PLEXUS_LIKELY(locked)) {
        owner_.store(me, std::memory_order_relaxed);
        depth_ = 1;
        validated_ = false;
        // The chain cannot change while the own lock is held: read it now, stable.
        if (PLEXUS_LIKELY(chain_.load(std::memory_order_relaxed) == nullptr)) return;
        if (PLEXUS_LIKELY(TakeChainHoldingOwn(where))) return;
        // A lock chained before the own one was busy: let go (TakeChainHoldingOwn did)
        // and walk the chain in order, waiting where needed.
      }
    }
  }
  AcquireSlow(where);
}

inline Liveness GroupLock::Release(SourceLocation where) PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  if (PLEXUS_LIKELY(owner_.load(std::memory_order_relaxed) == CurrentThreadToken() && depth_ == 1 &&
                    !validated_)) {
    if (PLEXUS_UNLIKELY(chain_.load(std::memory_order_relaxed) != nullptr)) {
      return ReleaseChained(where);
    }
    depth_ = 0;
    owner_.store(0, std::memory_order_relaxed);
    return DropOwnLock();
  }
  return ReleaseSlow(where);
}

inline Liveness GroupLock::DropOwnLock() PLEXUS_NO_THREAD_SAFETY_ANALYSIS {
  std::uint64_t w = word_.load(std::memory_order_relaxed);
  // Nobody asleep, not destroyed, and a reference left (so this release cannot be the
  // last thing keeping the group alive): drop the locked bit and be done.
  if (PLEXUS_LIKELY((w & (kParked | kDestroyed)) == 0 && w >= kRef)) {
    if (sync_internal::ProcessIsSingleThreaded()) {
      word_.store(w - kLocked, std::memory_order_relaxed);
      return Liveness::kAlive;
    }
    if (PLEXUS_LIKELY(word_.compare_exchange_strong(w, w - kLocked, std::memory_order_release,
                                                    std::memory_order_relaxed))) {
      return Liveness::kAlive;
    }
  }
  return ReleaseOwnLock(false);
}

inline void GroupLock::AddRef(SourceLocation where, const void* holder) const {
  if (core_internal::RefDebugOn()) {
    core_internal::RefTrackAdd(this, typeid(GroupLock).name(), holder, where);
  }
  const std::uint64_t previous = word_.fetch_add(kRef, std::memory_order_relaxed);
  if (PLEXUS_UNLIKELY((previous & kDestroyed) != 0 || previous == 0)) {
    AddRefSlow(previous, where);
  }
}

inline Liveness GroupLock::DecRef(SourceLocation where, const void* holder) const {
  if (core_internal::RefDebugOn()) core_internal::RefTrackDrop(this, holder, where);
  const std::uint64_t previous = word_.fetch_sub(kRef, std::memory_order_acq_rel);
  if (PLEXUS_LIKELY(previous > kRef && (previous & kDestroyed) == 0)) return Liveness::kAlive;
  return DecRefSlow(previous, where);
}

}  // namespace plexus
