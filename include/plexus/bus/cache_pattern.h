// -----------------------------------------------------------------------------
// plexus/bus/cache_pattern.h
// -----------------------------------------------------------------------------
//
// The cache pattern (Asterisk's stasis_cp_all / stasis_cp_single): how a family of objects
// (channels, endpoints, bridges) publishes its snapshots.
//
//   CachePatternAll  an "all" topic `name`, its cached twin "cache_pattern:<N>/<name>", and one
//                    cache shared by every object of the family. The cached twin is forwarded
//                    into "all", as in Asterisk, so a subscriber of "all" sees the raw messages
//                    and the cache updates, one of the cached twin the cache updates only.
//   CachePatternOne  one object's topic `<name>`, with a caching topic over it into the shared
//                    cache; the object's topic is forwarded into "all", the caching topic's
//                    output into the cached twin.
//
// Order: on "all", an object's raw message comes before the cache update made from it. The
// cache holds the snapshot by the time the publish returns, as with any caching topic.
//
//   auto channels = plexus::CachePatternAll::Create("channel:all", &ChannelId);
//   auto alice = plexus::CachePatternOne::Create(channels, "channel:PJSIP/alice-0001");
//   alice->GetTopic()->Publish(snapshot);           // cached, then seen on both "all" topics
//   channels->GetCache()->Get(kChannelSnapshot, id); // every object's latest snapshot
//
// Lifetime: Ref<...>. Dropping a CachePatternOne cancels its forwards and stops its caching
// topic (without waiting, as dropping a CachingTopic does), nothing else: what it cached stays
// in the shared cache (publish a cache clear first to remove it), and holders of its topic keep
// a working topic that no longer reaches "all". A CachePatternOne does not keep its
// CachePatternAll alive, only the topics and cache it forwards into.
//
// Thread safety: thread-safe (immutable after creation; the parts are thread-safe).

#pragma once

#include <string_view>
#include <utility>

#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus {

class CachePatternAll final : public RefCounted {
 public:
  // An empty name or an empty id function is misuse (reported, null returned).
  static Ref<CachePatternAll> Create(std::string_view name, CacheIdFunction id,
                                     Cache::AggregateFunction aggregate = nullptr,
                                     Cache::AggregatePublishFunction publish_aggregate = nullptr,
                                     SourceLocation where = SourceLocation::current());

  // The "all" topic: every object's raw messages and cache updates.
  const Ref<Topic>& GetTopic() const noexcept { return topic_; }
  // The cached twin: every object's cache updates.
  const Ref<Topic>& CachedTopic() const noexcept { return cached_; }
  const Ref<Cache>& GetCache() const noexcept { return cache_; }

 private:
  CachePatternAll(Ref<Topic> topic, Ref<Topic> cached, Ref<Cache> cache, Forward forward)
      : topic_(std::move(topic)),
        cached_(std::move(cached)),
        cache_(std::move(cache)),
        forward_(std::move(forward)) {}
  ~CachePatternAll() override = default;

  const Ref<Topic> topic_;
  const Ref<Topic> cached_;
  const Ref<Cache> cache_;
  Forward forward_;  // cached twin -> all
};

class CachePatternOne final : public RefCounted {
 public:
  // A null `all` or an empty name is misuse (reported, null returned).
  static Ref<CachePatternOne> Create(const Ref<CachePatternAll>& all, std::string_view name,
                                     SourceLocation where = SourceLocation::current());

  // The object's topic: publish its snapshots (and cache clears) here.
  const Ref<Topic>& GetTopic() const noexcept { return topic_; }
  // The object's cache updates (the caching topic's output).
  const Ref<Topic>& CachedTopic() const noexcept { return caching_->Output(); }
  const Ref<CachingTopic>& GetCachingTopic() const noexcept { return caching_; }

 private:
  CachePatternOne(Ref<Topic> topic, Ref<CachingTopic> caching, Forward tap, Forward raw,
                  Forward cached)
      : topic_(std::move(topic)),
        caching_(std::move(caching)),
        forward_tap_(std::move(tap)),
        forward_raw_(std::move(raw)),
        forward_cached_(std::move(cached)) {}
  ~CachePatternOne() override = default;

  const Ref<Topic> topic_;
  const Ref<CachingTopic> caching_;
  Forward forward_tap_;     // object -> the caching topic's tap
  Forward forward_raw_;     // object -> all
  Forward forward_cached_;  // caching output -> cached twin
};

}  // namespace plexus
