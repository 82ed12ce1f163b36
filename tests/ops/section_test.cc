// The program's own sections of the operator view (plexus/ops/section.h): served as JSON,
// listed, exported to /metrics, and refused when their names clash or are unusable.

#include "plexus/ops/section.h"

#include <atomic>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>

#include "gtest/gtest.h"
#include "ops/ops_test_support.h"
#include "plexus/ops/operator_view.h"

namespace plexus::ops {
namespace {

using plexus_test::Get;
using plexus_test::HttpResponse;

TEST(Section, ServedAsJsonAndListed) {
  std::atomic<int> calls{0};
  OperatorViewOptions options;
  options.sections.push_back({.name = "cluster", .title = "Cluster", .json = [&] {
                                ++calls;
                                return std::string(R"({"nodes_alive": 2, "node": "aa"})");
                              }});
  options.sections.push_back(
      {.name = "sip-stack", .json = [] { return std::string(R"({"registrations": 7})"); }});
  auto view = OperatorView::Start(options);
  ASSERT_NE(view, nullptr);

  const HttpResponse cluster = Get(view->Port(), "/api/cluster");
  EXPECT_EQ(cluster.status, 200);
  const nlohmann::json j = nlohmann::json::parse(cluster.body);
  EXPECT_EQ(j["nodes_alive"], 2);
  EXPECT_EQ(j["node"], "aa");
  EXPECT_EQ(calls.load(), 1);  // once per request

  const nlohmann::json list = nlohmann::json::parse(Get(view->Port(), "/api/sections").body);
  ASSERT_EQ(list.size(), 2u);
  EXPECT_EQ(list[0]["name"], "cluster");
  EXPECT_EQ(list[0]["title"], "Cluster");
  EXPECT_EQ(list[1]["name"], "sip-stack");
  EXPECT_EQ(list[1]["title"], "sip-stack");  // the name when no title is given
  EXPECT_EQ(Get(view->Port(), "/api/sip-stack").status, 200);
  EXPECT_EQ(Get(view->Port(), "/api/nosuch").status, 404);
}

TEST(Section, NumbersExportedToMetrics) {
  OperatorViewOptions options;
  options.sections.push_back({.name = "cluster", .json = [] {
                                return std::string(
                                    R"({"nodes_alive": 2, "node": "aa", "up": true,
                                        "rejected": {"bad-magic": 3}, "list": [1, 2]})");
                              }});
  auto view = OperatorView::Start(options);
  ASSERT_NE(view, nullptr);
  const HttpResponse metrics = Get(view->Port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("plexus_section_cluster_nodes_alive 2\n"), std::string::npos)
      << metrics.body;
  EXPECT_NE(metrics.body.find("plexus_section_cluster_up 1\n"), std::string::npos);
  EXPECT_NE(metrics.body.find("plexus_section_cluster_rejected_bad_magic 3\n"), std::string::npos);
  // A string is no gauge.
  EXPECT_EQ(metrics.body.find("plexus_section_cluster_node gauge"), std::string::npos);
  EXPECT_EQ(metrics.body.find("plexus_section_cluster_list"), std::string::npos);
  // The layers' own metrics are still there.
  EXPECT_NE(metrics.body.find("plexus_topics"), std::string::npos);
}

TEST(Section, FailingSectionAnswers500AndLeavesMetricsAlone) {
  OperatorViewOptions options;
  options.sections.push_back(
      {.name = "throws", .json = []() -> std::string { throw std::runtime_error("no"); }});
  options.sections.push_back({.name = "garbage", .json = [] { return std::string("{nope"); }});
  auto view = OperatorView::Start(options);
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(Get(view->Port(), "/api/throws").status, 500);
  EXPECT_EQ(Get(view->Port(), "/api/garbage").status, 500);
  const HttpResponse metrics = Get(view->Port(), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_EQ(metrics.body.find("plexus_section_"), std::string::npos);
}

TEST(Section, UnusableNamesRefuseToStart) {
  for (const std::string name : {"", "topics", "sections", "Cluster", "a/b", "a b"}) {
    OperatorViewOptions options;
    options.sections.push_back({.name = name, .json = [] { return std::string("{}"); }});
    EXPECT_EQ(OperatorView::Start(options), nullptr) << "'" << name << "'";
  }
  OperatorViewOptions twice;
  twice.sections.push_back({.name = "x", .json = [] { return std::string("{}"); }});
  twice.sections.push_back({.name = "x", .json = [] { return std::string("{}"); }});
  EXPECT_EQ(OperatorView::Start(twice), nullptr);
  OperatorViewOptions no_function;
  no_function.sections.push_back({.name = "x"});
  EXPECT_EQ(OperatorView::Start(no_function), nullptr);
}

TEST(Section, ValidNames) {
  EXPECT_TRUE(ValidSectionName("cluster"));
  EXPECT_TRUE(ValidSectionName("sip_stack-2"));
  EXPECT_FALSE(ValidSectionName("counters"));
  EXPECT_FALSE(ValidSectionName(std::string(65, 'a')));
}

TEST(Section, MetricsTextOfNonObjectsIsEmpty) {
  EXPECT_EQ(SectionMetricsText("x", "[1,2]"), "");
  EXPECT_EQ(SectionMetricsText("x", "3"), "");
  EXPECT_EQ(SectionMetricsText("x", "{"), "");
  EXPECT_EQ(SectionMetricsText("x", R"({"a": 1.5})"),
            "# TYPE plexus_section_x_a gauge\nplexus_section_x_a 1.5\n");
}

// A listing of parts (an array of objects) becomes one series per part and numeric field,
// labelled by the part's string fields: a node's incarnation is a label, not a value.
TEST(Section, MetricsTextOfAnArrayOfObjectsIsOneSeriesPerObject) {
  EXPECT_EQ(
      SectionMetricsText("cluster", R"({"nodes": [
          {"node": "02:00:00:00:00:01", "incarnation": "17", "alive": true,
           "last_heartbeat_ms_ago": 40, "messages_in": 5},
          {"node": "02:00:00:00:00:02", "incarnation": "9", "alive": false, "messages_in": 0}]})"),
      "# TYPE plexus_section_cluster_nodes_alive gauge\n"
      "plexus_section_cluster_nodes_alive{incarnation=\"17\",node=\"02:00:00:00:00:01\"} 1\n"
      "plexus_section_cluster_nodes_alive{incarnation=\"9\",node=\"02:00:00:00:00:02\"} 0\n"
      "# TYPE plexus_section_cluster_nodes_last_heartbeat_ms_ago gauge\n"
      "plexus_section_cluster_nodes_last_heartbeat_ms_ago{incarnation=\"17\",node=\"02:00:00:00:00:"
      "01\"} 40\n"
      "# TYPE plexus_section_cluster_nodes_messages_in gauge\n"
      "plexus_section_cluster_nodes_messages_in{incarnation=\"17\",node=\"02:00:00:00:00:01\"} 5\n"
      "plexus_section_cluster_nodes_messages_in{incarnation=\"9\",node=\"02:00:00:00:00:02\"} 0\n");
  // Label values are escaped; an array that is not of objects says nothing.
  EXPECT_EQ(SectionMetricsText("x", R"({"parts": [{"name": "a\"b\\c\nd", "n": 1}]})"),
            "# TYPE plexus_section_x_parts_n gauge\n"
            "plexus_section_x_parts_n{name=\"a\\\"b\\\\c\\nd\"} 1\n");
  EXPECT_EQ(SectionMetricsText("x", R"({"values": [1, 2]})"), "");
  // A name met twice is written once (the first wins): the format allows one family per name.
  EXPECT_EQ(SectionMetricsText("x", R"({"nodes_alive": 2, "nodes": [{"node": "a", "alive": true}],
                                       "a": {"b": 1}, "a_b": 2})"),
            "# TYPE plexus_section_x_a_b gauge\nplexus_section_x_a_b 1\n"
            "# TYPE plexus_section_x_nodes_alive gauge\nplexus_section_x_nodes_alive 2\n");
}

// The page renders a section as tables: its scalar fields by name, an array of objects as a
// table of its own, every value with a data-k attribute naming where it comes from.
TEST(Section, ShownOnThePageAsTables) {
  const std::string chromium = plexus_test::FindTool("chromium");
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (Debian package chromium)";
  OperatorViewOptions options;
  options.sections.push_back({.name = "cluster", .title = "Cluster of nodes", .json = [] {
                                return std::string(
                                    R"({"nodes_alive": 2, "rejected": {"bad-magic": 3},
                 "nodes": [{"node": "02:00:00:00:00:01", "snapshots": 17},
                           {"node": "02:00:00:00:00:02", "snapshots": 5}]})");
                              }});
  auto view = OperatorView::Start(options);
  ASSERT_NE(view, nullptr);
  const auto dir = plexus_test::TempDir("section-page");
  const std::string dom_file = (dir / "dom.html").string();
  const std::string err_file = (dir / "chromium.log").string();
  // No sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start.
  const int status = plexus_test::Run(
      {chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
       "--no-first-run", "--user-data-dir=" + (dir / "profile").string(),
       "--virtual-time-budget=4000", "--dump-dom", view->Url() + "/"},
      dom_file, err_file);
  ASSERT_EQ(status, 0) << plexus_test::ReadFile(err_file);
  const std::string dom = plexus_test::ReadFile(dom_file);
  ASSERT_NE(dom.find("data-section-refreshes="), std::string::npos) << dom;
  EXPECT_NE(dom.find("<h2>Cluster of nodes</h2>"), std::string::npos) << dom;
  EXPECT_NE(dom.find(R"(data-k="section|cluster|nodes_alive">2<)"), std::string::npos) << dom;
  EXPECT_NE(dom.find(R"(data-k="section|cluster|rejected">bad-magic: 3<)"), std::string::npos);
  EXPECT_NE(dom.find(R"(data-k="section|cluster|nodes|0|snapshots">17<)"), std::string::npos);
  EXPECT_NE(dom.find(R"(data-k="section|cluster|nodes|1|node">02:00:00:00:00:02<)"),
            std::string::npos);
  view.reset();
  std::filesystem::remove_all(dir);
}

}  // namespace
}  // namespace plexus::ops
