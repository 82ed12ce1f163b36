// -----------------------------------------------------------------------------
// plexus/bus/node_id.h
// -----------------------------------------------------------------------------
//
// NodeId names the node (Asterisk's "entity id", EID: six bytes, usually a MAC address) that
// created a message. Every message carries one: the local node's by default, a remote node's
// for messages that arrived over a bridge, or none for aggregates computed from several nodes.
//
// The local node id is chosen at first use (random, with the locally-administered bit set)
// unless the process sets it first with SetLocalNodeId.
//
// Thread safety: NodeId is a value type (thread-compatible). NodeId::Local and SetLocalNodeId
// are thread-safe.

#pragma once

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace plexus {

class NodeId {
 public:
  using Bytes = std::array<std::uint8_t, 6>;

  // No node (an aggregate).
  constexpr NodeId() noexcept = default;
  constexpr explicit NodeId(const Bytes& bytes) noexcept : bytes_(bytes), set_(true) {}

  static constexpr NodeId None() noexcept { return NodeId(); }
  // This process's node id.
  static NodeId Local() noexcept;
  // Parses "aa:bb:cc:dd:ee:ff"; nullopt if malformed.
  static std::optional<NodeId> Parse(std::string_view text);

  bool IsNone() const noexcept { return !set_; }
  bool IsLocal() const noexcept { return set_ && *this == Local(); }
  const Bytes& bytes() const noexcept { return bytes_; }
  // "aa:bb:cc:dd:ee:ff", or "none".
  std::string ToString() const;

  friend constexpr bool operator==(const NodeId& a, const NodeId& b) noexcept {
    return a.set_ == b.set_ && a.bytes_ == b.bytes_;
  }

 private:
  Bytes bytes_{};
  bool set_ = false;
};

// Sets this process's node id (for example from configuration, before messages are made).
// Messages made earlier keep the id they were made with.
void SetLocalNodeId(const NodeId& id);

}  // namespace plexus
