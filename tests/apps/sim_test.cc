// Acceptance cases of the main program (OP01-OP05): each starts the real plexus_sim as a child
// process with a small workload (so that the sanitized builds stay quick) and reads its
// report, its CDR database and its event stream.

#include <netinet/in.h>
#include <sqlite3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <string>
#include <vector>

#include "../ops/ops_test_support.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "sim_child.h"

namespace sim_test {
namespace {

using nlohmann::json;

// A small workload: a few hundred short calls.
std::vector<std::string> Small(std::vector<std::string> more = {}) {
  std::vector<std::string> args = {"--rate=400", "--calls=200", "--duration=30", "--talk-ms=20",
                                   "--threads=2"};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

json ReportOf(const SimResult& r) {
  json report = json::parse(r.out, nullptr, /*allow_exceptions=*/false);
  EXPECT_FALSE(report.is_discarded()) << "stdout is not a JSON report:\n" << r.out << r.err;
  return report;
}

// Rows of the CDR table, without the wall-clock times, in call order.
std::vector<std::string> CdrRows(const std::string& path) {
  sqlite3* db = nullptr;
  std::vector<std::string> rows;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << path;
    sqlite3_close(db);
    return rows;
  }
  sqlite3_stmt* select = nullptr;
  EXPECT_EQ(sqlite3_prepare_v2(db,
                               "SELECT call_id, device, callee, disposition, cause, refreshes, "
                               "planned_talk_ms FROM cdr ORDER BY call_id",
                               -1, &select, nullptr),
            SQLITE_OK);
  while (select != nullptr && sqlite3_step(select) == SQLITE_ROW) {
    std::string row;
    for (int c = 0; c < 7; ++c) {
      const unsigned char* text = sqlite3_column_text(select, c);
      row += std::string(text != nullptr ? reinterpret_cast<const char*>(text) : "null") + "|";
    }
    rows.push_back(row);
  }
  sqlite3_finalize(select);
  sqlite3_close(db);
  return rows;
}

TEST(Sim, OP01_DefaultRunPrintsProgressAndReportAndExitsZero) {
  const SimResult r = RunSim({"--duration=0.5", "--rate=300", "--talk-ms=20", "--threads=2"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  // The progress line, then the report's fields.
  EXPECT_NE(r.err.find("calls up"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("calls/s"), std::string::npos);
  EXPECT_NE(r.err.find("events/s"), std::string::npos);
  EXPECT_NE(r.err.find("queue"), std::string::npos);
  for (const char* field :
       {"set up", "torn down", "published", "delivered", "publish->callback p50", "p99",
        "high-water marks", "alerts", "leaked references 0", "group locks alive 0",
        "lock-order reports 0", "every invariant held"}) {
    EXPECT_NE(r.out.find(field), std::string::npos) << field << " missing from:\n" << r.out;
  }
}

TEST(Sim, OP01_JsonReportCarriesEveryField) {
  const SimResult r = RunSim(Small({"--report=json"}));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const json report = ReportOf(r);
  EXPECT_EQ(report["calls"]["set_up"], 200);
  EXPECT_EQ(report["calls"]["torn_down"], 200);
  EXPECT_GT(report["events"]["published"].get<std::uint64_t>(), 200u * 10);
  EXPECT_GT(report["events"]["delivered"].get<std::uint64_t>(), 0u);
  EXPECT_GT(report["latency_us"]["samples"].get<std::uint64_t>(), 0u);
  for (const char* p : {"p50", "p90", "p99", "p999", "max"}) {
    EXPECT_TRUE(report["latency_us"].contains(p)) << p;
  }
  EXPECT_GE(report["queues"].size(), 5u);
  for (const json& q : report["queues"]) EXPECT_TRUE(q.contains("max_depth")) << q;
  EXPECT_TRUE(report["alerts"].contains("raised"));
  EXPECT_EQ(report["leaked_references"], 0);
  EXPECT_EQ(report["lock_order_reports"], 0);
  EXPECT_EQ(report["ok"], true);
}

TEST(Sim, OP02_RecordsEqualFinishedCallsDevicesIdleNoGroupLockAlive) {
  const std::string cdr = ScratchPath("op02.db");
  const std::string events = ScratchPath("op02.jsonl");
  const SimResult r = RunSim(Small({"--report=json", "--cdr=" + cdr, "--events=" + events}));
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const json report = ReportOf(r);
  const auto finished = report["calls"]["torn_down"].get<std::size_t>();
  EXPECT_EQ(finished, 200u);
  EXPECT_EQ(report["cdr"]["records"], finished);
  EXPECT_EQ(CdrRows(cdr).size(), finished);
  EXPECT_EQ(report["devices"]["in_use_at_end"], 0);
  EXPECT_GT(report["devices"]["peak_in_use"].get<int>(), 0);
  EXPECT_EQ(report["group_locks_alive"], 0);
  EXPECT_EQ(report["call_cache_entries"], 0);
  for (const json& i : report["invariants"]) EXPECT_EQ(i["held"], true) << i;

  // A call is real work: transactions, timers that fired and timers that were cancelled.
  EXPECT_GT(report["work"]["transactions"].get<std::uint64_t>(), finished);
  EXPECT_GT(report["work"]["timers_fired"].get<std::uint64_t>(), 0u);
  EXPECT_GT(report["work"]["timers_cancelled"].get<std::uint64_t>(), 0u);
  EXPECT_GT(report["calls"]["dispositions"]["ANSWERED"].get<std::uint64_t>(), 0u);

  // The event stream: one JSON object a line, a CallEnded line per finished call.
  std::ifstream in(events);
  std::string line;
  std::size_t lines = 0;
  std::size_t ended = 0;
  while (std::getline(in, line)) {
    const json event = json::parse(line, nullptr, false);
    ASSERT_FALSE(event.is_discarded()) << line;
    ++lines;
    if (event["type"] == "CallEnded") ++ended;
  }
  EXPECT_EQ(lines, report["events"]["stream_lines"].get<std::size_t>());
  EXPECT_EQ(ended, finished);
}

// Each bad flag: exit status 2 and one line on stderr that names the flag.
TEST(Sim, OP03_BadFlagExitsTwoNamingTheFlag) {
  // A port in use: held by a listening socket of this test.
  const int busy = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(bind(busy, reinterpret_cast<sockaddr*>(&sa), sizeof sa), 0);
  ASSERT_EQ(listen(busy, 1), 0);
  socklen_t length = sizeof sa;
  getsockname(busy, reinterpret_cast<sockaddr*>(&sa), &length);
  const std::string in_use = "--listen=127.0.0.1:" + std::to_string(ntohs(sa.sin_port));

  const std::vector<std::pair<std::string, std::string>> cases = {
      {"--rate=-5", "--rate"},
      {"--rate=fast", "--rate"},
      {"--duration=0", "--duration"},
      {"--calls=-1", "--calls"},
      {"--devices=0", "--devices"},
      {"--threads=1000", "--threads"},
      {"--seed=x", "--seed"},
      {"--report=xml", "--report"},
      {"--listen=nowhere", "--listen"},
      {"--listen=127.0.0.1:70000", "--listen"},
      {in_use, "--listen"},
      {"--bogus", "--bogus"},
      {"--talk-ms=0", "--talk-ms"},
      {"--queue-limit=1", "--queue-limit"}};
  ExpectEachFlagRefused(cases);
  close(busy);
}

TEST(Sim, OP03_HelpListsEveryFlag) {
  const SimResult r = RunSim({"--help"});
  EXPECT_EQ(r.status, 0);
  for (const char* flag : {"--rate", "--duration", "--calls", "--devices", "--threads", "--seed",
                           "--report", "--listen", "--cdr", "--events"}) {
    EXPECT_NE(r.out.find(flag), std::string::npos) << flag;
  }
}

TEST(Sim, OP06_TheSimulatorServesTheOperatorViewWhileItRuns) {
  SimChild child({"--rate=300", "--duration=600", "--talk-ms=50", "--threads=2", "--report=json",
                  "--listen=127.0.0.1:0"});
  const std::string said = "operator view on http://127.0.0.1:";
  int port = 0;
  ASSERT_TRUE(child.WaitForStderrLine([&](const std::string& line) {
    const std::size_t at = line.find(said);
    if (at == std::string::npos) return false;
    port = std::stoi(line.substr(at + said.size()));
    return true;
  })) << child.Err();
  ASSERT_GT(port, 0);
  ASSERT_TRUE(child.WaitForStderrLine([](const std::string& line) {
    const std::size_t at = line.find("calls up");
    return at != std::string::npos && std::stol(line.substr(at + 8)) > 0;
  })) << child.Err();
  const plexus_test::HttpResponse metrics =
      plexus_test::Get(static_cast<std::uint16_t>(port), "/metrics");
  EXPECT_EQ(metrics.status, 200);
  EXPECT_NE(metrics.body.find("plexus_topic_published_messages_total"), std::string::npos)
      << metrics.body.substr(0, 2000);
  const plexus_test::HttpResponse topics =
      plexus_test::Get(static_cast<std::uint16_t>(port), "/api/topics");
  EXPECT_EQ(topics.status, 200);
  EXPECT_NE(topics.body.find("\"calls\""), std::string::npos) << topics.body.substr(0, 2000);
  // The calls set up, which the page charts per second.
  EXPECT_NE(metrics.body.find("plexus_app_events_total{counter=\"calls\"}"), std::string::npos);
  const json counters =
      json::parse(plexus_test::Get(static_cast<std::uint16_t>(port), "/api/counters").body);
  bool calls_counted = false;
  for (const json& c : counters["counters"]) {
    if (c["name"] == "calls") calls_counted = c["value"].get<std::uint64_t>() > 0;
  }
  EXPECT_TRUE(calls_counted) << counters;
  child.Signal(SIGINT);
  ASSERT_EQ(child.Wait(), 0) << child.Out() << child.Err();
  const json report = json::parse(child.Out(), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << child.Out();
  EXPECT_EQ(report["ok"], true) << report["invariants"];
}

TEST(Sim, OP03_SameSeedGivesTheSameWorkload) {
  const auto run = [](const std::string& seed, const std::string& name) {
    const std::string cdr = ScratchPath(name);
    const SimResult r = RunSim({"--rate=200", "--calls=150", "--duration=30", "--talk-ms=20",
                                "--threads=2", "--seed=" + seed, "--cdr=" + cdr});
    EXPECT_EQ(r.status, 0) << r.out << r.err;
    return CdrRows(cdr);
  };
  const std::vector<std::string> first = run("7", "seed7a.db");
  const std::vector<std::string> second = run("7", "seed7b.db");
  const std::vector<std::string> other = run("8", "seed8.db");
  ASSERT_EQ(first.size(), 150u);
  EXPECT_EQ(first, second);
  EXPECT_NE(first, other);
}

TEST(Sim, OP04_OverloadShedsAlertsAndStillEndsCleanly) {
  const SimResult r =
      RunSim({"--rate=200000", "--duration=1", "--queue-limit=64", "--max-in-flight=2000",
              "--talk-ms=20", "--threads=2", "--report=json"});
  ASSERT_EQ(r.status, 0) << r.out << r.err;
  const json report = ReportOf(r);
  const json& shed = report["shed"];
  EXPECT_GT(shed["calls_refused"].get<std::uint64_t>() + shed["arrivals_late"].get<std::uint64_t>(),
            0u)
      << shed;
  EXPECT_GT(report["alerts"]["raised"].get<std::uint64_t>(), 0u);
  EXPECT_FALSE(report["alerts"]["queues"].empty());
  // Admission bounds what is held: never more calls in flight than allowed.
  EXPECT_LE(report["calls"]["peak_in_flight"].get<std::int64_t>(), 2000);
  EXPECT_EQ(report["ok"], true);
  EXPECT_EQ(report["cdr"]["records"], report["calls"]["torn_down"]);
  EXPECT_NE(r.err.find("alerts"), std::string::npos);  // shown on the progress line
}

// Sends `signal` once the progress line shows calls up, then expects a clean, complete end.
void StopsCleanlyOn(int signal) {
  SimChild child({"--rate=300", "--duration=600", "--talk-ms=50", "--threads=2", "--report=json"});
  ASSERT_TRUE(child.WaitForStderrLine([](const std::string& line) {
    const std::size_t at = line.find("calls up");
    return at != std::string::npos && std::stol(line.substr(at + 8)) > 0;
  })) << child.Err();
  child.Signal(signal);
  ASSERT_EQ(child.Wait(), 0) << child.Out() << child.Err();
  const json report = json::parse(child.Out(), nullptr, false);
  ASSERT_FALSE(report.is_discarded()) << child.Out();
  EXPECT_EQ(report["interrupted"], true);
  EXPECT_EQ(report["ok"], true) << report["invariants"];
  EXPECT_EQ(report["calls"]["set_up"], report["calls"]["torn_down"]);
  EXPECT_EQ(report["cdr"]["records"], report["calls"]["torn_down"]);
  EXPECT_EQ(report["group_locks_alive"], 0);
  EXPECT_NE(child.Err().find("stopping"), std::string::npos);
}

TEST(Sim, OP05_SigintStopsDrainsAndReports) {
  StopsCleanlyOn(SIGINT);
}
TEST(Sim, OP05_SigtermStopsDrainsAndReports) {
  StopsCleanlyOn(SIGTERM);
}

// A second signal during the drain exits at once with status 130. The drain is made as long
// as the flags allow (calls that talk for an hour, a day's grace to finish on their own), so
// an exit with that status, and without the report, can only be the second signal's.
void SecondSignalExitsAtOnce(int signal) {
  SimChild child({"--rate=300", "--duration=600", "--talk-ms=3600000", "--stop-grace=86400",
                  "--threads=2", "--report=json"});
  ASSERT_TRUE(child.WaitForStderrLine([](const std::string& line) {
    const std::size_t at = line.find("calls up");
    return at != std::string::npos && std::stol(line.substr(at + 8)) > 0;
  })) << child.Err();
  child.Signal(signal);
  long in_flight = -1;
  ASSERT_TRUE(child.WaitForStderrLine([&](const std::string& line) {
    const std::string said = "plexus_sim: draining ";
    const std::size_t at = line.find(said);
    if (at == std::string::npos) return false;
    in_flight = std::stol(line.substr(at + said.size()));
    return true;
  })) << child.Err();
  EXPECT_GT(in_flight, 0) << "nothing left to drain: " << child.Err();
  child.Signal(signal);
  EXPECT_EQ(child.Wait(), 130) << child.Out() << child.Err();
  EXPECT_EQ(child.Out(), "") << "a report means the drain ended first";
}

TEST(Sim, OP05_SecondSigintDuringTheDrainExitsAtOnce) {
  SecondSignalExitsAtOnce(SIGINT);
}
TEST(Sim, OP05_SecondSigtermDuringTheDrainExitsAtOnce) {
  SecondSignalExitsAtOnce(SIGTERM);
}

TEST(Sim, OP05_HelpSaysWhatASecondSignalDoes) {
  const SimResult r = RunSim({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--stop-grace"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("a second one during the drain exits at once with status 130"),
            std::string::npos)
      << r.out;
}

}  // namespace
}  // namespace sim_test
