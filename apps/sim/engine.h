// CallEngine runs the calls: each call is a SIP-like dialog with its transactions, timers and
// its own topic.
//
//   * The dialog is a GroupLock. The call's state lives under it and is freed by its destroy
//     handler, so whatever holds the group (a timer, a transaction, a queued task) may use the
//     call. Each transaction (INVITE, UPDATE for a session refresh, BYE) is a GroupLock of its
//     own chained to the dialog's (taken before it), as a PJSIP transaction's is: taking the
//     transaction's lock takes the dialog's first, in one order.
//   * The network and the people are timers that hold the group: the 180 Ringing and the 200 OK
//     arriving, the ring timeout, the session refresh, the hang-up, each transaction's timeout.
//     They fire or are cancelled; a timer that fires after its call moved on finds out under the
//     lock and does nothing. Every deadline is computed from the call's start and its plan, so
//     one seed gives the same calls however late the timers fire.
//   * A call's callbacks run on one of the engine's serializers (TaskProcessors on the given
//     pool, the call's shard), as PJSIP runs a dialog's events on its worker threads.
//   * Each call publishes on its own topic (a CachePatternOne of the "calls" CachePatternAll):
//     snapshots (cached, so the cache holds every call up), events, and at the end its record
//     (CallEnded) and a cache clear.
//
// Thread safety: Start from one thread (the generator); HangUpAll, Congested and the counters
// from any thread; Shutdown once, after the last call finished.

#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <string>
#include <vector>

#include "plexus/bus/cache_pattern.h"
#include "plexus/core/ref.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/exec/timer_heap.h"
#include "plexus/ops/counter.h"
#include "workload.h"

namespace sim {

struct EngineConfig {
  std::uint32_t shards = 8;
  std::uint32_t queue_limit = 4096;  // a shard's high water (low water: half)
  // Counts the calls set up, for the operator view's calls-per-second chart; may be null.
  plexus::ops::Counter* calls_counter = nullptr;
};

enum Disposition : std::size_t { kAnswered, kNoAnswer, kBusy, kFailed, kCutShort, kDispositions };
inline constexpr std::array<const char*, kDispositions> kDispositionNames = {
    "ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CUT SHORT"};

// The engine's counters; each is read and written atomically, relaxed.
struct EngineCounters {
  std::atomic<std::uint64_t> started{0};
  std::atomic<std::uint64_t> finished{0};
  std::atomic<std::int64_t> in_flight{0};
  std::atomic<std::int64_t> peak_in_flight{0};
  std::atomic<std::int64_t> dialogs_alive{0};
  std::atomic<std::int64_t> transactions_alive{0};
  std::atomic<std::uint64_t> transactions{0};
  std::atomic<std::uint64_t> timers_scheduled{0};
  std::atomic<std::uint64_t> timers_fired{0};      // callbacks that found work to do
  std::atomic<std::uint64_t> timers_stale{0};      // callbacks that found their call moved on
  std::atomic<std::uint64_t> timers_cancelled{0};  // cancels that prevented a callback
  std::atomic<std::uint64_t> events_published{0};
  std::array<std::atomic<std::uint64_t>, kDispositions> dispositions{};
};

class CallEngine {
 public:
  CallEngine(const plexus::Ref<plexus::ThreadPool>& pool,
             const plexus::Ref<plexus::CachePatternAll>& calls, const EngineConfig& config);
  ~CallEngine();
  CallEngine(const CallEngine&) = delete;
  CallEngine& operator=(const CallEngine&) = delete;

  // Starts the call `plan` describes.
  void Start(const CallPlan& plan);
  // Ends every call in flight now ("CUT SHORT"), cancelling its timers.
  void HangUpAll();
  // A shard's queue is at or above its high water.
  bool Congested() const;
  // Stops the timers and drains the shards; call once no call is in flight.
  void Shutdown();

  const EngineCounters& Counters() const noexcept { return counters_; }
  // The shards' current and highest queue depths.
  std::size_t Depth() const;
  std::size_t MaxDepth() const;
  const EngineConfig& Config() const noexcept { return config_; }

  struct Call;
  struct Transaction;

 private:
  friend struct CallOps;
  EngineConfig config_;
  plexus::Ref<plexus::CachePatternAll> calls_;
  plexus::Ref<plexus::TimerHeap> timers_;
  std::vector<plexus::Ref<plexus::TaskProcessor>> shards_;
  // Per shard, the calls in flight; touched only by that shard's tasks.
  std::vector<std::vector<Call*>> live_;
  EngineCounters counters_;
};

}  // namespace sim
