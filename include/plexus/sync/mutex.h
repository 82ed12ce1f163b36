// -----------------------------------------------------------------------------
// plexus/sync/mutex.h
// -----------------------------------------------------------------------------
//
// Mutex and RecursiveMutex: std::mutex and a recursive mutex (std::recursive_mutex's contract,
// with a cheaper lock of plexus's own inside: sync/internal/futex_recursive_mutex.h) with two
// additions a server needs from its own locks:
//
//   * lock-order validation (lock_order.h): each lock has a class, by name or by the line
//     that constructed it, and inversions between classes are reported before they deadlock;
//   * clang thread-safety annotations (PLEXUS_GUARDED_BY(mu_) works on members guarded by
//     them; std::mutex carries no capability attribute).
//
// They are Lockable (lock/try_lock/unlock), so std::scoped_lock and std::unique_lock work,
// and they have the explicit spelling GroupLock has, Acquire/TryAcquire/Release, which
// takes the caller's location for the validator's reports; a GroupLock they are chained to
// passes its own caller's location through. MutexLock is the scoped guard that clang's
// analysis understands.
//
// Thread safety: thread-safe, with the usual mutex contract: unlock only from the thread that
// locked; RecursiveMutex may be locked again by its owner and needs as many unlocks.
// Unlocking a Mutex the thread does not hold is undefined behaviour as for std::mutex; with
// validation on it is reported as misuse first.
//
// Cost: with validation off, lock/unlock cost the inner lock's plus one predictable branch each.

#pragma once

#include <mutex>

#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/internal/futex_recursive_mutex.h"
#include "plexus/sync/internal/lock_order_flag.h"
#include "plexus/sync/lock_order.h"

namespace plexus {

class CondVar;

namespace sync_internal {

// std::mutex with the capability attribute and nothing else (no validation): for plexus's
// own leaf locks, which are never held while another lock is taken.
class PLEXUS_CAPABILITY("mutex") AnnotatedMutex {
 public:
  void Acquire(SourceLocation = SourceLocation::current()) PLEXUS_ACQUIRE() { mu_.lock(); }
  bool TryAcquire(SourceLocation = SourceLocation::current()) PLEXUS_TRY_ACQUIRE(true) {
    return mu_.try_lock();
  }
  void Release() PLEXUS_RELEASE() { mu_.unlock(); }
  void lock() PLEXUS_ACQUIRE() { mu_.lock(); }
  bool try_lock() PLEXUS_TRY_ACQUIRE(true) { return mu_.try_lock(); }
  void unlock() PLEXUS_RELEASE() { mu_.unlock(); }

 private:
  friend class ::plexus::CondVar;
  std::mutex mu_;
};

// The shared body of Mutex and RecursiveMutex.
template <class StdMutex>
class PLEXUS_CAPABILITY("mutex") ValidatedMutex {
 public:
  explicit ValidatedMutex(SourceLocation created = SourceLocation::current()) noexcept
      : class_(created) {}
  explicit ValidatedMutex(const LockClass& cls) noexcept : class_(cls) {}
  ValidatedMutex(const ValidatedMutex&) = delete;
  ValidatedMutex& operator=(const ValidatedMutex&) = delete;

  void Acquire(SourceLocation where = SourceLocation::current()) PLEXUS_ACQUIRE() {
    if (LockOrderOn()) LockOrderGuardAcquire(this, class_, where);
    mu_.lock();
  }
  bool TryAcquire(SourceLocation where = SourceLocation::current()) PLEXUS_TRY_ACQUIRE(true) {
    if (!mu_.try_lock()) return false;
    if (LockOrderOn()) LockOrderNoteTryAcquired(this, class_, where);
    return true;
  }
  void Release() PLEXUS_RELEASE() {
    mu_.unlock();
    if (LockOrderEver()) LockOrderNoteRelease(this);
  }

  // Lockable.
  void lock() PLEXUS_ACQUIRE() { Acquire(); }
  bool try_lock() PLEXUS_TRY_ACQUIRE(true) { return TryAcquire(); }
  void unlock() PLEXUS_RELEASE() { Release(); }

  LockClassRef Class() const noexcept { return class_.Expand(); }

 private:
  friend class ::plexus::CondVar;
  StdMutex mu_;
  // Compact (16 bytes, not LockClassRef's 24): these locks are many, and a lock with a class
  // never needs its creation site.
  CompactLockClassRef class_;
};

}  // namespace sync_internal

// A non-recursive mutex with lock-order validation. See the file comment.
class PLEXUS_CAPABILITY("mutex") Mutex : public sync_internal::ValidatedMutex<std::mutex> {
 public:
  // Constructors are spelled out rather than inherited: an inherited constructor would
  // evaluate the defaulted SourceLocation at the using-declaration, giving every Mutex the
  // same class.
  explicit Mutex(SourceLocation created = SourceLocation::current()) noexcept
      : ValidatedMutex(created) {}
  explicit Mutex(const LockClass& cls) noexcept : ValidatedMutex(cls) {}
};

// A recursive mutex with lock-order validation. See the file comment.
class PLEXUS_CAPABILITY("mutex") RecursiveMutex
    : public sync_internal::ValidatedMutex<sync_internal::FutexRecursiveMutex> {
 public:
  explicit RecursiveMutex(SourceLocation created = SourceLocation::current()) noexcept
      : ValidatedMutex(created) {}
  explicit RecursiveMutex(const LockClass& cls) noexcept : ValidatedMutex(cls) {}
};

// Scoped guard for Mutex/RecursiveMutex that clang's thread-safety analysis understands.
template <class M>
class PLEXUS_SCOPED_CAPABILITY MutexLock {
 public:
  explicit MutexLock(M& mu, SourceLocation where = SourceLocation::current()) PLEXUS_ACQUIRE(mu)
      : mu_(mu) {
    mu_.Acquire(where);
  }
  ~MutexLock() PLEXUS_RELEASE() { mu_.Release(); }
  MutexLock(const MutexLock&) = delete;
  MutexLock& operator=(const MutexLock&) = delete;

 private:
  M& mu_;
};
template <class M>
MutexLock(M&) -> MutexLock<M>;

}  // namespace plexus
