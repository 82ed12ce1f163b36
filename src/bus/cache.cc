// The cache and the caching topic.
//
// Cache: kShards shards, each a hash map from (type, id) to an immutable CacheEntry, guarded
// by a reader-writer lock (`rw`), plus a writer mutex (`writer`) that serializes the shard's
// writers. A write, under `writer`:
//   1. looks the current entry up (under `rw` shared: other writers are excluded already, so
//      the entry it finds stays current until step 4);
//   2. builds the next entry as a copy with one node's slot replaced or removed;
//   3. runs the aggregate function on it (user code: under `writer`, never under `rw`);
//   4. swaps the map's pointer, inserts or erases, under `rw` exclusive;
// and, after both locks, lets go of the entry it replaced (snapshots and payloads are user
// types, whose destructors must not run under a lock). Readers take `rw` shared only, so they
// wait for step 4 of a writer of their shard and nothing else.
//
// Lock order: writer -> rw. The aggregate function may read (rw shared, no writer); a write
// from it would take its own shard's writer mutex again, so a thread-local marks "inside the
// aggregate function of cache X" and such a write is refused as misuse.
//
// CachingTopic: a synchronous subscription on the original topic whose callback holds a
// CachingCore (the cache, the output topic, the original topic, counters) but not the
// CachingTopic: dropping the CachingTopic drops the subscription handle, which unsubscribes;
// the final message then lets the callback, and with it the core, go. No cycle survives an
// unsubscribe, whatever order the handles are dropped in.

#include "plexus/bus/cache.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <functional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "plexus/bus/caching_topic.h"
#include "plexus/bus/subscription_change.h"
#include "plexus/core/internal/run_catching.h"
#include "plexus/core/misuse.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"
#include "registry.h"

namespace plexus {
namespace bus_internal {
namespace {

// std::shared_mutex with the capability attributes (shared and exclusive sides).
class PLEXUS_CAPABILITY("mutex") SharedMutex {
 public:
  void lock() PLEXUS_ACQUIRE() { mu_.lock(); }
  void unlock() PLEXUS_RELEASE() { mu_.unlock(); }
  void lock_shared() PLEXUS_THREAD_ANNOTATION(acquire_shared_capability()) { mu_.lock_shared(); }
  void unlock_shared() PLEXUS_THREAD_ANNOTATION(release_shared_capability()) {
    mu_.unlock_shared();
  }

 private:
  std::shared_mutex mu_;
};

class PLEXUS_SCOPED_CAPABILITY ReaderLock {
 public:
  explicit ReaderLock(SharedMutex& mu) PLEXUS_THREAD_ANNOTATION(acquire_shared_capability(mu))
      : mu_(mu) {
    mu_.lock_shared();
  }
  ~ReaderLock() PLEXUS_RELEASE() { mu_.unlock_shared(); }
  ReaderLock(const ReaderLock&) = delete;
  ReaderLock& operator=(const ReaderLock&) = delete;

 private:
  SharedMutex& mu_;
};

class PLEXUS_SCOPED_CAPABILITY WriterLock {
 public:
  explicit WriterLock(SharedMutex& mu) PLEXUS_ACQUIRE(mu) : mu_(mu) { mu_.lock(); }
  ~WriterLock() PLEXUS_RELEASE() { mu_.unlock(); }
  WriterLock(const WriterLock&) = delete;
  WriterLock& operator=(const WriterLock&) = delete;

 private:
  SharedMutex& mu_;
};

// Keys carry their hash: it is computed once per operation (it picks the shard, then the
// bucket), and never again when the map grows.
struct KeyView {
  const MessageType* type;
  std::string_view id;
  std::size_t hash;
};
struct Key {
  const MessageType* type;
  std::string id;
  std::size_t hash;
};

std::size_t HashKey(const MessageType* type, std::string_view id) noexcept {
  // The type's dense id rather than its address: addresses share their low bits.
  return std::hash<std::string_view>{}(id) ^ (std::size_t{type->Id()} * 0x9E3779B97F4A7C15ull);
}

struct KeyHash {
  using is_transparent = void;
  std::size_t operator()(const Key& k) const noexcept { return k.hash; }
  std::size_t operator()(const KeyView& k) const noexcept { return k.hash; }
};
struct KeyEqual {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const noexcept {
    return a.hash == b.hash && a.type == b.type && std::string_view(a.id) == std::string_view(b.id);
  }
};

// The cache whose aggregate function this thread is running, if any.
thread_local const Cache* tl_aggregating = nullptr;

}  // namespace

// One shard. Aligned to the cache line so that readers of neighbouring shards do not share
// the line their lock words live on.
struct alignas(64) CacheShard {
  sync_internal::AnnotatedMutex writer PLEXUS_ACQUIRED_BEFORE(rw);
  // A line of its own: readers write the lock word, which a writer taking `writer` must not
  // take from them.
  alignas(64) SharedMutex rw;
  // The local snapshot is kept beside its entry: the common read (Get) then touches the map
  // node and the message, not the entry in between.
  struct Slot {
    Ref<const CacheEntry> entry;
    Ref<Message> local;
  };
  std::unordered_map<Key, Slot, KeyHash, KeyEqual> map PLEXUS_GUARDED_BY(rw);
};

}  // namespace bus_internal

using bus_internal::CacheShard;
using bus_internal::KeyView;
using bus_internal::ReaderLock;
using bus_internal::WriterLock;

// --- CacheEntry ------------------------------------------------------------------------------

Ref<Message> CacheEntry::ForNode(const NodeId& node) const {
  if (node.IsNone()) return aggregate_;
  if (node == NodeId::Local()) return local_;
  for (const NodeSnapshot& s : foreign_) {
    if (s.node == node) return s.snapshot;
  }
  return nullptr;
}

std::vector<Ref<Message>> CacheEntry::All() const {
  std::vector<Ref<Message>> out;
  out.reserve(foreign_.size() + 1);
  if (local_ != nullptr) out.push_back(local_);
  for (const NodeSnapshot& s : foreign_) out.push_back(s.snapshot);
  return out;
}

// --- Cache -----------------------------------------------------------------------------------

Ref<Cache> Cache::Create(IdFunction id, SourceLocation where) {
  return Create(std::move(id), nullptr, nullptr, where);
}

Ref<Cache> Cache::Create(IdFunction id, AggregateFunction aggregate,
                         AggregatePublishFunction publish_aggregate, SourceLocation where) {
  if (!id) {
    ReportMisuse("Cache::Create: empty id function", where);
    return nullptr;
  }
  return Ref<Cache>::Adopt(
      new Cache(std::move(id), std::move(aggregate), std::move(publish_aggregate)), where);
}

Cache::Cache(IdFunction id, AggregateFunction aggregate, AggregatePublishFunction publish_aggregate)
    : id_(std::move(id)),
      aggregate_(std::move(aggregate)),
      publish_aggregate_(std::move(publish_aggregate)),
      shards_(new CacheShard[kShards]) {
  bus_internal::CacheRegistry::Get().Add(this);  // for the listings (bus_stats.h)
}

Cache::~Cache() {
  bus_internal::CacheRegistry::Get().Remove(this);
}

CacheShard& Cache::ShardFor(const MessageType* type, std::string_view id, std::size_t& hash) const {
  hash = bus_internal::HashKey(type, id);
  // The high bits of a remix pick the shard; the map's buckets use the hash's low bits.
  return shards_[(hash * 0x9E3779B97F4A7C15ull) >> (64 - 6)];
}
static_assert(Cache::kShards == 64, "ShardFor takes 6 bits");

Ref<Message> Cache::Get(const MessageType* type, std::string_view id, SourceLocation where) const {
  return GetByNode(type, id, NodeId::Local(), where);
}

Ref<Message> Cache::GetByNode(const MessageType* type, std::string_view id, const NodeId& node,
                              SourceLocation where) const {
  if (type == nullptr) {
    ReportMisuse("Cache::Get: null message type", where);
    return nullptr;
  }
  std::size_t hash;
  CacheShard& shard = ShardFor(type, id, hash);
  ReaderLock lock(shard.rw);
  auto it = shard.map.find(KeyView{type, id, hash});
  if (it == shard.map.end()) return nullptr;
  // One reference-count increment under the lock; the search of the foreign slots is short.
  if (node == NodeId::Local()) return it->second.local;
  return it->second.entry->ForNode(node);
}

Ref<const CacheEntry> Cache::GetEntry(const MessageType* type, std::string_view id,
                                      SourceLocation where) const {
  if (type == nullptr) {
    ReportMisuse("Cache::GetEntry: null message type", where);
    return nullptr;
  }
  std::size_t hash;
  CacheShard& shard = ShardFor(type, id, hash);
  ReaderLock lock(shard.rw);
  auto it = shard.map.find(KeyView{type, id, hash});
  return it == shard.map.end() ? nullptr : it->second.entry;
}

std::vector<Ref<Message>> Cache::GetAll(const MessageType* type, std::string_view id,
                                        SourceLocation where) const {
  if (type == nullptr) {
    ReportMisuse("Cache::GetAll: null message type", where);
    return {};
  }
  // The entry is immutable: copying it out leaves the lock held for one increment only.
  Ref<const CacheEntry> entry = GetEntry(type, id, where);
  return entry != nullptr ? entry->All() : std::vector<Ref<Message>>{};
}

std::vector<Ref<const CacheEntry>> Cache::DumpEntries(const MessageType* type) const {
  std::vector<Ref<const CacheEntry>> out;
  for (std::size_t i = 0; i < kShards; ++i) {
    CacheShard& shard = shards_[i];
    ReaderLock lock(shard.rw);
    for (const auto& [key, slot] : shard.map) {
      if (type == nullptr || key.type == type) out.push_back(slot.entry);
    }
  }
  return out;
}

std::vector<Ref<Message>> Cache::Dump(const MessageType* type) const {
  return DumpByNode(type, NodeId::Local());
}

std::vector<Ref<Message>> Cache::DumpByNode(const MessageType* type, const NodeId& node) const {
  std::vector<Ref<Message>> out;
  for (const Ref<const CacheEntry>& entry : DumpEntries(type)) {
    if (Ref<Message> s = entry->ForNode(node)) out.push_back(std::move(s));
  }
  return out;
}

std::vector<Ref<Message>> Cache::DumpAll(const MessageType* type) const {
  std::vector<Ref<Message>> out;
  for (const Ref<const CacheEntry>& entry : DumpEntries(type)) {
    if (entry->local_ != nullptr) out.push_back(entry->local_);
    for (const CacheEntry::NodeSnapshot& s : entry->foreign_) out.push_back(s.snapshot);
  }
  return out;
}

CacheStats Cache::Stats() const {
  CacheStats s;
  s.entries = entries_.load(std::memory_order_relaxed);
  s.puts = puts_.load(std::memory_order_relaxed);
  s.clears = clears_.load(std::memory_order_relaxed);
  s.aggregate_failures = aggregate_failures_.load(std::memory_order_relaxed);
  return s;
}

CacheChange Cache::Put(const Ref<Message>& snapshot, std::string id, SourceLocation where) {
  if (snapshot == nullptr) {
    ReportMisuse("Cache::Put: null snapshot", where);
    return {};
  }
  if (id.empty()) {
    ReportMisuse("Cache::Put: empty id", where);
    return {};
  }
  if (snapshot->Node().IsNone()) return {};
  return Write(&snapshot->Type(), std::move(id), snapshot->Node(), snapshot, where);
}

CacheChange Cache::Clear(const MessageType* type, std::string_view id, const NodeId& node,
                         SourceLocation where) {
  if (type == nullptr) {
    ReportMisuse("Cache::Clear: null message type", where);
    return {};
  }
  if (id.empty()) {
    ReportMisuse("Cache::Clear: empty id", where);
    return {};
  }
  if (node.IsNone()) return {};
  return Write(type, std::string(id), node, nullptr, where);
}

CacheChange Cache::Write(const MessageType* type, std::string id, const NodeId& node,
                         const Ref<Message>& snapshot, SourceLocation where) {
  if (bus_internal::tl_aggregating == this) {
    ReportMisuse("Cache: a write from the cache's own aggregate function", where);
    return {};
  }
  CacheChange change;
  // Declared before the locks: what the write replaces is let go after both are released.
  Ref<const CacheEntry> old_entry;
  Ref<CacheEntry> next;
  std::size_t hash;
  CacheShard& shard = ShardFor(type, id, hash);
  MutexLock writer(shard.writer);
  {
    ReaderLock lock(shard.rw);
    auto it = shard.map.find(KeyView{type, id, hash});
    if (it != shard.map.end()) old_entry = it->second.entry;
  }
  const bool local = node == NodeId::Local();
  if (snapshot == nullptr && (old_entry == nullptr || old_entry->ForNode(node) == nullptr)) {
    return change;  // nothing to clear
  }

  next = Ref<CacheEntry>::Adopt(new CacheEntry(type, id));
  if (old_entry != nullptr) {
    next->local_ = old_entry->local_;
    next->foreign_ = old_entry->foreign_;
    next->aggregate_ = old_entry->aggregate_;
  }
  if (local) {
    change.old_snapshot = std::exchange(next->local_, snapshot);
  } else {
    auto& foreign = next->foreign_;
    auto slot = std::find_if(foreign.begin(), foreign.end(),
                             [&](const CacheEntry::NodeSnapshot& s) { return s.node == node; });
    if (snapshot != nullptr) {
      if (slot != foreign.end()) {
        change.old_snapshot = std::exchange(slot->snapshot, snapshot);
      } else {
        foreign.push_back({node, snapshot});
      }
    } else if (slot != foreign.end()) {
      change.old_snapshot = std::move(slot->snapshot);
      // Unordered removal, as Asterisk's: foreign slots have no order.
      if (slot != foreign.end() - 1) *slot = std::move(foreign.back());
      foreign.pop_back();
    }
  }
  change.type = type;
  change.id = id;
  change.new_snapshot = snapshot;
  change.old_aggregate = next->aggregate_;
  if (next->Empty()) {
    next->aggregate_ = nullptr;
  } else if (aggregate_) {
    Ref<Message> aggregate;
    const Cache* outer = std::exchange(bus_internal::tl_aggregating, this);
    const bool ok = core_internal::RunCatching(
        [&] { aggregate = aggregate_(*next, snapshot); },
        [&] { return "the aggregate function of a cache (entry " + type->Name() + "/" + id + ")"; },
        where);
    bus_internal::tl_aggregating = outer;
    if (ok) {
      next->aggregate_ = std::move(aggregate);
    } else {
      aggregate_failures_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  change.new_aggregate = next->aggregate_;

  {
    WriterLock lock(shard.rw);
    if (next->Empty()) {
      // (Heterogeneous erase is C++23: find, then erase the node.)
      auto it = shard.map.find(KeyView{type, id, hash});
      if (it != shard.map.end()) {
        shard.map.erase(it);
        entries_.fetch_sub(1, std::memory_order_relaxed);
      }
    } else if (old_entry != nullptr) {
      // Found again rather than kept: the lookup is cheap next to the copy above, and the
      // map is only changed by writers of this shard, which `writer` excludes.
      CacheShard::Slot& slot = shard.map.find(KeyView{type, id, hash})->second;
      slot.entry = next;
      // The slot's old local reference goes under the lock, but `change` or `old_entry`
      // still holds that message: no destructor runs here.
      slot.local = next->local_;
    } else {
      shard.map.emplace(bus_internal::Key{type, std::move(id), hash},
                        CacheShard::Slot{next, next->local_});
      entries_.fetch_add(1, std::memory_order_relaxed);
    }
  }
  (snapshot != nullptr ? puts_ : clears_).fetch_add(1, std::memory_order_relaxed);
  return change;
}

// --- Cache update and clear types ------------------------------------------------------------

const TypedMessageType<CacheUpdate>& CacheUpdateType() {
  static const auto type = TypedMessageType<CacheUpdate>::Create("CacheUpdate");
  return type;
}

const TypedMessageType<CacheClear>& CacheClearType() {
  static const auto type = TypedMessageType<CacheClear>::Create("CacheClear");
  return type;
}

Ref<Message> MakeCacheClear(const Ref<Message>& snapshot, SourceLocation where) {
  if (snapshot == nullptr) {
    ReportMisuse("MakeCacheClear: null snapshot", where);
    return nullptr;
  }
  return CacheClearType().Make(CacheClear{snapshot}, where);
}

// --- CachingTopic ----------------------------------------------------------------------------

namespace bus_internal {

class CachingCore final : public RefCounted {
 public:
  CachingCore(Ref<Topic> original_topic, Ref<Cache> the_cache, Ref<Topic> output_topic,
              SourceLocation where)
      : original(std::move(original_topic)),
        cache(std::move(the_cache)),
        output(std::move(output_topic)),
        created(where) {}

  // The caching subscription's callback (on the publisher's thread).
  void Handle(const Message& m);
  // Publishes what `change` did (nothing if it did nothing).
  void PublishChange(const CacheChange& change);
  // The id of `m`, or false if the id function threw (logged and counted).
  bool IdOf(const Message& m, std::string& id);

  const Ref<Topic> original;
  const Ref<Cache> cache;
  const Ref<Topic> output;
  const SourceLocation created;

  std::atomic<std::uint64_t> cached{0};
  std::atomic<std::uint64_t> cleared{0};
  std::atomic<std::uint64_t> not_cacheable{0};
  std::atomic<std::uint64_t> id_failures{0};
  std::atomic<std::uint64_t> updates_published{0};
  std::atomic<std::uint64_t> aggregate_publish_failures{0};
  std::atomic<bool> assume_receivers{false};

 private:
  ~CachingCore() override = default;
  void PublishUpdate(const MessageType* type, const Ref<Message>& old_snapshot,
                     const Ref<Message>& new_snapshot);
};

namespace {

std::atomic<std::uint64_t> next_caching_topic{0};

// Whether anything would receive a message published on `topic`. The direct subscriber count
// is one relaxed load; only a topic without subscribers pays for asking about forwards.
bool HasReceivers(const Topic& topic) {
  return topic.SubscriberCount() > 0 || topic.Stats().forwards_out > 0;
}

}  // namespace

bool CachingCore::IdOf(const Message& m, std::string& id) {
  const bool ok = core_internal::RunCatching(
      [&] { id = cache->IdOf(m); },
      [&] { return "the id function of the cache on topic '" + original->Name() + "'"; }, created);
  if (!ok) id_failures.fetch_add(1, std::memory_order_relaxed);
  return ok;
}

void CachingCore::Handle(const Message& m) {
  if (const CacheClear* clear = CacheClearType().Get(m)) {
    const Ref<Message>& snapshot = clear->snapshot;
    std::string id;
    if (snapshot == nullptr || !IdOf(*snapshot, id)) return;
    CacheChange change;
    if (!id.empty()) change = cache->Clear(&snapshot->Type(), id, snapshot->Node(), created);
    if (!change.SnapshotChanged()) {
      not_cacheable.fetch_add(1, std::memory_order_relaxed);
      return;
    }
    cleared.fetch_add(1, std::memory_order_relaxed);
    PublishChange(change);
    return;
  }
  if (const SubscriptionChange* notice = SubscriptionChangeType().Get(m)) {
    if (notice->kind == SubscriptionChangeKind::kUnsubscribe) {
      // Cached notices of a subscription that is gone would otherwise stay forever.
      if (!notice->subscription_id.empty()) {
        CacheChange change = cache->Clear(SubscriptionChangeType().get(), notice->subscription_id,
                                          m.Node(), created);
        if (change.SnapshotChanged()) {
          cleared.fetch_add(1, std::memory_order_relaxed);
          PublishChange(change);
        }
      }
      return;
    }
  }
  if (m.Node().IsNone()) {
    not_cacheable.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  std::string id;
  if (!IdOf(m, id)) return;
  if (id.empty()) {
    not_cacheable.fetch_add(1, std::memory_order_relaxed);
    return;
  }
  // The message is alive for the callback; the cache takes its own reference.
  CacheChange change = cache->Put(Ref<Message>(const_cast<Message*>(&m)), std::move(id), created);
  cached.fetch_add(1, std::memory_order_relaxed);
  PublishChange(change);
}

void CachingCore::PublishUpdate(const MessageType* type, const Ref<Message>& old_snapshot,
                                const Ref<Message>& new_snapshot) {
  if (!assume_receivers.load(std::memory_order_relaxed) && !HasReceivers(*output)) return;
  Ref<Message> update = CacheUpdateType().Make(CacheUpdate{type, old_snapshot, new_snapshot});
  if (update == nullptr) return;  // the type is declined
  output->Publish(update);
  updates_published.fetch_add(1, std::memory_order_relaxed);
}

void CachingCore::PublishChange(const CacheChange& change) {
  if (change.SnapshotChanged()) {
    PublishUpdate(change.type, change.old_snapshot, change.new_snapshot);
  }
  if (change.AggregateChanged()) {
    const auto& publish = cache->PublishAggregateFunction();
    if (change.new_aggregate != nullptr && publish) {
      const bool ok = core_internal::RunCatching(
          [&] { publish(original, change.new_aggregate); },
          [&] {
            return "the aggregate-publish function of the cache on '" + original->Name() + "'";
          },
          created);
      if (!ok) aggregate_publish_failures.fetch_add(1, std::memory_order_relaxed);
    }
    PublishUpdate(change.type, change.old_aggregate, change.new_aggregate);
  }
}

}  // namespace bus_internal

Ref<CachingTopic> CachingTopic::Create(const Ref<Topic>& original, const Ref<Cache>& cache,
                                       SourceLocation where) {
  if (original == nullptr) {
    ReportMisuse("CachingTopic::Create: null original topic", where);
    return nullptr;
  }
  if (cache == nullptr) {
    ReportMisuse("CachingTopic::Create: null cache", where);
    return nullptr;
  }
  const std::uint64_t n = bus_internal::next_caching_topic.fetch_add(1, std::memory_order_relaxed);
  Ref<Topic> output =
      Topic::Create("cache:" + std::to_string(n) + "/" + original->Name(), {}, where);
  auto core = Ref<bus_internal::CachingCore>::Adopt(
      new bus_internal::CachingCore(original, cache, std::move(output), where), where);
  SubscriptionOptions options;
  options.mode = DeliveryMode::kSynchronous;
  // The cache sees everything the topic carries, the other subscriptions' notices included (an
  // id function may cache them, and an unsubscribe notice clears the cached subscribe notice),
  // as Asterisk's caching topic does: one delivery per subscribe, never a storm.
  options.subscription_changes = true;
  Subscription subscription = Subscription::Create(
      original,
      [core](const Message& m, bool is_final) {
        if (!is_final) core->Handle(m);
      },
      std::move(options), where);
  if (!subscription) return nullptr;
  return Ref<CachingTopic>::Adopt(new CachingTopic(std::move(core), std::move(subscription)),
                                  where);
}

CachingTopic::CachingTopic(Ref<bus_internal::CachingCore> core, Subscription subscription)
    : core_(std::move(core)), subscription_(std::move(subscription)) {
  bus_internal::CachingTopicRegistry::Get().Add(this);  // for the listings (bus_stats.h)
}

// The subscription handle's destructor unsubscribes; its final message lets the core go.
CachingTopic::~CachingTopic() {
  bus_internal::CachingTopicRegistry::Get().Remove(this);
}

const Ref<Topic>& CachingTopic::Output() const noexcept {
  return core_->output;
}

const Ref<Cache>& CachingTopic::GetCache() const noexcept {
  return core_->cache;
}

Ref<Topic> CachingTopic::Original() const {
  return core_->original;
}

bool CachingTopic::Unsubscribe(SourceLocation where) {
  return subscription_.Unsubscribe(where);
}

bool CachingTopic::UnsubscribeAndJoin(SourceLocation where) {
  return subscription_.UnsubscribeAndJoin(where);
}

void CachingTopic::AssumeReceivers() noexcept {
  core_->assume_receivers.store(true, std::memory_order_relaxed);
}

bool CachingTopic::IsSubscribed() const noexcept {
  return subscription_.IsSubscribed();
}

std::size_t CachingTopic::RemoveNode(const NodeId& node, SourceLocation where) {
  if (!subscription_.IsSubscribed()) {
    ReportMisuse("CachingTopic::RemoveNode: the caching topic was unsubscribed", where);
    return 0;
  }
  if (node.IsNone()) return 0;
  std::size_t removed = 0;
  for (const Ref<const CacheEntry>& entry : core_->cache->DumpEntries(nullptr)) {
    if (entry->ForNode(node) == nullptr) continue;
    CacheChange change = core_->cache->Clear(&entry->Type(), entry->Id(), node, where);
    if (!change.SnapshotChanged()) continue;  // a concurrent clear got there first
    ++removed;
    core_->cleared.fetch_add(1, std::memory_order_relaxed);
    core_->PublishChange(change);
  }
  return removed;
}

CachingTopicStats CachingTopic::Stats() const {
  CachingTopicStats s;
  s.cached = core_->cached.load(std::memory_order_relaxed);
  s.cleared = core_->cleared.load(std::memory_order_relaxed);
  s.not_cacheable = core_->not_cacheable.load(std::memory_order_relaxed);
  s.id_failures = core_->id_failures.load(std::memory_order_relaxed);
  s.updates_published = core_->updates_published.load(std::memory_order_relaxed);
  s.aggregate_publish_failures = core_->aggregate_publish_failures.load(std::memory_order_relaxed);
  return s;
}

}  // namespace plexus
