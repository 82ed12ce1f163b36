// The registries of live topics and subscriptions that the statistics listings walk: intrusive
// lists (through the objects' prev_live_/next_live_ links) under one short lock each, so
// registering costs no allocation and a listing never waits on a publisher or a callback.

#pragma once

#include <cstddef>
#include <mutex>

#include "plexus/bus/topic.h"
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

  void Add(T* object) {
    std::lock_guard lock(mu_);
    object->next_live_ = head_;
    if (head_ != nullptr) head_->prev_live_ = object;
    head_ = object;
    ++count_;
  }

  void Remove(T* object) {
    std::lock_guard lock(mu_);
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
  void ForEach(F&& f) {
    std::lock_guard lock(mu_);
    for (T* t = head_; t != nullptr; t = t->next_live_) f(static_cast<const T&>(*t));
  }

  std::size_t Count() {
    std::lock_guard lock(mu_);
    return count_;
  }

 private:
  std::mutex mu_;
  T* head_ = nullptr;
  std::size_t count_ = 0;
};

using TopicRegistry = LiveRegistry<Topic>;
using SubscriptionRegistry = LiveRegistry<SubscriptionCore>;

}  // namespace plexus::bus_internal
