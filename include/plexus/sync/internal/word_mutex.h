// Internal: a leaf mutex of four bytes for plexus's hottest short critical sections, such as a
// bus subscription's mailbox (a publisher's enqueue, a turn taking a batch). Not API. (A task
// processor's queue uses exec_internal::TurnWord, the same lock with its turn's flags in the
// word.)
//
// It is a sync_internal::FutexWord (Drepper's three-state futex mutex) and nothing else: the
// uncontended lock and unlock are inline (one compare-and-swap, one exchange), where glibc's
// mutex costs two out-of-line calls; a waiter spins briefly before it sleeps, so neither side
// pays a system call while the other only passes through; and four bytes matter with 100 000
// subscriptions or task processors.
//
// Thread safety: a plain (non-recursive) lock, any thread may take it. A leaf: nothing may be
// locked while it is held, and it is not lock-order validated (a validated lock would cost a
// branch and a thread-local access per message). It carries the capability attribute, so
// clang's analysis checks what it guards and plexus::MutexLock accepts it; it has no CondVar
// support.

#pragma once

#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/internal/futex_word.h"

namespace plexus::sync_internal {

class PLEXUS_CAPABILITY("mutex") WordMutex {
 public:
  // For plexus::MutexLock, the guard clang's analysis understands.
  void Acquire(SourceLocation = SourceLocation::current()) noexcept PLEXUS_ACQUIRE() { lock(); }
  bool TryAcquire(SourceLocation = SourceLocation::current()) noexcept PLEXUS_TRY_ACQUIRE(true) {
    return try_lock();
  }
  void Release() noexcept PLEXUS_RELEASE() { unlock(); }

  // For std::unique_lock and the other standard guards.
  void lock() noexcept PLEXUS_ACQUIRE() { word_.Lock(); }
  bool try_lock() noexcept PLEXUS_TRY_ACQUIRE(true) { return word_.TryLock(); }
  void unlock() noexcept PLEXUS_RELEASE() { word_.Unlock(); }

 private:
  FutexWord word_;
};

}  // namespace plexus::sync_internal
