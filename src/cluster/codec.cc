#include "plexus/cluster/codec.h"

#include <algorithm>
#include <chrono>
#include <exception>
#include <string>
#include <utility>

#include "plexus/core/misuse.h"

namespace plexus::cluster {

namespace cluster_internal {

bool CheckJsonFormatter(const MessageType* type, SourceLocation where) {
  if (type != nullptr && type->Formatters().to_json) return true;
  ReportMisuse(type == nullptr
                   ? std::string("JsonCodec: no message type")
                   : "JsonCodec: message type '" + type->Name() + "' has no to_json formatter",
               where);
  return false;
}

}  // namespace cluster_internal

bool CodecRegistry::Add(Codec codec, SourceLocation where) {
  if (codec.type == nullptr || !codec.encode || !codec.decode) {
    ReportMisuse("CodecRegistry::Add: a codec needs a type, an encoder and a decoder", where);
    return false;
  }
  const std::string& name = codec.type->Name();
  if (by_name_.contains(name)) {
    ReportMisuse("CodecRegistry::Add: a second codec for message type '" + name + "'", where);
    return false;
  }
  by_name_.emplace(name, std::move(codec));
  IndexByType();
  return true;
}

CodecRegistry::CodecRegistry(const CodecRegistry& other) : by_name_(other.by_name_) {
  IndexByType();
}

CodecRegistry& CodecRegistry::operator=(const CodecRegistry& other) {
  if (this != &other) {
    by_name_ = other.by_name_;
    IndexByType();
  }
  return *this;
}

void CodecRegistry::IndexByType() {
  by_type_.clear();
  for (const auto& [name, codec] : by_name_) by_type_.emplace_back(codec.type, &codec);
  std::sort(by_type_.begin(), by_type_.end(), [](const auto& x, const auto& y) {
    return std::less<const MessageType*>()(x.first, y.first);
  });
}

const Codec* CodecRegistry::Find(std::string_view type_name) const noexcept {
  const auto it = by_name_.find(type_name);
  return it == by_name_.end() ? nullptr : &it->second;
}

const Codec* CodecRegistry::Find(const MessageType* type) const noexcept {
  if (type == nullptr) return nullptr;
  // By the type itself: two types may share a name (one declined, one re-created), and only
  // the registered one matches.
  const auto at = std::lower_bound(
      by_type_.begin(), by_type_.end(), type,
      [](const std::pair<const MessageType*, const Codec*>& e, const MessageType* t) {
        return std::less<const MessageType*>()(e.first, t);
      });
  return at != by_type_.end() && at->first == type ? at->second : nullptr;
}

bool EncodeMessage(const CodecRegistry& codecs, const Message& message, std::string_view id,
                   std::uint64_t seq, std::string& out) {
  const Codec* codec = codecs.Find(&message.Type());
  if (codec == nullptr) return false;
  // The payload is encoded first, into a buffer of its own, so that a refusal leaves `out` as
  // it was and the frame's length field can be written before the payload. The buffer is the
  // thread's, reused (its capacity kept) from message to message: a bridge encodes every message
  // it sends, and an allocation per message was a large part of that. A codec that encodes
  // another message from inside its encoder gets a buffer of its own.
  thread_local std::string scratch;
  thread_local bool scratch_busy = false;
  struct Borrow {
    bool mine = !scratch_busy;
    Borrow() { scratch_busy = true; }
    ~Borrow() {
      if (mine) scratch_busy = false;
    }
  } borrow;
  std::string own;
  std::string& payload = borrow.mine ? scratch : own;
  payload.clear();
  if (!codec->encode(message, payload)) return false;
  Frame frame;
  frame.encoding = codec->encoding;
  frame.node = message.Node();
  frame.seq = seq;
  // The message's own creation time, so every node sees when it happened, not when it crossed.
  frame.timestamp_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(message.Timestamp().time_since_epoch())
          .count();
  frame.type_name = codec->type->Name();
  frame.id = id;
  frame.payload = payload;
  EncodeFrame(frame, out);
  // A rare large message does not pin its buffer for the thread's life.
  if (borrow.mine && scratch.capacity() > (64u << 10)) std::string().swap(scratch);
  return true;
}

DecodedMessage DecodeMessage(const CodecRegistry& codecs, std::string_view bytes,
                             const WireLimits& limits, NodeId local) {
  DecodedMessage result;
  result.reason = DecodeFrame(bytes, limits, result.frame);
  if (result.reason != RejectReason::kNone) {
    result.frame = Frame{};
    return result;
  }
  const Frame& frame = result.frame;
  if (frame.node.IsNone()) {
    result.reason = RejectReason::kNoNode;
    return result;
  }
  if (frame.node == local) {
    result.reason = RejectReason::kClaimsLocalNode;
    return result;
  }
  const Codec* codec = codecs.Find(frame.type_name);
  if (codec == nullptr || codec->encoding != frame.encoding) {
    result.reason = RejectReason::kUnknownType;
    return result;
  }
  try {
    result.message = codec->decode(frame.payload, frame.node);
  } catch (const std::exception&) {
    result.message = nullptr;
  } catch (...) {
    result.message = nullptr;
  }
  if (!result.message) result.reason = RejectReason::kPayloadRefused;
  return result;
}

}  // namespace plexus::cluster
