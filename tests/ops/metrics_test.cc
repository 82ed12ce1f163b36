// /metrics tells the truth (OP07): its counters equal the statistics APIs read at the same
// moment, the page is valid Prometheus text (promtool's rules and a parser written to the
// format), and the names follow Prometheus's conventions.

#include "plexus/ops/metrics.h"

#include <cctype>
#include <cstdlib>
#include <future>
#include <set>
#include <sstream>
#include <string>
#include <string_view>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "ops/ops_test_support.h"
#include "plexus/bus/bus.h"
#include "plexus/exec/task_processor.h"
#include "plexus/exec/timer_heap.h"
#include "plexus/ops/counter.h"
#include "plexus/ops/operator_view.h"

namespace plexus::ops {
namespace {

// A quiet process with something in every listing: a topic with a synchronous subscriber, a
// named task processor that ran tasks, a timer heap that fired a timer.
struct Workload {
  Workload() {
    topic = Topic::Create("op07.topic", "metrics test");
    sub = Subscription::Create(
        topic, [](const Message&, bool) {},
        SubscriptionOptions{.mode = DeliveryMode::kSynchronous});
    for (int i = 0; i < 17; ++i) topic->Publish(plexus_test::IntType(), i);
    tp = TaskProcessor::Create({.name = "op07/tp", .high_water = 40, .low_water = 30});
    for (int i = 0; i < 5; ++i) tp->PushAndWait([] {});
    heap = TimerHeap::Create("op07.heap");
    std::promise<void> fired;
    heap->Schedule(std::chrono::nanoseconds(0), [&] { fired.set_value(); });
    fired.get_future().wait();
    // The fired count is updated after the callback returns: wait for it.
    EXPECT_TRUE(plexus_test::WaitUntil([&] { return heap->Stats().fired == 1; }));
  }
  ~Workload() { sub.UnsubscribeAndJoin(); }

  Ref<Topic> topic;
  Subscription sub;
  Ref<TaskProcessor> tp;
  Ref<TimerHeap> heap;
  Counter calls{"op07.calls", "metrics test"};
};

// A parser written to the text format's specification (version 0.0.4), by hand rather than
// with std::regex, whose GCC 12 implementation trips -Wmaybe-uninitialized under ASan.
bool IsNameChar(char c, bool first) {
  return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':' ||
         (!first && std::isdigit(static_cast<unsigned char>(c)));
}

// Consumes a metric (or, without colons, label) name at `at`.
bool TakeName(std::string_view line, std::size_t& at, bool label) {
  const std::size_t start = at;
  while (at < line.size() && IsNameChar(line[at], at == start) && !(label && line[at] == ':')) {
    ++at;
  }
  return at > start;
}

bool IsValue(std::string_view v) {
  if (v == "+Inf" || v == "-Inf" || v == "NaN") return true;
  if (v.empty()) return false;
  const std::string text(v);
  char* end = nullptr;
  std::strtod(text.c_str(), &end);
  return end == text.c_str() + text.size();
}

bool IsSampleLine(std::string_view line) {
  std::size_t at = 0;
  if (!TakeName(line, at, false)) return false;
  if (at < line.size() && line[at] == '{') {
    ++at;
    while (at < line.size() && line[at] != '}') {
      if (!TakeName(line, at, true) || line.substr(at, 2) != "=\"") return false;
      at += 2;
      while (at < line.size() && line[at] != '"') {
        if (line[at] == '\n') return false;
        if (line[at] == '\\') {
          if (at + 1 >= line.size() ||
              std::string_view("\\\"n").find(line[at + 1]) == std::string_view::npos)
            return false;
          ++at;
        }
        ++at;
      }
      if (at >= line.size()) return false;
      ++at;  // the closing quote
      if (at < line.size() && line[at] == ',') ++at;
    }
    if (at >= line.size()) return false;
    ++at;  // '}'
  }
  if (at >= line.size() || line[at] != ' ') return false;
  return IsValue(line.substr(at + 1));
}

bool IsCommentLine(std::string_view line) {
  for (std::string_view kind : {"# HELP ", "# TYPE "}) {
    if (line.substr(0, kind.size()) != kind) continue;
    std::size_t at = kind.size();
    if (!TakeName(line, at, false) || at >= line.size() || line[at] != ' ') return false;
    if (kind == "# HELP ") return true;
    const std::string_view type = line.substr(at + 1);
    return type == "counter" || type == "gauge" || type == "histogram" || type == "summary" ||
           type == "untyped";
  }
  return false;
}

std::string Key(const std::string& name, const std::string& labels) {
  return name + "{" + labels + "}";
}

TEST(Metrics, OP07_CountersEqualTheStatisticsApi) {
  Workload w;
  w.calls.Add(12);
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  // The workload is quiet: what the APIs say now is what /metrics must say.
  const std::vector<TopicStats> topics = ListTopics();
  const std::vector<SubscriptionStats> subs = ListSubscriptions();
  const std::vector<TaskProcessorStats> tps = TaskProcessor::List();
  const std::vector<TimerHeapStats> heaps = ListTimerHeaps();
  const plexus_test::HttpResponse r = plexus_test::Get(view->Port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const auto samples = plexus_test::ParseSamples(r.body);

  int checked = 0;
  for (const TopicStats& t : topics) {
    if (t.name != "op07.topic") continue;
    const std::string l = "topic=\"op07.topic\",topic_id=\"" + std::to_string(t.id) + "\"";
    EXPECT_EQ(samples.at(Key("plexus_topic_published_messages_total", l)), t.published);
    EXPECT_EQ(samples.at(Key("plexus_topic_delivered_messages_total", l)), t.deliveries);
    EXPECT_EQ(samples.at(Key("plexus_topic_forwarded_in_messages_total", l)), t.forwarded_in);
    EXPECT_EQ(samples.at(Key("plexus_topic_subscribers", l)), t.subscribers);
    EXPECT_EQ(t.published, w.topic->Stats().published);
    ++checked;
  }
  for (const SubscriptionStats& s : subs) {
    if (s.topic != "op07.topic") continue;
    const std::string l = "subscription=\"" + s.id + "\",topic=\"op07.topic\",mode=\"synchronous\"";
    EXPECT_EQ(samples.at(Key("plexus_subscription_queued_messages_total", l)), s.queued);
    EXPECT_EQ(samples.at(Key("plexus_subscription_callbacks_total", l)), s.dispatched);
    EXPECT_EQ(samples.at(Key("plexus_subscription_queue_max_depth", l)), s.max_depth);
    EXPECT_EQ(samples.at(Key("plexus_subscription_queue_high_water", l)), s.high_water);
    EXPECT_EQ(samples.at(Key("plexus_subscription_queue_low_water", l)), s.low_water);
    ++checked;
  }
  for (const TaskProcessorStats& tp : tps) {
    if (tp.name != "op07/tp") continue;
    const std::string l = "taskprocessor=\"op07/tp\"";
    EXPECT_EQ(samples.at(Key("plexus_taskprocessor_tasks_processed_total", l)), tp.processed);
    EXPECT_EQ(samples.at(Key("plexus_taskprocessor_queue_max_depth", l)), tp.max_depth);
    EXPECT_EQ(samples.at(Key("plexus_taskprocessor_queue_high_water", l)), 40);
    EXPECT_EQ(samples.at(Key("plexus_taskprocessor_queue_low_water", l)), 30);
    EXPECT_DOUBLE_EQ(samples.at(Key("plexus_taskprocessor_busy_seconds_total", l)),
                     std::chrono::duration<double>(tp.busy).count());
    EXPECT_EQ(tp.processed, 5u);
    ++checked;
  }
  for (const TimerHeapStats& h : heaps) {
    if (h.name != "op07.heap") continue;
    const std::string l = "heap=\"op07.heap\",heap_id=\"" + std::to_string(h.id) + "\"";
    EXPECT_EQ(samples.at(Key("plexus_timer_scheduled_total", l)), h.scheduled);
    EXPECT_EQ(samples.at(Key("plexus_timer_fired_total", l)), h.fired);
    EXPECT_EQ(samples.at(Key("plexus_timer_pending", l)), h.pending);
    ++checked;
  }
  EXPECT_EQ(samples.at(Key("plexus_app_events_total", "counter=\"op07.calls\"")), 12);
  EXPECT_EQ(checked, 4);
  EXPECT_EQ(samples.at("plexus_lock_order_violations_total"), LockOrderViolationCount());
}

TEST(Metrics, OP07_NamesFollowPrometheusConventions) {
  Workload w;
  const std::vector<prometheus::MetricFamily> families =
      ToMetricFamilies(TakeSnapshot(SnapshotParts::kMetrics));
  ASSERT_FALSE(families.empty());
  std::set<std::string> names;
  for (const prometheus::MetricFamily& f : families) {
    SCOPED_TRACE(f.name);
    EXPECT_EQ(f.name.rfind("plexus_", 0), 0u);
    EXPECT_TRUE(names.insert(f.name).second) << "one family per name";
    const bool total = f.name.size() > 6 && f.name.compare(f.name.size() - 6, 6, "_total") == 0;
    EXPECT_EQ(total, f.type == prometheus::MetricType::Counter);
    EXPECT_FALSE(f.help.empty());
    // Base units only.
    for (const char* unit : {"milli", "micro", "nano", "_ms", "_us", "_ns", "kilo", "mega"}) {
      EXPECT_EQ(f.name.find(unit), std::string::npos);
    }
    // Every series of a family is unique.
    std::set<std::vector<prometheus::ClientMetric::Label>> series;
    for (const prometheus::ClientMetric& m : f.metric) EXPECT_TRUE(series.insert(m.label).second);
  }
}

TEST(Metrics, OP07_ThePageParsesAsPrometheusText) {
  Workload w;
  const std::string text = MetricsText(TakeSnapshot(SnapshotParts::kMetrics));
  std::stringstream lines(text);
  std::string line;
  int samples = 0;
  while (std::getline(lines, line)) {
    SCOPED_TRACE(line);
    if (line.rfind("#", 0) == 0) {
      EXPECT_TRUE(IsCommentLine(line));
    } else {
      EXPECT_TRUE(IsSampleLine(line));
      ++samples;
    }
  }
  // The parser refuses what the format does not allow.
  EXPECT_FALSE(IsSampleLine("1name 1"));
  EXPECT_FALSE(IsSampleLine("name{a=\"b} 1"));
  EXPECT_FALSE(IsSampleLine("name{a=\"b\"} x"));
  EXPECT_FALSE(IsCommentLine("# TYPE name counterish"));
  EXPECT_TRUE(IsSampleLine("name{a=\"b\\\"c\",d=\"\"} +Inf"));
  EXPECT_GT(samples, 10);
}

TEST(Metrics, OP07_PromtoolAcceptsThePage) {
  const std::string promtool = plexus_test::FindTool("promtool");
  if (promtool.empty()) GTEST_SKIP() << "promtool is not installed (Debian package prometheus)";
  Workload w;
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  const plexus_test::HttpResponse r = plexus_test::Get(view->Port(), "/metrics");
  ASSERT_EQ(r.status, 200);
  const auto dir = plexus_test::TempDir("promtool");
  const std::string page = (dir / "metrics.txt").string();
  const std::string log = (dir / "promtool.log").string();
  plexus_test::WriteFile(page, r.body);
  const int status =
      plexus_test::Run({"/bin/sh", "-c", "'" + promtool + "' check metrics < '" + page + "'"}, log);
  EXPECT_EQ(status, 0) << plexus_test::ReadFile(log);
  std::filesystem::remove_all(dir);
}

TEST(Metrics, CollectableServesTheSameFamilies) {
  Workload w;
  const std::vector<prometheus::MetricFamily> collected = MetricsCollectable().Collect();
  std::set<std::string> names;
  for (const auto& f : collected) names.insert(f.name);
  for (const char* name :
       {"plexus_topics", "plexus_topic_published_messages_total", "plexus_subscriptions",
        "plexus_taskprocessor_tasks_processed_total", "plexus_pool_threads",
        "plexus_timer_fired_total", "plexus_queue_alerts", "plexus_group_locks",
        "plexus_lock_order_violations_total", "plexus_ref_debugging_enabled"}) {
    EXPECT_EQ(names.count(name), 1u) << name;
  }
}

TEST(Metrics, ReferencesAliveAreShownWhileRefDebuggingIsOn) {
  EXPECT_EQ(MetricsText(TakeSnapshot()).find("plexus_tracked_references"), std::string::npos);
  plexus_test::ScopedRefDebugging debugging(true);
  Ref<GroupLock> group = GroupLock::Create();
  Ref<GroupLock> second = group;
  const auto samples = plexus_test::ParseSamples(MetricsText(TakeSnapshot()));
  EXPECT_EQ(samples.at("plexus_ref_debugging_enabled"), 1);
  EXPECT_GE(samples.at("plexus_tracked_references"), 2);
  EXPECT_GE(samples.at("plexus_tracked_objects"), 1);
  EXPECT_GE(samples.at("plexus_group_locks"), 1);
}

}  // namespace
}  // namespace plexus::ops
