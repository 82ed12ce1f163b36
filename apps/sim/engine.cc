#include "engine.h"

#include <algorithm>
#include <array>
#include <mutex>
#include <utility>

#include "messages.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/topic.h"
#include "plexus/core/clock.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/lock_order.h"

namespace sim {

using plexus::GroupLock;
using plexus::MonotonicClock;
using plexus::Ref;
using plexus::TimerId;
using Clock = MonotonicClock;

namespace {

// Every dialog, and every transaction, is one class for the lock-order validator.
plexus::LockClass kDialogClass("sim.dialog");
plexus::LockClass kTransactionClass("sim.transaction");

std::int64_t WallMicros() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             plexus::FastWallClock::now().time_since_epoch())
      .count();
}

void Bump(std::atomic<std::uint64_t>& n) {
  n.fetch_add(1, std::memory_order_relaxed);
}

}  // namespace

constexpr const char* kInvite = "INVITE";
constexpr const char* kUpdate = "UPDATE";
constexpr const char* kBye = "BYE";

struct CallEngine::Transaction {
  Call* call;
  const char* method;
  std::uint64_t seq;
  TimerId timeout;
  bool done = false;
};

struct CallEngine::Call {
  CallEngine* engine;
  CallPlan plan;
  std::size_t shard;
  std::size_t live_index = 0;
  // The call's own reference to its dialog, dropped when the call ends.
  Ref<GroupLock> dialog;
  GroupLock* dialog_lock;  // valid while anything holds the group
  Ref<plexus::CachePatternOne> topic;
  Ref<plexus::Message> last_snapshot;
  CallState state = CallState::kDialing;
  bool ended = false;
  bool bye_sent = false;  // the hang-up began: no more refreshes
  Clock::time_point t0;
  Clock::time_point answered_at;  // planned: t0 + ring delay + answer delay
  std::int64_t start_us = 0;
  std::int64_t answer_us = 0;
  std::uint32_t refreshes = 0;
  std::uint64_t next_tsx_seq = 1;
  Transaction* tsx = nullptr;
  Ref<GroupLock> tsx_lock;
  TimerId response_timer;  // the next response the network will deliver
  TimerId ring_timer;
  TimerId answer_timer;
  std::array<TimerId, kMaxRefreshes> refresh_timers;
  TimerId hangup_timer;
};

// The call's behaviour. Everything here runs on the call's shard with the dialog held, except
// Start (the generator thread) and the destroy handlers (no lock).
struct CallOps {
  using Call = CallEngine::Call;
  using Transaction = CallEngine::Transaction;

  static void FreeCall(void* p) {
    auto* c = static_cast<Call*>(p);
    c->engine->counters_.dialogs_alive.fetch_sub(1, std::memory_order_release);
    delete c;
  }
  static void FreeTransaction(void* p) {
    auto* t = static_cast<Transaction*>(p);
    t->call->engine->counters_.transactions_alive.fetch_sub(1, std::memory_order_release);
    delete t;
  }

  // A timer holding the dialog, firing `fn(call)` on the call's shard under the dialog lock.
  template <class F>
  static TimerId At(Call* c, Clock::time_point deadline, F fn) {
    CallEngine& e = *c->engine;
    Bump(e.counters_.timers_scheduled);
    return e.timers_->ScheduleAt(
        deadline,
        [c, fn] {
          std::scoped_lock guard(*c->dialog_lock);
          if (c->ended) return Bump(c->engine->counters_.timers_stale);
          fn(c);
        },
        {.group = Ref<GroupLock>(c->dialog_lock), .executor = e.shards_[c->shard]});
  }

  static void Cancel(Call* c, TimerId& id) {
    if (!id) return;
    if (c->engine->timers_->Cancel(std::exchange(id, TimerId{}))) {
      Bump(c->engine->counters_.timers_cancelled);
    }
  }

  static void Event(Call* c, EventKind kind, const char* detail) {
    c->topic->GetTopic()->Publish(CallEventType(), CallEvent{c->plan.id, c->plan.device, kind,
                                                             detail, plexus::MonotonicNanos()});
    Bump(c->engine->counters_.events_published);
  }

  static void Snapshot(Call* c, CallState state) {
    c->state = state;
    c->last_snapshot = CallSnapshotType().Make(
        CallSnapshot{c->plan.id, c->plan.device, state, plexus::MonotonicNanos()});
    c->topic->GetTopic()->Publish(c->last_snapshot);
    Bump(c->engine->counters_.events_published);
  }

  // A transaction: a group lock of its own chained to the dialog's. Its timeout is armed
  // separately (ArmTimeout), after the timers due before it: a timer already overdue when it
  // is scheduled fires at once, so timers are scheduled in deadline order to fire in it.
  static void BeginTransaction(Call* c, const char* method) {
    CallEngine& e = *c->engine;
    auto* t = new Transaction{c, method, c->next_tsx_seq++, {}};
    e.counters_.transactions_alive.fetch_add(1, std::memory_order_relaxed);
    Bump(e.counters_.transactions);
    Ref<GroupLock> lock = GroupLock::Create(
        {.lock_class = &kTransactionClass, .member = t, .handler = &FreeTransaction});
    lock->Chain(*c->dialog_lock, -1);
    c->tsx = t;
    c->tsx_lock = std::move(lock);
    Event(c, EventKind::kTsxStart, method);
  }

  // The transaction's timeout: a timer that holds the transaction's group (and, through the
  // chain, the dialog's).
  static void ArmTimeout(Call* c, Clock::time_point deadline) {
    CallEngine& e = *c->engine;
    Transaction* t = c->tsx;
    GroupLock* raw = c->tsx_lock.get();
    Bump(e.counters_.timers_scheduled);
    t->timeout = e.timers_->ScheduleAt(deadline,
                                       [t, raw] {
                                         // Taking the transaction's lock takes the dialog's first
                                         // (the chain).
                                         std::scoped_lock guard(*raw);
                                         OnTransactionTimeout(t);
                                       },
                                       {.group = c->tsx_lock, .executor = e.shards_[c->shard]});
  }

  static void EndTransaction(Call* c, const char* response) {
    Transaction* t = c->tsx;
    if (t == nullptr) return;
    Cancel(c, t->timeout);
    t->done = true;
    c->tsx = nullptr;
    Event(c, EventKind::kTsxEnd, response);
    c->tsx_lock.Reset();  // the group goes once its timer let go of it
  }

  static void OnTransactionTimeout(Transaction* t) {
    Call* c = t->call;
    // A provisional response stopped the INVITE's timer (Timer B); a timer already handed to
    // the shard when it was cancelled still runs, and must do nothing then.
    const bool stopped = c->state == CallState::kRinging && t->method == kInvite;
    if (t->done || c->ended || stopped) return Bump(c->engine->counters_.timers_stale);
    Bump(c->engine->counters_.timers_fired);
    t->timeout = TimerId{};
    Event(c, EventKind::kTsxTimeout, t->method);
    EndTransaction(c, "408 Request Timeout");
    if (t->method == kInvite) End(c, kFailed, "timeout");
    if (t->method == kBye) End(c, kAnswered, "bye-timeout");
  }

  // On the generator thread: only what admission needs; the call is built on its shard, so
  // the generator stays cheap and the building spreads over the pool.
  static void Start(CallEngine& e, const CallPlan& plan) {
    auto* c = new Call{&e, plan, static_cast<std::size_t>(plan.id % e.shards_.size())};
    c->t0 = Clock::now();
    Bump(e.counters_.started);
    if (e.config_.calls_counter != nullptr) e.config_.calls_counter->Add();
    const std::int64_t now = e.counters_.in_flight.fetch_add(1, std::memory_order_relaxed) + 1;
    std::int64_t peak = e.counters_.peak_in_flight.load(std::memory_order_relaxed);
    while (now > peak && !e.counters_.peak_in_flight.compare_exchange_weak(
                             peak, now, std::memory_order_relaxed)) {
    }
    e.shards_[c->shard]->Push([c] {
      Build(c);
      std::scoped_lock guard(*c->dialog_lock);
      OnStart(c);
    });
  }

  static void Build(Call* c) {
    CallEngine& e = *c->engine;
    e.counters_.dialogs_alive.fetch_add(1, std::memory_order_relaxed);
    c->dialog = GroupLock::Create({.lock_class = &kDialogClass, .member = c, .handler = &FreeCall});
    c->dialog_lock = c->dialog.get();
    // Per-call topics share one name: a topic's lock class is named after its topic, and the
    // lock-order validator keeps a bounded table of classes.
    c->topic = plexus::CachePatternOne::Create(e.calls_, "call");
  }

  static void OnStart(Call* c) {
    CallEngine& e = *c->engine;
    auto& live = e.live_[c->shard];
    c->live_index = live.size();
    live.push_back(c);
    c->start_us = WallMicros();
    Snapshot(c, CallState::kDialing);
    BeginTransaction(c, kInvite);
    // Every timer that races another is scheduled here, in deadline order, so they fire in it
    // however late this runs: one seed, one outcome.
    const auto first_response = c->t0 + c->plan.ring_delay;
    switch (c->plan.outcome) {
      case Outcome::kAnswered:
        c->response_timer = At(c, first_response, &On180);
        c->answer_timer = At(c, first_response + c->plan.answer_delay, &OnAnswer);
        break;
      case Outcome::kNoAnswer:
        c->response_timer = At(c, first_response, &On180);
        break;
      case Outcome::kBusy:
        c->response_timer = At(c, first_response, &OnBusy);
        break;
      case Outcome::kNoResponse:
        break;
    }
    ArmTimeout(c, c->t0 + kTsxTimeoutAfter);
    c->ring_timer = At(c, c->t0 + kRingTimeoutAfter, &OnRingTimeout);
  }

  static void On180(Call* c) {
    if (c->state != CallState::kDialing) return Bump(c->engine->counters_.timers_stale);
    Bump(c->engine->counters_.timers_fired);
    c->response_timer = TimerId{};
    if (c->tsx != nullptr) Cancel(c, c->tsx->timeout);  // a provisional response stops Timer B
    Snapshot(c, CallState::kRinging);
  }

  static void OnAnswer(Call* c) {
    if (c->state != CallState::kRinging) return Bump(c->engine->counters_.timers_stale);
    Bump(c->engine->counters_.timers_fired);
    c->answer_timer = TimerId{};
    c->answered_at = c->t0 + c->plan.ring_delay + c->plan.answer_delay;
    Cancel(c, c->ring_timer);
    EndTransaction(c, "200 OK");
    c->answer_us = WallMicros();
    Snapshot(c, CallState::kUp);
    Event(c, EventKind::kAnswer, "200 OK");
    for (std::uint32_t k = 1; k <= c->plan.refreshes; ++k) {
      c->refresh_timers[k - 1] = At(c, c->answered_at + k * kRefreshInterval, Refresher{k});
    }
    c->hangup_timer = At(c, c->answered_at + c->plan.talk, &OnHangup);
  }

  // The final response to transaction `seq`; for the BYE it ends the call.
  struct Responder {
    std::uint64_t seq;
    bool bye;
    void operator()(Call* c) const {
      if (c->tsx == nullptr || c->tsx->seq != seq) return Bump(c->engine->counters_.timers_stale);
      Bump(c->engine->counters_.timers_fired);
      c->response_timer = TimerId{};
      EndTransaction(c, "200 OK");
      if (bye) End(c, kAnswered, "normal");
    }
  };

  // Session refresh `k` (1-based): an UPDATE transaction.
  struct Refresher {
    std::uint32_t k;
    void operator()(Call* c) const {
      if (c->state != CallState::kUp || c->bye_sent) return Bump(c->engine->counters_.timers_stale);
      Bump(c->engine->counters_.timers_fired);
      c->refresh_timers[k - 1] = TimerId{};
      ++c->refreshes;
      Event(c, EventKind::kRefresh, kUpdate);
      EndTransaction(c, "200 OK");  // a refresh still in progress completes first
      const auto sent = c->answered_at + k * kRefreshInterval;
      BeginTransaction(c, kUpdate);
      Cancel(c, c->response_timer);
      c->response_timer = At(c, sent + c->plan.response_delay, Responder{c->tsx->seq, false});
      ArmTimeout(c, sent + kTsxTimeoutAfter);
    }
  };

  static void OnHangup(Call* c) {
    if (c->state != CallState::kUp || c->bye_sent) return Bump(c->engine->counters_.timers_stale);
    Bump(c->engine->counters_.timers_fired);
    c->bye_sent = true;
    c->hangup_timer = TimerId{};
    for (TimerId& id : c->refresh_timers) Cancel(c, id);
    Cancel(c, c->response_timer);
    EndTransaction(c, "200 OK");
    Event(c, EventKind::kHangup, "BYE");
    const auto sent = c->answered_at + c->plan.talk;
    BeginTransaction(c, kBye);
    c->response_timer = At(c, sent + c->plan.response_delay, Responder{c->tsx->seq, true});
    ArmTimeout(c, sent + kTsxTimeoutAfter);
  }

  static void OnBusy(Call* c) {
    if (c->state != CallState::kDialing) return Bump(c->engine->counters_.timers_stale);
    Bump(c->engine->counters_.timers_fired);
    c->response_timer = TimerId{};
    EndTransaction(c, "486 Busy Here");
    End(c, kBusy, "busy");
  }

  static void OnRingTimeout(Call* c) {
    if (c->state != CallState::kDialing && c->state != CallState::kRinging) {
      return Bump(c->engine->counters_.timers_stale);
    }
    Bump(c->engine->counters_.timers_fired);
    c->ring_timer = TimerId{};
    Event(c, EventKind::kRingTimeout, "CANCEL");
    EndTransaction(c, "487 Request Terminated");
    End(c, kNoAnswer, "no-answer");
  }

  // Tears the call down: cancels its timers, ends its transaction, publishes its last
  // snapshot, its record and the clear of its cached snapshot, and lets go of the dialog.
  static void End(Call* c, Disposition disposition, const char* cause) {
    if (c->ended) return;
    CallEngine& e = *c->engine;
    for (TimerId* id : {&c->response_timer, &c->answer_timer, &c->ring_timer, &c->hangup_timer}) {
      Cancel(c, *id);
    }
    for (TimerId& id : c->refresh_timers) Cancel(c, id);
    EndTransaction(c, disposition == kCutShort ? "487 Request Terminated" : "200 OK");
    if (disposition == kCutShort) Event(c, EventKind::kHangup, "shutdown");
    Snapshot(c, CallState::kDown);
    c->ended = true;
    const Ref<plexus::Topic>& topic = c->topic->GetTopic();
    topic->Publish(
        CallEndedType(),
        CallEnded{c->plan.id, c->plan.device, c->plan.callee, kDispositionNames[disposition], cause,
                  c->refreshes, static_cast<std::uint32_t>(c->plan.talk.count() / 1000),
                  c->start_us, c->answer_us, WallMicros(), plexus::MonotonicNanos()});
    topic->Publish(plexus::MakeCacheClear(c->last_snapshot));
    e.counters_.events_published.fetch_add(2, std::memory_order_relaxed);
    c->last_snapshot = nullptr;
    c->topic = nullptr;
    auto& live = e.live_[c->shard];
    live[c->live_index] = live.back();
    live[c->live_index]->live_index = c->live_index;
    live.pop_back();
    Bump(e.counters_.dispositions[disposition]);
    Bump(e.counters_.finished);
    // Release: the main thread waits for zero calls in flight, then stops the timer heap and
    // drains the shards; what this call did with them must happen before.
    e.counters_.in_flight.fetch_sub(1, std::memory_order_release);
    c->dialog.Reset();  // the group (and the call) go once the lock and the timers let go
  }
};

CallEngine::CallEngine(const Ref<plexus::ThreadPool>& pool,
                       const Ref<plexus::CachePatternAll>& calls, const EngineConfig& config)
    : config_(config), calls_(calls), timers_(plexus::TimerHeap::Create("sim-timers")) {
  for (std::uint32_t i = 0; i < config_.shards; ++i) {
    shards_.push_back(plexus::TaskProcessor::Create({.name = "sim/calls-" + std::to_string(i),
                                                     .pool = pool,
                                                     .high_water = config_.queue_limit,
                                                     .low_water = config_.queue_limit / 2}));
  }
  live_.resize(shards_.size());
}

CallEngine::~CallEngine() {
  Shutdown();
}

void CallEngine::Start(const CallPlan& plan) {
  CallOps::Start(*this, plan);
}

void CallEngine::HangUpAll() {
  for (std::size_t s = 0; s < shards_.size(); ++s) {
    if (shards_[s]->IsShutDown()) continue;
    shards_[s]->Push([this, s] {
      // Ending a call removes it from the list: end them from a copy.
      std::vector<Call*> calls = live_[s];
      for (Call* c : calls) {
        std::scoped_lock guard(*c->dialog_lock);
        CallOps::End(c, kCutShort, "shutdown");
      }
    });
  }
}

bool CallEngine::Congested() const {
  return std::any_of(shards_.begin(), shards_.end(), [](const auto& s) { return s->IsAlerted(); });
}

void CallEngine::Shutdown() {
  // The timers first: their callbacks are pushed to the shards, which then drain.
  timers_ = nullptr;
  for (auto& s : shards_) s->Shutdown(plexus::ShutdownMode::kDrain);
}

std::size_t CallEngine::Depth() const {
  std::size_t depth = 0;
  for (const auto& s : shards_) depth = std::max(depth, s->Depth());
  return depth;
}

std::size_t CallEngine::MaxDepth() const {
  std::size_t depth = 0;
  for (const auto& s : shards_) depth = std::max(depth, s->Stats().max_depth);
  return depth;
}

}  // namespace sim
