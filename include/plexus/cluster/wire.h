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
// counts messages per node without parsing the rest. Every length is checked against the
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
inline constexpr std::size_t kFrameFixedBytes = 29;  // up to and including the name's length

enum class Encoding : std::uint8_t {
  kJson = 0,    // the payload is the JSON text of the message type's JSON codec
  kBinary = 1,  // the payload is the message type's own compact encoding
};

// Bounds on what a decoder accepts (everything from the network is untrusted).
struct WireLimits {
  std::size_t max_frame_bytes = 1 << 20;  // whole frame
  std::size_t max_type_name_bytes = 128;
  std::size_t max_id_bytes = 256;
};

// Why a frame (or the message in it) was refused. Counted per reason by the bridge.
enum class RejectReason : std::uint8_t {
  kNone = 0,            // accepted
  kTruncated,           // shorter than its fixed part or than a length it declares
  kBadMagic,            // not a plexus frame
  kUnsupportedVersion,  // a version this build does not speak
  kUnknownEncoding,     // an encoding byte that names no Encoding
  kOversized,           // longer than WireLimits::max_frame_bytes
  kTypeNameTooLong,     // type name empty or over WireLimits::max_type_name_bytes
  kIdTooLong,           // object id over WireLimits::max_id_bytes
  kTrailingBytes,       // bytes after the payload
  kUnknownType,         // no codec for the type name (or none for its encoding)
  kPayloadRefused,      // the type's decoder refused the payload (or threw)
  kClaimsLocalNode,     // a foreign frame that carries the receiving node's own id
  kNoNode,              // no node id where one is required
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

}  // namespace plexus::cluster
