// Helpers shared by the bus suites: a Recorder (the subscriber of the acceptance cases: it
// appends every message it receives and marks itself complete on its final message), the
// delivery modes as test parameters and a fixture run once per mode, a few message types made
// once per process, and small look-ups in the bus's listings. Every wait has a generous bound
// that only a failure reaches.

#pragma once

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/config.h"
#include "plexus/core/ref.h"

namespace plexus_test {

// The bound of every wait on a recorder: far beyond what a passing test needs.
inline constexpr std::chrono::seconds kBusWaitLimit{30};

// Threads that each run a body and then wait, alive, until released (by Release or the
// destructor, which also joins them); the constructor returns once every thread is waiting. A
// body may wait earlier, inside a scope whose state the test looks at, by calling ParkHere on
// the object it is given.
class ParkedThreads {
 public:
  ParkedThreads(int n, std::function<void(ParkedThreads&)> body) {
    for (int i = 0; i < n; ++i) {
      threads_.emplace_back([this, body] {
        body(*this);
        ParkHere();  // at once if the body waited already and was released
      });
    }
    std::unique_lock<std::mutex> lock(mu_);
    cv_.wait_for(lock, kBusWaitLimit, [&] { return parked_ >= n; });
  }
  ~ParkedThreads() { Release(); }
  ParkedThreads(const ParkedThreads&) = delete;
  ParkedThreads& operator=(const ParkedThreads&) = delete;

  void ParkHere() {
    std::unique_lock<std::mutex> lock(mu_);
    ++parked_;
    cv_.notify_all();
    cv_.wait(lock, [&] { return released_; });
  }
  void Release() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      released_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) {
      if (t.joinable()) t.join();
    }
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int parked_ = 0;
  bool released_ = false;
  std::vector<std::thread> threads_;
};

// Sanitized builds run 5-20x slower: stress loops shrink there.
inline constexpr bool kBusSanitized = plexus::kSanitizeThread || plexus::kSanitizeAddress;
constexpr int BusScaled(int n) {
  return kBusSanitized ? std::max(1, n / 10) : n;
}

// Records what one subscription receives. A Recorder is a cheap, copyable handle to shared
// state: the handler it gives out holds that state too, so a subscription that outlives the
// test's Recorder (a failing test that returns early) never touches freed memory.
class Recorder {
 public:
  struct Options {
    // Do not record subscribe/unsubscribe notices (the final message still completes).
    bool ignore_changes = false;
  };

  Recorder() : Recorder(Options{}) {}
  explicit Recorder(Options options) : state_(std::make_shared<State>()) {
    state_->ignore_changes = options.ignore_changes;
  }
  static Recorder IgnoringChanges() { return Recorder(Options{.ignore_changes = true}); }

  // The subscription callback that records into this recorder.
  plexus::MessageHandler Handler() const {
    return
        [state = state_](const plexus::Message& m, bool is_final) { Receive(*state, m, is_final); };
  }
  // Records `m` as the handler would (for callbacks that do more than record).
  void Receive(const plexus::Message& m, bool is_final) const { Receive(*state_, m, is_final); }

  // What was recorded, in the order received.
  std::vector<plexus::Ref<plexus::Message>> Messages() const {
    std::lock_guard lock(state_->mu);
    return state_->messages;
  }
  std::size_t Count() const {
    std::lock_guard lock(state_->mu);
    return state_->messages.size();
  }
  // Whether the final message was received.
  bool IsComplete() const {
    std::lock_guard lock(state_->mu);
    return state_->final_count > 0;
  }
  // How many final messages arrived (must be 0 or 1).
  int FinalCount() const {
    std::lock_guard lock(state_->mu);
    return state_->final_count;
  }
  // Callbacks that arrived after the final message (must be 0).
  int AfterFinalCount() const {
    std::lock_guard lock(state_->mu);
    return state_->after_final;
  }
  // Times a callback started while another one of this recorder was still running (must be 0:
  // a subscription's callbacks never overlap).
  int OverlapCount() const { return state_->overlaps.load(); }
  // Callbacks received (recorded or not), the final one included.
  std::size_t CallbackCount() const {
    std::lock_guard lock(state_->mu);
    return state_->callbacks;
  }
  // Whether `message` (this very object) was recorded.
  bool Contains(const plexus::Message* message) const {
    std::lock_guard lock(state_->mu);
    return std::any_of(state_->messages.begin(), state_->messages.end(),
                       [&](const plexus::Ref<plexus::Message>& r) { return r.get() == message; });
  }
  // How often `message` (this very object) was recorded.
  std::size_t Occurrences(const plexus::Message* message) const {
    std::lock_guard lock(state_->mu);
    return static_cast<std::size_t>(
        std::count_if(state_->messages.begin(), state_->messages.end(),
                      [&](const plexus::Ref<plexus::Message>& r) { return r.get() == message; }));
  }
  // The thread each recorded message was handled on.
  std::vector<std::thread::id> Threads() const {
    std::lock_guard lock(state_->mu);
    return state_->threads;
  }

  // Lets go of the recorded messages (notices hold their topic).
  void Clear() const {
    std::lock_guard lock(state_->mu);
    state_->messages.clear();
    state_->threads.clear();
  }

  // Waits until at least `n` messages were recorded; false (a failure) past the bound.
  bool WaitForCount(std::size_t n) const {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, kBusWaitLimit, [&] { return state_->messages.size() >= n; });
  }
  // Waits until the final message was received and its callback returned.
  bool WaitForFinal() const {
    std::unique_lock lock(state_->mu);
    return state_->cv.wait_for(lock, kBusWaitLimit, [&] { return state_->final_count > 0; });
  }

 private:
  struct State {
    std::mutex mu;
    std::condition_variable cv;
    bool ignore_changes = false;
    std::vector<plexus::Ref<plexus::Message>> messages;
    std::vector<std::thread::id> threads;
    std::size_t callbacks = 0;
    int final_count = 0;
    int after_final = 0;
    std::atomic<int> running{0};
    std::atomic<int> overlaps{0};
  };

  static void Receive(State& state, const plexus::Message& m, bool is_final) {
    if (state.running.fetch_add(1) != 0) state.overlaps.fetch_add(1);
    const bool is_change = &m.Type() == plexus::SubscriptionChangeType().get();
    {
      std::lock_guard lock(state.mu);
      ++state.callbacks;
      if (state.final_count > 0) ++state.after_final;
      if (!(is_change && state.ignore_changes)) {
        // A message delivered to a callback is alive for the call; this takes a reference.
        state.messages.emplace_back(const_cast<plexus::Message*>(&m));
        state.threads.push_back(std::this_thread::get_id());
      }
      if (is_final) ++state.final_count;
    }
    state.running.fetch_sub(1);
    state.cv.notify_all();
  }

  std::shared_ptr<State> state_;
};

// Concatenates `parts` (g++ 12 at -O3 warns falsely on "literal" + std::string).
inline std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view p : parts) out.append(p);
  return out;
}

// The delivery modes, as test parameters and test-name suffixes.
inline const char* ModeName(plexus::DeliveryMode mode) {
  switch (mode) {
    case plexus::DeliveryMode::kPool:
      return "Pool";
    case plexus::DeliveryMode::kDedicatedThread:
      return "DedicatedThread";
    case plexus::DeliveryMode::kSynchronous:
      return "Synchronous";
  }
  return "Unknown";
}
struct ModeParamName {
  std::string operator()(const ::testing::TestParamInfo<plexus::DeliveryMode>& info) const {
    return ModeName(info.param);
  }
};
inline const std::vector<plexus::DeliveryMode>& AllModes() {
  static const std::vector<plexus::DeliveryMode> modes = {plexus::DeliveryMode::kPool,
                                                          plexus::DeliveryMode::kDedicatedThread,
                                                          plexus::DeliveryMode::kSynchronous};
  return modes;
}

inline plexus::SubscriptionOptions InMode(plexus::DeliveryMode mode) {
  plexus::SubscriptionOptions options;
  options.mode = mode;
  return options;
}

// The fixture of a suite run once per delivery mode: each test file derives its own suite from
// it and instantiates that over AllModes() with ModeParamName().
class ModeTest : public ::testing::TestWithParam<plexus::DeliveryMode> {
 protected:
  plexus::DeliveryMode mode() const { return GetParam(); }
  plexus::SubscriptionOptions options() const { return InMode(mode()); }
  bool synchronous() const { return mode() == plexus::DeliveryMode::kSynchronous; }
};

// The subscription-change payload of `m`, or null when `m` is no such notice.
inline const plexus::SubscriptionChange* ChangeOf(const plexus::Message& m) {
  return plexus::SubscriptionChangeType().Get(m);
}
inline bool IsChange(const plexus::Message& m) {
  return ChangeOf(m) != nullptr;
}

// Message types made once per process (types are never freed).
inline const plexus::TypedMessageType<std::string>& StringType() {
  static const auto type = plexus::TypedMessageType<std::string>::Create("BusTest.String");
  return type;
}
inline const plexus::TypedMessageType<int>& IntType() {
  static const auto type = plexus::TypedMessageType<int>::Create("BusTest.Int");
  return type;
}

// A sequence number from one publisher (for ordering checks).
struct Seq {
  int source = 0;
  int n = 0;
};
inline const plexus::TypedMessageType<Seq>& SeqType() {
  static const auto type = plexus::TypedMessageType<Seq>::Create("BusTest.Seq");
  return type;
}

// The string payload of `m`, or "" when it carries none.
inline std::string StringOf(const plexus::Message& m) {
  const std::string* s = m.As<std::string>();
  return s != nullptr ? *s : std::string();
}

// The string payloads of `messages` (notices as "<Subscribe>"/"<Unsubscribe>").
inline std::vector<std::string> Strings(const std::vector<plexus::Ref<plexus::Message>>& messages) {
  std::vector<std::string> out;
  for (const plexus::Ref<plexus::Message>& m : messages) {
    if (const plexus::SubscriptionChange* c = ChangeOf(*m)) {
      out.push_back(Cat({"<", c->Description(), ">"}));
    } else {
      out.push_back(StringOf(*m));
    }
  }
  return out;
}

// The listed snapshot of a live topic / subscription, if listed.
inline std::optional<plexus::TopicStats> ListedTopic(std::uint64_t id) {
  for (plexus::TopicStats& s : plexus::ListTopics()) {
    if (s.id == id) return std::move(s);
  }
  return std::nullopt;
}
inline std::optional<plexus::SubscriptionStats> ListedSubscription(const std::string& id) {
  for (plexus::SubscriptionStats& s : plexus::ListSubscriptions()) {
    if (s.id == id) return std::move(s);
  }
  return std::nullopt;
}

// Waits until the topic with `id` is no longer live (its last reference went, possibly on a
// pool thread after a final message).
inline bool WaitForTopicGone(std::uint64_t id) {
  return WaitUntil([&] { return !ListedTopic(id).has_value(); });
}
inline bool WaitForSubscriptionGone(const std::string& id) {
  return WaitUntil([&] { return !ListedSubscription(id).has_value(); });
}

// Whether `capture` holds a record logged at `file`:`line` (a misuse report logs the caller's
// location as the record's location).
inline bool LoggedAt(const LogCapture& capture, const char* file, int line) {
  for (const CapturedRecord& r : capture.Records()) {
    if (r.file == file && r.line == static_cast<unsigned>(line)) return true;
  }
  return false;
}

// Destroys the subscription `s` holds, as dropping the handle does (it unsubscribes without
// waiting); `s` is left empty.
inline void Drop(plexus::Subscription& s) {
  plexus::Subscription gone = std::move(s);
}

// A counter that tests wait on with a bound (for callbacks that only count).
class Counter {
 public:
  void Add(std::size_t n = 1) {
    {
      std::lock_guard lock(mu_);
      value_ += n;
    }
    cv_.notify_all();
  }
  std::size_t Value() const {
    std::lock_guard lock(mu_);
    return value_;
  }
  bool WaitFor(std::size_t n) const {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, kBusWaitLimit, [&] { return value_ >= n; });
  }

 private:
  mutable std::mutex mu_;
  mutable std::condition_variable cv_;
  std::size_t value_ = 0;
};

}  // namespace plexus_test
