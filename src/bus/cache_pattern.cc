#include "plexus/bus/cache_pattern.h"

#include <atomic>
#include <cstdint>
#include <string>
#include <utility>

#include "plexus/core/misuse.h"

namespace plexus {
namespace {
std::atomic<std::uint64_t> next_pattern{0};
}  // namespace

Ref<CachePatternAll> CachePatternAll::Create(std::string_view name, CacheIdFunction id,
                                             Cache::AggregateFunction aggregate,
                                             Cache::AggregatePublishFunction publish_aggregate,
                                             SourceLocation where) {
  if (name.empty()) {
    ReportMisuse("CachePatternAll::Create: empty name", where);
    return nullptr;
  }
  if (!id) {
    ReportMisuse("CachePatternAll::Create: empty id function", where);
    return nullptr;
  }
  Ref<Cache> cache =
      Cache::Create(std::move(id), std::move(aggregate), std::move(publish_aggregate), where);
  Ref<Topic> topic = Topic::Create(name, {}, where);
  const std::uint64_t n = next_pattern.fetch_add(1, std::memory_order_relaxed);
  Ref<Topic> cached =
      Topic::Create("cache_pattern:" + std::to_string(n) + "/" + std::string(name), {}, where);
  Forward forward = ForwardAll(cached, topic, where);
  return Ref<CachePatternAll>::Adopt(new CachePatternAll(std::move(topic), std::move(cached),
                                                         std::move(cache), std::move(forward)),
                                     where);
}

Ref<CachePatternOne> CachePatternOne::Create(const Ref<CachePatternAll>& all, std::string_view name,
                                             SourceLocation where) {
  if (all == nullptr) {
    ReportMisuse("CachePatternOne::Create: null CachePatternAll", where);
    return nullptr;
  }
  if (name.empty()) {
    ReportMisuse("CachePatternOne::Create: empty name", where);
    return nullptr;
  }
  Ref<Topic> topic = Topic::Create(name, {}, where);
  // The caching topic listens on a tap of the object's topic, not on the topic itself: a
  // publish visits the topic's own subscriptions first, then its forwards, the last one made
  // first, each with everything downstream of it. The tap's forward is made before the one into
  // "all", so the raw message has reached "all" (and whatever it forwards into) before the
  // caching topic runs and its update follows the same way.
  Ref<Topic> tap = Topic::Create("cache_tap:" + std::string(name), {}, where);
  Forward to_tap = ForwardAll(topic, tap, where);
  Forward raw = ForwardAll(topic, all->GetTopic(), where);
  Ref<CachingTopic> caching = CachingTopic::Create(tap, topic, all->GetCache(), where);
  if (caching == nullptr) return nullptr;
  caching->AssumeReceivers();
  Forward cached = ForwardAll(caching->Output(), all->CachedTopic(), where);
  return Ref<CachePatternOne>::Adopt(
      new CachePatternOne(std::move(topic), std::move(caching), std::move(to_tap), std::move(raw),
                          std::move(cached)),
      where);
}

}  // namespace plexus
