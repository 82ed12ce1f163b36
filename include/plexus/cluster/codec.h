// -----------------------------------------------------------------------------
// plexus/cluster/codec.h
// -----------------------------------------------------------------------------
//
// A Codec turns messages of one bus message type into payload bytes and back, so that the
// message can cross to another node; a CodecRegistry holds the codecs a bridge knows, by type
// name. Only messages of a type with a codec cross; the others stay local.
//
// JSON is the default encoding: the type's JSON formatter (MessageFormatters::to_json) writes
// the payload and a parser given here reads it back. Types that care about size or speed give a
// compact binary encoding instead (BinaryCodec).
//
//   struct DeviceState { std::string device; int state; };
//   const auto kDeviceState = plexus::TypedMessageType<DeviceState>::Create("DeviceState",
//       {.to_json = plexus::JsonFormatter<DeviceState>([](const DeviceState& d) {
//          return nlohmann::json{{"device", d.device}, {"state", d.state}}; })});
//   plexus::cluster::CodecRegistry codecs;
//   codecs.Add(plexus::cluster::JsonCodec(kDeviceState,
//       [](const nlohmann::json& j) -> std::optional<DeviceState> {
//         return DeviceState{j.at("device").get<std::string>(), j.at("state").get<int>()};
//       }));
//
// A decoder receives bytes from the network: it must treat them as untrusted, and it reports
// refusal by returning nullopt (or by throwing, which the registry turns into a refusal).
//
// Thread safety: Codec is immutable once made. CodecRegistry is thread-compatible while it is
// being filled and thread-safe for lookups once filled: fill it before handing it to a bridge
// (the bridge keeps its own copy).

#pragma once

#include <functional>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/cluster/wire.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus::cluster {

struct Codec {
  const MessageType* type = nullptr;
  Encoding encoding = Encoding::kJson;
  // Appends the payload of `message` to `out`; false: this message cannot be encoded.
  std::function<bool(const Message& message, std::string& out)> encode;
  // A message of `type` made by `node` from `payload`, or null: the payload is refused.
  std::function<Ref<Message>(std::string_view payload, NodeId node)> decode;
};

class CodecRegistry {
 public:
  // Adds `codec`. A codec without type, encode or decode, or a second codec for the same type
  // name, is misuse (reported with `where`; false returned, the registry unchanged).
  bool Add(Codec codec, SourceLocation where = SourceLocation::current());

  // The codec for a type name / a type, or null.
  const Codec* Find(std::string_view type_name) const noexcept;
  const Codec* Find(const MessageType* type) const noexcept;

  std::size_t size() const noexcept { return by_name_.size(); }

  CodecRegistry() = default;
  // A copy indexes its own codecs by type (by_type_ points into by_name_'s nodes).
  CodecRegistry(const CodecRegistry& other);
  CodecRegistry& operator=(const CodecRegistry& other);
  CodecRegistry(CodecRegistry&&) noexcept = default;  // the map's nodes move with it
  CodecRegistry& operator=(CodecRegistry&&) noexcept = default;

 private:
  // Rebuilds by_type_ from by_name_.
  void IndexByType();

  std::map<std::string, Codec, std::less<>> by_name_;
  // The codecs by type, sorted by the type's address: the bridge looks up the codec of every
  // message it sends, and a pointer comparison is cheaper than a name's.
  std::vector<std::pair<const MessageType*, const Codec*>> by_type_;
};

// A JSON codec for TypedMessageType<T>: encodes with the type's to_json formatter (a type
// without one is misuse, reported when the codec is made), decodes with
// `parse(const nlohmann::json&) -> std::optional<T>` (nullopt or an exception: refused).
template <class T, class Parse>
Codec JsonCodec(const TypedMessageType<T>& type, Parse parse,
                SourceLocation where = SourceLocation::current());

// A binary codec for TypedMessageType<T> from `encode(const T&, std::string& out)` and
// `decode(std::string_view) -> std::optional<T>`.
template <class T, class Encode, class Decode>
Codec BinaryCodec(const TypedMessageType<T>& type, Encode encode, Decode decode);

// What decoding one frame into a message gave.
struct DecodedMessage {
  RejectReason reason = RejectReason::kNone;
  Frame frame;           // valid when the frame itself was well formed
  Ref<Message> message;  // set when reason is kNone
};

// Encodes `message` into a frame appended to `out` (type name, node, `seq`, the current
// timestamp, `id`, payload). False if the registry has no codec for its type or the codec
// refuses the message.
bool EncodeMessage(const CodecRegistry& codecs, const Message& message, std::string_view id,
                   std::uint64_t seq, std::string& out);

// Decodes a frame and its payload. `local` is the receiving node: a frame that claims it is
// refused (kClaimsLocalNode), as is one with no node id (kNoNode).
DecodedMessage DecodeMessage(const CodecRegistry& codecs, std::string_view bytes,
                             const WireLimits& limits, NodeId local);

// -- implementation details below --------------------------------------------------------------

namespace cluster_internal {
// Reports (misuse) that `type` has no JSON formatter; returns false.
bool CheckJsonFormatter(const MessageType* type, SourceLocation where);
}  // namespace cluster_internal

template <class T, class Parse>
Codec JsonCodec(const TypedMessageType<T>& type, Parse parse, SourceLocation where) {
  Codec codec;
  if (!type || !cluster_internal::CheckJsonFormatter(type.get(), where)) return codec;
  codec.type = type.get();
  codec.encoding = Encoding::kJson;
  codec.encode = [to_json = type->Formatters().to_json](const Message& m, std::string& out) {
    std::optional<std::string> text = to_json(m);
    if (!text) return false;
    out += *text;
    return true;
  };
  codec.decode = [type, parse = std::move(parse)](std::string_view payload,
                                                  NodeId node) -> Ref<Message> {
    nlohmann::json j = nlohmann::json::parse(payload, nullptr, /*allow_exceptions=*/false);
    if (j.is_discarded()) return nullptr;
    std::optional<T> value = parse(j);
    if (!value) return nullptr;
    return Message::Create(type.get(), std::move(*value), node);
  };
  return codec;
}

template <class T, class Encode, class Decode>
Codec BinaryCodec(const TypedMessageType<T>& type, Encode encode, Decode decode) {
  Codec codec;
  if (!type) return codec;
  codec.type = type.get();
  codec.encoding = Encoding::kBinary;
  codec.encode = [encode = std::move(encode)](const Message& m, std::string& out) {
    const T* value = m.As<T>();
    if (value == nullptr) return false;
    encode(*value, out);
    return true;
  };
  codec.decode = [type, decode = std::move(decode)](std::string_view payload,
                                                    NodeId node) -> Ref<Message> {
    std::optional<T> value = decode(payload);
    if (!value) return nullptr;
    return Message::Create(type.get(), std::move(*value), node);
  };
  return codec;
}

}  // namespace plexus::cluster
