#include "report.h"

#include <algorithm>
#include <cstdio>
#include <string_view>

#include "events.h"
#include "plexus/bus/bus_stats.h"
#include "plexus/bus/node_id.h"

namespace demo {

namespace {

double Percentile(const std::vector<std::int64_t>& sorted, double p) {
  if (sorted.empty()) return 0;
  const auto index = static_cast<std::size_t>(p * static_cast<double>(sorted.size() - 1) + 0.5);
  return static_cast<double>(sorted[std::min(index, sorted.size() - 1)]);
}

void PrintLatencyRow(const std::string& label, std::vector<std::int64_t> samples) {
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

std::string Grouped(std::uint64_t n) {
  std::string digits = std::to_string(n);
  std::string out;
  for (std::size_t i = 0; i < digits.size(); ++i) {
    if (i != 0 && (digits.size() - i) % 3 == 0) out += ',';
    out += digits[i];
  }
  return out;
}

void PrintBanner(const Options& options, std::size_t pool_threads) {
  const auto& channel_type = ChannelStateType();
  const auto& device_type = DeviceStateType();
  std::printf(
      "plexus_demo: the message bus. Node %s, %zu pool threads, %d producers, %.1f s flat out "
      "then %.1f s paced.\n",
      plexus::NodeId::Local().ToString().c_str(), pool_threads, options.producers, options.seconds,
      options.paced_seconds);
  std::printf("Types: %s (formats:%s%s), %s (formats:%s%s). Reference debugging is on.\n\n",
              channel_type->Name().c_str(),
              channel_type->HasFormat(plexus::MessageFormat::kJson) ? " json" : "",
              channel_type->HasFormat(plexus::MessageFormat::kText) ? " text" : "",
              device_type->Name().c_str(),
              device_type->HasFormat(plexus::MessageFormat::kJson) ? " json" : "",
              device_type->HasFormat(plexus::MessageFormat::kText) ? " text" : "");
}

void PrintBusStatistics() {
  std::printf("Bus statistics (%zu topics, %zu subscriptions live):\n", plexus::LiveTopicCount(),
              plexus::LiveSubscriptionCount());
  PrintStats(plexus::BusStatsText(), 12);
  std::printf("\n");
}

void PrintThroughput(const FlatOutFigures& flat, std::size_t pool_threads, int producers,
                     std::uint64_t total_published, std::uint64_t total_deliveries) {
  std::printf(
      "\nThroughput, flat-out phase (%.2f s, %.2f s of CPU over %zu pool threads and "
      "%d producers):\n",
      flat.seconds, flat.cpu_seconds, pool_threads, producers);
  std::printf("  published  %13s events     %11.0f events/s\n", Grouped(flat.published).c_str(),
              static_cast<double>(flat.published) / flat.seconds);
  std::printf("  delivered  %13s callbacks  %11.0f deliveries/s\n", Grouped(flat.delivered).c_str(),
              static_cast<double>(flat.delivered) / flat.seconds);
  std::printf("  (whole run: %s events published, %s callbacks)\n",
              Grouped(total_published).c_str(), Grouped(total_deliveries).c_str());
}

void PrintLatency(const Subscribers& subscribers) {
  const Tally& pool = subscribers.pool_all;
  const Tally& dedicated = subscribers.dedicated_all;
  std::printf("Latency, publish to callback, paced phase (one event per producer every %lld us):\n",
              static_cast<long long>(kPacedInterval.count()));
  PrintLatencyRow(pool.label, pool.latency_paced_ns);
  PrintLatencyRow(dedicated.label, dedicated.latency_paced_ns);
  std::printf("Latency in the flat-out phase (queueing behind up to %s events; every %dth):\n",
              Grouped(kWindow).c_str(), kLatencySampleEvery);
  PrintLatencyRow(pool.label, pool.latency_busy_ns);
  PrintLatencyRow(dedicated.label, dedicated.latency_busy_ns);
  std::printf(
      "  (reference debugging records every reference taken: debug-mode figures; "
      "plexus_bench measures the real ones)\n");
}

void PrintFormattedSample(const Tally& dedicated) {
  std::printf("\nThe dedicated subscriber rendered %s events; the last one:\n",
              Grouped(dedicated.formatted).c_str());
  std::printf("  JSON: %s\n", dedicated.last_json.c_str());
  std::printf("  text: ");
  std::string_view text = dedicated.last_text;
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  for (char ch : text) {
    if (ch == '\r') continue;
    std::putchar(ch);
    if (ch == '\n') std::printf("        ");
  }
  std::printf("\n");
}

}  // namespace demo
