// Group-lock benchmarks: plexus::GroupLock beside the anchors it is judged against
// (std::mutex, std::recursive_mutex, a bare atomic counter, absl::Mutex with and without its
// deadlock detector), so every result reads as a ratio taken in the same run.
//
// These functions are compiled into plexus_bench with every other bench/*.cc; bench/README.md
// lists their results as ratios against the targets. Keep the names stable: bench/README.md
// refers to them.
//
// Conventions shared by every row, so that rows compare like with like:
//   * Each iteration is one operation pair (acquire+release, add_ref+dec_ref, ...), and the
//     "critical section" is benchmark::ClobberMemory(): it forces the lock's own stores to be
//     made (the compiler could otherwise merge an inlined fast path's stores across the loop),
//     and costs nothing itself. Anchors get the same clobber.
//   * The process is made multi-threaded before any single-thread row runs (see
//     EnsureMultiThreadedProcess). A server always is, and both sides have a cheaper path while
//     the process has never had a second thread: glibc's mutexes drop the lock prefix, and
//     GroupLock (like libstdc++'s shared_ptr) uses plain stores. Without this, each row would
//     depend on whether a threaded row ran before it. PLEXUS_BENCH_SINGLE_THREADED_PROCESS=1
//     skips it, to measure that path: PJLIB's reference figures were taken that way (their
//     std::mutex anchor, 3.40 ns, matches a single-threaded process here, not a threaded one),
//     so the like-for-like comparison with PJLIB uses it.
//   * Rows that switch on reference debugging or lock-order validation switch it off again at
//     the end, and are registered last, so that whatever either mode leaves behind (tables,
//     process-wide "was ever on" flags) cannot slow the plain rows.
//     BM_GroupLock_AcquireRelease_AfterValidation runs after them and shows whether plain
//     acquire+release still costs what it did before validation was ever switched on.
//   * Contended rows: Google Benchmark reports, for a threaded row, wall time divided by the
//     iterations of all threads, i.e. ns per operation of the pair of threads together, which
//     is how PJLIB's 2-thread figure is given. Their items/s would be per CPU-second (the
//     library divides by the CPU time of both threads), so it is not reported for them.

#include <absl/synchronization/mutex.h>
#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "alloc_counter.h"
#include "plexus/core/ref.h"
#include "plexus/core/ref_debug.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/lock_order.h"

namespace {

using plexus::GroupLock;
using plexus::Ref;

// Starts and joins one thread, once. glibc clears __libc_single_threaded when the first thread
// is created and never sets it again, so afterwards every lock takes its multi-threaded path.
// The environment is read on every call (outside the timed loop), so that a program running
// these benchmarks in-process (plexus_demo) can measure some rows single-threaded first.
void EnsureMultiThreadedProcess() {
  const char* keep_single = std::getenv("PLEXUS_BENCH_SINGLE_THREADED_PROCESS");
  if (keep_single != nullptr && keep_single[0] == '1') return;
  static const bool started = [] {
    std::thread([] {}).join();
    return true;
  }();
  (void)started;
}

// Lock classes for the nested rows: two named classes give the validator one edge
// (outer -> inner) to check on every nested acquisition.
plexus::LockClass kOuterClass("bench.group_lock.outer");
plexus::LockClass kInnerClass("bench.group_lock.inner");

// -----------------------------------------------------------------------------
// Uncontended acquire + release
// -----------------------------------------------------------------------------

template <class Lockable>
void LockUnlockLoop(benchmark::State& state, Lockable& lock) {
  for (auto _ : state) {
    lock.lock();
    benchmark::ClobberMemory();
    lock.unlock();
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_GroupLock_AcquireRelease(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  Ref<GroupLock> group = GroupLock::Create();
  for (auto _ : state) {
    group->Acquire();
    benchmark::ClobberMemory();
    benchmark::DoNotOptimize(group->Release());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_StdRecursiveMutex_LockUnlock(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  std::recursive_mutex mu;
  LockUnlockLoop(state, mu);
}

void BM_StdMutex_LockUnlock(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  std::mutex mu;
  LockUnlockLoop(state, mu);
}

// One std::mutex chained before the group's own lock (PJLIB's usual shape: an external lock
// that code also takes on its own), so each acquire takes two locks.
void BM_GroupLock_AcquireRelease_Chained1(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  Ref<GroupLock> group = GroupLock::Create();
  std::mutex external;
  group->Chain(external, -1);
  for (auto _ : state) {
    group->Acquire();
    benchmark::ClobberMemory();
    benchmark::DoNotOptimize(group->Release());
  }
  group->Unchain(external);
  state.SetItemsProcessed(state.iterations());
}

// -----------------------------------------------------------------------------
// Reference counting
// -----------------------------------------------------------------------------

void BM_GroupLock_AddRefDecRef(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  Ref<GroupLock> group = GroupLock::Create();
  for (auto _ : state) {
    group->AddRef();
    benchmark::DoNotOptimize(group->DecRef());
  }
  state.SetItemsProcessed(state.iterations());
}

// The floor for any shared reference count: one atomic increment and one decrement whose
// result is looked at, with the orderings a count needs (relaxed up, acq_rel down).
void BM_Atomic_IncDec(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  std::atomic<std::uint64_t> count{1};
  for (auto _ : state) {
    count.fetch_add(1, std::memory_order_relaxed);
    benchmark::DoNotOptimize(count.fetch_sub(1, std::memory_order_acq_rel));
  }
  state.SetItemsProcessed(state.iterations());
}

// -----------------------------------------------------------------------------
// Lifetime
// -----------------------------------------------------------------------------

void BM_GroupLock_CreateDestroy(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  const std::uint64_t allocations_before = plexus_bench::AllocationCount();
  for (auto _ : state) {
    Ref<GroupLock> group = GroupLock::Create();
    benchmark::DoNotOptimize(group.get());
    // Dropping the only reference destroys the group here, inside the timed loop.
  }
  plexus_bench::ReportAllocationsPerIteration(state, allocations_before);
  state.SetItemsProcessed(state.iterations());
}

// -----------------------------------------------------------------------------
// Nested: two different locks, outer then inner
// -----------------------------------------------------------------------------

void NestedGroupLocks(benchmark::State& state) {
  Ref<GroupLock> outer = GroupLock::Create({.lock_class = &kOuterClass});
  Ref<GroupLock> inner = GroupLock::Create({.lock_class = &kInnerClass});
  for (auto _ : state) {
    outer->Acquire();
    inner->Acquire();
    benchmark::ClobberMemory();
    benchmark::DoNotOptimize(inner->Release());
    benchmark::DoNotOptimize(outer->Release());
  }
  state.SetItemsProcessed(state.iterations());
}

void BM_GroupLock_Nested(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  NestedGroupLocks(state);
}

void BM_StdMutex_Nested(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  std::mutex outer;
  std::mutex inner;
  for (auto _ : state) {
    outer.lock();
    inner.lock();
    benchmark::ClobberMemory();
    inner.unlock();
    outer.unlock();
  }
  state.SetItemsProcessed(state.iterations());
}

void AbslNested(benchmark::State& state, absl::OnDeadlockCycle mode) {
  absl::SetMutexDeadlockDetectionMode(mode);
  {
    absl::Mutex outer;
    absl::Mutex inner;
    for (auto _ : state) {
      outer.Lock();
      inner.Lock();
      benchmark::ClobberMemory();
      inner.Unlock();
      outer.Unlock();
    }
  }
  // Back to abseil's default (kAbort in a build with debug checks, which Debian's is).
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kAbort);
  state.SetItemsProcessed(state.iterations());
}

// abseil's detector is live in Debian's libabsl (built without NDEBUG): every Lock with
// another lock held updates or checks its graph of Mutex instances. kReport and kAbort cost
// the same when no cycle is found; kAbort is abseil's default.
void BM_AbslMutex_Nested_DeadlockDetection(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  AbslNested(state, absl::OnDeadlockCycle::kAbort);
}

void BM_AbslMutex_Nested_NoDetection(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  AbslNested(state, absl::OnDeadlockCycle::kIgnore);
}

// -----------------------------------------------------------------------------
// Contended: two threads, one lock, a tiny critical section
// -----------------------------------------------------------------------------

// Set up by thread 0 before the timed loop and torn down after it; Google Benchmark's
// start/stop barriers order these against the other thread's loop.
Ref<GroupLock> g_contended_group;
std::recursive_mutex g_contended_mutex;
std::uint64_t g_contended_counter = 0;  // guarded by whichever lock the row uses

void BM_GroupLock_Contended(benchmark::State& state) {
  if (state.thread_index() == 0) g_contended_group = GroupLock::Create();
  for (auto _ : state) {
    g_contended_group->Acquire();
    ++g_contended_counter;
    benchmark::ClobberMemory();
    benchmark::DoNotOptimize(g_contended_group->Release());
  }
  if (state.thread_index() == 0) g_contended_group.Reset();
}

void BM_StdRecursiveMutex_Contended(benchmark::State& state) {
  for (auto _ : state) {
    g_contended_mutex.lock();
    ++g_contended_counter;
    benchmark::ClobberMemory();
    g_contended_mutex.unlock();
  }
}

// -----------------------------------------------------------------------------
// Debugging modes (registered last: see the header comment)
// -----------------------------------------------------------------------------

// Reference debugging records who holds each *reference*; holding the lock pins the group
// without a reference, so acquire+release should cost what it costs with debugging off.
void BM_GroupLock_AcquireRelease_RefDebug(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  const bool was_on = plexus::EnableRefDebugging(true);
  {
    Ref<GroupLock> group = GroupLock::Create();
    for (auto _ : state) {
      group->Acquire();
      benchmark::ClobberMemory();
      benchmark::DoNotOptimize(group->Release());
    }
  }
  plexus::EnableRefDebugging(was_on);
  state.SetItemsProcessed(state.iterations());
}

// Not a target row, but the number a PJLIB user compares with PJ_GRP_LOCK_DEBUG: a bare
// add_ref/dec_ref pair with holder recording on (PJLIB takes a process-wide mutex for it).
void BM_GroupLock_AddRefDecRef_RefDebug(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  const bool was_on = plexus::EnableRefDebugging(true);
  {
    Ref<GroupLock> group = GroupLock::Create();
    for (auto _ : state) {
      group->AddRef();
      benchmark::DoNotOptimize(group->DecRef());
    }
  }
  plexus::EnableRefDebugging(was_on);
  state.SetItemsProcessed(state.iterations());
}

void BM_GroupLock_AcquireRelease_Validated(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  const bool was_on = plexus::EnableLockOrderValidation(true);
  {
    Ref<GroupLock> group = GroupLock::Create();
    for (auto _ : state) {
      group->Acquire();
      benchmark::ClobberMemory();
      benchmark::DoNotOptimize(group->Release());
    }
  }
  plexus::EnableLockOrderValidation(was_on);
  state.SetItemsProcessed(state.iterations());
}

// Validation's steady state for a nesting it has seen before: the held chain (outer, inner)
// is found in the cache, so no graph work is done. Compare with abseil's detector above.
void BM_GroupLock_Nested_Validated(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  const bool was_on = plexus::EnableLockOrderValidation(true);
  NestedGroupLocks(state);
  plexus::EnableLockOrderValidation(was_on);
}

// Validation is off again, but it was on once: plain acquire+release should cost what
// BM_GroupLock_AcquireRelease does.
void BM_GroupLock_AcquireRelease_AfterValidation(benchmark::State& state) {
  EnsureMultiThreadedProcess();
  Ref<GroupLock> group = GroupLock::Create();
  for (auto _ : state) {
    group->Acquire();
    benchmark::ClobberMemory();
    benchmark::DoNotOptimize(group->Release());
  }
  state.SetItemsProcessed(state.iterations());
}

// PLEXUS_BENCH_ITERATIONS=<n> fixes every row's iteration count instead of letting Google
// Benchmark find one, so that instruction counts are reproducible: under callgrind, two runs
// with n and 2n iterations give the instructions per operation as (Ir(2n) - Ir(n)) / n.
void FixedIterationsFromEnvironment(benchmark::internal::Benchmark* b) {
  const char* text = std::getenv("PLEXUS_BENCH_ITERATIONS");
  if (text == nullptr) return;
  const long long iterations = std::atoll(text);
  if (iterations > 0) b->Iterations(static_cast<benchmark::IterationCount>(iterations));
}

}  // namespace

// Registration order is run order. Plain rows first; the debugging rows last.
BENCHMARK(BM_GroupLock_AcquireRelease)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_StdRecursiveMutex_LockUnlock)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_StdMutex_LockUnlock)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_AcquireRelease_Chained1)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_AddRefDecRef)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_Atomic_IncDec)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_CreateDestroy)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_Nested)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_StdMutex_Nested)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_AbslMutex_Nested_DeadlockDetection)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_AbslMutex_Nested_NoDetection)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_Contended)->Threads(2)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_StdRecursiveMutex_Contended)->Threads(2)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_AcquireRelease_RefDebug)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_AddRefDecRef_RefDebug)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_AcquireRelease_Validated)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_Nested_Validated)->Apply(FixedIterationsFromEnvironment);
BENCHMARK(BM_GroupLock_AcquireRelease_AfterValidation)->Apply(FixedIterationsFromEnvironment);
