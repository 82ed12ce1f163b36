// plexus_demo: the project's main program, run by `make demo`.
//
// It shows the message bus (issue 4) doing real work, the way a PBX uses Asterisk's Stasis:
//
//   * Two typed message types, ChannelState and DeviceState, each with a JSON formatter
//     (plexus/bus/json.h, nlohmann-json) and an AMI-style text formatter.
//   * A TopicPool over an "all" topic: per-object topics ("channel/PJSIP/alice-0001",
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

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "plexus/bus/bus.h"
#include "plexus/bus/json.h"
#include "plexus/core/clock.h"
#include "plexus/core/ref.h"
#include "plexus/core/ref_debug.h"
#include "plexus/exec/thread_pool.h"

namespace {

using plexus::Message;
using plexus::Ref;
using plexus::Subscription;
using plexus::SubscriptionOptions;
using plexus::Topic;

// -----------------------------------------------------------------------------
// The events
// -----------------------------------------------------------------------------

// Asterisk's channel states (AST_STATE_*), as AMI names them.
constexpr std::array<const char*, 8> kChannelStateNames = {"Down", "Rsrvd",   "OffHook", "Dialing",
                                                           "Ring", "Ringing", "Up",      "Busy"};
// Asterisk's device states (AST_DEVICE_*).
constexpr std::array<const char*, 5> kDeviceStateNames = {"NOT_INUSE", "INUSE", "BUSY", "RINGING",
                                                          "ONHOLD"};

// What every event carries besides its own fields: who published it, in what order, when.
struct Origin {
  int producer = 0;
  std::uint64_t seq = 0;     // per producer, over both types
  std::int64_t sent_ns = 0;  // MonotonicNanos() at publish
  bool paced = false;        // published in the paced (latency) phase
};

struct ChannelState {
  std::string channel;  // "PJSIP/alice-00000001"
  int state = 0;        // index into kChannelStateNames
  Origin origin;
};

struct DeviceState {
  std::string device;  // "PJSIP/alice"
  int state = 0;       // index into kDeviceStateNames
  Origin origin;
};

using Fields = std::vector<std::pair<std::string, std::string>>;

const plexus::TypedMessageType<ChannelState>& ChannelStateType() {
  static const auto type = plexus::TypedMessageType<ChannelState>::Create(
      "ChannelState",
      {.to_json = plexus::JsonFormatter<ChannelState>([](const ChannelState& cs) {
         return nlohmann::json{{"type", "ChannelStateChange"},
                               {"channel", cs.channel},
                               {"state", kChannelStateNames[static_cast<std::size_t>(cs.state)]},
                               {"state_code", cs.state},
                               {"producer", cs.origin.producer},
                               {"seq", cs.origin.seq}};
       }),
       .to_text = plexus::TextFormatter<ChannelState>([](const ChannelState& cs) {
         return Fields{
             {"Event", "Newstate"},
             {"Channel", cs.channel},
             {"ChannelState", std::to_string(cs.state)},
             {"ChannelStateDesc", kChannelStateNames[static_cast<std::size_t>(cs.state)]}};
       })});
  return type;
}

const plexus::TypedMessageType<DeviceState>& DeviceStateType() {
  static const auto type = plexus::TypedMessageType<DeviceState>::Create(
      "DeviceState",
      {.to_json = plexus::JsonFormatter<DeviceState>([](const DeviceState& ds) {
         return nlohmann::json{{"type", "DeviceStateChanged"},
                               {"device", ds.device},
                               {"state", kDeviceStateNames[static_cast<std::size_t>(ds.state)]},
                               {"producer", ds.origin.producer},
                               {"seq", ds.origin.seq}};
       }),
       .to_text = plexus::TextFormatter<DeviceState>([](const DeviceState& ds) {
         return Fields{{"Event", "DeviceStateChange"},
                       {"Device", ds.device},
                       {"State", kDeviceStateNames[static_cast<std::size_t>(ds.state)]}};
       })});
  return type;
}

// The origin of one of our events, or null for anything else (subscription-change notices).
const Origin* OriginOf(const Message& m) {
  if (const ChannelState* cs = ChannelStateType().Get(m)) return &cs->origin;
  if (const DeviceState* ds = DeviceStateType().Get(m)) return &ds->origin;
  return nullptr;
}

// -----------------------------------------------------------------------------
// Configuration
// -----------------------------------------------------------------------------

constexpr const char* kUserNames[] = {"alice", "bob",   "carol", "dave",
                                      "erin",  "frank", "grace", "heidi"};
constexpr int kMaxProducers = static_cast<int>(std::size(kUserNames));
constexpr int kChannelsPerProducer = 8;
constexpr int kDevicesPerProducer = 2;
// In the flat-out phase a producer waits (yields) while the producers together are more than
// this many events ahead of the slowest asynchronous subscriber: the demo shows a bus keeping
// up, not an unbounded queue growing. The asynchronous subscriptions' congestion alerts are set
// above it (they would log a warning at each crossing of the default 500).
constexpr std::uint64_t kWindow = 4096;
constexpr std::uint32_t kHighWater = 4 * kWindow;
constexpr std::uint32_t kLowWater = kWindow;
// In the paced phase each producer publishes one event, then sleeps this long: the bus is
// nearly idle, so the latency measured is the bus's, not the time spent behind a full queue.
constexpr std::chrono::microseconds kPacedInterval{250};
constexpr int kFormatEvery = 256;       // the dedicated subscriber renders every 256th event
constexpr int kLatencySampleEvery = 4;  // flat-out phase: latency recorded for every 4th event
constexpr std::size_t kMaxLatencySamples = 4'000'000;

enum Phase : int { kFlatOut = 0, kPaced = 1, kStop = 2 };

struct Options {
  double seconds = 3.0;        // flat-out phase
  double paced_seconds = 1.0;  // paced (latency) phase
  int producers = 4;
};

std::optional<Options> ParseOptions(int argc, char** argv) {
  Options options;
  for (int i = 1; i < argc; ++i) {
    std::string_view arg = argv[i];
    if (arg.starts_with("--seconds=")) {
      options.seconds = std::atof(argv[i] + std::strlen("--seconds="));
      if (options.seconds <= 0 || options.seconds > 600) return std::nullopt;
    } else if (arg.starts_with("--paced-seconds=")) {
      options.paced_seconds = std::atof(argv[i] + std::strlen("--paced-seconds="));
      if (options.paced_seconds < 0 || options.paced_seconds > 600) return std::nullopt;
    } else if (arg.starts_with("--producers=")) {
      options.producers = std::atoi(argv[i] + std::strlen("--producers="));
      if (options.producers < 1 || options.producers > kMaxProducers) return std::nullopt;
    } else {
      return std::nullopt;
    }
  }
  return options;
}

// -----------------------------------------------------------------------------
// Subscribers' state
// -----------------------------------------------------------------------------

// A counter written by one serialized callback and read by the main thread.
struct alignas(64) Count {
  std::atomic<std::uint64_t> n{0};
  void Bump() noexcept {
    n.store(n.load(std::memory_order_relaxed) + 1, std::memory_order_release);
  }
  std::uint64_t Get() const noexcept { return n.load(std::memory_order_acquire); }
};

// What one subscription saw. Fields other than the atomics are touched only by its callback
// (serialized) until it has been joined.
struct Tally {
  std::string label;
  Count events;                                // our events received
  std::atomic<int> finals{0};                  // final messages received
  std::atomic<int> after_final{0};             // callbacks after the final message (must stay 0)
  std::vector<std::uint64_t> last_seq;         // per producer: the last seq seen, +1 (0: none)
  std::uint64_t out_of_order = 0;              // events older than one already seen from a producer
  std::vector<std::int64_t> latency_busy_ns;   // flat-out phase, every kLatencySampleEvery-th
  std::vector<std::int64_t> latency_paced_ns;  // paced phase, every event
  std::uint64_t formatted = 0;                 // events rendered (dedicated subscriber)
  std::string last_json;
  std::string last_text;
  std::uint64_t expected = 0;                // computed after the producers stop
  std::optional<Subscription> subscription;  // set once subscribed; reset() drops the handle

  explicit Tally(std::string l, int producers)
      : label(std::move(l)), last_seq(static_cast<std::size_t>(producers), 0) {
    latency_busy_ns.reserve(1 << 16);
    latency_paced_ns.reserve(1 << 16);
  }

  void Final() {
    if (finals.fetch_add(1, std::memory_order_relaxed) != 0) {
      after_final.fetch_add(1, std::memory_order_relaxed);
    }
  }

  void See(const Origin& origin, bool check_order, bool sample_latency) {
    if (finals.load(std::memory_order_relaxed) != 0) after_final.fetch_add(1);
    if (check_order) {
      std::uint64_t& last = last_seq[static_cast<std::size_t>(origin.producer)];
      if (origin.seq + 1 <= last) ++out_of_order;
      last = origin.seq + 1;
    }
    if (sample_latency) {
      std::vector<std::int64_t>& samples = origin.paced ? latency_paced_ns : latency_busy_ns;
      if ((origin.paced || origin.seq % kLatencySampleEvery == 0) &&
          samples.size() < kMaxLatencySamples) {
        samples.push_back(plexus::MonotonicNanos() - origin.sent_ns);
      }
    }
    events.Bump();
  }
};

// -----------------------------------------------------------------------------
// Producers
// -----------------------------------------------------------------------------

struct Producer {
  int index = 0;
  std::vector<Ref<Topic>> channel_topics;
  std::vector<std::string> channel_names;
  std::vector<Ref<Topic>> device_topics;
  std::vector<std::string> device_names;
  // Events published per topic (written by the producer thread, read after it is joined).
  std::vector<std::uint64_t> channel_published;
  std::vector<std::uint64_t> device_published;
  std::uint64_t channel_events = 0;
  std::uint64_t device_events = 0;
  alignas(64) std::atomic<std::uint64_t> published{0};
};

// Publishes events on the producer's topics: four channel-state changes for each device-state
// change, objects taken in turn, states cycling as a call's would. Flat out (within the window)
// in the first phase, one event per kPacedInterval in the second, until told to stop.
void RunProducer(Producer& p, const std::atomic<int>& phase,
                 const std::vector<std::unique_ptr<Producer>>& everyone,
                 const std::vector<const Count*>& throttle_on) {
  const auto& channel_type = ChannelStateType();
  const auto& device_type = DeviceStateType();
  const auto published_by_everyone = [&everyone] {
    std::uint64_t n = 0;
    for (const auto& q : everyone) n += q->published.load(std::memory_order_acquire);
    return n;
  };
  std::uint64_t seq = 0;
  std::size_t next_channel = 0;
  std::size_t next_device = 0;
  const auto publish_one = [&](bool paced) {
    const Origin origin{p.index, seq, plexus::MonotonicNanos(), paced};
    if (seq % 5 != 4) {
      const std::size_t c = next_channel++ % p.channel_topics.size();
      const int state = static_cast<int>((seq / 5 + c) % kChannelStateNames.size());
      p.channel_topics[c]->Publish(channel_type, ChannelState{p.channel_names[c], state, origin});
      ++p.channel_published[c];
      ++p.channel_events;
    } else {
      const std::size_t d = next_device++ % p.device_topics.size();
      const int state = static_cast<int>((seq / 5 + d) % kDeviceStateNames.size());
      p.device_topics[d]->Publish(device_type, DeviceState{p.device_names[d], state, origin});
      ++p.device_published[d];
      ++p.device_events;
    }
    ++seq;
  };
  for (int now = phase.load(std::memory_order_relaxed); now != kStop;
       now = phase.load(std::memory_order_relaxed)) {
    if (now == kPaced) {
      publish_one(true);
      p.published.store(seq, std::memory_order_release);
      std::this_thread::sleep_for(kPacedInterval);
      continue;
    }
    for (int burst = 0; burst < 64; ++burst) publish_one(false);
    p.published.store(seq, std::memory_order_release);
    // Stay within kWindow events of the slowest asynchronous subscriber of "all".
    for (const Count* c : throttle_on) {
      while (published_by_everyone() > c->Get() + kWindow &&
             phase.load(std::memory_order_relaxed) == kFlatOut) {
        std::this_thread::yield();
      }
    }
  }
}

// -----------------------------------------------------------------------------
// Reporting helpers
// -----------------------------------------------------------------------------

std::string Grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

double Percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(index, sorted.size() - 1)]);
}

void PrintLatency(const std::string& label, std::vector<std::int64_t> samples) {
  std::sort(samples.begin(), samples.end());
  std::printf("  %-44s median %7.1f us  p99 %8.1f us  p99.9 %8.1f us  (%s samples)\n",
              label.c_str(), Percentile(samples, 0.5) / 1e3, Percentile(samples, 0.99) / 1e3,
              Percentile(samples, 0.999) / 1e3, Grouped(samples.size()).c_str());
}

// The statistics listing: its topic table trimmed to `max_topics` rows, its subscription
// table whole.
void PrintStats(const std::string& text, int max_topics) {
  int topic_rows = -1;  // the header is not a row
  bool in_topics = true;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    const std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    if (in_topics && line.empty()) {
      if (topic_rows > max_topics) std::printf("  ... (%d more topics)\n", topic_rows - max_topics);
      in_topics = false;
    }
    if (in_topics && ++topic_rows > max_topics) continue;
    std::printf("  %.*s\n", static_cast<int>(line.size()), line.data());
  }
}

}  // namespace

int main(int argc, char** argv) {
  const std::optional<Options> parsed = ParseOptions(argc, argv);
  if (!parsed) {
    std::fprintf(stderr,
                 "usage: %s [--seconds=<0-600>] [--paced-seconds=<0-600>] [--producers=<1-%d>]\n",
                 argv[0], kMaxProducers);
    return 1;
  }
  const Options options = *parsed;
  const int producer_count = options.producers;

  plexus::EnableRefDebugging(true);
  std::vector<std::string> failures;

  const auto& channel_type = ChannelStateType();
  const auto& device_type = DeviceStateType();
  if (!channel_type || !device_type) {
    std::fprintf(stderr, "plexus_demo: could not register the message types\n");
    return 1;
  }

  const unsigned hardware = std::thread::hardware_concurrency();
  const std::size_t pool_threads = hardware < 2 ? 2 : hardware;
  Ref<plexus::ThreadPool> thread_pool =
      plexus::ThreadPool::Create({.name = "demo-bus", .initial_size = pool_threads});

  Ref<Topic> all = Topic::Create("all", "every channel and device event");
  Ref<plexus::TopicPool> topic_pool = plexus::TopicPool::Create(all);

  std::printf(
      "plexus_demo: the message bus. Node %s, %zu pool threads, %d producers, %.1f s flat out "
      "then %.1f s paced.\n",
      plexus::NodeId::Local().ToString().c_str(), pool_threads, producer_count, options.seconds,
      options.paced_seconds);
  std::printf("Types: %s (formats:%s%s), %s (formats:%s%s). Reference debugging is on.\n\n",
              channel_type->Name().c_str(),
              channel_type->HasFormat(plexus::MessageFormat::kJson) ? " json" : "",
              channel_type->HasFormat(plexus::MessageFormat::kText) ? " text" : "",
              device_type->Name().c_str(),
              device_type->HasFormat(plexus::MessageFormat::kJson) ? " json" : "",
              device_type->HasFormat(plexus::MessageFormat::kText) ? " text" : "");

  // Producers and their per-object topics.
  std::vector<std::unique_ptr<Producer>> producers;
  for (int i = 0; i < producer_count; ++i) {
    auto p = std::make_unique<Producer>();
    p->index = i;
    for (int c = 0; c < kChannelsPerProducer; ++c) {
      char name[64];
      std::snprintf(name, sizeof name, "PJSIP/%s-%08d", kUserNames[i], c + 1);
      p->channel_names.emplace_back(name);
      p->channel_topics.push_back(topic_pool->Get(std::string("channel/") + name));
    }
    for (int d = 0; d < kDevicesPerProducer; ++d) {
      char name[64];
      std::snprintf(name, sizeof name, "PJSIP/%s%s", kUserNames[i], d == 0 ? "" : "-desk");
      p->device_names.emplace_back(name);
      p->device_topics.push_back(topic_pool->Get(std::string("device/") + name));
    }
    for (const auto& t : p->channel_topics) {
      if (!t) failures.push_back("TopicPool::Get returned no topic");
    }
    p->channel_published.assign(p->channel_topics.size(), 0);
    p->device_published.assign(p->device_topics.size(), 0);
    producers.push_back(std::move(p));
  }
  if (!failures.empty()) {
    std::fprintf(stderr, "plexus_demo: %s\n", failures.front().c_str());
    return 1;
  }

  // Subscribers.
  SubscriptionOptions pool_options;
  pool_options.pool = thread_pool;
  pool_options.high_water = kHighWater;
  pool_options.low_water = kLowWater;
  SubscriptionOptions dedicated_options = pool_options;
  dedicated_options.mode = plexus::DeliveryMode::kDedicatedThread;
  dedicated_options.pool = nullptr;
  SubscriptionOptions sync_options;
  sync_options.mode = plexus::DeliveryMode::kSynchronous;

  Tally pool_all("pool on all", producer_count);
  pool_all.subscription = plexus::Subscribe(
      all,
      [t = &pool_all](const Message& m, bool is_final) {
        if (is_final) return t->Final();
        if (const Origin* o = OriginOf(m)) t->See(*o, /*check_order=*/true, /*latency=*/true);
      },
      pool_options);

  Tally typed_all("pool on all, DeviceState only", producer_count);
  typed_all.subscription = plexus::Subscribe(
      all, device_type,
      [t = &typed_all](const DeviceState& ds, const Message&) {
        t->See(ds.origin, /*check_order=*/true, /*latency=*/false);
      },
      pool_options);

  Tally dedicated_all("dedicated thread on all", producer_count);
  dedicated_all.subscription = plexus::Subscribe(
      all,
      [t = &dedicated_all](const Message& m, bool is_final) {
        if (is_final) return t->Final();
        const Origin* o = OriginOf(m);
        if (o == nullptr) return;
        if (t->events.Get() % kFormatEvery == 0) {
          // The work a logging consumer does: render the event in both formats.
          std::optional<std::string> json = m.ToJson();
          std::optional<std::string> text = m.ToText();
          if (json && text) {
            t->last_json = std::move(*json);
            t->last_text = std::move(*text);
            ++t->formatted;
          }
        }
        t->See(*o, /*check_order=*/true, /*latency=*/true);
      },
      dedicated_options);

  // Synchronous subscriptions on the first channel and the first device of each producer.
  std::vector<std::unique_ptr<Tally>> sync_tallies;
  for (const auto& p : producers) {
    for (const Ref<Topic>* topic : {&p->channel_topics.front(), &p->device_topics.front()}) {
      auto t = std::make_unique<Tally>("sync on " + (*topic)->Name(), producer_count);
      t->subscription = plexus::Subscribe(
          *topic,
          [tp = t.get()](const Message& m, bool is_final) {
            if (is_final) return tp->Final();
            if (const Origin* o = OriginOf(m)) tp->See(*o, /*check_order=*/true, false);
          },
          sync_options);
      sync_tallies.push_back(std::move(t));
    }
  }

  std::vector<Tally*> tallies = {&pool_all, &typed_all, &dedicated_all};
  for (const auto& t : sync_tallies) tallies.push_back(t.get());
  for (Tally* t : tallies) {
    if (!t->subscription || !*t->subscription) {
      std::fprintf(stderr, "plexus_demo: Subscribe failed (%s)\n", t->label.c_str());
      return 1;
    }
  }

  // Run.
  std::atomic<int> phase{kFlatOut};
  const std::vector<const Count*> throttle_on = {&pool_all.events, &dedicated_all.events};
  std::vector<std::thread> threads;
  const auto started = std::chrono::steady_clock::now();
  const std::int64_t cpu_started = static_cast<std::int64_t>(std::clock());
  for (auto& p : producers) {
    threads.emplace_back(
        [&p, &phase, &producers, &throttle_on] { RunProducer(*p, phase, producers, throttle_on); });
  }

  const auto published_now = [&producers] {
    std::uint64_t n = 0;
    for (const auto& p : producers) n += p->published.load(std::memory_order_acquire);
    return n;
  };
  const auto sync_delivered_now = [&sync_tallies] {
    std::uint64_t n = 0;
    for (const auto& t : sync_tallies) n += t->events.Get();
    return n;
  };
  const auto delivered_now = [&tallies] {
    std::uint64_t n = 0;
    for (const Tally* t : tallies) n += t->events.Get();
    return n;
  };
  std::size_t max_depth_seen = 0;
  const auto progress = [&](double elapsed) {
    static constexpr const char* kPhaseNames[] = {"flat-out", "paced", "draining"};
    const plexus::SubscriptionStats pool_stats = pool_all.subscription->Stats();
    const plexus::SubscriptionStats dedicated_stats = dedicated_all.subscription->Stats();
    max_depth_seen = std::max({max_depth_seen, pool_stats.max_depth, dedicated_stats.max_depth});
    std::printf(
        "\r[%4.1fs %-8s] published %11s | delivered: pool %11s typed %9s dedicated %11s"
        " sync %10s | depth %zu/%zu max %zu   ",
        elapsed, kPhaseNames[phase.load(std::memory_order_relaxed)],
        Grouped(published_now()).c_str(), Grouped(pool_all.events.Get()).c_str(),
        Grouped(typed_all.events.Get()).c_str(), Grouped(dedicated_all.events.Get()).c_str(),
        Grouped(sync_delivered_now()).c_str(), pool_stats.depth, dedicated_stats.depth,
        max_depth_seen);
    std::fflush(stdout);
  };
  const auto elapsed_s = [&started] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  };

  const auto run_until = [&](double until) {
    for (double now = elapsed_s(); now < until; now = elapsed_s()) {
      std::this_thread::sleep_for(std::chrono::duration<double>(std::min(0.2, until - now)));
      progress(elapsed_s());
    }
  };
  run_until(options.seconds);
  // The flat-out phase's throughput (its queues hold at most about kWindow events).
  const double flat_seconds = elapsed_s();
  const std::uint64_t flat_published = published_now();
  const std::uint64_t flat_delivered = delivered_now();
  const double flat_cpu_seconds =
      static_cast<double>(static_cast<std::int64_t>(std::clock()) - cpu_started) / CLOCKS_PER_SEC;
  phase.store(kPaced, std::memory_order_relaxed);
  run_until(options.seconds + options.paced_seconds);
  phase.store(kStop, std::memory_order_relaxed);
  for (std::thread& t : threads) t.join();

  // What each subscriber should receive.
  std::uint64_t total = 0;
  std::uint64_t device_total = 0;
  for (const auto& p : producers) {
    total += p->channel_events + p->device_events;
    device_total += p->device_events;
  }
  pool_all.expected = total;
  dedicated_all.expected = total;
  typed_all.expected = device_total;
  for (std::size_t i = 0; i < producers.size(); ++i) {
    sync_tallies[2 * i]->expected = producers[i]->channel_published.front();
    sync_tallies[2 * i + 1]->expected = producers[i]->device_published.front();
  }

  // Let the asynchronous subscribers drain (bounded: a lost event must not hang the demo).
  const auto drain_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  auto last_progress = std::chrono::steady_clock::now();
  for (;;) {
    bool all_there = true;
    for (Tally* t : tallies) all_there = all_there && t->events.Get() >= t->expected;
    if (all_there || std::chrono::steady_clock::now() > drain_deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
    if (std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(200)) {
      progress(elapsed_s());
      last_progress = std::chrono::steady_clock::now();
    }
  }
  progress(elapsed_s());
  std::printf("\n\n");

  // The statistics listing, while everything is still alive.
  std::printf("Bus statistics (%zu topics, %zu subscriptions live):\n", plexus::LiveTopicCount(),
              plexus::LiveSubscriptionCount());
  PrintStats(plexus::BusStatsText(), 12);
  std::printf("\n");

  // Check the counts.
  std::uint64_t deliveries = 0;
  std::printf("Deliveries:\n");
  for (Tally* t : tallies) {
    const std::uint64_t got = t->events.Get();
    deliveries += got;
    const bool ok = got == t->expected && t->out_of_order == 0;
    std::printf("  %-44s %11s of %11s%s\n", t->label.c_str(), Grouped(got).c_str(),
                Grouped(t->expected).c_str(), ok ? "" : "  <-- MISMATCH");
    if (got != t->expected) {
      failures.push_back(t->label + ": received " + std::to_string(got) + " events, expected " +
                         std::to_string(t->expected));
    }
    if (t->out_of_order != 0) {
      failures.push_back(t->label + ": " + std::to_string(t->out_of_order) +
                         " events out of their producer's order");
    }
  }
  std::printf(
      "\nThroughput, flat-out phase (%.2f s, %.2f s of CPU over %zu pool threads and "
      "%d producers):\n",
      flat_seconds, flat_cpu_seconds, pool_threads, producer_count);
  std::printf("  published  %13s events     %11.0f events/s\n", Grouped(flat_published).c_str(),
              static_cast<double>(flat_published) / flat_seconds);
  std::printf("  delivered  %13s callbacks  %11.0f deliveries/s\n", Grouped(flat_delivered).c_str(),
              static_cast<double>(flat_delivered) / flat_seconds);
  std::printf("  (whole run: %s events published, %s callbacks)\n", Grouped(total).c_str(),
              Grouped(deliveries).c_str());
  std::printf("Latency, publish to callback, paced phase (one event per producer every %lld us):\n",
              static_cast<long long>(kPacedInterval.count()));
  PrintLatency(pool_all.label, pool_all.latency_paced_ns);
  PrintLatency(dedicated_all.label, dedicated_all.latency_paced_ns);
  std::printf("Latency in the flat-out phase (queueing behind up to %s events; every %dth):\n",
              Grouped(kWindow).c_str(), kLatencySampleEvery);
  PrintLatency(pool_all.label, pool_all.latency_busy_ns);
  PrintLatency(dedicated_all.label, dedicated_all.latency_busy_ns);
  std::printf(
      "  (reference debugging records every reference taken: debug-mode figures; "
      "plexus_bench measures the real ones)\n");

  std::printf("\nThe dedicated subscriber rendered %s events; the last one:\n",
              Grouped(dedicated_all.formatted).c_str());
  std::printf("  JSON: %s\n", dedicated_all.last_json.c_str());
  std::printf("  text: ");
  std::string_view text = dedicated_all.last_text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  for (char ch : text) {
    if (ch == '\r') continue;
    std::putchar(ch);
    if (ch == '\n') std::printf("        ");
  }
  std::printf("\n");

  // Shut down: unsubscribe and join everything, then drop every reference.
  for (Tally* t : tallies) {
    if (!t->subscription->UnsubscribeAndJoin()) {
      failures.push_back(t->label + ": UnsubscribeAndJoin failed");
    }
  }
  for (Tally* t : tallies) {
    const bool typed = t == &typed_all;  // the typed face does not pass the final message on
    if (!typed && t->finals.load() != 1) {
      failures.push_back(t->label + ": " + std::to_string(t->finals.load()) +
                         " final messages (expected exactly 1)");
    }
    if (t->after_final.load() != 0) {
      failures.push_back(t->label + ": " + std::to_string(t->after_final.load()) +
                         " callbacks after the final message");
    }
    t->subscription.reset();
  }
  for (auto& p : producers) {
    p->channel_topics.clear();
    p->device_topics.clear();
  }
  topic_pool = nullptr;
  all = nullptr;
  pool_options.pool = nullptr;
  thread_pool->Shutdown();
  thread_pool = nullptr;

  const std::size_t live_topics = plexus::LiveTopicCount();
  const std::size_t live_subscriptions = plexus::LiveSubscriptionCount();
  if (live_topics != 0 || live_subscriptions != 0) {
    failures.push_back(std::to_string(live_topics) + " topics and " +
                       std::to_string(live_subscriptions) + " subscriptions still live");
  }
  std::fflush(stdout);  // the leak report goes to stderr
  const std::size_t leaked = plexus::ReportRefLeaks();
  std::printf("\nReference-leak report: %zu leaked objects.\n", leaked);
  if (leaked != 0) failures.push_back(std::to_string(leaked) + " reference-counted objects leaked");

  if (!failures.empty()) {
    std::printf("\nFAILED:\n");
    for (const std::string& f : failures) std::printf("  - %s\n", f.c_str());
    return 1;
  }
  std::printf(
      "\nOK: every subscriber received exactly what was published to it, in order; "
      "nothing leaked.\n");
  return 0;
}
