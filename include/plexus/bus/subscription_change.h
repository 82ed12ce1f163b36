// -----------------------------------------------------------------------------
// plexus/bus/subscription_change.h
// -----------------------------------------------------------------------------
//
// The notices a topic publishes when a subscription joins or leaves it (Asterisk's
// stasis_subscription_change): to that subscription, and to the subscriptions that listen to
// the others' changes (subscription.h). The "unsubscribe" notice of a subscription is also that
// subscription's *final message*: the last callback it ever receives, delivered to it directly
// (it has already left the topic) after every message queued before it.
//
// Thread safety: immutable values.

#pragma once

#include <string>
#include <string_view>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/core/ref.h"

namespace plexus {

class Topic;

enum class SubscriptionChangeKind { kSubscribe, kUnsubscribe };

struct SubscriptionChange {
  Ref<Topic> topic;             // the topic subscribed to
  std::string subscription_id;  // the subscription's unique id
  SubscriptionChangeKind kind;
  // "Subscribe" or "Unsubscribe", as Asterisk's description.
  std::string_view Description() const noexcept {
    return kind == SubscriptionChangeKind::kSubscribe ? "Subscribe" : "Unsubscribe";
  }
};

// The type of subscription-change messages; it cannot be declined (final messages need it).
const TypedMessageType<SubscriptionChange>& SubscriptionChangeType();

// Whether `message` is the final message of the subscription with id `subscription_id`.
bool IsFinalMessage(const Message& message, std::string_view subscription_id) noexcept;

}  // namespace plexus
