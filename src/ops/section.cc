#include "plexus/ops/section.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <string_view>

namespace plexus::ops {
namespace {

// The view's own /api names: a section may not shadow them.
constexpr std::array<std::string_view, 8> kReserved = {
    "topics", "subscriptions", "taskprocessors", "timers", "locks", "refs", "counters", "sections"};

// Prometheus metric names allow [a-zA-Z0-9_:]; anything else becomes '_'.
std::string MetricPart(std::string_view text) {
  std::string out(text);
  for (char& ch : out) {
    const bool ok =
        (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
    if (!ok) ch = '_';
  }
  return out;
}

void AppendGauge(std::string& out, const std::string& metric, const nlohmann::json& value) {
  double number = 0;
  if (value.is_boolean()) {
    number = value.get<bool>() ? 1 : 0;
  } else if (value.is_number()) {
    number = value.get<double>();
  } else {
    return;
  }
  char text[64];
  std::snprintf(text, sizeof text, "%.17g", number);
  out += "# TYPE " + metric + " gauge\n" + metric + " " + text + "\n";
}

}  // namespace

bool ValidSectionName(const std::string& name) {
  if (name.empty() || name.size() > 64) return false;
  if (std::find(kReserved.begin(), kReserved.end(), name) != kReserved.end()) return false;
  return std::all_of(name.begin(), name.end(), [](char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
  });
}

std::string SectionMetricsText(const std::string& name, const std::string& json) {
  const nlohmann::json j = nlohmann::json::parse(json, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) return {};
  const std::string prefix = "plexus_section_" + MetricPart(name) + "_";
  std::string out;
  for (const auto& [key, value] : j.items()) {
    if (value.is_object()) {
      for (const auto& [inner, inner_value] : value.items()) {
        AppendGauge(out, prefix + MetricPart(key) + "_" + MetricPart(inner), inner_value);
      }
    } else {
      AppendGauge(out, prefix + MetricPart(key), value);
    }
  }
  return out;
}

}  // namespace plexus::ops
