// Codecs and the registry: a message's trip through a frame and back, with JSON and with a
// binary encoding, and every refusal that needs more than the frame (the message half of
// CL08): unknown type, refused payload (including a decoder that throws), no node, and a
// foreign frame that claims the receiving node's id.

#include "plexus/cluster/codec.h"

#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>

#include "cluster/cluster_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/json.h"
#include "plexus/core/misuse.h"

namespace plexus::cluster {
namespace {

struct DeviceState {
  std::string device;
  int state = 0;
  friend bool operator==(const DeviceState&, const DeviceState&) = default;
};

const NodeId kNodeA(NodeId::Bytes{0x02, 0, 0, 0, 0, 0xa});
const NodeId kNodeB(NodeId::Bytes{0x02, 0, 0, 0, 0, 0xb});

const TypedMessageType<DeviceState>& JsonType() {
  static const auto type = TypedMessageType<DeviceState>::Create(
      "CodecTest.DeviceState", {.to_json = JsonFormatter<DeviceState>([](const DeviceState& d) {
                                  return nlohmann::json{{"device", d.device}, {"state", d.state}};
                                })});
  return type;
}

const TypedMessageType<int>& BinaryType() {
  static const auto type = TypedMessageType<int>::Create("CodecTest.Int");
  return type;
}

std::optional<DeviceState> ParseDeviceState(const nlohmann::json& j) {
  // at() throws on a missing key: the registry must turn that into a refusal.
  const int state = j.at("state").get<int>();
  if (state < 0) return std::nullopt;
  return DeviceState{j.at("device").get<std::string>(), state};
}

// Four little-endian bytes; anything else is refused, a negative value throws.
Codec IntCodec() {
  return BinaryCodec(
      BinaryType(),
      [](const int& v, std::string& out) {
        const auto u = static_cast<std::uint32_t>(v);
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(u >> (8 * i)));
      },
      [](std::string_view in) -> std::optional<int> {
        if (in.size() != 4) return std::nullopt;
        std::uint32_t u = 0;
        for (int i = 0; i < 4; ++i) u |= std::uint32_t{static_cast<std::uint8_t>(in[i])} << (8 * i);
        if (static_cast<int>(u) < 0) throw std::runtime_error("negative");
        return static_cast<int>(u);
      });
}

CodecRegistry Registry() {
  CodecRegistry codecs;
  codecs.Add(JsonCodec(JsonType(), ParseDeviceState));
  codecs.Add(IntCodec());
  return codecs;
}

std::string EncodeFrom(const CodecRegistry& codecs, const Ref<Message>& message,
                       std::string_view id = "d1", std::uint64_t seq = 7) {
  std::string out;
  EXPECT_TRUE(EncodeMessage(codecs, *message, id, seq, out));
  return out;
}

// A frame made by hand (for payloads no encoder would write).
std::string RawFrame(std::string_view type_name, Encoding encoding, std::string_view payload,
                     NodeId node = kNodeA) {
  return testing::Encoded(
      {.encoding = encoding, .node = node, .type_name = type_name, .payload = payload});
}

TEST(Codec, JsonRoundTripKeepsTypePayloadNodeIdAndSequence) {
  const CodecRegistry codecs = Registry();
  const Ref<Message> sent = Message::Create(JsonType().get(), DeviceState{"d1", 2}, kNodeA);
  const std::string bytes = EncodeFrom(codecs, sent, "d1", 42);
  const DecodedMessage got = DecodeMessage(codecs, bytes, {}, kNodeB);
  ASSERT_EQ(got.reason, RejectReason::kNone) << RejectReasonName(got.reason);
  ASSERT_TRUE(got.message);
  EXPECT_EQ(&got.message->Type(), JsonType().get());
  EXPECT_EQ(got.message->Node(), kNodeA);
  ASSERT_NE(got.message->As<DeviceState>(), nullptr);
  EXPECT_EQ(*got.message->As<DeviceState>(), (DeviceState{"d1", 2}));
  EXPECT_EQ(got.frame.encoding, Encoding::kJson);
  EXPECT_EQ(got.frame.id, "d1");
  EXPECT_EQ(got.frame.seq, 42u);
  EXPECT_EQ(got.frame.type_name, "CodecTest.DeviceState");
}

TEST(Codec, BinaryRoundTrip) {
  const CodecRegistry codecs = Registry();
  const Ref<Message> sent = Message::Create(BinaryType().get(), 123456, kNodeA);
  const std::string bytes = EncodeFrom(codecs, sent, "");
  const DecodedMessage got = DecodeMessage(codecs, bytes, {}, kNodeB);
  ASSERT_EQ(got.reason, RejectReason::kNone) << RejectReasonName(got.reason);
  EXPECT_EQ(got.frame.encoding, Encoding::kBinary);
  EXPECT_EQ(got.frame.payload.size(), 4u);
  EXPECT_EQ(*got.message->As<int>(), 123456);
  EXPECT_TRUE(got.frame.id.empty());
}

TEST(Codec, FrameCarriesTheMessagesOwnTimestamp) {
  const CodecRegistry codecs = Registry();
  const Ref<Message> sent = Message::Create(JsonType().get(), DeviceState{"d1", 1}, kNodeA);
  const DecodedMessage got = DecodeMessage(codecs, EncodeFrom(codecs, sent), {}, kNodeB);
  ASSERT_EQ(got.reason, RejectReason::kNone);
  EXPECT_EQ(got.frame.timestamp_ns, std::chrono::duration_cast<std::chrono::nanoseconds>(
                                        sent->Timestamp().time_since_epoch())
                                        .count());
}

TEST(Codec, EncodeWithoutACodecLeavesTheOutputAlone) {
  const CodecRegistry codecs = Registry();
  static const auto other = TypedMessageType<double>::Create("CodecTest.Other");
  std::string out = "kept";
  EXPECT_FALSE(EncodeMessage(codecs, *Message::Create(other.get(), 1.5), "x", 1, out));
  EXPECT_EQ(out, "kept");
}

TEST(Codec, RegistryCopiesFindTheirOwnCodecsByType) {
  auto original = std::make_unique<CodecRegistry>(Registry());
  CodecRegistry copy(*original);
  CodecRegistry assigned;
  assigned = *original;
  CodecRegistry moved(std::move(*original));
  original.reset();  // the copies must not point into it
  for (const CodecRegistry* r : {&copy, &assigned, &moved}) {
    ASSERT_EQ(r->size(), 2u);
    const Codec* by_type = r->Find(BinaryType().get());
    ASSERT_NE(by_type, nullptr);
    EXPECT_EQ(by_type, r->Find(std::string_view("CodecTest.Int")));
    EXPECT_EQ(r->Find(JsonType().get()), r->Find(std::string_view(JsonType().get()->Name())));
    EXPECT_EQ(EncodeFrom(*r, Message::Create(BinaryType().get(), 5)).size(),
              EncodeFrom(Registry(), Message::Create(BinaryType().get(), 5)).size());
  }
}

TEST(Codec, ACodecThatEncodesFromItsEncoderGetsABufferOfItsOwn) {
  // EncodeMessage reuses a per-thread payload buffer; a nested call must not share it.
  static const auto outer = TypedMessageType<int>::Create("CodecTest.Outer");
  CodecRegistry inner = Registry();
  CodecRegistry codecs;
  ASSERT_TRUE(codecs.Add(BinaryCodec(
      outer,
      [&inner](const int& v, std::string& out) {
        out += "head:";
        std::string nested;
        EXPECT_TRUE(EncodeMessage(inner, *Message::Create(BinaryType().get(), v), "n", 1, nested));
        out += std::to_string(nested.size());
      },
      [](std::string_view) -> std::optional<int> { return 0; })));
  std::string out;
  ASSERT_TRUE(EncodeMessage(codecs, *Message::Create(outer.get(), 3), "x", 1, out));
  Frame frame;
  ASSERT_EQ(DecodeFrame(out, WireLimits{}, frame), RejectReason::kNone);
  const std::string expected =
      "head:" +
      std::to_string(EncodeFrom(inner, Message::Create(BinaryType().get(), 3), "n", 1).size());
  EXPECT_EQ(frame.payload, expected);
}

TEST(Codec, EncodeRefusedByTheCodecLeavesTheOutputAlone) {
  CodecRegistry codecs;
  Codec refusing = IntCodec();
  refusing.encode = [](const Message&, std::string& out) {
    out += "half-written";
    return false;
  };
  ASSERT_TRUE(codecs.Add(std::move(refusing)));
  std::string out = "kept";
  EXPECT_FALSE(EncodeMessage(codecs, *Message::Create(BinaryType().get(), 1), "x", 1, out));
  EXPECT_EQ(out, "kept");
}

TEST(Codec, CL08_FrameRefusalsPassThrough) {
  const CodecRegistry codecs = Registry();
  EXPECT_EQ(DecodeMessage(codecs, "not a frame", {}, kNodeB).reason, RejectReason::kBadMagic);
  EXPECT_EQ(DecodeMessage(codecs, "PX", {}, kNodeB).reason, RejectReason::kTruncated);
  EXPECT_FALSE(DecodeMessage(codecs, "PX", {}, kNodeB).message);
}

TEST(Codec, CL08_UnknownType) {
  const CodecRegistry codecs = Registry();
  const std::string bytes = RawFrame("NoSuchType", Encoding::kJson, "{}");
  const DecodedMessage got = DecodeMessage(codecs, bytes, {}, kNodeB);  // views into `bytes`
  EXPECT_EQ(got.reason, RejectReason::kUnknownType);
  EXPECT_EQ(got.frame.type_name, "NoSuchType");  // the frame is there for the log line
  EXPECT_FALSE(got.message);
}

TEST(Codec, CL08_KnownTypeInAnEncodingItHasNoCodecFor) {
  const CodecRegistry codecs = Registry();
  EXPECT_EQ(
      DecodeMessage(codecs, RawFrame("CodecTest.Int", Encoding::kJson, "1"), {}, kNodeB).reason,
      RejectReason::kUnknownType);
}

TEST(Codec, CL08_PayloadRefused) {
  const CodecRegistry codecs = Registry();
  const auto reason = [&](std::string_view type, Encoding enc, std::string_view payload) {
    return DecodeMessage(codecs, RawFrame(type, enc, payload), {}, kNodeB).reason;
  };
  constexpr auto kJson = Encoding::kJson;
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, "not json"), RejectReason::kPayloadRefused);
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, ""), RejectReason::kPayloadRefused);
  // The parser returns nullopt.
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, R"({"device":"d","state":-1})"),
            RejectReason::kPayloadRefused);
  // The parser throws (missing key, wrong JSON type).
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, R"({"state":1})"),
            RejectReason::kPayloadRefused);
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, R"({"device":1,"state":"x"})"),
            RejectReason::kPayloadRefused);
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, "[]"), RejectReason::kPayloadRefused);
  // The binary decoder refuses, and throws.
  EXPECT_EQ(reason("CodecTest.Int", Encoding::kBinary, "123"), RejectReason::kPayloadRefused);
  EXPECT_EQ(reason("CodecTest.Int", Encoding::kBinary, std::string("\xff\xff\xff\xff", 4)),
            RejectReason::kPayloadRefused);
  EXPECT_EQ(reason("CodecTest.DeviceState", kJson, R"({"device":"d","state":1})"),
            RejectReason::kNone);
}

TEST(Codec, CL08_NoNode) {
  const CodecRegistry codecs = Registry();
  const std::string bytes =
      RawFrame("CodecTest.Int", Encoding::kBinary, std::string(4, '\0'), NodeId::None());
  EXPECT_EQ(DecodeMessage(codecs, bytes, {}, kNodeB).reason, RejectReason::kNoNode);
}

TEST(Codec, CL08_ClaimsLocalNode) {
  const CodecRegistry codecs = Registry();
  const Ref<Message> sent = Message::Create(BinaryType().get(), 5, kNodeB);
  const DecodedMessage got = DecodeMessage(codecs, EncodeFrom(codecs, sent), {}, kNodeB);
  EXPECT_EQ(got.reason, RejectReason::kClaimsLocalNode);
  EXPECT_FALSE(got.message);
}

TEST(Codec, CL08_LimitsApplyToMessages) {
  const CodecRegistry codecs = Registry();
  const Ref<Message> sent = Message::Create(BinaryType().get(), 5, kNodeA);
  WireLimits limits;
  limits.max_id_bytes = 1;
  EXPECT_EQ(DecodeMessage(codecs, EncodeFrom(codecs, sent, "ab"), limits, kNodeB).reason,
            RejectReason::kIdTooLong);
}

TEST(CodecRegistry, FindsByNameAndByType) {
  const CodecRegistry codecs = Registry();
  EXPECT_EQ(codecs.size(), 2u);
  ASSERT_NE(codecs.Find("CodecTest.DeviceState"), nullptr);
  EXPECT_EQ(codecs.Find("CodecTest.DeviceState")->type, JsonType().get());
  EXPECT_EQ(codecs.Find(BinaryType().get())->encoding, Encoding::kBinary);
  EXPECT_EQ(codecs.Find("Nope"), nullptr);
  EXPECT_EQ(codecs.Find(static_cast<const MessageType*>(nullptr)), nullptr);
}

TEST(CodecRegistry, ATypeOfTheSameNameThatIsNotRegisteredIsNotFound) {
  const CodecRegistry codecs = Registry();
  static const auto twin = TypedMessageType<int>::Create("CodecTest.Int");
  if (twin.get() != BinaryType().get()) {
    EXPECT_EQ(codecs.Find(twin.get()), nullptr);
  }
}

TEST(CodecRegistry, MisuseIsReportedAtTheCallersLine) {
  CodecRegistry codecs;
  ASSERT_TRUE(codecs.Add(IntCodec()));
  PLEXUS_EXPECT_MISUSE_HERE(codecs.Add(IntCodec()));
  PLEXUS_EXPECT_MISUSE_HERE(codecs.Add(Codec{}));
  Codec no_decoder = IntCodec();
  no_decoder.decode = nullptr;
  PLEXUS_EXPECT_MISUSE_HERE(codecs.Add(std::move(no_decoder)));
  EXPECT_EQ(codecs.size(), 1u);
}

TEST(CodecRegistry, MisuseUnderLogReturnsFalseAndLeavesTheRegistryAlone) {
  plexus_test::ScopedMisuseAction log(MisuseAction::kLog);
  CodecRegistry codecs;
  ASSERT_TRUE(codecs.Add(IntCodec()));
  const std::uint64_t before = MisuseReportCount();
  EXPECT_FALSE(codecs.Add(IntCodec()));
  EXPECT_FALSE(codecs.Add(Codec{}));
  EXPECT_EQ(MisuseReportCount(), before + 2);
  EXPECT_EQ(codecs.size(), 1u);
}

TEST(JsonCodec, ATypeWithoutAJsonFormatterIsMisuse) {
  static const auto plain = TypedMessageType<DeviceState>::Create("CodecTest.Plain");
  const auto parse = [](const nlohmann::json&) -> std::optional<DeviceState> { return {}; };
  PLEXUS_EXPECT_MISUSE_HERE(JsonCodec(plain, parse));
  plexus_test::ScopedMisuseAction log(MisuseAction::kLog);
  const Codec codec = JsonCodec(plain, parse);
  EXPECT_EQ(codec.type, nullptr);  // and so the registry refuses it
}

}  // namespace
}  // namespace plexus::cluster
