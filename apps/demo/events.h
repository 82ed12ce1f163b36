// The demo's events: the two typed message types a PBX publishes most, with the origin every
// event carries so that subscribers can check order and measure latency.

#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"

namespace demo {

// Asterisk's channel states (AST_STATE_*), as AMI names them.
inline constexpr std::array<const char*, 8> kChannelStateNames = {
    "Down", "Rsrvd", "OffHook", "Dialing", "Ring", "Ringing", "Up", "Busy"};
// Asterisk's device states (AST_DEVICE_*).
inline constexpr std::array<const char*, 5> kDeviceStateNames = {"NOT_INUSE", "INUSE", "BUSY",
                                                                 "RINGING", "ONHOLD"};

// What every event carries besides its own fields: who published it, in what order, when.
struct Origin {
  int producer = 0;
  std::uint64_t seq = 0;     // per producer, over both types
  std::int64_t sent_ns = 0;  // MonotonicNanos() at publish
  bool paced = false;        // published in the paced (latency) phase
};

struct ChannelState {
  std::string channel;  // "PJSIP/alice-00000001"
  int state = 0;        // index into kChannelStateNames
  Origin origin;
};

struct DeviceState {
  std::string device;  // "PJSIP/alice"
  int state = 0;       // index into kDeviceStateNames
  Origin origin;
};

// The registered types, each with a JSON formatter (plexus/bus/json.h) and an AMI-style text
// formatter. Made on first use.
const plexus::TypedMessageType<ChannelState>& ChannelStateType();
const plexus::TypedMessageType<DeviceState>& DeviceStateType();

// The origin of one of our events, or null for anything else (subscription-change notices).
const Origin* OriginOf(const plexus::Message& m);

}  // namespace demo
