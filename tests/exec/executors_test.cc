// The executor acceptance cases (EXE01-EXE23, the executors' contract case by case): ThreadPool
// sizing and observer, TaskProcessor ordering, exclusion, lifecycle, alerts and statistics,
// TimerHeap firing, cancelling and group references. No sleeps: every wait is on a condition
// with a bound that only a failure reaches.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <latch>
#include <memory>
#include <mutex>
#include <random>
#include <thread>
#include <utility>
#include <vector>

#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/core/config.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/exec/timer_heap.h"
#include "plexus/sync/group_lock.h"

namespace plexus {
namespace {

using namespace std::chrono_literals;
using plexus_test::WaitUntil;

constexpr int Scaled(int n) {
  return (kSanitizeThread || kSanitizeAddress) ? n / 10 : n;
}

// Records what a pool tells its observer.
class RecordingObserver : public ThreadPoolObserver {
 public:
  void OnTaskPushed(bool queue_was_empty) override {
    std::lock_guard lock(mu_);
    pushes_.push_back(queue_was_empty);
  }
  void OnQueueEmptied() override { emptied_.fetch_add(1); }
  void OnStateChanged(std::size_t active, std::size_t idle) override {
    std::lock_guard lock(mu_);
    state_ = {active, idle};
  }
  std::pair<std::size_t, std::size_t> State() const {
    std::lock_guard lock(mu_);
    return state_;
  }
  bool WaitForState(std::size_t active, std::size_t idle) const {
    return WaitUntil([&] { return State() == std::make_pair(active, idle); });
  }
  std::vector<bool> Pushes() const {
    std::lock_guard lock(mu_);
    return pushes_;
  }
  int Emptied() const { return emptied_.load(); }

 private:
  mutable std::mutex mu_;
  std::vector<bool> pushes_;
  std::pair<std::size_t, std::size_t> state_{0, 0};
  std::atomic<int> emptied_{0};
};

// A gate tasks block on until the test opens it; opened by the destructor on every path.
class Gate {
 public:
  ~Gate() { Open(); }
  void Open() { open_.store(true); }
  void Wait() const {
    while (!open_.load()) std::this_thread::yield();
  }

 private:
  std::atomic<bool> open_{false};
};

// -----------------------------------------------------------------------------
// ThreadPool
// -----------------------------------------------------------------------------

TEST(ThreadPool, EXE01_SizeZeroPoolAcceptsATask) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.observer = &observer});
  std::atomic<bool> ran{false};
  ASSERT_TRUE(pool->Push([&] { ran = true; }));
  EXPECT_EQ(observer.Pushes(), std::vector<bool>{true});
  EXPECT_EQ(pool->ActiveCount(), 0u);
  EXPECT_EQ(pool->IdleCount(), 0u);
  EXPECT_EQ(observer.Emptied(), 0);
  EXPECT_EQ(pool->QueueSize(), 1u);
  pool->SetSize(1);  // let it run, so the test ends clean
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
}

TEST(ThreadPool, EXE02_InitialSizeThreeIsThreeIdle) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.initial_size = 3, .observer = &observer});
  EXPECT_TRUE(observer.WaitForState(0, 3));
  EXPECT_EQ(pool->IdleCount(), 3u);
}

TEST(ThreadPool, EXE03_GrowAndShrink) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.observer = &observer});
  pool->SetSize(1);
  EXPECT_TRUE(observer.WaitForState(0, 1));
  pool->SetSize(3);
  EXPECT_TRUE(observer.WaitForState(0, 3));
  pool->SetSize(2);
  EXPECT_TRUE(observer.WaitForState(0, 2));
  EXPECT_TRUE(WaitUntil([&] { return pool->IdleCount() == 2; }));
}

TEST(ThreadPool, EXE04_IdleTimeoutReturnsToEmpty) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.idle_timeout = 100ms, .observer = &observer});
  pool->SetSize(1);
  EXPECT_TRUE(observer.WaitForState(0, 0));
  EXPECT_TRUE(WaitUntil([&] { return pool->IdleCount() == 0; }));
}

TEST(ThreadPool, EXE05_PushThenGrowAndGrowThenPush) {
  {
    RecordingObserver observer;
    auto pool = ThreadPool::Create({.observer = &observer});
    std::atomic<int> ran{0};
    pool->Push([&] { ran++; });
    pool->SetSize(1);
    EXPECT_TRUE(WaitUntil([&] { return ran == 1 && observer.Emptied() >= 1; }));
    EXPECT_TRUE(observer.WaitForState(0, 1));
  }
  {
    RecordingObserver observer;
    auto pool = ThreadPool::Create({.observer = &observer});
    pool->SetSize(1);
    std::mutex mu;
    std::vector<int> order;
    for (int i = 0; i < 3; ++i) {
      pool->Push([&, i] {
        std::lock_guard lock(mu);
        order.push_back(i);
      });
    }
    EXPECT_TRUE(WaitUntil([&] {
      std::lock_guard lock(mu);
      return order.size() == 3;
    }));
    EXPECT_EQ(order, (std::vector<int>{0, 1, 2}));
    EXPECT_TRUE(WaitUntil([&] { return observer.Emptied() >= 1; }));
    EXPECT_TRUE(observer.WaitForState(0, 1));
  }
}

TEST(ThreadPool, EXE06_AutoIncrement) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.auto_increment = 3, .observer = &observer});
  std::atomic<int> ran{0};
  pool->Push([&] { ran++; });
  EXPECT_TRUE(WaitUntil([&] { return ran == 1; }));
  EXPECT_TRUE(observer.WaitForState(0, 3));
  for (int i = 0; i < 3; ++i) {
    pool->Push([&] { ran++; });
    EXPECT_TRUE(WaitUntil([&] { return ran == 2 + i; }));
  }
  EXPECT_TRUE(observer.WaitForState(0, 3));

  RecordingObserver capped_observer;
  auto capped =
      ThreadPool::Create({.max_size = 2, .auto_increment = 3, .observer = &capped_observer});
  capped->Push([&] { ran++; });
  EXPECT_TRUE(capped_observer.WaitForState(0, 2));
}

TEST(ThreadPool, EXE07_IdleThreadWakesForNewTask) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.initial_size = 1, .observer = &observer});
  EXPECT_TRUE(observer.WaitForState(0, 1));
  std::atomic<bool> ran{false};
  pool->Push([&] { ran = true; });
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_TRUE(observer.WaitForState(0, 1));
}

TEST(ThreadPool, EXE08_DistributionAndShrinkWhileRunning) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.observer = &observer});
  Gate gate;
  std::atomic<int> started{0};
  std::atomic<int> finished{0};
  for (int i = 0; i < 2; ++i) {
    pool->Push([&] {
      started++;
      gate.Wait();
      finished++;
    });
  }
  pool->SetSize(2);
  EXPECT_TRUE(WaitUntil([&] { return started == 2; }));
  EXPECT_TRUE(observer.WaitForState(2, 0));
  pool->SetSize(4);
  EXPECT_TRUE(observer.WaitForState(2, 2));
  pool->SetSize(1);
  EXPECT_TRUE(observer.WaitForState(1, 0));
  gate.Open();
  EXPECT_TRUE(WaitUntil([&] { return finished == 2; }));
  EXPECT_TRUE(observer.WaitForState(0, 1));
}

TEST(ThreadPool, BadInputIsReported) {
  auto pool = ThreadPool::Create({.initial_size = 1});
  PLEXUS_EXPECT_MISUSE_HERE(pool->Push(Task()));
  PLEXUS_EXPECT_MISUSE_HERE(pool->SetSize(-1));
  pool->Shutdown();
  PLEXUS_EXPECT_MISUSE_HERE(pool->Push([] {}));
}

TEST(ThreadPool, AThrowingTaskIsLoggedAndTheThreadKeepsServing) {
  plexus_test::LogCapture log;
  auto pool = ThreadPool::Create({.initial_size = 1});
  std::atomic<bool> ran{false};
  pool->Push([] { throw std::runtime_error("boom"); });
  pool->Push([&] { ran = true; });
  EXPECT_TRUE(WaitUntil([&] { return ran.load(); }));
  EXPECT_NE(log.Text().find("boom"), std::string::npos);
}

// -----------------------------------------------------------------------------
// TaskProcessor
// -----------------------------------------------------------------------------

TEST(TaskProcessor, EXE09_TaskRunsAndSeesItsProcessor) {
  auto tp = TaskProcessor::Create({.name = "test/exe09"});
  EXPECT_EQ(TaskProcessor::Current(), nullptr);
  std::atomic<TaskProcessor*> seen{nullptr};
  EXPECT_TRUE(tp->PushAndWait([&] { seen = TaskProcessor::Current(); }));
  EXPECT_EQ(seen.load(), tp.get());
  EXPECT_EQ(TaskProcessor::Find("test/exe09"), tp);
}

TEST(TaskProcessor, EXE10_FifoUnderLoad) {
  auto tp = TaskProcessor::Create({.name = "test/exe10"});
  std::mt19937 rng(10);
  std::vector<std::uint32_t> pushed;
  std::vector<std::uint32_t> seen;  // written only by the serialized tasks
  const int n = 20000;
  for (int i = 0; i < n; ++i) {
    const std::uint32_t value = rng();
    pushed.push_back(value);
    tp->Push([&seen, value] { seen.push_back(value); });
  }
  EXPECT_TRUE(tp->PushAndWait([] {}));
  EXPECT_EQ(seen, pushed);
}

TEST(TaskProcessor, EXE11_OneAtATime) {
  auto pool = ThreadPool::Create({.initial_size = 2});
  auto tp = TaskProcessor::Create({.name = "test/exe11", .pool = pool});
  Gate gate;
  std::atomic<bool> first_running{false};
  std::atomic<bool> second_ran{false};
  std::atomic<bool> pool_task_ran{false};
  tp->Push([&] {
    first_running = true;
    gate.Wait();
  });
  tp->Push([&] { second_ran = true; });
  ASSERT_TRUE(WaitUntil([&] { return first_running.load(); }));
  pool->Push([&] { pool_task_ran = true; });
  EXPECT_TRUE(WaitUntil([&] { return pool_task_ran.load(); }));
  EXPECT_FALSE(second_ran.load());
  gate.Open();
  EXPECT_TRUE(WaitUntil([&] { return second_ran.load(); }));
}

TEST(TaskProcessor, EXE12_NamesAreUnique) {
  auto first = TaskProcessor::Create({.name = "test/exe12"});
  Ref<TaskProcessor> second;
  PLEXUS_EXPECT_MISUSE_HERE(second = TaskProcessor::Create({.name = "test/exe12"}));
  EXPECT_FALSE(second);
  first.Reset();
  EXPECT_FALSE(TaskProcessor::Find("test/exe12"));
  EXPECT_TRUE(TaskProcessor::Create({.name = "test/exe12"}));  // free again
}

TEST(TaskProcessor, EXE13_PushAndWaitAndInlineFromItsOwnTask) {
  auto tp = TaskProcessor::Create({.name = "test/exe13"});
  std::atomic<int> ran{0};
  EXPECT_TRUE(tp->PushAndWait([&] { ran++; }));
  EXPECT_EQ(ran.load(), 1);
  bool inner_ran_inline = false;
  EXPECT_TRUE(tp->PushAndWait([&] {
    tp->PushAndWait([&] { inner_ran_inline = true; });
    EXPECT_TRUE(inner_ran_inline);
  }));
  EXPECT_TRUE(inner_ran_inline);
}

TEST(TaskProcessor, EXE14_SuspendIsCounted) {
  auto tp = TaskProcessor::Create({.name = "test/exe14"});
  std::vector<int> order;
  std::atomic<int> count{0};
  tp->Suspend();
  tp->Suspend();
  for (int i = 0; i < 5; ++i) {
    tp->Push([&, i] {
      order.push_back(i);
      count++;
    });
  }
  tp->Resume();
  EXPECT_TRUE(tp->IsSuspended());
  EXPECT_EQ(count.load(), 0);
  EXPECT_EQ(tp->Depth(), 5u);
  tp->Resume();
  EXPECT_TRUE(WaitUntil([&] { return count == 5; }));
  EXPECT_EQ(order, (std::vector<int>{0, 1, 2, 3, 4}));
  PLEXUS_EXPECT_MISUSE_HERE(tp->Resume());
}

TEST(TaskProcessor, EXE15_AlertsPerProcessorSubsystemAndProcess) {
  std::mutex mu;
  std::vector<TaskProcessorAlert> events;
  std::vector<std::string> names;
  auto previous = SetTaskProcessorAlertHandler([&](const TaskProcessorAlert& a) {
    std::lock_guard lock(mu);
    events.push_back(a);
    names.emplace_back(a.processor);
  });
  const std::size_t process_before = TaskProcessorProcessAlertCount();
  {
    auto tp = TaskProcessor::Create({.name = "exe15sub/tp", .high_water = 6, .low_water = 3});
    std::atomic<int> done{0};
    tp->Suspend();
    for (int i = 0; i < 5; ++i) tp->Push([&] { done++; });
    EXPECT_FALSE(tp->IsAlerted());
    EXPECT_EQ(TaskProcessorSubsystemAlertCount("exe15sub"), 0u);
    tp->Push([&] { done++; });
    tp->Push([&] { done++; });  // 7 waiting
    EXPECT_TRUE(tp->IsAlerted());
    EXPECT_EQ(TaskProcessorSubsystemAlertCount("exe15sub"), 1u);
    EXPECT_EQ(TaskProcessorProcessAlertCount(), process_before + 1);
    // Let the tasks run one by one: the alert holds above 3 and clears at 3.
    tp->Resume();
    EXPECT_TRUE(WaitUntil([&] { return done == 7; }));
    EXPECT_FALSE(tp->IsAlerted());
    EXPECT_EQ(TaskProcessorSubsystemAlertCount("exe15sub"), 0u);
    std::lock_guard lock(mu);
    ASSERT_EQ(events.size(), 2u);
    EXPECT_TRUE(events[0].raised);
    EXPECT_EQ(events[0].depth, 6u);
    EXPECT_EQ(events[0].subsystem_alerts, 1u);
    EXPECT_FALSE(events[1].raised);
    EXPECT_LE(events[1].depth, 3u);
    EXPECT_EQ(names[0], "exe15sub/tp");
  }
  SetTaskProcessorAlertHandler(std::move(previous));
  EXPECT_EQ(TaskProcessorProcessAlertCount(), process_before);
}

TEST(TaskProcessor, EXE16_StatisticsAndListing) {
  auto tp = TaskProcessor::Create({.name = "test/exe16"});
  Gate gate;
  std::atomic<bool> running{false};
  tp->Push([] {});
  tp->Push([&] {
    running = true;
    gate.Wait();
  });
  tp->Push([] {});
  ASSERT_TRUE(WaitUntil([&] { return running.load(); }));
  TaskProcessorStats s = tp->Stats();
  EXPECT_EQ(s.processed, 1u);
  EXPECT_EQ(s.depth, 1u);
  EXPECT_GE(s.max_depth, 1u);
  EXPECT_TRUE(s.executing);
  EXPECT_NE(TaskProcessor::ListText().find("test/exe16"), std::string::npos);
  gate.Open();
  EXPECT_TRUE(tp->PushAndWait([] {}));
  s = tp->Stats();
  EXPECT_EQ(s.processed, 4u);
  EXPECT_EQ(s.depth, 0u);
}

TEST(TaskProcessor, EXE17_DroppingTheLastHandleDrains) {
  std::atomic<int> ran{0};
  Gate gate;
  auto tp = TaskProcessor::Create({.name = "test/exe17"});
  std::atomic<bool> running{false};
  tp->Push([&] {
    running = true;
    gate.Wait();
    ran++;
  });
  tp->Push([&] { ran++; });
  ASSERT_TRUE(WaitUntil([&] { return running.load(); }));
  std::thread opener([&] { gate.Open(); });
  tp.Reset();  // returns after both ran
  EXPECT_EQ(ran.load(), 2);
  opener.join();
}

TEST(TaskProcessor, EXE17_DiscardReportsWhatItDiscarded) {
  std::atomic<int> ran{0};
  Gate gate;
  auto tp = TaskProcessor::Create({.name = "test/exe17d"});
  std::atomic<bool> running{false};
  tp->Push([&] {
    running = true;
    gate.Wait();
    ran++;
  });
  tp->Push([&] { ran++; });
  tp->Push([&] { ran++; });
  ASSERT_TRUE(WaitUntil([&] { return running.load(); }));
  // Open the gate only once the shutdown is under way, so the two queued tasks are still
  // queued when it takes them.
  std::thread opener([&] {
    while (!tp->IsShutDown()) std::this_thread::yield();
    gate.Open();
  });
  EXPECT_EQ(tp->Shutdown(ShutdownMode::kDiscard), 2u);
  EXPECT_EQ(ran.load(), 1);
  opener.join();
  PLEXUS_EXPECT_MISUSE_HERE(tp->Push([] {}));
  EXPECT_EQ(tp->Stats().discarded, 2u);
}

TEST(TaskProcessor, EXE18_ManyIdleProcessorsNeedNoThreads) {
  RecordingObserver observer;
  auto pool = ThreadPool::Create({.initial_size = 2, .observer = &observer});
  const int n = Scaled(100000);
  std::vector<Ref<TaskProcessor>> tps;
  tps.reserve(n);
  for (int i = 0; i < n; ++i) tps.push_back(TaskProcessor::Create({.pool = pool}));
  std::atomic<int> ran{0};
  for (auto& tp : tps) tp->Push([&] { ran++; });
  EXPECT_TRUE(WaitUntil([&] { return ran == n; }));
  // The observer's state is one consistent snapshot (two separate counts could straddle a
  // worker's transition); the pool still has its two threads, now idle.
  EXPECT_TRUE(observer.WaitForState(0, 2));
  tps.clear();
}

TEST(TaskProcessor, BadInputAndThrowingTasks) {
  plexus_test::LogCapture log;
  auto tp = TaskProcessor::Create({.name = "test/bad"});
  PLEXUS_EXPECT_MISUSE_HERE(tp->Push(Task()));
  PLEXUS_EXPECT_MISUSE_HERE(tp->SetAlertLevels(5, 4));
  tp->Push([] { throw std::runtime_error("kaboom"); });
  std::atomic<bool> after{false};
  EXPECT_TRUE(tp->PushAndWait([&] { after = true; }));
  EXPECT_TRUE(after.load());
  EXPECT_EQ(tp->Stats().failed, 1u);
  EXPECT_NE(log.Text().find("kaboom"), std::string::npos);
}

TEST(TaskProcessor, BatchLimitYieldsThePoolThread) {
  auto pool = ThreadPool::Create({.initial_size = 1});
  auto a = TaskProcessor::Create({.pool = pool, .batch_limit = 4});
  auto b = TaskProcessor::Create({.pool = pool, .batch_limit = 4});
  Gate gate;
  std::atomic<bool> blocked{false};
  pool->Push([&] {
    blocked = true;
    gate.Wait();
  });
  ASSERT_TRUE(WaitUntil([&] { return blocked.load(); }));
  std::mutex mu;
  std::vector<char> order;
  for (int i = 0; i < 20; ++i) {
    a->Push([&] {
      std::lock_guard lock(mu);
      order.push_back('a');
    });
  }
  for (int i = 0; i < 20; ++i) {
    b->Push([&] {
      std::lock_guard lock(mu);
      order.push_back('b');
    });
  }
  gate.Open();
  EXPECT_TRUE(a->PushAndWait([] {}));
  EXPECT_TRUE(b->PushAndWait([] {}));
  std::lock_guard lock(mu);
  const auto first_b = std::find(order.begin(), order.end(), 'b');
  const auto last_a = std::find(order.rbegin(), order.rend(), 'a').base();
  EXPECT_LT(first_b, last_a);
}

TEST(TaskProcessor, LastReferenceDroppedFromItsOwnTask) {
  auto sentinel = std::make_shared<int>(1);
  std::weak_ptr<int> watch = sentinel;
  auto tp = TaskProcessor::Create({.name = "test/self-drop"});
  std::atomic<bool> done{false};
  Ref<TaskProcessor>* holder = new Ref<TaskProcessor>(std::move(tp));
  (*holder)->Push([holder, s = std::move(sentinel), &done] {
    delete holder;  // the last reference, from inside
    done = true;
  });
  EXPECT_TRUE(WaitUntil([&] { return done.load() && watch.expired(); }));
  EXPECT_TRUE(WaitUntil([] { return !TaskProcessor::Find("test/self-drop"); }));
}

TEST(TaskProcessor, DedicatedThreadIsNotASharedPoolWorker) {
  auto tp = TaskProcessor::Create({.name = "test/dedicated", .dedicated_thread = true});
  bool shared_worker = true;
  EXPECT_TRUE(tp->PushAndWait([&] { shared_worker = ThreadPool::Shared().IsWorkerThread(); }));
  EXPECT_FALSE(shared_worker);
}

TEST(TaskProcessor, PushAndWaitOnADiscardedTaskReturnsFalse) {
  auto tp = TaskProcessor::Create({.name = "test/paw-discard"});
  tp->Suspend();
  std::atomic<bool> result{true};
  std::atomic<bool> returned{false};
  std::thread waiter([&] {
    result = tp->PushAndWait([] {});
    returned = true;
  });
  ASSERT_TRUE(WaitUntil([&] { return tp->Depth() == 1; }));
  EXPECT_EQ(tp->Shutdown(ShutdownMode::kDiscard), 1u);
  waiter.join();
  EXPECT_TRUE(returned.load());
  EXPECT_FALSE(result.load());
}

// -----------------------------------------------------------------------------
// TimerHeap
// -----------------------------------------------------------------------------

TEST(TimerHeap, EXE19_FiresOnceAfterItsDelayOnItsExecutor) {
  auto heap = TimerHeap::Create();
  auto tp = TaskProcessor::Create({.name = "test/exe19"});
  std::atomic<int> fired{0};
  std::atomic<TaskProcessor*> on{nullptr};
  const auto start = MonotonicClock::now();
  std::atomic<std::int64_t> elapsed_ns{0};
  heap->Schedule(20ms,
                 [&] {
                   elapsed_ns = (MonotonicClock::now() - start).count();
                   on = TaskProcessor::Current();
                   fired++;
                 },
                 {.executor = tp});
  EXPECT_TRUE(WaitUntil([&] { return fired == 1; }));
  EXPECT_GE(elapsed_ns.load(), std::chrono::nanoseconds(20ms).count());
  EXPECT_EQ(on.load(), tp.get());
  EXPECT_TRUE(tp->PushAndWait([] {}));
  EXPECT_EQ(fired.load(), 1);
}

TEST(TimerHeap, EXE20_CancelAndCancelAndWait) {
  auto heap = TimerHeap::Create();
  std::atomic<int> fired{0};
  TimerId id = heap->Schedule(1h, [&] { fired++; });
  EXPECT_TRUE(heap->IsPending(id));
  EXPECT_TRUE(heap->Cancel(id));
  EXPECT_FALSE(heap->Cancel(id));

  TimerId quick = heap->Schedule(0ms, [&] { fired++; });
  EXPECT_TRUE(WaitUntil([&] { return fired == 1; }));
  EXPECT_TRUE(WaitUntil([&] { return !heap->IsPending(quick); }));
  EXPECT_FALSE(heap->Cancel(quick));

  Gate gate;
  std::atomic<bool> in_callback{false};
  std::atomic<bool> callback_done{false};
  TimerId slow = heap->Schedule(0ms, [&] {
    in_callback = true;
    gate.Wait();
    callback_done = true;
  });
  ASSERT_TRUE(WaitUntil([&] { return in_callback.load(); }));
  std::thread opener([&] { gate.Open(); });
  EXPECT_FALSE(heap->CancelAndWait(slow));
  EXPECT_TRUE(callback_done.load());
  opener.join();

  // From its own callback, CancelAndWait does not wait for itself.
  std::atomic<bool> self_done{false};
  auto self_id = std::make_shared<TimerId>();
  *self_id = heap->Schedule(5ms, [&, self_id] {
    EXPECT_FALSE(heap->CancelAndWait(*self_id));
    self_done = true;
  });
  EXPECT_TRUE(WaitUntil([&] { return self_done.load(); }));
}

void CountDestroy(void* counter) {
  static_cast<std::atomic<int>*>(counter)->fetch_add(1);
}

TEST(TimerHeap, EXE21_TimerHoldsItsGroup) {
  auto heap = TimerHeap::Create();
  std::atomic<int> destroyed{0};
  Ref<GroupLock> group = GroupLock::Create({.member = &destroyed, .handler = &CountDestroy});
  std::atomic<bool> fire{false};
  TimerId a = heap->Schedule(1h, [] {}, {.group = group});
  EXPECT_EQ(group->RefCount(), 2u);
  TimerId b = heap->Schedule(5ms, [&] { fire = true; }, {.group = group});
  EXPECT_EQ(group->RefCount(), 3u);
  GroupLock* raw = group.get();
  group.Reset();
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_TRUE(WaitUntil([&] { return !heap->IsPending(b) && fire.load(); }));
  EXPECT_TRUE(WaitUntil([&] { return raw->RefCount() == 1; }));
  EXPECT_EQ(destroyed.load(), 0);
  EXPECT_TRUE(heap->Cancel(a));  // the last holder
  EXPECT_EQ(destroyed.load(), 1);
}

TEST(TimerHeap, EXE22_ManyTimersFireInDeadlineOrder) {
  auto heap = TimerHeap::Create();
  const int n = Scaled(1000000);
  std::vector<std::pair<MonotonicClock::time_point, int>> fired;  // timer thread only
  fired.reserve(n);
  std::atomic<int> count{0};
  std::mt19937 rng(22);
  // Hold the timer thread in a first callback until every timer is scheduled, so that all of
  // them are due together and the order seen is the heap's, not the order of scheduling.
  Gate all_scheduled;
  std::atomic<bool> holding{false};
  heap->Schedule(0ms, [&] {
    holding = true;
    all_scheduled.Wait();
  });
  ASSERT_TRUE(WaitUntil([&] { return holding.load(); }));
  const auto base = MonotonicClock::now() + 1ms;
  for (int i = 0; i < n; ++i) {
    const auto deadline = base + std::chrono::microseconds(rng() % 50) * 1000;
    heap->ScheduleAt(deadline, [&fired, &count, deadline, i] {
      fired.emplace_back(deadline, i);
      count.fetch_add(1, std::memory_order_release);
    });
  }
  all_scheduled.Open();
  ASSERT_TRUE(WaitUntil([&] { return count.load(std::memory_order_acquire) == n; },
                        std::chrono::seconds(240)));
  ASSERT_EQ(fired.size(), static_cast<std::size_t>(n));
  EXPECT_TRUE(std::is_sorted(fired.begin(), fired.end()));
  EXPECT_EQ(heap->PendingCount(), 0u);
}

TEST(TimerHeap, EXE23_DumpListsPendingTimersWithTheirSourceLines) {
  auto heap = TimerHeap::Create();
  // clang-format off
  const int line = __LINE__; TimerId id = heap->Schedule(1h, [] {});
  // clang-format on
  const std::string dump = heap->Dump();
  EXPECT_TRUE(plexus_test::MentionsLocation(dump, __FILE__, line)) << dump;
  EXPECT_NE(dump.find("1 pending"), std::string::npos) << dump;
  EXPECT_TRUE(heap->Cancel(id));
}

TEST(TimerHeap, RescheduleAndForeignIds) {
  auto heap = TimerHeap::Create();
  auto other = TimerHeap::Create();
  std::atomic<bool> fired{false};
  TimerId id = heap->Schedule(1h, [&] { fired = true; });
  EXPECT_TRUE(heap->Reschedule(id, 1ms));
  EXPECT_TRUE(WaitUntil([&] { return fired.load(); }));
  EXPECT_FALSE(heap->Reschedule(id, 1ms));
  TimerId foreign = other->Schedule(1h, [] {});
  PLEXUS_EXPECT_MISUSE_HERE(heap->Cancel(foreign));
  PLEXUS_EXPECT_MISUSE_HERE(heap->CancelAndWait(foreign));
  PLEXUS_EXPECT_MISUSE_HERE(heap->Reschedule(foreign, 1ms));
  PLEXUS_EXPECT_MISUSE_HERE(heap->Schedule(1ms, Task()));
}

TEST(TimerHeap, ScopedTimerCancelsInItsDestructor) {
  auto heap = TimerHeap::Create();
  std::atomic<bool> fired{false};
  {
    ScopedTimer timer(heap);
    timer.Schedule(1h, [&] { fired = true; });
    EXPECT_TRUE(timer.IsPending());
  }
  EXPECT_EQ(heap->PendingCount(), 0u);
  EXPECT_FALSE(fired.load());
}

TEST(TimerHeap, DroppingTheHeapCancelsPendingTimersAndTheirGroups) {
  std::atomic<int> destroyed{0};
  Ref<GroupLock> group = GroupLock::Create({.member = &destroyed, .handler = &CountDestroy});
  auto heap = TimerHeap::Create();
  heap->Schedule(1h, [] {}, {.group = group});
  group.Reset();
  EXPECT_EQ(destroyed.load(), 0);
  heap.Reset();
  EXPECT_EQ(destroyed.load(), 1);
}

// -----------------------------------------------------------------------------
// Stress: the hard paths, raced
// -----------------------------------------------------------------------------

TEST(ExecStress, ShutdownWhileProducersPush) {
  plexus_test::ScopedMisuseAction quiet(MisuseAction::kLog);
  plexus_test::LogCapture log;  // keeps refused pushes off stderr
  for (int round = 0; round < Scaled(20); ++round) {
    auto tp = TaskProcessor::Create();
    std::atomic<long> accepted{0};
    std::atomic<long> ran{0};
    std::latch start(4);
    std::vector<std::thread> producers;
    for (int p = 0; p < 3; ++p) {
      producers.emplace_back([&] {
        start.arrive_and_wait();
        for (int i = 0; i < 2000; ++i) {
          if (tp->Push([&] { ran++; })) accepted++;
        }
      });
    }
    start.arrive_and_wait();
    tp->Shutdown(ShutdownMode::kDrain);
    for (auto& t : producers) t.join();
    EXPECT_EQ(ran.load(), accepted.load()) << "round " << round;
  }
}

TEST(ExecStress, ResizeWhileTasksRun) {
  auto pool = ThreadPool::Create({.initial_size = 2});
  std::atomic<long> ran{0};
  const long n = Scaled(20000);
  std::thread resizer([&] {
    for (int i = 0; ran < n; ++i) pool->SetSize(1 + i % 4);
  });
  for (long i = 0; i < n; ++i) pool->Push([&] { ran++; });
  EXPECT_TRUE(WaitUntil([&] { return ran == n; }));
  resizer.join();
}

TEST(ExecStress, CancelRacesFire) {
  auto heap = TimerHeap::Create();
  const int n = Scaled(20000);
  std::vector<std::atomic<int>> fired(n);
  std::vector<TimerId> ids(n);
  for (int i = 0; i < n; ++i) {
    ids[i] = heap->Schedule(std::chrono::microseconds(i % 200), [&fired, i] { fired[i]++; });
  }
  std::vector<bool> prevented(n);
  for (int i = 0; i < n; ++i) prevented[i] = heap->CancelAndWait(ids[i]);
  for (int i = 0; i < n; ++i) {
    EXPECT_EQ(fired[i].load() + (prevented[i] ? 1 : 0), 1) << "timer " << i;
  }
  EXPECT_EQ(heap->PendingCount(), 0u);
}

TEST(ExecStress, TimerDropsTheLastGroupReference) {
  auto heap = TimerHeap::Create();
  auto tp = TaskProcessor::Create();
  const int n = Scaled(2000);
  std::atomic<int> destroyed{0};
  std::atomic<int> callbacks{0};
  for (int i = 0; i < n; ++i) {
    Ref<GroupLock> group = GroupLock::Create({.member = &destroyed, .handler = &CountDestroy});
    TimerOptions options{.group = group};
    if (i % 2 == 0) options.executor = tp;
    heap->Schedule(
        std::chrono::microseconds(i % 100), [&callbacks] { callbacks++; }, std::move(options));
  }
  EXPECT_TRUE(WaitUntil([&] { return destroyed == n; }));
  EXPECT_EQ(callbacks.load(), n);
}

TEST(ExecStress, ManyProducersKeepPerProducerOrder) {
  auto tp = TaskProcessor::Create();
  constexpr int kProducers = 4;
  const int n = Scaled(20000);
  std::vector<int> last(kProducers, -1);
  std::atomic<int> out_of_order{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < n; ++i) {
        tp->Push([&, p, i] {
          if (last[p] != i - 1) out_of_order++;
          last[p] = i;
        });
      }
    });
  }
  for (auto& t : producers) t.join();
  EXPECT_TRUE(tp->PushAndWait([] {}));
  EXPECT_EQ(out_of_order.load(), 0);
  for (int p = 0; p < kProducers; ++p) EXPECT_EQ(last[p], n - 1);
}

TEST(Task, InlineAndHeapStorage) {
  int x = 0;
  Task small = [&x] { ++x; };
  EXPECT_TRUE(small.IsInline());
  small();
  EXPECT_EQ(x, 1);
  std::array<char, 200> big{};
  Task large = [big, &x] { x += big[0] + 1; };
  EXPECT_FALSE(large.IsInline());
  Task moved = std::move(large);
  moved();
  EXPECT_EQ(x, 2);
  auto owned = std::make_shared<int>(5);
  std::weak_ptr<int> watch = owned;
  Task holder = [p = std::move(owned)] { (void)p; };
  EXPECT_FALSE(watch.expired());
  holder.reset();
  EXPECT_TRUE(watch.expired());
  Task unique = [p = std::make_unique<int>(3), &x] { x += *p; };
  unique();
  EXPECT_EQ(x, 5);
}

}  // namespace
}  // namespace plexus
