// Every metric is a family of prometheus-cpp's MetricFamily; TextSerializer writes the page.
// Series are labelled so that each is unique even where names are not (topics and timer heaps
// need not have unique names: their process-unique id is a label; anonymous task processors
// get their position in the listing).

#include "plexus/ops/metrics.h"

#include <prometheus/text_serializer.h>

#include <chrono>
#include <map>
#include <string>
#include <utility>

#include "names.h"

namespace plexus::ops {
namespace {

using ops_internal::ModeName;
using ops_internal::Seconds;

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;
using Labels = std::vector<ClientMetric::Label>;

class Families {
 public:
  void Counter(const std::string& name, const std::string& help, Labels labels, double value) {
    Add(name, help, MetricType::Counter, std::move(labels)).counter.value = value;
  }
  void Gauge(const std::string& name, const std::string& help, Labels labels, double value) {
    Add(name, help, MetricType::Gauge, std::move(labels)).gauge.value = value;
  }
  std::vector<MetricFamily> Take() { return std::move(families_); }

 private:
  ClientMetric& Add(const std::string& name, const std::string& help, MetricType type,
                    Labels labels) {
    auto [it, inserted] = index_.try_emplace(name, families_.size());
    if (inserted) families_.push_back(MetricFamily{name, help, type, {}});
    MetricFamily& family = families_[it->second];
    ClientMetric& metric = family.metric.emplace_back();
    metric.label = std::move(labels);
    return metric;
  }

  std::vector<MetricFamily> families_;
  std::map<std::string, std::size_t> index_;
};

void AddTopics(const OpsSnapshot& s, Families& f) {
  f.Gauge("plexus_topics", "Live topics.", {}, static_cast<double>(s.live_topics));
  for (const TopicStats& t : s.topics) {
    const Labels l{{"topic", t.name}, {"topic_id", std::to_string(t.id)}};
    f.Counter("plexus_topic_published_messages_total",
              "Messages published on the topic, subscription change notices included (not "
              "forwarded in).",
              l, static_cast<double>(t.published));
    f.Counter("plexus_topic_forwarded_in_messages_total",
              "Messages that reached the topic through a forward.", l,
              static_cast<double>(t.forwarded_in));
    f.Counter("plexus_topic_delivered_messages_total",
              "Messages handed to the topic's subscriptions.", l,
              static_cast<double>(t.deliveries));
    f.Gauge("plexus_topic_subscribers", "Current direct subscriptions of the topic.", l,
            static_cast<double>(t.subscribers));
    f.Gauge("plexus_topic_forwards", "Topics this topic forwards into.", l,
            static_cast<double>(t.forwards_out));
  }
}

void AddSubscriptions(const OpsSnapshot& s, Families& f) {
  f.Gauge("plexus_subscriptions", "Live subscriptions.", {},
          static_cast<double>(s.live_subscriptions));
  for (const SubscriptionStats& sub : s.subscriptions) {
    const Labels l{{"subscription", sub.id}, {"topic", sub.topic}, {"mode", ModeName(sub.mode)}};
    f.Counter("plexus_subscription_queued_messages_total",
              "Messages the filter accepted and queued (or ran inline).", l,
              static_cast<double>(sub.queued));
    f.Counter("plexus_subscription_filtered_messages_total", "Messages the filter refused.", l,
              static_cast<double>(sub.filtered));
    f.Counter("plexus_subscription_callbacks_total",
              "Callbacks that ran (notices and the final message included).", l,
              static_cast<double>(sub.dispatched));
    f.Counter("plexus_subscription_callback_failures_total", "Callbacks that threw.", l,
              static_cast<double>(sub.failed));
    f.Counter("plexus_subscription_dropped_messages_total",
              "Messages dropped by a drop-oldest queue.", l, static_cast<double>(sub.dropped));
    f.Counter("plexus_subscription_rejected_messages_total",
              "Messages refused by a reject-new queue.", l, static_cast<double>(sub.rejected));
    f.Gauge("plexus_subscription_queue_depth", "Messages waiting (and being handled).", l,
            static_cast<double>(sub.depth));
    f.Gauge("plexus_subscription_queue_max_depth", "The most messages ever waiting at once.", l,
            static_cast<double>(sub.max_depth));
    f.Gauge("plexus_subscription_alerted", "1 while the queue is above its high-water mark.", l,
            sub.alerted ? 1 : 0);
    f.Gauge("plexus_subscription_queue_high_water",
            "Queue depth at which the subscription's alert is raised.", l,
            static_cast<double>(sub.high_water));
    f.Gauge("plexus_subscription_queue_low_water",
            "Queue depth at which the subscription's alert is cleared.", l,
            static_cast<double>(sub.low_water));
  }
}

void AddTaskProcessors(const OpsSnapshot& s, Families& f) {
  f.Gauge("plexus_taskprocessors", "Live task processors.", {},
          static_cast<double>(s.live_task_processors));
  std::size_t anonymous = 0;
  for (const TaskProcessorStats& tp : s.task_processors) {
    const Labels l{
        {"taskprocessor", tp.name.empty() ? "anonymous#" + std::to_string(anonymous++) : tp.name}};
    f.Counter("plexus_taskprocessor_tasks_processed_total", "Tasks that ran (threw or not).", l,
              static_cast<double>(tp.processed));
    f.Counter("plexus_taskprocessor_tasks_failed_total", "Tasks that threw.", l,
              static_cast<double>(tp.failed));
    f.Counter("plexus_taskprocessor_tasks_discarded_total",
              "Tasks destroyed unrun by a discarding shutdown.", l,
              static_cast<double>(tp.discarded));
    f.Counter("plexus_taskprocessor_busy_seconds_total", "Time spent running tasks.", l,
              Seconds(tp.busy));
    f.Gauge("plexus_taskprocessor_queue_depth", "Tasks waiting.", l, static_cast<double>(tp.depth));
    f.Gauge("plexus_taskprocessor_queue_max_depth", "The most tasks ever waiting at once.", l,
            static_cast<double>(tp.max_depth));
    f.Gauge("plexus_taskprocessor_alerted", "1 while the queue is above its high-water mark.", l,
            tp.alerted ? 1 : 0);
    f.Gauge("plexus_taskprocessor_queue_high_water",
            "Queue depth at which the task processor's alert is raised.", l,
            static_cast<double>(tp.high_water));
    f.Gauge("plexus_taskprocessor_queue_low_water",
            "Queue depth at which the task processor's alert is cleared.", l,
            static_cast<double>(tp.low_water));
  }
}

void AddPoolAndTimers(const OpsSnapshot& s, Families& f) {
  const std::string& pool = s.shared_pool.name;
  f.Gauge("plexus_pool_threads", "Threads of the shared pool.",
          {{"pool", pool}, {"state", "active"}}, static_cast<double>(s.shared_pool.active_threads));
  f.Gauge("plexus_pool_threads", "Threads of the shared pool.", {{"pool", pool}, {"state", "idle"}},
          static_cast<double>(s.shared_pool.idle_threads));
  f.Gauge("plexus_pool_queued_tasks", "Tasks waiting for a thread of the shared pool.",
          {{"pool", pool}}, static_cast<double>(s.shared_pool.queued_tasks));
  f.Gauge("plexus_timer_heaps", "Live timer heaps.", {}, static_cast<double>(s.timer_heaps.size()));
  for (const TimerHeapStats& t : s.timer_heaps) {
    const Labels l{{"heap", t.name}, {"heap_id", std::to_string(t.id)}};
    f.Counter("plexus_timer_scheduled_total", "Timers scheduled on the heap.", l,
              static_cast<double>(t.scheduled));
    f.Counter("plexus_timer_fired_total", "Timer callbacks that ran.", l,
              static_cast<double>(t.fired));
    f.Gauge("plexus_timer_pending", "Timers waiting for their deadline.", l,
            static_cast<double>(t.pending));
  }
}

void AddLocksAndRefs(const OpsSnapshot& s, Families& f) {
  f.Gauge("plexus_queue_alerts", "Task processors and subscriptions above their high-water mark.",
          {}, static_cast<double>(s.queues_in_alert));
  f.Gauge("plexus_group_locks", "Live group locks.", {}, static_cast<double>(s.live_group_locks));
  f.Gauge("plexus_lock_order_validation_enabled", "1 while lock-order validation is on.", {},
          s.lock_order_validation ? 1 : 0);
  f.Counter("plexus_lock_order_violations_total", "Lock-order inversions reported.", {},
            static_cast<double>(s.lock_order_violations));
  f.Gauge("plexus_ref_debugging_enabled", "1 while reference debugging is on.", {},
          s.ref_debugging ? 1 : 0);
  if (s.ref_debugging) {
    std::size_t references = 0;
    for (const TrackedObject& o : s.tracked_objects) references += o.holders.size();
    f.Gauge("plexus_tracked_objects", "Objects with references tracked by reference debugging.", {},
            static_cast<double>(s.tracked_objects.size()));
    f.Gauge("plexus_tracked_references", "References tracked by reference debugging.", {},
            static_cast<double>(references));
  }
}

// One family for every program counter, told apart by a label: a counter's name is free text
// chosen by the program, which need not make a valid metric name.
void AddCounters(const OpsSnapshot& s, Families& f) {
  for (const CounterStats& c : s.counters) {
    f.Counter("plexus_app_events_total",
              "Counters the program registered with the operator view (plexus::ops::Counter).",
              {{"counter", c.name}}, static_cast<double>(c.value));
  }
}

}  // namespace

std::vector<MetricFamily> ToMetricFamilies(const OpsSnapshot& snapshot) {
  Families f;
  AddTopics(snapshot, f);
  AddSubscriptions(snapshot, f);
  AddTaskProcessors(snapshot, f);
  AddPoolAndTimers(snapshot, f);
  AddLocksAndRefs(snapshot, f);
  AddCounters(snapshot, f);
  return f.Take();
}

std::string MetricsText(const OpsSnapshot& snapshot) {
  return prometheus::TextSerializer().Serialize(ToMetricFamilies(snapshot));
}

std::vector<MetricFamily> MetricsCollectable::Collect() const {
  return ToMetricFamilies(TakeSnapshot(SnapshotParts::kMetrics | SnapshotParts::kRefs));
}

}  // namespace plexus::ops
