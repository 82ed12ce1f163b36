// What the resync ordering costs a frame when no resync runs: the receive path's ResyncGate
// (Hold and EndLive around the local publish) and the send path's DumpFence (Enter and Exit
// around the send), each beside its anchor, the single acquire load the receive path paid for
// its watermark check before.

#include <benchmark/benchmark.h>

#include <atomic>
#include <cstdint>

#include "dump_fence.h"
#include "resync_gate.h"

namespace {

using plexus::cluster::cluster_internal::DumpFence;
using plexus::cluster::cluster_internal::ResyncGate;

// The anchor: one acquire load and the "publish" (a counter the compiler must keep).
void BM_ResyncOrder_AnchorAcquireLoad(benchmark::State& state) {
  std::atomic<bool> flag{false};
  std::uint64_t published = 0;
  for (auto _ : state) {
    if (!flag.load(std::memory_order_acquire)) ++published;
    benchmark::DoNotOptimize(published);
  }
}
BENCHMARK(BM_ResyncOrder_AnchorAcquireLoad);

void BM_ResyncOrder_ReceiveGate(benchmark::State& state) {
  ResyncGate<std::uint64_t> gate;
  std::uint64_t published = 0;
  std::uint64_t seq = 0;
  for (auto _ : state) {
    std::uint64_t frame = ++seq;
    if (!gate.Hold(/*node=*/7, seq, frame)) {
      ++published;
      benchmark::DoNotOptimize(published);
      gate.EndLive();
    }
  }
}
BENCHMARK(BM_ResyncOrder_ReceiveGate);

void BM_ResyncOrder_SendFence(benchmark::State& state) {
  DumpFence fence;
  std::uint64_t sent = 0;
  for (auto _ : state) {
    fence.Enter();
    ++sent;
    benchmark::DoNotOptimize(sent);
    fence.Exit();
  }
}
BENCHMARK(BM_ResyncOrder_SendFence);

}  // namespace
