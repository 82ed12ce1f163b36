#include "report.h"

#include <cstdio>
#include <nlohmann/json.hpp>

namespace sim {

namespace {

std::string Grouped(std::uint64_t n) {
  const std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

std::string Format(const char* format, auto... args) {
  char line[512];
  std::snprintf(line, sizeof line, format, args...);
  return line;
}

double PerSecond(std::uint64_t n, double seconds) {
  return seconds > 0 ? static_cast<double>(n) / seconds : 0;
}

}  // namespace

bool CheckInvariants(Figures& f) {
  const auto add = [&](std::string name, bool held, std::string detail) {
    f.invariants.push_back({std::move(name), held, std::move(detail)});
  };
  add("records == finished calls",
      f.cdr_rows == static_cast<std::int64_t>(f.finished) && f.cdr_routed == f.finished &&
          f.cdr_failures == 0,
      Format("%lld rows in the CDR table, %llu records routed, %llu calls finished",
             static_cast<long long>(f.cdr_rows), static_cast<unsigned long long>(f.cdr_routed),
             static_cast<unsigned long long>(f.finished)));
  add("every call ended", f.started == f.finished,
      Format("%llu started, %llu finished", static_cast<unsigned long long>(f.started),
             static_cast<unsigned long long>(f.finished)));
  add("every device idle", f.devices_in_use == 0,
      Format("%u devices in use at the end", f.devices_in_use));
  add("no group lock alive", f.dialogs_alive == 0 && f.transactions_alive == 0,
      Format("%lld dialogs and %lld transactions alive", static_cast<long long>(f.dialogs_alive),
             static_cast<long long>(f.transactions_alive)));
  add("call cache empty", f.cache_entries == 0,
      Format("%llu snapshots left in the cache", static_cast<unsigned long long>(f.cache_entries)));
  add("no leak", f.leaked_references <= 0 && f.live_topics == 0 && f.live_subscriptions == 0,
      Format("%lld leaked objects, %zu topics and %zu subscriptions alive",
             static_cast<long long>(f.leaked_references), f.live_topics, f.live_subscriptions));
  add("no lock-order report", f.lock_order_reports == 0,
      Format("%llu reports", static_cast<unsigned long long>(f.lock_order_reports)));
  if (f.cluster) {
    const ClusterFigures& c = *f.cluster;
    std::uint64_t encode_failures = 0;
    for (const auto& t : c.topics) encode_failures += t.encode_failures;
    // The other simulators are well behaved: whatever they send decodes.
    add("no cluster rejects", c.rejects_total == 0,
        Format("%llu frames refused", static_cast<unsigned long long>(c.rejects_total)));
    add("every device state encodes", encode_failures == 0,
        Format("%llu device states not encoded", static_cast<unsigned long long>(encode_failures)));
    add("this node's device states idle", c.local_in_use == 0,
        Format("%llu devices in use in this node's snapshots at the end",
               static_cast<unsigned long long>(c.local_in_use)));
  }
  bool all = true;
  for (const Invariant& i : f.invariants) all = all && i.held;
  return all;
}

std::string TextReport(const Figures& f) {
  std::string out;
  const auto line = [&](const std::string& s) { out += s + "\n"; };
  line(Format("plexus_sim report%s: %.2f s, seed %llu, %u devices, %u threads",
              f.interrupted ? " (interrupted)" : "", f.seconds,
              static_cast<unsigned long long>(f.options.seed), f.options.devices,
              f.options.threads));
  line(Format("  calls      offered %s, set up %s, torn down %s (%.0f calls/s), peak in flight %s",
              Grouped(f.offered).c_str(), Grouped(f.started).c_str(), Grouped(f.finished).c_str(),
              PerSecond(f.finished, f.seconds),
              Grouped(static_cast<std::uint64_t>(f.peak_in_flight)).c_str()));
  std::string dispositions;
  for (std::size_t d = 0; d < kDispositions; ++d) {
    dispositions += Format("%s%s %s", d == 0 ? "" : ", ", kDispositionNames[d],
                           Grouped(f.dispositions[d]).c_str());
  }
  line("             " + dispositions);
  line(
      Format("  shed       %s refused at admission (in-flight limit or a queue in alert), %s "
             "arrivals not offered in time, %s stream events dropped",
             Grouped(f.shed_admission).c_str(), Grouped(f.shed_late).c_str(),
             Grouped(f.stream_dropped).c_str()));
  line(Format("  work       %s transactions, %s timers (%s fired, %s cancelled, %s stale)",
              Grouped(f.transactions).c_str(), Grouped(f.timers_scheduled).c_str(),
              Grouped(f.timers_fired).c_str(), Grouped(f.timers_cancelled).c_str(),
              Grouped(f.timers_stale).c_str()));
  line(
      Format("  events     published %s (%.0f/s), on the calls topic %s, delivered %s, "
             "stream lines %s",
             Grouped(f.published).c_str(), PerSecond(f.published, f.seconds),
             Grouped(f.on_all_topic).c_str(), Grouped(f.delivered).c_str(),
             Grouped(f.stream_lines).c_str()));
  line(
      Format("  latency    publish->callback p50 %.1f us, p90 %.1f us, p99 %.1f us, "
             "p99.9 %.1f us, max %.1f us (%s samples)",
             f.latency_us[0], f.latency_us[1], f.latency_us[2], f.latency_us[3], f.latency_us[4],
             Grouped(f.latency_samples).c_str()));
  std::string queues;
  for (const QueueFigure& q : f.queues) {
    queues += Format("%s%s %zu", queues.empty() ? "" : ", ", q.name.c_str(), q.max_depth);
  }
  line("  queues     high-water marks: " + queues);
  std::string alert_queues;
  for (const std::string& q : f.alert_queues)
    alert_queues += (alert_queues.empty() ? "" : ", ") + q;
  line(Format("  alerts     %s raised%s%s", Grouped(f.alerts).c_str(),
              alert_queues.empty() ? "" : ": ", alert_queues.c_str()));
  line(Format("  cdr        %lld records in %s (%s transactions)",
              static_cast<long long>(f.cdr_rows), f.cdr_path.c_str(),
              Grouped(f.cdr_transactions).c_str()));
  line(Format("  devices    %u in use at the end, %u at most", f.devices_in_use,
              f.devices_peak_in_use));
  line(Format("  memory     peak RSS %lld KiB (%lld KiB before the first call)",
              static_cast<long long>(f.peak_rss_kb), static_cast<long long>(f.baseline_rss_kb)));
  const std::string leaked = f.leaked_references < 0 ? std::string("untracked (--checks=false)")
                                                     : std::to_string(f.leaked_references);
  line(Format("  leaks      leaked references %s, group locks alive %lld, lock-order reports %llu",
              leaked.c_str(), static_cast<long long>(f.dialogs_alive + f.transactions_alive),
              static_cast<unsigned long long>(f.lock_order_reports)));
  if (f.cluster) {
    const ClusterFigures& c = *f.cluster;
    std::string nodes;
    for (const std::string& n : c.nodes) nodes += (nodes.empty() ? "" : ", ") + n;
    line(Format("  cluster    node %s: %zu other nodes alive%s%s (%s joined, %s left)",
                c.node.c_str(), c.nodes.size(), nodes.empty() ? "" : ": ", nodes.c_str(),
                Grouped(c.nodes_joined).c_str(), Grouped(c.nodes_left).c_str()));
    for (const auto& t : c.topics) {
      line(
          Format("             %s: %s out in %s NATS messages, %s in, %s send failures, %lld "
                 "dropped by NATS",
                 t.subject.c_str(), Grouped(t.messages_out).c_str(), Grouped(t.batches_out).c_str(),
                 Grouped(t.messages_in).c_str(), Grouped(t.send_failures).c_str(),
                 static_cast<long long>(t.nats_dropped)));
    }
    line(
        Format("             %s rejects, %s resyncs (%s snapshots, %s failed), %s foreign "
               "snapshots, %s devices in use anywhere",
               Grouped(c.rejects_total).c_str(), Grouped(c.resyncs).c_str(),
               Grouped(c.snapshots_resynced).c_str(), Grouped(c.resync_failures).c_str(),
               Grouped(c.foreign_snapshots).c_str(), Grouped(c.in_use_anywhere).c_str()));
  }
  bool ok = true;
  for (const Invariant& i : f.invariants) {
    if (!i.held) {
      ok = false;
      line("  FAILED     " + i.name + ": " + i.detail);
    }
  }
  if (ok) line("  OK         every invariant held");
  return out;
}

std::string JsonReport(const Figures& f) {
  using nlohmann::json;
  json dispositions;
  for (std::size_t d = 0; d < kDispositions; ++d)
    dispositions[kDispositionNames[d]] = f.dispositions[d];
  json queues = json::array();
  for (const QueueFigure& q : f.queues) {
    queues.push_back({{"name", q.name}, {"max_depth", q.max_depth}, {"dropped", q.dropped}});
  }
  json invariants = json::array();
  std::string failed;
  for (const Invariant& i : f.invariants) {
    invariants.push_back({{"name", i.name}, {"held", i.held}, {"detail", i.detail}});
    if (!i.held && failed.empty()) failed = i.name;
  }
  json report = {
      {"interrupted", f.interrupted},
      {"seconds", f.seconds},
      {"seed", f.options.seed},
      {"rate", f.options.rate},
      {"device_count", f.options.devices},
      {"threads", f.options.threads},
      {"calls",
       {{"offered", f.offered},
        {"set_up", f.started},
        {"torn_down", f.finished},
        {"per_second", PerSecond(f.finished, f.seconds)},
        {"peak_in_flight", f.peak_in_flight},
        {"dispositions", dispositions}}},
      {"shed",
       {{"calls_refused", f.shed_admission},
        {"arrivals_late", f.shed_late},
        {"stream_events_dropped", f.stream_dropped}}},
      {"work",
       {{"transactions", f.transactions},
        {"timers_scheduled", f.timers_scheduled},
        {"timers_fired", f.timers_fired},
        {"timers_cancelled", f.timers_cancelled},
        {"timers_stale", f.timers_stale}}},
      {"events",
       {{"published", f.published},
        {"per_second", PerSecond(f.published, f.seconds)},
        {"on_calls_topic", f.on_all_topic},
        {"delivered", f.delivered},
        {"stream_lines", f.stream_lines}}},
      {"latency_us",
       {{"samples", f.latency_samples},
        {"p50", f.latency_us[0]},
        {"p90", f.latency_us[1]},
        {"p99", f.latency_us[2]},
        {"p999", f.latency_us[3]},
        {"max", f.latency_us[4]}}},
      {"queues", queues},
      {"alerts", {{"raised", f.alerts}, {"queues", f.alert_queues}}},
      {"cdr",
       {{"path", f.cdr_path},
        {"records", f.cdr_rows},
        {"transactions", f.cdr_transactions},
        {"failures", f.cdr_failures}}},
      {"devices", {{"in_use_at_end", f.devices_in_use}, {"peak_in_use", f.devices_peak_in_use}}},
      {"call_cache_entries", f.cache_entries},
      {"group_locks_alive", f.dialogs_alive + f.transactions_alive},
      {"leaked_references", f.leaked_references},
      {"lock_order_reports", f.lock_order_reports},
      {"memory", {{"peak_rss_kb", f.peak_rss_kb}, {"baseline_rss_kb", f.baseline_rss_kb}}},
      {"invariants", invariants},
      {"ok", failed.empty()},
      {"failed", failed},
  };
  if (f.cluster) {
    const ClusterFigures& c = *f.cluster;
    json topics = json::array();
    for (const auto& t : c.topics) {
      topics.push_back({{"topic", t.name},
                        {"subject", t.subject},
                        {"messages_out", t.messages_out},
                        {"batches_out", t.batches_out},
                        {"messages_in", t.messages_in},
                        {"encode_failures", t.encode_failures},
                        {"send_failures", t.send_failures},
                        {"nats_dropped", t.nats_dropped}});
    }
    report["cluster"] = {{"node", c.node},
                         {"incarnation", c.incarnation},
                         {"nodes", c.nodes},
                         {"nodes_joined", c.nodes_joined},
                         {"nodes_left", c.nodes_left},
                         {"topics", topics},
                         {"rejects", c.rejects},
                         {"rejects_total", c.rejects_total},
                         {"resyncs", c.resyncs},
                         {"resync_failures", c.resync_failures},
                         {"snapshots_resynced", c.snapshots_resynced},
                         {"reconnects", c.reconnects},
                         {"device_states_published", c.device_states_published},
                         {"foreign_snapshots", c.foreign_snapshots},
                         {"in_use_anywhere", c.in_use_anywhere}};
  }
  return report.dump(2) + "\n";
}

}  // namespace sim
