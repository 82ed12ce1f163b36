#include "epoch.h"

#include <cstdint>
#include <type_traits>

namespace plexus::bus_internal {
constinit EpochDomain EpochDomain::instance_;
static_assert(std::is_trivially_destructible_v<EpochDomain>);

constinit thread_local EpochReader tl_epoch_reader;

// Hands this thread's slot back to the domain when the thread exits (never inside a guard: a
// guard lives on the stack of a function that returns).
struct SlotReturn {
  ~SlotReturn() {
    if (tl_epoch_reader.slot != nullptr) {
      tl_epoch_reader.slot->in_use.store(false, std::memory_order_release);
      EpochDomain::Get().live_readers_.fetch_sub(1, std::memory_order_relaxed);
    }
    tl_epoch_reader.slot = nullptr;
  }
};

EpochDomain::Slot* EpochDomain::Acquire() noexcept {
  live_readers_.fetch_add(1, std::memory_order_relaxed);
  for (Slot* s = slots_.load(std::memory_order_acquire); s != nullptr; s = s->next) {
    bool free = false;
    if (!s->in_use.load(std::memory_order_relaxed) &&
        s->in_use.compare_exchange_strong(free, true, std::memory_order_acquire)) {
      return s;
    }
  }
  // Slots are never freed: a scan may be walking the list at any time. The link is sequentially
  // consistent, as the scans' loads of the head are: a scan that does not see a new slot comes
  // before its link, and so before its reader's first announcement, in the single total order.
  Slot* s = new Slot();
  s->in_use.store(true, std::memory_order_relaxed);
  Slot* head = slots_.load(std::memory_order_relaxed);
  do {
    s->next = head;
  } while (
      !slots_.compare_exchange_weak(head, s, std::memory_order_seq_cst, std::memory_order_relaxed));
  return s;
}

EpochDomain::Slot& EpochDomain::ThisThread() noexcept {
  if (tl_epoch_reader.slot == nullptr) {
    // Registers the slot's return for this thread's exit (its first use does).
    static thread_local SlotReturn slot_return;
    (void)slot_return;
    tl_epoch_reader.slot = Get().Acquire();
  }
  return *tl_epoch_reader.slot;
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

bool EpochDomain::NoReaderInside() const noexcept {
  // The count only decides whether to look: a stale one costs a scan or a stamp, never a wrong
  // answer, since the scan reads every slot of the list whatever the count says.
  if (live_readers_.load(std::memory_order_relaxed) > kMaxScannedReaders) return false;
  for (Slot* s = slots_.load(std::memory_order_seq_cst); s != nullptr; s = s->next) {
    if (s->announced.load(std::memory_order_seq_cst) != 0) return false;
  }
  return true;
}

bool EpochDomain::SafeToFree(std::uint64_t stamp) noexcept {
  if (epoch_.load(std::memory_order_seq_cst) >= stamp + 2) return true;
  return TryAdvance() >= stamp + 2;
}

}  // namespace plexus::bus_internal
