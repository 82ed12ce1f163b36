#include "plexus/ops/section.h"

#include <algorithm>
#include <array>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <string_view>
#include <vector>

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

// Names already written: a family is written once, as the format requires, even where two
// fields come to one name ("a_b" and "a": {"b": ...}; "nodes_alive" and "nodes": [{"alive":
// ...}]); the first wins, single figures before listings.
using Written = std::set<std::string>;

void AppendGauge(std::string& out, Written& written, const std::string& metric,
                 const nlohmann::json& value) {
  if (!(value.is_boolean() || value.is_number()) || !written.insert(metric).second) return;
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

// A Prometheus label value: backslash, double quote and newline escaped.
std::string LabelValue(const std::string& text) {
  std::string out;
  for (char ch : text) {
    if (ch == '\\' || ch == '"') {
      out += '\\';
      out += ch;
    } else if (ch == '\n') {
      out += "\\n";
    } else {
      out += ch;
    }
  }
  return out;
}

// An array of objects (the section's listing of its parts: nodes, links, ...) as one series per
// object and numeric field, labelled by the object's string fields, so that each part is a
// series of its own (an id that changes, such as a node's incarnation, is a label, not a value).
void AppendArray(std::string& out, Written& written, const std::string& metric,
                 const nlohmann::json& array) {
  std::vector<std::string> fields;  // numeric fields, in the order they first appear
  for (const nlohmann::json& item : array) {
    if (!item.is_object()) return;  // not a listing of parts: left out
    for (const auto& [key, value] : item.items()) {
      if ((value.is_number() || value.is_boolean()) &&
          std::find(fields.begin(), fields.end(), key) == fields.end()) {
        fields.push_back(key);
      }
    }
  }
  for (const std::string& field : fields) {
    const std::string name = metric + "_" + MetricPart(field);
    if (!written.insert(name).second) continue;
    out += "# TYPE " + name + " gauge\n";
    for (const nlohmann::json& item : array) {
      const auto value = item.find(field);
      if (value == item.end() || !(value->is_number() || value->is_boolean())) continue;
      std::string labels;
      for (const auto& [key, label] : item.items()) {
        if (!label.is_string()) continue;
        labels += (labels.empty() ? "" : ",") + MetricPart(key) + "=\"" +
                  LabelValue(label.get<std::string>()) + "\"";
      }
      const double number =
          value->is_boolean() ? (value->get<bool>() ? 1 : 0) : value->get<double>();
      char text[64];
      std::snprintf(text, sizeof text, "%.17g", number);
      out += name + (labels.empty() ? "" : "{" + labels + "}") + " " + text + "\n";
    }
  }
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
  Written written;
  std::string out;
  for (const auto& [key, value] : j.items()) {
    if (value.is_object()) {
      for (const auto& [inner, inner_value] : value.items()) {
        AppendGauge(out, written, prefix + MetricPart(key) + "_" + MetricPart(inner), inner_value);
      }
    } else {
      AppendGauge(out, written, prefix + MetricPart(key), value);
    }
  }
  // The listings after the single figures, so that a figure keeps its name when a listing's
  // field would take it.
  for (const auto& [key, value] : j.items()) {
    if (value.is_array()) AppendArray(out, written, prefix + MetricPart(key), value);
  }
  return out;
}

}  // namespace plexus::ops
