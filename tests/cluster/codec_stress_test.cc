// One filled CodecRegistry shared by many threads that encode and decode at once (the
// registry's "thread-safe for lookups once filled" contract, checked under TSan), with valid
// and damaged frames interleaved so that refusals race acceptances.

#include <atomic>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "plexus/bus/json.h"
#include "plexus/cluster/codec.h"

namespace plexus::cluster {
namespace {

struct Reading {
  std::string sensor;
  int value = 0;
};

TEST(CodecStress, SharedRegistryEncodesAndDecodesFromManyThreads) {
  static const auto type = TypedMessageType<Reading>::Create(
      "CodecStress.Reading", {.to_json = JsonFormatter<Reading>([](const Reading& r) {
                                return nlohmann::json{{"sensor", r.sensor}, {"value", r.value}};
                              })});
  CodecRegistry codecs;
  ASSERT_TRUE(codecs.Add(JsonCodec(type, [](const nlohmann::json& j) -> std::optional<Reading> {
    return Reading{j.at("sensor").get<std::string>(), j.at("value").get<int>()};
  })));

  constexpr int kThreads = 4;
  constexpr int kPerThread = 2000;
  std::atomic<int> accepted{0};
  std::atomic<int> refused{0};
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      const NodeId sender(NodeId::Bytes{0x02, 0, 0, 0, 1, static_cast<std::uint8_t>(t + 1)});
      const NodeId receiver(NodeId::Bytes{0x02, 0, 0, 0, 2, 0});
      std::string bytes;
      for (int i = 0; i < kPerThread; ++i) {
        const Ref<Message> m =
            Message::Create(type.get(), Reading{"s" + std::to_string(t), i}, sender);
        bytes.clear();
        if (!EncodeMessage(codecs, *m, "id", static_cast<std::uint64_t>(i), bytes)) {
          wrong.fetch_add(1);
          continue;
        }
        if (i % 2 == 1) bytes.resize(bytes.size() - 1);  // damaged: the payload is short
        const DecodedMessage got = DecodeMessage(codecs, bytes, {}, receiver);
        if (i % 2 == 1) {
          (got.reason == RejectReason::kTruncated ? refused : wrong).fetch_add(1);
          continue;
        }
        const Reading* r = got.message ? got.message->As<Reading>() : nullptr;
        const bool ok = r != nullptr && r->value == i && r->sensor == "s" + std::to_string(t) &&
                        got.message->Node() == sender &&
                        got.frame.seq == static_cast<std::uint64_t>(i);
        (ok ? accepted : wrong).fetch_add(1);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(accepted.load(), kThreads * kPerThread / 2);
  EXPECT_EQ(refused.load(), kThreads * kPerThread / 2);
}

}  // namespace
}  // namespace plexus::cluster
