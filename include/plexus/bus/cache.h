// -----------------------------------------------------------------------------
// plexus/bus/cache.h
// -----------------------------------------------------------------------------
//
// Cache keeps the latest snapshot of every object that a caching topic has seen (Asterisk's
// stasis_cache). A *snapshot* is a message describing the current state of one object; the
// cache's id function names the object ("" means: not cacheable). Entries are keyed by
// (message type, id) and hold, side by side:
//
//   * the local snapshot (the message's NodeId is the cache's local node: NodeId::Local()
//     unless Create was given another),
//   * one snapshot per foreign node (messages that came over a bridge),
//   * optionally an aggregate (NodeId::None()), computed by the aggregate function from the
//     entry's snapshots each time one of them changes.
//
// A cache is filled by caching topics (caching_topic.h): the cache alone publishes nothing.
// Put and Clear are public for code that keeps a cache without a topic; they return what
// changed (CacheChange) and let the caller publish it.
//
//   auto cache = plexus::Cache::Create([](const plexus::Message& m) -> std::string {
//     const ChannelSnapshot* s = kChannelSnapshot.Get(m);
//     return s != nullptr ? s->uniqueid : std::string();
//   });
//   auto caching = plexus::CachingTopic::Create(channel_topic, cache);
//   ...
//   plexus::Ref<plexus::Message> latest = cache->Get(kChannelSnapshot, "1700000000.12");
//
// The id function comes in two forms (CacheIdFunction takes either): one returning a
// std::string (Cache::IdFunction), which builds the id for every message, and one returning a
// std::string_view (Cache::IdViewFunction), as Asterisk's returns a const char* into the
// snapshot: a view of an id the message holds (or of storage that outlives the message). The
// view must stay valid for as long as the message lives; the cache copies it when it creates an
// entry, and a caching topic neither builds nor copies an id for an update of an existing one.
//
//   auto cache = plexus::Cache::Create([](const plexus::Message& m) -> std::string_view {
//     const ChannelSnapshot* s = kChannelSnapshot.Get(m);
//     return s != nullptr ? std::string_view(s->uniqueid) : std::string_view();
//   });
//
// Queries, as Asterisk's: Get (the local snapshot), GetByNode (one node's; NodeId::None() asks
// for the aggregate), GetAll (local and foreign), Dump (local snapshots), DumpByNode (one
// node's, or the aggregates), DumpAll (local and foreign). Each returns new references: what a
// reader got stays valid for as long as it holds it, whatever the cache does afterwards.
//
// Thread safety: thread-safe. Every member function may be called from any thread at once.
//
// Reader guarantee: readers take no lock and write no shared memory but the reference count of
// what they return (and, for a reader of whole entries, a flag in each entry it hands out). The
// entries are spread over kShards shards; each shard publishes an open-addressing table of
// pointers to entries through one atomic pointer. A Get hashes the key once (the hash picks the
// shard and the slot), enters an epoch (a store to the reader's own slot), probes the table,
// loads the entry's local snapshot (one atomic pointer), takes one reference on it, and leaves.
// A write either builds the next entry aside and stores its pointer into the slot (one atomic
// store), or, when it changes only the local snapshot of an entry no reader holds whole,
// exchanges that snapshot's pointer inside the entry (one atomic exchange). What a write
// replaced (entries, snapshots, tables outgrown) is let go or reused only after every reader
// that could have loaded it has left its epoch (epoch-based reclamation; a reader's section is a
// few loads long and runs no user code). So a reader never waits: not for another reader, not
// for a writer of any entry, not for user code. A Get returns the snapshot stored before a write
// or the one the write stored, never a mix of the two nor one already let go; what it gets stays
// valid for as long as it holds it.
//
// Entries handed out whole (GetEntry, DumpEntries, the aggregate function's view) never change
// afterwards: GetEntry and DumpEntries mark each entry they hand out as held, and a write to a
// held entry builds a new one instead of updating it in place (a reader that meets a write in
// place under way hands out a copy of the entry instead); a cache with an aggregate function
// never updates in place. GetAll and the snapshot dumps hold no entry. A Dump walks the shards
// one after the other: it is a picture of each shard at some instant during the dump, not of the
// whole cache at one instant.
//
// Memory: the cache's reference to a replaced snapshot is let go in batches, a few writes to its
// shard after the write that replaced it (all of them when the cache is destroyed), or, for a
// local snapshot replaced in place while no reader was inside the cache, passed to the change
// the write returns (the snapshot then goes with the change's last holder); replaced entries
// are reused by the writing thread, and an update of a local snapshot in place needs no entry at
// all, so an update of an existing entry allocates nothing.
//
// Writers: writes to one shard are serialized (a per-shard writer mutex, held while the new
// entry is built and the aggregate function runs); writes to different shards run in parallel.
//
// User code: the id function runs under no cache lock (CachingTopic calls it). The aggregate
// function runs under its shard's writer mutex (so the aggregate it sees is consistent with
// the entry it is computed from, as Asterisk's runs under the cache's write lock): it may read
// this cache (readers do not take the writer mutex) but must not write to it: a Put or Clear
// from inside it is misuse (reported, refused), not a deadlock. It must not wait for a thread
// that writes to this cache. If it throws, the error is logged and the entry keeps its
// previous aggregate.
//
// Node removal (RemoveNode) is one step for the writers: a snapshot of the node whose Put
// returned before RemoveNode returns is gone when it returns (a Put of that node that runs
// while the removal is under way stores nothing and changes nothing); a Put that starts after
// RemoveNode returned is kept.
//
// Misuse (reported through plexus::ReportMisuse with the caller's location): an empty id
// function; a null type; an empty id or a null snapshot passed to Put/Clear; writing to the
// cache (Put, Clear, RemoveNode) from its aggregate function.

#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "plexus/bus/message.h"
#include "plexus/bus/message_type.h"
#include "plexus/bus/node_id.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"

namespace plexus {

class Topic;

namespace bus_internal {
struct CacheShard;
struct CacheRemovals;
class CachingCore;
}  // namespace bus_internal

// One object's cached state, as the aggregate function sees it (and as a reader can take it
// with GetEntry or DumpEntries). Immutable once handed out: a write to an entry a reader holds
// replaces the whole entry (see "Reader guarantee" above).
//
// Thread safety: what a reader was handed is immutable, so thread-safe.
//
// Layout: an entry starts a cache line (64 bytes), and what a probe and a read or a write in
// place touch (the marks, the type, the local snapshot's pointer, the id with its characters
// inline when it is shorter than 16 bytes) lies in that first line, so that reaching an entry
// of 10 000 written in random order costs one miss, not two.
class alignas(64) CacheEntry final : public RefCounted {
 public:
  struct NodeSnapshot {
    NodeId node;
    Ref<Message> snapshot;
  };

  const MessageType& Type() const noexcept { return *type_; }
  const std::string& Id() const noexcept { return id_; }
  // The local node's snapshot, or null.
  Ref<Message> Local() const noexcept { return Ref<Message>(LocalPointer()); }
  // The foreign nodes' snapshots, one per node, in no particular order.
  const std::vector<NodeSnapshot>& Foreign() const noexcept { return foreign_; }
  // The aggregate, or null (absent, or not computed yet: inside the aggregate function it is
  // the previous aggregate).
  const Ref<Message>& Aggregate() const noexcept { return aggregate_; }
  // The snapshot of `node` (the local one for the local node; the aggregate for
  // NodeId::None()), or null.
  Ref<Message> ForNode(const NodeId& node) const;
  // Local first, then foreign.
  std::vector<Ref<Message>> All() const;
  bool Empty() const noexcept { return LocalPointer() == nullptr && foreign_.empty(); }

 private:
  friend class Cache;
  friend struct bus_internal::CacheShard;
  CacheEntry() = default;
  ~CacheEntry() override { Clear(); }
  // Lets go of the snapshots (for reuse).
  void Clear();
  Message* LocalPointer() const noexcept { return local_.load(std::memory_order_seq_cst); }
  // Sets the local snapshot of an entry no reader can see yet, taking a reference on it.
  void SetLocal(Message* snapshot);
  // A new entry holding what this one holds, held by the caller (see pinned_).
  CacheEntry* Copy() const;

  // The first line (see "Layout" above): the marks fill the reference count's tail padding,
  // then the type, the local snapshot and the id.
  //
  // A reader handed this entry out whole, so it must never change again (set by the reader);
  // and a write in place is under way (set by the writer). Each side stores its own flag and
  // then loads the other's (both sequentially consistent): either the writer sees the entry
  // held and builds a new one, or the reader sees the write and hands out a copy.
  mutable std::atomic<bool> pinned_{false};
  std::atomic<bool> writing_{false};
  // Set only while the entry is being built by its writer, before any reader can see it (an
  // entry is reused only once no reader can reach it).
  const MessageType* type_ = nullptr;
  // The one field a write may change while readers see the entry (an update of the local
  // snapshot in place, under the shard's writer mutex). Owns a reference.
  std::atomic<Message*> local_{nullptr};
  std::string id_;
  // Beyond the first line: what a probe never needs (the slot's tag and the type and id decide
  // a match) and the other nodes' snapshots.
  std::size_t hash_ = 0;
  std::vector<NodeSnapshot> foreign_;
  Ref<Message> aggregate_;
};

// What one write did to one entry: the snapshot it replaced or removed (old), the one it
// stored (new), and the aggregate before and after. A write that changed nothing (a clear of
// a snapshot that is not cached) has all four null.
struct CacheChange {
  const MessageType* type = nullptr;
  std::string id;
  Ref<Message> old_snapshot;
  Ref<Message> new_snapshot;
  Ref<Message> old_aggregate;
  Ref<Message> new_aggregate;

  bool SnapshotChanged() const noexcept {
    return old_snapshot != nullptr || new_snapshot != nullptr;
  }
  bool AggregateChanged() const noexcept { return old_aggregate.get() != new_aggregate.get(); }
};

// A snapshot of a cache's counters.
struct CacheStats {
  std::size_t entries = 0;               // (type, id) keys with at least one snapshot
  std::uint64_t puts = 0;                // snapshots stored
  std::uint64_t clears = 0;              // snapshots removed
  std::uint64_t aggregate_failures = 0;  // aggregate functions that threw
  // Writes of a local snapshot that built a new entry instead of writing in place, because a
  // reader held the entry whole (GetEntry, DumpEntries): each costs a copy of the entry.
  std::uint64_t held_entry_copies = 0;
};

// What one cache holds of one snapshot type.
struct CacheTypeCount {
  std::string type;            // the snapshot type's name
  std::size_t entries = 0;     // ids with at least one snapshot
  std::size_t local = 0;       // local snapshots
  std::size_t foreign = 0;     // foreign nodes' snapshots
  std::size_t aggregates = 0;  // aggregates
};

// How many snapshots of one node a cache holds.
struct CacheNodeCount {
  NodeId node;
  bool local = false;  // this process's node
  std::size_t snapshots = 0;
};

// What a cache holds, counted (Cache::Census).
struct CacheCensus {
  std::vector<CacheTypeCount> types;  // by type name
  std::vector<CacheNodeCount> nodes;  // the local node first, then by node id
  std::size_t aggregates = 0;
};

// A cache's id function, in either form (see "The id function comes in two forms" above): the
// object's id, or "" if the message is not cacheable. It may throw (the caching topic counts
// and logs it, and leaves the cache unchanged). Built from any callable taking a const
// Message&: one returning exactly std::string_view is the view form, any other result
// convertible to std::string the string form. Empty when built from nothing (nullptr, an empty
// std::function, a null function pointer).
//
// Thread safety: immutable once built; the cache calls it from any thread at once, so the
// callable must allow that (as any id function must).
class CacheIdFunction {
 public:
  using StringFunction = std::function<std::string(const Message& message)>;
  using ViewFunction = std::function<std::string_view(const Message& message)>;

  CacheIdFunction() noexcept = default;
  CacheIdFunction(std::nullptr_t) noexcept {}                     // NOLINT: as std::function's
  CacheIdFunction(StringFunction id) : string_(std::move(id)) {}  // NOLINT: an id function
  CacheIdFunction(ViewFunction id) : view_(std::move(id)) {}      // NOLINT: an id function
  template <class F>
  requires(std::is_invocable_v<const F&, const Message&> &&
           !std::is_same_v<std::decay_t<F>, CacheIdFunction> &&
           !std::is_same_v<std::decay_t<F>, StringFunction> &&
           !std::is_same_v<std::decay_t<F>, ViewFunction>)
      CacheIdFunction(F id) {  // NOLINT: an id function
    if constexpr (std::is_same_v<std::invoke_result_t<const F&, const Message&>,
                                 std::string_view>) {
      view_ = std::move(id);
    } else {
      string_ = std::move(id);
    }
  }

  explicit operator bool() const noexcept { return view_ || string_; }
  // Whether this is the view form.
  bool IsView() const noexcept { return static_cast<bool>(view_); }
  // The view form's id of `message` (IsView() only); throws what the function throws.
  std::string_view View(const Message& message) const { return view_(message); }
  // The id of `message` as a new string (either form); throws what the function throws.
  std::string String(const Message& message) const {
    return view_ ? std::string(view_(message)) : string_(message);
  }

 private:
  ViewFunction view_;
  StringFunction string_;
};

class Cache final : public RefCounted {
 public:
  // The id function's string form: the object's id, or "" (see CacheIdFunction).
  using IdFunction = CacheIdFunction::StringFunction;
  // The id function's view form: a view of the id, valid while the message lives, or "".
  using IdViewFunction = CacheIdFunction::ViewFunction;
  // The entry's new aggregate, given the entry as it will be stored (its Aggregate() is the
  // previous aggregate) and the snapshot just put (null for a removal). Return the previous
  // aggregate (the same object) for "unchanged": nothing is published then. Return null for
  // "no aggregate". Not called when the entry's last snapshot goes: the aggregate disappears.
  using AggregateFunction =
      std::function<Ref<Message>(const CacheEntry& entry, const Ref<Message>& new_snapshot)>;
  // Called by a caching topic, under no lock, with its original topic and a new (non-null)
  // aggregate: typically publishes the aggregate there. Aggregates carry NodeId::None(), so
  // they come back through the caching topic as non-cacheable and go no further.
  using AggregatePublishFunction =
      std::function<void(const Ref<Topic>& original, const Ref<Message>& aggregate)>;

  static constexpr std::size_t kShards = 64;

  // A cache naming objects with `id`. An empty `id` is misuse (reported, null returned).
  static Ref<Cache> Create(CacheIdFunction id, SourceLocation where = SourceLocation::current());
  // As Create, with aggregation across nodes (either function may be empty).
  static Ref<Cache> Create(CacheIdFunction id, AggregateFunction aggregate,
                           AggregatePublishFunction publish_aggregate,
                           SourceLocation where = SourceLocation::current());
  // As Create, with the node whose snapshots are this cache's local ones (the others are
  // foreign): several nodes in one process (tests, simulators) each keep their own cache. The
  // others take NodeId::Local(). NodeId::None() is misuse (reported, null returned).
  static Ref<Cache> Create(CacheIdFunction id, AggregateFunction aggregate,
                           AggregatePublishFunction publish_aggregate, NodeId local_node,
                           SourceLocation where = SourceLocation::current());

  // The node whose snapshots are local here.
  const NodeId& LocalNode() const noexcept { return local_node_; }

  // The id of `message` by the id function; throws what the id function throws.
  std::string IdOf(const Message& message) const { return id_.String(message); }
  const CacheIdFunction& IdFunctionOf() const noexcept { return id_; }
  bool HasAggregate() const noexcept { return static_cast<bool>(aggregate_); }
  const AggregatePublishFunction& PublishAggregateFunction() const noexcept {
    return publish_aggregate_;
  }

  // --- Queries (readers) ---------------------------------------------------------------
  // A null type is misuse (reported; null / empty returned).

  // The local snapshot of (type, id), or null.
  Ref<Message> Get(const MessageType* type, std::string_view id,
                   SourceLocation where = SourceLocation::current()) const;
  // `node`'s snapshot of (type, id); NodeId::None() gives the aggregate.
  Ref<Message> GetByNode(const MessageType* type, std::string_view id, const NodeId& node,
                         SourceLocation where = SourceLocation::current()) const;
  // Every node's snapshot of (type, id): local first, then foreign (not the aggregate).
  std::vector<Ref<Message>> GetAll(const MessageType* type, std::string_view id,
                                   SourceLocation where = SourceLocation::current()) const;
  // The whole entry (immutable), or null.
  Ref<const CacheEntry> GetEntry(const MessageType* type, std::string_view id,
                                 SourceLocation where = SourceLocation::current()) const;
  // The local snapshots of every entry (of `type` only, unless null), in no particular order.
  std::vector<Ref<Message>> Dump(const MessageType* type = nullptr) const;
  // `node`'s snapshots (of `type` only, unless null); NodeId::None() gives the aggregates.
  std::vector<Ref<Message>> DumpByNode(const MessageType* type, const NodeId& node) const;
  // Local and foreign snapshots (not aggregates).
  std::vector<Ref<Message>> DumpAll(const MessageType* type = nullptr) const;
  // The entries themselves (of `type` only, unless null).
  std::vector<Ref<const CacheEntry>> DumpEntries(const MessageType* type = nullptr) const;
  // How many entries, snapshots (local and foreign, by type and by node) and aggregates the
  // cache holds. Counted inside the walk's epochs like a Dump, holding no entry: unlike
  // DumpEntries, a census leaves every later write in place possible, and runs no user code.
  CacheCensus Census() const;

  std::size_t Size() const noexcept { return entries_.load(std::memory_order_relaxed); }
  CacheStats Stats() const;

  // --- Writers ---------------------------------------------------------------------------
  // These publish nothing: a caching topic calls them and publishes the change.

  // Stores `snapshot` as its node's snapshot of (its type, id). A snapshot without a node
  // (an aggregate) is not stored (an empty change is returned).
  CacheChange Put(const Ref<Message>& snapshot, std::string id,
                  SourceLocation where = SourceLocation::current());
  // Removes `node`'s snapshot of (type, id); an empty change if there was none.
  CacheChange Clear(const MessageType* type, std::string_view id, const NodeId& node,
                    SourceLocation where = SourceLocation::current());
  // Removes every snapshot of `node` (see "Node removal" above), calling `each` (if set) with
  // each change, under no cache lock, before the removal ends: no update of a later Put of the
  // node can overtake it. Returns how many snapshots were removed. NodeId::None() removes
  // nothing.
  std::size_t RemoveNode(const NodeId& node,
                         const std::function<void(const CacheChange&)>& each = nullptr,
                         SourceLocation where = SourceLocation::current());

 private:
  Cache(CacheIdFunction id, AggregateFunction aggregate, AggregatePublishFunction publish_aggregate,
        NodeId local_node);
  ~Cache() override;

  // The shard of (type, id); `hash` receives the key's hash.
  bus_internal::CacheShard& ShardFor(const MessageType* type, std::string_view id,
                                     std::size_t& hash) const;
  // The entry of (type, id), or null; the caller is inside an epoch guard.
  const CacheEntry* Find(const MessageType* type, std::string_view id) const;
  friend class bus_internal::CachingCore;
  // Put for a caching topic: the change's `id` is left empty (an update carries the type and
  // the snapshots only), which spares the publish a copy of the id.
  CacheChange PutFromTopic(const Message& snapshot, std::string_view id, SourceLocation where);
  // Stores `snapshot` as `node`'s snapshot of (type, id), or removes `node`'s if it is null.
  // The cache takes its own references to `snapshot`. `with_id`: copy the id into the change.
  CacheChange Write(const MessageType* type, std::string_view id, const NodeId& node,
                    Message* snapshot, bool with_id, SourceLocation where);
  // Write's body, under the shard's writer mutex.
  CacheChange WriteLocked(bus_internal::CacheShard& shard, const MessageType* type,
                          std::string_view id, std::size_t hash, const NodeId& node,
                          Message* snapshot, bool with_id, SourceLocation where);
  // Stores `snapshot` as `entry`'s local snapshot in place, filling the change's snapshots;
  // false (and nothing done) if a reader holds the entry. Under the shard's writer mutex.
  bool WriteLocalInPlace(bus_internal::CacheShard& shard, CacheEntry& entry, Message* snapshot,
                         CacheChange& change);
  // Whether a RemoveNode of `node` is under way.
  bool BeingRemoved(const NodeId& node) const;

  const NodeId local_node_;
  const CacheIdFunction id_;
  const AggregateFunction aggregate_;
  const AggregatePublishFunction publish_aggregate_;
  std::unique_ptr<bus_internal::CacheShard[]> shards_;
  std::unique_ptr<bus_internal::CacheRemovals> removals_;
  std::atomic<std::size_t> entries_{0};
  // (Puts and clears are counted by each shard, under its writer mutex: a count here would be
  // a locked add per write, on the line readers load shards_ from.)
  std::atomic<std::uint64_t> aggregate_failures_{0};
  std::atomic<std::uint64_t> held_entry_copies_{0};
};

}  // namespace plexus
