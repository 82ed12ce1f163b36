// libFuzzer target for the cluster decoder: arbitrary bytes through DecodeFrame and
// DecodeMessage (with a registry holding a JSON and a binary codec), and through BatchReader
// and the same two decoders for each frame of a container it accepts, which must refuse them by
// reason and never crash, hang, read out of bounds or allocate on an unchecked length. A frame
// that DecodeFrame accepts, and a container that BatchReader accepts, must also encode back to
// the same bytes.

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>

#include "plexus/bus/json.h"
#include "plexus/cluster/codec.h"
#include "plexus/cluster/wire.h"

namespace {

using plexus::NodeId;
using plexus::TypedMessageType;
using plexus::cluster::CodecRegistry;
using plexus::cluster::Frame;
using plexus::cluster::RejectReason;
using plexus::cluster::WireLimits;

struct Device {
  std::string name;
  int state = 0;
};

const CodecRegistry& Registry() {
  static const CodecRegistry* codecs = [] {
    static const auto json_type = TypedMessageType<Device>::Create(
        "Fuzz.Json", {.to_json = plexus::JsonFormatter<Device>([](const Device& d) {
                        return nlohmann::json{{"name", d.name}, {"state", d.state}};
                      })});
    static const auto binary_type = TypedMessageType<std::uint32_t>::Create("Fuzz.Binary");
    auto* registry = new CodecRegistry();
    registry->Add(
        plexus::cluster::JsonCodec(json_type, [](const nlohmann::json& j) -> std::optional<Device> {
          return Device{j.at("name").get<std::string>(), j.at("state").get<int>()};
        }));
    registry->Add(plexus::cluster::BinaryCodec(
        binary_type,
        [](const std::uint32_t& v, std::string& out) {
          for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(v >> (8 * i)));
        },
        [](std::string_view in) -> std::optional<std::uint32_t> {
          if (in.size() != 4) return std::nullopt;
          std::uint32_t v = 0;
          for (int i = 0; i < 4; ++i)
            v |= std::uint32_t{static_cast<std::uint8_t>(in[i])} << (8 * i);
          return v;
        }));
    return registry;
  }();
  return *codecs;
}

const NodeId kLocal(NodeId::Bytes{0x02, 0, 0, 0, 0, 0x01});

// One frame, as a bridge receives it alone or from a container.
void CheckFrame(std::string_view bytes, const WireLimits& limits) {
  Frame frame;
  const RejectReason reason = plexus::cluster::DecodeFrame(bytes, limits, frame);
  if (reason == RejectReason::kNone && bytes.size() > 11 && bytes[10] == 0 && bytes[11] == 0) {
    std::string again;
    plexus::cluster::EncodeFrame(frame, again);
    if (again != bytes) std::abort();  // the decoder accepted what the encoder would not write
  }
  const plexus::cluster::DecodedMessage decoded =
      plexus::cluster::DecodeMessage(Registry(), bytes, limits, kLocal);
  if ((decoded.reason == RejectReason::kNone) != static_cast<bool>(decoded.message)) std::abort();
  if (decoded.reason != RejectReason::kNone && reason == RejectReason::kNone &&
      decoded.reason < RejectReason::kUnknownType) {
    std::abort();  // a frame-level refusal of a frame the frame decoder accepted
  }
}

// A batch container: checked whole, then each frame; an accepted one re-encodes as it came.
void CheckBatch(std::string_view bytes, const WireLimits& limits) {
  plexus::cluster::BatchReader reader(bytes, limits);
  if (reader.reason() != RejectReason::kNone) {
    std::string_view frame;
    if (reader.Next(frame)) std::abort();  // a refused container gives no frame
    return;
  }
  if (reader.node().IsNone() || reader.size() == 0 || reader.size() > limits.max_batch_frames) {
    std::abort();
  }
  std::string again;
  plexus::cluster::BeginBatch(reader.node(), again);
  std::size_t n = 0;
  for (std::string_view frame; reader.Next(frame); ++n) {
    if (!(plexus::cluster::PeekFrameNode(frame) == reader.node())) std::abort();
    CheckFrame(frame, limits);
    plexus::cluster::AppendToBatch(frame, again);
  }
  if (n != reader.size()) std::abort();
  if (bytes[3] == 0 && again != bytes) std::abort();  // accepted what the writer would not write
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  WireLimits limits;
  limits.max_frame_bytes = 64 * 1024;
  limits.max_batch_bytes = 64 * 1024;
  limits.max_batch_frames = 64;
  (void)plexus::cluster::PeekFrameNode(bytes);
  if (plexus::cluster::IsBatch(bytes)) {
    CheckBatch(bytes, limits);
  } else {
    CheckFrame(bytes, limits);
  }
  return 0;
}
