// The registries of live topics and subscriptions that the statistics listings walk: intrusive
// lists (through the objects' prev_live_/next_live_ links) under one short lock each, so
// registering costs no allocation and a listing never waits on a publisher or a callback.

#pragma once

#include <cstddef>

#include "plexus/bus/topic.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"
#include "subscription_core.h"

namespace plexus::bus_internal {

template <class T>
class LiveRegistry {
 public:
  // The process-wide registry of live T.
  static LiveRegistry& Get() {
    static auto* registry = new LiveRegistry();
    return *registry;
  }

  void Add(T* object) PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    object->next_live_ = head_;
    if (head_ != nullptr) head_->prev_live_ = object;
    head_ = object;
    ++count_;
  }

  void Remove(T* object) PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    if (object->prev_live_ != nullptr) {
      object->prev_live_->next_live_ = object->next_live_;
    } else {
      head_ = object->next_live_;
    }
    if (object->next_live_ != nullptr) object->next_live_->prev_live_ = object->prev_live_;
    --count_;
  }

  // Calls f(const T&) for each live object, under the registry's lock (an object that is
  // being destroyed waits in Remove until the walk is over).
  template <class F>
  void ForEach(F&& f) PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    for (T* t = head_; t != nullptr; t = t->next_live_) f(static_cast<const T&>(*t));
  }

  std::size_t Count() PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return count_;
  }

 private:
  // Validated: a listing takes the subscriptions' mailbox locks under it, and a topic or a
  // subscription may be destroyed (so removed) under a topic's lock.
  Mutex mu_;
  // The objects' prev_live_/next_live_ links are guarded by mu_ as well.
  T* head_ PLEXUS_GUARDED_BY(mu_) = nullptr;
  std::size_t count_ PLEXUS_GUARDED_BY(mu_) = 0;
};

using TopicRegistry = LiveRegistry<Topic>;
using SubscriptionRegistry = LiveRegistry<SubscriptionCore>;

}  // namespace plexus::bus_internal
