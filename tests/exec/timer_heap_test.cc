// Tests for plexus::TimerHeap and ScopedTimer: the acceptance cases EXE19-EXE23 (fires once,
// no earlier than its delay, on its executor; cancel before and after firing; cancel-and-wait
// of a running callback and from its own callback; group references held while pending; a
// million timers in deadline order; the dump's source lines), and beyond them: Reschedule,
// callbacks that schedule and cancel timers, stale and foreign ids, ScopedTimer, and dropping
// the heap. Durations are only ever checked as "no earlier than the delay".

#include "plexus/exec/timer_heap.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "plexus/core/clock.h"
#include "plexus/core/misuse.h"
#include "plexus/core/ref.h"
#include "plexus/exec/task_processor.h"
#include "plexus/sync/group_lock.h"

namespace plexus {
namespace {

using namespace std::chrono_literals;
using plexus_test::Gate;
using plexus_test::MentionsLocation;
using plexus_test::WaitFor;
using plexus_test::WaitForLaterTimer;
using plexus_test::WaitUntil;

void CountDestroy(void* counter) {
  static_cast<std::atomic<int>*>(counter)->fetch_add(1);
}

// What one timer callback saw.
struct Shot {
  std::atomic<int> calls{0};
  std::atomic<TaskProcessor*> current{nullptr};
  std::atomic<std::int64_t> elapsed_ns{-1};

  // The callback: records the processor it runs on and the time since `start`.
  Task Callback(MonotonicClock::time_point start) {
    return [this, start] {
      elapsed_ns =
          std::chrono::duration_cast<std::chrono::nanoseconds>(MonotonicClock::now() - start)
              .count();
      current = TaskProcessor::Current();
      calls.fetch_add(1);
    };
  }
  bool WaitForCalls(int n) const {
    return WaitUntil([&] { return calls.load() >= n; });
  }
};

// -----------------------------------------------------------------------------
// EXE19
// -----------------------------------------------------------------------------

TEST(TimerHeap, EXE19_FiresOnceNoEarlierThanItsDelayOnItsExecutor) {
  Shot shot;
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe19/executor"});
  Ref<TimerHeap> heap = TimerHeap::Create("exe19");
  constexpr auto kDelay = 30ms;
  const MonotonicClock::time_point start = MonotonicClock::now();
  const TimerId id = heap->Schedule(kDelay, shot.Callback(start), {.executor = tp});
  ASSERT_TRUE(id);
  EXPECT_TRUE(heap->IsPending(id));
  ASSERT_TRUE(shot.WaitForCalls(1));
  EXPECT_GE(std::chrono::nanoseconds(shot.elapsed_ns.load()), kDelay);
  EXPECT_EQ(shot.current.load(), tp.get());
  ASSERT_TRUE(WaitForLaterTimer(*heap, kDelay, tp));
  EXPECT_EQ(shot.calls.load(), 1);  // once
  EXPECT_FALSE(heap->IsPending(id));
  EXPECT_EQ(heap->PendingCount(), 0u);
}

TEST(TimerHeap, EXE19_WithoutAnExecutorItFiresOnTheTimerThread) {
  Shot shot;
  Ref<TimerHeap> heap = TimerHeap::Create("exe19-thread");
  constexpr auto kDelay = 20ms;
  const MonotonicClock::time_point start = MonotonicClock::now();
  const TimerId id = heap->Schedule(kDelay, shot.Callback(start));
  ASSERT_TRUE(id);
  ASSERT_TRUE(shot.WaitForCalls(1));
  EXPECT_GE(std::chrono::nanoseconds(shot.elapsed_ns.load()), kDelay);
  EXPECT_EQ(shot.current.load(), nullptr);
  ASSERT_TRUE(WaitForLaterTimer(*heap, kDelay, nullptr));
  EXPECT_EQ(shot.calls.load(), 1);
}

TEST(TimerHeap, EXE19_ScheduleAtFiresNoEarlierThanItsDeadline) {
  Shot shot;
  Ref<TimerHeap> heap = TimerHeap::Create("exe19-at");
  const MonotonicClock::time_point start = MonotonicClock::now();
  const MonotonicClock::time_point deadline = start + 25ms;
  heap->ScheduleAt(deadline, shot.Callback(start));
  ASSERT_TRUE(shot.WaitForCalls(1));
  EXPECT_GE(std::chrono::nanoseconds(shot.elapsed_ns.load()), 25ms);
}

// -----------------------------------------------------------------------------
// EXE20
// -----------------------------------------------------------------------------

TEST(TimerHeap, EXE20_CancelBeforeExpiryPreventsTheCallback) {
  std::atomic<bool> ran{false};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  Ref<TimerHeap> heap = TimerHeap::Create("exe20-cancel");
  const TimerId id = heap->Schedule(1h, [&ran, s = std::move(sentinel)] { ran = true; });
  EXPECT_TRUE(heap->IsPending(id));
  EXPECT_EQ(heap->PendingCount(), 1u);
  EXPECT_TRUE(heap->Cancel(id));
  EXPECT_FALSE(heap->IsPending(id));
  EXPECT_EQ(heap->PendingCount(), 0u);
  EXPECT_TRUE(WaitUntil([&] { return watch.expired(); }));  // the callback was destroyed
  EXPECT_FALSE(heap->Cancel(id));                           // already cancelled
  EXPECT_FALSE(heap->CancelAndWait(id));
  EXPECT_FALSE(ran.load());
}

TEST(TimerHeap, EXE20_CancelAndWaitOfAPendingTimerPreventsIt) {
  std::atomic<bool> ran{false};
  Ref<TimerHeap> heap = TimerHeap::Create("exe20-cancel-and-wait");
  const TimerId id = heap->Schedule(1h, [&ran] { ran = true; });
  EXPECT_TRUE(heap->CancelAndWait(id));
  EXPECT_FALSE(heap->IsPending(id));
  heap.Reset();
  EXPECT_FALSE(ran.load());
}

TEST(TimerHeap, EXE20_CancelAfterFiringReportsThatItDidNot) {
  Shot shot;
  Ref<TimerHeap> heap = TimerHeap::Create("exe20-stale");
  const TimerId id = heap->Schedule(1ms, shot.Callback(MonotonicClock::now()));
  ASSERT_TRUE(shot.WaitForCalls(1));
  ASSERT_TRUE(WaitUntil([&] { return !heap->IsPending(id); }));
  const std::uint64_t reports_before = MisuseReportCount();
  EXPECT_FALSE(heap->Cancel(id));  // a stale id: "not pending", no misuse
  EXPECT_FALSE(heap->CancelAndWait(id));
  EXPECT_FALSE(heap->Reschedule(id, 1ms));
  EXPECT_FALSE(heap->Cancel(TimerId{}));  // names no timer
  EXPECT_EQ(MisuseReportCount(), reports_before);
  // The slot may be reused by a new timer: the old id still names nothing.
  const TimerId next = heap->Schedule(1h, [] {});
  EXPECT_FALSE(heap->Cancel(id));
  EXPECT_TRUE(heap->IsPending(next));
  EXPECT_TRUE(heap->Cancel(next));
  EXPECT_EQ(shot.calls.load(), 1);
}

TEST(TimerHeap, EXE20_CancelAndWaitReturnsOnlyOnceTheRunningCallbackFinished) {
  std::atomic<bool> finished{false};
  std::atomic<int> result{-1};  // CancelAndWait's result: 1 true, 0 false
  std::atomic<int> finished_at_return{-1};
  Ref<TimerHeap> heap = TimerHeap::Create("exe20-running");
  std::jthread canceller;  // joined after the gate below opened
  Gate gate;
  const TimerId id = heap->Schedule(1ms, [&finished, w = gate.waiter()] {
    w.Wait();
    finished = true;
  });
  ASSERT_TRUE(gate.WaitForArrivals(1));  // the callback runs (on the timer thread)
  EXPECT_FALSE(heap->Cancel(id));        // too late to prevent it
  EXPECT_FALSE(heap->IsPending(id));
  canceller = std::jthread([&] {
    result = heap->CancelAndWait(id) ? 1 : 0;
    finished_at_return = finished.load() ? 1 : 0;
  });
  gate.Open();
  canceller.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(finished_at_return.load(), 1);
}

TEST(TimerHeap, EXE20_CancelAndWaitOnAnExecutorWaitsForTheRunningCallback) {
  std::atomic<bool> finished{false};
  std::atomic<int> result{-1};
  std::atomic<int> finished_at_return{-1};
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe20/executor"});
  Ref<TimerHeap> heap = TimerHeap::Create("exe20-running-executor");
  std::jthread canceller;
  Gate gate;
  const TimerId id = heap->Schedule(1ms,
                                    [&finished, w = gate.waiter()] {
                                      w.Wait();
                                      finished = true;
                                    },
                                    {.executor = tp});
  ASSERT_TRUE(gate.WaitForArrivals(1));
  canceller = std::jthread([&] {
    result = heap->CancelAndWait(id) ? 1 : 0;
    finished_at_return = finished.load() ? 1 : 0;
  });
  gate.Open();
  canceller.join();
  EXPECT_EQ(result.load(), 0);
  EXPECT_EQ(finished_at_return.load(), 1);
}

// CancelAndWait from the timer's own callback does not wait for itself (on the timer thread
// and on an executor).
void CheckCancelAndWaitFromItsOwnCallback(const Ref<TaskProcessor>& executor) {
  std::promise<TimerId> id_promise;
  std::shared_future<TimerId> id_future = id_promise.get_future().share();
  std::promise<bool> result;
  std::future<bool> result_future = result.get_future();
  Ref<TimerHeap> heap = TimerHeap::Create("cancel-own");
  TimerHeap* raw = heap.get();
  const TimerId id = heap->Schedule(
      1ms, [raw, id_future, &result] { result.set_value(raw->CancelAndWait(id_future.get())); },
      {.executor = executor});
  id_promise.set_value(id);
  ASSERT_TRUE(WaitFor(result_future));
  EXPECT_FALSE(result_future.get());  // it was running: not prevented
}

TEST(TimerHeap, EXE20_CancelAndWaitFromItsOwnCallbackDoesNotDeadlock) {
  CheckCancelAndWaitFromItsOwnCallback(nullptr);
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe20/own-callback"});
  CheckCancelAndWaitFromItsOwnCallback(tp);
}

// -----------------------------------------------------------------------------
// EXE21
// -----------------------------------------------------------------------------

// The group survives while a timer holds it, even with no other reference, and goes right
// after the timer's callback returned.
void CheckGroupHeldUntilFired(const Ref<TaskProcessor>& executor) {
  std::atomic<int> destroyed{0};
  std::atomic<int> destroyed_in_callback{-1};
  std::atomic<int> refs_in_callback{-1};
  std::atomic<bool> called{false};
  Ref<GroupLock> group = GroupLock::Create({.member = &destroyed, .handler = &CountDestroy});
  GroupLock* raw = group.get();
  Ref<TimerHeap> heap = TimerHeap::Create("exe21");
  EXPECT_EQ(group->RefCount(), 1u);
  const TimerId fires = heap->Schedule(1h,
                                       [&, raw] {
                                         destroyed_in_callback = destroyed.load();
                                         refs_in_callback = static_cast<int>(raw->RefCount());
                                         called = true;
                                       },
                                       {.group = group, .executor = executor});
  EXPECT_EQ(group->RefCount(), 2u);
  const TimerId cancelled = heap->Schedule(1h, [] {}, {.group = group});
  EXPECT_EQ(group->RefCount(), 3u);
  EXPECT_TRUE(heap->Cancel(cancelled));
  EXPECT_EQ(group->RefCount(), 2u);            // the cancelled timer's reference went
  EXPECT_EQ(group.Reset(), Liveness::kAlive);  // the pending timer keeps it alive
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_EQ(raw->RefCount(), 1u);
  ASSERT_TRUE(heap->Reschedule(fires, 1ms));
  EXPECT_TRUE(WaitUntil([&] { return destroyed.load() == 1; }));
  EXPECT_TRUE(called.load());
  EXPECT_EQ(destroyed_in_callback.load(), 0);
  EXPECT_EQ(refs_in_callback.load(), 1);  // the timer's own reference
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(TimerHeap, EXE21_GroupHeldUntilTheTimerFiredOnTheTimerThread) {
  CheckGroupHeldUntilFired(nullptr);
}

TEST(TimerHeap, EXE21_GroupHeldUntilTheTimerFiredOnAnExecutor) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe21/executor"});
  CheckGroupHeldUntilFired(tp);
}

TEST(TimerHeap, EXE21_CancellingTheLastHolderDestroysTheGroup) {
  std::atomic<int> destroyed{0};
  std::atomic<bool> ran{false};
  Ref<TimerHeap> heap = TimerHeap::Create("exe21-cancel");
  Ref<GroupLock> group = GroupLock::Create({.member = &destroyed, .handler = &CountDestroy});
  const TimerId id = heap->Schedule(1h, [&ran] { ran = true; }, {.group = group});
  EXPECT_EQ(group.Reset(), Liveness::kAlive);
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_TRUE(heap->Cancel(id));
  EXPECT_EQ(destroyed.load(), 1);  // right after the last holder
  heap.Reset();
  EXPECT_EQ(destroyed.load(), 1);  // exactly once
  EXPECT_FALSE(ran.load());
}

TEST(TimerHeap, EXE21_DroppingTheHeapCancelsPendingTimersAndReleasesTheirGroups) {
  std::atomic<int> destroyed{0};
  std::atomic<bool> ran{false};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  Ref<TimerHeap> heap = TimerHeap::Create("exe21-drop");
  Ref<GroupLock> group = GroupLock::Create({.member = &destroyed, .handler = &CountDestroy});
  heap->Schedule(1h, [&ran, s = std::move(sentinel)] { ran = true; }, {.group = group});
  heap->Schedule(2h, [&ran] { ran = true; });
  EXPECT_EQ(group.Reset(), Liveness::kAlive);
  heap.Reset();
  EXPECT_EQ(destroyed.load(), 1);
  EXPECT_TRUE(watch.expired());
  EXPECT_FALSE(ran.load());
}

// -----------------------------------------------------------------------------
// EXE22
// -----------------------------------------------------------------------------

// The timer thread is held by a first callback while the timers are scheduled, so that none
// fires before all are in the heap; then they fire in (deadline, schedule order).
TEST(TimerHeap, EXE22_AMillionTimersFireInDeadlineOrderTiesInScheduleOrder) {
  // The full million in release builds; a tenth under sanitizers (memory and time).
  const int n = plexus_test::Scaled(1'000'000);
  std::vector<std::pair<std::int64_t, std::uint32_t>> fired;  // written by the timer thread
  fired.reserve(static_cast<std::size_t>(n));
  std::atomic<int> count{0};
  Ref<TimerHeap> heap = TimerHeap::Create("exe22");
  {
    Gate gate;
    heap->Schedule(0ns, [w = gate.waiter()] { w.Wait(); });
    ASSERT_TRUE(gate.WaitForArrivals(1));
    std::mt19937 rng(22);
    const MonotonicClock::time_point base = MonotonicClock::now() + 20ms;
    for (int i = 0; i < n; ++i) {
      // 51 distinct deadlines: many ties.
      const MonotonicClock::time_point deadline = base + std::chrono::milliseconds(rng() % 51);
      const std::int64_t ticks = deadline.time_since_epoch().count();
      const auto index = static_cast<std::uint32_t>(i);
      heap->ScheduleAt(deadline, [&fired, &count, ticks, index] {
        fired.emplace_back(ticks, index);
        count.fetch_add(1, std::memory_order_release);
      });
    }
    EXPECT_EQ(heap->PendingCount(), static_cast<std::size_t>(n));
  }  // opens the gate
  ASSERT_TRUE(WaitUntil([&] { return count.load(std::memory_order_acquire) == n; }))
      << count.load() << " of " << n;
  EXPECT_EQ(heap->PendingCount(), 0u);
  heap.Reset();  // joins the timer thread: nothing can fire any more
  ASSERT_EQ(fired.size(), static_cast<std::size_t>(n));  // none lost, none twice
  std::vector<char> seen(static_cast<std::size_t>(n), 0);
  std::size_t out_of_order = 0;
  for (std::size_t at = 0; at < fired.size(); ++at) {
    if (at > 0 && !(fired[at - 1] < fired[at])) ++out_of_order;
    ++seen[fired[at].second];
  }
  EXPECT_EQ(out_of_order, 0u);
  EXPECT_EQ(std::count(seen.begin(), seen.end(), 1), n);
}

TEST(TimerHeap, EXE22_EqualDeadlinesFireInScheduleOrder) {
  constexpr int kTimers = 1000;
  std::vector<int> order;  // written by the timer thread
  std::atomic<int> count{0};
  Ref<TimerHeap> heap = TimerHeap::Create("exe22-ties");
  const MonotonicClock::time_point deadline = MonotonicClock::now() + 10ms;
  for (int i = 0; i < kTimers; ++i) {
    heap->ScheduleAt(deadline, [&order, &count, i] {
      order.push_back(i);
      count.fetch_add(1, std::memory_order_release);
    });
  }
  ASSERT_TRUE(WaitUntil([&] { return count.load(std::memory_order_acquire) == kTimers; }));
  heap.Reset();
  ASSERT_EQ(order.size(), static_cast<std::size_t>(kTimers));
  EXPECT_TRUE(std::is_sorted(order.begin(), order.end()));
}

// -----------------------------------------------------------------------------
// EXE23
// -----------------------------------------------------------------------------

TEST(TimerHeap, EXE23_DumpListsPendingTimersWithTheSourceLineThatScheduledThem) {
  Ref<GroupLock> group = GroupLock::Create();
  Ref<TimerHeap> heap = TimerHeap::Create("exe23");
  const MonotonicClock::time_point before = MonotonicClock::now();
  const auto first = std::pair(heap->Schedule(1h, [] {}), __LINE__);
  const auto second = std::pair(heap->Schedule(2h, [] {}, {.group = group}), __LINE__);
  const MonotonicClock::time_point after = MonotonicClock::now();

  const std::string dump = heap->Dump();
  EXPECT_EQ(dump.rfind("timer heap 'exe23': 2 pending\n", 0), 0u) << dump;
  EXPECT_TRUE(MentionsLocation(dump, __FILE__, first.second)) << dump;
  EXPECT_TRUE(MentionsLocation(dump, __FILE__, second.second)) << dump;

  const std::vector<PendingTimer> pending = heap->Pending();
  ASSERT_EQ(pending.size(), 2u);
  EXPECT_EQ(pending[0].id, first.first);
  EXPECT_GE(pending[0].deadline, before + 1h);
  EXPECT_LE(pending[0].deadline, after + 1h);
  EXPECT_EQ(pending[0].scheduled_at.line(), static_cast<unsigned>(first.second));
  EXPECT_STREQ(pending[0].scheduled_at.file_name(), __FILE__);
  EXPECT_FALSE(pending[0].has_group);
  EXPECT_EQ(pending[1].id, second.first);
  EXPECT_GE(pending[1].deadline, before + 2h);
  EXPECT_LE(pending[1].deadline, after + 2h);
  EXPECT_EQ(pending[1].scheduled_at.line(), static_cast<unsigned>(second.second));
  EXPECT_TRUE(pending[1].has_group);

  EXPECT_TRUE(heap->Cancel(first.first));
  const std::string later = heap->Dump();
  EXPECT_FALSE(MentionsLocation(later, __FILE__, first.second)) << later;
  EXPECT_TRUE(MentionsLocation(later, __FILE__, second.second)) << later;
}

// -----------------------------------------------------------------------------
// Reschedule, callbacks that use the heap, ids, ScopedTimer, lifetime
// -----------------------------------------------------------------------------

TEST(TimerHeap, RescheduleMovesAPendingTimer) {
  std::atomic<int> calls{0};
  std::atomic<std::int64_t> fired_at{-1};
  Ref<TimerHeap> heap = TimerHeap::Create("reschedule");
  const TimerId id = heap->Schedule(1h, [&calls, &fired_at] {
    fired_at = MonotonicNanos();
    calls.fetch_add(1);
  });
  const std::int64_t rescheduled_at = MonotonicNanos();  // taken before the call
  ASSERT_TRUE(heap->Reschedule(id, 20ms));
  EXPECT_TRUE(heap->IsPending(id));
  ASSERT_TRUE(WaitUntil([&] { return calls.load() == 1; }));
  EXPECT_GE(std::chrono::nanoseconds(fired_at.load() - rescheduled_at), 20ms);
  ASSERT_TRUE(WaitUntil([&] { return !heap->IsPending(id); }));
  EXPECT_FALSE(heap->Reschedule(id, 1ms));  // no longer pending
  EXPECT_EQ(calls.load(), 1);
}

TEST(TimerHeap, CallbacksMayScheduleAndCancelTimers) {
  std::atomic<bool> chained_ran{false};
  std::atomic<bool> victim_ran{false};
  std::atomic<int> cancelled{-1};
  Ref<TimerHeap> heap = TimerHeap::Create("reentrant");
  TimerHeap* raw = heap.get();
  const TimerId victim = heap->Schedule(1h, [&victim_ran] { victim_ran = true; });
  heap->Schedule(1ms, [raw, victim, &chained_ran, &cancelled] {
    cancelled = raw->Cancel(victim) ? 1 : 0;
    raw->Schedule(1ms, [&chained_ran] { chained_ran = true; });
  });
  EXPECT_TRUE(WaitUntil([&] { return chained_ran.load(); }));
  EXPECT_EQ(cancelled.load(), 1);
  EXPECT_FALSE(heap->IsPending(victim));
  EXPECT_FALSE(victim_ran.load());
}

TEST(TimerHeap, IdsOfAnotherHeapAreMisuse) {
  Ref<TimerHeap> mine = TimerHeap::Create("mine");
  Ref<TimerHeap> other = TimerHeap::Create("other");
  const TimerId foreign = other->Schedule(1h, [] {});
  PLEXUS_EXPECT_MISUSE_HERE(mine->Cancel(foreign));
  PLEXUS_EXPECT_MISUSE_HERE(mine->CancelAndWait(foreign));
  PLEXUS_EXPECT_MISUSE_HERE(mine->Reschedule(foreign, 1ms));
  EXPECT_TRUE(other->IsPending(foreign));  // untouched
  EXPECT_EQ(other->PendingCount(), 1u);
  EXPECT_FALSE(mine->IsPending(foreign));
}

TEST(TimerHeap, SchedulingAnEmptyCallbackIsMisuse) {
  Ref<TimerHeap> heap = TimerHeap::Create("empty-callback");
  TimerId id;
  PLEXUS_EXPECT_MISUSE_HERE(id = heap->Schedule(1ms, Task()));
  EXPECT_FALSE(id);
  EXPECT_EQ(heap->PendingCount(), 0u);
}

TEST(TimerHeap, NameIsKept) {
  Ref<TimerHeap> heap = TimerHeap::Create("sip-timers");
  EXPECT_EQ(heap->Name(), "sip-timers");
}

TEST(ScopedTimer, DestructorCancelsAPendingTimer) {
  std::atomic<bool> ran{false};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  Ref<TimerHeap> heap = TimerHeap::Create("scoped");
  {
    ScopedTimer timer(heap);
    EXPECT_FALSE(timer.IsPending());
    timer.Schedule(1h, [&ran, s = std::move(sentinel)] { ran = true; });
    EXPECT_TRUE(timer.IsPending());
    EXPECT_TRUE(heap->IsPending(timer.Id()));
    EXPECT_EQ(heap->PendingCount(), 1u);
  }
  EXPECT_EQ(heap->PendingCount(), 0u);
  EXPECT_TRUE(watch.expired());
  heap.Reset();
  EXPECT_FALSE(ran.load());
}

TEST(ScopedTimer, SchedulingAgainReplacesTheTimer) {
  std::atomic<int> first_ran{0};
  Shot second;
  Ref<TimerHeap> heap = TimerHeap::Create("scoped-replace");
  ScopedTimer timer(heap);
  timer.Schedule(1h, [&first_ran] { first_ran.fetch_add(1); });
  const TimerId first_id = timer.Id();
  timer.Schedule(1ms, second.Callback(MonotonicClock::now()));
  EXPECT_NE(timer.Id(), first_id);
  EXPECT_FALSE(heap->IsPending(first_id));
  ASSERT_TRUE(second.WaitForCalls(1));
  EXPECT_TRUE(WaitUntil([&] { return !timer.IsPending(); }));
  EXPECT_FALSE(timer.Cancel());  // it fired: nothing prevented
  EXPECT_EQ(first_ran.load(), 0);
  EXPECT_EQ(heap->PendingCount(), 0u);
}

// However close the destruction comes to the firing, the callback never runs after it.
TEST(ScopedTimer, CallbackNeverRunsAfterTheScopedTimerIsGone) {
  std::atomic<int> calls{0};
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "scoped/executor"});
  Ref<TimerHeap> heap = TimerHeap::Create("scoped-race");
  const int rounds = plexus_test::Scaled(200);
  for (int round = 0; round < rounds; ++round) {
    int at_destruction = 0;
    {
      ScopedTimer timer(heap);
      timer.Schedule(std::chrono::microseconds(round % 50), [&calls] { calls.fetch_add(1); },
                     {.executor = round % 2 == 0 ? tp : nullptr});
    }
    at_destruction = calls.load();
    ASSERT_TRUE(WaitForLaterTimer(*heap, 0ns, tp));
    ASSERT_TRUE(WaitForLaterTimer(*heap, 0ns, nullptr));
    ASSERT_EQ(calls.load(), at_destruction) << "round " << round;
  }
}

}  // namespace
}  // namespace plexus
