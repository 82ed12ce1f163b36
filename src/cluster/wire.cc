#include "plexus/cluster/wire.h"

#include <cstring>

namespace plexus::cluster {
namespace {

constexpr std::size_t kNodeOffset = 4;
constexpr std::size_t kSeqOffset = 12;
constexpr std::size_t kTimestampOffset = 20;
constexpr std::size_t kTypeLengthOffset = 28;
constexpr std::size_t kBatchCountOffset = 10;
static_assert(kFrameFixedBytes == kTypeLengthOffset + 1);
static_assert(kBatchHeaderBytes == kBatchCountOffset + 2);

std::uint64_t GetLittle(const unsigned char* p, int bytes) noexcept {
  std::uint64_t value = 0;
  for (int i = 0; i < bytes; ++i) value |= std::uint64_t{p[i]} << (8 * i);
  return value;
}

NodeId NodeAt(const unsigned char* p) noexcept {
  NodeId::Bytes b{};
  std::memcpy(b.data(), p, b.size());
  for (std::uint8_t byte : b) {
    if (byte != 0) return NodeId(b);
  }
  return NodeId::None();  // all zero: the frame names no node
}

// Reads a length-prefixed field at `*pos`, advancing it; false when the frame is too short.
bool ReadField(std::string_view bytes, std::size_t& pos, int length_bytes, std::size_t limit,
               std::string_view& field, bool& over_limit) noexcept {
  if (bytes.size() - pos < static_cast<std::size_t>(length_bytes)) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data()) + pos;
  const std::uint64_t length = GetLittle(p, length_bytes);
  pos += static_cast<std::size_t>(length_bytes);
  if (length > limit) {
    over_limit = true;
    return true;
  }
  if (bytes.size() - pos < length) return false;
  field = bytes.substr(pos, static_cast<std::size_t>(length));
  pos += static_cast<std::size_t>(length);
  return true;
}

}  // namespace

std::string_view RejectReasonName(RejectReason reason) noexcept {
  switch (reason) {
    case RejectReason::kNone:
      return "none";
    case RejectReason::kTruncated:
      return "truncated";
    case RejectReason::kBadMagic:
      return "bad_magic";
    case RejectReason::kUnsupportedVersion:
      return "unsupported_version";
    case RejectReason::kUnknownEncoding:
      return "unknown_encoding";
    case RejectReason::kOversized:
      return "oversized";
    case RejectReason::kTypeNameTooLong:
      return "type_name_too_long";
    case RejectReason::kIdTooLong:
      return "id_too_long";
    case RejectReason::kTrailingBytes:
      return "trailing_bytes";
    case RejectReason::kUnknownType:
      return "unknown_type";
    case RejectReason::kPayloadRefused:
      return "payload_refused";
    case RejectReason::kClaimsLocalNode:
      return "claims_local_node";
    case RejectReason::kNoNode:
      return "no_node";
    case RejectReason::kBatchEmpty:
      return "batch_empty";
    case RejectReason::kBatchTooManyFrames:
      return "batch_too_many_frames";
    case RejectReason::kBatchNodeMismatch:
      return "batch_node_mismatch";
    case RejectReason::kCount:
      break;
  }
  return "unknown";
}

void EncodeFrame(const Frame& frame, std::string& out) {
  // Sized once and written through a pointer: a frame is encoded per message sent, and a
  // push_back per byte (each checking the capacity) cost more than the rest of the encoding.
  const std::size_t at = out.size();
  out.resize(at + kFrameFixedBytes + frame.type_name.size() + 2 + frame.id.size() + 4 +
             frame.payload.size());
  char* p = out.data() + at;
  auto put = [&p](std::uint64_t value, int bytes) {
    for (int i = 0; i < bytes; ++i) *p++ = static_cast<char>((value >> (8 * i)) & 0xff);
  };
  auto append = [&p](std::string_view bytes) {
    if (!bytes.empty()) std::memcpy(p, bytes.data(), bytes.size());
    p += bytes.size();
  };
  *p++ = 'P';
  *p++ = 'X';
  *p++ = static_cast<char>(kWireVersion);
  *p++ = static_cast<char>(frame.encoding);
  if (frame.node.IsNone()) {
    std::memset(p, 0, 6);
    p += 6;
  } else {
    for (std::uint8_t b : frame.node.bytes()) *p++ = static_cast<char>(b);
  }
  put(0, 2);  // flags
  put(frame.seq, 8);
  put(static_cast<std::uint64_t>(frame.timestamp_ns), 8);
  put(frame.type_name.size(), 1);
  append(frame.type_name);
  put(frame.id.size(), 2);
  append(frame.id);
  put(frame.payload.size(), 4);
  append(frame.payload);
}

RejectReason DecodeFrame(std::string_view bytes, const WireLimits& limits, Frame& frame) noexcept {
  // Magic and version first, so that a foreign message is named as such even when short.
  if (bytes.size() >= 2 && (bytes[0] != 'P' || bytes[1] != 'X')) return RejectReason::kBadMagic;
  if (bytes.size() >= 3 && static_cast<std::uint8_t>(bytes[2]) != kWireVersion) {
    return RejectReason::kUnsupportedVersion;
  }
  if (bytes.size() > limits.max_frame_bytes) return RejectReason::kOversized;
  if (bytes.size() < kFrameFixedBytes) return RejectReason::kTruncated;

  const auto* p = reinterpret_cast<const unsigned char*>(bytes.data());
  if (p[3] > static_cast<std::uint8_t>(Encoding::kBinary)) return RejectReason::kUnknownEncoding;
  frame.encoding = static_cast<Encoding>(p[3]);
  frame.node = NodeAt(p + kNodeOffset);
  // The flags (offset 10) are reserved: ignored, so that a later version may set them.
  frame.seq = GetLittle(p + kSeqOffset, 8);
  frame.timestamp_ns = static_cast<std::int64_t>(GetLittle(p + kTimestampOffset, 8));

  std::size_t pos = kTypeLengthOffset;
  bool over = false;
  if (!ReadField(bytes, pos, 1, limits.max_type_name_bytes, frame.type_name, over)) {
    return RejectReason::kTruncated;
  }
  if (over || frame.type_name.empty()) return RejectReason::kTypeNameTooLong;
  frame.id = {};
  if (!ReadField(bytes, pos, 2, limits.max_id_bytes, frame.id, over)) {
    return RejectReason::kTruncated;
  }
  if (over) return RejectReason::kIdTooLong;
  // The payload is bounded by the frame (checked against max_frame_bytes above).
  frame.payload = {};
  if (!ReadField(bytes, pos, 4, bytes.size(), frame.payload, over) || over) {
    return RejectReason::kTruncated;
  }
  if (pos != bytes.size()) return RejectReason::kTrailingBytes;
  return RejectReason::kNone;
}

NodeId PeekFrameNode(std::string_view bytes) noexcept {
  if (bytes.size() < kNodeOffset + 6 || bytes[0] != 'P' || bytes[1] != 'X') {
    return NodeId::None();
  }
  return NodeAt(reinterpret_cast<const unsigned char*>(bytes.data()) + kNodeOffset);
}

bool IsBatch(std::string_view bytes) noexcept {
  return bytes.size() >= 3 && bytes[0] == 'P' && bytes[1] == 'X' &&
         static_cast<std::uint8_t>(bytes[2]) == kBatchVersion;
}

void BeginBatch(const NodeId& node, std::string& out) {
  out.resize(kBatchHeaderBytes);
  char* p = out.data();
  p[0] = 'P';
  p[1] = 'X';
  p[2] = static_cast<char>(kBatchVersion);
  p[3] = 0;
  if (node.IsNone()) {
    std::memset(p + kNodeOffset, 0, 6);
  } else {
    std::memcpy(p + kNodeOffset, node.bytes().data(), 6);
  }
  p[kBatchCountOffset] = 0;
  p[kBatchCountOffset + 1] = 0;
}

void AppendToBatch(std::string_view frame, std::string& batch) {
  // Appended rather than resized and written: a resize zero-fills what the copy overwrites,
  // and this runs once per frame sent.
  char length[kBatchFrameOverhead];
  for (std::size_t i = 0; i < kBatchFrameOverhead; ++i) {
    length[i] = static_cast<char>((frame.size() >> (8 * i)) & 0xff);
  }
  batch.append(length, kBatchFrameOverhead);
  batch.append(frame.data(), frame.size());
  const std::uint64_t count = BatchFrameCount(batch) + 1;
  batch[kBatchCountOffset] = static_cast<char>(count & 0xff);
  batch[kBatchCountOffset + 1] = static_cast<char>((count >> 8) & 0xff);
}

std::size_t BatchFrameCount(std::string_view batch) noexcept {
  if (batch.size() < kBatchHeaderBytes) return 0;
  return static_cast<std::size_t>(
      GetLittle(reinterpret_cast<const unsigned char*>(batch.data()) + kBatchCountOffset, 2));
}

BatchReader::BatchReader(std::string_view bytes, const WireLimits& limits) noexcept
    : bytes_(bytes) {
  reason_ = Check(limits);
  if (reason_ != RejectReason::kNone) count_ = 0;
}

RejectReason BatchReader::Check(const WireLimits& limits) noexcept {
  // In DecodeFrame's order: what the bytes are first, then their size, then their contents.
  if (bytes_.size() >= 2 && (bytes_[0] != 'P' || bytes_[1] != 'X')) return RejectReason::kBadMagic;
  if (bytes_.size() >= 3 && static_cast<std::uint8_t>(bytes_[2]) != kBatchVersion) {
    return RejectReason::kUnsupportedVersion;
  }
  if (bytes_.size() > limits.max_batch_bytes) return RejectReason::kOversized;
  if (bytes_.size() < kBatchHeaderBytes) return RejectReason::kTruncated;
  const auto* p = reinterpret_cast<const unsigned char*>(bytes_.data());
  node_ = NodeAt(p + kNodeOffset);
  if (node_.IsNone()) return RejectReason::kNoNode;
  count_ = static_cast<std::size_t>(GetLittle(p + kBatchCountOffset, 2));
  if (count_ == 0) return RejectReason::kBatchEmpty;
  if (count_ > limits.max_batch_frames) return RejectReason::kBatchTooManyFrames;
  // The frames' lengths only: a walk of a few bytes per frame, so that a container cut short or
  // padded is refused before any of its frames is delivered.
  std::size_t pos = kBatchHeaderBytes;
  for (std::size_t i = 0; i < count_; ++i) {
    if (bytes_.size() - pos < kBatchFrameOverhead) return RejectReason::kTruncated;
    const std::uint64_t length = GetLittle(p + pos, kBatchFrameOverhead);
    pos += kBatchFrameOverhead;
    if (bytes_.size() - pos < length) return RejectReason::kTruncated;
    // What PeekFrameNode would read, compared byte for byte (this runs once per frame
    // received). A frame too short to name a node names none, which is not the container's.
    if (length < kNodeOffset + 6 || p[pos] != 'P' || p[pos + 1] != 'X' ||
        std::memcmp(p + pos + kNodeOffset, p + kNodeOffset, 6) != 0) {
      return RejectReason::kBatchNodeMismatch;
    }
    pos += static_cast<std::size_t>(length);
  }
  if (pos != bytes_.size()) return RejectReason::kTrailingBytes;
  return RejectReason::kNone;
}

bool BatchReader::Next(std::string_view& frame) noexcept {
  if (next_ >= count_) return false;
  // Every length was checked by the constructor.
  const std::size_t length = static_cast<std::size_t>(
      GetLittle(reinterpret_cast<const unsigned char*>(bytes_.data()) + pos_, kBatchFrameOverhead));
  frame = bytes_.substr(pos_ + kBatchFrameOverhead, length);
  pos_ += kBatchFrameOverhead + length;
  ++next_;
  return true;
}

}  // namespace plexus::cluster
