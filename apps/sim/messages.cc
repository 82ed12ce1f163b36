#include "messages.h"

#include <cstdio>

#include "plexus/bus/json.h"

namespace sim {

std::string DeviceName(std::uint32_t device) {
  char name[32];
  std::snprintf(name, sizeof name, "PJSIP/dev-%04u", device);
  return name;
}

const plexus::TypedMessageType<CallSnapshot>& CallSnapshotType() {
  static const auto type = plexus::TypedMessageType<CallSnapshot>::Create(
      "CallSnapshot", {.to_json = plexus::JsonFormatter<CallSnapshot>([](const CallSnapshot& s) {
                         return nlohmann::json{
                             {"type", "CallSnapshot"},
                             {"call", s.call_id},
                             {"device", DeviceName(s.device)},
                             {"state", kCallStateNames[static_cast<std::size_t>(s.state)]}};
                       })});
  return type;
}

const plexus::TypedMessageType<CallEvent>& CallEventType() {
  static const auto type = plexus::TypedMessageType<CallEvent>::Create(
      "CallEvent", {.to_json = plexus::JsonFormatter<CallEvent>([](const CallEvent& e) {
                      return nlohmann::json{
                          {"type", kEventKindNames[static_cast<std::size_t>(e.kind)]},
                          {"call", e.call_id},
                          {"device", DeviceName(e.device)},
                          {"detail", e.detail}};
                    })});
  return type;
}

const plexus::TypedMessageType<CallEnded>& CallEndedType() {
  static const auto type = plexus::TypedMessageType<CallEnded>::Create(
      "CallEnded", {.to_json = plexus::JsonFormatter<CallEnded>([](const CallEnded& c) {
                      return nlohmann::json{{"type", "CallEnded"},
                                            {"call", c.call_id},
                                            {"device", DeviceName(c.device)},
                                            {"disposition", c.disposition},
                                            {"cause", c.cause},
                                            {"refreshes", c.refreshes},
                                            {"start_us", c.start_us},
                                            {"answer_us", c.answer_us},
                                            {"end_us", c.end_us}};
                    })});
  return type;
}

std::string CallIdOf(const plexus::Message& message) {
  const CallSnapshot* s = CallSnapshotType().Get(message);
  return s != nullptr ? std::to_string(s->call_id) : std::string();
}

}  // namespace sim
