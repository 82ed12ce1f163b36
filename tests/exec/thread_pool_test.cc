// Tests for plexus::Task (inline and heap storage, move-only captures, reset) and
// plexus::ThreadPool: the acceptance cases EXE01-EXE08 (sizes, growth, idle timeout, observer
// notices, reactivation, distribution and shrinking while tasks run), misuse reports (empty
// task, push after shutdown, negative size, shutdown from a worker), shutdown, throwing tasks,
// the worker hooks and the shared pool. Every wait is on a condition, never a sleep.

#include "plexus/exec/thread_pool.h"

#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/exec/task.h"
#include "plexus/exec/task_processor.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/mutex.h"

namespace plexus {
namespace {

using namespace std::chrono_literals;
using plexus_test::Gate;
using plexus_test::LogCapture;
using plexus_test::PoolState;
using plexus_test::RecordingObserver;
using plexus_test::ScopedMisuseAction;
using plexus_test::WaitFor;
using plexus_test::WaitUntil;
using ::testing::ElementsAre;

// Counts the worker threads a pool starts and ends (through its hooks).
struct ThreadCounter {
  std::atomic<int> started{0};
  std::atomic<int> ended{0};

  std::function<void()> OnStart() {
    return [this] { started.fetch_add(1); };
  }
  std::function<void()> OnEnd() {
    return [this] { ended.fetch_add(1); };
  }
};

// Waits until the pool reports `active` and `idle` (read one after the other, so a worker's
// transition between the two reads is retried rather than reported).
bool WaitForCounts(const ThreadPool& pool, std::size_t active, std::size_t idle) {
  return WaitUntil([&] { return pool.ActiveCount() == active && pool.IdleCount() == idle; });
}

bool HasRecordAtLeast(const LogCapture& log, LogLevel level) {
  for (const plexus_test::CapturedRecord& r : log.Records()) {
    if (r.level >= level) return true;
  }
  return false;
}

// -----------------------------------------------------------------------------
// Task
// -----------------------------------------------------------------------------

TEST(Task, DefaultNullAndNullFunctionPointerAreEmpty) {
  Task empty;
  EXPECT_FALSE(empty);
  EXPECT_FALSE(empty.IsInline());
  Task from_nullptr = nullptr;
  EXPECT_FALSE(from_nullptr);
  void (*null_function)() = nullptr;
  Task from_null_function = null_function;
  EXPECT_FALSE(from_null_function);
}

int g_function_calls = 0;
void CountFunctionCall() {
  ++g_function_calls;
}

TEST(Task, FunctionPointerRuns) {
  g_function_calls = 0;
  Task task = &CountFunctionCall;
  ASSERT_TRUE(task);
  task();
  EXPECT_EQ(g_function_calls, 1);
}

TEST(Task, SmallClosureIsStoredInline) {
  int calls = 0;
  Task task = [&calls] { ++calls; };
  ASSERT_TRUE(task);
  EXPECT_TRUE(task.IsInline());
  task();
  task();  // a Task may be invoked more than once
  EXPECT_EQ(calls, 2);
}

TEST(Task, SixPointersAreInlineSevenGoToTheHeap) {
  int value = 0;
  std::array<int*, 6> six{};
  six.fill(&value);
  std::array<int*, 7> seven{};
  seven.fill(&value);
  Task six_task = [six] { ++*six[5]; };
  Task seven_task = [seven] { ++*seven[6]; };
  EXPECT_TRUE(six_task.IsInline());
  EXPECT_FALSE(seven_task.IsInline());
  ASSERT_TRUE(seven_task);
  six_task();
  seven_task();
  EXPECT_EQ(value, 2);
}

struct alignas(64) OverAligned {
  int* out;
  void operator()() const { ++*out; }
};

struct ThrowingMove {
  explicit ThrowingMove(int* o) : out(o) {}
  ThrowingMove(const ThrowingMove&) = default;
  ThrowingMove(ThrowingMove&& other) noexcept(false) : out(other.out) {}
  void operator()() const { ++*out; }
  int* out;
};

TEST(Task, OverAlignedAndThrowingMoveCallablesGoToTheHeap) {
  int value = 0;
  Task aligned = OverAligned{&value};
  Task throwing = ThrowingMove(&value);
  EXPECT_FALSE(aligned.IsInline());
  EXPECT_FALSE(throwing.IsInline());
  aligned();
  throwing();
  EXPECT_EQ(value, 2);
}

TEST(Task, MoveOnlyCaptureWorks) {
  int seen = 0;
  Task task = [p = std::make_unique<int>(42), &seen] { seen = *p; };
  Task moved = std::move(task);
  moved();
  EXPECT_EQ(seen, 42);
}

// Moving a task neither runs nor destroys the capture; the moved-from task is empty. Reset
// destroys the capture at once. Checked for inline and heap storage.
template <std::size_t kPadding>
void CheckMoveAndReset(bool expect_inline) {
  auto sentinel = std::make_shared<int>(7);
  std::weak_ptr<int> watch = sentinel;
  int seen = 0;
  std::array<char, kPadding> padding{};
  Task task = [s = std::move(sentinel), &seen, padding] { seen = *s + padding[0]; };
  EXPECT_EQ(task.IsInline(), expect_inline);
  Task moved = std::move(task);
  EXPECT_FALSE(task);  // NOLINT(bugprone-use-after-move): moved-from is specified empty
  EXPECT_EQ(moved.IsInline(), expect_inline);
  EXPECT_FALSE(watch.expired());
  moved();
  EXPECT_EQ(seen, 7);
  EXPECT_FALSE(watch.expired());
  moved.Reset();
  EXPECT_FALSE(moved);
  EXPECT_TRUE(watch.expired());
}

TEST(Task, MoveKeepsAndResetDestroysTheCaptureInline) {
  CheckMoveAndReset<8>(true);
}

TEST(Task, MoveKeepsAndResetDestroysTheCaptureOnTheHeap) {
  CheckMoveAndReset<64>(false);
}

TEST(Task, AssignmentAndDestructionDestroyCaptures) {
  auto first = std::make_shared<int>(1);
  auto second = std::make_shared<int>(2);
  std::weak_ptr<int> first_watch = first;
  std::weak_ptr<int> second_watch = second;
  {
    Task task = [s = std::move(first)] { (void)*s; };
    task = [s = std::move(second)] { (void)*s; };
    EXPECT_TRUE(first_watch.expired());  // the previous callable went with the assignment
    EXPECT_FALSE(second_watch.expired());
  }
  EXPECT_TRUE(second_watch.expired());  // the destructor destroyed the current one
}

// -----------------------------------------------------------------------------
// EXE01-EXE08
// -----------------------------------------------------------------------------

TEST(ThreadPool, EXE01_SizeZeroPoolThatCannotGrowAcceptsATask) {
  RecordingObserver observer;
  LogCapture log;  // the pool discards the task, with a log line, when it goes
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  std::atomic<bool> ran{false};
  {
    Ref<ThreadPool> pool = ThreadPool::Create({.name = "exe01", .observer = &observer});
    EXPECT_TRUE(pool->Push([s = std::move(sentinel), &ran] { ran = true; }));
    EXPECT_THAT(observer.Pushes(), ElementsAre(true));
    EXPECT_EQ(observer.LastState(), (PoolState{0, 0}));
    EXPECT_EQ(pool->ActiveCount(), 0u);
    EXPECT_EQ(pool->IdleCount(), 0u);
    EXPECT_EQ(pool->QueueSize(), 1u);
    EXPECT_EQ(observer.EmptiedCount(), 0u);  // nothing can run it
  }
  EXPECT_FALSE(ran.load());
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(HasRecordAtLeast(log, LogLevel::kWarning)) << log.Text();
}

TEST(ThreadPool, EXE02_InitialSizeThreeGivesThreeIdleThreads) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 3, .observer = &observer});
  EXPECT_TRUE(observer.WaitForState(0, 3)) << observer.LastState();
  EXPECT_EQ(pool->ActiveCount(), 0u);
  EXPECT_EQ(pool->IdleCount(), 3u);
}

TEST(ThreadPool, EXE03_GrowingAndShrinkingAnEmptyPool) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.observer = &observer});
  pool->SetSize(1);
  EXPECT_TRUE(observer.WaitForState(0, 1)) << observer.LastState();
  pool->SetSize(3);
  EXPECT_TRUE(observer.WaitForState(0, 3)) << observer.LastState();
  pool->SetSize(2);
  EXPECT_TRUE(observer.WaitForState(0, 2)) << observer.LastState();
  EXPECT_EQ(pool->ActiveCount(), 0u);
  EXPECT_EQ(pool->IdleCount(), 2u);
}

TEST(ThreadPool, EXE04_IdleTimeoutReturnsThePoolToEmpty) {
  RecordingObserver observer;
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create({.idle_timeout = 1s,  // the case's value
                                             .observer = &observer,
                                             .thread_end = threads.OnEnd()});
  pool->SetSize(1);
  EXPECT_TRUE(WaitUntil([&] { return observer.Saw(PoolState{0, 1}); }));
  EXPECT_TRUE(observer.WaitForState(0, 0)) << observer.LastState();
  EXPECT_TRUE(WaitUntil([&] { return threads.ended.load() == 1; }));
  EXPECT_EQ(pool->ActiveCount() + pool->IdleCount(), 0u);
}

// A thread leaving the pool runs thread_end after it left: a task processor on the same pool
// that the hook pushes to runs its task on a thread still there (the leaving thread's run-next
// slot, which the next thread started may take over, is not where it goes).
TEST(ThreadPool, AThreadEndHookThatPushesToThePoolHasItsTaskRun) {
  std::atomic<bool> ran{false};
  Ref<TaskProcessor> processor;
  std::atomic<bool> pushed{false};
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 2, .thread_end = [&] {
                                               if (!pushed.exchange(true))
                                                 processor->Push([&ran] { ran = true; });
                                             }});
  processor = TaskProcessor::Create({.pool = pool});
  pool->SetSize(1);  // one thread leaves and runs the hook
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_TRUE(pushed.load());
  processor = nullptr;
  pool->Shutdown();
}

TEST(ThreadPool, EXE05_PushThenGrowRunsTheTask) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.observer = &observer});
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([&ran] { ran = true; }));
  pool->SetSize(1);
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_TRUE(observer.WaitForEmptied());
  EXPECT_TRUE(observer.WaitForState(0, 1)) << observer.LastState();
}

TEST(ThreadPool, EXE05_GrowThenPushRunsTheTask) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.observer = &observer});
  pool->SetSize(1);
  ASSERT_TRUE(observer.WaitForState(0, 1));
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([&ran] { ran = true; }));
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_TRUE(observer.WaitForEmptied());
  EXPECT_TRUE(observer.WaitForState(0, 1)) << observer.LastState();
}

TEST(ThreadPool, EXE05_OneIdleThreadRunsThreeTasksInOrder) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1, .observer = &observer});
  ASSERT_TRUE(observer.WaitForState(0, 1));
  std::mutex mu;
  std::vector<int> order;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(pool->Push([&mu, &order, i] {
      std::lock_guard lock(mu);
      order.push_back(i);
    }));
  }
  EXPECT_TRUE(WaitUntil([&] {
    std::lock_guard lock(mu);
    return order.size() == 3;
  }));
  {
    std::lock_guard lock(mu);
    EXPECT_THAT(order, ElementsAre(0, 1, 2));
  }
  EXPECT_TRUE(observer.WaitForEmptied());
  EXPECT_TRUE(observer.WaitForState(0, 1)) << observer.LastState();
}

TEST(ThreadPool, EXE06_AutoIncrementGrowsByItsStepOnce) {
  RecordingObserver observer;
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create(
      {.auto_increment = 3, .observer = &observer, .thread_start = threads.OnStart()});
  std::atomic<int> ran{0};
  ASSERT_TRUE(pool->Push([&ran] { ran.fetch_add(1); }));
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == 1; }));
  EXPECT_TRUE(observer.WaitForState(0, 3)) << observer.LastState();
  for (int i = 0; i < 3; ++i) ASSERT_TRUE(pool->Push([&ran] { ran.fetch_add(1); }));
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == 4; }));
  EXPECT_TRUE(observer.WaitForState(0, 3)) << observer.LastState();
  EXPECT_EQ(observer.MaxThreads(), 3u);
  // The start hook runs on the new thread, possibly after the state was reported.
  EXPECT_TRUE(WaitUntil([&] { return threads.started.load() == 3; }));
}

TEST(ThreadPool, EXE06_AutoIncrementStopsAtTheMaximum) {
  RecordingObserver observer;
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create({.max_size = 2,
                                             .auto_increment = 3,
                                             .observer = &observer,
                                             .thread_start = threads.OnStart()});
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([&ran] { ran = true; }));
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_TRUE(observer.WaitForState(0, 2)) << observer.LastState();
  EXPECT_EQ(observer.MaxThreads(), 2u);
  // The start hook runs on the new thread, possibly after the state was reported.
  EXPECT_TRUE(WaitUntil([&] { return threads.started.load() == 2; }));
}

TEST(ThreadPool, EXE07_AnIdleThreadWakesForANewTask) {
  RecordingObserver observer;
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create(
      {.initial_size = 1, .observer = &observer, .thread_start = threads.OnStart()});
  ASSERT_TRUE(observer.WaitForState(0, 1));
  std::atomic<int> ran{0};
  std::thread::id first;
  std::thread::id second;
  ASSERT_TRUE(pool->Push([&] {
    first = std::this_thread::get_id();
    ran.fetch_add(1);
  }));
  ASSERT_TRUE(WaitUntil([&] { return ran.load() == 1; }));
  ASSERT_TRUE(observer.WaitForState(0, 1));
  const std::size_t reports_before = observer.StateCount();
  ASSERT_TRUE(pool->Push([&] {
    second = std::this_thread::get_id();
    ran.fetch_add(1);
  }));
  ASSERT_TRUE(WaitUntil([&] { return ran.load() == 2; }));
  EXPECT_TRUE(observer.WaitForState(0, 1)) << observer.LastState();
  EXPECT_TRUE(observer.Saw(PoolState{1, 0}, reports_before));  // it was reactivated
  EXPECT_EQ(first, second);
  EXPECT_EQ(threads.started.load(), 1);
}

TEST(ThreadPool, EXE08_DistributionAndShrinkingWhileTasksRun) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.observer = &observer});
  Gate gate;
  std::mutex mu;
  std::set<std::thread::id> runners;
  std::atomic<int> done{0};
  for (int i = 0; i < 2; ++i) {
    ASSERT_TRUE(pool->Push([&, w = gate.waiter()] {
      {
        std::lock_guard lock(mu);
        runners.insert(std::this_thread::get_id());
      }
      w.Wait();
      done.fetch_add(1);
    }));
  }
  pool->SetSize(2);
  ASSERT_TRUE(gate.WaitForArrivals(2));
  EXPECT_TRUE(observer.WaitForState(2, 0)) << observer.LastState();
  {
    std::lock_guard lock(mu);
    EXPECT_EQ(runners.size(), 2u);  // each task on its own thread
  }
  pool->SetSize(4);
  EXPECT_TRUE(observer.WaitForState(2, 2)) << observer.LastState();
  pool->SetSize(1);
  EXPECT_TRUE(observer.WaitForState(1, 0)) << observer.LastState();
  EXPECT_EQ(pool->ActiveCount(), 1u);
  EXPECT_EQ(pool->IdleCount(), 0u);
  EXPECT_EQ(done.load(), 0);
  gate.Open();
  EXPECT_TRUE(WaitUntil([&] { return done.load() == 2; }));  // both still complete
  EXPECT_TRUE(observer.WaitForState(0, 1)) << observer.LastState();
}

// -----------------------------------------------------------------------------
// Observer, misuse, shutdown, hooks
// -----------------------------------------------------------------------------

TEST(ThreadPool, ObserverIsToldWhetherTheQueueWasEmpty) {
  RecordingObserver observer;
  LogCapture log;  // the unrun tasks are discarded with a log line
  Ref<ThreadPool> pool = ThreadPool::Create({.observer = &observer});
  ASSERT_TRUE(pool->Push([] {}));
  ASSERT_TRUE(pool->Push([] {}));
  EXPECT_THAT(observer.Pushes(), ElementsAre(true, false));
  EXPECT_EQ(pool->QueueSize(), 2u);
}

TEST(ThreadPool, PushingAnEmptyTaskIsMisuse) {
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  PLEXUS_EXPECT_MISUSE_HERE(pool->Push(Task{}));
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  EXPECT_FALSE(pool->Push(Task{}));
  EXPECT_FALSE(pool->Push(nullptr));
  EXPECT_EQ(pool->QueueSize(), 0u);
}

TEST(ThreadPool, PushingToAShutDownPoolIsMisuseAndDestroysTheTask) {
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  pool->Shutdown();
  EXPECT_TRUE(pool->IsShutDown());
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  std::atomic<bool> ran{false};
  PLEXUS_EXPECT_MISUSE_HERE(pool->Push([s = sentinel, &ran] { ran = true; }));
  sentinel.reset();
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  std::weak_ptr<int> second_watch;
  {
    auto second = std::make_shared<int>(0);
    second_watch = second;
    EXPECT_FALSE(pool->Push([s = std::move(second), &ran] { ran = true; }));
  }
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(second_watch.expired());
  EXPECT_FALSE(ran.load());
}

TEST(ThreadPool, NegativeSizeIsMisuse) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 2, .observer = &observer});
  ASSERT_TRUE(observer.WaitForState(0, 2));
  PLEXUS_EXPECT_MISUSE_HERE(pool->SetSize(-1));
  EXPECT_TRUE(WaitForCounts(*pool, 0, 2));  // the size did not change
  EXPECT_EQ(observer.LastState(), (PoolState{0, 2}));
}

TEST(ThreadPool, ShutdownRunsWhatIsQueuedThenRefusesPushes) {
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create(
      {.initial_size = 1, .thread_start = threads.OnStart(), .thread_end = threads.OnEnd()});
  std::atomic<int> ran{0};
  {
    Gate gate;  // holds the only thread while the others queue
    ASSERT_TRUE(pool->Push([w = gate.waiter()] { w.Wait(); }));
    ASSERT_TRUE(gate.WaitForArrivals(1));
    for (int i = 0; i < 5; ++i) ASSERT_TRUE(pool->Push([&ran] { ran.fetch_add(1); }));
  }
  pool->Shutdown();
  EXPECT_EQ(ran.load(), 5);
  EXPECT_TRUE(pool->IsShutDown());
  EXPECT_EQ(pool->ActiveCount() + pool->IdleCount(), 0u);
  EXPECT_EQ(threads.started.load(), 1);
  EXPECT_EQ(threads.ended.load(), 1);  // joined
  pool->Shutdown();                    // idempotent
  EXPECT_TRUE(pool->IsShutDown());
  LogCapture log;
  ScopedMisuseAction action(MisuseAction::kLog);
  EXPECT_FALSE(pool->Push([&ran] { ran.fetch_add(1); }));
  EXPECT_EQ(ran.load(), 5);
}

TEST(ThreadPool, ShutdownWithoutThreadsDiscardsQueuedTasksWithALogLine) {
  LogCapture log;
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "threadless"});
  auto sentinel = std::make_shared<int>(0);
  std::weak_ptr<int> watch = sentinel;
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([s = std::move(sentinel), &ran] { ran = true; }));
  pool->Shutdown();
  EXPECT_FALSE(ran.load());
  EXPECT_TRUE(watch.expired());
  EXPECT_TRUE(HasRecordAtLeast(log, LogLevel::kWarning)) << log.Text();
}

TEST(ThreadPool, ShutdownFromAWorkerIsRefused) {
  ScopedMisuseAction action(MisuseAction::kThrow);
  LogCapture log;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1});
  ThreadPool* raw = pool.get();
  std::atomic<int> outcome{0};  // 1: refused with a UsageError, 2: returned
  ASSERT_TRUE(pool->Push([raw, &outcome] {
    try {
      raw->Shutdown();
      outcome = 2;
    } catch (const UsageError&) {
      outcome = 1;
    }
  }));
  ASSERT_TRUE(WaitUntil([&] { return outcome.load() != 0; }));
  EXPECT_EQ(outcome.load(), 1);
  EXPECT_FALSE(pool->IsShutDown());
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([&ran] { ran = true; }));  // still serving
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
}

TEST(ThreadPool, AThrowingTaskIsLoggedAndItsThreadKeepsServing) {
  LogCapture log;
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1, .thread_start = threads.OnStart()});
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([] { throw std::runtime_error("pool task failed"); }));
  ASSERT_TRUE(pool->Push([] { throw 42; }));
  ASSERT_TRUE(pool->Push([&ran] { ran = true; }));
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_TRUE(HasRecordAtLeast(log, LogLevel::kError)) << log.Text();
  EXPECT_EQ(threads.started.load(), 1);  // the same thread went on
  EXPECT_TRUE(WaitForCounts(*pool, 0, 1));
}

TEST(ThreadPool, AThreadLentToABlockedWorkerLeavesWhenTheWaitEnds) {
  RecordingObserver observer;
  Ref<ThreadPool> pool = ThreadPool::Create({.initial_size = 1, .observer = &observer});
  Ref<TaskProcessor> caller = TaskProcessor::Create({.pool = pool});
  Ref<TaskProcessor> target = TaskProcessor::Create({.pool = pool});
  auto result = std::make_shared<std::promise<bool>>();
  std::future<bool> returned = result->get_future();
  ASSERT_TRUE(caller->Push(
      [result, target_raw = target.get()] { result->set_value(target_raw->PushAndWait([] {})); }));
  if (!WaitFor(returned)) {
    plexus_test::Abandon(pool, caller, target);
    FAIL() << "PushAndWait from the only worker of the target's pool never returned";
  }
  EXPECT_TRUE(returned.get());
  // The pool grew by one for the wait, then went back to its one thread.
  EXPECT_EQ(observer.MaxThreads(), 2u);
  EXPECT_TRUE(observer.WaitForState(0, 1));
}

// The scheduler: a task processor made ready by a task runs next on that task's worker, and a
// task it displaces from there is stolen by an idle worker when that one is busy.

TEST(ThreadPool, ATaskProcessorMadeReadyByATaskRunsNextOnThatTasksWorker) {
  auto pool = ThreadPool::Create({.name = "run-next", .initial_size = 2});
  auto first = TaskProcessor::Create({.pool = pool});
  auto second = TaskProcessor::Create({.pool = pool});
  constexpr int kRounds = 200;
  std::atomic<int> same_thread{0};
  std::atomic<int> done{0};
  for (int i = 0; i < kRounds; ++i) {
    ASSERT_TRUE(first->Push([&, raw = second.get()] {
      const std::thread::id pusher = std::this_thread::get_id();
      raw->Push([&, pusher] {
        if (std::this_thread::get_id() == pusher) same_thread.fetch_add(1);
        done.fetch_add(1);
      });
    }));
    ASSERT_TRUE(WaitUntil([&] { return done.load() == i + 1; }));
  }
  // A pusher that does not block takes its hand-off back as soon as it returns. Only a pusher
  // that loses its CPU between the hand-off and its return for longer than the rescue delay
  // looks stuck to an idle worker, which then runs the hand-off itself: on a loaded machine a
  // few rounds may go so, never most of them.
  EXPECT_GT(same_thread.load(), kRounds / 2);
  EXPECT_EQ(pool->QueueSize(), 0u);
}

TEST(ThreadPool, WorkDisplacedFromTheRunNextSlotIsStolenWhileItsWorkerIsBusy) {
  auto pool = ThreadPool::Create({.name = "steal", .initial_size = 2});
  auto origin = TaskProcessor::Create({.pool = pool});
  auto stolen = TaskProcessor::Create({.pool = pool});
  auto next = TaskProcessor::Create({.pool = pool});
  std::atomic<bool> stolen_ran{false};
  std::thread::id origin_thread;
  std::thread::id stolen_thread;
  std::atomic<int> done{0};
  ASSERT_TRUE(origin->Push([&] {
    origin_thread = std::this_thread::get_id();
    // `stolen` takes the run-next slot, then `next` displaces it to this worker's run queue.
    stolen->Push([&] {
      stolen_thread = std::this_thread::get_id();
      stolen_ran.store(true);
      done.fetch_add(1);
    });
    next->Push([&] { done.fetch_add(1); });
    // This worker stays busy until the other one took the displaced turn: only a steal (after
    // a wake-up, should the other worker sleep) can end this wait.
    while (!stolen_ran.load()) std::this_thread::yield();
    done.fetch_add(1);
  }));
  ASSERT_TRUE(WaitUntil([&] { return done.load() == 3; }));
  EXPECT_NE(stolen_thread, origin_thread);
  // `next` runs on the origin's worker when its task returns, unless that task kept the worker
  // so long (the other worker slow to wake on a loaded machine) that `next` was rescued.
}

TEST(ThreadPool, ATaskBlockedOnAFutureOfItsHandOffHasTheRunNextSlotRescued) {
  auto pool = ThreadPool::Create({.name = "rescue-future", .initial_size = 2});
  auto waiter = TaskProcessor::Create({.pool = pool});
  auto handed = TaskProcessor::Create({.pool = pool});
  std::promise<std::thread::id> handed_ran;
  std::future<std::thread::id> handed_thread = handed_ran.get_future();
  std::promise<bool> result;
  auto rescued_elsewhere = result.get_future();
  ASSERT_TRUE(waiter->Push([&] {
    // `handed` lands in this worker's run-next slot; only the other worker can run it now.
    handed->Push([&] { handed_ran.set_value(std::this_thread::get_id()); });
    result.set_value(handed_thread.get() != std::this_thread::get_id());
  }));
  ASSERT_TRUE(WaitFor(rescued_elsewhere));
  EXPECT_TRUE(rescued_elsewhere.get());
}

TEST(ThreadPool, ATaskBlockedOnACondVarForItsHandOffHasTheRunNextSlotRescued) {
  auto pool = ThreadPool::Create({.name = "rescue-condvar", .initial_size = 2});
  auto waiter = TaskProcessor::Create({.pool = pool});
  auto handed = TaskProcessor::Create({.pool = pool});
  Mutex mu;
  CondVar cv;
  bool handed_ran = false;
  std::promise<void> result;
  auto done = result.get_future();
  ASSERT_TRUE(waiter->Push([&] {
    handed->Push([&] {
      MutexLock lock(mu);
      handed_ran = true;
      cv.NotifyAll();
    });
    {
      MutexLock lock(mu);
      while (!handed_ran) cv.Wait(mu);
    }
    result.set_value();
  }));
  ASSERT_TRUE(WaitFor(done));
}

TEST(ThreadPool, AGrowablePoolRescuesAHandOffWhenEveryWorkerIsBusy) {
  // One thread, growing on demand: the hand-off must reach a thread that can run it.
  auto pool = ThreadPool::Create({.name = "rescue-grow", .initial_size = 1, .auto_increment = 1});
  auto waiter = TaskProcessor::Create({.pool = pool});
  auto handed = TaskProcessor::Create({.pool = pool});
  std::promise<void> handed_ran;
  std::future<void> handed_done = handed_ran.get_future();
  std::promise<void> result;
  auto done = result.get_future();
  ASSERT_TRUE(waiter->Push([&] {
    handed->Push([&] { handed_ran.set_value(); });
    handed_done.wait();
    result.set_value();
  }));
  ASSERT_TRUE(WaitFor(done));
}

TEST(ThreadPool, PushAndWaitFromAWorkerHandsItsRunNextSlotToTheOthers) {
  // A one-thread pool: the turn pushed to the run-next slot of the waiting worker must move to
  // the global queue, where the thread lent for the wait runs it.
  auto pool = ThreadPool::Create({.name = "blocked-run-next", .initial_size = 1});
  auto outer = TaskProcessor::Create({.pool = pool});
  auto made_ready = TaskProcessor::Create({.pool = pool});
  auto waited = TaskProcessor::Create({.pool = pool});
  std::atomic<bool> made_ready_ran{false};
  std::promise<bool> result;
  auto future = result.get_future();
  ASSERT_TRUE(outer->Push([&] {
    made_ready->Push([&] { made_ready_ran.store(true); });
    // Waits for a task that itself waits for the turn in the run-next slot.
    result.set_value(waited->PushAndWait([&] {
      while (!made_ready_ran.load()) std::this_thread::yield();
    }));
  }));
  ASSERT_TRUE(WaitFor(future));
  EXPECT_TRUE(future.get());
  EXPECT_TRUE(made_ready_ran.load());
}

TEST(ThreadPool, HooksRunOncePerWorkerThread) {
  ThreadCounter threads;
  Ref<ThreadPool> pool = ThreadPool::Create(
      {.initial_size = 2, .thread_start = threads.OnStart(), .thread_end = threads.OnEnd()});
  EXPECT_TRUE(WaitUntil([&] { return threads.started.load() == 2; }));
  pool.Reset();  // shuts down and joins
  EXPECT_EQ(threads.started.load(), 2);
  EXPECT_EQ(threads.ended.load(), 2);
}

TEST(ThreadPool, IsWorkerThreadAndName) {
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "media", .initial_size = 1});
  EXPECT_EQ(pool->Name(), "media");
  EXPECT_FALSE(pool->IsWorkerThread());
  std::atomic<int> inside{0};  // 1: worker, 2: not a worker
  ASSERT_TRUE(pool->Push([&] { inside = pool->IsWorkerThread() ? 1 : 2; }));
  ASSERT_TRUE(WaitUntil([&] { return inside.load() != 0; }));
  EXPECT_EQ(inside.load(), 1);
}

TEST(ThreadPool, SharedPoolHasAtLeastTwoThreadsAndRunsTasks) {
  ThreadPool& shared = ThreadPool::Shared();
  EXPECT_EQ(&shared, &ThreadPool::Shared());
  // Two reads (active, then idle) may straddle a worker's transition: retry until consistent.
  EXPECT_TRUE(WaitUntil([&] { return shared.ActiveCount() + shared.IdleCount() >= 2; }));
  EXPECT_FALSE(shared.IsShutDown());
  std::atomic<int> inside{0};
  ASSERT_TRUE(shared.Push([&] { inside = ThreadPool::Shared().IsWorkerThread() ? 1 : 2; }));
  ASSERT_TRUE(WaitUntil([&] { return inside.load() != 0; }));
  EXPECT_EQ(inside.load(), 1);
}

}  // namespace
}  // namespace plexus
