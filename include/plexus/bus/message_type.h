// -----------------------------------------------------------------------------
// plexus/bus/message_type.h
// -----------------------------------------------------------------------------
//
// MessageType is the registered kind of a bus message (Asterisk's stasis_message_type): a name,
// a small process-unique id (used by subscription filters), and optional formatters that render
// a message of the type as JSON or as text ("Key: value" lines, as AMI does). Subscriptions can
// filter on the formats a type offers (MessageFormats).
//
// A type may be *declined* by configuration (DeclineMessageTypes, Asterisk's
// [declined_message_types]): a declined type still exists as an object, but no message of it is
// ever created (Message::Create returns null without complaint) or delivered.
//
// TypedMessageType<T> is the typed face: a MessageType bound to the C++ payload type T, so that
// publishing and receiving never casts:
//
//   struct ChannelState { std::string channel; int state; };
//   const auto kChannelState = plexus::TypedMessageType<ChannelState>::Create("ChannelState");
//   topic->Publish(kChannelState, ChannelState{"PJSIP/alice-0001", 6});
//   ...
//   if (const ChannelState* cs = kChannelState.Get(message)) Show(cs->channel);
//
// Lifetime: types live until the process ends (they are few, made at start-up, and messages
// point at them without a reference, as in Asterisk).
//
// Thread safety: thread-safe. A MessageType is immutable once created; formatters may be called
// from any thread at once and must be thread-safe themselves.

#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <typeinfo>
#include <vector>

#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus {

class Message;

// The formats a message type can be rendered in, as a bit set.
enum class MessageFormat : std::uint32_t {
  kNone = 0,
  kJson = 1u << 0,
  kText = 1u << 1,  // "Key: value" lines, as AMI events
};
using MessageFormats = MessageFormat;  // a set of MessageFormat bits
constexpr MessageFormat operator|(MessageFormat a, MessageFormat b) noexcept {
  return static_cast<MessageFormat>(static_cast<std::uint32_t>(a) | static_cast<std::uint32_t>(b));
}
constexpr MessageFormat operator&(MessageFormat a, MessageFormat b) noexcept {
  return static_cast<MessageFormat>(static_cast<std::uint32_t>(a) & static_cast<std::uint32_t>(b));
}
constexpr bool Any(MessageFormat f) noexcept {
  return f != MessageFormat::kNone;
}

// Renderers of a message; an empty function means "this type has no such format". A renderer
// may also return nullopt for one message it cannot render.
struct MessageFormatters {
  std::function<std::optional<std::string>(const Message&)> to_json;
  std::function<std::optional<std::string>(const Message&)> to_text;
};

class MessageType {
 public:
  // Registers a type. `name` must not be empty (misuse: reported, null returned). A name on
  // the decline list gives a declined type. Names need not be unique (as in Asterisk), but the
  // typed face makes one type per name and payload type natural.
  static const MessageType* Create(std::string_view name, MessageFormatters formatters = {},
                                   SourceLocation where = SourceLocation::current());

  // As Create, binding the type to payload type `payload` (Message::Create checks it).
  static const MessageType* CreateFor(const std::type_info& payload, std::string_view name,
                                      MessageFormatters formatters = {},
                                      SourceLocation where = SourceLocation::current());

  MessageType(const MessageType&) = delete;
  MessageType& operator=(const MessageType&) = delete;

  const std::string& Name() const noexcept { return name_; }
  // Process-unique, dense from 0 (indexes subscription filters).
  std::uint32_t Id() const noexcept { return id_; }
  bool IsDeclined() const noexcept { return declined_; }
  MessageFormats AvailableFormats() const noexcept { return formats_; }
  bool HasFormat(MessageFormat f) const noexcept { return Any(formats_ & f); }
  // The payload type this type is bound to, or null if any payload is accepted.
  const std::type_info* PayloadType() const noexcept { return payload_; }
  const MessageFormatters& Formatters() const noexcept { return formatters_; }

  // Every type created so far, in id order.
  static std::vector<const MessageType*> All();

 private:
  MessageType(std::string name, std::uint32_t id, const std::type_info* payload,
              MessageFormatters formatters, bool declined);
  friend struct MessageTypeRegistry;

  const std::string name_;
  const std::uint32_t id_;
  const bool declined_;
  const MessageFormats formats_;
  const std::type_info* const payload_;
  const MessageFormatters formatters_;
};

// Adds names to the decline list (stasis.conf's decline=). Types created afterwards with one of
// these names are declined; types that exist already are not changed.
void DeclineMessageTypes(const std::vector<std::string>& names);
// Empties the decline list (for tests and reconfiguration; existing types keep their state).
void ClearDeclinedMessageTypes();

// A MessageType bound to the payload type T. Cheap to copy (one pointer). Empty (false) when
// creation failed; declined when the configuration declined its name.
template <class T>
class TypedMessageType {
 public:
  TypedMessageType() noexcept = default;

  static TypedMessageType Create(std::string_view name, MessageFormatters formatters = {},
                                 SourceLocation where = SourceLocation::current()) {
    return TypedMessageType(MessageType::CreateFor(typeid(T), name, std::move(formatters), where));
  }

  // Binds an existing type (whose PayloadType() must be T or null) to T.
  static TypedMessageType Adopt(const MessageType* type) noexcept { return TypedMessageType(type); }

  const MessageType* get() const noexcept { return type_; }
  const MessageType& operator*() const noexcept { return *type_; }
  const MessageType* operator->() const noexcept { return type_; }
  explicit operator bool() const noexcept { return type_ != nullptr; }
  operator const MessageType*() const noexcept { return type_; }  // NOLINT: a typed type is a type

  // A new message carrying `value` (one allocation for message and payload together), or
  // null if the type is declined.
  Ref<Message> Make(T value, SourceLocation where = SourceLocation::current()) const;

  // The payload of `message` if it is a message of this type, else null.
  const T* Get(const Message& message) const noexcept;

 private:
  explicit TypedMessageType(const MessageType* type) noexcept : type_(type) {}
  const MessageType* type_ = nullptr;
};

}  // namespace plexus
