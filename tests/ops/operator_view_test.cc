// The operator view's server: its endpoints and their errors (OP06), nothing started while
// it is off (OP09), and its defences (OP10): loopback by default, read-only, bounded and
// deadlined requests, and a burst of concurrent scrapes beside a running workload.

#include "plexus/ops/operator_view.h"

#include <fcntl.h>
#include <poll.h>

#include <atomic>
#include <nlohmann/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "exec/exec_test_support.h"
#include "gtest/gtest.h"
#include "ops/ops_test_support.h"
#include "plexus/bus/bus.h"
#include "plexus/exec/task_processor.h"
#include "plexus/ops/counter.h"

namespace plexus::ops {
namespace {

using plexus_test::Exchange;
using plexus_test::Get;
using plexus_test::HttpResponse;
using plexus_test::Request;

// -----------------------------------------------------------------------------------------
// OP06 Endpoints
// -----------------------------------------------------------------------------------------

TEST(OperatorView, OP06_EveryEndpointAnswers) {
  Ref<Topic> topic = Topic::Create("op06.topic");
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  const std::uint16_t port = view->Port();
  EXPECT_NE(port, 0);

  const HttpResponse page = Get(port, "/");
  EXPECT_EQ(page.status, 200);
  EXPECT_NE(page.head.find("text/html"), std::string::npos);
  EXPECT_NE(page.body.find("<script>"), std::string::npos);

  const HttpResponse metrics = Get(port, "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.head.find("text/plain; version=0.0.4"), std::string::npos);
  EXPECT_NE(metrics.body.find("plexus_topic_published_messages_total{topic=\"op06.topic\""),
            std::string::npos);

  const std::pair<const char*, const char*> documents[] = {
      {"/api/topics", "topics"},
      {"/api/subscriptions", "subscriptions"},
      {"/api/taskprocessors", "taskprocessors"},
      {"/api/timers", "timer_heaps"},
      {"/api/locks", "group_locks"},
      {"/api/refs", "objects"},
      {"/api/counters", "counters"}};
  for (const auto& [path, member] : documents) {
    SCOPED_TRACE(path);
    const HttpResponse r = Get(port, path);
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.head.find("application/json"), std::string::npos);
    const nlohmann::json j = nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
    ASSERT_FALSE(j.is_discarded());
    EXPECT_TRUE(j.contains(member));
  }
  const nlohmann::json topics = nlohmann::json::parse(Get(port, "/api/topics").body);
  bool found = false;
  for (const auto& t : topics["topics"]) found |= t["name"] == "op06.topic";
  EXPECT_TRUE(found);
}

TEST(OperatorView, OP06_UnknownPathIs404) {
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(Get(view->Port(), "/nope").status, 404);
  EXPECT_EQ(Get(view->Port(), "/api/topics/extra").status, 404);
  EXPECT_EQ(Get(view->Port(), "/metricsx").status, 404);
}

TEST(OperatorView, OP06_MethodsOtherThanGetAre405) {
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  for (const char* method : {"POST", "PUT", "DELETE", "PATCH", "OPTIONS"}) {
    SCOPED_TRACE(method);
    const HttpResponse r = Request(view->Port(), method, "/metrics");
    EXPECT_EQ(r.status, 405);
    EXPECT_NE(r.head.find("Allow: GET, HEAD"), std::string::npos);
  }
  EXPECT_EQ(Request(view->Port(), "HEAD", "/metrics").status, 200);
}

TEST(OperatorView, AnUnusableListenAddressGivesNoView) {
  EXPECT_EQ(OperatorView::Start({.listen = "no-port"}), nullptr);
  EXPECT_EQ(OperatorView::Start({.listen = "127.0.0.1:99999"}), nullptr);
  auto first = OperatorView::Start();
  ASSERT_NE(first, nullptr);
  // The port is taken by the first view.
  EXPECT_EQ(OperatorView::Start({.listen = "127.0.0.1:" + std::to_string(first->Port())}), nullptr);
}

TEST(OperatorView, StopIsIdempotentAndClosesThePort) {
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  const std::uint16_t port = view->Port();
  view->Stop();
  view->Stop();
  EXPECT_EQ(plexus_test::ConnectLoopback(port), -1);
}

// The item of `list` whose `field` is `value`, or null.
const nlohmann::json* Find(const nlohmann::json& list, const char* field,
                           const std::string& value) {
  for (const nlohmann::json& item : list) {
    if (item[field] == value) return &item;
  }
  return nullptr;
}

// The alert levels shown are those each queue reports, and follow it when they change: the
// view and its page keep no levels of their own.
TEST(OperatorView, OP06_AlertLevelsComeFromTheQueuesStatistics) {
  Ref<TaskProcessor> tp =
      TaskProcessor::Create({.name = "op06/levels", .high_water = 3, .low_water = 1});
  Ref<Topic> topic = Topic::Create("op06.levels");
  Subscription sub = Subscription::Create(
      topic, [](const Message&, bool) {}, SubscriptionOptions{.high_water = 7, .low_water = 2});
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  plexus_test::Gate gate;
  tp->Push(gate.waiter());
  ASSERT_TRUE(gate.WaitForArrivals(1));
  for (int i = 0; i < 3; ++i) tp->Push([] {});  // three waiting: at the high-water mark

  auto processor = [&] {
    const nlohmann::json j = nlohmann::json::parse(Get(view->Port(), "/api/taskprocessors").body);
    const nlohmann::json* p = Find(j["taskprocessors"], "name", "op06/levels");
    return p != nullptr ? *p : nlohmann::json();
  };
  nlohmann::json p = processor();
  ASSERT_FALSE(p.is_null());
  EXPECT_EQ(p["high_water"], 3);
  EXPECT_EQ(p["low_water"], 1);
  EXPECT_EQ(p["depth"], 3);
  EXPECT_EQ(p["alerted"], true);

  // Raised levels: the same depth is no longer an alert, and the JSON says why.
  tp->SetAlertLevels(/*low_water=*/5, /*high_water=*/10);
  p = processor();
  EXPECT_EQ(p["high_water"], 10);
  EXPECT_EQ(p["low_water"], 5);
  EXPECT_EQ(p["depth"], 3);
  EXPECT_EQ(p["alerted"], false);
  EXPECT_EQ(tp->Stats().high_water, 10u);

  const nlohmann::json subs = nlohmann::json::parse(Get(view->Port(), "/api/subscriptions").body);
  const nlohmann::json* s = Find(subs["subscriptions"], "topic", "op06.levels");
  ASSERT_NE(s, nullptr);
  EXPECT_EQ((*s)["high_water"], 7);
  EXPECT_EQ((*s)["low_water"], 2);
  EXPECT_EQ((*s)["high_water"], sub.Stats().high_water);

  gate.Open();
  sub.UnsubscribeAndJoin();
}

// A program's own counters are served beside plexus's statistics, while they live.
TEST(OperatorView, OP06_ProgramCountersAreServed) {
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  {
    Counter calls("op06.calls", "calls set up");
    calls.Add(41);
    calls.Add();
    const nlohmann::json j = nlohmann::json::parse(Get(view->Port(), "/api/counters").body);
    const nlohmann::json* c = Find(j["counters"], "name", "op06.calls");
    ASSERT_NE(c, nullptr) << j;
    EXPECT_EQ((*c)["value"], 42);
    EXPECT_EQ((*c)["help"], "calls set up");
    EXPECT_TRUE(j.contains("taken_at_ms"));
    EXPECT_NE(Get(view->Port(), "/metrics")
                  .body.find("plexus_app_events_total{counter=\"op06.calls\"} 42"),
              std::string::npos);
  }
  const nlohmann::json j = nlohmann::json::parse(Get(view->Port(), "/api/counters").body);
  EXPECT_EQ(Find(j["counters"], "name", "op06.calls"), nullptr) << j;
}

// -----------------------------------------------------------------------------------------
// OP09 Off costs nothing
// -----------------------------------------------------------------------------------------

TEST(OperatorView, OP09_OffMeansNoThreadAndNoSocket) {
  // A workload on the bus, with the view linked in but never started.
  Ref<Topic> topic = Topic::Create("op09.topic");
  std::atomic<int> seen{0};
  Subscription sub = Subscription::Create(
      topic, [&](const Message&, bool) { seen.fetch_add(1); },
      SubscriptionOptions{.mode = DeliveryMode::kSynchronous});
  for (int i = 0; i < 100; ++i) topic->Publish(plexus_test::IntType(), i);
  EXPECT_EQ(plexus_test::CountSockets(), 0);

  // Sanitizer runtimes start a helper thread of their own with the process's second thread;
  // have it started before counting.
  std::thread([] {}).join();
  const int threads_off = plexus_test::CountThreads();
  auto view = OperatorView::Start({.threads = 3});
  ASSERT_NE(view, nullptr);
  EXPECT_GE(plexus_test::CountSockets(), 1);
  // The accept loop and the request threads (which the accept loop starts).
  EXPECT_TRUE(
      plexus_test::WaitUntil([&] { return plexus_test::CountThreads() == threads_off + 1 + 3; }));
  view.reset();
  EXPECT_EQ(plexus_test::CountSockets(), 0);
  EXPECT_EQ(plexus_test::CountThreads(), threads_off);
  sub.UnsubscribeAndJoin();
}

// -----------------------------------------------------------------------------------------
// OP10 Safe by default
// -----------------------------------------------------------------------------------------

TEST(OperatorView, OP10_BindsToLoopbackByDefault) {
  EXPECT_EQ(OperatorViewOptions{}.listen.rfind("127.0.0.1:", 0), 0u);
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  EXPECT_EQ(view->Host(), "127.0.0.1");
  EXPECT_EQ(view->Url(), "http://127.0.0.1:" + std::to_string(view->Port()));
}

TEST(OperatorView, OP10_MalformedAndOversizedRequestsAreRefused) {
  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  const std::uint16_t port = view->Port();
  EXPECT_EQ(Exchange(port, "NONSENSE\r\n\r\n").status, 400);
  EXPECT_EQ(Exchange(port, "GET /metrics HTTP/9\r\n\r\n").status, 400);
  const HttpResponse long_uri =
      Exchange(port, "GET /" + std::string(20000, 'a') + " HTTP/1.1\r\nHost: x\r\n\r\n");
  EXPECT_EQ(long_uri.status, 414);
  const HttpResponse long_header =
      Exchange(port, "GET /metrics HTTP/1.1\r\nX-Long: " + std::string(20000, 'b') + "\r\n\r\n");
  EXPECT_NE(long_header.status, 200);
  // A body is refused before it is read: writing is not allowed at all.
  const HttpResponse big_body =
      Exchange(port, "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" +
                         std::string(100000, 'c'));
  EXPECT_EQ(big_body.status, 405);
  // The view still serves.
  EXPECT_EQ(Get(port, "/metrics").status, 200);
}

TEST(OperatorView, OP10_ASlowClientDoesNotBlockOtherRequests) {
  auto view = OperatorView::Start({.threads = 2, .request_timeout = std::chrono::minutes(1)});
  ASSERT_NE(view, nullptr);
  // Half a request, then nothing: one request thread waits for the rest.
  const int slow = plexus_test::ConnectLoopback(view->Port());
  ASSERT_GE(slow, 0);
  ASSERT_TRUE(plexus_test::SendAll(slow, "GET /metr"));
  for (int i = 0; i < 5; ++i) EXPECT_EQ(Get(view->Port(), "/api/topics").status, 200);
  // The slow connection is still open: nothing was written to it, it was not closed.
  pollfd p{slow, POLLIN, 0};
  EXPECT_EQ(::poll(&p, 1, 0), 0);
  ::close(slow);  // lets the request thread go before the view stops
}

TEST(OperatorView, OP10_ATricklingClientIsCutOffAtTheRequestDeadline) {
  auto view =
      OperatorView::Start({.threads = 1, .request_timeout = std::chrono::milliseconds(300)});
  ASSERT_NE(view, nullptr);
  const int slow = plexus_test::ConnectLoopback(view->Port());
  ASSERT_GE(slow, 0);
  // One byte at a time, paced by waiting for the server's answer: a per-read timeout would
  // never fire, the request deadline does and the server closes the connection.
  const std::string request = "GET /metrics HTTP/1.1\r\nX-Trickle: " + std::string(100000, 'x');
  bool closed = false;
  for (std::size_t i = 0; i < request.size() && !closed; ++i) {
    if (!plexus_test::SendAll(slow, std::string_view(&request[i], 1))) break;
    // Readable: the server answered (a timeout status) or closed the connection.
    pollfd p{slow, POLLIN, 0};
    closed = ::poll(&p, 1, 50) > 0;
  }
  EXPECT_TRUE(closed);
  ::close(slow);
  // The one request thread is free again.
  EXPECT_EQ(Get(view->Port(), "/metrics").status, 200);
}

TEST(OperatorView, OP10_AThousandConcurrentScrapesBesideAWorkload) {
  constexpr int kScrapes = 1000;
  Ref<Topic> topic = Topic::Create("op10.workload");
  std::atomic<std::uint64_t> handled{0};
  // Synchronous: the publisher runs the callbacks, so the workload cannot outrun its queue.
  Subscription sub = Subscription::Create(
      topic, [&](const Message&, bool) { handled.fetch_add(1); },
      SubscriptionOptions{.mode = DeliveryMode::kSynchronous});
  std::atomic<bool> stop{false};
  std::thread workload([&] {
    int n = 0;
    while (!stop.load(std::memory_order_relaxed)) topic->Publish(plexus_test::IntType(), n++);
  });

  auto view = OperatorView::Start();
  ASSERT_NE(view, nullptr);
  const std::uint64_t handled_at_start = handled.load();
  // Every request is sent before any response is read, so all of them are in flight at once.
  std::vector<int> fds;
  for (int i = 0; i < kScrapes; ++i) {
    const int fd = plexus_test::ConnectLoopback(view->Port());
    ASSERT_GE(fd, 0) << i;
    fds.push_back(fd);
    ASSERT_TRUE(plexus_test::SendAll(fd, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"));
  }
  int ok = 0;
  for (int fd : fds) {
    ok += plexus_test::ParseResponse(plexus_test::ReadToEnd(fd)).status == 200 ? 1 : 0;
    ::close(fd);
  }
  const std::uint64_t handled_at_end = handled.load();
  stop.store(true);
  workload.join();
  EXPECT_EQ(ok, kScrapes);
  // The workload kept going while the scrapes were served.
  EXPECT_GT(handled_at_end, handled_at_start);
  EXPECT_EQ(Get(view->Port(), "/metrics").status, 200);
  sub.UnsubscribeAndJoin();
}

}  // namespace
}  // namespace plexus::ops
