// The demo's producers: each owns a few channels and devices, each with its own topic of the
// topic pool, and publishes their state changes from a thread of its own.

#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plexus/bus/topic.h"
#include "plexus/bus/topic_pool.h"
#include "plexus/core/ref.h"
#include "tally.h"

namespace demo {

struct Producer {
  int index = 0;
  std::vector<plexus::Ref<plexus::Topic>> channel_topics;
  std::vector<std::string> channel_names;
  std::vector<plexus::Ref<plexus::Topic>> device_topics;
  std::vector<std::string> device_names;
  // Events published per topic (written by the producer thread, read after it is joined).
  std::vector<std::uint64_t> channel_published;
  std::vector<std::uint64_t> device_published;
  std::uint64_t channel_events = 0;
  std::uint64_t device_events = 0;
  alignas(64) std::atomic<std::uint64_t> published{0};
};

using Producers = std::vector<std::unique_ptr<Producer>>;

// Makes `count` producers and gets their per-object topics ("channel/PJSIP/alice-00000001",
// "device/PJSIP/alice", ...) from `topic_pool`. A topic the pool did not give is recorded in
// `failures`.
Producers MakeProducers(plexus::TopicPool& topic_pool, int count,
                        std::vector<std::string>& failures);

// Events published so far by all producers together (as each last announced).
std::uint64_t PublishedByEveryone(const Producers& producers);

// Events published in the whole run; read after the producer threads were joined.
std::uint64_t TotalPublished(const Producers& producers);
std::uint64_t DeviceEventsPublished(const Producers& producers);

// Publishes events on the producer's topics: four channel-state changes for each device-state
// change, objects taken in turn, states cycling as a call's would. Flat out (within kWindow of
// the slowest of `throttle_on`) while `phase` is kFlatOut, one event per kPacedInterval while
// it is kPaced, until it is kStop.
void RunProducer(Producer& p, const std::atomic<int>& phase, const Producers& everyone,
                 const std::vector<const Count*>& throttle_on);

}  // namespace demo
