// Batch containers (wire.h): BeginBatch/AppendToBatch write them, BatchReader checks and walks
// them. Round trips, the layout, and every refusal of a malformed container (the container's
// part of CL08), at the limits and one past them.

#include <string>
#include <vector>

#include "cluster/cluster_test_support.h"
#include "gtest/gtest.h"
#include "plexus/cluster/wire.h"

namespace plexus::cluster {
namespace {

const NodeId kNode(NodeId::Bytes{0x02, 0x11, 0x22, 0x33, 0x44, 0x55});
const NodeId kOther(NodeId::Bytes{0x02, 0x66, 0x77, 0x88, 0x99, 0xaa});

using testing::BatchOf;
using testing::Encoded;

std::string FrameOf(const NodeId& node, std::uint64_t seq, std::string_view payload) {
  return Encoded({.encoding = Encoding::kBinary,
                  .node = node,
                  .seq = seq,
                  .type_name = "DeviceState",
                  .payload = payload});
}

std::vector<std::string> ReadAll(BatchReader& reader) {
  std::vector<std::string> out;
  for (std::string_view frame; reader.Next(frame);) out.emplace_back(frame);
  return out;
}

RejectReason Check(std::string_view bytes, const WireLimits& limits = {}) {
  return BatchReader(bytes, limits).reason();
}

TEST(BatchReader, RoundTripKeepsEveryFrameInOrder) {
  const std::vector<std::string> frames = {FrameOf(kNode, 1, "a"), FrameOf(kNode, 2, ""),
                                           FrameOf(kNode, 3, std::string(1000, 'c'))};
  const std::string batch = BatchOf(kNode, frames);
  EXPECT_TRUE(IsBatch(batch));
  EXPECT_EQ(BatchFrameCount(batch), 3u);
  BatchReader reader(batch, {});
  ASSERT_EQ(reader.reason(), RejectReason::kNone);
  EXPECT_EQ(reader.node(), kNode);
  EXPECT_EQ(reader.size(), 3u);
  EXPECT_EQ(ReadAll(reader), frames);
  std::string_view more;
  EXPECT_FALSE(reader.Next(more));  // and stays at the end
}

TEST(BatchReader, LayoutMatchesTheDocumentedOffsets) {
  const std::string frame = FrameOf(kNode, 7, "xyz");
  const std::string batch = BatchOf(kNode, {frame});
  ASSERT_EQ(batch.size(), kBatchHeaderBytes + kBatchFrameOverhead + frame.size());
  EXPECT_EQ(batch.substr(0, 2), "PX");
  EXPECT_EQ(static_cast<std::uint8_t>(batch[2]), kBatchVersion);
  EXPECT_EQ(batch[3], 0);
  EXPECT_EQ(static_cast<std::uint8_t>(batch[4]), 0x02);
  EXPECT_EQ(static_cast<std::uint8_t>(batch[9]), 0x55);
  EXPECT_EQ(batch[10], 1);  // count, little-endian
  EXPECT_EQ(batch[11], 0);
  EXPECT_EQ(static_cast<std::uint8_t>(batch[12]), frame.size());  // length, little-endian
  EXPECT_EQ(batch.substr(kBatchHeaderBytes + kBatchFrameOverhead), frame);
}

TEST(BatchReader, TheLoopGuardReadsAContainersNodeAsAFrames) {
  const std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a")});
  EXPECT_EQ(PeekFrameNode(batch), kNode);
}

TEST(BatchReader, AFrameIsNotABatchAndABatchIsNotAFrame) {
  const std::string frame = FrameOf(kNode, 1, "a");
  EXPECT_FALSE(IsBatch(frame));
  EXPECT_EQ(Check(frame), RejectReason::kUnsupportedVersion);
  Frame decoded;
  EXPECT_EQ(DecodeFrame(BatchOf(kNode, {frame}), {}, decoded), RejectReason::kUnsupportedVersion);
  EXPECT_FALSE(IsBatch(""));
  EXPECT_FALSE(IsBatch("PX"));
}

TEST(BatchReader, CountsPastOneByte) {
  std::vector<std::string> frames;
  for (int i = 0; i < 300; ++i) frames.push_back(FrameOf(kNode, i, "p"));
  const std::string batch = BatchOf(kNode, frames);
  EXPECT_EQ(BatchFrameCount(batch), 300u);
  BatchReader reader(batch, {});
  ASSERT_EQ(reader.reason(), RejectReason::kNone);
  EXPECT_EQ(ReadAll(reader), frames);
}

TEST(BatchReader, ReservedByteIsIgnored) {
  std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a")});
  batch[3] = 0x7f;
  EXPECT_EQ(Check(batch), RejectReason::kNone);
}

TEST(BatchReader, CL08_NotTheWireFormatOrAnotherVersion) {
  std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a")});
  std::string bad = batch;
  bad[1] = 'Y';
  EXPECT_EQ(Check(bad), RejectReason::kBadMagic);
  bad = batch;
  bad[2] = static_cast<char>(kBatchVersion + 1);
  EXPECT_EQ(Check(bad), RejectReason::kUnsupportedVersion);
}

TEST(BatchReader, CL08_TruncatedAtEveryLength) {
  const std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a"), FrameOf(kNode, 2, "bb")});
  for (std::size_t n = 3; n < batch.size(); ++n) {
    const RejectReason reason = Check(std::string_view(batch).substr(0, n));
    // Cut inside a frame: its length runs past the end. Cut between frames: a frame is missing.
    EXPECT_EQ(reason, RejectReason::kTruncated) << n;
  }
}

TEST(BatchReader, CL08_AMalformedContainerGivesNoFrame) {
  std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a"), FrameOf(kNode, 2, "b")});
  batch.pop_back();
  BatchReader reader(batch, {});
  EXPECT_EQ(reader.reason(), RejectReason::kTruncated);
  EXPECT_EQ(reader.size(), 0u);
  std::string_view frame;
  EXPECT_FALSE(reader.Next(frame));
}

TEST(BatchReader, CL08_Empty) {
  EXPECT_EQ(Check(BatchOf(kNode, {})), RejectReason::kBatchEmpty);
}

TEST(BatchReader, CL08_NoNode) {
  EXPECT_EQ(Check(BatchOf(NodeId::None(), {FrameOf(NodeId::None(), 1, "a")})),
            RejectReason::kNoNode);
}

TEST(BatchReader, CL08_AFrameOfAnotherNode) {
  EXPECT_EQ(Check(BatchOf(kNode, {FrameOf(kNode, 1, "a"), FrameOf(kOther, 2, "b")})),
            RejectReason::kBatchNodeMismatch);
  // A frame too short to name a node names none.
  EXPECT_EQ(Check(BatchOf(kNode, {"PX"})), RejectReason::kBatchNodeMismatch);
  EXPECT_EQ(Check(BatchOf(kNode, {""})), RejectReason::kBatchNodeMismatch);
}

TEST(BatchReader, CL08_FramesAtTheLimitAndOnePast) {
  WireLimits limits;
  limits.max_batch_frames = 3;
  std::vector<std::string> frames(3, FrameOf(kNode, 1, "a"));
  EXPECT_EQ(Check(BatchOf(kNode, frames), limits), RejectReason::kNone);
  frames.push_back(frames.back());
  EXPECT_EQ(Check(BatchOf(kNode, frames), limits), RejectReason::kBatchTooManyFrames);
}

TEST(BatchReader, CL08_BytesAtTheLimitAndOnePast) {
  const std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a")});
  WireLimits limits;
  limits.max_batch_bytes = batch.size();
  EXPECT_EQ(Check(batch, limits), RejectReason::kNone);
  limits.max_batch_bytes = batch.size() - 1;
  EXPECT_EQ(Check(batch, limits), RejectReason::kOversized);
}

TEST(BatchReader, CL08_LengthPastTheEnd) {
  std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a")});
  batch[kBatchHeaderBytes + 3] = 0x7f;  // the frame's length's top byte: about 2 GB
  EXPECT_EQ(Check(batch), RejectReason::kTruncated);
}

TEST(BatchReader, CL08_TrailingBytes) {
  std::string batch = BatchOf(kNode, {FrameOf(kNode, 1, "a")});
  batch.push_back('\0');
  EXPECT_EQ(Check(batch), RejectReason::kTrailingBytes);
}

TEST(BatchReader, CL08_ReasonsHaveStableNames) {
  EXPECT_EQ(RejectReasonName(RejectReason::kBatchEmpty), "batch_empty");
  EXPECT_EQ(RejectReasonName(RejectReason::kBatchTooManyFrames), "batch_too_many_frames");
  EXPECT_EQ(RejectReasonName(RejectReason::kBatchNodeMismatch), "batch_node_mismatch");
}

}  // namespace
}  // namespace plexus::cluster
