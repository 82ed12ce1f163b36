// The frame layout: round trips, and every refusal that the bytes alone can cause (the wire
// half of CL08), at the limits and one past them.

#include "plexus/cluster/wire.h"

#include <set>
#include <string>

#include "cluster/cluster_test_support.h"
#include "gtest/gtest.h"

namespace plexus::cluster {
namespace {

const NodeId kNode(NodeId::Bytes{0x02, 0x11, 0x22, 0x33, 0x44, 0x55});

Frame SampleFrame() {
  Frame frame;
  frame.encoding = Encoding::kJson;
  frame.node = kNode;
  frame.seq = 0x0102030405060708ULL;
  frame.timestamp_ns = -42;  // before the epoch: the field is signed
  frame.type_name = "DeviceState";
  frame.id = "PJSIP/alice";
  frame.payload = R"({"state":2})";
  return frame;
}

using testing::Encoded;

RejectReason Decode(std::string_view bytes, const WireLimits& limits = {}) {
  Frame frame;
  return DecodeFrame(bytes, limits, frame);
}

TEST(Wire, RoundTripKeepsEveryField) {
  const std::string bytes = Encoded(SampleFrame());
  Frame frame;
  ASSERT_EQ(DecodeFrame(bytes, {}, frame), RejectReason::kNone);
  EXPECT_EQ(frame.encoding, Encoding::kJson);
  EXPECT_EQ(frame.node, kNode);
  EXPECT_EQ(frame.seq, 0x0102030405060708ULL);
  EXPECT_EQ(frame.timestamp_ns, -42);
  EXPECT_EQ(frame.type_name, "DeviceState");
  EXPECT_EQ(frame.id, "PJSIP/alice");
  EXPECT_EQ(frame.payload, R"({"state":2})");
}

TEST(Wire, LayoutMatchesTheDocumentedOffsets) {
  const std::string bytes = Encoded(SampleFrame());
  ASSERT_EQ(bytes.size(), kFrameFixedBytes + 11 + 2 + 11 + 4 + 11);
  EXPECT_EQ(bytes.substr(0, 2), "PX");
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[2]), kWireVersion);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[3]), 0);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[4]), 0x02);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[9]), 0x55);
  EXPECT_EQ(bytes[10], 0);
  EXPECT_EQ(bytes[11], 0);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[12]), 0x08);  // little-endian sequence
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[19]), 0x01);
  EXPECT_EQ(static_cast<std::uint8_t>(bytes[28]), 11);  // type name length
}

TEST(Wire, BinaryEncodingEmptyIdAndZeroPayloadRoundTrip) {
  Frame in = SampleFrame();
  in.encoding = Encoding::kBinary;
  in.id = {};
  in.payload = {};
  const std::string bytes = Encoded(in);
  Frame out;
  ASSERT_EQ(DecodeFrame(bytes, {}, out), RejectReason::kNone);
  EXPECT_EQ(out.encoding, Encoding::kBinary);
  EXPECT_TRUE(out.id.empty());
  EXPECT_TRUE(out.payload.empty());
}

TEST(Wire, PayloadMayHoldAnyByte) {
  const std::string payload("\0\xff\x01PX", 5);
  Frame in = SampleFrame();
  in.payload = payload;
  Frame out;
  const std::string bytes = Encoded(in);
  ASSERT_EQ(DecodeFrame(bytes, {}, out), RejectReason::kNone);
  EXPECT_EQ(out.payload, payload);
}

TEST(Wire, EncodeAppends) {
  std::string out = "prefix";
  EncodeFrame(SampleFrame(), out);
  EXPECT_EQ(out.substr(0, 6), "prefix");
  EXPECT_EQ(Decode(std::string_view(out).substr(6)), RejectReason::kNone);
}

TEST(Wire, NoNodeIsAllZeroAndDecodesAsNone) {
  Frame in = SampleFrame();
  in.node = NodeId::None();
  const std::string bytes = Encoded(in);
  EXPECT_EQ(bytes.substr(4, 6), std::string(6, '\0'));
  Frame out;
  ASSERT_EQ(DecodeFrame(bytes, {}, out), RejectReason::kNone);  // the frame alone is fine
  EXPECT_TRUE(out.node.IsNone());
}

TEST(Wire, PeekFrameNodeReadsTheFixedOffset) {
  const std::string bytes = Encoded(SampleFrame());
  EXPECT_EQ(PeekFrameNode(bytes), kNode);
  EXPECT_EQ(PeekFrameNode(std::string_view(bytes).substr(0, 10)), kNode);  // 10 bytes suffice
  EXPECT_TRUE(PeekFrameNode(std::string_view(bytes).substr(0, 9)).IsNone());
  EXPECT_TRUE(PeekFrameNode("").IsNone());
  EXPECT_TRUE(PeekFrameNode("XX\x01\x00\x02\x11\x22\x33\x44\x55").IsNone());
}

TEST(Wire, CL08_TruncatedAtEveryLength) {
  const std::string bytes = Encoded(SampleFrame());
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    EXPECT_EQ(Decode(std::string_view(bytes).substr(0, n)), RejectReason::kTruncated) << n;
  }
}

TEST(Wire, CL08_NotTheWireFormat) {
  EXPECT_EQ(Decode(R"({"device":"d1","state":2})"), RejectReason::kBadMagic);
  std::string bytes = Encoded(SampleFrame());
  bytes[1] = 'Y';
  EXPECT_EQ(Decode(bytes), RejectReason::kBadMagic);
}

TEST(Wire, CL08_WrongVersion) {
  std::string bytes = Encoded(SampleFrame());
  bytes[2] = static_cast<char>(kWireVersion + 1);
  EXPECT_EQ(Decode(bytes), RejectReason::kUnsupportedVersion);
  bytes[2] = 0;
  EXPECT_EQ(Decode(bytes), RejectReason::kUnsupportedVersion);
}

TEST(Wire, CL08_UnknownEncoding) {
  std::string bytes = Encoded(SampleFrame());
  bytes[3] = 2;
  EXPECT_EQ(Decode(bytes), RejectReason::kUnknownEncoding);
}

TEST(Wire, CL08_OversizedAtTheLimitAndOnePast) {
  const std::string bytes = Encoded(SampleFrame());
  WireLimits limits;
  limits.max_frame_bytes = bytes.size();
  EXPECT_EQ(Decode(bytes, limits), RejectReason::kNone);
  limits.max_frame_bytes = bytes.size() - 1;
  EXPECT_EQ(Decode(bytes, limits), RejectReason::kOversized);
}

TEST(Wire, CL08_TypeNameAtTheLimitAndOnePast) {
  WireLimits limits;
  const std::string name(limits.max_type_name_bytes, 't');
  Frame in = SampleFrame();
  in.type_name = name;
  EXPECT_EQ(Decode(Encoded(in), limits), RejectReason::kNone);
  const std::string longer(limits.max_type_name_bytes + 1, 't');
  in.type_name = longer;
  EXPECT_EQ(Decode(Encoded(in), limits), RejectReason::kTypeNameTooLong);
}

TEST(Wire, CL08_EmptyTypeName) {
  Frame in = SampleFrame();
  in.type_name = {};
  EXPECT_EQ(Decode(Encoded(in)), RejectReason::kTypeNameTooLong);
}

TEST(Wire, CL08_IdAtTheLimitAndOnePast) {
  WireLimits limits;
  const std::string id(limits.max_id_bytes, 'i');
  Frame in = SampleFrame();
  in.id = id;
  EXPECT_EQ(Decode(Encoded(in), limits), RejectReason::kNone);
  const std::string longer(limits.max_id_bytes + 1, 'i');
  in.id = longer;
  EXPECT_EQ(Decode(Encoded(in), limits), RejectReason::kIdTooLong);
}

TEST(Wire, CL08_IdLengthIsCheckedBeforeTheFrameLength) {
  // A huge declared id in a short frame names the id, not the truncation: the limit is checked
  // first, so a decoder never trusts a length it has not bounded.
  std::string bytes = Encoded(SampleFrame());
  const std::size_t id_length_at = kFrameFixedBytes + 11;
  bytes[id_length_at] = static_cast<char>(0xff);
  bytes[id_length_at + 1] = static_cast<char>(0xff);
  EXPECT_EQ(Decode(bytes), RejectReason::kIdTooLong);
}

TEST(Wire, CL08_PayloadLengthPastTheEnd) {
  std::string bytes = Encoded(SampleFrame());
  const std::size_t payload_length_at = kFrameFixedBytes + 11 + 2 + 11;
  bytes[payload_length_at + 3] = static_cast<char>(0x80);  // 2 GiB declared
  EXPECT_EQ(Decode(bytes), RejectReason::kTruncated);
}

TEST(Wire, CL08_TrailingBytes) {
  std::string bytes = Encoded(SampleFrame());
  bytes.push_back('!');
  EXPECT_EQ(Decode(bytes), RejectReason::kTrailingBytes);
}

TEST(Wire, CL08_EveryReasonHasAStableDistinctName) {
  EXPECT_EQ(RejectReasonName(RejectReason::kTruncated), "truncated");
  EXPECT_EQ(RejectReasonName(RejectReason::kClaimsLocalNode), "claims_local_node");
  std::set<std::string_view> names;
  for (int r = 0; r < static_cast<int>(RejectReason::kCount); ++r) {
    const std::string_view name = RejectReasonName(static_cast<RejectReason>(r));
    EXPECT_NE(name, "unknown") << r;
    EXPECT_TRUE(names.insert(name).second) << name;
  }
}

}  // namespace
}  // namespace plexus::cluster
