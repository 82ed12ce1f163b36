// -----------------------------------------------------------------------------
// plexus/cluster/wire.h
// -----------------------------------------------------------------------------
//
// The wire format of plexus's cluster bridge: how one bus message travels between nodes. A
// frame is self-contained (it does not depend on the transport's headers) and versioned:
//
//   offset size  field
//        0    2  magic "PX"
//        2    1  version (kWireVersion)
//        3    1  encoding of the payload (Encoding: JSON or the type's binary codec)
//        4    6  node id of the node that made the message (NodeId bytes; all zero: none)
//       10    2  flags (reserved, zero)
//       12    8  sequence number, per sending node (little-endian)
//       20    8  timestamp, nanoseconds since the Unix epoch (little-endian, signed)
//       28    1  length T of the message type's name, then T bytes of name
//          2     length I of the object id (the cache id; 0: none), then I bytes of id
//          4     length P of the payload, then P bytes of payload; the frame ends there.
//
// The node id sits at a fixed offset, so a receiver drops its own messages (loop guard) and
// counts messages per node without parsing the rest.
//
// A batch container carries several frames of one node in one transport message, so that the
// transport's per-message costs are paid once per batch:
//
//   offset size  field
//        0    2  magic "PX"
//        2    1  kBatchVersion (a frame's version byte is kWireVersion: the two never meet)
//        3    1  reserved (zero; ignored, so a later version may use it)
//        4    6  node id of the node that made every frame inside (same offset as a frame's)
//       10    2  number N of frames, 1 to WireLimits::max_batch_frames (little-endian)
//       12       N times: 4-byte length L, then L bytes of one frame (as EncodeFrame wrote it)
//
// A single frame stays a valid transport message by itself: a sender may send either, and a
// receiver tells them apart by the version byte (IsBatch). A receiver that predates containers
// refuses one as kUnsupportedVersion rather than misreading it. Every length is checked against the
// frame and against WireLimits before anything is read: a decoder never reads past its input,
// never allocates on the strength of a length it has not checked, and names what was wrong.
//
// Thread safety: the functions are thread-safe (they touch only their arguments). Frame is a
// value type whose views point into the bytes it was decoded from.

#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "plexus/bus/node_id.h"

namespace plexus::cluster {

inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kFrameFixedBytes = 29;    // up to and including the name's length
inline constexpr std::uint8_t kBatchVersion = 0x81;    // a batch container of version-1 frames
inline constexpr std::size_t kBatchHeaderBytes = 12;   // up to and including the frame count
inline constexpr std::size_t kBatchFrameOverhead = 4;  // each frame's length

enum class Encoding : std::uint8_t {
  kJson = 0,    // the payload is the JSON text of the message type's JSON codec
  kBinary = 1,  // the payload is the message type's own compact encoding
};

// Bounds on what a decoder accepts (everything from the network is untrusted).
struct WireLimits {
  std::size_t max_frame_bytes = 1 << 20;  // whole frame
  std::size_t max_type_name_bytes = 128;
  std::size_t max_id_bytes = 256;
  // A batch container: its whole size, and how many frames it may hold. A sender keeps its
  // batches within the limits its peers decode with.
  std::size_t max_batch_bytes = 1 << 20;
  std::size_t max_batch_frames = 4096;
};

// Why a frame (or the message in it) was refused. Counted per reason by the bridge.
enum class RejectReason : std::uint8_t {
  kNone = 0,            // accepted
  kTruncated,           // shorter than its fixed part or than a length it declares
  kBadMagic,            // not a plexus frame
  kUnsupportedVersion,  // a version this build does not speak
  kUnknownEncoding,     // an encoding byte that names no Encoding
  kOversized,           // longer than WireLimits::max_frame_bytes (container: max_batch_bytes)
  kTypeNameTooLong,     // type name empty or over WireLimits::max_type_name_bytes
  kIdTooLong,           // object id over WireLimits::max_id_bytes
  kTrailingBytes,       // bytes after the payload
  kUnknownType,         // no codec for the type name (or none for its encoding)
  kPayloadRefused,      // the type's decoder refused the payload (or threw)
  kClaimsLocalNode,     // a foreign frame that carries the receiving node's own id
  kNoNode,              // no node id where one is required
  kBatchEmpty,          // a batch container that holds no frame
  kBatchTooManyFrames,  // a batch container over WireLimits::max_batch_frames
  kBatchNodeMismatch,   // a frame in a batch container that names another node than it
  kCount                // number of reasons (for per-reason counters)
};

// "truncated", "bad_magic", ... (stable names, used in statistics and metrics).
std::string_view RejectReasonName(RejectReason reason) noexcept;

// One decoded frame. The string views point into the decoded bytes.
struct Frame {
  Encoding encoding = Encoding::kJson;
  NodeId node;
  std::uint64_t seq = 0;
  std::int64_t timestamp_ns = 0;
  std::string_view type_name;
  std::string_view id;
  std::string_view payload;
};

// Appends the encoding of `frame` to `out`. The caller keeps within the limits it encodes
// for (EncodeFrame does not refuse; DecodeFrame of the result accepts it when it does).
void EncodeFrame(const Frame& frame, std::string& out);

// Decodes `bytes` into `frame`. Returns kNone when `bytes` is exactly one well-formed frame
// within `limits`, otherwise the first problem found (frame is then unspecified).
RejectReason DecodeFrame(std::string_view bytes, const WireLimits& limits, Frame& frame) noexcept;

// The node id in a frame's fixed part, or nullopt-like NodeId::None() when `bytes` is too short
// or not a plexus frame: what a receiver reads to drop its own messages cheaply.
NodeId PeekFrameNode(std::string_view bytes) noexcept;

// --- Batch containers -----------------------------------------------------------------------

// Whether `bytes` claim to be a batch container (magic and version byte), not a single frame.
bool IsBatch(std::string_view bytes) noexcept;

// Starts a batch container of `node`'s frames in `out` (replacing what it held); AppendToBatch
// adds one frame. The caller keeps within the limits its peers decode with (the writer does
// not refuse; BatchReader of the result accepts it when it does).
void BeginBatch(const NodeId& node, std::string& out);
void AppendToBatch(std::string_view frame, std::string& batch);
// The number of frames a batch that BeginBatch started holds.
std::size_t BatchFrameCount(std::string_view batch) noexcept;

// Walks a batch container. The constructor checks the whole structure first (header, count,
// every frame's length, each frame's node against the container's, nothing after the last
// frame), so a malformed container is refused as a whole, before any of its frames is used;
// the frames themselves are decoded by the caller (DecodeFrame, DecodeMessage), one by one.
//
//   BatchReader reader(bytes, limits);
//   if (reader.reason() != RejectReason::kNone) { /* count it */ }
//   for (std::string_view frame; reader.Next(frame);) { /* decode it */ }
//
// Thread safety: a value; the views it gives point into `bytes`, which must outlive it.
class BatchReader {
 public:
  BatchReader(std::string_view bytes, const WireLimits& limits) noexcept;

  // kNone when the container is well formed, otherwise the first problem found.
  RejectReason reason() const noexcept { return reason_; }
  // The container's node and number of frames (when well formed).
  const NodeId& node() const noexcept { return node_; }
  std::size_t size() const noexcept { return count_; }
  // The next frame: true, or false after the last (at once when the container is malformed).
  bool Next(std::string_view& frame) noexcept;

 private:
  RejectReason Check(const WireLimits& limits) noexcept;

  std::string_view bytes_;
  RejectReason reason_ = RejectReason::kNone;
  NodeId node_;
  std::size_t count_ = 0;
  std::size_t pos_ = kBatchHeaderBytes;
  std::size_t next_ = 0;
};

}  // namespace plexus::cluster
