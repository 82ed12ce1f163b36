#include "plexus/core/id.h"

#include <atomic>

namespace plexus {

std::uint64_t NextUniqueId() noexcept {
  static std::atomic<std::uint64_t> next{1};
  return next.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace plexus
