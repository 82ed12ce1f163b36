// -----------------------------------------------------------------------------
// plexus/ops/metrics.h
// -----------------------------------------------------------------------------
//
// plexus's statistics as Prometheus metrics, through prometheus-cpp's own types: a snapshot
// becomes MetricFamily values, and prometheus-cpp's TextSerializer writes the exposition
// format, so plexus never formats the text itself. Names carry the `plexus_` prefix,
// counters end in `_total`, durations are in seconds.
//
// MetricsCollectable lets a program that already exposes prometheus-cpp metrics (with
// prometheus::Exposer, or its own registry) add plexus's to them:
//
//   exposer.RegisterCollectable(std::make_shared<plexus::ops::MetricsCollectable>());
//
// Thread safety: thread-safe; Collect() takes a fresh snapshot on every call.

#pragma once

#include <prometheus/collectable.h>
#include <prometheus/metric_family.h>

#include <string>
#include <vector>

#include "plexus/ops/snapshot.h"

namespace plexus::ops {

// The metric families of `snapshot` (which should hold at least SnapshotParts::kMetrics).
std::vector<prometheus::MetricFamily> ToMetricFamilies(const OpsSnapshot& snapshot);

// The Prometheus text exposition (format 0.0.4) of `snapshot`.
std::string MetricsText(const OpsSnapshot& snapshot);

class MetricsCollectable final : public prometheus::Collectable {
 public:
  std::vector<prometheus::MetricFamily> Collect() const override;
};

}  // namespace plexus::ops
