// A real Prometheus server scrapes the operator view and a counter is read back through its
// query API (OP07): the page is not only well-formed but ingested as plexus means it.
//
// Prometheus is an external program: the test starts it on a loopback port with a temporary
// configuration and storage, polls its HTTP API until the sample arrives (within a bound
// that only a failure reaches), and stops it.

#include <signal.h>

#include <nlohmann/json.hpp>
#include <set>
#include <string>
#include <thread>

#include "bus/bus_test_support.h"
#include "gtest/gtest.h"
#include "ops/ops_test_support.h"
#include "plexus/bus/bus.h"
#include "plexus/ops/operator_view.h"

namespace plexus::ops {
namespace {

// Percent-encodes a query for a URL.
std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (std::isalnum(c) || c == '_' || c == '.' || c == '-') {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

TEST(PrometheusScrape, OP07_PrometheusScrapesAndReturnsACounter) {
  const std::string prometheus = plexus_test::FindTool("prometheus");
  if (prometheus.empty()) {
    GTEST_SKIP() << "the prometheus server is not installed (Debian package prometheus)";
  }
  Ref<Topic> topic = Topic::Create("op07.scraped");
  Subscription sub = Subscription::Create(
      topic, [](const Message&, bool) {}, SubscriptionOptions{.mode = DeliveryMode::kSynchronous});
  for (int i = 0; i < 42; ++i) topic->Publish(plexus_test::IntType(), i);

  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  const auto dir = plexus_test::TempDir("prometheus");
  plexus_test::WriteFile((dir / "prometheus.yml").string(),
                         "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
                         "scrape_configs:\n  - job_name: plexus\n    static_configs:\n"
                         "      - targets: ['127.0.0.1:" +
                             std::to_string(view->Port()) + "']\n");
  const std::string log = (dir / "prometheus.log").string();
  const std::string query =
      "/api/v1/query?query=" +
      UrlEncode("plexus_topic_published_messages_total{topic=\"op07.scraped\"}");
  double value = -1;
  std::string last;
  std::string early_exits;
  // The web port was free when picked, but a test running beside this one may bind it first;
  // Prometheus then exits at start-up, and starts again on a fresh port.
  constexpr int kLaunchAttempts = 3;
  for (int attempt = 0; attempt < kLaunchAttempts && value < 0; ++attempt) {
    const std::uint16_t web_port = plexus_test::FreeLoopbackPort();
    const pid_t pid = plexus_test::Spawn(
        {prometheus, "--config.file=" + (dir / "prometheus.yml").string(),
         "--storage.tsdb.path=" + (dir / ("data" + std::to_string(attempt))).string(),
         "--web.listen-address=127.0.0.1:" + std::to_string(web_port), "--log.level=warn"},
        log);
    ASSERT_GT(pid, 0);
    bool exited = false;
    // Prometheus needs a few seconds to start, scrape and make the sample queryable.
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    while (std::chrono::steady_clock::now() < deadline) {
      int status = 0;
      if (plexus_test::HasExited(pid, status)) {
        exited = true;
        early_exits += "port " + std::to_string(web_port) + ": exit " + std::to_string(status) +
                       "\n" + plexus_test::ReadFile(log);
        break;
      }
      const plexus_test::HttpResponse r = plexus_test::Get(web_port, query);
      last = r.body;
      if (r.status == 200) {
        const auto j = nlohmann::json::parse(r.body, nullptr, false);
        if (!j.is_discarded() && j["status"] == "success" && !j["data"]["result"].empty()) {
          value = std::stod(j["data"]["result"][0]["value"][1].get<std::string>());
          break;
        }
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(250));  // pacing the polls
    }
    if (!exited) {
      ::kill(pid, SIGTERM);
      plexus_test::WaitExit(pid);
      break;  // it ran: a missing sample is a failure, not a port taken
    }
  }
  EXPECT_EQ(value, static_cast<double>(topic->Stats().published))
      << "last answer: " << last << "\nprometheus log:\n"
      << plexus_test::ReadFile(log) << "\nearlier starts that exited:\n"
      << early_exits;
  EXPECT_GE(value, 42);
  std::filesystem::remove_all(dir);
  sub.UnsubscribeAndJoin();
}

// The port picker behind the test above: two picks in a row never name one port.
TEST(PrometheusScrape, FreeLoopbackPortNeverGivesAPortTwice) {
  std::set<std::uint16_t> seen;
  for (int i = 0; i < 200; ++i) {
    const std::uint16_t port = plexus_test::FreeLoopbackPort();
    EXPECT_NE(port, 0);
    EXPECT_TRUE(seen.insert(port).second) << "port " << port << " given twice";
  }
}

}  // namespace
}  // namespace plexus::ops
