#include "producers.h"

#include <cstdio>
#include <thread>

#include "events.h"
#include "options.h"

namespace demo {

Producers MakeProducers(plexus::TopicPool& topic_pool, int count,
                        std::vector<std::string>& failures) {
  Producers producers;
  for (int i = 0; i < count; ++i) {
    auto p = std::make_unique<Producer>();
    p->index = i;
    for (int c = 0; c < kChannelsPerProducer; ++c) {
      char name[64];
      std::snprintf(name, sizeof name, "PJSIP/%s-%08d", kUserNames[i], c + 1);
      p->channel_names.emplace_back(name);
      p->channel_topics.push_back(topic_pool.Get(std::string("channel/") + name));
    }
    for (int d = 0; d < kDevicesPerProducer; ++d) {
      char name[64];
      std::snprintf(name, sizeof name, "PJSIP/%s%s", kUserNames[i], d == 0 ? "" : "-desk");
      p->device_names.emplace_back(name);
      p->device_topics.push_back(topic_pool.Get(std::string("device/") + name));
    }
    for (const auto& t : p->channel_topics) {
      if (!t) failures.push_back("TopicPool::Get returned no topic");
    }
    p->channel_published.assign(p->channel_topics.size(), 0);
    p->device_published.assign(p->device_topics.size(), 0);
    producers.push_back(std::move(p));
  }
  return producers;
}

std::uint64_t PublishedByEveryone(const Producers& producers) {
  std::uint64_t n = 0;
  for (const auto& p : producers) n += p->published.load(std::memory_order_acquire);
  return n;
}

std::uint64_t TotalPublished(const Producers& producers) {
  std::uint64_t n = 0;
  for (const auto& p : producers) n += p->channel_events + p->device_events;
  return n;
}

std::uint64_t DeviceEventsPublished(const Producers& producers) {
  std::uint64_t n = 0;
  for (const auto& p : producers) n += p->device_events;
  return n;
}

void RunProducer(Producer& p, const std::atomic<int>& phase, const Producers& everyone,
                 const std::vector<const Count*>& throttle_on) {
  const auto& channel_type = ChannelStateType();
  const auto& device_type = DeviceStateType();
  std::uint64_t seq = 0;
  std::size_t next_channel = 0;
  std::size_t next_device = 0;
  const auto publish_one = [&](bool paced) {
    const Origin origin{p.index, seq, plexus::MonotonicNanos(), paced};
    if (seq % 5 != 4) {
      const std::size_t c = next_channel++ % p.channel_topics.size();
      const int state = static_cast<int>((seq / 5 + c) % kChannelStateNames.size());
      p.channel_topics[c]->Publish(channel_type, ChannelState{p.channel_names[c], state, origin});
      ++p.channel_published[c];
      ++p.channel_events;
    } else {
      const std::size_t d = next_device++ % p.device_topics.size();
      const int state = static_cast<int>((seq / 5 + d) % kDeviceStateNames.size());
      p.device_topics[d]->Publish(device_type, DeviceState{p.device_names[d], state, origin});
      ++p.device_published[d];
      ++p.device_events;
    }
    ++seq;
  };
  for (int now = phase.load(std::memory_order_relaxed); now != kStop;
       now = phase.load(std::memory_order_relaxed)) {
    if (now == kPaced) {
      publish_one(true);
      p.published.store(seq, std::memory_order_release);
      std::this_thread::sleep_for(kPacedInterval);
      continue;
    }
    for (int burst = 0; burst < 64; ++burst) publish_one(false);
    p.published.store(seq, std::memory_order_release);
    // Stay within kWindow events of the slowest asynchronous subscriber of "all".
    for (const Count* c : throttle_on) {
      while (PublishedByEveryone(everyone) > c->Get() + kWindow &&
             phase.load(std::memory_order_relaxed) == kFlatOut) {
        std::this_thread::yield();
      }
    }
  }
}

}  // namespace demo
