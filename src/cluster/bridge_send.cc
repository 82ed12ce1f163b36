// The bridge's send path: local messages of a bridged topic encoded and handed to libnats, one by
// one or coalesced per topic into batch containers, and the flusher that sends a batch that did
// not fill up.

#include <algorithm>
#include <chrono>
#include <string>
#include <string_view>

#include "bridge_core.h"

namespace plexus::cluster::cluster_internal {

void BridgeCore::SendLocal(TopicLink& link, const Message& message) {
  if (!(message.Node() == options_.node)) return;  // not made here: never sent again
  // The codec (user code) runs here, before any lock of the link's is taken.
  thread_local std::string frame;
  frame.clear();
  if (!EncodeMessage(options_.codecs, message, {}, seq_.fetch_add(1, std::memory_order_relaxed),
                     frame)) {
    if (options_.codecs.Find(&message.Type()) != nullptr) {
      link.encode_failures.fetch_add(1, std::memory_order_relaxed);
    }
    return;  // no codec: the type stays local
  }
  if (!coalesce_) {
    PublishFrames(link, frame, 1);
    return;
  }
  bool queue = false;
  {
    MutexLock lock(link.send_mu);
    // While the connection is down nothing is sent, so there is nothing to coalesce for; each
    // frame goes to libnats' reconnect buffer (or is refused) at once, and is counted so. A
    // frame too big for a batch goes by itself too; either way after what was batched.
    if (data_down_.load(std::memory_order_relaxed) ||
        kBatchHeaderBytes + kBatchFrameOverhead + frame.size() > batch_max_bytes_) {
      SendBatch(link);
      PublishFrames(link, frame, 1);
      return;
    }
    if (!link.batch.empty() &&
        (link.batch.size() + kBatchFrameOverhead + frame.size() > batch_max_bytes_ ||
         BatchFrameCount(link.batch) >= batch_max_frames_)) {
      SendBatch(link);  // full: this publisher sends it
    }
    if (link.batch.empty()) BeginBatch(options_.node, link.batch);
    AppendToBatch(frame, link.batch);
    if (!link.batch_queued) {
      link.batch_queued = true;
      queue = true;
    }
  }
  if (queue) {
    // Only the frame that finds the link off the flusher's queue gets here: one wake-up per
    // batch, not per frame.
    const auto when = std::chrono::steady_clock::now() + options_.batch_delay;
    MutexLock lock(flush_mu_);
    flush_queue_.push_back({&link, when});
    flush_cv_.NotifyOne();
  }
}

void BridgeCore::SendBatch(TopicLink& link) {
  const std::size_t frames = BatchFrameCount(link.batch);
  if (frames == 0) return;
  std::string_view bytes = link.batch;
  // A batch of one goes as its frame: a few bytes less, and what a peer without containers
  // reads too.
  if (frames == 1) bytes.remove_prefix(kBatchHeaderBytes + kBatchFrameOverhead);
  PublishFrames(link, bytes, frames);
  link.batch.clear();  // keeps its capacity for the next batch
}

void BridgeCore::PublishFrames(TopicLink& link, std::string_view bytes, std::size_t frames) {
  if (options_.reconnect_buffer_bytes == 0 && data_down_.load(std::memory_order_relaxed)) {
    link.send_failures.fetch_add(frames, std::memory_order_relaxed);
    return;
  }
  const natsStatus s = natsConnection_Publish(data_, link.subject.c_str(), bytes.data(),
                                              static_cast<int>(bytes.size()));
  if (s == NATS_OK) {
    link.messages_out.fetch_add(frames, std::memory_order_relaxed);
    link.batches_out.fetch_add(1, std::memory_order_relaxed);
  } else {
    link.send_failures.fetch_add(frames, std::memory_order_relaxed);
  }
}

void BridgeCore::SendAllBatches() {
  if (!coalesce_) return;
  std::vector<TopicLink*> links;
  {
    MutexLock lock(mu_);
    for (const auto& t : topics_) links.push_back(t.get());
  }
  // Links are never removed before the core is destroyed, so the pointers outlive the lock.
  for (TopicLink* link : links) {
    MutexLock lock(link->send_mu);
    SendBatch(*link);
  }
}

void BridgeCore::FlusherLoop() {
  for (;;) {
    TopicLink* link = nullptr;
    {
      MutexLock lock(flush_mu_);
      while (link == nullptr) {
        if (flusher_stop_) return;  // Stop sends what is left
        if (flush_queue_.empty()) {
          flush_cv_.Wait(flush_mu_);
          continue;
        }
        const Due due = flush_queue_.front();
        if (std::chrono::steady_clock::now() < due.when) {
          flush_cv_.WaitUntil(flush_mu_, due.when);
          continue;
        }
        flush_queue_.pop_front();
        link = due.link;
      }
    }
    MutexLock lock(link->send_mu);
    SendBatch(*link);  // may be empty: a publisher sent it when it filled up
    link->batch_queued = false;
  }
}

void BridgeCore::StopFlusher() {
  {
    MutexLock lock(flush_mu_);
    flusher_stop_ = true;
    flush_queue_.clear();
    flush_cv_.NotifyAll();
  }
  if (flusher_.joinable()) flusher_.join();
}

}  // namespace plexus::cluster::cluster_internal
