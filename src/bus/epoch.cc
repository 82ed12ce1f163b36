#include "epoch.h"

#include <cstdint>

namespace plexus::bus_internal {
namespace {

// A thread's slot and how deep its guards are nested; the slot goes back to the domain when the
// thread exits (never inside a guard: a guard lives on the stack of a function that returns).
struct ThreadState {
  EpochDomain::Slot* slot = nullptr;
  std::uint32_t depth = 0;
  ~ThreadState() {
    if (slot != nullptr) slot->in_use.store(false, std::memory_order_release);
    slot = nullptr;
  }
};

thread_local ThreadState tl_state;

}  // namespace

EpochDomain& EpochDomain::Get() noexcept {
  // Never destroyed: threads that exit after static destruction still hand their slot back.
  static EpochDomain* const domain = new EpochDomain();
  return *domain;
}

EpochDomain::Slot* EpochDomain::Acquire() noexcept {
  for (Slot* s = slots_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    bool free = false;
    if (!s->in_use.load(std::memory_order_relaxed) &&
        s->in_use.compare_exchange_strong(free, true, std::memory_order_acquire)) {
      return s;
    }
  }
  // Slots are never freed: a scan may be walking the list at any time.
  Slot* s = new Slot();
  s->in_use.store(true, std::memory_order_relaxed);
  Slot* head = slots_.load(std::memory_order_relaxed);
  do {
    s->next = head;
  } while (
      !slots_.compare_exchange_weak(head, s, std::memory_order_release, std::memory_order_relaxed));
  return s;
}

EpochDomain::Slot& EpochDomain::ThisThread() noexcept {
  if (tl_state.slot == nullptr) tl_state.slot = Get().Acquire();
  return *tl_state.slot;
}

std::uint64_t EpochDomain::TryAdvance() noexcept {
  std::uint64_t e = epoch_.load(std::memory_order_seq_cst);
  for (Slot* s = slots_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    const std::uint64_t a = s->announced.load(std::memory_order_seq_cst);
    if (a != 0 && a != e) return e;  // a reader still in an older epoch
  }
  // A failed exchange means another writer advanced it: as good.
  epoch_.compare_exchange_strong(e, e + 1, std::memory_order_seq_cst);
  return epoch_.load(std::memory_order_seq_cst);
}

bool EpochDomain::SafeToFree(std::uint64_t stamp) noexcept {
  if (epoch_.load(std::memory_order_seq_cst) >= stamp + 2) return true;
  return TryAdvance() >= stamp + 2;
}

EpochGuard::EpochGuard() noexcept {
  ThreadState& t = tl_state;
  if (t.depth++ != 0) return;
  if (t.slot == nullptr) t.slot = &EpochDomain::ThisThread();
  // Announce before loading anything the guard protects (see epoch.h, "Ordering").
  t.slot->announced.store(EpochDomain::Get().Current(), std::memory_order_seq_cst);
}

EpochGuard::~EpochGuard() {
  ThreadState& t = tl_state;
  if (--t.depth != 0) return;
  t.slot->announced.store(0, std::memory_order_release);
}

}  // namespace plexus::bus_internal
