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
#include <atomic>
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
  constexpr explicit NodeId(const Bytes& bytes) noexcept : word_(Pack(bytes)) {}

  static constexpr NodeId None() noexcept { return NodeId(); }
  // This process's node id.
  static NodeId Local() noexcept {
    const std::uint64_t w = local_word_.load(std::memory_order_acquire);
    return w != 0 ? FromWord(w) : ChooseLocal();
  }
  // Parses "aa:bb:cc:dd:ee:ff"; nullopt if malformed.
  static std::optional<NodeId> Parse(std::string_view text);

  bool IsNone() const noexcept { return word_ == 0; }
  bool IsLocal() const noexcept { return word_ != 0 && *this == Local(); }
  Bytes bytes() const noexcept {
    Bytes b{};
    for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(word_ >> (8 * i));
    return b;
  }
  // "aa:bb:cc:dd:ee:ff", or "none".
  std::string ToString() const;

  friend constexpr bool operator==(const NodeId& a, const NodeId& b) noexcept {
    return a.word_ == b.word_;
  }

 private:
  // Six bytes and a "set" bit in one word: copying and comparing ids (every message creation
  // copies the local one) is one move.
  static constexpr std::uint64_t kSetBit = std::uint64_t{1} << 63;
  static constexpr std::uint64_t Pack(const Bytes& b) noexcept {
    std::uint64_t w = kSetBit;
    for (int i = 0; i < 6; ++i) w |= std::uint64_t{b[i]} << (8 * i);
    return w;
  }
  static NodeId FromWord(std::uint64_t word) noexcept {
    NodeId id;
    id.word_ = word;
    return id;
  }
  static NodeId ChooseLocal() noexcept;
  friend void SetLocalNodeId(const NodeId& id);
  std::uint64_t word_ = 0;
  static std::atomic<std::uint64_t> local_word_;
};

// Sets this process's node id (for example from configuration, before messages are made).
// Messages made earlier keep the id they were made with.
void SetLocalNodeId(const NodeId& id);

}  // namespace plexus
