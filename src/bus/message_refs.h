// MessageRefs: the references to one message that a publish holds for the queues it fills.
//
// Every queued delivery needs its own reference to the message (the subscription's turn drops
// it once the callback returned). Taking them one AddRef per queue costs one atomic
// read-modify-write on the message's count per subscriber; a publish instead takes, at its
// first queued delivery in a fan-out, every reference that fan-out can still need with one add
// (RefCounted::AddRefs), hands them out one per queue, and drops what is left over (filtered,
// refused or synchronous subscriptions) with one subtraction once its fan-outs are done.
//
// A publish given the caller's own reference (Topic::Publish(Ref<Message>&&)) starts holding
// it: the last queue of its last fan-out gets it, so a topic with one pool subscriber publishes
// without touching the count at all. While it still has topics to visit (forwards), it keeps
// one reference back for itself, so the message outlives the walk even when the turns that got
// the others have run meanwhile.
//
// Once the references held run out, a turn may drop the last one at any moment: a fan-out
// reads nothing of the message after the queue that took the last one.
//
// Reference debugging: the references held are recorded with this object as their holder, and
// re-keyed to the mailbox each is handed to.
//
// Thread safety: thread-compatible; one publish on one thread.

#pragma once

#include <cstdint>
#include <utility>

#include "plexus/bus/message.h"
#include "plexus/core/internal/ref_debug_flag.h"
#include "plexus/core/ref.h"
#include "plexus/core/ref_debug.h"
#include "plexus/core/source_location.h"

namespace plexus::bus_internal {

class MessageRefs {
 public:
  // `owned`: the publish owns one reference (the caller's, detached from its Ref, which
  // reference debugging re-keyed as a bare one: the newest bare record of the message is taken
  // for it); otherwise the caller keeps the message alive.
  MessageRefs(Message* message, bool owned) noexcept
      : message_(message), held_(owned ? 1 : 0), owns_(owned) {
    if (owned && core_internal::RefDebugOn()) [[unlikely]] {
      core_internal::RefTrackMove(message_, nullptr, this);
    }
  }
  // Drops the references left over: after the publish's fan-outs, with no lock held (the drop
  // may destroy the message, running its payload's destructor).
  ~MessageRefs() {
    if (held_ != 0) message_->DecRefs(held_, SourceLocation::current(), this);
  }
  MessageRefs(const MessageRefs&) = delete;
  MessageRefs& operator=(const MessageRefs&) = delete;

  // Called by a fan-out before its loop: `last` says no fan-out follows it in this publish (the
  // topic has no forward and none is pending), so the publish's own reference may go to a queue.
  void BeginFanOut(bool last) noexcept { reserve_ = owns_ && !last ? 1 : 0; }

  // One reference for a queue (re-keyed to `holder` under reference debugging), while
  // `remaining` subscriptions of the fan-out, this one included, are yet to be delivered to.
  // The first call of a fan-out takes what the rest can need in one add.
  void Take(std::uint32_t remaining, const void* holder) noexcept {
    const std::uint32_t need = remaining + reserve_;
    if (held_ < need) [[unlikely]] {
      message_->AddRefs(static_cast<std::int32_t>(need - held_), SourceLocation::current(), this);
      held_ = need;
    }
    --held_;
    if (core_internal::RefDebugOn()) [[unlikely]] {
      core_internal::RefTrackMove(message_, this, holder);
    }
  }
  // A reference Take handed out for `holder` came back (the queue did not take the message).
  void GiveBack(const void* holder) noexcept {
    ++held_;
    if (core_internal::RefDebugOn()) [[unlikely]] {
      core_internal::RefTrackMove(message_, holder, this);
    }
  }

 private:
  Message* const message_;
  std::uint32_t held_ = 0;
  // Whether one of the references held is the caller's, the message's only guarantee of life.
  const bool owns_ = false;
  std::uint32_t reserve_ = 0;
};

}  // namespace plexus::bus_internal
