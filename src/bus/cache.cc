// The cache and the caching topic.
//
// Cache: kShards shards. Each publishes a Table (open addressing, linear probing, pointers to
// CacheEntry objects, at most half full counting tombstones) through an atomic pointer, and has
// a writer mutex (`writer`, a futex word) that serializes its writers. Readers enter an epoch
// (epoch.h), load the table and probe it, load what they want from the entry, take a reference
// on it, and leave; they take no lock. A write, under `writer`:
//   1. probes the table for the current entry (the writer mutex keeps it current);
//   2. if it stores a local snapshot into an existing entry, the cache has no aggregate function
//      and no reader holds the entry whole (below), exchanges the entry's local snapshot pointer
//      and hands the entry's reference to the replaced snapshot to the change it returns if no
//      reader is inside an epoch then, or else retires the replaced snapshot into the shard's
//      limbo (CacheShard::HandOverReplaced): steps 3-5 are skipped;
//   3. otherwise builds the next entry (reused from this thread's pool, or new), a copy with one
//      node's slot replaced or removed, and runs the aggregate function on it (user code, under
//      `writer`);
//   4. stores the next entry's pointer into the slot (or a tombstone, or links it into a free
//      slot, growing the table first if it would pass half full: the new table is published
//      whole and the old one retired);
//   5. retires the entry it replaced into the shard's limbo;
//   6. stamps what it retired with the epoch, and takes out of the limbo what no reader can reach
//      any more.
// What comes out of the limbo is let go after `writer` (snapshots are user types, whose
// destructors must not run under a lock); an entry nobody else holds is emptied and kept in
// the writing thread's pool for its next write.
//
// Entries held whole: GetEntry, DumpEntries and the aggregate function hand out entries that
// their holders may read at leisure, so those must never change. GetEntry and DumpEntries mark
// the entry (`pinned_`) before they take their reference; a write in place marks the entry
// (`writing_`) before it looks for the reader's mark. Both stores and both loads are
// sequentially consistent, so at least one side sees the other's: the writer builds a new entry
// instead, or the reader hands out a copy (the write in place may be changing the local snapshot
// under it). A cache with an aggregate function never writes in place. The other readers (Get,
// GetByNode, GetAll, the snapshot dumps) take references on snapshots inside their epoch and
// hold no entry: a snapshot they loaded just before it was replaced waits in the limbo, with the
// entry's reference, until they left.
//
// The aggregate function may read (readers take no lock); a write from it would take its own
// shard's writer mutex again, so a thread-local marks "inside the aggregate function of cache
// X" and such a write is refused as misuse.
//
// Node removal: RemoveNode registers the node in `removals_`, clears it shard by shard, and
// unregisters it. A Put of a registered node stores nothing: the writer checks the registry
// under its shard's writer mutex, so a Put either ran in that shard before the removal walked
// it (and was removed) or sees the registration.
//
// CachingTopic: a synchronous subscription on its source topic (the original, or a tap of it:
// see CachePatternOne) whose callback holds a CachingCore (the cache, the output topic, the
// original topic, counters) but not the CachingTopic: dropping the CachingTopic drops the
// subscription handle, which unsubscribes; the final message then lets the callback, and with
// it the core, go. No cycle survives an unsubscribe, whatever order the handles are dropped in.

#include "plexus/bus/cache.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <exception>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "epoch.h"
#include "inline_receiver.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/subscription_change.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/misuse.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/internal/futex_word.h"
#include "plexus/sync/mutex.h"
#include "registry.h"

namespace plexus {
namespace bus_internal {
namespace {

std::uint64_t Load64(const char* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}
std::uint64_t Load32(const char* p) noexcept {
  std::uint32_t w;
  std::memcpy(&w, p, sizeof w);
  return w;
}

// Ids are short (Asterisk's uniqueids are 15-20 bytes) and every read and write hashes one:
// eight bytes per multiply, the tail read as one (overlapping) word, instead of a general
// byte-string hash, which costs a read several times over. The multiplies and folds spread the
// changing last digits over the low bits (the slot) and the high ones (the shard).
std::size_t HashId(std::string_view id) noexcept {
  constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;
  const char* p = id.data();
  std::size_t n = id.size();
  std::uint64_t h = (n + 1) * kMul;
  auto mix = [&h](std::uint64_t w) {
    h = (h ^ w) * kMul;
    h ^= h >> 32;
  };
  if (n >= 8) {
    const char* const last = p + n - 8;
    for (; p < last; p += 8) mix(Load64(p));
    mix(Load64(last));
  } else if (n >= 4) {
    mix(Load32(p) | (Load32(p + n - 4) << 32));
  } else if (n > 0) {
    mix(static_cast<unsigned char>(p[0]) |
        (std::uint64_t{static_cast<unsigned char>(p[n / 2])} << 8) |
        (std::uint64_t{static_cast<unsigned char>(p[n - 1])} << 16));
  }
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 29);
}

// Whether an entry's id is `id`. Ids of 8 to 16 bytes (most of them) are compared as two
// (overlapping) words, without a call to memcmp.
[[gnu::always_inline]] inline bool IdEquals(const std::string& held, std::string_view id) noexcept {
  const std::size_t n = id.size();
  if (held.size() != n) return false;
  const char* a = held.data();
  const char* b = id.data();
  if (n >= 8 && n <= 16) {
    return ((Load64(a) ^ Load64(b)) | (Load64(a + n - 8) ^ Load64(b + n - 8))) == 0;
  }
  return n == 0 || std::memcmp(a, b, n) == 0;
}

std::size_t HashKey(const MessageType* type, std::string_view id) noexcept {
  // The type's dense id rather than its address: addresses share their low bits.
  return HashId(id) ^ (std::size_t{type->Id()} * 0x9E3779B97F4A7C15ull);
}

// Marks a slot whose entry was removed: a probe goes on past it, an insert may reuse it.
alignas(64) const char kTombstoneByte = 0;
const CacheEntry* Tombstone() noexcept {
  return reinterpret_cast<const CacheEntry*>(&kTombstoneByte);
}

// Sets an entry's id. The entry the pool gives back usually held an id of the same length (ids
// of one kind share a shape): overwritten in place, not through std::string's general replace.
void AssignId(std::string& to, std::string_view id) {
  if (to.size() == id.size()) {
    if (!id.empty()) std::memcpy(to.data(), id.data(), id.size());
  } else {
    to.assign(id.data(), id.size());
  }
}

// The cache whose aggregate function this thread is running, if any.
thread_local const Cache* tl_aggregating = nullptr;

// Entries this thread replaced and nobody held any more, emptied, for its next writes: an
// update of an existing entry then allocates nothing. Bounded; freed when the thread exits.
struct EntryPool {
  static constexpr std::size_t kMax = 256;
  std::vector<CacheEntry*> free;
  ~EntryPool() {
    for (CacheEntry* e : free) Ref<CacheEntry>::Adopt(e).Reset();
  }
};
thread_local EntryPool tl_entry_pool;

// Whether a replaced entry may be reused. Not under ThreadSanitizer: the reuse relies on an
// acquire fence after the reference-count check, which it does not model.
#if defined(__SANITIZE_THREAD__)
constexpr bool kReuseEntries = false;
#else
constexpr bool kReuseEntries = true;
#endif

}  // namespace

// A shard's writer mutex: a futex word (sync_internal::FutexWord), its uncontended lock and
// unlock one compare-and-swap and one exchange, inline. Every write takes it once, and
// std::mutex's pair costs some 40 instructions in two calls into libc. Not recursive: a thread
// never takes it twice (a write from the cache's aggregate function is refused before it would).
// A waiter spins a little, then sleeps (the holder may be running an aggregate function).
class PLEXUS_CAPABILITY("mutex") WriterMutex {
 public:
  void Acquire(SourceLocation = SourceLocation::current()) PLEXUS_ACQUIRE() { word_.Lock(); }
  void Release() PLEXUS_RELEASE() { word_.Unlock(); }

 private:
  sync_internal::FutexWord word_;
};

// One slot of a table: an entry's pointer (null: never used; Tombstone(): removed) with the top
// bits of the entry's hash in the pointer's low bits, which are zero in every entry's address.
// A probe compares those bits with the key's before it loads anything from the entry, so it
// passes over a slot of another key (7 times in 8) without the cache miss of that entry.
class CacheSlot {
 public:
  static constexpr std::uintptr_t kTagMask = 7;
  static_assert(alignof(CacheEntry) > kTagMask, "the tag lives in an entry's alignment bits");

  // The slot's word, for Matches and EntryOf.
  std::uintptr_t Word(std::memory_order order) const noexcept { return word_.load(order); }
  const CacheEntry* Load(std::memory_order order) const noexcept { return EntryOf(Word(order)); }
  // Stores `e`, whose key's hash is `hash` (ignored for a tombstone).
  void Store(const CacheEntry* e, std::size_t hash, std::memory_order order) noexcept {
    auto w = reinterpret_cast<std::uintptr_t>(e);
    if (e != Tombstone()) w |= TagOf(hash);
    word_.store(w, order);
  }

  static const CacheEntry* EntryOf(std::uintptr_t word) noexcept {
    return reinterpret_cast<const CacheEntry*>(word & ~kTagMask);
  }
  // Whether a slot holding `word`, neither empty nor a tombstone, may hold the key of `hash`.
  static bool Matches(std::uintptr_t word, std::size_t hash) noexcept {
    return (word & kTagMask) == TagOf(hash);
  }
  static std::uintptr_t TombstoneWord() noexcept {
    return reinterpret_cast<std::uintptr_t>(Tombstone());
  }

 private:
  // The top bits: the low ones pick the slot, so neighbouring entries would share them.
  static std::uintptr_t TagOf(std::size_t hash) noexcept { return hash >> 61; }
  std::atomic<std::uintptr_t> word_{0};
};

// One table of a shard: a power-of-two array of slots.
struct CacheTable {
  explicit CacheTable(std::size_t capacity) : mask(capacity - 1), slots(new CacheSlot[capacity]) {}
  std::size_t Capacity() const noexcept { return mask + 1; }

  const std::size_t mask;
  const std::unique_ptr<CacheSlot[]> slots;
};

// Something a writer unlinked, kept until no reader can reach it: an entry (with the reference
// its slot held), a local snapshot replaced in place (with the reference its entry held) or a
// table outgrown. Plain pointers, so that retiring and collecting copy four words; whoever
// takes one out of the limbo lets it go (CacheShard::Release).
struct Retired {
  std::uint64_t stamp;
  const CacheEntry* entry;
  CacheTable* table;
  Message* snapshot;
};

// What a writer takes out of the limbo, let go after its lock.
using Ripe = std::vector<Retired>;

// The writing thread's buffer for Ripe, kept between writes so a write allocates nothing.
// Taken (moved out) for the length of a write: a nested write gets an empty one.
thread_local Ripe tl_ripe;
Ripe TakeRipeBuffer() noexcept {
  return std::exchange(tl_ripe, Ripe{});
}
void GiveBackRipeBuffer(Ripe&& ripe) noexcept {
  if (ripe.capacity() > tl_ripe.capacity()) tl_ripe = std::move(ripe);
}

// One shard. Aligned to the cache line so that neighbouring shards do not share the line their
// table pointer lives on.
struct alignas(64) CacheShard {
  static constexpr std::size_t kMinCapacity = 16;
  // Limbo size from which a write tries to empty it (reading every reader's epoch slot), at
  // least: the batch is as large as the number of reader threads, so that the scan costs each
  // write a bounded share however many threads read (see CollectRipe).
  static constexpr std::size_t kLimboBatch = 8;
  // Writes that retire a replaced snapshot without a scan after a scan found a reader.
  static constexpr std::uint32_t kHandOverBackoff = 15;

  ~CacheShard() {
    // No reader is left (each holds the cache): what waits in the limbo goes at once (not into
    // this thread's pool, which may be gone already if the thread is exiting).
    for (const Retired& r : limbo) {
      delete r.table;
      if (r.snapshot != nullptr) Ref<Message>::Adopt(r.snapshot).Reset();
      if (r.entry != nullptr) Ref<const CacheEntry>::Adopt(r.entry).Reset();
    }
    CacheTable* t = table.load(std::memory_order_relaxed);
    if (t == nullptr) return;
    for (std::size_t i = 0; i < t->Capacity(); ++i) {
      const CacheEntry* e = t->slots[i].Load(std::memory_order_relaxed);
      if (e != nullptr && e != Tombstone()) Ref<const CacheEntry>::Adopt(e).Reset();
    }
    delete t;
  }

  // The slot holding (type, id), or the table's capacity if there is none; `free_slot`
  // receives the first slot a new entry of that key could take. Readers use FindEntry.
  // Inline: every write probes once, and a call costs more than the short probe.
  [[gnu::always_inline]] inline std::size_t Probe(const CacheTable& t, const MessageType* type,
                                                  std::string_view id, std::size_t hash,
                                                  std::size_t& free_slot) const
      PLEXUS_REQUIRES(writer) {
    free_slot = t.Capacity();
    for (std::size_t i = hash & t.mask;; i = (i + 1) & t.mask) {
      const std::uintptr_t w = t.slots[i].Word(std::memory_order_relaxed);
      if (w == 0) {
        if (free_slot == t.Capacity()) free_slot = i;
        return t.Capacity();
      }
      if (w == CacheSlot::TombstoneWord()) {
        if (free_slot == t.Capacity()) free_slot = i;
      } else if (CacheSlot::Matches(w, hash)) {
        const CacheEntry* e = CacheSlot::EntryOf(w);
        // The entry's first line only (cache.h, "Layout"): the tag stands in for the hash.
        if (e->type_ == type && IdEquals(e->id_, id)) return i;
      }
    }
  }

  // Makes room for one more entry: a table at most half full (tombstones count) afterwards.
  CacheTable& Reserve() PLEXUS_REQUIRES(writer) {
    CacheTable* t = table.load(std::memory_order_relaxed);
    if (t != nullptr && (used + 1) * 2 <= t->Capacity()) return *t;
    std::size_t capacity = kMinCapacity;
    while (capacity < (live + 1) * 4) capacity *= 2;
    auto next = std::make_unique<CacheTable>(capacity);
    if (t != nullptr) {
      // The entries move over with their references: the old table no longer owns any.
      for (std::size_t i = 0; i < t->Capacity(); ++i) {
        const CacheEntry* e = t->slots[i].Load(std::memory_order_relaxed);
        if (e == nullptr || e == Tombstone()) continue;
        std::size_t j = e->hash_ & next->mask;
        while (next->slots[j].Load(std::memory_order_relaxed) != nullptr) j = (j + 1) & next->mask;
        next->slots[j].Store(e, e->hash_, std::memory_order_relaxed);
      }
    }
    used = live;
    CacheTable* published = next.release();
    table.store(published, std::memory_order_seq_cst);
    if (t != nullptr) Retire(nullptr, t);
    return *published;
  }

  // Keeps `entry` (with its slot's reference), `t` or `snapshot` (with its entry's reference),
  // unlinked just before, until no reader can reach it.
  void Retire(const CacheEntry* entry, CacheTable* t, Message* snapshot = nullptr)
      PLEXUS_REQUIRES(writer) {
    limbo.push_back(Retired{EpochDomain::Get().Current(), entry, t, snapshot});
  }

  // Stores `snapshot` as `entry`'s local snapshot in place, with one atomic exchange, unless a
  // reader holds the entry whole (then nothing is done and false returned: the caller builds a
  // new entry). `replaced` receives the replaced snapshot with a reference for the caller, or
  // null. That reference is the entry's own when no reader is inside an epoch after the
  // exchange (HandOverReplaced); otherwise the snapshot waits in the limbo, with the entry's
  // reference, for the readers that may have loaded it, and the caller gets a new reference.
  bool WriteLocalInPlace(CacheEntry& entry, Message* snapshot, Message*& replaced)
      PLEXUS_REQUIRES(writer) {
    if (entry.pinned_.load(std::memory_order_relaxed)) return false;
    // Announce the write, then look for a reader's mark (Hold does the converse).
    entry.writing_.store(true, std::memory_order_seq_cst);
    if (entry.pinned_.load(std::memory_order_seq_cst)) [[unlikely]] {
      entry.writing_.store(false, std::memory_order_release);
      return false;
    }
    Message* const old =
        entry.local_.exchange(Ref<Message>(snapshot).Detach(), std::memory_order_seq_cst);
    entry.writing_.store(false, std::memory_order_release);
    if (old != nullptr) {
      if (HandOverReplaced()) {
        replaced = old;
      } else {
        Retire(nullptr, nullptr, old);
        replaced = Ref<Message>(old).Detach();
      }
    }
    return true;
  }

  // Whether the entry's reference to a snapshot just replaced in place (by a sequentially
  // consistent exchange, the unlink) may pass to the writer's caller at once, instead of waiting
  // in the limbo while the caller takes a reference of its own. A reader reaches a local
  // snapshot only by loading the entry's pointer inside an epoch guard, and takes its reference
  // inside the guard. With no reader inside a guard after the unlink (NoReaderInside, whose
  // loads follow the exchange in the single total order), every reader either left its guard
  // (its leave, a release store, follows the reference it took: the scan's load that read it
  // orders that increment before any decrement of the caller's) or announced itself after the
  // scan's load of its slot, and so after the exchange, and loads the new pointer. Nobody can
  // take a reference from the old pointer any more: the entry's reference is the caller's to
  // keep or drop. This spares the caller's increment on the replaced snapshot and the limbo's
  // decrement a few writes later, each a cache miss when another thread (the update's
  // subscriber) wrote the count last, and the snapshot's slot in the limbo.
  //
  // While readers are inside guards the scan fails at the first slot it reads (a line the
  // reader writes: a miss); after a failure the shard's next kHandOverBackoff writes retire
  // without scanning, so a shard read all the time pays that miss once in that many writes.
  bool HandOverReplaced() PLEXUS_REQUIRES(writer) {
    if (hand_over_backoff != 0) {
      --hand_over_backoff;
      return false;
    }
    if (EpochDomain::Get().NoReaderInside()) return true;
    hand_over_backoff = kHandOverBackoff;
    return false;
  }

  // `e`, found by a reader inside its epoch, for the reader to keep: marked held, so that no
  // write changes it any more, or, if a write in place is under way, a copy of it.
  static Ref<const CacheEntry> Hold(const CacheEntry* e) {
    // Once held, always held: the store is skipped (the acquire orders this reader's check of
    // `writing_` after the store it saw, in the single total order).
    if (!e->pinned_.load(std::memory_order_acquire)) {
      e->pinned_.store(true, std::memory_order_seq_cst);
    }
    if (!e->writing_.load(std::memory_order_seq_cst)) [[likely]] {
      return Ref<const CacheEntry>(e);
    }
    // The writer may have checked before the mark: its snapshot may change under the reader.
    return Ref<const CacheEntry>::Adopt(e->Copy());
  }

  // Calls `fn` with every entry (of `type` only, unless null) of `shards`, inside one epoch per
  // shard: what `fn` keeps, it takes references on.
  template <class Fn>
  static void ForEachEntry(const CacheShard* shards, std::size_t n, const MessageType* type,
                           Fn&& fn) {
    for (std::size_t i = 0; i < n; ++i) {
      // One epoch per shard: a long walk does not hold reclamation back for the whole of it.
      EpochGuard guard;
      const CacheTable* t = shards[i].table.load(std::memory_order_seq_cst);
      if (t == nullptr) continue;
      for (std::size_t j = 0; j < t->Capacity(); ++j) {
        const CacheEntry* e = t->slots[j].Load(std::memory_order_seq_cst);
        if (e == nullptr || e == Tombstone()) continue;
        if (type == nullptr || e->type_ == type) fn(*e);
      }
    }
  }

  // Whether a write should try to empty the limbo (CollectRipe).
  bool LimboFull() const PLEXUS_REQUIRES(writer) { return limbo.size() >= collect_at; }

  // Moves what no reader can reach any more out of the limbo into `ripe`.
  void CollectRipe(Ripe& ripe) PLEXUS_REQUIRES(writer) {
    if (!LimboFull()) return;
    EpochDomain& domain = EpochDomain::Get();
    // Stamps only grow along the limbo: stop at the first one still reachable. (Retired is
    // three plain words: the moves below are memmoves.)
    std::size_t n = 0;
    while (n < limbo.size() && domain.SafeToFree(limbo[n].stamp)) ++n;
    // The next try comes a batch later, whether this one freed anything or not: each try may
    // read every reader's slot (TryAdvance), so with a batch of at least LiveReaders() writes
    // between tries a write pays for about one slot read, not one per reader thread.
    collect_at = limbo.size() - n + std::max<std::size_t>(kLimboBatch, domain.LiveReaders());
    if (n == 0) return;
    ripe.insert(ripe.end(), limbo.begin(), limbo.begin() + static_cast<std::ptrdiff_t>(n));
    limbo.erase(limbo.begin(), limbo.begin() + static_cast<std::ptrdiff_t>(n));
  }

  // Lets go of what a writer took out of the limbo (after its lock): entries nobody else holds
  // are emptied and kept for this thread's next writes.
  static void Release(Ripe& ripe) {
    for (const Retired& r : ripe) {
      delete r.table;
      if (r.snapshot != nullptr) Ref<Message>::Adopt(r.snapshot).Reset();
      if (r.entry == nullptr) continue;
      if (kReuseEntries && r.entry->RefCount() == 1 &&
          tl_entry_pool.free.size() < EntryPool::kMax) {
        // The last other holder's release (an acq_rel decrement) happens before the reuse.
        std::atomic_thread_fence(std::memory_order_acquire);
        auto* e = const_cast<CacheEntry*>(r.entry);
        e->Clear();
        tl_entry_pool.free.push_back(e);
      } else {
        Ref<const CacheEntry>::Adopt(r.entry).Reset();
      }
    }
    ripe.clear();
  }

  WriterMutex writer;
  // Read without a lock (inside an epoch); replaced under `writer`.
  std::atomic<CacheTable*> table{nullptr};
  std::size_t live PLEXUS_GUARDED_BY(writer) = 0;  // slots holding an entry
  std::size_t used PLEXUS_GUARDED_BY(writer) = 0;  // slots holding an entry or a tombstone
  std::vector<Retired> limbo PLEXUS_GUARDED_BY(writer);
  // The limbo size at which the next write tries to empty it (LimboFull).
  std::size_t collect_at PLEXUS_GUARDED_BY(writer) = kLimboBatch;
  // Writes left that retire a replaced snapshot without looking for readers (HandOverReplaced).
  std::uint32_t hand_over_backoff PLEXUS_GUARDED_BY(writer) = 0;
  // Snapshots stored and removed (Cache::Stats sums the shards). Written under `writer` only,
  // so a load and a store, not a locked add; read by Stats at any time.
  std::atomic<std::uint64_t> puts{0};
  std::atomic<std::uint64_t> clears{0};

  static void Count(std::atomic<std::uint64_t>& counter) {
    counter.store(counter.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed);
  }
};

// The nodes whose removal is under way (usually none: a Put checks `count` first).
struct CacheRemovals {
  std::atomic<std::uint32_t> count{0};
  sync_internal::AnnotatedMutex mu;
  std::vector<NodeId> nodes PLEXUS_GUARDED_BY(mu);
};

}  // namespace bus_internal

using bus_internal::CacheShard;
using bus_internal::CacheTable;
using bus_internal::EpochGuard;
using bus_internal::Ripe;

// --- CacheEntry ------------------------------------------------------------------------------

Ref<Message> CacheEntry::ForNode(const NodeId& node) const {
  if (node.IsNone()) return aggregate_;
  // The local snapshot carries its cache's local node (Put files snapshots by their node).
  Message* local = LocalPointer();
  if (local != nullptr && local->Node() == node) return Ref<Message>(local);
  for (const NodeSnapshot& s : foreign_) {
    if (s.node == node) return s.snapshot;
  }
  return nullptr;
}

std::vector<Ref<Message>> CacheEntry::All() const {
  std::vector<Ref<Message>> out;
  out.reserve(foreign_.size() + 1);
  if (Message* local = LocalPointer()) out.emplace_back(local);
  for (const NodeSnapshot& s : foreign_) out.push_back(s.snapshot);
  return out;
}

void CacheEntry::Clear() {
  if (Message* local = local_.exchange(nullptr, std::memory_order_relaxed)) {
    Ref<Message>::Adopt(local).Reset();
  }
  foreign_.clear();
  aggregate_.Reset();
  pinned_.store(false, std::memory_order_relaxed);
}

void CacheEntry::SetLocal(Message* snapshot) {
  local_.store(Ref<Message>(snapshot).Detach(), std::memory_order_relaxed);
}

CacheEntry* CacheEntry::Copy() const {
  auto* copy = new CacheEntry();
  copy->type_ = type_;
  copy->id_ = id_;
  copy->hash_ = hash_;
  // The caller is inside an epoch: the snapshot it loads stays allocated until it took its
  // reference. The other fields never change while readers see the entry.
  copy->SetLocal(LocalPointer());
  copy->foreign_ = foreign_;
  copy->aggregate_ = aggregate_;
  copy->pinned_.store(true, std::memory_order_relaxed);
  return copy;
}

// --- Cache -----------------------------------------------------------------------------------

Ref<Cache> Cache::Create(CacheIdFunction id, SourceLocation where) {
  return Create(std::move(id), nullptr, nullptr, where);
}

Ref<Cache> Cache::Create(CacheIdFunction id, AggregateFunction aggregate,
                         AggregatePublishFunction publish_aggregate, SourceLocation where) {
  return Create(std::move(id), std::move(aggregate), std::move(publish_aggregate), NodeId::Local(),
                where);
}

Ref<Cache> Cache::Create(CacheIdFunction id, AggregateFunction aggregate,
                         AggregatePublishFunction publish_aggregate, NodeId local_node,
                         SourceLocation where) {
  if (!id) {
    ReportMisuse("Cache::Create: empty id function", where);
    return nullptr;
  }
  if (local_node.IsNone()) {
    ReportMisuse("Cache::Create: no local node", where);
    return nullptr;
  }
  return Ref<Cache>::Adopt(
      new Cache(std::move(id), std::move(aggregate), std::move(publish_aggregate), local_node),
      where);
}

Cache::Cache(CacheIdFunction id, AggregateFunction aggregate,
             AggregatePublishFunction publish_aggregate, NodeId local_node)
    : local_node_(local_node),
      id_(std::move(id)),
      aggregate_(std::move(aggregate)),
      publish_aggregate_(std::move(publish_aggregate)),
      shards_(new CacheShard[kShards]),
      removals_(std::make_unique<bus_internal::CacheRemovals>()) {
  bus_internal::CacheRegistry::Get().Add(this);  // for the listings (bus_stats.h)
}

// No reader is inside this cache (each holds a reference): the limbo goes at once.
Cache::~Cache() {
  bus_internal::CacheRegistry::Get().Remove(this);
}

inline CacheShard& Cache::ShardFor(const MessageType* type, std::string_view id,
                                   std::size_t& hash) const {
  hash = bus_internal::HashKey(type, id);
  // The high bits of a remix pick the shard; the table's slots use the hash's low bits.
  return shards_[(hash * 0x9E3779B97F4A7C15ull) >> (64 - 6)];
}
static_assert(Cache::kShards == 64, "ShardFor takes 6 bits");

inline const CacheEntry* Cache::Find(const MessageType* type, std::string_view id) const {
  std::size_t hash;
  const CacheShard& shard = ShardFor(type, id, hash);
  const CacheTable* t = shard.table.load(std::memory_order_seq_cst);
  if (t == nullptr) return nullptr;
  // A table is never full: the probe ends at an empty slot at the latest.
  for (std::size_t i = hash & t->mask;; i = (i + 1) & t->mask) {
    const std::uintptr_t w = t->slots[i].Word(std::memory_order_seq_cst);
    if (w == 0) return nullptr;
    if (w == bus_internal::CacheSlot::TombstoneWord() ||
        !bus_internal::CacheSlot::Matches(w, hash)) {
      continue;
    }
    const CacheEntry* e = bus_internal::CacheSlot::EntryOf(w);
    // The entry's first line only (cache.h, "Layout"): the tag stands in for the hash.
    if (e->type_ == type && bus_internal::IdEquals(e->id_, id)) return e;
  }
}

Ref<Message> Cache::Get(const MessageType* type, std::string_view id, SourceLocation where) const {
  if (type == nullptr) [[unlikely]] {
    ReportMisuse("Cache::Get: null message type", where);
    return nullptr;
  }
  EpochGuard guard;
  const CacheEntry* e = Find(type, id);
  // The local snapshot (ForNode's answer for the local node), with one increment in the epoch:
  // a snapshot replaced in place after the load stays allocated until the epoch ends.
  return e != nullptr ? Ref<Message>(e->LocalPointer()) : nullptr;
}

Ref<Message> Cache::GetByNode(const MessageType* type, std::string_view id, const NodeId& node,
                              SourceLocation where) const {
  if (type == nullptr) {
    ReportMisuse("Cache::Get: null message type", where);
    return nullptr;
  }
  EpochGuard guard;
  const CacheEntry* e = Find(type, id);
  if (e == nullptr) return nullptr;
  // One reference-count increment inside the epoch; the search of the foreign slots is short.
  return e->ForNode(node);
}

Ref<const CacheEntry> Cache::GetEntry(const MessageType* type, std::string_view id,
                                      SourceLocation where) const {
  if (type == nullptr) {
    ReportMisuse("Cache::GetEntry: null message type", where);
    return nullptr;
  }
  EpochGuard guard;
  const CacheEntry* e = Find(type, id);
  return e != nullptr ? CacheShard::Hold(e) : nullptr;
}

std::vector<Ref<Message>> Cache::GetAll(const MessageType* type, std::string_view id,
                                        SourceLocation where) const {
  if (type == nullptr) {
    ReportMisuse("Cache::GetAll: null message type", where);
    return {};
  }
  // The snapshots are copied out inside the epoch: the entry is not held (a write of it in place
  // stays possible), and each snapshot is loaded once.
  EpochGuard guard;
  const CacheEntry* e = Find(type, id);
  return e != nullptr ? e->All() : std::vector<Ref<Message>>{};
}

std::vector<Ref<const CacheEntry>> Cache::DumpEntries(const MessageType* type) const {
  std::vector<Ref<const CacheEntry>> out;
  CacheShard::ForEachEntry(shards_.get(), kShards, type,
                           [&out](const CacheEntry& e) { out.push_back(CacheShard::Hold(&e)); });
  return out;
}

std::vector<Ref<Message>> Cache::Dump(const MessageType* type) const {
  return DumpByNode(type, local_node_);
}

// The snapshot dumps take their references inside the walk's epochs and hold no entry, so they
// leave writes in place possible.
std::vector<Ref<Message>> Cache::DumpByNode(const MessageType* type, const NodeId& node) const {
  std::vector<Ref<Message>> out;
  CacheShard::ForEachEntry(shards_.get(), kShards, type, [&out, &node](const CacheEntry& e) {
    if (Ref<Message> s = e.ForNode(node)) out.push_back(std::move(s));
  });
  return out;
}

std::vector<Ref<Message>> Cache::DumpAll(const MessageType* type) const {
  std::vector<Ref<Message>> out;
  CacheShard::ForEachEntry(shards_.get(), kShards, type, [&out](const CacheEntry& e) {
    if (Message* local = e.LocalPointer()) out.emplace_back(local);
    for (const CacheEntry::NodeSnapshot& s : e.foreign_) out.push_back(s.snapshot);
  });
  return out;
}

// Counted inside the walk's epochs: the local snapshot is loaded once per entry (a write in
// place may change it), and what it points to (its node) stays valid until the epoch ends.
CacheCensus Cache::Census() const {
  CacheCensus out;
  std::map<std::string, CacheTypeCount, std::less<>> types;
  auto count_node = [&out](const NodeId& node) {
    auto it = std::find_if(out.nodes.begin(), out.nodes.end(),
                           [&](const CacheNodeCount& n) { return n.node == node; });
    if (it == out.nodes.end()) {
      out.nodes.push_back(CacheNodeCount{node, node.IsLocal(), 0});
      it = out.nodes.end() - 1;
    }
    ++it->snapshots;
  };
  CacheShard::ForEachEntry(shards_.get(), kShards, nullptr, [&](const CacheEntry& e) {
    auto type = types.find(e.Type().Name());
    if (type == types.end()) type = types.emplace(e.Type().Name(), CacheTypeCount{}).first;
    CacheTypeCount& t = type->second;
    ++t.entries;
    if (const Message* local = e.LocalPointer()) {
      ++t.local;
      count_node(local->Node());
    }
    for (const CacheEntry::NodeSnapshot& f : e.foreign_) {
      ++t.foreign;
      count_node(f.node);
    }
    if (e.aggregate_ != nullptr) {
      ++t.aggregates;
      ++out.aggregates;
    }
  });
  out.types.reserve(types.size());
  for (auto& [name, count] : types) {
    count.type = name;
    out.types.push_back(std::move(count));
  }
  std::sort(out.nodes.begin(), out.nodes.end(),
            [](const CacheNodeCount& a, const CacheNodeCount& b) {
              if (a.local != b.local) return a.local;
              return a.node.ToString() < b.node.ToString();
            });
  return out;
}

CacheStats Cache::Stats() const {
  CacheStats s;
  s.entries = entries_.load(std::memory_order_relaxed);
  for (std::size_t i = 0; i < kShards; ++i) {
    s.puts += shards_[i].puts.load(std::memory_order_relaxed);
    s.clears += shards_[i].clears.load(std::memory_order_relaxed);
  }
  s.aggregate_failures = aggregate_failures_.load(std::memory_order_relaxed);
  s.held_entry_copies = held_entry_copies_.load(std::memory_order_relaxed);
  return s;
}

CacheChange Cache::Put(const Ref<Message>& snapshot, std::string id, SourceLocation where) {
  if (snapshot == nullptr) {
    ReportMisuse("Cache::Put: null snapshot", where);
    return {};
  }
  if (id.empty()) {
    ReportMisuse("Cache::Put: empty id", where);
    return {};
  }
  if (snapshot->Node().IsNone()) return {};
  return Write(&snapshot->Type(), id, snapshot->Node(), snapshot.get(), /*with_id=*/true, where);
}

CacheChange Cache::PutFromTopic(const Message& snapshot, std::string_view id,
                                SourceLocation where) {
  // The caching topic checked the snapshot, its node and the id; the message is alive for its
  // callback, and the cache takes its own references.
  return Write(&snapshot.Type(), id, snapshot.Node(), const_cast<Message*>(&snapshot),
               /*with_id=*/false, where);
}

CacheChange Cache::Clear(const MessageType* type, std::string_view id, const NodeId& node,
                         SourceLocation where) {
  if (type == nullptr) {
    ReportMisuse("Cache::Clear: null message type", where);
    return {};
  }
  if (id.empty()) {
    ReportMisuse("Cache::Clear: empty id", where);
    return {};
  }
  if (node.IsNone()) return {};
  return Write(type, id, node, nullptr, /*with_id=*/true, where);
}

bool Cache::BeingRemoved(const NodeId& node) const {
  if (removals_->count.load(std::memory_order_relaxed) == 0) return false;
  MutexLock lock(removals_->mu);
  return std::find(removals_->nodes.begin(), removals_->nodes.end(), node) !=
         removals_->nodes.end();
}

namespace {

// Lets go of what a write took out of its shard's limbo, after the write's lock (declared before
// the lock, so destroyed after it). Most writes take nothing (the limbo is emptied in batches):
// they leave the thread's buffer where it is.
struct LetGoAfterTheLock {
  LetGoAfterTheLock() = default;
  LetGoAfterTheLock(const LetGoAfterTheLock&) = delete;
  LetGoAfterTheLock& operator=(const LetGoAfterTheLock&) = delete;
  ~LetGoAfterTheLock() {
    if (ripe.capacity() == 0) return;
    CacheShard::Release(ripe);
    bus_internal::GiveBackRipeBuffer(std::move(ripe));
  }
  Ripe ripe;
};

// Takes what no reader can reach out of the shard's limbo once the write is done, still under
// the shard's writer mutex (declared after the lock, so destroyed before it).
struct CollectUnderTheLock {
  CollectUnderTheLock(CacheShard& s, Ripe& r) : shard(s), ripe(r) {}
  CollectUnderTheLock(const CollectUnderTheLock&) = delete;
  CollectUnderTheLock& operator=(const CollectUnderTheLock&) = delete;
  // (The analysis cannot see that the enclosing scope holds shard.writer.)
  PLEXUS_NO_THREAD_SAFETY_ANALYSIS ~CollectUnderTheLock() {
    if (!shard.LimboFull()) return;
    ripe = bus_internal::TakeRipeBuffer();
    shard.CollectRipe(ripe);
  }
  CacheShard& shard;
  Ripe& ripe;
};

}  // namespace

CacheChange Cache::Write(const MessageType* type, std::string_view id, const NodeId& node,
                         Message* snapshot, bool with_id, SourceLocation where) {
  if (bus_internal::tl_aggregating == this) {
    ReportMisuse("Cache: a write from the cache's own aggregate function", where);
    return {};
  }
  std::size_t hash;
  CacheShard& shard = ShardFor(type, id, hash);
  // The change is built in the caller's return slot (no move through a local): the limbo is
  // emptied and let go by the destructors below, in that order, after it was made.
  LetGoAfterTheLock after;
  MutexLock writer(shard.writer);
  CollectUnderTheLock collect(shard, after.ripe);
  // The registry is read under the shard's writer mutex: a removal registered the node before
  // it walked this shard (see the file comment).
  if (snapshot != nullptr && removals_->count.load(std::memory_order_relaxed) != 0 &&
      BeingRemoved(node)) {
    return {};
  }
  // A local snapshot put into an existing entry, in place if no reader holds the entry. The
  // change is made here, whole, in the caller's return slot.
  CacheTable* const t = shard.table.load(std::memory_order_relaxed);
  if (snapshot != nullptr && t != nullptr && !aggregate_ && node == local_node_) {
    std::size_t free_slot;
    const std::size_t at = shard.Probe(*t, type, id, hash, free_slot);
    const CacheEntry* entry =
        at != t->Capacity() ? t->slots[at].Load(std::memory_order_relaxed) : nullptr;
    Message* replaced = nullptr;
    if (entry != nullptr) {
      if (shard.WriteLocalInPlace(const_cast<CacheEntry&>(*entry), snapshot, replaced)) {
        CacheShard::Count(shard.puts);
        return CacheChange{type, with_id ? std::string(id) : std::string(),
                           Ref<Message>::Adopt(replaced), Ref<Message>(snapshot)};
      }
      held_entry_copies_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  return WriteLocked(shard, type, id, hash, node, snapshot, with_id, where);
}

PLEXUS_NO_THREAD_SAFETY_ANALYSIS CacheChange Cache::WriteLocked(
    CacheShard& shard, const MessageType* type, std::string_view id, std::size_t hash,
    const NodeId& node, Message* snapshot, bool with_id, SourceLocation where) {
  // (The analysis cannot name the caller's shard: Write and RemoveNode hold its `writer`.)
  CacheChange change;
  CacheTable* t = shard.table.load(std::memory_order_relaxed);
  std::size_t free_slot = 0;
  std::size_t at = t != nullptr ? shard.Probe(*t, type, id, hash, free_slot) : 0;
  const CacheEntry* old_entry =
      t != nullptr && at != t->Capacity() ? t->slots[at].Load(std::memory_order_relaxed) : nullptr;
  if (snapshot == nullptr && (old_entry == nullptr || old_entry->ForNode(node) == nullptr)) {
    return change;  // nothing to clear
  }
  const bool local = node == local_node_;

  Ref<CacheEntry> next;
  if (!bus_internal::tl_entry_pool.free.empty()) {
    next = Ref<CacheEntry>::Adopt(bus_internal::tl_entry_pool.free.back());
    bus_internal::tl_entry_pool.free.pop_back();
  } else {
    next = Ref<CacheEntry>::Adopt(new CacheEntry());
  }
  next->type_ = type;
  bus_internal::AssignId(next->id_, id);
  next->hash_ = hash;
  // A pooled entry is empty: only what the old entry holds is copied, and the written slot is
  // set from the snapshot directly (each reference taken once).
  Message* const old_local = old_entry != nullptr ? old_entry->LocalPointer() : nullptr;
  if (old_entry != nullptr) {
    if (!local && old_local != nullptr) next->SetLocal(old_local);
    if (!old_entry->foreign_.empty()) next->foreign_ = old_entry->foreign_;
    if (old_entry->aggregate_ != nullptr) next->aggregate_ = old_entry->aggregate_;
  }
  if (local) {
    if (old_local != nullptr) change.old_snapshot = Ref<Message>(old_local);
    if (snapshot != nullptr) next->SetLocal(snapshot);
  } else {
    auto& foreign = next->foreign_;
    auto slot = std::find_if(foreign.begin(), foreign.end(),
                             [&](const CacheEntry::NodeSnapshot& s) { return s.node == node; });
    if (snapshot != nullptr) {
      if (slot != foreign.end()) {
        change.old_snapshot = std::exchange(slot->snapshot, Ref<Message>(snapshot));
      } else {
        foreign.push_back({node, Ref<Message>(snapshot)});
      }
    } else if (slot != foreign.end()) {
      change.old_snapshot = std::move(slot->snapshot);
      // Unordered removal, as Asterisk's: foreign slots have no order.
      if (slot != foreign.end() - 1) *slot = std::move(foreign.back());
      foreign.pop_back();
    }
  }
  change.type = type;
  if (with_id) change.id.assign(id);
  if (snapshot != nullptr) change.new_snapshot = Ref<Message>(snapshot);
  if (next->aggregate_ != nullptr) change.old_aggregate = next->aggregate_;
  if (next->Empty()) {
    if (next->aggregate_ != nullptr) next->aggregate_ = nullptr;
  } else if (aggregate_) {
    Ref<Message> aggregate;
    const Cache* outer = std::exchange(bus_internal::tl_aggregating, this);
    const bool ok =
        core_internal::RunCatching([&] { aggregate = aggregate_(*next, change.new_snapshot); },
                                   [&] {
                                     return "the aggregate function of a cache (entry " +
                                            type->Name() + "/" + std::string(id) + ")";
                                   },
                                   where);
    bus_internal::tl_aggregating = outer;
    if (ok) {
      next->aggregate_ = std::move(aggregate);
    } else {
      aggregate_failures_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  if (next->aggregate_ != nullptr) change.new_aggregate = next->aggregate_;

  if (old_entry != nullptr) {
    // The slot's reference to the old entry passes to the limbo.
    if (next->Empty()) {
      t->slots[at].Store(bus_internal::Tombstone(), hash, std::memory_order_seq_cst);
      --shard.live;
      entries_.fetch_sub(1, std::memory_order_relaxed);
    } else {
      t->slots[at].Store(next.Detach(), hash, std::memory_order_seq_cst);
    }
    shard.Retire(old_entry, nullptr);
  } else {
    const bool grows = t == nullptr || (shard.used + 1) * 2 > t->Capacity();
    CacheTable& target = shard.Reserve();
    if (grows) shard.Probe(target, type, id, hash, free_slot);
    if (target.slots[free_slot].Load(std::memory_order_relaxed) == nullptr) ++shard.used;
    target.slots[free_slot].Store(next.Detach(), hash, std::memory_order_seq_cst);
    ++shard.live;
    entries_.fetch_add(1, std::memory_order_relaxed);
  }
  CacheShard::Count(snapshot != nullptr ? shard.puts : shard.clears);
  return change;
}

std::size_t Cache::RemoveNode(const NodeId& node,
                              const std::function<void(const CacheChange&)>& each,
                              SourceLocation where) {
  if (node.IsNone()) return 0;
  if (bus_internal::tl_aggregating == this) {
    ReportMisuse("Cache: a write from the cache's own aggregate function", where);
    return 0;
  }
  {
    MutexLock lock(removals_->mu);
    removals_->nodes.push_back(node);
    removals_->count.fetch_add(1, std::memory_order_relaxed);
  }
  // Unregistered however the walk ends (`each` may throw).
  struct Unregister {
    bus_internal::CacheRemovals& removals;
    const NodeId& node;
    ~Unregister() {
      MutexLock lock(removals.mu);
      removals.nodes.erase(std::find(removals.nodes.begin(), removals.nodes.end(), node));
      removals.count.fetch_sub(1, std::memory_order_relaxed);
    }
  } unregister{*removals_, node};
  std::size_t removed = 0;
  std::vector<CacheChange> changes;
  for (std::size_t i = 0; i < kShards; ++i) {
    CacheShard& shard = shards_[i];
    Ripe ripe;
    {
      MutexLock writer(shard.writer);
      CacheTable* t = shard.table.load(std::memory_order_relaxed);
      // Clears never grow the table: `t` stays the shard's table for the walk.
      for (std::size_t j = 0; t != nullptr && j < t->Capacity(); ++j) {
        const CacheEntry* e = t->slots[j].Load(std::memory_order_relaxed);
        if (e == nullptr || e == bus_internal::Tombstone() || e->ForNode(node) == nullptr) continue;
        // Copied out: the write retires `e`.
        const MessageType* type = e->type_;
        const std::string id = e->id_;
        changes.push_back(
            WriteLocked(shard, type, id, e->hash_, node, nullptr, /*with_id=*/true, where));
      }
      shard.CollectRipe(ripe);
    }
    CacheShard::Release(ripe);
    for (const CacheChange& c : changes) {
      if (!c.SnapshotChanged()) continue;
      ++removed;
      if (each) each(c);
    }
    changes.clear();
  }
  return removed;
}

// --- Cache update and clear types ------------------------------------------------------------

const TypedMessageType<CacheUpdate>& CacheUpdateType() {
  static const auto type = TypedMessageType<CacheUpdate>::Create("CacheUpdate");
  return type;
}

const TypedMessageType<CacheClear>& CacheClearType() {
  static const auto type = TypedMessageType<CacheClear>::Create("CacheClear");
  return type;
}

Ref<Message> MakeCacheClear(const Ref<Message>& snapshot, SourceLocation where) {
  if (snapshot == nullptr) {
    ReportMisuse("MakeCacheClear: null snapshot", where);
    return nullptr;
  }
  return CacheClearType().Make(CacheClear{snapshot}, where);
}

// --- CachingTopic ----------------------------------------------------------------------------

namespace bus_internal {

class CachingCore final : public InlineReceiver {
 public:
  CachingCore(Ref<Topic> original_topic, Ref<Cache> the_cache, Ref<Topic> output_topic,
              SourceLocation where)
      : original(std::move(original_topic)),
        cache(std::move(the_cache)),
        output(std::move(output_topic)),
        created(where) {}

  // The caching subscription's callback (on the publisher's thread).
  void Handle(const Message& m);
  // What the source topic's fan-out calls for each message published there.
  void Receive(const Message& m) override { Handle(m); }
  // Publishes what `change` did (nothing if it did nothing), moving its snapshots into the
  // update messages, stamped `when`: the instant of what caused the change (the published
  // snapshot's or clear's timestamp), not the instant the update was made.
  void PublishChange(CacheChange& change, WallClock::time_point when);
  // The id of `m` (built in the caller's variable), or "" with `ok` cleared if the id function
  // threw (logged and counted).
  std::string IdOf(const Message& m, bool& ok);
  // As IdOf, for the view form of the id function: a view into what `m` holds.
  std::string_view IdViewOf(const Message& m, bool& ok);

  const Ref<Topic> original;
  const Ref<Cache> cache;
  const Ref<Topic> output;
  const SourceLocation created;
  // The bus's own types, looked up once: each lookup is a call and a guard check per message.
  const TypedMessageType<CacheClear>& clear_type = CacheClearType();
  const TypedMessageType<SubscriptionChange>& notice_type = SubscriptionChangeType();
  const TypedMessageType<CacheUpdate>& update_type = CacheUpdateType();

  std::atomic<std::uint64_t> cached{0};
  std::atomic<std::uint64_t> cleared{0};
  std::atomic<std::uint64_t> not_cacheable{0};
  std::atomic<std::uint64_t> id_failures{0};
  std::atomic<std::uint64_t> updates_published{0};
  std::atomic<std::uint64_t> aggregate_publish_failures{0};
  std::atomic<bool> assume_receivers{false};

 private:
  ~CachingCore() override = default;
  void PublishUpdate(const MessageType* type, Ref<Message>& old_snapshot,
                     Ref<Message>& new_snapshot, WallClock::time_point when);
  // Caches `m` under `id` (its node checked) and publishes the change.
  void CacheSnapshot(const Message& m, std::string_view id);
  // Logs and counts an id function's exception (`e` null: not a std::exception).
  void IdFailed(const std::exception* e);
};

namespace {
std::atomic<std::uint64_t> next_caching_topic{0};
}  // namespace

void CachingCore::IdFailed(const std::exception* e) {
  core_internal::LogThrown("the id function of the cache on topic '" + original->Name() + "'", e,
                           created);
  id_failures.fetch_add(1, std::memory_order_relaxed);
}

std::string CachingCore::IdOf(const Message& m, bool& ok) {
  // Returned straight from the id function (no move into a variable of the caller's).
  try {
    return cache->IdOf(m);
  } catch (const std::exception& e) {
    IdFailed(&e);
  } catch (...) {
    IdFailed(nullptr);
  }
  ok = false;
  return std::string();
}

std::string_view CachingCore::IdViewOf(const Message& m, bool& ok) {
  try {
    return cache->IdFunctionOf().View(m);
  } catch (const std::exception& e) {
    IdFailed(&e);
  } catch (...) {
    IdFailed(nullptr);
  }
  ok = false;
  return std::string_view();
}

void CachingCore::Handle(const Message& m) {
  if (const CacheClear* clear = clear_type.Get(m)) [[unlikely]] {
    const Ref<Message>& snapshot = clear->snapshot;
    if (snapshot == nullptr) return;
    bool ok = true;
    // Either form, as a string: clears are rare.
    const std::string id = IdOf(*snapshot, ok);
    if (!ok) return;
    CacheChange change;
    if (!id.empty()) change = cache->Clear(&snapshot->Type(), id, snapshot->Node(), created);
    if (!change.SnapshotChanged()) {
      not_cacheable.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    cleared.fetch_add(1, std::memory_order_relaxed);
    PublishChange(change, m.Timestamp());
    return;
  }
  if (const SubscriptionChange* notice = notice_type.Get(m)) [[unlikely]] {
    if (notice->kind == SubscriptionChangeKind::kUnsubscribe) {
      // Cached notices of a subscription that is gone would otherwise stay forever.
      if (!notice->subscription_id.empty()) {
        CacheChange change = cache->Clear(SubscriptionChangeType().get(), notice->subscription_id,
                                          m.Node(), created);
        if (change.SnapshotChanged()) {
          cleared.fetch_add(1, std::memory_order_relaxed);
          PublishChange(change, m.Timestamp());
        }
      }
      return;
    }
  }
  if (m.Node().IsNone()) {
    not_cacheable.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  bool ok = true;
  if (cache->IdFunctionOf().IsView()) {
    // The view is into `m`, which is alive for the callback: no id is built or copied.
    const std::string_view id = IdViewOf(m, ok);
    if (ok) CacheSnapshot(m, id);
  } else {
    const std::string id = IdOf(m, ok);
    if (ok) CacheSnapshot(m, id);
  }
}

inline void CachingCore::CacheSnapshot(const Message& m, std::string_view id) {
  if (id.empty()) {
    not_cacheable.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // The message is alive for the callback; the cache takes its own reference.
  CacheChange change = cache->PutFromTopic(m, id, created);
  if (!change.SnapshotChanged()) {
    not_cacheable.fetch_add(1, std::memory_order_relaxed);  // its node is being removed
    return;
  }
  cached.fetch_add(1, std::memory_order_relaxed);
  PublishChange(change, m.Timestamp());
}

void CachingCore::PublishUpdate(const MessageType* type, Ref<Message>& old_snapshot,
                                Ref<Message>& new_snapshot, WallClock::time_point when) {
  if (!assume_receivers.load(std::memory_order_relaxed) && !output->HasReceivers()) return;
  // Made in place from the change's snapshots (Make would move the payload once more), and
  // handed to the output with the creator's reference (no reference-count round trip). Stamped
  // with its cause's instant, which also spares a clock read per update.
  Ref<Message> update = Message::CreateStamped(
      update_type.get(), CacheUpdate{type, std::move(old_snapshot), std::move(new_snapshot)}, when);
  if (update == nullptr) return;  // the type is declined
  output->Publish(std::move(update));
  updates_published.fetch_add(1, std::memory_order_relaxed);
}

void CachingCore::PublishChange(CacheChange& change, WallClock::time_point when) {
  if (change.SnapshotChanged()) {
    PublishUpdate(change.type, change.old_snapshot, change.new_snapshot, when);
  }
  if (change.AggregateChanged()) {
    const auto& publish = cache->PublishAggregateFunction();
    if (change.new_aggregate != nullptr && publish) {
      const bool ok = core_internal::RunCatching(
          [&] { publish(original, change.new_aggregate); },
          [&] {
            return "the aggregate-publish function of the cache on '" + original->Name() + "'";
          },
          created);
      if (!ok) aggregate_publish_failures.fetch_add(1, std::memory_order_relaxed);
    }
    PublishUpdate(change.type, change.old_aggregate, change.new_aggregate, when);
  }
}

}  // namespace bus_internal

Ref<CachingTopic> CachingTopic::Create(const Ref<Topic>& original, const Ref<Cache>& cache,
                                       SourceLocation where) {
  return Create(original, original, cache, where);
}

Ref<CachingTopic> CachingTopic::Create(const Ref<Topic>& source, const Ref<Topic>& original,
                                       const Ref<Cache>& cache, SourceLocation where) {
  if (original == nullptr || source == nullptr) {
    ReportMisuse("CachingTopic::Create: null original topic", where);
    return nullptr;
  }
  if (cache == nullptr) {
    ReportMisuse("CachingTopic::Create: null cache", where);
    return nullptr;
  }
  const std::uint64_t n = bus_internal::next_caching_topic.fetch_add(1, std::memory_order_relaxed);
  Ref<Topic> output =
      Topic::Create("cache:" + std::to_string(n) + "/" + original->Name(), {}, where);
  auto core = Ref<bus_internal::CachingCore>::Adopt(
      new bus_internal::CachingCore(original, cache, std::move(output), where), where);
  SubscriptionOptions options;
  options.mode = DeliveryMode::kSynchronous;
  // The cache sees everything the topic carries, the other subscriptions' notices included (an
  // id function may cache them, and an unsubscribe notice clears the cached subscribe notice),
  // as Asterisk's caching topic does: one delivery per subscribe, never a storm.
  options.subscription_changes = true;
  Subscription subscription = Subscription::Create(
      source,
      [core](const Message& m, bool is_final) {
        if (!is_final) core->Handle(m);
      },
      std::move(options), where);
  if (!subscription) return nullptr;
  // From now on the topic's fan-out calls the core directly for every message published there;
  // the subscription still brings the notices and the final message.
  source->DeliverInline(subscription, core);
  return Ref<CachingTopic>::Adopt(new CachingTopic(std::move(core), std::move(subscription)),
                                  where);
}

CachingTopic::CachingTopic(Ref<bus_internal::CachingCore> core, Subscription subscription)
    : core_(std::move(core)), subscription_(std::move(subscription)) {
  bus_internal::CachingTopicRegistry::Get().Add(this);  // for the listings (bus_stats.h)
}

// The subscription handle's destructor unsubscribes; its final message lets the core go.
CachingTopic::~CachingTopic() {
  bus_internal::CachingTopicRegistry::Get().Remove(this);
}

const Ref<Topic>& CachingTopic::Output() const noexcept {
  return core_->output;
}

const Ref<Cache>& CachingTopic::GetCache() const noexcept {
  return core_->cache;
}

Ref<Topic> CachingTopic::Original() const {
  return core_->original;
}

bool CachingTopic::Unsubscribe(SourceLocation where) {
  return subscription_.Unsubscribe(where);
}

bool CachingTopic::UnsubscribeAndJoin(SourceLocation where) {
  return subscription_.UnsubscribeAndJoin(where);
}

void CachingTopic::AssumeReceivers() noexcept {
  core_->assume_receivers.store(true, std::memory_order_relaxed);
}

bool CachingTopic::IsSubscribed() const noexcept {
  return subscription_.IsSubscribed();
}

std::size_t CachingTopic::RemoveNode(const NodeId& node, SourceLocation where) {
  if (!subscription_.IsSubscribed()) {
    ReportMisuse("CachingTopic::RemoveNode: the caching topic was unsubscribed", where);
    return 0;
  }
  // Each clear update is published before the removal ends: an update of a later put of the
  // node cannot overtake it (cache.h, "Node removal").
  return core_->cache->RemoveNode(
      node,
      [this](const CacheChange& change) {
        core_->cleared.fetch_add(1, std::memory_order_relaxed);
        CacheChange moved = change;
        // A removal has no message that caused it: its updates happen now.
        core_->PublishChange(moved, FastWallClock::now());
      },
      where);
}

CachingTopicStats CachingTopic::Stats() const {
  CachingTopicStats s;
  s.cached = core_->cached.load(std::memory_order_relaxed);
  s.cleared = core_->cleared.load(std::memory_order_relaxed);
  s.not_cacheable = core_->not_cacheable.load(std::memory_order_relaxed);
  s.id_failures = core_->id_failures.load(std::memory_order_relaxed);
  s.updates_published = core_->updates_published.load(std::memory_order_relaxed);
  s.aggregate_publish_failures = core_->aggregate_publish_failures.load(std::memory_order_relaxed);
  return s;
}

}  // namespace plexus
