// -----------------------------------------------------------------------------
// plexus/bus/message.h
// -----------------------------------------------------------------------------
//
// Message is what topics carry (Asterisk's stasis_message): an immutable, reference-counted
// object holding its type, its payload, the wall-clock time it was created and the node that
// created it. Every subscriber of a topic receives the very same Message object (identity, not
// a copy).
//
// The payload is either stored inside the message (one allocation for both: the fast path,
// what TypedMessageType<T>::Make and Message::Create(type, value) do) or shared as a Ref<P> to a
// reference-counted object that several messages, and the caller, may hold: it then lives
// exactly as long as its last holder.
//
//   auto msg = plexus::Message::Create(kChannelState, ChannelState{"PJSIP/bob-0002", 4});
//   if (const auto* cs = msg->As<ChannelState>()) ...
//
// Timestamp: FastWallClock::now() at creation (core/clock.h: the wall clock, interpolated with
// the CPU's cycle counter; within microseconds of system_clock and never going back), or, for a
// message that reports another one (CreateStamped: a cache update reports a published
// snapshot), the instant given by its maker.
//
// Node id: a message made without one carries the local node's (NodeId::Local()), as
// Asterisk's stasis_message_create does; pass NodeId::None() for an aggregate.
//
// Thread safety: immutable after creation, so every const member may be called from any thread
// at once. The payload is shared by all receivers; it must not be modified.

#pragma once

#include <chrono>
#include <concepts>
#include <cstddef>
#include <new>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>

#include "plexus/bus/message_type.h"
#include "plexus/bus/node_id.h"
#include "plexus/core/clock.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus {

namespace bus_internal {
template <class T>
struct IsRef : std::false_type {};
template <class T>
struct IsRef<Ref<T>> : std::true_type {};
// Reports a misuse for Message::Create and returns whether creation may go on.
bool CheckCreate(const MessageType* type, const std::type_info& payload, bool has_payload,
                 SourceLocation where);
// Messages' memory: blocks cached per thread and given back to the thread that made them, so
// that a message made by a publisher and dropped by a subscriber costs no malloc (see
// message_allocator.cc).
void* AllocateMessage(std::size_t size);
void FreeMessage(void* p, std::size_t size) noexcept;
}  // namespace bus_internal

class Message : public RefCounted {
 public:
  // A message with `value` stored inside it. Null, after a misuse report, when `type` is null
  // or bound to another payload type; null, silently, when `type` is declined.
  template <class T>
  requires(!bus_internal::IsRef<std::remove_cvref_t<T>>::value) static Ref<Message> Create(
      const MessageType* type, T&& value, NodeId node = NodeId::Local(),
      SourceLocation where = SourceLocation::current());

  // As Create(type, value, node), stamped `when` instead of now: for a message that reports
  // what another message did (a cache update carries its snapshot's timestamp), which also
  // spares the clock read.
  template <class T>
  requires(!bus_internal::IsRef<std::remove_cvref_t<T>>::value) static Ref<Message> CreateStamped(
      const MessageType* type, T&& value, WallClock::time_point when, NodeId node = NodeId::Local(),
      SourceLocation where = SourceLocation::current());

  // A message sharing `payload` (a reference is taken). A null payload is misuse.
  template <class P>
  static Ref<Message> Create(const MessageType* type, Ref<P> payload, NodeId node = NodeId::Local(),
                             SourceLocation where = SourceLocation::current());

  const MessageType& Type() const noexcept { return *type_; }
  // When the message was made, on FastWallClock.
  WallClock::time_point Timestamp() const noexcept { return timestamp_; }
  const NodeId& Node() const noexcept { return node_; }

  // The payload if it is a T (exactly), else null.
  template <class T>
  const T* As() const noexcept {
    return *payload_type_ == typeid(T) ? static_cast<const T*>(payload_) : nullptr;
  }
  const void* PayloadPointer() const noexcept { return payload_; }
  const std::type_info& PayloadType() const noexcept { return *payload_type_; }

  // The message rendered by its type's formatter, or nullopt when the type has none (or the
  // formatter declined this message, or threw — which is logged).
  std::optional<std::string> ToJson() const;
  std::optional<std::string> ToText() const;

 protected:
  Message(const MessageType* type, NodeId node, const void* payload,
          const std::type_info& payload_type, WallClock::time_point when) noexcept
      : type_(type),
        payload_type_(&payload_type),
        payload_(payload),
        timestamp_(when),
        node_(node) {}
  ~Message() override = default;

 private:
  // Whether a message of payload type V may be made with `type`: the usual case, a live type
  // bound to this very payload type, is decided here without a call; anything else (a
  // type_info object of another shared object included) is checked, and reported, out of line.
  template <class V>
  static bool CanCreate(const MessageType* type, SourceLocation where) {
    const bool usual = type != nullptr && type->PayloadType() == &typeid(V) && !type->IsDeclined();
    return usual || bus_internal::CheckCreate(type, typeid(V), true, where);
  }

  const MessageType* const type_;
  const std::type_info* const payload_type_;
  const void* payload_;
  const WallClock::time_point timestamp_;
  const NodeId node_;
};

namespace bus_internal {

template <class T>
class InlineMessage final : public Message {
 public:
  template <class U>
  InlineMessage(const MessageType* type, NodeId node, U&& value, WallClock::time_point when)
      : Message(type, node, &value_, typeid(T), when), value_(std::forward<U>(value)) {}

  // Over-aligned payloads (beyond 16 bytes) take the aligned global allocator instead.
  static void* operator new(std::size_t size) {
    if constexpr (alignof(T) > 16) {
      return ::operator new(size, std::align_val_t(alignof(T)));
    } else {
      return AllocateMessage(size);
    }
  }
  static void operator delete(void* p, std::size_t size) noexcept {
    if constexpr (alignof(T) > 16) {
      ::operator delete(p, std::align_val_t(alignof(T)));
    } else {
      FreeMessage(p, size);
    }
  }

 private:
  // Initialised after the base, which only records its address.
  const T value_;
};

template <class P>
class SharedPayloadMessage final : public Message {
 public:
  SharedPayloadMessage(const MessageType* type, NodeId node, Ref<P> payload)
      : Message(type, node, payload.get(), typeid(P), FastWallClock::now()),
        payload_(std::move(payload)) {}

  static void* operator new(std::size_t size) { return AllocateMessage(size); }
  static void operator delete(void* p, std::size_t size) noexcept { FreeMessage(p, size); }

 private:
  const Ref<P> payload_;
};

}  // namespace bus_internal

template <class T>
requires(!bus_internal::IsRef<std::remove_cvref_t<T>>::value) Ref<Message> Message::Create(
    const MessageType* type, T&& value, NodeId node, SourceLocation where) {
  using V = std::remove_cvref_t<T>;
  // Checked before the clock is read: a declined type's publish stays a few loads.
  if (!CanCreate<V>(type, where)) return nullptr;
  return Ref<Message>::Adopt(
      new bus_internal::InlineMessage<V>(type, node, std::forward<T>(value), FastWallClock::now()),
      where);
}

template <class T>
requires(!bus_internal::IsRef<std::remove_cvref_t<T>>::value) Ref<Message> Message::CreateStamped(
    const MessageType* type, T&& value, WallClock::time_point when, NodeId node,
    SourceLocation where) {
  using V = std::remove_cvref_t<T>;
  if (!CanCreate<V>(type, where)) return nullptr;
  return Ref<Message>::Adopt(
      new bus_internal::InlineMessage<V>(type, node, std::forward<T>(value), when), where);
}

template <class P>
Ref<Message> Message::Create(const MessageType* type, Ref<P> payload, NodeId node,
                             SourceLocation where) {
  if (!bus_internal::CheckCreate(type, typeid(P), payload != nullptr, where)) return nullptr;
  return Ref<Message>::Adopt(
      new bus_internal::SharedPayloadMessage<P>(type, node, std::move(payload)), where);
}

template <class T>
Ref<Message> TypedMessageType<T>::Make(T value, SourceLocation where) const {
  return Message::Create(type_, std::move(value), NodeId::Local(), where);
}

template <class T>
const T* TypedMessageType<T>::Get(const Message& message) const noexcept {
  return &message.Type() == type_ ? message.As<T>() : nullptr;
}

}  // namespace plexus
