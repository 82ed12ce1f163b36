#include "run.h"

#include <chrono>
#include <cstdio>
#include <thread>

#include "alerts.h"
#include "cluster.h"
#include "consumers.h"
#include "engine.h"
#include "generator.h"
#include "messages.h"
#include "operator_view.h"
#include "plexus/bus/bus_stats.h"
#include "plexus/bus/cache_pattern.h"
#include "plexus/core/ref_debug.h"
#include "plexus/exec/thread_pool.h"
#include "plexus/ops/counter.h"
#include "plexus/sync/lock_order.h"
#include "progress.h"
#include "report.h"
#include "signals.h"

namespace sim {

namespace {

using std::chrono::milliseconds;
constexpr milliseconds kTick{20};
// How long the calls in flight get to finish on their own after the last arrival, before
// they are cut short; and how long after that before the run gives up on them.
constexpr std::chrono::seconds kDrainGrace{30};
constexpr std::chrono::seconds kDrainGiveUp{10};

std::FILE* OpenEvents(const std::string& path) {
  if (path.empty()) return nullptr;
  if (path == "-") return stdout;
  return std::fopen(path.c_str(), "w");
}

// Waits, showing progress, until `done` or `limit` passed; true if done.
template <class Done>
bool WaitFor(Done done, std::chrono::steady_clock::duration limit, Progress& progress) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(kTick);
    progress.Tick();
  }
  return true;
}

void Gather(Figures& f, const CallEngine& engine, const Generator& generator,
            const Consumers& consumers, const CdrWriter& cdr) {
  const EngineCounters& c = engine.Counters();
  f.offered = generator.Offered();
  f.shed_admission = generator.ShedAdmission();
  f.shed_late = generator.ShedLate();
  f.started = c.started.load();
  f.finished = c.finished.load();
  f.peak_in_flight = c.peak_in_flight.load();
  for (std::size_t d = 0; d < kDispositions; ++d) f.dispositions[d] = c.dispositions[d].load();
  f.transactions = c.transactions.load();
  f.timers_scheduled = c.timers_scheduled.load();
  f.timers_fired = c.timers_fired.load();
  f.timers_stale = c.timers_stale.load();
  f.timers_cancelled = c.timers_cancelled.load();
  f.published = c.events_published.load();
  f.delivered = consumers.Delivered();
  f.stream_lines = consumers.StreamLines();
  f.stream_dropped = consumers.StreamDropped();
  const LatencyHistogram& latency = consumers.Devices().latency;
  f.latency_samples = latency.Samples();
  const double percentiles[] = {0.5, 0.9, 0.99, 0.999};
  for (int i = 0; i < 4; ++i) f.latency_us[i] = latency.PercentileNanos(percentiles[i]) / 1e3;
  f.latency_us[4] = static_cast<double>(latency.MaxNanos()) / 1e3;
  f.queues.push_back({"call shards", engine.MaxDepth(), 0});
  for (const auto& q : consumers.Queues()) f.queues.push_back({q.name, q.max_depth, q.dropped});
  f.queues.push_back({"cdr writer", cdr.MaxDepth(), 0});
  f.cdr_routed = consumers.CdrRecords();
  f.devices_in_use = consumers.Devices().in_use.load();
  f.devices_peak_in_use = consumers.Devices().peak_in_use;
}

}  // namespace

int Run(const Options& options) {
  // The view serves while the calls run and stops before the leak check below, so that a
  // request in flight holds no reference then.
  // The cluster outlives the view (whose "cluster" section reads it) and goes before the leak
  // check (its topic and subscriptions are the run's).
  std::unique_ptr<SimCluster> cluster;
  if (!options.nats.empty()) {
    ClusterOptions c{.node = options.node_id,
                     .cluster = options.cluster_name,
                     .heartbeat_ms = options.heartbeat_ms};
    for (std::size_t start = 0;;) {
      const std::size_t comma = options.nats.find(',', start);
      c.servers.push_back(
          options.nats.substr(start, comma - (comma == std::string::npos ? 0 : start)));
      if (comma == std::string::npos) break;
      start = comma + 1;
    }
    cluster = SimCluster::Start(c);
    if (cluster == nullptr) return 2;
  }
  OperatorViewHandle view;
  if (!options.listen.empty()) {
    std::vector<plexus::ops::Section> sections;
    if (cluster != nullptr) {
      sections.push_back(
          {.name = "cluster", .title = "Cluster", .json = [&cluster] { return cluster->Json(); }});
    }
    view = StartOperatorView(options.listen, std::move(sections));
    if (view == nullptr) return 2;
  }
  std::FILE* events = OpenEvents(options.events);
  if (!options.events.empty() && events == nullptr) {
    std::fprintf(stderr, "plexus_sim: --events: cannot open %s\n", options.events.c_str());
    return 2;
  }
  if (options.checks) {
    plexus::EnableRefDebugging(true);
    plexus::EnableLockOrderValidation(true);
  }
  InstallStopSignals();
  (void)CallSnapshotType(), (void)CallEventType(), (void)CallEndedType();

  Figures f;
  f.options = options;
  {
    AlertLog alerts;
    plexus::Ref<plexus::ThreadPool> pool =
        plexus::ThreadPool::Create({.name = "sim", .initial_size = options.threads});
    plexus::Ref<plexus::CachePatternAll> calls =
        plexus::CachePatternAll::Create("calls", &CallIdOf);
    CdrWriter cdr;
    if (const std::string error = cdr.Open(options.cdr, options.queue_limit); !error.empty()) {
      std::fprintf(stderr, "plexus_sim: --cdr: %s: %s\n", options.cdr.c_str(), error.c_str());
      return 2;
    }
    f.cdr_path = cdr.Path();
    Consumers consumers(calls->GetTopic(), pool,
                        {.devices = options.devices,
                         .queue_limit = options.queue_limit,
                         .on_device_change =
                             [&cluster](std::uint32_t device, bool in_use) {
                               if (cluster != nullptr) cluster->Publish(device, in_use);
                             }},
                        cdr, events);
    // The operator view charts it (calls per second); counted whether or not the view is on,
    // at the cost of one relaxed increment a call.
    plexus::ops::Counter calls_counter("calls", "Calls set up by the simulator.");
    CallEngine engine(pool, calls,
                      {.shards = 2 * options.threads,
                       .queue_limit = options.queue_limit,
                       .calls_counter = &calls_counter});
    Generator generator(options, engine,
                        [&] { return engine.Congested() || consumers.Congested(); });
    const char* phase = "calls";
    Progress progress([&] {
      return ProgressSample{
          engine.Counters().in_flight.load(std::memory_order_relaxed),
          engine.Counters().finished.load(std::memory_order_relaxed),
          engine.Counters().events_published.load(std::memory_order_relaxed),
          std::max(engine.Depth(), consumers.Depth()),
          alerts.Raised(),
          generator.ShedAdmission() + generator.ShedLate() + consumers.StreamDropped(),
          phase};
    });
    f.baseline_rss_kb = CurrentRssKb();

    generator.Start();
    while (!generator.Done() && !StopRequested()) {
      std::this_thread::sleep_for(kTick);
      progress.Tick();
    }
    generator.Stop();
    generator.Join();

    // Drain: the calls in flight finish (or, after a stop signal, are cut short).
    phase = "draining";
    const auto calls_done = [&] { return engine.Counters().in_flight.load() == 0; };
    bool drained = false;
    if (!StopRequested()) {
      drained = WaitFor([&] { return calls_done() || StopRequested(); }, kDrainGrace, progress) &&
                calls_done();
    }
    if (StopRequested()) {
      // Said once the drain starts, so that whoever stops the run can tell its second signal
      // lands on a drain (and exits at once) rather than before one.
      std::fprintf(stderr,
                   "\nplexus_sim: draining %lld calls in flight (%.3g s to finish on their own; "
                   "a second signal exits at once with status %d)\n",
                   static_cast<long long>(engine.Counters().in_flight.load()), options.stop_grace,
                   kSecondSignalStatus);
      if (options.stop_grace > 0) {
        drained = WaitFor(calls_done,
                          std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                              std::chrono::duration<double>(options.stop_grace)),
                          progress);
      }
    }
    f.interrupted = StopRequested();
    if (!drained) {
      engine.HangUpAll();
      (void)WaitFor(calls_done, kDrainGiveUp, progress);
    }
    f.seconds = progress.Elapsed();
    engine.Shutdown();
    const auto groups_gone = [&] {
      return engine.Counters().dialogs_alive.load() == 0 &&
             engine.Counters().transactions_alive.load() == 0;
    };
    (void)WaitFor(groups_gone, kDrainGiveUp, progress);
    consumers.UnsubscribeAndJoin();
    progress.Finish();
    f.cdr_rows = cdr.Close();
    f.cdr_transactions = cdr.Transactions();
    f.cdr_failures = cdr.Failures();
    Gather(f, engine, generator, consumers, cdr);
    const plexus::TopicStats all = calls->GetTopic()->Stats();
    f.on_all_topic = all.published + all.forwarded_in;
    f.cache_entries = calls->GetCache()->Stats().entries;
    f.dialogs_alive = engine.Counters().dialogs_alive.load();
    f.transactions_alive = engine.Counters().transactions_alive.load();
    f.alerts = alerts.Raised();
    f.alert_queues = alerts.Queues();
    f.peak_rss_kb = std::max(progress.PeakRssKb(), PeakRssKb());
    pool->Shutdown();
  }
  view.reset();
  if (cluster != nullptr) {
    cluster->Stop();
    f.cluster = cluster->Figures();
    cluster.reset();
  }
  // Everything the run made is gone: what is still alive leaked.
  f.live_topics = plexus::LiveTopicCount();
  f.live_subscriptions = plexus::LiveSubscriptionCount();
  std::fflush(stdout);  // the leak report, if any, goes to stderr
  f.leaked_references = options.checks ? static_cast<std::int64_t>(plexus::ReportRefLeaks()) : -1;
  f.lock_order_reports = plexus::LockOrderViolationCount();
  if (events != nullptr && events != stdout) std::fclose(events);

  const bool ok = CheckInvariants(f);
  const std::string report = options.report == ReportFormat::kJson ? JsonReport(f) : TextReport(f);
  std::fwrite(report.data(), 1, report.size(), stdout);
  std::fflush(stdout);
  return ok ? 0 : 1;
}

}  // namespace sim
