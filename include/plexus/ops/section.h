// -----------------------------------------------------------------------------
// plexus/ops/section.h
// -----------------------------------------------------------------------------
//
// A Section is a part of the operator view that the embedding program supplies: the view knows
// the layers it depends on (the bus and below), but a program may run parts the view must not
// depend on (a cluster bridge, a protocol stack) and still want them shown. The program names
// the section and gives a function returning its state as JSON text; the view then
//
//   * serves it as /api/<name>,
//   * exports its numbers to /metrics: each numeric (or boolean) field of the top-level object,
//     and of the objects directly inside it, as a gauge plexus_section_<name>_<field>[_<inner>];
//     an array of objects (a listing of parts) as one series per object and numeric field,
//     plexus_section_<name>_<array>_<field>{<the object's string fields as labels>},
//   * lists it at /api/sections and renders it on the page as a table (the object's scalar
//     fields as rows; an array of objects as a table of its own).
//
//   plexus::ops::OperatorViewOptions options;
//   options.sections.push_back({.name = "cluster", .title = "Cluster",
//                               .json = [&] { return ClusterJson(*bridge); }});
//
// Thread safety: the function is called on the view's request threads, possibly several at
// once, under no lock of the view's; it must be safe to call until the view has stopped.

#pragma once

#include <functional>
#include <string>

namespace plexus::ops {

struct Section {
  // The path's last part: lower-case letters, digits, '_' and '-', and not one of the view's
  // own names (topics, subscriptions, taskprocessors, timers, locks, refs, counters, sections).
  std::string name;
  // The heading on the page; empty: the name.
  std::string title;
  // The section's state now, as JSON text (an object, ideally). A function that throws or
  // returns invalid JSON is answered with 500 and left out of /metrics.
  std::function<std::string()> json;
};

// Whether `name` is usable as a section's name.
bool ValidSectionName(const std::string& name);

// The /metrics lines (Prometheus text format) for a section whose function returned `json`;
// empty when the text is not JSON.
std::string SectionMetricsText(const std::string& name, const std::string& json);

}  // namespace plexus::ops
