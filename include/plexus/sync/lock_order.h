// -----------------------------------------------------------------------------
// plexus/sync/lock_order.h
// -----------------------------------------------------------------------------
//
// Lock-order validation in the manner of Linux lockdep: it finds lock-order inversions that
// *could* deadlock from orders that have merely been seen once, long before two threads
// interleave badly enough to deadlock for real.
//
//   LockClass                    identifies a class of locks (all locks created at one source
//                                line, or all locks given one name).
//   EnableLockOrderValidation    switches validation on or off at run time (or set
//                                PLEXUS_LOCK_ORDER=1 in the environment).
//   LockOrderAction              what happens when an inversion is found: log it, refuse the
//                                acquisition (throw LockOrderError before the lock is taken),
//                                or abort.
//   SetLockOrderCallback         an extra callback that receives every report.
//   LockOrderViolation           the report: the new order, the opposite order already seen,
//                                and for each edge the source lines where it was first seen.
//
// How it works. Each thread keeps the stack of validated locks it holds. When it is about to
// block on a lock of class B while holding locks of classes A1..An, the validator adds the
// edges Ai -> B to a global graph of classes; an edge that closes a cycle is an inversion.
// As in lockdep, a chain of held classes that has been validated once is remembered by a
// 64-bit hash, so a repeated nesting costs a hash and a per-thread cache lookup, not a graph
// search. Try-locks never block, so they add no edges, but the lock they take is held and
// orders the locks taken after it. Re-acquiring a lock the thread already holds (recursion)
// adds nothing. Two locks of the same class nested in each other add no edge (plexus does
// not report same-class nesting; give the inner lock its own class when its order matters).
//
// plexus::GroupLock (with every lock chained to it) and plexus::Mutex/RecursiveMutex are
// validated when validation is on. Other lock types can take part through the hooks in
// LockOrderGuardAcquire/LockOrderNoteRelease.
//
// Cost. While off, each validated lock operation pays one predictable branch on a relaxed
// atomic load. While on, a lock operation pays a thread-local push/pop and a hash lookup;
// the graph (behind one mutex) is touched only for a held-lock chain never seen before.
//
// ThreadSanitizer: TSan has its own lock-order detector and reports an inversion of real
// pthread mutexes when it happens. With LockOrderAction::kRefuse the validator refuses the
// inverting acquisition before the real lock is taken, so TSan never sees the inverted order.
//
// Thread safety: every function here is thread-safe.
//
// Limitations: the class graph only grows (ResetLockOrderState() clears it, for tests); at
// most 65 535 classes are tracked, after which new classes are not validated (a warning is
// logged once). Lock classes made from creation sites are interned by file and line.

#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "plexus/core/misuse.h"
#include "plexus/core/source_location.h"

namespace plexus {

// -----------------------------------------------------------------------------
// LockClass
// -----------------------------------------------------------------------------
//
// A lock's class for validation. Make one per kind of lock that has its own place in the lock
// order, usually as a static:
//
//   static plexus::LockClass kDialogLockClass("sip.dialog");
//   auto group = plexus::GroupLock::Create({.lock_class = &kDialogLockClass});
//
// Locks that are given no class get one from the source line that created them.
//
// Thread safety: immutable after construction; the id is assigned lazily and thread-safely.
class LockClass {
 public:
  // `name` must outlive the class (a string literal is the usual argument).
  constexpr explicit LockClass(const char* name) noexcept : name_(name) {}
  LockClass(const LockClass&) = delete;
  LockClass& operator=(const LockClass&) = delete;

  const char* Name() const noexcept { return name_; }

 private:
  friend struct LockOrderAccess;
  const char* name_;
  mutable std::uint32_t id_ = 0;  // assigned on first validated use (atomic_ref)
};

enum class LockOrderAction {
  kLog,     // report (log + callback), then take the lock anyway
  kRefuse,  // report, then throw LockOrderError without taking the lock
  kAbort,   // report, then abort()
};

// Thrown by an acquisition that the validator refused (LockOrderAction::kRefuse).
class LockOrderError : public UsageError {
 public:
  using UsageError::UsageError;
};

// One edge of the class graph: a lock of class `to` was taken while one of class `from` was
// held, first seen with `from` taken at `from_where` and `to` taken at `to_where`.
struct LockOrderEdge {
  std::string from;
  std::string to;
  SourceLocation from_where;
  SourceLocation to_where;
  std::uint32_t thread;  // CurrentThreadNumber() of the thread that first took this order
};

struct LockOrderViolation {
  LockOrderEdge attempted;                 // the new order (held -> about to take)
  std::vector<LockOrderEdge> established;  // the opposite order seen before: to -> ... -> from
  std::string message;                     // both orders with their source lines, readable
};

using LockOrderCallback = std::function<void(const LockOrderViolation&)>;

// Returns the previous state. Switching on while locks are held is allowed: locks taken
// before are not on the held stacks and order nothing.
bool EnableLockOrderValidation(bool on);
bool LockOrderValidationEnabled() noexcept;

LockOrderAction SetLockOrderAction(LockOrderAction action);  // returns the previous action
void SetLockOrderCallback(LockOrderCallback callback);       // empty to remove

// Number of inversions reported (each unordered pair of classes is reported once).
std::uint64_t LockOrderViolationCount();
// The latest reports (at most 64, oldest first), for an operator's console.
std::vector<LockOrderViolation> RecentLockOrderViolations();

// Forgets every edge, report and cached chain (classes keep their ids). For tests.
void ResetLockOrderState();

// -----------------------------------------------------------------------------
// Hooks for lock implementations
// -----------------------------------------------------------------------------
//
// A lock type that wants validation describes its class with a LockClassRef (a LockClass, or
// the source line that created the lock; CompactLockClassRef where the lock's size matters),
// and calls:
//   * LockOrderGuardAcquire before blocking on the lock (it validates and pushes the lock on
//     the thread's held stack; it throws LockOrderError when refused);
//   * LockOrderNoteTryAcquired after a successful try-lock (pushes without validating);
//   * LockOrderNoteRelease after unlocking (pops);
//   * LockOrderCancelAcquire if, after LockOrderGuardAcquire, the lock was not taken after
//     all (an exception, a timeout).
// All are no-ops while validation is off, except that they stay balanced for locks pushed
// while it was on.
struct LockClassRef {
  const LockClass* named = nullptr;     // wins when set
  SourceLocation site{};                // otherwise the class of this creation site
  mutable std::uint32_t cached_id = 0;  // resolved on first validated use (atomic_ref)
};

// The same description in 16 bytes rather than 24, for locks that are made by the hundred
// thousand (plexus::Mutex and RecursiveMutex: one per bus topic, for instance). A lock with a
// LockClass never looks at its creation site (the class's id lives in the LockClass), and a
// lock without one needs no LockClass pointer, so the two share one word; the site's id is
// cached beside it, and the kind fills what would otherwise be padding. LockClassRef keeps both
// for the locks that use both (GroupLock reports its creation site whatever its class).
//
// Thread safety: immutable after construction but for the cached id (atomic_ref).
class CompactLockClassRef {
 public:
  explicit CompactLockClassRef(const LockClass& cls) noexcept : named_(&cls), is_site_(false) {}
  explicit CompactLockClassRef(SourceLocation site) noexcept : site_(site), is_site_(true) {}
  CompactLockClassRef(const CompactLockClassRef&) = delete;
  CompactLockClassRef& operator=(const CompactLockClassRef&) = delete;

  // The class as a LockClassRef (a copy: its cached id does not write back).
  LockClassRef Expand() const noexcept {
    return is_site_ ? LockClassRef{nullptr, site_, cached_id_} : LockClassRef{named_, {}};
  }

 private:
  friend struct LockOrderAccess;
  static_assert(sizeof(SourceLocation) == sizeof(const LockClass*),
                "SourceLocation is expected to be one pointer (libstdc++, libc++)");
  union {
    const LockClass* named_;
    SourceLocation site_;
  };
  mutable std::uint32_t cached_id_ = 0;  // is_site_ only: resolved on first validated use
  const bool is_site_;
};

void LockOrderGuardAcquire(const void* lock, const LockClassRef& cls, SourceLocation where);
void LockOrderNoteTryAcquired(const void* lock, const LockClassRef& cls, SourceLocation where);
void LockOrderGuardAcquire(const void* lock, const CompactLockClassRef& cls, SourceLocation where);
void LockOrderNoteTryAcquired(const void* lock, const CompactLockClassRef& cls,
                              SourceLocation where);
void LockOrderNoteRelease(const void* lock);
void LockOrderCancelAcquire(const void* lock);

// True when the current thread holds `lock` on its validated held stack.
bool LockOrderHeldByCurrentThread(const void* lock);

}  // namespace plexus
