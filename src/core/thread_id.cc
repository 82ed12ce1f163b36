#include "plexus/core/thread_id.h"

#include <atomic>

namespace plexus {

std::uint32_t CurrentThreadNumber() noexcept {
  static std::atomic<std::uint32_t> next{1};
  thread_local const std::uint32_t number = next.fetch_add(1, std::memory_order_relaxed);
  return number;
}

}  // namespace plexus
