// The simulator's message types: what a PBX publishes about its calls.
//
//   CallSnapshot  the state of one call, published on its own topic at every state change and
//                 cached (the cache pattern keeps the latest snapshot of every call up).
//   CallEvent     something that happened to a call (a transaction began or ended, a timer
//                 fired, the call was answered): not cached.
//   CallEnded     the call-detail record, published once when the call is torn down.
//
// Every payload carries the MonotonicNanos() at which it was published, so consumers measure
// the publish-to-callback latency. Each type has a JSON formatter (the event stream's lines).

#pragma once

#include <array>
#include <cstdint>
#include <string>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"

namespace sim {

enum class CallState : std::uint8_t { kDialing, kRinging, kUp, kDown };
inline constexpr std::array<const char*, 4> kCallStateNames = {"Dialing", "Ringing", "Up", "Down"};

enum class EventKind : std::uint8_t {
  kTsxStart,     // a transaction (INVITE, UPDATE, BYE) began
  kTsxEnd,       // it ended with a final response
  kTsxTimeout,   // its timeout fired: no final response
  kRingTimeout,  // nobody answered in time
  kRefresh,      // the session refresh timer fired
  kAnswer,
  kHangup,
};
inline constexpr std::array<const char*, 7> kEventKindNames = {
    "TsxStart", "TsxEnd", "TsxTimeout", "RingTimeout", "SessionRefresh", "Answer", "Hangup"};

struct CallSnapshot {
  std::uint64_t call_id = 0;
  std::uint32_t device = 0;
  CallState state = CallState::kDialing;
  std::int64_t sent_ns = 0;
};

struct CallEvent {
  std::uint64_t call_id = 0;
  std::uint32_t device = 0;
  EventKind kind = EventKind::kTsxStart;
  const char* detail = "";  // a string literal: the method, or the response
  std::int64_t sent_ns = 0;
};

// The call-detail record. Times are wall-clock microseconds; the rest follows from the random seed
// (--seed).
struct CallEnded {
  std::uint64_t call_id = 0;
  std::uint32_t device = 0;
  std::uint32_t callee = 0;
  const char* disposition = "";  // ANSWERED, NO ANSWER, BUSY, FAILED
  const char* cause = "";        // normal, no-answer, busy, timeout, shutdown
  std::uint32_t refreshes = 0;   // session refreshes that took place
  std::uint32_t planned_talk_ms = 0;
  std::int64_t start_us = 0;
  std::int64_t answer_us = 0;  // 0: never answered
  std::int64_t end_us = 0;
  std::int64_t sent_ns = 0;
};

// The registered types, made on first use.
const plexus::TypedMessageType<CallSnapshot>& CallSnapshotType();
const plexus::TypedMessageType<CallEvent>& CallEventType();
const plexus::TypedMessageType<CallEnded>& CallEndedType();

// "PJSIP/dev-0007".
std::string DeviceName(std::uint32_t device);

// The cache's id function: a call snapshot's call id, "" for anything else.
std::string CallIdOf(const plexus::Message& message);

}  // namespace sim
