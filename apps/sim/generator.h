// Generator offers calls at the configured rate from a thread of its own, and admits or sheds
// each: an arrival is refused when the calls in flight reach --max-in-flight or a queue that
// must not drop (a call shard, the CDR or device router, the CDR writer) is in alert. That
// back-pressure keeps memory bounded when the machine cannot serve the rate. A generator that
// falls behind (descheduled, or slower than the rate) catches up as fast as admission allows;
// the arrivals still due when the duration ends are counted as shed late, not offered.
//
// Thread safety: Start, Stop and Join from one thread; the counters from any thread.

#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <thread>

#include "engine.h"
#include "options.h"

namespace sim {

class Generator {
 public:
  Generator(const Options& options, CallEngine& engine, std::function<bool()> congested)
      : options_(options), engine_(engine), congested_(std::move(congested)) {}
  ~Generator() { Join(); }
  Generator(const Generator&) = delete;
  Generator& operator=(const Generator&) = delete;

  void Start();
  // Stops offering calls (Done() becomes true soon after).
  void Stop() { stop_.store(true, std::memory_order_relaxed); }
  void Join() {
    if (thread_.joinable()) thread_.join();
  }
  // The duration elapsed, the call limit was reached, or Stop was called.
  bool Done() const { return done_.load(std::memory_order_acquire); }

  std::uint64_t Offered() const { return offered_.load(std::memory_order_relaxed); }
  std::uint64_t ShedAdmission() const { return shed_admission_.load(std::memory_order_relaxed); }
  std::uint64_t ShedLate() const { return shed_late_.load(std::memory_order_relaxed); }

 private:
  void Run();

  const Options options_;
  CallEngine& engine_;
  std::function<bool()> congested_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> done_{false};
  std::atomic<std::uint64_t> offered_{0};
  std::atomic<std::uint64_t> shed_admission_{0};
  std::atomic<std::uint64_t> shed_late_{0};
};

}  // namespace sim
