// Message blocks: a per-thread cache of fixed-size blocks with lock-free "remote" returns.
//
// Messages are made on publishers' threads and usually die on a subscriber's thread. With
// malloc that is the worst pattern there is: every free lands in another thread's arena (under
// its lock) and every publisher's allocation misses its thread cache. Here a block goes back
// to the thread that made it: freed by that thread onto its local list, by any other thread
// onto its remote list; the maker takes the whole remote list when its local one is empty.
// Taking the whole list (never popping one) is what makes the lock-free stack immune to ABA.
//
// Remote returns are batched: a thread that frees another thread's blocks chains them up (per
// size class, for one owner at a time) and hands the chain over with one CAS every
// kReturnBatch blocks, when a block of another owner comes, or when it exits. A subscriber
// that frees one publisher's messages one by one would otherwise take the owner's remote line
// away from it at every free: one atomic read-modify-write and one cross-core line transfer
// per message instead of per batch. A free block may so wait in another thread's chain; the
// maker meanwhile allocates anew, so a thread keeps at most kReturnBatch - 1 foreign blocks
// per class aside.
//
// A thread that exits closes its cache: its free blocks go back to the system, and blocks
// still in use are freed to the system by whichever thread drops them last; the cache itself
// goes with the last of its blocks.
//
// Blocks are carved one after the other from slabs of kSlabBytes that a thread takes from the
// system; a block's header points to its slab, whose head names the owning cache. A block
// starts on a 128-byte boundary and owns every byte up to the next block: a message is
// written on one thread and read on another, so every cache line it lies on is a line
// transfer, and so is a line it shares with another block. On malloc's 16-byte alignment a
// 72-byte message (a 128-byte block) lay on three lines in some places instead of two, and
// shared lines with the blocks beside it; 128 bytes rather than 64 because the L2 prefetcher
// fetches 128-byte-aligned pairs of lines, and a pair split between two blocks would bring the
// next block's line to the subscriber while the publisher writes it. A slab goes back to the
// system when its last block was given back and its thread no longer carves from it, so a
// message that outlives its thread keeps the slab it was carved from (16 KiB) until it goes.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <new>
#include <utility>

#include "plexus/bus/message.h"
#include "plexus/core/config.h"
#include "plexus/core/internal/prefetch.h"

namespace plexus::bus_internal {
namespace {

constexpr std::size_t kHeader = 16;  // keeps the object 16-byte aligned
constexpr std::size_t kClassBytes = 64;
constexpr std::size_t kClasses = 4;       // blocks of 64, 128, 192, 256 bytes (header included)
constexpr std::size_t kMaxLocal = 4096;   // free blocks kept per class; more go back
constexpr std::size_t kReturnBatch = 32;  // foreign blocks chained before one remote return
constexpr std::size_t kSlabBytes = 16 * 1024;
constexpr std::size_t kBlockAlign = 128;  // a pair of cache lines (see the file comment)
constexpr std::align_val_t kSlabAlign{kBlockAlign};

// The bytes a block of class `c` takes in its slab: its size, rounded up to kBlockAlign.
constexpr std::size_t CarvedBytes(std::size_t c) {
  return ((c + 1) * kClassBytes + kBlockAlign - 1) / kBlockAlign * kBlockAlign;
}

struct ThreadCache;

// The head of a slab, in its first kBlockAlign bytes; its blocks follow. Read at every free
// (the owner), written only when a block is carved or given back to the system.
struct alignas(kBlockAlign) Slab {
  explicit Slab(ThreadCache* made_by) : owner(made_by) {}
  // The thread cache its blocks go back to.
  ThreadCache* const owner;
  // Blocks carved from it and not yet given back to the system, plus one while its thread
  // still carves from it.
  std::atomic<std::int64_t> live{1};
};
static_assert(sizeof(Slab) == kBlockAlign);

std::atomic<std::int64_t> live_slabs{0};

void ReleaseSlab(Slab* slab, std::int64_t n) {
  if (slab->live.fetch_sub(n, std::memory_order_acq_rel) != n) return;
  slab->~Slab();
  ::operator delete(static_cast<void*>(slab), kSlabAlign);
  live_slabs.fetch_sub(1, std::memory_order_relaxed);
}

struct Block {
  Slab* slab;
  Block* next;
};
static_assert(sizeof(Block) <= kHeader);

// While a block is free, the first word after its header names the block two places further
// down its list, or null: a hint for the allocation that takes the block, which prefetches that
// one (see AllocateMessage). Only ever a hint: a prefetch of a stale address costs a wasted
// line and cannot fault.
Block* AheadOf(const Block* b) noexcept {
  Block* ahead;
  std::memcpy(&ahead, reinterpret_cast<const unsigned char*>(b) + kHeader, sizeof ahead);
  return ahead;
}
// Pushes `b` on the list headed by `head` (b's hint: head's next, on a line the pusher wrote
// when it pushed head), and returns the new head.
Block* Push(Block* b, Block* head) noexcept {
  b->next = head;
  Block* const ahead = head != nullptr ? head->next : nullptr;
  std::memcpy(reinterpret_cast<unsigned char*>(b) + kHeader, &ahead, sizeof ahead);
  return b;
}
// Asks for every line of the block of class `c` at `b` for writing.
void PrefetchBlock(const Block* b, std::size_t c) noexcept {
  const auto* line = reinterpret_cast<const unsigned char*>(b);
  for (std::size_t i = 0; i <= c; ++i) core_internal::PrefetchForWrite(line + i * 64);
}

// Gives `b` back to the system: to its slab, which goes with its last block.
void GiveBack(Block* b) {
  ReleaseSlab(b->slab, 1);
}

Block* const kClosed = reinterpret_cast<Block*>(std::uintptr_t{1});

struct ThreadCache {
  // Written by other threads (one CAS per block they give back), so on a line of its own: on
  // the owner's line it would take that line away from the owner at every remote free, and
  // the owner's next allocation would miss on its own free list.
  alignas(64) std::atomic<Block*> remote[kClasses] = {};
  alignas(64) Block* local[kClasses] = {};
  std::size_t local_count[kClasses] = {};
  // The slab new blocks are carved from (null: none yet), and the free part of it.
  Slab* slab = nullptr;
  unsigned char* carve = nullptr;
  unsigned char* carve_end = nullptr;
  // Blocks made and not yet given back to the system, plus one for the owning thread.
  std::atomic<std::int64_t> owned{1};

  void Release(std::int64_t n) {
    if (owned.fetch_sub(n, std::memory_order_acq_rel) == n) delete this;
  }

  ~ThreadCache() = default;
};

void FreeChain(Block* b, std::int64_t& freed) {
  while (b != nullptr) {
    Block* next = b->next;
    GiveBack(b);
    ++freed;
    b = next;
  }
}

// The calling thread's cache: a plain pointer for the hot path (initial-exec TLS: no call, no
// guard), and a holder whose destructor closes the cache when the thread exits.
__attribute__((tls_model("initial-exec"))) thread_local ThreadCache* tls_cache_ptr = nullptr;

struct CacheHolder {
  ThreadCache* cache = nullptr;
  ~CacheHolder() {
    tls_cache_ptr = nullptr;
    if (cache == nullptr) return;
    std::int64_t freed = 0;

    for (std::size_t c = 0; c < kClasses; ++c) {
      FreeChain(cache->local[c], freed);
      Block* remote = cache->remote[c].exchange(kClosed, std::memory_order_acquire);
      FreeChain(remote, freed);
    }
    if (cache->slab != nullptr) ReleaseSlab(cache->slab, 1);  // no more carving from it
    // Blocks this thread frees from now on (in later thread_local destructors) take the
    // remote path and find the cache closed.
    ThreadCache* closed = std::exchange(cache, nullptr);
    closed->Release(freed + 1);
  }
};

thread_local CacheHolder tls_cache;

// Hands `first`..`last` (blocks of class `c`, linked by `next`) back to `owner`: one CAS onto
// its remote list, or, if the owner exited, back to the system.
void ReturnRemote(ThreadCache* owner, std::size_t c, Block* first, Block* last) {
  Block* head = owner->remote[c].load(std::memory_order_relaxed);
  do {
    if (head == kClosed) {
      std::int64_t freed = 0;
      last->next = nullptr;
      FreeChain(first, freed);
      owner->Release(freed);
      return;
    }
    last->next = head;
  } while (!owner->remote[c].compare_exchange_weak(head, first, std::memory_order_release,
                                                   std::memory_order_relaxed));
}

// This thread's chains of other threads' free blocks, one per class, each for one owner.
struct PendingReturns {
  struct Chain {
    ThreadCache* owner = nullptr;
    Block* first = nullptr;
    Block* last = nullptr;
    std::size_t count = 0;
  };
  Chain chains[kClasses];

  void Flush(std::size_t c) {
    Chain& chain = chains[c];
    if (chain.count == 0) return;
    ReturnRemote(chain.owner, c, chain.first, chain.last);
    chain = Chain{};
  }
};

// As for the cache: a plain pointer for the hot path, and a holder that flushes the chains
// when the thread exits. Frees that come later (other thread_local destructors) return their
// block at once.
__attribute__((tls_model("initial-exec"))) thread_local PendingReturns* tls_pending_ptr = nullptr;
__attribute__((tls_model("initial-exec"))) thread_local bool tls_pending_gone = false;

struct PendingHolder {
  PendingReturns pending;
  ~PendingHolder() {
    tls_pending_ptr = nullptr;
    tls_pending_gone = true;
    for (std::size_t c = 0; c < kClasses; ++c) pending.Flush(c);
  }
};

thread_local PendingHolder tls_pending_holder;

// Null once the thread's holder is gone.
[[gnu::noinline]] PendingReturns* MakePending() {
  if (tls_pending_gone) return nullptr;
  tls_pending_ptr = &tls_pending_holder.pending;
  return tls_pending_ptr;
}

[[gnu::noinline]] ThreadCache& MakeMine() {
  tls_cache.cache = new ThreadCache();
  tls_cache_ptr = tls_cache.cache;
  return *tls_cache_ptr;
}

ThreadCache& Mine() {
  ThreadCache* cache = tls_cache_ptr;
  return cache != nullptr ? *cache : MakeMine();
}

// A new block of `bytes` from the thread's slab, a new slab when it is used up (the rest of it,
// less than a block, stays unused).
[[gnu::noinline]] Block* CarveBlock(ThreadCache& cache, std::size_t bytes) {
  if (static_cast<std::size_t>(cache.carve_end - cache.carve) < bytes) {
    void* raw = ::operator new(kSlabBytes, kSlabAlign);
    live_slabs.fetch_add(1, std::memory_order_relaxed);
    if (cache.slab != nullptr) ReleaseSlab(cache.slab, 1);
    cache.slab = new (raw) Slab(&cache);
    cache.carve = static_cast<unsigned char*>(raw) + sizeof(Slab);
    cache.carve_end = static_cast<unsigned char*>(raw) + kSlabBytes;
  }
  cache.slab->live.fetch_add(1, std::memory_order_relaxed);
  auto* b = reinterpret_cast<Block*>(cache.carve);
  cache.carve += bytes;
  b->slab = cache.slab;
  return b;
}

std::size_t ClassOf(std::size_t total) {
  return (total + kClassBytes - 1) / kClassBytes - 1;
}

}  // namespace

void* AllocateMessage(std::size_t size) {
  const std::size_t total = size + kHeader;
  if (kSanitizeAddress || total > kClasses * kClassBytes) return ::operator new(size);
  const std::size_t c = ClassOf(total);
  ThreadCache& cache = Mine();
  Block* b = cache.local[c];
  if (b == nullptr) {
    // The chain is not walked to count it: its blocks were last written by the threads that
    // freed them, and a walk would take their lines one miss after the other. local_count
    // counts only what this thread freed itself (the cap on what it keeps), so it may run
    // below the list's length until the list empties.
    b = cache.remote[c].exchange(nullptr, std::memory_order_acquire);
  }
  if (b != nullptr) {
    Block* const next = b->next;
    Block* const ahead = AheadOf(b);
    cache.local[c] = next;
    if (cache.local_count[c] != 0) --cache.local_count[c];
    // The next allocations' blocks were most likely freed on another core: ask for their
    // lines for writing now, so that the misses overlap this message's work instead of
    // stalling a later one (the stores that make a message wait in the store buffer, and the
    // publish's first locked instruction waits for them; the allocation itself waits for the
    // line of its block's link). Two blocks ahead: a transfer from another core can take
    // longer than one publish, and the block after next was asked for one allocation ago.
    // Every line: a message of 72 bytes in a block of 128 writes both.
    if (next != nullptr) {
      PrefetchBlock(next, c);
      if (ahead != nullptr) PrefetchBlock(ahead, c);
    }
  } else {
    b = CarveBlock(cache, CarvedBytes(c));
    cache.owned.fetch_add(1, std::memory_order_relaxed);
  }
  return reinterpret_cast<unsigned char*>(b) + kHeader;
}

void FreeMessage(void* p, std::size_t size) noexcept {
  const std::size_t total = size + kHeader;
  if (kSanitizeAddress || total > kClasses * kClassBytes) {
    ::operator delete(p);
    return;
  }
  const std::size_t c = ClassOf(total);
  Block* b = reinterpret_cast<Block*>(static_cast<unsigned char*>(p) - kHeader);
  ThreadCache* owner = b->slab->owner;
  if (owner == tls_cache_ptr) {
    if (owner->local_count[c] < kMaxLocal) {
      owner->local[c] = Push(b, owner->local[c]);
      ++owner->local_count[c];
      return;
    }
    GiveBack(b);
    owner->Release(1);
    return;
  }
  PendingReturns* pending = tls_pending_ptr;
  if (pending == nullptr) [[unlikely]] {
    pending = MakePending();
    if (pending == nullptr) {
      ReturnRemote(owner, c, Push(b, nullptr), b);
      return;
    }
  }
  PendingReturns::Chain& chain = pending->chains[c];
  if (chain.owner != owner) {
    pending->Flush(c);
    chain.owner = owner;
    chain.last = b;
  }
  chain.first = Push(b, chain.first);
  if (++chain.count == kReturnBatch) pending->Flush(c);
}

std::int64_t LiveMessageSlabs() noexcept {
  return live_slabs.load(std::memory_order_relaxed);
}

}  // namespace plexus::bus_internal
