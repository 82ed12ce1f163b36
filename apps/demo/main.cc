// plexus_demo: the project's main program, run by `make demo`.
//
// It shows the message bus doing real work, the way a PBX uses Asterisk's Stasis:
//
//   * Two typed message types, ChannelState and DeviceState, each with a JSON formatter
//     (plexus/bus/json.h, nlohmann-json) and an AMI-style text formatter.
//   * A TopicPool over an "all" topic: per-object topics ("channel/PJSIP/alice-00000001",
//     "device/PJSIP/alice") are created on first use and forwarded into "all".
//   * Several producer threads, each owning a few channels and devices, publish typed events on
//     their objects' topics for a few seconds. Every event carries its producer, a per-producer
//     sequence number and the MonotonicNanos() at which it was published.
//   * Subscribers of every delivery mode:
//       - a pool subscription on "all" (serializer on a shared pool) counting every event,
//         checking that each producer's events arrive in the order it published them, and
//         sampling the publish-to-callback latency;
//       - a typed pool subscription on "all" that takes DeviceState only (a type filter);
//       - a dedicated-thread subscription on "all" counting, sampling latency, and rendering
//         every 256th event as JSON and as text (the work a logging consumer does);
//       - synchronous subscriptions on one channel topic and one device topic of each producer,
//         run on the producer's thread inside the publish.
//   * While it runs, a one-line progress display (every 200 ms): events published, delivered per
//     subscriber kind, the deepest queue.
//   * At the end: the bus statistics listing (BusStatsText, trimmed), a throughput and latency
//     summary, a sample of the formatted events, then every subscription is unsubscribed and
//     joined, and everything is dropped before the reference-leak report.
//
// Reference debugging is on for the whole run (every reference taken is recorded with its
// source location), so the throughput shown is below what plexus_bench measures.
//
// Exit status: 0 only if no event was lost or reordered (every subscriber received exactly the
// events published on the topics it listens to, each producer's in order), every subscription
// got its final message exactly once, and no reference-counted object leaked; 1 otherwise, with
// the reasons.
//
// Options: --seconds=<s> (the flat-out phase; default 3), --paced-seconds=<s> (the latency
// phase; default 1), --producers=<n> (default 4).
//
// The parts: events.h (the message types), options.h (parameters), producers.h (publishing
// threads and their topics), subscribers.h (one subscriber of each kind and its Tally),
// progress.h (the progress line), run.h (the phases), report.h (what is printed), verify.h (the
// checks behind the exit status).

#include <atomic>
#include <cstdio>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "events.h"
#include "options.h"
#include "plexus/bus/topic.h"
#include "plexus/bus/topic_pool.h"
#include "plexus/core/ref.h"
#include "plexus/core/ref_debug.h"
#include "plexus/exec/thread_pool.h"
#include "producers.h"
#include "progress.h"
#include "report.h"
#include "run.h"
#include "subscribers.h"
#include "verify.h"

namespace demo {
namespace {

int Main(int argc, char** argv) {
  const std::optional<Options> parsed = ParseOptions(argc, argv);
  if (!parsed) {
    std::fprintf(stderr,
                 "usage: %s [--seconds=<0-600>] [--paced-seconds=<0-600>] [--producers=<1-%d>]\n",
                 argv[0], kMaxProducers);
    return 1;
  }
  const Options options = *parsed;

  plexus::EnableRefDebugging(true);
  std::vector<std::string> failures;

  if (!ChannelStateType() || !DeviceStateType()) {
    std::fprintf(stderr, "plexus_demo: could not register the message types\n");
    return 1;
  }

  // The bus: a pool for the asynchronous subscribers, and per-object topics forwarded into "all".
  const unsigned hardware = std::thread::hardware_concurrency();
  const std::size_t pool_threads = hardware < 2 ? 2 : hardware;
  plexus::Ref<plexus::ThreadPool> thread_pool =
      plexus::ThreadPool::Create({.name = "demo-bus", .initial_size = pool_threads});
  plexus::Ref<plexus::Topic> all = plexus::Topic::Create("all", "every channel and device event");
  plexus::Ref<plexus::TopicPool> topic_pool = plexus::TopicPool::Create(all);
  PrintBanner(options, pool_threads);

  Producers producers = MakeProducers(*topic_pool, options.producers, failures);
  if (!failures.empty()) {
    std::fprintf(stderr, "plexus_demo: %s\n", failures.front().c_str());
    return 1;
  }
  Subscribers subscribers(options.producers);
  if (!SubscribeAll(subscribers, all, thread_pool, producers)) return 1;

  // Run, then let the asynchronous subscribers catch up.
  std::atomic<int> phase{kFlatOut};
  ProgressDisplay progress(subscribers, producers, phase);
  const FlatOutFigures flat = RunProducers(options, producers, subscribers, phase, progress);
  SetExpectedCounts(subscribers, producers);
  WaitForSubscribersToDrain(subscribers, progress);

  // Report while everything is still alive.
  PrintBusStatistics();
  const std::uint64_t deliveries = CheckDeliveries(subscribers, failures);
  PrintThroughput(flat, pool_threads, options.producers, TotalPublished(producers), deliveries);
  PrintLatency(subscribers);
  PrintFormattedSample(subscribers.dedicated_all);

  // Shut down: unsubscribe and join everything, then drop every reference before the leak
  // report.
  UnsubscribeJoinAndCheckFinals(subscribers, failures);
  for (auto& p : producers) {
    p->channel_topics.clear();
    p->device_topics.clear();
  }
  topic_pool = nullptr;
  all = nullptr;
  thread_pool->Shutdown();
  thread_pool = nullptr;
  CheckNothingLeaked(failures);
  return Verdict(failures);
}

}  // namespace
}  // namespace demo

int main(int argc, char** argv) {
  return demo::Main(argc, argv);
}
