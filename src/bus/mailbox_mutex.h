// The lock of a subscription's mailbox: held by a publisher for one enqueue (a few stores, the
// depth and alert bookkeeping, and, once per 15-slot segment when no recycled segment is spare,
// allocating one) or, under a bounded policy, by a turn taking a batch. Those are short, so a
// waiter spins briefly before it sleeps, and both sides never pay a system call while the
// other only passes through (glibc's mutex sleeps at once). Four bytes, which matters with
// 100 000 subscriptions: a sync_internal::FutexWord (Drepper's three-state futex mutex) and
// nothing else, its uncontended lock and unlock inline.
//
// A leaf lock: nothing is locked while it is held, and it is not lock-order validated (a
// validated lock would cost a publisher a branch and a thread-local access per message). It
// carries the capability attribute, so clang's analysis checks what it guards.

#pragma once

#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/internal/futex_word.h"

namespace plexus::bus_internal {

class PLEXUS_CAPABILITY("mutex") MailboxMutex {
 public:
  // For plexus::MutexLock, the guard clang's analysis understands.
  void Acquire(SourceLocation = SourceLocation::current()) noexcept PLEXUS_ACQUIRE() { lock(); }
  void Release() noexcept PLEXUS_RELEASE() { unlock(); }

  void lock() noexcept PLEXUS_ACQUIRE() { word_.Lock(); }
  bool try_lock() noexcept PLEXUS_TRY_ACQUIRE(true) { return word_.TryLock(); }
  void unlock() noexcept PLEXUS_RELEASE() { word_.Unlock(); }

 private:
  sync_internal::FutexWord word_;
};

}  // namespace plexus::bus_internal
