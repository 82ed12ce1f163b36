// The flags and the --listen check, without starting the program (sim_test.cc starts it).

#include "options.h"

#include <string>
#include <vector>

#include "gtest/gtest.h"
#include "operator_view.h"

namespace sim {
namespace {

Parsed Parse(std::vector<std::string> args) {
  args.insert(args.begin(), "plexus_sim");
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  return ParseOptions(static_cast<int>(argv.size()), argv.data());
}

TEST(SimOptions, OP03_Defaults) {
  const Parsed p = Parse({});
  ASSERT_TRUE(p.options);
  EXPECT_GT(p.options->rate, 0);
  EXPECT_GT(p.options->duration, 0);
  EXPECT_GE(p.options->threads, 2u);
  EXPECT_EQ(p.options->report, ReportFormat::kText);
  EXPECT_TRUE(p.options->listen.empty());
  EXPECT_TRUE(p.options->checks);
}

TEST(SimOptions, OP03_EveryFlagIsRead) {
  const Parsed p = Parse({"--rate=12.5", "--duration=3", "--calls=40", "--devices=9", "--threads=3",
                          "--seed=99", "--report=json", "--cdr=x.db", "--events=-", "--talk-ms=7",
                          "--max-in-flight=11", "--queue-limit=64", "--checks=false"});
  ASSERT_TRUE(p.options);
  const Options& o = *p.options;
  EXPECT_EQ(o.rate, 12.5);
  EXPECT_EQ(o.duration, 3);
  EXPECT_EQ(o.calls, 40u);
  EXPECT_EQ(o.devices, 9u);
  EXPECT_EQ(o.threads, 3u);
  EXPECT_EQ(o.seed, 99u);
  EXPECT_EQ(o.report, ReportFormat::kJson);
  EXPECT_EQ(o.cdr, "x.db");
  EXPECT_EQ(o.events, "-");
  EXPECT_EQ(o.talk_ms, 7u);
  EXPECT_EQ(o.max_in_flight, 11u);
  EXPECT_EQ(o.queue_limit, 64u);
  EXPECT_FALSE(o.checks);
}

TEST(SimOptions, OP03_BadValuesExitTwo) {
  for (const char* bad : {"--rate=-1", "--rate=0", "--duration=-3", "--devices=0", "--report=xml",
                          "--unknown", "--threads=x", "--listen=localhost"}) {
    const Parsed p = Parse({bad});
    EXPECT_FALSE(p.options) << bad;
    EXPECT_EQ(p.exit_status, 2) << bad;
  }
}

TEST(SimOptions, OP03_HelpExitsZero) {
  const Parsed p = Parse({"--help"});
  EXPECT_FALSE(p.options);
  EXPECT_EQ(p.exit_status, 0);
}

TEST(ListenAddress, OP03_Validation) {
  EXPECT_EQ(ValidateListenAddress("127.0.0.1:0"), "");
  EXPECT_EQ(ValidateListenAddress("localhost:0"), "");
  EXPECT_NE(ValidateListenAddress("127.0.0.1"), "");
  EXPECT_NE(ValidateListenAddress(":80"), "");
  EXPECT_NE(ValidateListenAddress("127.0.0.1:"), "");
  EXPECT_NE(ValidateListenAddress("127.0.0.1:65536"), "");
  EXPECT_NE(ValidateListenAddress("127.0.0.1:-1"), "");
  EXPECT_NE(ValidateListenAddress("example.org:80"), "");
}

}  // namespace
}  // namespace sim
