#include "plexus/bus/node_id.h"

#include <cstdio>
#include <random>

namespace plexus {

std::atomic<std::uint64_t> NodeId::local_word_{0};

NodeId NodeId::ChooseLocal() noexcept {
  std::random_device rd;
  Bytes b{};
  for (auto& byte : b) byte = static_cast<std::uint8_t>(rd());
  b[0] = static_cast<std::uint8_t>((b[0] | 0x02) & ~0x01);  // locally administered, unicast
  std::uint64_t expected = 0;
  const std::uint64_t fresh = Pack(b);
  return FromWord(local_word_.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)
                      ? fresh
                      : expected);
}

void SetLocalNodeId(const NodeId& id) {
  NodeId::local_word_.store(id.word_, std::memory_order_release);
}

std::optional<NodeId> NodeId::Parse(std::string_view text) {
  if (text.size() != 17) return std::nullopt;
  Bytes b{};
  for (int i = 0; i < 6; ++i) {
    if (i > 0 && text[3 * i - 1] != ':') return std::nullopt;
    unsigned value = 0;
    for (int j = 0; j < 2; ++j) {
      const char c = text[3 * i + j];
      unsigned digit;
      if (c >= '0' && c <= '9') {
        digit = static_cast<unsigned>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        digit = static_cast<unsigned>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        digit = static_cast<unsigned>(c - 'A' + 10);
      } else {
        return std::nullopt;
      }
      value = value * 16 + digit;
    }
    b[i] = static_cast<std::uint8_t>(value);
  }
  return NodeId(b);
}

std::string NodeId::ToString() const {
  if (IsNone()) return "none";
  const Bytes b = bytes();
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", b[0], b[1], b[2], b[3], b[4],
                b[5]);
  return buf;
}

}  // namespace plexus
