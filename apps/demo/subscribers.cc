#include "subscribers.h"

#include <cstdio>
#include <optional>

#include "events.h"
#include "options.h"
#include "plexus/bus/message.h"
#include "plexus/bus/subscription.h"

namespace demo {

using plexus::Message;

Subscribers::Subscribers(int producers)
    : pool_all("pool on all", producers),
      typed_all("pool on all, DeviceState only", producers),
      dedicated_all("dedicated thread on all", producers) {}

std::vector<Tally*> Subscribers::All() {
  std::vector<Tally*> tallies = {&pool_all, &typed_all, &dedicated_all};
  for (const auto& t : sync) tallies.push_back(t.get());
  return tallies;
}

std::uint64_t Subscribers::SyncDelivered() const {
  std::uint64_t n = 0;
  for (const auto& t : sync) n += t->events.Get();
  return n;
}

std::uint64_t Subscribers::Delivered() const {
  return pool_all.events.Get() + typed_all.events.Get() + dedicated_all.events.Get() +
         SyncDelivered();
}

bool SubscribeAll(Subscribers& subscribers, const plexus::Ref<plexus::Topic>& all,
                  const plexus::Ref<plexus::ThreadPool>& pool, const Producers& producers) {
  plexus::SubscriptionOptions pool_options;
  pool_options.pool = pool;
  pool_options.high_water = kHighWater;
  pool_options.low_water = kLowWater;
  plexus::SubscriptionOptions dedicated_options = pool_options;
  dedicated_options.mode = plexus::DeliveryMode::kDedicatedThread;
  dedicated_options.pool = nullptr;
  plexus::SubscriptionOptions sync_options;
  sync_options.mode = plexus::DeliveryMode::kSynchronous;

  subscribers.pool_all.subscription = plexus::Subscribe(
      all,
      [t = &subscribers.pool_all](const Message& m, bool is_final) {
        if (is_final) return t->Final();
        if (const Origin* o = OriginOf(m)) t->See(*o, /*check_order=*/true, /*latency=*/true);
      },
      pool_options);

  subscribers.typed_all.subscription = plexus::Subscribe(
      all, DeviceStateType(),
      [t = &subscribers.typed_all](const DeviceState& ds, const Message&) {
        t->See(ds.origin, /*check_order=*/true, /*latency=*/false);
      },
      pool_options);

  subscribers.dedicated_all.subscription = plexus::Subscribe(
      all,
      [t = &subscribers.dedicated_all](const Message& m, bool is_final) {
        if (is_final) return t->Final();
        const Origin* o = OriginOf(m);
        if (o == nullptr) return;
        if (t->events.Get() % kFormatEvery == 0) {
          // The work a logging consumer does: render the event in both formats.
          std::optional<std::string> json = m.ToJson();
          std::optional<std::string> text = m.ToText();
          if (json && text) {
            t->last_json = std::move(*json);
            t->last_text = std::move(*text);
            ++t->formatted;
          }
        }
        t->See(*o, /*check_order=*/true, /*latency=*/true);
      },
      dedicated_options);

  for (const auto& p : producers) {
    for (const plexus::Ref<plexus::Topic>* topic :
         {&p->channel_topics.front(), &p->device_topics.front()}) {
      auto t = std::make_unique<Tally>("sync on " + (*topic)->Name(),
                                       static_cast<int>(producers.size()));
      t->subscription = plexus::Subscribe(
          *topic,
          [tp = t.get()](const Message& m, bool is_final) {
            if (is_final) return tp->Final();
            if (const Origin* o = OriginOf(m)) tp->See(*o, /*check_order=*/true, false);
          },
          sync_options);
      subscribers.sync.push_back(std::move(t));
    }
  }

  for (Tally* t : subscribers.All()) {
    if (!t->subscription || !*t->subscription) {
      std::fprintf(stderr, "plexus_demo: Subscribe failed (%s)\n", t->label.c_str());
      return false;
    }
  }
  return true;
}

void SetExpectedCounts(Subscribers& subscribers, const Producers& producers) {
  const std::uint64_t total = TotalPublished(producers);
  subscribers.pool_all.expected = total;
  subscribers.dedicated_all.expected = total;
  subscribers.typed_all.expected = DeviceEventsPublished(producers);
  for (std::size_t i = 0; i < producers.size(); ++i) {
    subscribers.sync[2 * i]->expected = producers[i]->channel_published.front();
    subscribers.sync[2 * i + 1]->expected = producers[i]->device_published.front();
  }
}

void UnsubscribeJoinAndCheckFinals(Subscribers& subscribers, std::vector<std::string>& failures) {
  const std::vector<Tally*> tallies = subscribers.All();
  for (Tally* t : tallies) {
    if (!t->subscription->UnsubscribeAndJoin()) {
      failures.push_back(t->label + ": UnsubscribeAndJoin failed");
    }
  }
  for (Tally* t : tallies) {
    // The typed face does not pass the final message on.
    const bool typed = t == &subscribers.typed_all;
    if (!typed && t->finals.load() != 1) {
      failures.push_back(t->label + ": " + std::to_string(t->finals.load()) +
                         " final messages (expected exactly 1)");
    }
    if (t->after_final.load() != 0) {
      failures.push_back(t->label + ": " + std::to_string(t->after_final.load()) +
                         " callbacks after the final message");
    }
    t->subscription.reset();
  }
}

}  // namespace demo
