// A receiver that a topic's fan-out calls directly, in place of a synchronous subscription's
// delivery. Internal to the bus: a caching topic is one (caching_topic.h). The subscription it
// stands in for stays on the topic for everything else (its notices and its final message),
// and the topic calls the receiver only while that subscription is subscribed.
//
// Thread safety: Receive runs under the topic's lock, on the publisher's thread, so calls for
// one topic never overlap, except when a receiver's own work publishes on that topic again
// (the lock is recursive), which nests one call inside another.

#pragma once

#include "plexus/bus/message.h"
#include "plexus/core/ref.h"

namespace plexus::bus_internal {

class InlineReceiver : public RefCounted {
 public:
  // Handles one message published on (or forwarded into) the topic. Should not throw: an
  // exception is caught, logged and otherwise ignored, as a callback's would be.
  virtual void Receive(const Message& message) = 0;

 protected:
  InlineReceiver() = default;
  ~InlineReceiver() override = default;
};

}  // namespace plexus::bus_internal
