// Stress and race tests for the exec layer: a task processor shut down while producers push
// (every accepted task runs exactly once, or is counted as discarded), a pool resized up and
// down while tasks run, Cancel racing the timer firing, a group lock whose last reference a
// timer drops, and many producers to one task processor (per-producer FIFO, one task at a
// time). They assert outcomes, never timings; their real strength is running under
// AddressSanitizer and ThreadSanitizer. Counts shrink there (Scaled).

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <future>
#include <latch>
#include <memory>
#include <random>
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
#include "plexus/exec/thread_pool.h"
#include "plexus/exec/timer_heap.h"
#include "plexus/sync/cond_var.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/mutex.h"

namespace plexus {
namespace {

using namespace std::chrono_literals;
using plexus_test::LogCapture;
using plexus_test::Scaled;
using plexus_test::ScopedMisuseAction;
using plexus_test::WaitForLaterTimer;
using plexus_test::WaitUntil;

// Numbered tasks of several producers, as they run on one task processor: whether two ever
// overlapped, whether a producer's tasks ran out of its push order, and how many ran.
template <int kProducers>
struct ProducerOrder {
  std::array<int, kProducers> last;  // written by the tasks only, one at a time
  std::atomic<int> inside{0};
  std::atomic<int> overlaps{0};
  std::atomic<int> out_of_order{0};
  std::atomic<int> ran{0};

  ProducerOrder() { last.fill(-1); }

  // The task producer `p` pushes as its `seq`-th.
  auto TaskFor(int p, int seq) {
    return [this, p, seq] {
      if (inside.fetch_add(1) != 0) overlaps.fetch_add(1);
      int& previous = last[static_cast<std::size_t>(p)];
      if (previous != seq - 1) out_of_order.fetch_add(1);
      previous = seq;
      inside.fetch_sub(1);
      ran.fetch_add(1, std::memory_order_release);
    };
  }

  // Waits until all `per_producer` tasks of every producer ran, then checks that they ran one
  // at a time and in order.
  void ExpectAllRanInOrder(int per_producer, const TaskProcessor& tp) {
    const int total = kProducers * per_producer;
    ASSERT_TRUE(WaitUntil([&] { return ran.load(std::memory_order_acquire) == total; }))
        << "ran " << ran.load() << " of " << total << ", depth " << tp.Depth();
    EXPECT_EQ(overlaps.load(), 0);
    EXPECT_EQ(out_of_order.load(), 0);
    for (int seen : last) EXPECT_EQ(seen, per_producer - 1);
  }
};

// Producers push until they are refused while the task processor is shut down, in drain mode
// (every accepted task runs exactly once) or discard mode (every accepted task runs or is
// counted as discarded, never both).
TEST(ExecStress, ProcessorShutdownWhileProducersPush) {
  constexpr int kProducers = 4;
  const int rounds = Scaled(60);
  LogCapture log;  // each refused Push logs a misuse report
  ScopedMisuseAction action(MisuseAction::kLog);
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-shutdown", .initial_size = 2});
  for (int round = 0; round < rounds; ++round) {
    const bool drain = round % 2 == 0;
    std::atomic<long> accepted{0};
    std::atomic<long> ran{0};
    Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool});
    std::latch start(kProducers + 1);
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&] {
        start.arrive_and_wait();
        while (tp->Push([&ran] { ran.fetch_add(1, std::memory_order_relaxed); })) {
          accepted.fetch_add(1, std::memory_order_relaxed);
        }
      });
    }
    start.arrive_and_wait();
    EXPECT_TRUE(WaitUntil([&] { return accepted.load() >= 200; }));  // then shut down anyway
    const std::size_t discarded =
        tp->Shutdown(drain ? ShutdownMode::kDrain : ShutdownMode::kDiscard);
    for (std::thread& t : producers) t.join();
    const long total = accepted.load();
    const auto dropped = static_cast<long>(discarded);
    if (drain) {
      EXPECT_EQ(dropped, 0) << "round " << round;
    }
    ASSERT_TRUE(WaitUntil([&] { return ran.load() + dropped == total; }))
        << "round " << round << ": accepted " << total << ", ran " << ran.load() << ", discarded "
        << dropped;
    const TaskProcessorStats s = tp->Stats();
    EXPECT_EQ(static_cast<long>(s.processed), ran.load()) << "round " << round;
    EXPECT_EQ(static_cast<long>(s.discarded), dropped) << "round " << round;
    tp.Reset();
    ASSERT_EQ(ran.load() + dropped, total) << "round " << round;  // none twice
  }
}

// SetSize up and down (through 0) while a producer pushes: every task runs, and the pool ends
// with the size it was last given, every thread it started joined at shutdown.
TEST(ExecStress, PoolResizedUpAndDownWhileTasksRun) {
  const int tasks = Scaled(100'000);
  const int resizes = Scaled(2'000);
  std::atomic<int> started{0};
  std::atomic<int> ended{0};
  std::atomic<int> ran{0};
  ThreadPoolOptions options{.name = "stress-resize", .initial_size = 2};
  options.thread_start = [&started] { started.fetch_add(1); };
  options.thread_end = [&ended] { ended.fetch_add(1); };
  Ref<ThreadPool> pool = ThreadPool::Create(std::move(options));
  std::thread producer([&] {
    for (int i = 0; i < tasks; ++i) {
      ASSERT_TRUE(pool->Push([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }));
    }
  });
  std::mt19937 rng(8);
  for (int i = 0; i < resizes; ++i) pool->SetSize(static_cast<int>(rng() % 5));
  producer.join();
  pool->SetSize(2);
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == tasks; })) << ran.load() << " of " << tasks;
  EXPECT_TRUE(WaitUntil([&] { return started.load() - ended.load() == 2; }))
      << started.load() << " started, " << ended.load() << " ended";
  EXPECT_TRUE(WaitUntil([&] { return pool->ActiveCount() == 0 && pool->IdleCount() == 2; }))
      << pool->ActiveCount() << " active, " << pool->IdleCount() << " idle";
  pool.Reset();
  EXPECT_EQ(started.load(), ended.load());
}

// For each timer exactly one of "Cancel returned true" and "the callback ran" happens, on the
// timer thread and on an executor, with Cancel and CancelAndWait.
TEST(ExecStress, CancelRacesTheTimerFiring) {
  constexpr int kTimers = 64;
  const int rounds = Scaled(300);
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "stress/cancel-executor"});
  Ref<TimerHeap> heap = TimerHeap::Create("stress-cancel");
  std::mt19937 rng(20);
  for (int round = 0; round < rounds; ++round) {
    std::vector<std::atomic<int>> ran(kTimers);
    std::vector<int> prevented(kTimers, 0);
    std::vector<TimerId> ids(kTimers);
    std::vector<MonotonicClock::time_point> deadlines(kTimers);
    const MonotonicClock::time_point base = MonotonicClock::now() + 200us;
    for (int i = 0; i < kTimers; ++i) {
      const auto at = static_cast<std::size_t>(i);
      deadlines[at] = base + i * 20us;
      ids[at] = heap->ScheduleAt(deadlines[at], [&ran, at] { ran[at].fetch_add(1); },
                                 {.executor = i % 2 == 0 ? tp : nullptr});
    }
    int late_waits = 0;  // CancelAndWait returned false before the callback finished
    for (std::size_t at = 0; at < ids.size(); ++at) {
      // Aim the cancel at the firing, give or take 30 us: a spin that makes the race likely,
      // not a wait for an outcome (either outcome passes).
      const auto aim = deadlines[at] + std::chrono::microseconds(static_cast<int>(rng() % 61) - 30);
      while (MonotonicClock::now() < aim) {
      }
      if (at % 3 == 0) {
        prevented[at] = heap->CancelAndWait(ids[at]) ? 1 : 0;
        if (prevented[at] == 0 && ran[at].load() != 1) ++late_waits;
      } else {
        prevented[at] = heap->Cancel(ids[at]) ? 1 : 0;
      }
    }
    EXPECT_EQ(late_waits, 0) << "round " << round;
    const auto all_settled = [&] {
      for (std::size_t at = 0; at < ran.size(); ++at) {
        if (prevented[at] == 0 && ran[at].load() == 0) return false;
      }
      return true;
    };
    ASSERT_TRUE(WaitUntil(all_settled))
        << "round " << round << ": a timer neither prevented nor run";
    // A prevented callback that would still (wrongly) run has had its chance after these.
    ASSERT_TRUE(WaitForLaterTimer(*heap, 0ns, tp));
    ASSERT_TRUE(WaitForLaterTimer(*heap, 0ns, nullptr));
    for (std::size_t at = 0; at < ran.size(); ++at) {
      ASSERT_EQ(prevented[at] + ran[at].load(), 1)
          << "round " << round << " timer " << at << ": prevented " << prevented[at] << ", ran "
          << ran[at].load();
    }
    ASSERT_EQ(heap->PendingCount(), 0u);
  }
}

// What a group's destroy handler saw.
struct GroupEnd {
  std::atomic<bool> callback_done{false};
  std::atomic<int> callback_done_at_destroy{-1};
  std::thread::id destroyer;  // written before `destroyed`, read after it
  std::atomic<int> destroyed{0};
};

void OnGroupEnd(void* p) {
  auto* end = static_cast<GroupEnd*>(p);
  end->callback_done_at_destroy = end->callback_done.load() ? 1 : 0;
  end->destroyer = std::this_thread::get_id();
  end->destroyed.fetch_add(1);  // last: the test may free `end` once it sees this
}

// The timer holds the group's last reference: the group is destroyed exactly once, after the
// callback returned, by the thread that ran it (the timer thread or the executor).
TEST(ExecStress, TimerDropsTheLastGroupReferenceAfterItsCallback) {
  const int rounds = Scaled(2'000);
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "stress/group-executor"});
  Ref<TimerHeap> heap = TimerHeap::Create("stress-group");
  for (int round = 0; round < rounds; ++round) {
    GroupEnd end;
    std::atomic<bool> outside_dropped{false};
    Ref<GroupLock> group = GroupLock::Create({.member = &end, .handler = &OnGroupEnd});
    heap->Schedule(std::chrono::microseconds(round % 100),
                   [&end, &outside_dropped] {
                     // Finishes only after the test dropped its own reference.
                     (void)WaitUntil([&] { return outside_dropped.load(); });
                     end.callback_done = true;
                   },
                   {.group = group, .executor = round % 2 == 0 ? tp : nullptr});
    const Liveness after_drop = group.Reset();
    outside_dropped = true;
    EXPECT_EQ(after_drop, Liveness::kAlive) << "round " << round;  // the timer holds it
    ASSERT_TRUE(WaitUntil([&] { return end.destroyed.load() == 1; })) << "round " << round;
    ASSERT_EQ(end.callback_done_at_destroy.load(), 1) << "round " << round;
    ASSERT_NE(end.destroyer, std::this_thread::get_id()) << "round " << round;
    ASSERT_TRUE(WaitForLaterTimer(*heap, 0ns, round % 2 == 0 ? tp : nullptr));
    ASSERT_EQ(end.destroyed.load(), 1) << "round " << round;  // exactly once
  }
}

// Several producers push numbered tasks to one task processor: each producer's tasks run in
// its push order, and no two tasks ever overlap.
TEST(ExecStress, ManyProducersToOneProcessorKeepPerProducerOrder) {
  constexpr int kProducers = 4;
  const int per_producer = Scaled(50'000);
  ProducerOrder<kProducers> order;
  LogCapture log;  // deep queues raise (logged) alerts
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "stress/fifo"});
  std::latch start(kProducers);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      start.arrive_and_wait();
      for (int seq = 0; seq < per_producer; ++seq) {
        ASSERT_TRUE(tp->Push(order.TaskFor(p, seq)));
      }
    });
  }
  for (std::thread& t : producers) t.join();
  order.ExpectAllRanInOrder(per_producer, *tp);
}

// Producers push in small bursts and now and then wait for the task processor to catch up, so
// its turns keep ending (often with a push arriving just as the turn looks at the queue) and
// starting again: every task runs once, in its producer's order, one at a time, and the counts
// are exact.
TEST(ExecStress, PushesRacingTurnEndsLoseNoTask) {
  constexpr int kProducers = 3;
  const int per_producer = Scaled(40'000);
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-turn-ends", .initial_size = 2});
  ProducerOrder<kProducers> order;
  Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool, .batch_limit = 3});
  std::latch start(kProducers);
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::minstd_rand random(static_cast<unsigned>(p + 1));
      start.arrive_and_wait();
      for (int seq = 0; seq < per_producer; ++seq) {
        ASSERT_TRUE(tp->Push(order.TaskFor(p, seq)));
        if (random() % 16 == 0) {
          // Let the queue drain (the turn then ends) before the next burst.
          ASSERT_TRUE(WaitUntil([&] { return tp->Depth() == 0; }));
        }
      }
    });
  }
  for (std::thread& t : producers) t.join();
  order.ExpectAllRanInOrder(per_producer, *tp);
  const int total = kProducers * per_producer;
  ASSERT_TRUE(
      WaitUntil([&] { return tp->Stats().processed == static_cast<std::uint64_t>(total); }));
  const TaskProcessorStats s = tp->Stats();
  EXPECT_EQ(s.depth, 0u);
  EXPECT_EQ(s.discarded, 0u);
  EXPECT_LE(s.max_depth, static_cast<std::size_t>(total));
  tp.Reset();
  pool->Shutdown();
}

// Pushes race a shutdown, draining or discarding, with the queue sometimes deep (suspended
// first, so that many tasks wait) and sometimes short: every accepted task
// either ran or was destroyed unrun and counted as discarded, none both, none twice, none
// lost, and every push after the shutdown is refused.
TEST(ExecStress, PushesRacingShutdownRunOrDiscardEachTaskOnce) {
  constexpr int kProducers = 3;
  constexpr int kPerProducer = 4096;
  const int rounds = Scaled(40);
  LogCapture log;  // discarding shutdowns log what they discarded
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-shutdown-2", .initial_size = 2});
  for (int round = 0; round < rounds; ++round) {
    const bool drain = round % 2 == 0;
    const bool deep = round % 4 >= 2;
    // Per task: 1 ran, 2 destroyed unrun (0: never accepted). Written once each.
    std::vector<std::atomic<int>> fate(kProducers * kPerProducer);
    std::atomic<long> accepted{0};
    std::atomic<long> refused_after_shutdown{0};
    std::atomic<bool> shut_down{false};
    Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool, .batch_limit = 8});
    if (deep) tp->Suspend();
    // Sets its fate when run, or when destroyed without having run.
    struct Tracked {
      std::atomic<int>* fate;
      explicit Tracked(std::atomic<int>* f) : fate(f) {}
      Tracked(Tracked&& other) noexcept : fate(std::exchange(other.fate, nullptr)) {}
      Tracked& operator=(Tracked&&) = delete;
      ~Tracked() {
        if (fate != nullptr && fate->load() == 0) fate->store(2);
      }
      void operator()() { EXPECT_EQ(fate->exchange(1), 0); }
    };
    std::latch start(kProducers + 1);
    std::vector<std::thread> producers;
    for (int p = 0; p < kProducers; ++p) {
      producers.emplace_back([&, p] {
        start.arrive_and_wait();
        for (int i = 0; i < kPerProducer; ++i) {
          const bool after = shut_down.load();
          Task task = Tracked(&fate[static_cast<std::size_t>(p * kPerProducer + i)]);
          if (tp->TryPush(task)) {
            accepted.fetch_add(1);
            EXPECT_FALSE(after) << "accepted after the shutdown returned";
          } else {
            if (after) refused_after_shutdown.fetch_add(1);
            // Refused: TryPush left the task to us; destroying it marks it unrun, so un-mark.
            fate[static_cast<std::size_t>(p * kPerProducer + i)].store(-1);
            task = nullptr;
            fate[static_cast<std::size_t>(p * kPerProducer + i)].store(0);
          }
        }
      });
    }
    start.arrive_and_wait();
    ASSERT_TRUE(WaitUntil([&] { return accepted.load() >= (deep ? 600 : 100); }));
    const std::size_t discarded =
        tp->Shutdown(drain ? ShutdownMode::kDrain : ShutdownMode::kDiscard);
    shut_down.store(true);
    for (std::thread& t : producers) t.join();
    long ran = 0;
    long unrun = 0;
    long never = 0;
    for (const std::atomic<int>& f : fate) {
      ran += f.load() == 1;
      unrun += f.load() == 2;
      never += f.load() == 0;
    }
    EXPECT_EQ(ran + unrun, accepted.load()) << "round " << round;
    EXPECT_EQ(never, kProducers * kPerProducer - accepted.load()) << "round " << round;
    EXPECT_EQ(static_cast<long>(discarded), unrun) << "round " << round;
    if (drain) {
      EXPECT_EQ(unrun, 0) << "round " << round;
    }
    const TaskProcessorStats s = tp->Stats();
    EXPECT_EQ(static_cast<long>(s.processed), ran) << "round " << round;
    EXPECT_EQ(static_cast<long>(s.discarded), unrun) << "round " << round;
    EXPECT_EQ(s.depth, 0u) << "round " << round;
    EXPECT_TRUE(tp->IsShutDown());
  }
  pool->Shutdown();
}

// A task discards its own task processor's queue, deep and with the running task taken from
// it, while producers are still pushing: the running task
// finishes intact, every other accepted task ran or was counted discarded, and none ran twice.
TEST(ExecStress, TaskDiscardingItsOwnDeepQueue) {
  const int rounds = Scaled(200);
  LogCapture log;
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-own-discard", .initial_size = 2});
  for (int round = 0; round < rounds; ++round) {
    Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool});
    std::atomic<long> accepted{0};
    std::atomic<long> ran{0};
    std::atomic<std::size_t> discarded{0};
    std::atomic<bool> discarder_done{false};
    tp->Suspend();
    // Some tasks first, so that the discarding one sits at a different place each round.
    for (int i = 0; i < round % 40; ++i) {
      ASSERT_TRUE(tp->Push([&ran] { ran.fetch_add(1); }));
      accepted.fetch_add(1);
    }
    ASSERT_TRUE(tp->Push([&, self = tp.get()] {
      ran.fetch_add(1);
      const std::array<int, 8> canary{1, 2, 3, 4, 5, 6, 7, 8};
      discarded.store(self->Shutdown(ShutdownMode::kDiscard));
      // Our closure's storage must still be ours.
      EXPECT_EQ(canary[7], 8);
      discarder_done.store(true);
    }));
    accepted.fetch_add(1);
    for (int i = 0; i < 100 + round % 37; ++i) {
      ASSERT_TRUE(tp->Push([&ran] { ran.fetch_add(1); }));
      accepted.fetch_add(1);
    }
    std::thread producer([&] {
      Task task = [&ran] { ran.fetch_add(1); };
      while (tp->TryPush(task)) {
        accepted.fetch_add(1);
        task = [&ran] { ran.fetch_add(1); };
      }
    });
    tp->Resume();
    ASSERT_TRUE(WaitUntil([&] { return discarder_done.load(); }));
    producer.join();
    tp.Reset();  // waits for the turn
    EXPECT_EQ(ran.load() + static_cast<long>(discarded.load()), accepted.load())
        << "round " << round;
    EXPECT_GE(discarded.load(), 100u) << "round " << round;
  }
  pool->Shutdown();
}

// The task a push publishes may own the task processor's last reference (pushed through a plain
// pointer) and drop it at once, on another thread: the push must not touch the processor after
// publishing (AddressSanitizer reports it if it does).
TEST(ExecStress, PushedTaskDropsTheLastReferenceWhileThePushReturns) {
  const int rounds = Scaled(3'000);
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-owned", .initial_size = 2});
  for (int round = 0; round < rounds; ++round) {
    Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool});
    TaskProcessor* raw = tp.get();
    std::atomic<bool> freed{false};
    // Keeps the turn running until the owning task is queued, so that the push below finds
    // the turn scheduled and the task runs as soon as it is published.
    ASSERT_TRUE(raw->Push([raw] {
      while (raw->Depth() == 0) std::this_thread::yield();
    }));
    ASSERT_TRUE(raw->Push([owned = std::move(tp), &freed]() mutable {
      owned.Reset();
      freed.store(true);
    }));
    ASSERT_TRUE(WaitUntil([&] { return freed.load(); }));
  }
  pool->Shutdown();  // the last turns free their task processors before their threads end
}

// Pushes race Suspend and Resume from another thread (and a producer that suspends and
// resumes around its own pushes): no task runs twice or concurrently, each producer's order
// holds, and once the last Resume returned every task runs: no wake-up is lost between a push
// that finds the processor suspended and a Resume.
TEST(ExecStress, PushesRacingSuspendAndResumeLoseNoWakeUp) {
  constexpr int kProducers = 3;
  const int per_producer = Scaled(30'000);
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-suspend", .initial_size = 2});
  ProducerOrder<kProducers> order;
  Ref<TaskProcessor> tp = TaskProcessor::Create({.pool = pool, .batch_limit = 4});
  std::atomic<bool> done{false};
  std::latch start(kProducers + 1);
  std::thread toggler([&] {
    start.arrive_and_wait();
    std::minstd_rand random(7);
    while (!done.load()) {
      const int times = 1 + static_cast<int>(random() % 2);
      for (int i = 0; i < times; ++i) tp->Suspend();
      for (unsigned spin = random() % 64; spin > 0; --spin) std::this_thread::yield();
      for (int i = 0; i < times; ++i) tp->Resume();
      std::this_thread::yield();
    }
  });
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      start.arrive_and_wait();
      for (int seq = 0; seq < per_producer; ++seq) {
        if (p == 0 && seq % 512 == 0) tp->Suspend();
        ASSERT_TRUE(tp->Push(order.TaskFor(p, seq)));
        if (p == 0 && seq % 512 == 511) tp->Resume();
      }
      if (p == 0 && per_producer % 512 != 0) tp->Resume();
    });
  }
  for (std::thread& t : producers) t.join();
  done.store(true);
  toggler.join();
  EXPECT_FALSE(tp->IsSuspended());
  order.ExpectAllRanInOrder(per_producer, *tp);
  tp.Reset();
  pool->Shutdown();
}

// Suspend adds to the count without the task processor's lock while Resume lowers it under
// that lock: two threads suspending and resuming at once must leave the count balanced, no
// Resume finding it at zero because a suspension was lost.
TEST(ExecStress, ConcurrentSuspendsAndResumesKeepTheCountBalanced) {
  ScopedMisuseAction action(MisuseAction::kLog);
  const std::uint64_t misuse_before = MisuseReportCount();
  Ref<TaskProcessor> tp = TaskProcessor::Create({.name = "stress-suspend-count"});
  const int pairs = Scaled(200'000);
  std::latch start(2);
  auto toggle = [&] {
    start.arrive_and_wait();
    for (int i = 0; i < pairs; ++i) {
      tp->Suspend();
      tp->Resume();
    }
  };
  std::thread first(toggle);
  std::thread second(toggle);
  first.join();
  second.join();
  EXPECT_EQ(MisuseReportCount(), misuse_before);
  EXPECT_FALSE(tp->IsSuspended());
  EXPECT_TRUE(tp->PushAndWait([] {}));
}

// Pushes from several threads race turns (short batches, so turns end, yield and start
// again), a suspender and readers of the depth: every reading is a depth that was possible
// (never above what was pushed, never above the maximum Stats() reports beside it), and at the
// end every task ran, the depth is 0 and the maximum is within what was pushed.
TEST(ExecStress, DepthReadWhilePushesRaceTurns) {
  constexpr int kProducers = 3;
  const int per_producer = Scaled(40'000);
  const std::uint64_t total = std::uint64_t{kProducers} * static_cast<std::uint64_t>(per_producer);
  LogCapture log;  // deep queues raise (logged) alerts
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-depth", .initial_size = 2});
  Ref<TaskProcessor> tp =
      TaskProcessor::Create({.pool = pool, .batch_limit = 4, .high_water = 64, .low_water = 16});
  std::atomic<std::uint64_t> ran{0};
  std::atomic<int> producing{kProducers};
  std::atomic<int> bad_depth{0};
  std::atomic<int> depth_above_max{0};
  std::latch start(kProducers + 2);
  std::vector<std::thread> threads;
  for (int p = 0; p < kProducers; ++p) {
    threads.emplace_back([&] {
      start.arrive_and_wait();
      for (int i = 0; i < per_producer; ++i) {
        ASSERT_TRUE(tp->Push([&ran] { ran.fetch_add(1, std::memory_order_relaxed); }));
      }
      producing.fetch_sub(1);
    });
  }
  threads.emplace_back([&] {  // a reader
    start.arrive_and_wait();
    while (producing.load() > 0) {
      if (tp->Depth() > total) bad_depth.fetch_add(1);
      const TaskProcessorStats stats = tp->Stats();
      if (stats.depth > stats.max_depth) depth_above_max.fetch_add(1);
    }
  });
  threads.emplace_back([&] {  // a suspender: turns stop and start again mid-batch
    start.arrive_and_wait();
    while (producing.load() > 0) {
      tp->Suspend();
      const std::size_t depth = tp->Depth();
      if (depth > total) bad_depth.fetch_add(1);
      tp->Resume();
    }
  });
  for (std::thread& t : threads) t.join();
  ASSERT_TRUE(WaitUntil([&] { return ran.load() == total; }));
  ASSERT_TRUE(WaitUntil([&] { return !tp->IsAlerted(); }));
  const TaskProcessorStats stats = tp->Stats();
  EXPECT_EQ(stats.processed, total);
  EXPECT_EQ(stats.depth, 0u);
  EXPECT_EQ(tp->Depth(), 0u);
  EXPECT_GE(stats.max_depth, 1u);
  EXPECT_LE(stats.max_depth, total);
  EXPECT_EQ(bad_depth.load(), 0);
  EXPECT_EQ(depth_above_max.load(), 0);
}

// Many task processors share a small pool: each one's tasks never overlap and all run.
TEST(ExecStress, ManyProcessorsOnASmallPoolRunOneTaskAtATimeEach) {
  constexpr int kProcessors = 32;
  const int per_processor = Scaled(5'000);
  struct PerProcessor {
    std::atomic<int> inside{0};
    std::atomic<int> overlaps{0};
    std::atomic<int> ran{0};
  };
  LogCapture log;  // deep queues raise (logged) alerts
  std::array<PerProcessor, kProcessors> stats;
  Ref<ThreadPool> pool = ThreadPool::Create({.name = "stress-many", .initial_size = 3});
  std::vector<Ref<TaskProcessor>> tps;
  for (int i = 0; i < kProcessors; ++i) {
    tps.push_back(TaskProcessor::Create({.pool = pool, .batch_limit = 8}));
  }
  std::vector<std::thread> producers;
  for (int t = 0; t < 2; ++t) {
    producers.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      for (int i = 0; i < kProcessors * per_processor / 2; ++i) {
        const std::size_t which = rng() % kProcessors;
        PerProcessor* mine = &stats[which];
        ASSERT_TRUE(tps[which]->Push([mine] {
          if (mine->inside.fetch_add(1) != 0) mine->overlaps.fetch_add(1);
          mine->inside.fetch_sub(1);
          mine->ran.fetch_add(1);
        }));
      }
    });
  }
  for (std::thread& t : producers) t.join();
  const int total = kProcessors * per_processor / 2 * 2;
  ASSERT_TRUE(WaitUntil([&] {
    int sum = 0;
    for (const PerProcessor& s : stats) sum += s.ran.load();
    return sum == total;
  }));
  for (const PerProcessor& s : stats) EXPECT_EQ(s.overlaps.load(), 0);
  tps.clear();
}

// No lost wake-up: producers outside the pool push in bursts and one at a time, so that the
// workers keep going idle, spinning and sleeping between pushes, while tasks of the pool make
// task processors ready on their own workers (run-next slots, displaced turns to steal). Every
// task runs; a lost wake-up would leave one queued for ever and the wait would fail.
TEST(ExecStress, PushStormFromOutsideAndHandOffsInsideLoseNoWakeUp) {
  auto pool = ThreadPool::Create({.name = "storm", .initial_size = 3});
  constexpr int kProducers = 4;
  const int per_producer = Scaled(20'000);
  std::vector<Ref<TaskProcessor>> processors;
  for (int i = 0; i < 8; ++i) processors.push_back(TaskProcessor::Create({.pool = pool}));
  std::atomic<std::int64_t> ran{0};
  std::atomic<std::int64_t> expected{0};
  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      std::minstd_rand random(static_cast<unsigned>(p) + 1);
      for (int i = 0; i < per_producer; ++i) {
        const int kind = static_cast<int>(random() % 4);
        if (kind == 0) {
          expected.fetch_add(1);
          ASSERT_TRUE(pool->Push([&] { ran.fetch_add(1); }));
        } else {
          // A task that makes two other task processors ready from inside the pool.
          expected.fetch_add(3);
          TaskProcessor& first = *processors[random() % processors.size()];
          TaskProcessor* a = processors[random() % processors.size()].get();
          TaskProcessor* b = processors[random() % processors.size()].get();
          ASSERT_TRUE(first.Push([&ran, a, b] {
            ran.fetch_add(1);
            a->Push([&ran] { ran.fetch_add(1); });
            b->Push([&ran] { ran.fetch_add(1); });
          }));
        }
        if (random() % 64 == 0) {
          // Let the pool drain and go idle before the next push.
          const std::int64_t target = expected.load();
          while (ran.load() < target) std::this_thread::yield();
        }
      }
    });
  }
  for (std::thread& t : producers) t.join();
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == expected.load(); }))
      << ran.load() << " of " << expected.load() << " tasks ran";
  processors.clear();
  pool->Shutdown();
}

// A task that hands one task to `target` and, when `blocks`, waits until that task ran (so
// that another worker must take over its run-next slot); each of the two counts in `ran`.
Task HandOff(std::atomic<std::int64_t>& ran, TaskProcessor* target, bool blocks) {
  return [&ran, target, blocks] {
    if (!blocks) {
      target->Push([&ran] { ran.fetch_add(1); });
      ran.fetch_add(1);
      return;
    }
    // Shared: set_value may still be returning when the waiter wakes and leaves.
    auto handed_ran = std::make_shared<std::promise<void>>();
    std::future<void> handed_done = handed_ran->get_future();
    target->Push([&ran, handed_ran] {
      ran.fetch_add(1);
      handed_ran->set_value();
    });
    handed_done.wait();
    ran.fetch_add(1);
  };
}

// Task processors hand work to each other from inside the pool while some of the handing
// tasks block (on a future or a CondVar) until the work they handed off has run: every
// blocked worker's run-next slot must be rescued by another worker, whatever it is doing.
TEST(ExecStress, TasksBlockedOnTheirHandOffsAreAllRescued) {
  auto pool = ThreadPool::Create({.name = "rescue-storm", .initial_size = 4});
  constexpr int kPairs = 6;
  constexpr int kBlockingPairs = 2;  // fewer than the threads: someone is left to rescue
  const int rounds = Scaled(300);
  std::vector<Ref<TaskProcessor>> from;
  std::vector<Ref<TaskProcessor>> to;
  for (int i = 0; i < kPairs; ++i) {
    from.push_back(TaskProcessor::Create({.pool = pool}));
    to.push_back(TaskProcessor::Create({.pool = pool}));
  }
  Mutex mu;
  CondVar cv;
  std::atomic<std::int64_t> ran{0};
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < kPairs; ++i) {
      TaskProcessor* target = to[static_cast<std::size_t>(i)].get();
      const bool blocks = i < kBlockingPairs;
      const bool on_future = (r + i) % 2 == 0;
      ASSERT_TRUE(from[static_cast<std::size_t>(i)]->Push([&, target, blocks, on_future] {
        if (!blocks || on_future) {
          HandOff(ran, target, blocks)();
          return;
        }
        bool handed_ran = false;
        target->Push([&] {
          ran.fetch_add(1);
          MutexLock lock(mu);
          handed_ran = true;
          cv.NotifyAll();
        });
        MutexLock lock(mu);
        while (!handed_ran) cv.Wait(mu);
        ran.fetch_add(1);
      }));
    }
  }
  const std::int64_t expected = std::int64_t{2} * kPairs * rounds;
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == expected; }))
      << ran.load() << " of " << expected << " tasks ran";
  from.clear();
  to.clear();
  pool->Shutdown();
}

// More workers than CPUs, so that a woken worker often waits for one while still counted as
// a sleeper with a wake-up on its way (hand-offs then decide without the pool's lock that
// nobody needs waking). The pool drains to idle between bursts, so workers keep going to
// sleep and being woken while hand-offs land, and some handing tasks block until their
// hand-off ran: every burst must finish, whatever the wake-up bookkeeping decided.
TEST(ExecStress, HandOffsWhileWokenWorkersWaitForACpuLoseNoWakeUp) {
  const std::size_t threads = 3 * std::max(2u, std::thread::hardware_concurrency());
  auto pool = ThreadPool::Create({.name = "oversubscribed", .initial_size = threads});
  constexpr int kPairs = 8;
  const int bursts = Scaled(400);
  std::vector<Ref<TaskProcessor>> a;
  std::vector<Ref<TaskProcessor>> b;
  for (int i = 0; i < kPairs; ++i) {
    a.push_back(TaskProcessor::Create({.pool = pool}));
    b.push_back(TaskProcessor::Create({.pool = pool}));
  }
  std::atomic<std::int64_t> ran{0};
  std::int64_t expected = 0;
  for (int burst = 0; burst < bursts; ++burst) {
    for (int i = 0; i < kPairs; ++i) {
      TaskProcessor* target = b[static_cast<std::size_t>(i)].get();
      // One pair in each burst blocks on its hand-off: its slot must be rescued.
      const bool blocks = i == burst % kPairs;
      expected += 2;
      ASSERT_TRUE(a[static_cast<std::size_t>(i)]->Push(HandOff(ran, target, blocks)));
    }
    // Drain to idle: the next burst lands on workers that spin, sleep or were just woken.
    ASSERT_TRUE(WaitUntil([&] { return ran.load() == expected; }))
        << "burst " << burst << ": " << ran.load() << " of " << expected << " tasks ran";
  }
  a.clear();
  b.clear();
  pool->Shutdown();
}

// Sparse pushes, one in flight at a time, to pools of every small size: each push lands while
// the workers are spinning or going to sleep, the window where a wake-up could be lost.
TEST(ExecStress, OneTaskAtATimeIsAlwaysPickedUp) {
  for (std::size_t threads = 1; threads <= 3; ++threads) {
    auto pool = ThreadPool::Create({.name = "sparse", .initial_size = threads});
    auto processor = TaskProcessor::Create({.pool = pool});
    std::atomic<int> ran{0};
    const int rounds = Scaled(5'000);
    for (int i = 0; i < rounds; ++i) {
      if (i % 2 == 0) {
        ASSERT_TRUE(pool->Push([&] { ran.fetch_add(1); }));
      } else {
        ASSERT_TRUE(processor->Push([&] { ran.fetch_add(1); }));
      }
      ASSERT_TRUE(WaitUntil([&] { return ran.load() == i + 1; })) << "round " << i;
    }
    processor = nullptr;
    pool->Shutdown();
  }
}

// Serializers on one pool handing tokens to each other: a token task records itself, then
// (while it has hops left) pushes the next token to another serializer and a leaf task to a
// third. Both pushes come from a task of the pool, so they take the worker's run-next slot, the
// first displaced into its run queue, where idle workers steal it. Every push from a source to
// a target is numbered, so that each target checks it ran every task once, one at a time, in
// each source's push order.
class HandOffMesh {
 public:
  static constexpr int kSerializers = 6;
  static constexpr int kSources = kSerializers + 1;  // the test thread is the last

  HandOffMesh(const Ref<ThreadPool>& pool, std::uint32_t batch_limit) {
    for (int i = 0; i < kSerializers; ++i) {
      tps_.push_back(TaskProcessor::Create({.pool = pool, .batch_limit = batch_limit}));
    }
  }

  // From the test thread: a token with `hops` hops left to serializer `to`; returns how many
  // tasks it makes in all.
  std::int64_t Seed(int to, int hops) {
    Send(kSources - 1, to, hops);
    return 2 * std::int64_t{hops} + 1;
  }

  std::int64_t Ran() const {
    std::int64_t ran = 0;
    for (const auto& order : order_) ran += order.ran.load(std::memory_order_acquire);
    return ran;
  }

  // Once every task ran and no task runs any more.
  void ExpectEachRanOnceInOrder() const {
    for (int t = 0; t < kSerializers; ++t) {
      const auto& order = order_[static_cast<std::size_t>(t)];
      EXPECT_EQ(order.overlaps.load(), 0) << "serializer " << t;
      EXPECT_EQ(order.out_of_order.load(), 0) << "serializer " << t;
      for (int s = 0; s < kSources; ++s) {
        EXPECT_EQ(order.last[static_cast<std::size_t>(s)],
                  sent_[static_cast<std::size_t>(s)][static_cast<std::size_t>(t)] - 1)
            << "from " << s << " to " << t;
      }
    }
  }

  void Clear() { tps_.clear(); }

 private:
  // Called by the tasks of `from` (one at a time), or by the test thread for the last source.
  void Send(int from, int to, int hops) {
    int& sent = sent_[static_cast<std::size_t>(from)][static_cast<std::size_t>(to)];
    auto record = order_[static_cast<std::size_t>(to)].TaskFor(from, sent++);
    ASSERT_TRUE(tps_[static_cast<std::size_t>(to)]->Push([this, record, to, hops] {
      record();
      if (hops == 0) return;
      // Two targets other than this serializer, and other than each other.
      const int next = (to + 1 + hops % (kSerializers - 1)) % kSerializers;
      const int leaf =
          (next + 1) % kSerializers == to ? (next + 2) % kSerializers : (next + 1) % kSerializers;
      Send(to, next, hops - 1);
      Send(to, leaf, 0);
    }));
  }

  std::vector<Ref<TaskProcessor>> tps_;
  std::array<ProducerOrder<kSources>, kSerializers> order_;
  std::array<std::array<int, kSerializers>, kSources> sent_{};
};

// Thieves scan the workers without the pool's lock, and a worker's thread may leave (idle
// timeout, SetSize down) or a new one start (auto-increment, SetSize up) in the middle of a
// scan, its Worker then serving the next thread started. Hand-offs keep the run queues full
// while a resizer keeps changing the size (down to zero: pushes then grow the pool back).
TEST(ExecStress, StealsRacingWorkersThatLeaveAndStartRunEveryTaskOnceInOrder) {
  std::atomic<int> started{0};
  std::atomic<int> ended{0};
  ThreadPoolOptions options{.name = "steal-churn",
                            .initial_size = 2,
                            .max_size = 8,
                            .auto_increment = 1,
                            .idle_timeout = 1ms};
  options.thread_start = [&started] { started.fetch_add(1); };
  options.thread_end = [&ended] { ended.fetch_add(1); };
  Ref<ThreadPool> pool = ThreadPool::Create(std::move(options));
  const int rounds = Scaled(200);
  {
    HandOffMesh mesh(pool, 64);
    std::atomic<bool> stop{false};
    std::thread resizer([&] {
      std::mt19937 rng(17);
      while (!stop.load()) {
        pool->SetSize(static_cast<int>(rng() % 6));
        std::this_thread::yield();
      }
    });
    std::int64_t expected = 0;
    for (int r = 0; r < rounds; ++r) {
      for (int i = 0; i < 4; ++i) expected += mesh.Seed((r + i) % HandOffMesh::kSerializers, 12);
      // Drain to idle, so that idle workers time out between rounds.
      ASSERT_TRUE(WaitUntil([&] { return mesh.Ran() == expected; }))
          << "round " << r << ": " << mesh.Ran() << " of " << expected << " tasks ran";
    }
    stop.store(true);
    resizer.join();
    mesh.ExpectEachRanOnceInOrder();
    mesh.Clear();
  }
  pool.Reset();
  EXPECT_EQ(started.load(), ended.load());
  // How much the pool churned (in the XML report).
  RecordProperty("threads_started", started.load());
}

// The same hand-offs racing the pool's shutdown: workers leave as soon as they see nothing
// queued, while the others still steal from their run queues. Shutdown runs every task that
// was queued and every hand-off they make.
TEST(ExecStress, StealsRacingShutdownRunEveryTaskOnceInOrder) {
  const int rounds = Scaled(100);
  for (int r = 0; r < rounds; ++r) {
    Ref<ThreadPool> pool = ThreadPool::Create({.name = "steal-shutdown", .initial_size = 4});
    // No turn yields: a yield pushes from outside the run-next slot, which shutdown refuses.
    HandOffMesh mesh(pool, 1u << 30);
    std::int64_t expected = 0;
    for (int i = 0; i < 4; ++i) expected += mesh.Seed((r + i) % HandOffMesh::kSerializers, 16);
    pool->Shutdown();
    EXPECT_EQ(mesh.Ran(), expected) << "round " << r;
    mesh.ExpectEachRanOnceInOrder();
    mesh.Clear();
  }
}

// Tasks that block until their hand-off ran need a watcher to rescue the slot, while the pool
// shrinks and grows and idle workers time out: a watch may name a Worker whose thread left
// and which now serves a new thread. Every task runs exactly once, and each blocked one is
// released.
TEST(ExecStress, RescuesRacingRecycledWorkersLoseNoTask) {
  constexpr int kPairs = 6;
  constexpr int kBlockingPairs = 2;
  // Never fewer threads than blocking tasks plus one, so that someone is left to rescue.
  constexpr int kMinThreads = kBlockingPairs + 1;
  auto pool = ThreadPool::Create(
      {.name = "rescue-churn", .initial_size = 4, .min_size = kMinThreads, .idle_timeout = 1ms});
  std::vector<Ref<TaskProcessor>> from;
  std::vector<Ref<TaskProcessor>> to;
  for (int i = 0; i < kPairs; ++i) {
    from.push_back(TaskProcessor::Create({.pool = pool}));
    to.push_back(TaskProcessor::Create({.pool = pool}));
  }
  std::atomic<bool> stop{false};
  std::thread resizer([&] {
    std::mt19937 rng(23);
    while (!stop.load()) {
      pool->SetSize(kMinThreads + static_cast<int>(rng() % 4));
      std::this_thread::yield();
    }
  });
  std::atomic<std::int64_t> ran{0};
  const int rounds = Scaled(200);
  std::int64_t expected = 0;
  for (int r = 0; r < rounds; ++r) {
    for (int i = 0; i < kPairs; ++i) {
      TaskProcessor* target = to[static_cast<std::size_t>(i)].get();
      const bool blocks = i < kBlockingPairs;
      expected += 2;
      ASSERT_TRUE(from[static_cast<std::size_t>(i)]->Push(HandOff(ran, target, blocks)));
    }
    // Drain now and then, so that idle workers time out and their Workers get recycled.
    if (r % 8 == 7) {
      ASSERT_TRUE(WaitUntil([&] { return ran.load() == expected; }))
          << "round " << r << ": " << ran.load() << " of " << expected << " tasks ran";
    }
  }
  EXPECT_TRUE(WaitUntil([&] { return ran.load() == expected; }))
      << ran.load() << " of " << expected << " tasks ran";
  stop.store(true);
  resizer.join();
  from.clear();
  to.clear();
  pool->Shutdown();
  EXPECT_EQ(ran.load(), expected);
}

}  // namespace
}  // namespace plexus
