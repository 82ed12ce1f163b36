#include "plexus/bus/node_id.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <random>

namespace plexus {
namespace {

// The local id lives in one 64-bit word (six bytes and a "set" bit) so that NodeId::Local, which
// every message creation calls, is one relaxed load.
constexpr std::uint64_t kSetBit = std::uint64_t{1} << 63;

std::uint64_t Pack(const NodeId::Bytes& b) {
  std::uint64_t w = kSetBit;
  for (int i = 0; i < 6; ++i) w |= std::uint64_t{b[i]} << (8 * i);
  return w;
}

NodeId Unpack(std::uint64_t w) {
  NodeId::Bytes b{};
  for (int i = 0; i < 6; ++i) b[i] = static_cast<std::uint8_t>(w >> (8 * i));
  return NodeId(b);
}

std::atomic<std::uint64_t>& LocalWord() {
  static std::atomic<std::uint64_t> word{0};
  return word;
}

std::uint64_t RandomLocal() {
  std::random_device rd;
  NodeId::Bytes b{};
  for (auto& byte : b) byte = static_cast<std::uint8_t>(rd());
  b[0] = static_cast<std::uint8_t>((b[0] | 0x02) & ~0x01);  // locally administered, unicast
  return Pack(b);
}

}  // namespace

NodeId NodeId::Local() noexcept {
  std::uint64_t w = LocalWord().load(std::memory_order_acquire);
  if (w == 0) [[unlikely]] {
    std::uint64_t expected = 0;
    const std::uint64_t fresh = RandomLocal();
    w = LocalWord().compare_exchange_strong(expected, fresh, std::memory_order_acq_rel) ? fresh
                                                                                        : expected;
  }
  return Unpack(w);
}

void SetLocalNodeId(const NodeId& id) {
  LocalWord().store(id.IsNone() ? 0 : Pack(id.bytes()), std::memory_order_release);
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
  if (!set_) return "none";
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", bytes_[0], bytes_[1], bytes_[2],
                bytes_[3], bytes_[4], bytes_[5]);
  return buf;
}

}  // namespace plexus
