// What the demo prints around the run: the banner, the bus's statistics listing, throughput,
// latency and a sample of the formatted events. The verification is in verify.h.

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "options.h"
#include "run.h"
#include "subscribers.h"

namespace demo {

// 1234567 -> "1,234,567".
std::string Grouped(std::uint64_t n);

// The first lines: node, pool size, producers, phases, the message types and their formats.
void PrintBanner(const Options& options, std::size_t pool_threads);

// The statistics listing (BusStatsText) while everything is still alive, its topic table
// trimmed to a dozen rows.
void PrintBusStatistics();

void PrintThroughput(const FlatOutFigures& flat, std::size_t pool_threads, int producers,
                     std::uint64_t total_published, std::uint64_t total_deliveries);

// Publish-to-callback latency of the pool and dedicated subscribers, paced and flat out.
void PrintLatency(const Subscribers& subscribers);

// The last event the dedicated subscriber rendered, as JSON and as AMI text.
void PrintFormattedSample(const Tally& dedicated);

}  // namespace demo
