// The registries of live topics and subscriptions that the statistics listings walk: intrusive
// lists under one short lock each, so registering costs no allocation and a listing never
// waits on a publisher or a callback.

#pragma once

#include <cstddef>
#include <mutex>

#include "plexus/bus/topic.h"
#include "subscription_core.h"

namespace plexus::bus_internal {

struct TopicRegistry {
  std::mutex mu;
  Topic* head = nullptr;
  std::size_t count = 0;

  static TopicRegistry& Get();
  void Add(Topic* topic);
  void Remove(Topic* topic);
  template <class F>
  void ForEach(F&& f) {
    std::lock_guard lock(mu);
    for (Topic* t = head; t != nullptr; t = t->next_live_) f(*t);
  }
};

struct SubscriptionRegistry {
  std::mutex mu;
  SubscriptionCore* head = nullptr;
  std::size_t count = 0;

  static SubscriptionRegistry& Get();
  void Add(SubscriptionCore* core);
  void Remove(SubscriptionCore* core);
  template <class F>
  void ForEach(F&& f) {
    std::lock_guard lock(mu);
    for (SubscriptionCore* s = head; s != nullptr; s = s->next_live_) f(*s);
  }
};

}  // namespace plexus::bus_internal
