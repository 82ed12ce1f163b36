// Operator-view benchmarks (OP09): what the view costs a running workload while it is
// scraped, beside the same workload with the view off, in one binary and run.
//
// Rows:
//   BM_Ops_Publish_ViewOff               anchor: one publisher (the benchmark thread) publishes
//                                        one message per iteration on a topic with 4
//                                        synchronous subscriptions (the whole delivery runs on
//                                        the publisher, so items/s is the workload's rate),
//                                        beside one idle thread (see the row).
//   BM_Ops_Publish_ViewScraped/<ms>      the same, with the operator view on and a thread
//                                        fetching /metrics every <ms> milliseconds (1000 is
//                                        OP09's "scraped every second"; 10 magnifies the cost a
//                                        hundredfold). scrapes = how many were served.
//
//   BM_Ops_MetricsPage/<topics>          one /metrics page rendered in-process (snapshot, metric
//                                        families, text) with <topics> topics of one
//                                        subscription each: the CPU a scrape costs the process.
//                                        At one scrape a second, OP09's 5% is 50 ms of it.
//
// Read ViewScraped/1000 over ViewOff: OP09's budget is a drop of at most 5%. On a loaded
// machine the ratio is noisy; MetricsPage's CPU time per second of scraping is the figure
// that does not depend on the neighbours.

#include <arpa/inet.h>
#include <benchmark/benchmark.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "plexus/bus/bus.h"
#include "plexus/ops/metrics.h"
#include "plexus/ops/operator_view.h"

namespace {

using namespace plexus;

const TypedMessageType<int>& OpsBenchType() {
  static const auto type = TypedMessageType<int>::Create("OpsBench.Int");
  return type;
}

// One GET /metrics over a fresh loopback connection; true on a complete answer.
bool Scrape(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bool ok = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  static constexpr char kRequest[] = "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n";
  ok = ok && ::send(fd, kRequest, sizeof kRequest - 1, MSG_NOSIGNAL) > 0;
  char buf[65536];
  std::size_t total = 0;
  for (ssize_t n; ok && (n = ::recv(fd, buf, sizeof buf, 0)) > 0;)
    total += static_cast<std::size_t>(n);
  ::close(fd);
  return ok && total > 0;
}

struct Workload {
  Workload() : topic(Topic::Create("ops_bench.topic")) {
    for (int i = 0; i < 4; ++i) {
      subs.push_back(Subscription::Create(
          topic,
          [this](const Message&, bool) { delivered.fetch_add(1, std::memory_order_relaxed); },
          SubscriptionOptions{.mode = DeliveryMode::kSynchronous}));
    }
  }
  ~Workload() {
    for (Subscription& s : subs) s.UnsubscribeAndJoin();
  }
  void Run(benchmark::State& state) {
    int n = 0;
    for (auto _ : state) topic->Publish(OpsBenchType(), n++);
    state.SetItemsProcessed(state.iterations());
  }

  Ref<Topic> topic;
  std::vector<Subscription> subs;
  std::atomic<std::uint64_t> delivered{0};
};

void BM_Ops_Publish_ViewOff(benchmark::State& state) {
  // An idle thread, so that the process is multi-threaded as with the view on (and as any
  // server is): plexus's single-threaded fast paths (plain stores instead of atomic
  // read-modify-writes) would otherwise flatter this row by a third.
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::thread idle([&] {
    std::unique_lock lock(mu);
    cv.wait(lock, [&] { return stop; });
  });
  Workload w;
  w.Run(state);
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  idle.join();
}
BENCHMARK(BM_Ops_Publish_ViewOff)->UseRealTime();

void BM_Ops_Publish_ViewScraped(benchmark::State& state) {
  Workload w;
  auto view = ops::OperatorView::Start();
  if (view == nullptr) {
    state.SkipWithError("the operator view did not start");
    return;
  }
  const auto period = std::chrono::milliseconds(state.range(0));
  std::mutex mu;
  std::condition_variable cv;
  bool stop = false;
  std::atomic<int> scrapes{0};
  std::thread scraper([&] {
    std::unique_lock lock(mu);
    while (!stop) {
      lock.unlock();
      if (Scrape(view->Port())) scrapes.fetch_add(1);
      lock.lock();
      cv.wait_for(lock, period, [&] { return stop; });
    }
  });
  w.Run(state);
  {
    std::lock_guard lock(mu);
    stop = true;
  }
  cv.notify_all();
  scraper.join();
  state.counters["scrapes"] = scrapes.load();
}
BENCHMARK(BM_Ops_Publish_ViewScraped)->Arg(1000)->Arg(10)->UseRealTime();

void BM_Ops_MetricsPage(benchmark::State& state) {
  std::vector<Ref<Topic>> topics;
  std::vector<Subscription> subs;
  for (int i = 0; i < state.range(0); ++i) {
    topics.push_back(Topic::Create("ops_bench.page." + std::to_string(i)));
    subs.push_back(Subscription::Create(
        topics.back(), [](const Message&, bool) {},
        SubscriptionOptions{.mode = DeliveryMode::kSynchronous}));
  }
  std::size_t bytes = 0;
  for (auto _ : state) {
    const std::string page = ops::MetricsText(ops::TakeSnapshot(ops::SnapshotParts::kMetrics));
    bytes = page.size();
    benchmark::DoNotOptimize(page.data());
  }
  state.counters["page_bytes"] = static_cast<double>(bytes);
  for (Subscription& s : subs) s.UnsubscribeAndJoin();
}
BENCHMARK(BM_Ops_MetricsPage)->Arg(10)->Arg(100)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
