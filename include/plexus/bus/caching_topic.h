// -----------------------------------------------------------------------------
// plexus/bus/caching_topic.h
// -----------------------------------------------------------------------------
//
// CachingTopic keeps a Cache (cache.h) current with the snapshots published on an original
// topic and tells its own subscribers what changed (Asterisk's stasis_caching_topic):
//
//   * it subscribes *synchronously* to the original topic, so the cache holds a snapshot by
//     the time the Publish of that snapshot returns (and from the publishing thread). The
//     topic's fan-out calls the caching topic directly for each published message, before its
//     other subscriptions (no delivery through the subscription's callback, which sees only
//     notices and the final message), so caching a snapshot costs a publisher no callback;
//   * for each cacheable message (the cache's id function gives a non-empty id, and the
//     message carries a node id) it stores the snapshot and publishes a CacheUpdate
//     {type, old snapshot or null, new snapshot} on its output topic "cache:<N>/<original>";
//   * a CacheClear message (MakeCacheClear(snapshot)) published on the original topic removes
//     that snapshot's node's entry and publishes an update whose new snapshot is null; a
//     clear of a snapshot that is not cached publishes nothing;
//   * when the entry's aggregate changes it calls the cache's aggregate-publish function with
//     the original topic and the new aggregate (if non-null), then publishes an aggregate
//     update {type, old aggregate, new aggregate};
//   * everything else (non-cacheable messages, the subscription's own notices) goes no
//     further: the output carries cache updates only;
//   * its subscription listens to the other subscriptions' notices on the original topic
//     (SubscriptionOptions::subscription_changes), so an id function may cache them; an
//     "Unsubscribe" notice also clears a subscription-change entry cached under that
//     subscription's id, so caching notices cannot grow without bound.
//
// Update messages are built only when the output topic has a receiver (a subscriber or a
// forward: Topic::HasReceivers, one relaxed load), as Asterisk builds them only for
// subscribers. They carry the local node id. A caching topic nobody listens to allocates
// nothing per update of an existing entry.
//
// Timestamp: an update happened when its cause was published, so an update message carries the
// timestamp of the message that caused it (the new snapshot's, or the CacheClear's or the
// unsubscribe notice's; an aggregate update its snapshot update's), not the instant it was
// made; RemoveNode's updates carry the time of the removal. Updates of one original topic are
// so stamped in that topic's publish order, as its messages are (publishers on several
// threads: by each one's own clock, message.h).
//
// Order: updates for one original topic are published in that topic's publish order, from the
// publisher's thread, inside the original topic's fan-out (its synchronous-subscription rule
// applies: a subscriber of the original topic must not wait, in a synchronous callback, for a
// thread that publishes there). RemoveNode runs on its caller's thread, as one step for the
// cache's writers (cache.h, "Node removal"): a snapshot of the node published while it runs is
// not cached and publishes nothing, and each clear update is published before it returns, so
// no update of a snapshot of that node can overtake it; updates of other nodes' snapshots (and
// aggregate updates) of concurrent publishes may interleave with its updates.
//
// Errors: an id function that throws fails that message's caching: the cache is unchanged,
// nothing is published, the error is logged with the original topic's name and counted
// (Stats().id_failures). The aggregate-publish function's exceptions are logged and counted
// likewise (aggregate_publish_failures).
//
// Lifetime: Ref<CachingTopic>. Dropping the last reference unsubscribes from the original
// topic (without waiting); the cache, the topics and any subscriber of the output may be
// dropped before or after, in any order. Unsubscribe/UnsubscribeAndJoin end caching earlier;
// afterwards the output topic stays usable (it simply receives nothing more) and RemoveNode is
// misuse.
//
// Thread safety: thread-safe. Every member function may be called from any thread, except
// UnsubscribeAndJoin from inside the caching callback (see Subscription::Join).

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string>

#include "plexus/bus/cache.h"
#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/bus/node_id.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus {

// The payload of a cache-update message: what changed in one cache entry. `type` is the
// snapshot type (the new snapshot's, or the old one's on removal); for an aggregate update
// both snapshots are aggregates (NodeId::None()).
struct CacheUpdate {
  const MessageType* type = nullptr;
  Ref<Message> old_snapshot;
  Ref<Message> new_snapshot;
};
// The type of cache-update messages.
const TypedMessageType<CacheUpdate>& CacheUpdateType();

// The payload of a cache-clear message: the snapshot whose (type, id, node) entry to remove.
struct CacheClear {
  Ref<Message> snapshot;
};
// The type of cache-clear messages.
const TypedMessageType<CacheClear>& CacheClearType();
// A cache-clear message for `snapshot` (to publish on a caching topic's original topic). A
// null snapshot is misuse (reported, null returned).
Ref<Message> MakeCacheClear(const Ref<Message>& snapshot,
                            SourceLocation where = SourceLocation::current());

// A snapshot of a caching topic's counters.
struct CachingTopicStats {
  std::uint64_t cached = 0;             // snapshots stored
  std::uint64_t cleared = 0;            // snapshots removed (clears and RemoveNode)
  std::uint64_t not_cacheable = 0;      // messages without an id or a node, and idle clears
  std::uint64_t id_failures = 0;        // id functions that threw
  std::uint64_t updates_published = 0;  // cache-update messages (aggregate ones included)
  std::uint64_t aggregate_publish_failures = 0;
};

namespace bus_internal {
class CachingCore;
}  // namespace bus_internal

class CachingTopic final : public RefCounted {
 public:
  // Caches what `original` carries into `cache`. Null arguments are misuse (reported, null
  // returned).
  static Ref<CachingTopic> Create(const Ref<Topic>& original, const Ref<Cache>& cache,
                                  SourceLocation where = SourceLocation::current());

  // The topic cache updates are published on.
  const Ref<Topic>& Output() const noexcept;
  const Ref<Cache>& GetCache() const noexcept;
  // The original topic (null once unsubscribed and the subscription let it go).
  Ref<Topic> Original() const;

  // Stops caching; true if this call did it (false: already unsubscribed).
  bool Unsubscribe(SourceLocation where = SourceLocation::current());
  // Stops caching and waits until the subscription's final message was handled.
  bool UnsubscribeAndJoin(SourceLocation where = SourceLocation::current());
  bool IsSubscribed() const noexcept;

  // Removes every snapshot of `node` from the cache (the cluster calls this when a node
  // leaves), publishing a clear update for each and recomputing the aggregates they fed.
  // Returns how many snapshots were removed. Local entries are removed only if `node` is the
  // local node. Misuse after Unsubscribe (reported, 0 returned).
  std::size_t RemoveNode(const NodeId& node, SourceLocation where = SourceLocation::current());

  CachingTopicStats Stats() const;

 private:
  friend class CachePatternOne;
  // Caches what `source` carries (the original, or a topic the original forwards into);
  // aggregates are published on `original`.
  static Ref<CachingTopic> Create(const Ref<Topic>& source, const Ref<Topic>& original,
                                  const Ref<Cache>& cache, SourceLocation where);
  // Builds updates without asking the output whether it has receivers (the cache pattern
  // forwards the output for as long as the caching topic lives).
  void AssumeReceivers() noexcept;
  CachingTopic(Ref<bus_internal::CachingCore> core, Subscription subscription);
  ~CachingTopic() override;

  const Ref<bus_internal::CachingCore> core_;
  Subscription subscription_;
};

}  // namespace plexus
