#include "plexus/ops/api_json.h"

#include <chrono>
#include <cstdio>
#include <string>

#include "names.h"
#include "plexus/core/source_location.h"

namespace plexus::ops {
namespace {

using ops_internal::ModeName;
using ops_internal::Seconds;

using nlohmann::json;

std::string Hex(const void* p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%p", p);
  return buf;
}

std::string Hex(std::uintptr_t v) {
  return Hex(reinterpret_cast<const void*>(v));
}

json Edge(const LockOrderEdge& e) {
  return {{"from", e.from},
          {"to", e.to},
          {"from_where", FormatLocation(e.from_where)},
          {"to_where", FormatLocation(e.to_where)},
          {"thread", e.thread}};
}

std::int64_t UnixMillis(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

}  // namespace

json TopicsJson(const OpsSnapshot& s) {
  json topics = json::array();
  for (const TopicStats& t : s.topics) {
    topics.push_back({{"name", t.name},
                      {"description", t.description},
                      {"id", t.id},
                      {"subscribers", t.subscribers},
                      {"forwards_out", t.forwards_out},
                      {"published", t.published},
                      {"forwarded_in", t.forwarded_in},
                      {"deliveries", t.deliveries}});
  }
  return {{"taken_at_ms", UnixMillis(s.taken_at)}, {"live", s.live_topics}, {"topics", topics}};
}

json SubscriptionsJson(const OpsSnapshot& s) {
  json subs = json::array();
  for (const SubscriptionStats& sub : s.subscriptions) {
    subs.push_back({{"id", sub.id},
                    {"topic", sub.topic},
                    {"mode", ModeName(sub.mode)},
                    {"queued", sub.queued},
                    {"filtered", sub.filtered},
                    {"dispatched", sub.dispatched},
                    {"failed", sub.failed},
                    {"dropped", sub.dropped},
                    {"rejected", sub.rejected},
                    {"depth", sub.depth},
                    {"max_depth", sub.max_depth},
                    {"alerted", sub.alerted},
                    {"high_water", sub.high_water},
                    {"low_water", sub.low_water},
                    {"subscribed", sub.subscribed},
                    {"done", sub.done}});
  }
  return {{"taken_at_ms", UnixMillis(s.taken_at)},
          {"live", s.live_subscriptions},
          {"subscriptions", subs}};
}

json TaskProcessorsJson(const OpsSnapshot& s) {
  json tps = json::array();
  for (const TaskProcessorStats& tp : s.task_processors) {
    tps.push_back({{"name", tp.name},
                   {"processed", tp.processed},
                   {"failed", tp.failed},
                   {"discarded", tp.discarded},
                   {"depth", tp.depth},
                   {"max_depth", tp.max_depth},
                   {"executing", tp.executing},
                   {"alerted", tp.alerted},
                   {"high_water", tp.high_water},
                   {"low_water", tp.low_water},
                   {"suspended", tp.suspended},
                   {"busy_seconds", Seconds(tp.busy)}});
  }
  return {{"taken_at_ms", UnixMillis(s.taken_at)},
          {"live", s.live_task_processors},
          {"queues_in_alert", s.queues_in_alert},
          {"pool",
           {{"name", s.shared_pool.name},
            {"active_threads", s.shared_pool.active_threads},
            {"idle_threads", s.shared_pool.idle_threads},
            {"queued_tasks", s.shared_pool.queued_tasks}}},
          {"taskprocessors", tps}};
}

json TimersJson(const OpsSnapshot& s) {
  json heaps = json::array();
  for (const TimerHeapStats& t : s.timer_heaps) {
    heaps.push_back({{"name", t.name},
                     {"id", t.id},
                     {"scheduled", t.scheduled},
                     {"fired", t.fired},
                     {"pending", t.pending},
                     {"next_due_in_seconds", Seconds(t.next_due_in)}});
  }
  return {{"taken_at_ms", UnixMillis(s.taken_at)}, {"timer_heaps", heaps}};
}

json LocksJson(const OpsSnapshot& s) {
  json groups = json::array();
  for (const GroupLockInfo& g : s.group_locks) {
    json chain = json::array();
    for (const ChainedLockInfo& c : g.chain) {
      chain.push_back(
          {{"lock", Hex(c.lock)}, {"position", c.position}, {"group_lock", c.is_group_lock}});
    }
    groups.push_back({{"address", Hex(g.address)},
                      {"created_at", FormatLocation(g.created_at)},
                      {"lock_class", g.lock_class},
                      {"references", g.references},
                      {"waiters", g.waiters},
                      {"locked", g.locked},
                      {"holder", g.locked ? json(Hex(g.holder)) : json(nullptr)},
                      {"destroy_handlers", g.destroy_handlers},
                      {"chain", chain}});
  }
  json recent = json::array();
  for (const LockOrderViolation& v : s.recent_lock_order_violations) {
    json established = json::array();
    for (const LockOrderEdge& e : v.established) established.push_back(Edge(e));
    recent.push_back(
        {{"attempted", Edge(v.attempted)}, {"established", established}, {"message", v.message}});
  }
  return {{"taken_at_ms", UnixMillis(s.taken_at)},
          {"live", s.live_group_locks},
          {"group_locks", groups},
          {"lock_order",
           {{"enabled", s.lock_order_validation},
            {"violations", s.lock_order_violations},
            {"recent", recent}}}};
}

json RefsJson(const OpsSnapshot& s) {
  json objects = json::array();
  for (const TrackedObject& o : s.tracked_objects) {
    json holders = json::array();
    for (const RefHolder& h : o.holders) {
      holders.push_back({{"where", FormatLocation(h.where)},
                         {"thread", h.thread},
                         {"key", h.key != nullptr ? json(Hex(h.key)) : json(nullptr)}});
    }
    objects.push_back({{"object", Hex(o.object)}, {"type", o.type_name}, {"holders", holders}});
  }
  return {
      {"taken_at_ms", UnixMillis(s.taken_at)}, {"enabled", s.ref_debugging}, {"objects", objects}};
}

json CountersJson(const OpsSnapshot& s) {
  json counters = json::array();
  for (const CounterStats& c : s.counters) {
    counters.push_back({{"name", c.name}, {"help", c.help}, {"value", c.value}});
  }
  return {{"taken_at_ms", UnixMillis(s.taken_at)}, {"counters", counters}};
}

}  // namespace plexus::ops
