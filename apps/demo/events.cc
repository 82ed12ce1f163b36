#include "events.h"

#include <string>
#include <utility>
#include <vector>

#include "plexus/bus/json.h"

namespace demo {

namespace {
using Fields = std::vector<std::pair<std::string, std::string>>;
}  // namespace

const plexus::TypedMessageType<ChannelState>& ChannelStateType() {
  static const auto type = plexus::TypedMessageType<ChannelState>::Create(
      "ChannelState",
      {.to_json = plexus::JsonFormatter<ChannelState>([](const ChannelState& cs) {
         return nlohmann::json{{"type", "ChannelStateChange"},
                               {"channel", cs.channel},
                               {"state", kChannelStateNames[static_cast<std::size_t>(cs.state)]},
                               {"state_code", cs.state},
                               {"producer", cs.origin.producer},
                               {"seq", cs.origin.seq}};
       }),
       .to_text = plexus::TextFormatter<ChannelState>([](const ChannelState& cs) {
         return Fields{
             {"Event", "Newstate"},
             {"Channel", cs.channel},
             {"ChannelState", std::to_string(cs.state)},
             {"ChannelStateDesc", kChannelStateNames[static_cast<std::size_t>(cs.state)]}};
       })});
  return type;
}

const plexus::TypedMessageType<DeviceState>& DeviceStateType() {
  static const auto type = plexus::TypedMessageType<DeviceState>::Create(
      "DeviceState",
      {.to_json = plexus::JsonFormatter<DeviceState>([](const DeviceState& ds) {
         return nlohmann::json{{"type", "DeviceStateChanged"},
                               {"device", ds.device},
                               {"state", kDeviceStateNames[static_cast<std::size_t>(ds.state)]},
                               {"producer", ds.origin.producer},
                               {"seq", ds.origin.seq}};
       }),
       .to_text = plexus::TextFormatter<DeviceState>([](const DeviceState& ds) {
         return Fields{{"Event", "DeviceStateChange"},
                       {"Device", ds.device},
                       {"State", kDeviceStateNames[static_cast<std::size_t>(ds.state)]}};
       })});
  return type;
}

const Origin* OriginOf(const plexus::Message& m) {
  if (const ChannelState* cs = ChannelStateType().Get(m)) return &cs->origin;
  if (const DeviceState* ds = DeviceStateType().Get(m)) return &ds->origin;
  return nullptr;
}

}  // namespace demo
