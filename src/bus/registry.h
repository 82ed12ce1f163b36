// The registries of live topics, subscriptions, routers, caches and caching topics that the
// statistics listings walk, each under one short lock, so that a listing never waits on a
// publisher or a callback. Topics, subscriptions and routers are in intrusive lists (through
// their prev_live_/next_live_ links), so registering them costs no allocation; caches and
// caching topics, created rarely and whose public headers should not carry listing details,
// are in a vector of pointers.

#pragma once

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "plexus/bus/cache.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/message_router.h"
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

// The registry of live T that carry no links: each with a serial number, process-unique, that
// names it in the listings (a cache has no name of its own).
template <class T>
class LiveSet {
 public:
  static LiveSet& Get() {
    static auto* registry = new LiveSet();
    return *registry;
  }

  void Add(const T* object) PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    live_.push_back(Live{object, ++last_serial_});
  }

  void Remove(const T* object) PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    // Erased in place: the listings show objects in creation order.
    live_.erase(std::find_if(live_.begin(), live_.end(),
                             [&](const Live& l) { return l.object == object; }));
  }

  // Calls f(const T&, serial) for each live object, in creation order, under the registry's
  // lock (an object that is being destroyed waits in Remove until the walk is over).
  template <class F>
  void ForEach(F&& f) PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    for (const Live& l : live_) f(*l.object, l.serial);
  }

  std::size_t Count() PLEXUS_EXCLUDES(mu_) {
    MutexLock lock(mu_);
    return live_.size();
  }

 private:
  struct Live {
    const T* object;
    std::uint64_t serial;
  };
  Mutex mu_;
  std::vector<Live> live_ PLEXUS_GUARDED_BY(mu_);
  std::uint64_t last_serial_ PLEXUS_GUARDED_BY(mu_) = 0;
};

class RouterCore;

using TopicRegistry = LiveRegistry<Topic>;
using SubscriptionRegistry = LiveRegistry<SubscriptionCore>;
using RouterRegistry = LiveRegistry<RouterCore>;
using CacheRegistry = LiveSet<Cache>;
using CachingTopicRegistry = LiveSet<CachingTopic>;

// Every live router's counters, routes included; its subscription's stats carry only the id
// and topic name (message_router.cc, where the router's core is defined).
std::vector<MessageRouterStats> ListRouterCores();

}  // namespace plexus::bus_internal
