// The three consumers of the "all calls" topic, each fed by a MessageRouter on the simulator's
// pool:
//
//   * the CDR router takes CallEnded and hands batches to the CdrWriter (SQLite);
//   * the device router keeps the device-state aggregate (calls up per device: a device is in
//     use while it has one) and samples the publish-to-callback latency of every message it
//     takes;
//   * the event router renders every message that has a JSON formatter as one line of the
//     event stream (a file, or stdout). Its queue is bounded and drops its oldest message when
//     full: the stream is what an overloaded server sheds, never a call record or a device
//     state.
//
// Thread safety: Congested and the live counters from any thread; the rest from the thread
// that made the Consumers. The routers' state is read only after UnsubscribeAndJoin.

#pragma once

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <vector>

#include "cdr_writer.h"
#include "latency.h"
#include "messages.h"
#include "plexus/bus/message_router.h"
#include "plexus/bus/topic.h"
#include "plexus/exec/thread_pool.h"

namespace sim {

struct ConsumersConfig {
  std::uint32_t devices = 1;
  std::uint32_t queue_limit = 4096;  // high water of every router, capacity of the stream's
  std::size_t cdr_batch = 512;       // records per SQLite transaction, at most
  // Called by the device router when a device goes in use (true) or idle (false); may be empty.
  std::function<void(std::uint32_t device, bool in_use)> on_device_change;
};

// The device-state aggregate. Owned by the device router's callbacks.
struct DeviceStates {
  std::vector<std::uint32_t> calls_up;  // per device
  std::atomic<std::uint32_t> in_use{0};
  std::uint32_t peak_in_use = 0;
  LatencyHistogram latency;
};

class Consumers {
 public:
  // `events` may be null (the stream is rendered but not written).
  Consumers(const plexus::Ref<plexus::Topic>& all, const plexus::Ref<plexus::ThreadPool>& pool,
            const ConsumersConfig& config, CdrWriter& cdr, std::FILE* events);

  // A router's queue is at or above its high water.
  bool Congested() const;
  // The deepest router queue now.
  std::size_t Depth() const;
  // Delivered so far (callbacks that ran), over the three routers.
  std::uint64_t Delivered() const;

  // Unsubscribes every router, waits for each final message, and hands the CDR router's last
  // batch to the writer.
  void UnsubscribeAndJoin();

  // After UnsubscribeAndJoin.
  const DeviceStates& Devices() const { return devices_; }
  std::uint64_t CdrRecords() const { return cdr_records_; }
  std::uint64_t StreamLines() const { return stream_lines_; }
  std::uint64_t StreamDropped() const;
  struct QueueFigures {
    const char* name;
    std::size_t max_depth;
    std::uint64_t dropped;
  };
  std::vector<QueueFigures> Queues() const;

 private:
  ConsumersConfig config_;
  CdrWriter& cdr_;
  std::FILE* events_;
  DeviceStates devices_;
  std::vector<CallEnded> cdr_batch_;  // the CDR router's, until joined
  std::int64_t cdr_batch_started_ns_ = 0;
  std::uint64_t cdr_records_ = 0;
  std::uint64_t stream_lines_ = 0;
  plexus::MessageRouter cdr_router_;
  plexus::MessageRouter device_router_;
  plexus::MessageRouter event_router_;
};

}  // namespace sim
