#include "options.h"

#include <CLI/CLI.hpp>
#include <cstdio>
#include <thread>

#include "cluster.h"
#include "operator_view.h"

namespace sim {

Parsed ParseOptions(int argc, char** argv) {
  Options o;
  CLI::App app{
      "plexus_sim: a PBX-like call workload on every layer of plexus. Calls arrive at a rate on "
      "a set of devices; each is a dialog group lock with chained transactions, timers, its own "
      "cached topic, and three consumers (CDR to SQLite, device states, a JSON event stream).",
      "plexus_sim"};
  app.option_defaults()->always_capture_default();
  app.add_option("--rate", o.rate, "calls offered per second")->check(CLI::Range(0.001, 1e7));
  app.add_option("--duration", o.duration, "seconds during which calls arrive")
      ->check(CLI::Range(0.001, 86400.0));
  app.add_option("--calls", o.calls, "stop after this many calls (0: no limit)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--devices", o.devices, "devices the calls are made from")
      ->check(CLI::Range(1u, 1'000'000u));
  app.add_option("--threads", o.threads, "threads of the pool (0: one per core, at least two)")
      ->check(CLI::Range(0u, 256u));
  app.add_option("--seed", o.seed, "workload seed: the same seed gives the same calls");
  std::string report = "text";
  app.add_option("--report", report, "final report format: text or json")
      ->check(CLI::IsMember({"text", "json"}));
  app.add_option("--listen", o.listen, "ADDR:PORT of the operator view (HTTP)")
      ->check(CLI::Validator([](std::string& value) { return ValidateListenAddress(value); },
                             "ADDR:PORT"));
  app.add_option("--cdr", o.cdr, "SQLite file for call-detail records (default: in memory)");
  app.add_option("--events", o.events, "JSON-lines event stream file, - for stdout");
  app.add_option("--talk-ms", o.talk_ms, "mean talk time of an answered call, ms")
      ->check(CLI::Range(1u, 3'600'000u));
  app.add_option("--max-in-flight", o.max_in_flight,
                 "calls in flight at most: arrivals above it are refused")
      ->check(CLI::Range(std::uint64_t{1}, std::uint64_t{100'000'000}));
  app.add_option("--queue-limit", o.queue_limit,
                 "queue high water (alerts, admission) and the event stream's capacity")
      ->check(CLI::Range(4u, 10'000'000u));
  app.add_option("--checks", o.checks,
                 "reference debugging and lock-order validation (true/false)");
  app.add_option("--stop-grace", o.stop_grace,
                 "seconds the calls in flight may run on after a stop signal before they are "
                 "cut short")
      ->check(CLI::Range(0.0, 86400.0));
  app.add_option("--nats", o.nats,
                 "NATS servers (nats://HOST:PORT, comma-separated): share device states with the "
                 "other simulators there")
      ->check(CLI::Validator([](std::string& value) { return ValidateNatsServers(value); },
                             "URL[,URL...]"));
  app.add_option("--node-id", o.node_id, "this node's id in the cluster (default: the host's)")
      ->check(CLI::Validator([](std::string& value) { return ValidateNodeId(value); },
                             "aa:bb:cc:dd:ee:ff"));
  app.add_option("--cluster", o.cluster_name, "the cluster's name (NATS subjects plexus.NAME.*)")
      ->check(
          CLI::Validator([](std::string& value) { return ValidateClusterName(value); }, "NAME"));
  app.add_option("--heartbeat-ms", o.heartbeat_ms,
                 "cluster heartbeat interval, ms (a node is gone after 5 missed)")
      ->check(CLI::Range(10u, 60'000u));
  app.footer(
      "Exit status: 0 when every invariant held, 1 when one failed (the report names it), 2 "
      "after a bad flag. SIGINT or SIGTERM stops new calls, drains and reports; a second one "
      "during the drain exits at once with status 130, without a report.");
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp&) {
    std::printf("%s", app.help().c_str());
    return {std::nullopt, 0};
  } catch (const CLI::ParseError& e) {
    std::string message = e.what();
    for (char& ch : message) {
      if (ch == '\n') ch = ' ';
    }
    std::fprintf(stderr, "plexus_sim: %s (see --help)\n", message.c_str());
    return {std::nullopt, 2};
  }
  if (o.nats.empty() && (!o.node_id.empty() || o.cluster_name != "plexus")) {
    std::fprintf(stderr, "plexus_sim: --node-id and --cluster need --nats (see --help)\n");
    return {std::nullopt, 2};
  }
  if (!o.nats.empty() && !ClusterAvailable()) {
    std::fprintf(stderr, "plexus_sim: --nats: this build has no cluster layer (libnats)\n");
    return {std::nullopt, 2};
  }
  o.report = report == "json" ? ReportFormat::kJson : ReportFormat::kText;
  if (o.threads == 0) {
    const unsigned hardware = std::thread::hardware_concurrency();
    o.threads = hardware < 2 ? 2 : hardware;
  }
  return {o, 0};
}

}  // namespace sim
