// Internal: a task processor's lock, with the facts a turn's end needs in the same word. Not API.
//
// A turn that ran out of tasks must end ("no turn scheduled") unless a push came meanwhile, and
// a push must queue a new turn if none is scheduled: a handshake between the turn and every
// producer. With a plain lock beside a plain flag that handshake costs the turn a lock and an
// unlock (two locked read-modify-writes) each time it ends, which on a serializer fed one task
// at a time (a ping-pong, a request and its reply) is every task. Here the lock's word also
// holds whether a turn is scheduled and whether a push went to the queue since the turn last
// looked at it, and every change of those flags is made by the read-modify-write that takes
// or lets go of the lock, or under it. So a turn whose queue saw no push ends with one
// compare-and-swap and no lock (TryEndTurn); every other path takes the lock as before, and a
// push still costs a lock and an unlock.
//
// The lock itself is Drepper's three-state futex mutex in the word's two low bits (free,
// held, held with sleepers possible), as sync_internal::FutexWord.
//
// Thread safety: a plain (non-recursive) leaf lock, any thread may take it. The flags change
// only under the lock or through TryEndTurn, which succeeds only while the lock is free, so a
// holder reads them stably. It carries the capability attribute, so clang's analysis checks
// what it guards and plexus::MutexLock accepts it.

#pragma once

#include <atomic>
#include <cstdint>

#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"

namespace plexus::exec_internal {

class PLEXUS_CAPABILITY("mutex") TurnWord {
 public:
  // A turn is queued on the pool or running.
  static constexpr std::uint32_t kScheduled = 1u << 2;
  // A push put a task in the queue the turn has not looked at since (its `incoming_`).
  static constexpr std::uint32_t kPushed = 1u << 3;
  // The turn's end must take the lock (someone waits for it, or the turn frees its processor).
  static constexpr std::uint32_t kSlowEnd = 1u << 4;

  TurnWord() noexcept = default;
  TurnWord(const TurnWord&) = delete;
  TurnWord& operator=(const TurnWord&) = delete;

  // For plexus::MutexLock, the guard clang's analysis understands.
  void Acquire(SourceLocation = SourceLocation::current()) noexcept PLEXUS_ACQUIRE() {
    if (!TryLock()) LockSlow();
  }
  bool TryAcquire(SourceLocation = SourceLocation::current()) noexcept PLEXUS_TRY_ACQUIRE(true) {
    return TryLock();
  }
  void Release() noexcept PLEXUS_RELEASE() { ReleaseWith(0, 0); }

  // Lets go of the lock and, in the same read-modify-write, sets the flags `set` and clears
  // the flags `clear`.
  void ReleaseWith(std::uint32_t set, std::uint32_t clear) noexcept PLEXUS_RELEASE() {
    std::uint32_t old = word_.load(std::memory_order_relaxed);
    while (!word_.compare_exchange_weak(old, ((old & ~kLockMask) & ~clear) | set,
                                        std::memory_order_release, std::memory_order_relaxed)) {
    }
    if ((old & kLockMask) == kContended) Wake();
  }

  // Whether `flag` is set. Call with the lock held (only then are the flags stable).
  bool Has(std::uint32_t flag) const noexcept {
    return (word_.load(std::memory_order_relaxed) & flag) != 0;
  }
  // Sets `set` and clears `clear`, keeping the lock. Call with the lock held; one more
  // read-modify-write, for the rare paths (a waiter, a resume, a shutdown).
  void Change(std::uint32_t set, std::uint32_t clear) noexcept {
    std::uint32_t old = word_.load(std::memory_order_relaxed);
    while (!word_.compare_exchange_weak(old, (old & ~clear) | set, std::memory_order_relaxed)) {
    }
  }

  // Whether TryEndTurn may succeed now: the lock is free and only kScheduled is set. A hint
  // (a push may come right after), read without the lock.
  bool MayEndTurn() const noexcept { return word_.load(std::memory_order_relaxed) == kScheduled; }
  // Ends the running turn without the lock: clears kScheduled if the lock is free and nothing
  // but kScheduled is set (no push since the turn last looked at the queue, nobody waits for
  // the end). Returns false, changing nothing, otherwise. On success the caller no longer owns
  // the turn: a push may schedule the next one at once, on another thread.
  bool TryEndTurn() noexcept {
    std::uint32_t expected = kScheduled;
    return word_.compare_exchange_strong(expected, 0, std::memory_order_acq_rel,
                                         std::memory_order_relaxed);
  }

 private:
  static constexpr std::uint32_t kLockMask = 3;
  static constexpr std::uint32_t kLocked = 1;     // held, nobody sleeping
  static constexpr std::uint32_t kContended = 2;  // held, someone may sleep on it

  bool TryLock() noexcept {
    std::uint32_t old = word_.load(std::memory_order_relaxed);
    // Retried while only the flags changed under it (a turn's end): fails only when held.
    while ((old & kLockMask) == 0) {
      if (word_.compare_exchange_weak(old, old | kLocked, std::memory_order_acquire,
                                      std::memory_order_relaxed)) {
        return true;
      }
    }
    return false;
  }
  // Spins a little, then sleeps on the word until it is acquired (turn_word.cc).
  void LockSlow() noexcept;
  // Wakes one sleeper.
  void Wake() noexcept;

  std::atomic<std::uint32_t> word_{0};
};

}  // namespace plexus::exec_internal
