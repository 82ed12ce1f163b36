#include "plexus/bus/topic_pool.h"

#include <string>

#include "plexus/core/misuse.h"

namespace plexus {

Ref<TopicPool> TopicPool::Create(Ref<Topic> all, SourceLocation where) {
  if (all == nullptr) {
    ReportMisuse("TopicPool::Create: null \"all\" topic", where);
    return nullptr;
  }
  return Ref<TopicPool>::Adopt(new TopicPool(std::move(all)), where);
}

std::string_view TopicPool::Strip(std::string_view name) const {
  const std::string& prefix = all_->Name();
  if (name.size() > prefix.size() + 1 && name.substr(0, prefix.size()) == prefix &&
      name[prefix.size()] == '/') {
    return name.substr(prefix.size() + 1);
  }
  return name;
}

Ref<Topic> TopicPool::Get(std::string_view name, SourceLocation where) {
  if (name.empty()) {
    ReportMisuse("TopicPool::Get: empty name", where);
    return nullptr;
  }
  MutexLock lock(mu_);
  auto it = entries_.find(name);
  if (it != entries_.end()) return it->second.topic;
  // Made under the pool's lock so concurrent getters of one name agree; a topic's creation
  // and its forward take no lock that a publisher could hold while it waits for this pool.
  Ref<Topic> topic = Topic::Create(all_->Name() + "/" + std::string(name), {}, where);
  Forward forward = ForwardAll(topic, all_, where);
  entries_.emplace(std::string(name), Entry{topic, std::move(forward)});
  return topic;
}

bool TopicPool::Delete(std::string_view name) {
  Entry removed;
  {
    MutexLock lock(mu_);
    auto it = entries_.find(Strip(name));
    if (it == entries_.end()) return false;
    removed = std::move(it->second);
    entries_.erase(it);
  }
  // The forward is cancelled and the topic let go outside the pool's lock.
  return true;
}

bool TopicPool::Exists(std::string_view name) const {
  MutexLock lock(mu_);
  return entries_.find(Strip(name)) != entries_.end();
}

std::size_t TopicPool::Size() const {
  MutexLock lock(mu_);
  return entries_.size();
}

}  // namespace plexus
