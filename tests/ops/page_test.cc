// The operator page (OP08): headless Chromium loads it from the view, its script runs, and
// the numbers in the rendered DOM are compared with the JSON endpoints. A screenshot is kept
// in the build directory as an artefact of the run.
//
// Every number the page shows carries a data-k attribute naming where it comes from
// ("topic|<id>|published", "tp|<name>|depth", "locks|live", ...), so the comparison needs no
// knowledge of the layout.

#include <filesystem>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>

#include "bus/bus_test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "ops/ops_test_support.h"
#include "plexus/bus/bus.h"
#include "plexus/exec/task_processor.h"
#include "plexus/ops/counter.h"
#include "plexus/ops/operator_view.h"
#include "plexus/sync/group_lock.h"
#include "plexus/sync/mutex.h"

#ifndef PLEXUS_OPS_ARTEFACT_DIR
#define PLEXUS_OPS_ARTEFACT_DIR "."
#endif

namespace plexus::ops {
namespace {

using nlohmann::json;

std::vector<std::string> ChromiumArgs(const std::string& chromium,
                                      const std::filesystem::path& profile) {
  // No sandbox: CI runs the tests as root, where Chromium's sandbox refuses to start.
  return {chromium,
          "--headless",
          "--no-sandbox",
          "--disable-gpu",
          "--disable-dev-shm-usage",
          "--no-first-run",
          "--user-data-dir=" + profile.string(),
          "--virtual-time-budget=4000"};
}

// data-k -> text of every element that has one (found by hand rather than with std::regex,
// whose GCC 12 implementation trips -Wmaybe-uninitialized under ASan).
std::map<std::string, std::string> ShownNumbers(const std::string& dom) {
  std::map<std::string, std::string> out;
  const std::string marker = "data-k=\"";
  for (std::size_t at = dom.find(marker); at != std::string::npos; at = dom.find(marker, at)) {
    at += marker.size();
    const std::size_t key_end = dom.find('"', at);
    const std::size_t text_begin = dom.find('>', key_end);
    const std::size_t text_end = dom.find('<', text_begin);
    if (key_end == std::string::npos || text_end == std::string::npos) break;
    out[dom.substr(at, key_end - at)] = dom.substr(text_begin + 1, text_end - text_begin - 1);
  }
  return out;
}

// The page's own count of completed refreshes (its body's data-refreshes), 0 when absent.
int Refreshes(const std::string& dom) {
  const std::string marker = "data-refreshes=\"";
  const std::size_t at = dom.find(marker);
  return at == std::string::npos ? 0 : std::atoi(dom.c_str() + at + marker.size());
}

std::string Text(const json& j) {
  return j.is_string() ? j.get<std::string>() : j.dump();
}

// What the JSON says for a data-k key; empty when the key names nothing.
std::string Expected(const std::string& key, const json& topics, const json& tps, const json& subs,
                     const json& locks, const json& counters) {
  std::vector<std::string> part;
  std::stringstream ss(key);
  for (std::string p; std::getline(ss, p, '|');) part.push_back(p);
  if (key == "topics|live") return Text(topics["live"]);
  if (key == "subscriptions|live") return Text(subs["live"]);
  if (key == "taskprocessors|live") return Text(tps["live"]);
  if (key == "taskprocessors|queues_in_alert") return Text(tps["queues_in_alert"]);
  if (key == "locks|live") return Text(locks["live"]);
  if (key == "locks|violations") return Text(locks["lock_order"]["violations"]);
  if (part.size() != 3) return {};
  auto find = [&](const json& list, const char* field, const std::string& value) -> const json* {
    for (const json& item : list) {
      if (Text(item[field]) == value) return &item;
    }
    return nullptr;
  };
  const json* item = nullptr;
  if (part[0] == "topic") item = find(topics["topics"], "id", part[1]);
  if (part[0] == "tp") item = find(tps["taskprocessors"], "name", part[1]);
  if (part[0] == "sub") item = find(subs["subscriptions"], "id", part[1]);
  if (part[0] == "lock") item = find(locks["group_locks"], "address", part[1]);
  if (part[0] == "counter") item = find(counters["counters"], "name", part[1]);
  if (item == nullptr) return {};
  if (part[0] == "lock" && part[2] == "chain") return std::to_string((*item)["chain"].size());
  return Text((*item)[part[2]]);
}

TEST(OperatorPage, OP08_RenderedNumbersMatchTheJsonEndpoints) {
  const std::string chromium = plexus_test::FindTool("chromium");
  if (chromium.empty()) GTEST_SKIP() << "chromium is not installed (Debian package chromium)";

  // A quiet workload with something in every panel: a busy and a quiet topic, a task
  // processor with tasks waiting behind a blocked one, a held group lock with a chained lock.
  Ref<Topic> busy = Topic::Create("op08.busy");
  Ref<Topic> quiet = Topic::Create("op08.quiet");
  Subscription busy_sub = Subscription::Create(
      busy, [](const Message&, bool) {}, SubscriptionOptions{.mode = DeliveryMode::kSynchronous});
  for (int i = 0; i < 30; ++i) busy->Publish(plexus_test::IntType(), i);
  for (int i = 0; i < 3; ++i) quiet->Publish(plexus_test::IntType(), i);
  Ref<TaskProcessor> tp =
      TaskProcessor::Create({.name = "op08/queue", .high_water = 2, .low_water = 1});
  // The program's own counter, which the page charts per second.
  Counter calls("op08.calls", "calls set up");
  calls.Add(1234);
  plexus_test::Gate gate;
  tp->Push(gate.waiter());
  ASSERT_TRUE(gate.WaitForArrivals(1));
  tp->Push([] {});
  tp->Push([] {});
  Ref<GroupLock> group = GroupLock::Create();
  Mutex chained;
  group->Chain(chained, 1);
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  group->Acquire();
  const auto profile = plexus_test::TempDir("chromium");
  const std::string dom_file = (profile / "dom.html").string();
  const std::string err_file = (profile / "chromium.log").string();
  std::vector<std::string> args = ChromiumArgs(chromium, profile / "profile");
  args.push_back("--dump-dom");
  args.push_back(view->Url() + "/");
  const int chromium_status = plexus_test::Run(args, dom_file, err_file);
  const std::string dom = plexus_test::ReadFile(dom_file);
  const json topics = json::parse(plexus_test::Get(view->Port(), "/api/topics").body);
  const json tps = json::parse(plexus_test::Get(view->Port(), "/api/taskprocessors").body);
  const json subs = json::parse(plexus_test::Get(view->Port(), "/api/subscriptions").body);
  const json locks = json::parse(plexus_test::Get(view->Port(), "/api/locks").body);
  const json counters = json::parse(plexus_test::Get(view->Port(), "/api/counters").body);
  group->Release();  // the page and the JSON were read while it was held
  ASSERT_EQ(chromium_status, 0) << plexus_test::ReadFile(err_file);

  // The script ran and filled the page.
  ASSERT_GE(Refreshes(dom), 1) << dom;
  const std::map<std::string, std::string> shown = ShownNumbers(dom);
  int compared = 0;
  for (const auto& [key, value] : shown) {
    SCOPED_TRACE(key);
    const std::string expected = Expected(key, topics, tps, subs, locks, counters);
    if (expected.empty()) continue;  // not of this workload
    EXPECT_EQ(value, expected);
    ++compared;
  }
  EXPECT_GT(compared, 10);
  EXPECT_EQ(shown.at("topic|" + std::to_string(busy->Id()) + "|published"),
            std::to_string(busy->Stats().published));
  EXPECT_EQ(shown.at("topic|" + std::to_string(quiet->Id()) + "|published"),
            std::to_string(quiet->Stats().published));
  EXPECT_EQ(shown.at("tp|op08/queue|depth"), "2");
  // The levels the task processor reports, and the alert they raise (depth 2 at high water 2).
  EXPECT_EQ(shown.at("tp|op08/queue|high_water"), "2");
  EXPECT_NE(dom.find("<td class=\"alert\">op08/queue</td>"), std::string::npos) << dom;
  EXPECT_EQ(shown.at("counter|op08.calls|value"), "1234");
  // The chart follows the program's counter (the first by name: this test's only one).
  EXPECT_NE(dom.find("<span id=\"chart-title\">op08.calls</span>"), std::string::npos) << dom;
  EXPECT_NE(dom.find("data-series=\"op08.calls\""), std::string::npos);
  char address[32];
  std::snprintf(address, sizeof address, "%p", static_cast<const void*>(group.get()));
  EXPECT_EQ(shown.at(std::string("lock|") + address + "|chain"), "1");
  // Busiest first.
  EXPECT_LT(dom.find(">op08.busy<"), dom.find(">op08.quiet<"));

  // The screenshot, kept for people to look at.
  const std::filesystem::path artefacts = PLEXUS_OPS_ARTEFACT_DIR;
  std::filesystem::create_directories(artefacts);
  const std::filesystem::path shot = artefacts / "operator_page.png";
  std::filesystem::remove(shot);
  args = ChromiumArgs(chromium, profile / "profile");
  args.push_back("--window-size=1280,1400");
  args.push_back("--screenshot=" + shot.string());
  args.push_back(view->Url() + "/");
  ASSERT_EQ(plexus_test::Run(args, err_file), 0) << plexus_test::ReadFile(err_file);
  EXPECT_TRUE(std::filesystem::exists(shot));
  EXPECT_GT(std::filesystem::file_size(shot), 1000u);

  gate.Open();
  busy_sub.UnsubscribeAndJoin();
  view.reset();
  std::filesystem::remove_all(profile);
}

}  // namespace
}  // namespace plexus::ops
