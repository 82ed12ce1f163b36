// Tests for plexus::TaskProcessor: the acceptance cases EXE09-EXE18 (current processor, FIFO
// under load, one task at a time, unique names, push-and-wait, counted suspension, alerts,
// statistics and listing, shutdown by dropping the last handle, 100 000 idle processors), and
// beyond them: Find and name reuse, the default and dedicated pools, batch-limit fairness,
// shutdown modes and their counts, misuse reports, throwing tasks, and dropping the last
// reference from the processor's own task. Every wait is on a condition, never a sleep.

#include "plexus/exec/task_processor.h"

#include <array>
#include <atomic>
#include <cstdint>
#include <future>
#include <memory>
#include <mutex>
#include <random>
#include <stdexcept>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/exec/thread_pool.h"

namespace plexus {
namespace {

using plexus_test::Abandon;
using plexus_test::Gate;
using plexus_test::LogCapture;
using plexus_test::RecordingObserver;
using plexus_test::RunDetached;
using plexus_test::ScopedMisuseAction;
using plexus_test::WaitFor;
using plexus_test::WaitUntil;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::StartsWith;

// A list of ints that tasks append to and the test reads, under a mutex (so a test that
// looks while a buggy task processor still runs tasks reports a failure, not a race).
class Recorder {
 public:
  void Add(int value) {
    std::lock_guard lock(mu_);
    values_.push_back(value);
  }
  std::vector<int> Values() const {
    std::lock_guard lock(mu_);
    return values_;
  }
  std::size_t Size() const {
    std::lock_guard lock(mu_);
    return values_.size();
  }
  bool WaitForSize(std::size_t n) const {
    return WaitUntil([&] { return Size() >= n; });
  }

 private:
  mutable std::mutex mu_;
  std::vector<int> values_;
};

// A copy of one TaskProcessorAlert (whose strings are views).
struct AlertRecord {
  std::string processor;
  std::string subsystem;
  bool raised;
  std::size_t depth;
  std::size_t subsystem_alerts;
  std::size_t process_alerts;
};

// Installs itself as the process-wide alert handler and restores the previous handler when it
// is destroyed. Declare it before the task processors it watches.
class AlertRecorder {
 public:
  AlertRecorder()
      : previous_(
            SetTaskProcessorAlertHandler([this](const TaskProcessorAlert& alert) { Add(alert); })) {
  }
  ~AlertRecorder() { SetTaskProcessorAlertHandler(std::move(previous_)); }
  AlertRecorder(const AlertRecorder&) = delete;
  AlertRecorder& operator=(const AlertRecorder&) = delete;

  // The changes reported for `processor`.
  std::vector<AlertRecord> For(const std::string& processor) const {
    std::lock_guard lock(mu_);
    std::vector<AlertRecord> out;
    for (const AlertRecord& r : records_) {
      if (r.processor == processor) out.push_back(r);
    }
    return out;
  }

 private:
  void Add(const TaskProcessorAlert& a) {
    std::lock_guard lock(mu_);
    records_.push_back(AlertRecord{std::string(a.processor), std::string(a.subsystem), a.raised,
                                   a.depth, a.subsystem_alerts, a.process_alerts});
  }

  TaskProcessorAlertHandler previous_;
  mutable std::mutex mu_;
  std::vector<AlertRecord> records_;
};

bool Listed(const std::string& name) {
  for (const TaskProcessorStats& s : TaskProcessor::List()) {
    if (s.name == name) return true;
  }
  return false;
}

TaskProcessorStats ListedStats(const std::string& name) {
  for (const TaskProcessorStats& s : TaskProcessor::List()) {
    if (s.name == name) return s;
  }
  ADD_FAILURE() << name << " is not listed";
  return {};
}

// -----------------------------------------------------------------------------
// EXE09-EXE18
// -----------------------------------------------------------------------------

TEST(TaskProcessor, EXE09_ATaskRunsAndSeesItsProcessorAsCurrent) {
  std::promise<TaskProcessor*> seen;
  std::future<TaskProcessor*> future = seen.get_future();
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe09/named"});
  ASSERT_TRUE(tp);
  ASSERT_TRUE(tp->Push([&seen] { seen.set_value(TaskProcessor::Current()); }));
  ASSERT_TRUE(WaitFor(future));
  EXPECT_EQ(future.get(), tp.get());
}

TEST(TaskProcessor, CurrentIsNullOutsideTasks) {
  EXPECT_EQ(TaskProcessor::Current(), nullptr);
  std::promise<TaskProcessor*> seen;
  std::future<TaskProcessor*> future = seen.get_future();
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  // A task pushed straight to a pool runs outside any task processor.
  ASSERT_TRUE(pool->Push([&seen] { seen.set_value(TaskProcessor::Current()); }));
  ASSERT_TRUE(WaitFor(future));
  EXPECT_EQ(future.get(), nullptr);
}

TEST(TaskProcessor, EXE10_TwentyThousandTasksRunInPushOrder) {
  constexpr int kTasks = 20'000;
  LogCapture log;  // the deep queue raises (logged) alerts
  std::mt19937 rng(10);
  std::vector<std::uint32_t> pushed;
  std::vector<std::uint32_t> ran;  // written by the tasks only, one at a time
  pushed.reserve(kTasks);
  ran.reserve(kTasks);
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe10/fifo"});
  for (int i = 0; i < kTasks; ++i) {
    const std::uint32_t value = rng();
    pushed.push_back(value);
    ASSERT_TRUE(tp->Push([&ran, value] { ran.push_back(value); }));
  }
  ASSERT_TRUE(tp->PushAndWait([] {}));  // every task pushed before it has run
  ASSERT_EQ(ran.size(), pushed.size());
  EXPECT_TRUE(ran == pushed) << "the tasks ran out of push order";
}

TEST(TaskProcessor, EXE11_OneTaskAtATimeWhileThePoolRunsOtherWork) {
  std::atomic<bool> second_ran{false};
  std::atomic<bool> direct_ran{false};
  std::thread::id blocked_on;
  std::thread::id direct_on;
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "exe11", .initial_size = 2});
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe11/serial", .pool = pool});
  Gate gate;
  ASSERT_TRUE(tp->Push([&blocked_on, w = gate.waiter()] {
    blocked_on = std::this_thread::get_id();
    w.Wait();
  }));
  ASSERT_TRUE(tp->Push([&second_ran] { second_ran = true; }));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  ASSERT_TRUE(pool->Push([&] {
    direct_on = std::this_thread::get_id();
    direct_ran = true;
  }));
  ASSERT_TRUE(WaitUntil([&] { return direct_ran.load(); }));
  EXPECT_FALSE(second_ran.load());  // the serializer's next task waits for the blocked one
  EXPECT_NE(blocked_on, direct_on);
  EXPECT_TRUE(tp->Stats().executing);
  EXPECT_EQ(tp->Depth(), 1u);
  gate.Open();
  EXPECT_TRUE(WaitUntil([&] { return second_ran.load(); }));
}

TEST(TaskProcessor, EXE12_ASecondProcessorWithANameInUseIsRefused) {
  Ref<TaskProcessor> first = TaskProcessor::Create({.name = "exe12/unique"});
  ASSERT_TRUE(first);
  PLEXUS_EXPECT_MISUSE_HERE(TaskProcessor::Create({.name = "exe12/unique"}));
  {
    LogCapture log;
    ScopedMisuseAction action(MisuseAction::kLog);
    EXPECT_FALSE(TaskProcessor::Create({.name = "exe12/unique"}));
  }
  EXPECT_EQ(TaskProcessor::Find("exe12/unique").get(), first.get());
  EXPECT_TRUE(first->PushAndWait([] {}));  // the first one is unaffected
}

TEST(TaskProcessor, EXE13_PushAndWaitReturnsOnlyAfterTheTaskRan) {
  int value = 0;  // no atomic: PushAndWait's return must make the write visible
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe13/wait"});
  EXPECT_TRUE(tp->PushAndWait([&value] { value = 42; }));
  EXPECT_EQ(value, 42);
}

TEST(TaskProcessor, EXE13_PushAndWaitFromItsOwnTaskRunsInline) {
  std::vector<std::string> order;  // written by the tasks only
  TaskProcessor* inner_current = nullptr;
  std::promise<void> done;
  std::future<void> finished = done.get_future();
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe13/inline"});
  TaskProcessor* raw = tp.get();
  ASSERT_TRUE(tp->Push([&, raw] {
    order.push_back("outer start");
    const bool ok = raw->PushAndWait([&] {
      order.push_back("inner");
      inner_current = TaskProcessor::Current();
    });
    order.push_back(ok ? "outer end" : "PushAndWait returned false");
    done.set_value();
  }));
  ASSERT_TRUE(WaitFor(finished));
  EXPECT_THAT(order, ElementsAre("outer start", "inner", "outer end"));
  EXPECT_EQ(inner_current, raw);
}

TEST(TaskProcessor, PushAndWaitFromAnotherProcessorOfTheSamePool) {
  std::promise<bool> result;
  std::future<bool> future = result.get_future();
  std::atomic<bool> target_ran{false};
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 2});
  Ref<TaskProcessor> caller = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> target = TaskProcessor::Create({.pool = pool});
  TaskProcessor* target_raw = target.get();
  ASSERT_TRUE(caller->Push(
      [&, target_raw] { result.set_value(target_raw->PushAndWait([&] { target_ran = true; })); }));
  ASSERT_TRUE(WaitFor(future));
  EXPECT_TRUE(future.get());
  EXPECT_TRUE(target_ran.load());
}

// -----------------------------------------------------------------------------
// Waiting from a pool worker: PushAndWait and Shutdown called from a task of another
// processor of the same one-thread pool. The only worker is the one that waits, so the wait
// must not leave the target's turn without a thread. Each test waits with a bound and, if the
// bound passes, abandons what the stuck worker uses (destroying the pool would join that
// worker) so that the failure is reported rather than hung on.
// -----------------------------------------------------------------------------

TEST(TaskProcessor, PushAndWaitFromTheOnlyWorkerOfThePoolCompletes) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "one-worker", .initial_size = 1});
  Ref<TaskProcessor> caller = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> target = TaskProcessor::Create({.pool = pool});
  auto result = std::make_shared<std::promise<bool>>();
  std::future<bool> returned = result->get_future();
  auto ran = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(caller->Push([target_raw = target.get(), result, ran] {
    result->set_value(target_raw->PushAndWait([ran] { ran->store(true); }));
  }));
  if (!WaitFor(returned)) {
    Abandon(pool, caller, target);
    FAIL() << "PushAndWait from the only worker of the target's pool never returned";
  }
  EXPECT_TRUE(returned.get());
  EXPECT_TRUE(ran->load());
}

TEST(TaskProcessor, PushAndWaitFromTheOnlyWorkerOnASuspendedProcessorCompletesAfterResume) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "one-worker", .initial_size = 1});
  Ref<TaskProcessor> caller = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> target = TaskProcessor::Create({.pool = pool});
  target->Suspend();
  auto result = std::make_shared<std::promise<bool>>();
  std::future<bool> returned = result->get_future();
  auto ran = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(caller->Push([target_raw = target.get(), result, ran] {
    result->set_value(target_raw->PushAndWait([ran] { ran->store(true); }));
  }));
  // The task is queued on the suspended target and its caller waits on the pool's only worker.
  ASSERT_TRUE(WaitUntil([&] { return target->Depth() == 1; }));
  EXPECT_EQ(returned.wait_for(std::chrono::seconds(0)), std::future_status::timeout);
  target->Resume();
  if (!WaitFor(returned)) {
    Abandon(pool, caller, target);
    FAIL() << "PushAndWait on a resumed processor never returned";
  }
  EXPECT_TRUE(returned.get());
  EXPECT_TRUE(ran->load());
}

TEST(TaskProcessor, ShutdownWithDiscardWhileTheOnlyWorkerWaitsOnTheProcessorCompletes) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "one-worker", .initial_size = 1});
  Ref<TaskProcessor> caller = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> target = TaskProcessor::Create({.pool = pool});
  target->Suspend();
  auto result = std::make_shared<std::promise<bool>>();
  std::future<bool> returned = result->get_future();
  auto ran = std::make_shared<std::atomic<bool>>(false);
  ASSERT_TRUE(caller->Push([target_raw = target.get(), result, ran] {
    result->set_value(target_raw->PushAndWait([ran] { ran->store(true); }));
  }));
  ASSERT_TRUE(WaitUntil([&] { return target->Depth() == 1; }));
  // Resuming queues the target's turn on the pool; the shutdown then has a turn to wait for.
  target->Resume();
  std::future<std::size_t> discarded = RunDetached(
      [target_raw = target.get()] { return target_raw->Shutdown(ShutdownMode::kDiscard); });
  if (!WaitFor(discarded) || !WaitFor(returned)) {
    Abandon(pool, caller, target);
    FAIL() << "Shutdown(kDiscard) or the PushAndWait it raced never returned";
  }
  // Either the task ran before the shutdown, or the shutdown discarded it; PushAndWait says
  // which.
  const bool task_ran = returned.get();
  EXPECT_EQ(task_ran, ran->load());
  EXPECT_EQ(discarded.get(), task_ran ? 0u : 1u);
}

TEST(TaskProcessor, ShutdownFromTheOnlyWorkerOfThePoolDrainsTheOtherProcessor) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "one-worker", .initial_size = 1});
  Ref<TaskProcessor> caller = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> target = TaskProcessor::Create({.pool = pool});
  Recorder ran;
  target->Suspend();  // queued behind the caller's task, not yet run
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(target->Push([&ran, i] { ran.Add(i); }));
  auto result = std::make_shared<std::promise<std::size_t>>();
  std::future<std::size_t> returned = result->get_future();
  ASSERT_TRUE(caller->Push([target_raw = target.get(), result] {
    result->set_value(target_raw->Shutdown(ShutdownMode::kDrain));
  }));
  if (!WaitFor(returned)) {
    Abandon(pool, caller, target);
    FAIL() << "Shutdown(kDrain) from the only worker of the target's pool never returned";
  }
  EXPECT_EQ(returned.get(), 0u);
  EXPECT_THAT(ran.Values(), ElementsAre(0, 1, 2));
}

TEST(TaskProcessor, EXE14_SuspensionsAreCountedAndQueuedTasksRunInOrderAfterResume) {
  Recorder ran;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe14/suspend", .pool = pool});
  tp->Suspend();
  tp->Suspend();
  EXPECT_TRUE(tp->IsSuspended());
  EXPECT_EQ(tp->Stats().suspended, 2u);
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tp->Push([&ran, i] { ran.Add(i); }));
  // On a one-thread pool, a task pushed to the pool after these has run once they could have.
  ASSERT_TRUE(plexus_test::DrainOneThreadPool(*pool));
  EXPECT_EQ(ran.Size(), 0u);
  EXPECT_EQ(tp->Depth(), 3u);
  tp->Resume();
  EXPECT_TRUE(tp->IsSuspended());  // one suspension left
  ASSERT_TRUE(plexus_test::DrainOneThreadPool(*pool));
  EXPECT_EQ(ran.Size(), 0u);
  tp->Resume();
  EXPECT_FALSE(tp->IsSuspended());
  ASSERT_TRUE(ran.WaitForSize(3));
  EXPECT_THAT(ran.Values(), ElementsAre(0, 1, 2));
}

TEST(TaskProcessor, SuspendFromWithinATaskStopsTheNextOnes) {
  Recorder ran;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "suspend/inside", .pool = pool});
  ASSERT_TRUE(tp->Push([&ran] {
    ran.Add(0);
    TaskProcessor::Current()->Suspend();
  }));
  for (int i = 1; i < 3; ++i) ASSERT_TRUE(tp->Push([&ran, i] { ran.Add(i); }));
  ASSERT_TRUE(ran.WaitForSize(1));
  ASSERT_TRUE(plexus_test::DrainOneThreadPool(*pool));
  EXPECT_THAT(ran.Values(), ElementsAre(0));
  EXPECT_TRUE(tp->IsSuspended());
  EXPECT_EQ(tp->Depth(), 2u);
  tp->Resume();
  ASSERT_TRUE(ran.WaitForSize(3));
  EXPECT_THAT(ran.Values(), ElementsAre(0, 1, 2));
}

TEST(TaskProcessor, ResumeWithoutSuspendIsMisuse) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "resume/unbalanced"});
  PLEXUS_EXPECT_MISUSE_HERE(tp->Resume());
  tp->Suspend();
  tp->Resume();
  PLEXUS_EXPECT_MISUSE_HERE(tp->Resume());
  EXPECT_FALSE(tp->IsSuspended());
  EXPECT_TRUE(tp->PushAndWait([] {}));
}

// EXE15: low water 3, high water 6. Task 0 runs and blocks; tasks 1..7 wait, each
// blocked on its own gate once it runs, so the test steps the depth down one task at a time.
TEST(TaskProcessor, EXE15_AlertRaisedAtHighWaterAndClearedBelowLowWater) {
  LogCapture log;  // the alert also logs a warning
  AlertRecorder alerts;
  const std::size_t process_before = TaskProcessorProcessAlertCount();
  const std::string name = "exe15/queue";
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 2});
  Ref<TaskProcessor> tp =
      TaskProcessor::Create({.name = name, .pool = pool, .high_water = 6, .low_water = 3});
  ASSERT_TRUE(tp);
  std::array<Gate, 8> gates;
  auto push = [&](int i) { return tp->Push([w = gates[i].waiter()] { w.Wait(); }); };
  ASSERT_TRUE(push(0));
  ASSERT_TRUE(gates[0].WaitForArrivals(1));  // running: not counted in the depth
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(push(i));
    EXPECT_EQ(tp->Depth(), static_cast<std::size_t>(i));
    EXPECT_FALSE(tp->IsAlerted()) << "depth " << i;
  }
  EXPECT_TRUE(alerts.For(name).empty());
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("exe15"), 0u);

  ASSERT_TRUE(push(6));  // depth 6: high water
  EXPECT_TRUE(tp->IsAlerted());
  EXPECT_TRUE(tp->Stats().alerted);
  std::vector<AlertRecord> changes = alerts.For(name);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(changes[0].raised);
  EXPECT_EQ(changes[0].subsystem, "exe15");
  EXPECT_EQ(changes[0].depth, 6u);
  EXPECT_EQ(changes[0].subsystem_alerts, 1u);
  EXPECT_EQ(changes[0].process_alerts, process_before + 1);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("exe15"), 1u);
  EXPECT_EQ(TaskProcessorProcessAlertCount(), process_before + 1);
  ASSERT_TRUE(push(7));  // already alerted: no second report
  EXPECT_EQ(alerts.For(name).size(), 1u);

  // Let tasks 0..2 finish one by one: the depth goes 6, 5, 4 and the alert stays.
  for (int i = 0; i < 3; ++i) {
    gates[i].Open();
    ASSERT_TRUE(gates[i + 1].WaitForArrivals(1));
    EXPECT_EQ(tp->Depth(), static_cast<std::size_t>(6 - i));
    EXPECT_TRUE(tp->IsAlerted()) << "depth " << 6 - i;
  }
  // Tasks 3 and 4 finish: the depth fell through low water (3) to 2; the alert cleared.
  gates[3].Open();
  ASSERT_TRUE(gates[4].WaitForArrivals(1));
  gates[4].Open();
  ASSERT_TRUE(gates[5].WaitForArrivals(1));
  EXPECT_EQ(tp->Depth(), 2u);
  EXPECT_FALSE(tp->IsAlerted());
  changes = alerts.For(name);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_FALSE(changes[1].raised);
  EXPECT_EQ(changes[1].subsystem, "exe15");
  EXPECT_LE(changes[1].depth, 3u);
  EXPECT_EQ(changes[1].subsystem_alerts, 0u);
  EXPECT_EQ(changes[1].process_alerts, process_before);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("exe15"), 0u);
  EXPECT_EQ(TaskProcessorProcessAlertCount(), process_before);
}

TEST(TaskProcessor, SetAlertLevelsReevaluatesTheAlert) {
  LogCapture log;
  AlertRecorder alerts;
  const std::string name = "alerts/levels";
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = name});
  tp->Suspend();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tp->Push([] {}));
  EXPECT_FALSE(tp->IsAlerted());
  tp->SetAlertLevels(1, 3);  // depth 3 reaches the new high water
  EXPECT_TRUE(tp->IsAlerted());
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("alerts"), 1u);
  tp->SetAlertLevels(5, 10);  // depth 3 is at or below the new low water
  EXPECT_FALSE(tp->IsAlerted());
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("alerts"), 0u);
  const std::vector<AlertRecord> changes = alerts.For(name);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_TRUE(changes[0].raised);
  EXPECT_FALSE(changes[1].raised);
  tp->Resume();
  EXPECT_TRUE(tp->PushAndWait([] {}));
}

// Pushes `per_thread` empty tasks from each of `threads` threads at once.
void PushFromThreads(TaskProcessor& tp, int threads, int per_thread) {
  std::vector<std::thread> pushers;
  for (int t = 0; t < threads; ++t) {
    pushers.emplace_back([&tp, per_thread] {
      for (int i = 0; i < per_thread; ++i) ASSERT_TRUE(tp.Push([] {}));
    });
  }
  for (std::thread& t : pushers) t.join();
}

// Pushes keep an estimate of the depth and look at what the turn took only when the estimate
// could set a new maximum: the maximum is still the true one, after turns ran tasks the
// producers never looked at and while a turn runs.
TEST(TaskProcessor, MaxDepthIsExactWithPushesFromSeveralThreads) {
  constexpr int kThreads = 4;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 2});
  Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool, .high_water = 1'000'000});
  auto ran_all = [&](std::uint64_t n) {
    return WaitUntil([&] { return tp->Stats().processed == n; });
  };

  tp->Suspend();
  PushFromThreads(*tp, kThreads, 250);
  EXPECT_EQ(tp->Depth(), 1000u);
  EXPECT_EQ(tp->Stats().max_depth, 1000u);
  tp->Resume();
  ASSERT_TRUE(ran_all(1000));
  EXPECT_EQ(tp->Depth(), 0u);
  EXPECT_EQ(tp->Stats().max_depth, 1000u);

  // A turn runs (blocked in its task) while the pushes come: they count from what they saw
  // before the 1000 tasks ran, and must not take the sum for the depth.
  Gate gate;
  ASSERT_TRUE(tp->Push(gate.waiter()));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  EXPECT_EQ(tp->Depth(), 0u);
  PushFromThreads(*tp, kThreads, 300);
  EXPECT_EQ(tp->Depth(), 1200u);
  TaskProcessorStats stats = tp->Stats();
  EXPECT_EQ(stats.depth, 1200u);
  EXPECT_EQ(stats.max_depth, 1200u);
  EXPECT_TRUE(stats.executing);
  gate.Open();
  ASSERT_TRUE(ran_all(2201));

  // Below the maximum, the maximum stays.
  Gate second;
  ASSERT_TRUE(tp->Push(second.waiter()));
  ASSERT_TRUE(second.WaitForArrivals(1));
  PushFromThreads(*tp, kThreads, 100);
  EXPECT_EQ(tp->Depth(), 400u);
  EXPECT_EQ(tp->Stats().max_depth, 1200u);
  second.Open();
  ASSERT_TRUE(ran_all(2602));
  EXPECT_EQ(tp->Depth(), 0u);
}

// The alert is raised at high water and cleared at low water whatever the producers' estimate
// of the depth says: pushed past high water from several threads while suspended, drained
// below low water, then pushed again with an estimate that still counts the drained tasks.
TEST(TaskProcessor, AlertLevelsHoldWithTheProducersEstimateOfTheDepth) {
  LogCapture log;
  AlertRecorder alerts;
  constexpr int kThreads = 4;
  const std::string name = "estimate/alerts";
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 2});
  Ref<TaskProcessor> tp = TaskProcessor::Create(
      {.name = name, .pool = pool, .batch_limit = 8, .high_water = 100, .low_water = 40});
  ASSERT_TRUE(tp);
  tp->Suspend();
  PushFromThreads(*tp, kThreads, 24);  // 96
  ASSERT_TRUE(tp->Push([] {}));        // 97
  EXPECT_FALSE(tp->IsAlerted());
  PushFromThreads(*tp, kThreads, 10);  // 137: crosses 100 once
  EXPECT_TRUE(tp->IsAlerted());
  std::vector<AlertRecord> changes = alerts.For(name);
  ASSERT_EQ(changes.size(), 1u);
  EXPECT_TRUE(changes[0].raised);
  EXPECT_GE(changes[0].depth, 100u);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("estimate"), 1u);

  // Drain: the last of the 137 leaves 40 behind it (the clear, at 40 exactly), and the next
  // one blocks the turn.
  Gate gate;
  std::atomic<int> ran{0};
  ASSERT_TRUE(tp->Push([&ran, w = gate.waiter()] {
    ran.fetch_add(1);
    w.Wait();
  }));
  for (int i = 0; i < 39; ++i) ASSERT_TRUE(tp->Push([] {}));
  EXPECT_EQ(tp->Depth(), 177u);
  EXPECT_TRUE(tp->IsAlerted());
  tp->Resume();
  ASSERT_TRUE(gate.WaitForArrivals(1));
  EXPECT_EQ(tp->Depth(), 39u);
  EXPECT_FALSE(tp->IsAlerted());
  changes = alerts.For(name);
  ASSERT_EQ(changes.size(), 2u);
  EXPECT_FALSE(changes[1].raised);
  EXPECT_EQ(changes[1].depth, 40u);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("estimate"), 0u);
  gate.Open();
  ASSERT_TRUE(WaitUntil([&] { return tp->Depth() == 0 && !tp->Stats().executing; }));

  // 177 tasks ran since the producers last looked at what the turn took: their estimate is
  // far above high water, the depth is not. The alert waits for the true depth.
  tp->Suspend();
  PushFromThreads(*tp, kThreads, 24);
  ASSERT_TRUE(tp->Push([] {}));
  ASSERT_TRUE(tp->Push([] {}));
  ASSERT_TRUE(tp->Push([] {}));  // 99
  EXPECT_FALSE(tp->IsAlerted());
  EXPECT_EQ(alerts.For(name).size(), 2u);
  ASSERT_TRUE(tp->Push([] {}));  // 100
  EXPECT_TRUE(tp->IsAlerted());
  changes = alerts.For(name);
  ASSERT_EQ(changes.size(), 3u);
  EXPECT_TRUE(changes[2].raised);
  EXPECT_EQ(changes[2].depth, 100u);
  tp->Resume();
  ASSERT_TRUE(WaitUntil([&] { return !tp->IsAlerted(); }));
  EXPECT_EQ(ran.load(), 1);
}

TEST(TaskProcessor, SetAlertLevelsWithHighBelowLowIsMisuse) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "alerts/bad-levels"});
  PLEXUS_EXPECT_MISUSE_HERE(tp->SetAlertLevels(10, 5));
  EXPECT_FALSE(tp->IsAlerted());
}

TEST(TaskProcessor, AlertHandlerSetterReturnsThePreviousHandler) {
  int first_calls = 0;
  TaskProcessorAlertHandler original =
      SetTaskProcessorAlertHandler([&first_calls](const TaskProcessorAlert&) { ++first_calls; });
  plexus_test::ScopeExit restore([&] { SetTaskProcessorAlertHandler(std::move(original)); });
  TaskProcessorAlertHandler mine = SetTaskProcessorAlertHandler(nullptr);
  ASSERT_TRUE(mine);
  mine(TaskProcessorAlert{"p", "s", true, 1, 1, 1});
  EXPECT_EQ(first_calls, 1);
  EXPECT_FALSE(SetTaskProcessorAlertHandler(nullptr));  // none was installed
}

// No plexus lock is held while the handler runs: it may push to the processor it is told
// about, push to another one hard enough to raise that one's alert too, and read the counts.
// The nested change reaches the handler after the first one returned.
TEST(TaskProcessor, AnAlertHandlerMayPushToProcessorsAndReadTheCounts) {
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  Ref<TaskProcessor> first = TaskProcessor::Create(
      {.name = "handler-push/first", .pool = pool, .high_water = 2, .low_water = 0});
  Ref<TaskProcessor> second = TaskProcessor::Create(
      {.name = "handler-push/second", .pool = pool, .high_water = 1, .low_water = 0});
  first->Suspend();
  second->Suspend();
  struct Seen {
    std::string processor;
    bool raised;
    std::size_t process_alerts_inside;
  };
  auto seen = std::make_shared<std::vector<Seen>>();  // only the delivering thread writes
  TaskProcessorAlertHandler previous = SetTaskProcessorAlertHandler(
      [seen, first_raw = first.get(), second_raw = second.get()](const TaskProcessorAlert& a) {
        if (a.processor != "handler-push/first" && a.processor != "handler-push/second") return;
        seen->push_back({std::string(a.processor), a.raised, TaskProcessorProcessAlertCount()});
        if (a.processor == "handler-push/first" && a.raised) {
          first_raw->Push([] {});
          second_raw->Push([] {});  // depth 1: raises the second processor's alert
        }
      });
  LogCapture log;  // the raises log warnings
  std::future<void> pushed = RunDetached([first_raw = first.get()] {
    first_raw->Push([] {});
    first_raw->Push([] {});  // depth 2: raises the first processor's alert
  });
  if (!WaitFor(pushed)) {
    // The handler is stuck under the alert lock; nothing can be cleaned up.
    Abandon(pool, first, second);
    new TaskProcessorAlertHandler(std::move(previous));  // leaked with the rest
    FAIL() << "an alert handler that pushed to task processors never returned";
  }
  SetTaskProcessorAlertHandler(std::move(previous));
  ASSERT_EQ(seen->size(), 2u);
  EXPECT_EQ((*seen)[0].processor, "handler-push/first");
  EXPECT_TRUE((*seen)[0].raised);
  EXPECT_EQ((*seen)[1].processor, "handler-push/second");
  EXPECT_TRUE((*seen)[1].raised);
  EXPECT_EQ((*seen)[1].process_alerts_inside, (*seen)[0].process_alerts_inside + 1);
  EXPECT_EQ(first->Depth(), 3u);
  EXPECT_EQ(second->Depth(), 1u);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("handler-push"), 2u);
  first->Shutdown(ShutdownMode::kDiscard);
  second->Shutdown(ShutdownMode::kDiscard);
  EXPECT_EQ(TaskProcessorSubsystemAlertCount("handler-push"), 0u);
}

TEST(TaskProcessor, EXE16_StatisticsAndListingWhileItWorks) {
  const std::string name = "exe16/stats";
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = name});
  Gate gate;
  ASSERT_TRUE(tp->Push([w = gate.waiter()] { w.Wait(); }));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  ASSERT_TRUE(tp->Push([] {}));
  ASSERT_TRUE(tp->Push([] {}));

  TaskProcessorStats s = tp->Stats();
  EXPECT_EQ(s.name, name);
  EXPECT_EQ(s.processed, 0u);
  EXPECT_EQ(s.depth, 2u);
  EXPECT_EQ(s.max_depth, 2u);
  EXPECT_TRUE(s.executing);
  EXPECT_FALSE(s.alerted);
  EXPECT_EQ(s.suspended, 0u);
  const TaskProcessorStats listed = ListedStats(name);
  EXPECT_EQ(listed.depth, 2u);
  EXPECT_TRUE(listed.executing);
  EXPECT_THAT(TaskProcessor::ListText(), HasSubstr(name));

  gate.Open();
  EXPECT_TRUE(WaitUntil([&] {
    const TaskProcessorStats now = tp->Stats();
    return now.processed == 3 && !now.executing;
  }));
  s = tp->Stats();
  EXPECT_EQ(s.processed, 3u);
  EXPECT_EQ(s.failed, 0u);
  EXPECT_EQ(s.depth, 0u);
  EXPECT_EQ(s.max_depth, 2u);
  EXPECT_TRUE(WaitUntil([&] { return tp->Stats().busy.count() > 0; }));
  EXPECT_EQ(ListedStats(name).processed, 3u);
}

TEST(TaskProcessor, ListAndListTextIncludeANamedProcessor) {
  const std::string name = "list/me";
  EXPECT_FALSE(Listed(name));
  const std::size_t live_before = TaskProcessor::LiveCount();
  {
    Ref<TaskProcessor> tp = TaskProcessor::Create({.name = name});
    Ref<TaskProcessor> anonymous = TaskProcessor::Create();
    EXPECT_EQ(TaskProcessor::LiveCount(), live_before + 2);
    EXPECT_TRUE(Listed(name));
    EXPECT_TRUE(Listed(anonymous->Name()));  // named or not
    EXPECT_THAT(TaskProcessor::ListText(), HasSubstr(name));
  }
  EXPECT_FALSE(Listed(name));
  EXPECT_EQ(TaskProcessor::LiveCount(), live_before);
}

TEST(TaskProcessor, EXE17_DroppingTheLastHandleReturnsAfterTheRunningAndTheWaitingTask) {
  std::atomic<int> ran{0};
  std::atomic<int> ran_at_return{-1};
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe17/drain"});
  TaskProcessor* raw = tp.get();
  std::jthread dropper;  // joined after the gate below opened
  Gate gate;
  ASSERT_TRUE(tp->Push([&ran, w = gate.waiter()] {
    w.Wait();
    ran.fetch_add(1);
  }));
  ASSERT_TRUE(tp->Push([&ran] { ran.fetch_add(1); }));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  dropper = std::jthread([&ran, &ran_at_return, handle = std::move(tp)]() mutable {
    handle.Reset();
    ran_at_return = ran.load();
  });
  // The running task keeps the object alive, so `raw` may be read until the gate opens.
  EXPECT_TRUE(WaitUntil([&] { return raw->IsShutDown(); }));
  EXPECT_EQ(ran_at_return.load(), -1);
  gate.Open();
  dropper.join();
  EXPECT_EQ(ran_at_return.load(), 2);
}

TEST(TaskProcessor, EXE17_DroppingTheLastHandleWithDiscardReturnsAfterTheRunningTask) {
  LogCapture log;
  std::atomic<bool> running_finished{false};
  std::atomic<bool> waiting_ran{false};
  std::atomic<int> finished_at_return{-1};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  Ref<TaskProcessor> tp =
      TaskProcessor::Create({.name = "exe17/discard", .discard_on_release = true});
  TaskProcessor* raw = tp.get();
  std::jthread dropper;
  Gate gate;
  ASSERT_TRUE(tp->Push([&running_finished, w = gate.waiter()] {
    w.Wait();
    running_finished = true;
  }));
  ASSERT_TRUE(tp->Push([&waiting_ran, s = std::move(sentinel)] { waiting_ran = true; }));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  dropper = std::jthread([&, handle = std::move(tp)]() mutable {
    handle.Reset();
    finished_at_return = running_finished.load() ? 1 : 0;
  });
  EXPECT_TRUE(WaitUntil([&] { return raw->IsShutDown(); }));
  EXPECT_EQ(finished_at_return.load(), -1);
  gate.Open();
  dropper.join();
  EXPECT_EQ(finished_at_return.load(), 1);
  EXPECT_FALSE(waiting_ran.load());
  EXPECT_TRUE(watch.expired());
}

TEST(TaskProcessor, EXE17_ShutdownWithDiscardReportsTheDiscardedCountAfterTheRunningTask) {
  LogCapture log;
  std::atomic<bool> running_finished{false};
  std::atomic<int> waiting_ran{0};
  std::atomic<long> result{-1};
  std::atomic<int> finished_at_return{-1};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "exe17/shutdown-discard"});
  std::jthread shutter;
  Gate gate;
  ASSERT_TRUE(tp->Push([&running_finished, w = gate.waiter()] {
    w.Wait();
    running_finished = true;
  }));
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(tp->Push([&waiting_ran, s = sentinel] { waiting_ran.fetch_add(1); }));
  }
  sentinel.reset();
  ASSERT_TRUE(gate.WaitForArrivals(1));
  shutter = std::jthread([&] {
    result = static_cast<long>(tp->Shutdown(ShutdownMode::kDiscard));
    finished_at_return = running_finished.load() ? 1 : 0;
  });
  EXPECT_TRUE(WaitUntil([&] { return tp->IsShutDown(); }));
  EXPECT_EQ(result.load(), -1);  // cannot return while the running task runs
  gate.Open();
  shutter.join();
  EXPECT_EQ(result.load(), 3);
  EXPECT_EQ(finished_at_return.load(), 1);
  EXPECT_EQ(waiting_ran.load(), 0);
  EXPECT_TRUE(watch.expired());
  const TaskProcessorStats s = tp->Stats();
  EXPECT_EQ(s.discarded, 3u);
  EXPECT_EQ(s.processed, 1u);
  EXPECT_EQ(s.depth, 0u);
  EXPECT_EQ(tp->Shutdown(ShutdownMode::kDiscard), 0u);  // idempotent
}

// The push that makes an idle task processor ready hands its task straight to the turn it
// queues. Suspended before that turn starts, the task stays with it: a discarding shutdown
// still finds it (and never runs it), whether the turn has already come and gone or not.
TEST(TaskProcessor, ShutdownWithDiscardFindsTheTaskHandedToAQueuedTurn) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "handed-turn", .initial_size = 1});
  Ref<TaskProcessor> blocker = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool});
  Gate gate;
  ASSERT_TRUE(blocker->Push([w = gate.waiter()] { w.Wait(); }));
  ASSERT_TRUE(gate.WaitForArrivals(1));  // the pool's only worker is busy
  std::atomic<int> ran{0};
  ASSERT_TRUE(tp->Push([&ran] { ran.fetch_add(1); }));  // its turn waits for the worker
  tp->Suspend();
  gate.Open();
  EXPECT_EQ(tp->Shutdown(ShutdownMode::kDiscard), 1u);
  EXPECT_EQ(ran.load(), 0);
  const TaskProcessorStats s = tp->Stats();
  EXPECT_EQ(s.discarded, 1u);
  EXPECT_EQ(s.processed, 0u);
  EXPECT_EQ(s.depth, 0u);
  blocker = nullptr;
  tp = nullptr;
  pool->Shutdown();
}

// A producer that streams tasks while the turn drains them: the turn may wait a moment for
// more before it gives its thread back. Order, counts and the end state are as without it.
TEST(TaskProcessor, AStreamingProducersTasksRunInOrderAndTheProcessorEndsIdle) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stream", .initial_size = 1});
  Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool});
  constexpr int kTasks = 20'000;
  std::vector<int> order;
  order.reserve(kTasks);
  std::atomic<int> done{0};
  for (int i = 0; i < kTasks; ++i) {
    ASSERT_TRUE(tp->Push([&order, &done, i] {
      order.push_back(i);
      done.store(i + 1, std::memory_order_release);
    }));
  }
  ASSERT_TRUE(WaitUntil([&] { return done.load(std::memory_order_acquire) == kTasks; }));
  ASSERT_EQ(order.size(), static_cast<std::size_t>(kTasks));
  for (int i = 0; i < kTasks; ++i) ASSERT_EQ(order[static_cast<std::size_t>(i)], i);
  EXPECT_TRUE(WaitUntil([&] { return !tp->Stats().executing && pool->ActiveCount() == 0; }));
  EXPECT_EQ(tp->Depth(), 0u);
  EXPECT_GT(tp->Stats().busy.count(), 0);
  tp = nullptr;
  pool->Shutdown();
}

TEST(TaskProcessor, ShutdownWithDrainRunsTheTasksOfASuspendedProcessor) {
  Recorder ran;
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "shutdown/drain"});
  tp->Suspend();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(tp->Push([&ran, i] { ran.Add(i); }));
  EXPECT_EQ(tp->Shutdown(ShutdownMode::kDrain), 0u);
  EXPECT_TRUE(tp->IsShutDown());
  ASSERT_TRUE(ran.WaitForSize(3));
  EXPECT_THAT(ran.Values(), ElementsAre(0, 1, 2));
  EXPECT_EQ(tp->Shutdown(), 0u);  // idempotent
  EXPECT_EQ(tp->Stats().discarded, 0u);
}

TEST(TaskProcessor, ShutdownFromItsOwnTaskReturnsAtOnce) {
  LogCapture log;
  std::atomic<long> result{-1};
  std::atomic<int> later_ran{0};
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "shutdown/own-task"});
  Gate gate;  // holds the first task until the others are queued
  ASSERT_TRUE(tp->Push([&result, w = gate.waiter()] {
    w.Wait();
    result = static_cast<long>(TaskProcessor::Current()->Shutdown(ShutdownMode::kDiscard));
  }));
  for (int i = 0; i < 2; ++i) ASSERT_TRUE(tp->Push([&later_ran] { later_ran.fetch_add(1); }));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  gate.Open();
  ASSERT_TRUE(WaitUntil([&] { return result.load() != -1; }));
  EXPECT_EQ(result.load(), 2);
  EXPECT_TRUE(tp->IsShutDown());
  tp.Reset();
  EXPECT_EQ(later_ran.load(), 0);
}

TEST(TaskProcessor, PushAndWaitOnAProcessorShutDownWithDiscardReturnsFalse) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "push-and-wait/shut-down"});
  EXPECT_EQ(tp->Shutdown(ShutdownMode::kDiscard), 0u);
  PLEXUS_EXPECT_MISUSE_HERE(tp->PushAndWait([] {}));
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  std::atomic<bool> ran{false};
  EXPECT_FALSE(tp->PushAndWait([&ran] { ran = true; }));
  EXPECT_FALSE(ran.load());
}

TEST(TaskProcessor, PushAndWaitOnATaskDiscardedByShutdownReturnsFalse) {
  LogCapture log;
  std::atomic<int> waited{-1};  // 1: PushAndWait returned true, 0: false
  std::atomic<bool> queued_ran{false};
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "push-and-wait/discarded"});
  std::jthread waiter;
  std::jthread shutter;
  Gate gate;
  ASSERT_TRUE(tp->Push([w = gate.waiter()] { w.Wait(); }));
  ASSERT_TRUE(gate.WaitForArrivals(1));
  waiter =
      std::jthread([&] { waited = tp->PushAndWait([&queued_ran] { queued_ran = true; }) ? 1 : 0; });
  ASSERT_TRUE(WaitUntil([&] { return tp->Depth() == 1; }));  // its task is queued
  shutter = std::jthread([&] { (void)tp->Shutdown(ShutdownMode::kDiscard); });
  ASSERT_TRUE(WaitUntil([&] { return tp->IsShutDown(); }));
  gate.Open();
  shutter.join();
  waiter.join();
  EXPECT_EQ(waited.load(), 0);
  EXPECT_FALSE(queued_ran.load());
}

// -----------------------------------------------------------------------------
// Names, pools, fairness
// -----------------------------------------------------------------------------

TEST(TaskProcessor, FindByNameAndTheNameIsFreeAgainOnceTheProcessorIsGone) {
  const std::string name = "find/me";
  {
    Ref<TaskProcessor> tp = TaskProcessor::Create({.name = name});
    ASSERT_TRUE(tp);
    EXPECT_EQ(TaskProcessor::Find(name).get(), tp.get());
    EXPECT_FALSE(TaskProcessor::Find("find/nobody"));
  }
  EXPECT_FALSE(TaskProcessor::Find(name));
  Ref<TaskProcessor> again = TaskProcessor::Create({.name = name});
  ASSERT_TRUE(again);
  EXPECT_EQ(TaskProcessor::Find(name).get(), again.get());
}

TEST(TaskProcessor, NameAndSubsystem) {
  Ref<TaskProcessor> named = TaskProcessor::Create({.name = "pjsip/dialog-42"});
  EXPECT_EQ(named->Name(), "pjsip/dialog-42");
  EXPECT_EQ(named->Subsystem(), "pjsip");
  EXPECT_EQ(named->Stats().name, "pjsip/dialog-42");
  Ref<TaskProcessor> anonymous = TaskProcessor::Create();
  EXPECT_THAT(anonymous->Name(), StartsWith("anonymous-"));
  EXPECT_EQ(anonymous->Subsystem(), "");
  EXPECT_FALSE(TaskProcessor::Find(anonymous->Name()));  // anonymous: not registered
}

TEST(TaskProcessor, DefaultPoolIsTheSharedPool) {
  std::promise<bool> on_shared;
  std::future<bool> future = on_shared.get_future();
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "pool/default"});
  EXPECT_EQ(&tp->Pool(), &ThreadPool::Shared());
  ASSERT_TRUE(
      tp->Push([&on_shared] { on_shared.set_value(ThreadPool::Shared().IsWorkerThread()); }));
  ASSERT_TRUE(WaitFor(future));
  EXPECT_TRUE(future.get());
}

TEST(TaskProcessor, DedicatedThreadRunsTasksOffTheSharedPool) {
  struct Seen {
    bool shared_worker;
    bool own_pool_worker;
    std::thread::id thread;
  };
  std::promise<Seen> seen;
  std::future<Seen> future = seen.get_future();
  Ref<TaskProcessor> tp =
      TaskProcessor::Create({.name = "pool/dedicated", .dedicated_thread = true});
  EXPECT_NE(&tp->Pool(), &ThreadPool::Shared());
  ThreadPool* own = &tp->Pool();
  ASSERT_TRUE(tp->Push([&seen, own] {
    seen.set_value(Seen{ThreadPool::Shared().IsWorkerThread(), own->IsWorkerThread(),
                        std::this_thread::get_id()});
  }));
  ASSERT_TRUE(WaitFor(future));
  const Seen s = future.get();
  EXPECT_FALSE(s.shared_worker);
  EXPECT_TRUE(s.own_pool_worker);
  EXPECT_NE(s.thread, std::this_thread::get_id());
}

// Two task processors with batch_limit 4 on a one-thread pool; 20 tasks pushed to A, then 20
// to B, while the only thread is held. A gives the thread back after 4 tasks, so B's first
// task runs before A's last.
TEST(TaskProcessor, BatchLimitLetsAnotherProcessorRunBeforeTheFirstFinishes) {
  constexpr int kTasks = 20;
  Recorder order;  // A's tasks record 0..19, B's 100..119
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "fairness", .initial_size = 1});
  Ref<TaskProcessor> a = TaskProcessor::Create({.pool = pool, .batch_limit = 4});
  Ref<TaskProcessor> b = TaskProcessor::Create({.pool = pool, .batch_limit = 4});
  {
    Gate gate;
    ASSERT_TRUE(pool->Push([w = gate.waiter()] { w.Wait(); }));
    ASSERT_TRUE(gate.WaitForArrivals(1));
    for (int i = 0; i < kTasks; ++i) ASSERT_TRUE(a->Push([&order, i] { order.Add(i); }));
    for (int i = 0; i < kTasks; ++i) ASSERT_TRUE(b->Push([&order, i] { order.Add(100 + i); }));
  }
  ASSERT_TRUE(order.WaitForSize(2 * kTasks));
  const std::vector<int> values = order.Values();
  std::vector<int> a_order;
  std::vector<int> b_order;
  std::size_t first_b = values.size();
  std::size_t last_a = 0;
  for (std::size_t at = 0; at < values.size(); ++at) {
    if (values[at] >= 100) {
      b_order.push_back(values[at] - 100);
      first_b = std::min(first_b, at);
    } else {
      a_order.push_back(values[at]);
      last_a = at;
    }
  }
  EXPECT_LT(first_b, last_a) << "B waited for all of A";
  std::vector<int> expected(kTasks);
  for (int i = 0; i < kTasks; ++i) expected[static_cast<std::size_t>(i)] = i;
  EXPECT_EQ(a_order, expected);
  EXPECT_EQ(b_order, expected);
}

TEST(TaskProcessor, EXE18_AHundredThousandIdleProcessorsNeedNoMoreThreads) {
  // The full 100 000 in release builds; a tenth under sanitizers (memory and time).
  const int n = plexus_test::Scaled(100'000);
  RecordingObserver observer;
  std::atomic<int> started{0};
  std::atomic<int> ran{0};
  ThreadPoolOptions options{.name = "exe18", .initial_size = 2, .observer = &observer};
  options.thread_start = [&started] { started.fetch_add(1); };
  Ref<ThreadPool> pool = ThreadPool::Create(std::move(options));
  const std::size_t live_before = TaskProcessor::LiveCount();
  std::vector<Ref<TaskProcessor>> tps;
  tps.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) {
    tps.push_back(TaskProcessor::Create({.pool = pool}));
    ASSERT_TRUE(tps.back());
  }
  EXPECT_EQ(TaskProcessor::LiveCount(), live_before + static_cast<std::size_t>(n));
  EXPECT_EQ(observer.LastState(), (plexus_test::PoolState{0, 2}));  // idle ones cost no threads
  for (const Ref<TaskProcessor>& tp : tps) {
    ASSERT_TRUE(tp->Push([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }));
  }
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == n; })) << ran.load() << " of " << n;
  EXPECT_TRUE(observer.WaitForState(0, 2)) << observer.LastState();
  EXPECT_EQ(observer.MaxThreads(), 2u);
  EXPECT_EQ(started.load(), 2);
  EXPECT_TRUE(WaitUntil([&] { return pool->ActiveCount() == 0 && pool->IdleCount() == 2; }));
  tps.clear();
  EXPECT_EQ(TaskProcessor::LiveCount(), live_before);
}

// -----------------------------------------------------------------------------
// Misuse, failures, lifetime
// -----------------------------------------------------------------------------

TEST(TaskProcessor, PushingAnEmptyTaskIsMisuse) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "misuse/empty"});
  PLEXUS_EXPECT_MISUSE_HERE(tp->Push(Task{}));
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  EXPECT_FALSE(tp->Push(nullptr));
  EXPECT_EQ(tp->Depth(), 0u);
}

TEST(TaskProcessor, PushingToAShutDownProcessorIsMisuseAndDestroysTheTask) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "misuse/shut-down"});
  EXPECT_EQ(tp->Shutdown(), 0u);
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  std::atomic<bool> ran{false};
  PLEXUS_EXPECT_MISUSE_HERE(tp->Push([s = sentinel, &ran] { ran = true; }));
  {
    LogCapture log;
    ScopedMisuseAction action(MisuseAction::kLog);
    EXPECT_FALSE(tp->Push([s = std::move(sentinel), &ran] { ran = true; }));
  }
  EXPECT_TRUE(watch.expired());
  EXPECT_FALSE(ran.load());
}

TEST(TaskProcessor, TryPushRefusesQuietlyAfterShutdownAndLeavesTheTask) {
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "try-push"});
  std::atomic<int> ran{0};
  Task task = [&ran] { ran.fetch_add(1); };
  EXPECT_TRUE(tp->TryPush(task));
  EXPECT_FALSE(task);  // moved from
  EXPECT_TRUE(tp->PushAndWait([] {}));
  EXPECT_EQ(ran.load(), 1);
  EXPECT_EQ(tp->Shutdown(), 0u);
  const std::uint64_t reports_before = MisuseReportCount();
  Task refused = [&ran] { ran.fetch_add(1); };
  EXPECT_FALSE(tp->TryPush(refused));
  EXPECT_TRUE(refused);  // untouched
  EXPECT_EQ(MisuseReportCount(), reports_before);
  refused();
  EXPECT_EQ(ran.load(), 2);
}

TEST(TaskProcessor, AThrowingTaskIsCountedLoggedAndTheNextOneRuns) {
  LogCapture log;
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "failures/throw"});
  ASSERT_TRUE(tp->Push([] { throw std::runtime_error("task failed"); }));
  ASSERT_TRUE(tp->Push([] { throw 7; }));
  std::atomic<bool> next_ran{false};
  EXPECT_TRUE(tp->PushAndWait([&next_ran] { next_ran = true; }));
  EXPECT_TRUE(next_ran.load());
  EXPECT_TRUE(WaitUntil([&] { return tp->Stats().processed == 3; }));
  EXPECT_EQ(tp->Stats().failed, 2u);
  bool logged = false;
  for (const plexus_test::CapturedRecord& r : log.Records()) {
    if (r.level == LogLevel::kError) logged = true;
  }
  EXPECT_TRUE(logged) << log.Text();
}

// The last reference is dropped by the processor's own task: no deadlock, the task after it
// still runs (drain on release), and the processor then goes away.
TEST(TaskProcessor, DroppingTheLastReferenceFromItsOwnTask) {
  std::atomic<bool> dropped{false};
  std::atomic<bool> later_ran{false};
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  const std::size_t live_before = TaskProcessor::LiveCount();
  const std::string name = "lifetime/self-drop";
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  auto holder =
      std::make_shared<Ref<TaskProcessor>>(TaskProcessor::Create({.name = name, .pool = pool}));
  ASSERT_TRUE(*holder);
  TaskProcessor* raw = holder->get();
  {
    Gate gate;  // both tasks are queued before the first runs
    ASSERT_TRUE(raw->Push([holder, &dropped, w = gate.waiter()] {
      w.Wait();
      holder->Reset();
      dropped = true;
    }));
    ASSERT_TRUE(raw->Push([&later_ran, s = std::move(sentinel)] { later_ran = true; }));
    holder.reset();  // only the first task holds the handle now
  }
  EXPECT_TRUE(WaitUntil([&] { return dropped.load(); }));
  EXPECT_TRUE(WaitUntil([&] { return watch.expired(); }));
  EXPECT_TRUE(later_ran.load());
  EXPECT_TRUE(WaitUntil([&] { return TaskProcessor::LiveCount() == live_before; }));
  EXPECT_FALSE(TaskProcessor::Find(name));
}

}  // namespace
}  // namespace plexus
