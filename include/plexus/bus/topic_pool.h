// -----------------------------------------------------------------------------
// plexus/bus/topic_pool.h
// -----------------------------------------------------------------------------
//
// TopicPool hands out per-object topics by name, each forwarded into the pool's "all" topic
// (Asterisk's stasis_topic_pool): `pool->Get("PJSIP/alice")` returns the topic
// "<all>/PJSIP/alice", creating it on first use. Deleting a name cancels its forward and forgets
// the topic (holders keep theirs); the next Get creates a fresh one.
//
// Names are case-sensitive (Asterisk's pools are not, its registry is: one rule here).
//
// Thread safety: thread-safe. Concurrent Gets of one name return the same topic.

#pragma once

#include <cstddef>
#include <map>
#include <string>
#include <string_view>

#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"

namespace plexus {

class TopicPool final : public RefCounted {
 public:
  // A pool forwarding into `all` (null is misuse: reported, null returned).
  static Ref<TopicPool> Create(Ref<Topic> all, SourceLocation where = SourceLocation::current());

  // The topic for `name`, created (and forwarded into All()) on first use. An empty name is
  // misuse (reported, null returned).
  Ref<Topic> Get(std::string_view name, SourceLocation where = SourceLocation::current())
      PLEXUS_EXCLUDES(mu_);
  // Forgets `name` ("<all>/<name>" is accepted too); false if it was not in the pool.
  bool Delete(std::string_view name) PLEXUS_EXCLUDES(mu_);
  bool Exists(std::string_view name) const PLEXUS_EXCLUDES(mu_);
  std::size_t Size() const PLEXUS_EXCLUDES(mu_);
  const Ref<Topic>& All() const noexcept { return all_; }

 private:
  explicit TopicPool(Ref<Topic> all) : all_(std::move(all)) {}
  std::string_view Strip(std::string_view name) const;

  struct Entry {
    Ref<Topic> topic;
    Forward forward;
  };
  const Ref<Topic> all_;
  // Taken before a new topic's lock (Get makes the topic and its forward under it).
  mutable Mutex mu_;
  std::map<std::string, Entry, std::less<>> entries_ PLEXUS_GUARDED_BY(mu_);
};

}  // namespace plexus
