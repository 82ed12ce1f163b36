// -----------------------------------------------------------------------------
// plexus/bus/json.h
// -----------------------------------------------------------------------------
//
// Formatters built on nlohmann-json (Debian's nlohmann-json3-dev), for message types whose
// payload converts to JSON. Header-only and optional: the bus itself does not depend on
// nlohmann-json; include this where a type registers its formatters.
//
//   const auto kChannelState = plexus::TypedMessageType<ChannelState>::Create(
//       "ChannelState",
//       {.to_json = plexus::JsonFormatter<ChannelState>([](const ChannelState& cs) {
//          return nlohmann::json{{"channel", cs.channel}, {"state", cs.state}}; }),
//        .to_text = plexus::TextFormatter<ChannelState>([](const ChannelState& cs) {
//          return std::vector<std::pair<std::string, std::string>>{{"Channel", cs.channel}}; })});
//
// Thread safety: the formatters are as thread-safe as the functions given to them.

#pragma once

#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "plexus/bus/message.h"

namespace plexus {

// A to_json formatter from `fn(const T&) -> nlohmann::json`. A message whose payload is not a T
// renders as nullopt.
template <class T, class F>
std::function<std::optional<std::string>(const Message&)> JsonFormatter(F fn) {
  return [fn = std::move(fn)](const Message& m) -> std::optional<std::string> {
    const T* value = m.As<T>();
    if (value == nullptr) return std::nullopt;
    return nlohmann::json(fn(*value)).dump();
  };
}

// A to_text formatter from `fn(const T&) -> vector<pair<key, value>>`, rendered as AMI's
// "Key: value\r\n" lines.
template <class T, class F>
std::function<std::optional<std::string>(const Message&)> TextFormatter(F fn) {
  return [fn = std::move(fn)](const Message& m) -> std::optional<std::string> {
    const T* value = m.As<T>();
    if (value == nullptr) return std::nullopt;
    std::string out;
    for (const auto& [key, val] : fn(*value)) {
      out += key;
      out += ": ";
      out += val;
      out += "\r\n";
    }
    return out;
  };
}

}  // namespace plexus
