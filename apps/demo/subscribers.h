// The demo's subscribers, one of each delivery mode, and what each must receive:
//
//   pool_all       a pool subscription on "all" counting every event, checking each producer's
//                  order and sampling the publish-to-callback latency;
//   typed_all      a typed pool subscription on "all" that takes DeviceState only (a type filter);
//   dedicated_all  a dedicated-thread subscription on "all" that also renders every
//                  kFormatEvery-th event as JSON and as text (the work a logging consumer does);
//   sync           synchronous subscriptions on the first channel topic and the first device
//                  topic of each producer, run on the producer's thread inside the publish.

#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/exec/thread_pool.h"
#include "producers.h"
#include "tally.h"

namespace demo {

struct Subscribers {
  explicit Subscribers(int producers);

  Tally pool_all;
  Tally typed_all;
  Tally dedicated_all;
  // Per producer: its first channel's, then its first device's.
  std::vector<std::unique_ptr<Tally>> sync;

  // Every tally: pool_all, typed_all, dedicated_all, then the synchronous ones.
  std::vector<Tally*> All();
  // Events received so far, by the synchronous subscribers and by everyone.
  std::uint64_t SyncDelivered() const;
  std::uint64_t Delivered() const;
};

// Subscribes every tally (the asynchronous ones on `pool` or a thread of their own, with
// congestion alerts above the producers' window). False, after a message on stderr, if a
// subscription failed.
bool SubscribeAll(Subscribers& subscribers, const plexus::Ref<plexus::Topic>& all,
                  const plexus::Ref<plexus::ThreadPool>& pool, const Producers& producers);

// What each subscriber should receive, from what the (joined) producers published.
void SetExpectedCounts(Subscribers& subscribers, const Producers& producers);

// Unsubscribes and joins every subscription, checks that each got exactly one final message and
// nothing after it, and drops the handles. Problems go to `failures`.
void UnsubscribeJoinAndCheckFinals(Subscribers& subscribers, std::vector<std::string>& failures);

}  // namespace demo
