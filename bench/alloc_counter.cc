#include "alloc_counter.h"

#include <cstddef>
#include <cstdlib>
#include <new>

#if defined(__GLIBC__)
#include <malloc.h>
#define PLEXUS_BENCH_HAS_USABLE_SIZE 1
#endif

namespace plexus_bench {
namespace {
std::atomic<std::uint64_t> g_allocations{0};
std::atomic<bool> g_count_bytes{false};
std::atomic<std::int64_t> g_net_bytes{0};

std::int64_t BlockSize(void* p) noexcept {
#if defined(PLEXUS_BENCH_HAS_USABLE_SIZE)
  return static_cast<std::int64_t>(malloc_usable_size(p));
#else
  (void)p;
  return 0;
#endif
}

void CountedFree(void* p) noexcept {
  if (p != nullptr && g_count_bytes.load(std::memory_order_relaxed)) {
    g_net_bytes.fetch_sub(BlockSize(p), std::memory_order_relaxed);
  }
  std::free(p);
}

void* CountedAllocate(std::size_t size, std::size_t alignment) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (size == 0) size = 1;
  void* p = alignment <= alignof(std::max_align_t)
                ? std::malloc(size)
                : std::aligned_alloc(alignment, (size + alignment - 1) / alignment * alignment);
  if (p == nullptr) throw std::bad_alloc();
  if (g_count_bytes.load(std::memory_order_relaxed)) {
    g_net_bytes.fetch_add(BlockSize(p), std::memory_order_relaxed);
  }
  return p;
}
}  // namespace

std::uint64_t AllocationCount() noexcept {
  return g_allocations.load(std::memory_order_relaxed);
}

bool EnableByteCounting(bool on) noexcept {
  return g_count_bytes.exchange(on, std::memory_order_relaxed);
}

std::int64_t NetAllocatedBytes() noexcept {
  return g_net_bytes.load(std::memory_order_relaxed);
}

}  // namespace plexus_bench

void* operator new(std::size_t size) {
  return plexus_bench::CountedAllocate(size, 0);
}
void* operator new[](std::size_t size) {
  return plexus_bench::CountedAllocate(size, 0);
}
void* operator new(std::size_t size, std::align_val_t a) {
  return plexus_bench::CountedAllocate(size, static_cast<std::size_t>(a));
}
void* operator new[](std::size_t size, std::align_val_t a) {
  return plexus_bench::CountedAllocate(size, static_cast<std::size_t>(a));
}
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
  try {
    return plexus_bench::CountedAllocate(size, 0);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete[](void* p) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete(void* p, std::size_t) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete[](void* p, std::size_t) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete(void* p, std::align_val_t) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete[](void* p, std::align_val_t) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete(void* p, std::size_t, std::align_val_t) noexcept {
  plexus_bench::CountedFree(p);
}
void operator delete[](void* p, std::size_t, std::align_val_t) noexcept {
  plexus_bench::CountedFree(p);
}
