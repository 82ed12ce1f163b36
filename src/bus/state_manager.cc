#include "plexus/bus/state_manager.h"

#include <algorithm>
#include <functional>
#include <string>
#include <utility>

#include "plexus/core/internal/run_catching.h"
#include "plexus/core/misuse.h"

namespace plexus {
namespace bus_internal {

// One state. Kept small (a state costs this, its topic, and a forward edge): the id is not
// stored, it is the tail of the topic's name, and the manager is not either (whoever reaches a
// state came through its manager, and holds it); the implicit publishers' nodes, rare, live in a
// list of their own; the counts and the table link are guarded by the manager's mu_, the last
// message by one of the manager's stripe locks (neither is annotated: the analysis cannot name
// another object's lock through a pointer it does not know to be that object).
class StateEntry final : public RefCounted {
 public:
  StateEntry(Ref<Topic> topic, Forward forward, std::uint32_t hash) noexcept
      : hash_(hash), topic_(std::move(topic)), forward_(std::move(forward)) {}

  // The id: the topic's name after "<manager>/" (`prefix` characters).
  std::string_view Id(std::size_t prefix) const noexcept {
    return std::string_view(topic_->Name()).substr(prefix);
  }
  std::uint32_t Hash() const noexcept { return hash_; }
  const Ref<Topic>& GetTopic() const noexcept { return topic_; }
  std::uint32_t Holders() const noexcept {
    return subscribers + publishers +
           (nodes != nullptr ? static_cast<std::uint32_t>(nodes->size()) : 0);
  }
  // Stops forwarding into "all": the state was removed.
  void CancelForward() noexcept { forward_.Cancel(); }

  // Guarded by the manager's mu_.
  std::uint32_t subscribers = 0;
  std::uint32_t publishers = 0;
  StateEntry* next = nullptr;                  // the next state of the bucket
  std::unique_ptr<std::vector<NodeId>> nodes;  // the implicit publishers
  // Guarded by the manager's stripe lock for Hash().
  Ref<Message> last;

 private:
  ~StateEntry() override = default;

  const std::uint32_t hash_;
  const Ref<Topic> topic_;
  Forward forward_;  // topic_ -> the manager's "all"
};

}  // namespace bus_internal

using bus_internal::StateEntry;

namespace {

std::uint32_t HashOf(std::string_view id) noexcept {
  const std::size_t h = std::hash<std::string_view>{}(id);
  return static_cast<std::uint32_t>(h ^ (h >> 32));
}

constexpr std::size_t kInitialBuckets = 16;

}  // namespace

// -----------------------------------------------------------------------------
// StateManager
// -----------------------------------------------------------------------------

Ref<StateManager> StateManager::Create(std::string_view name, SourceLocation where) {
  if (name.empty()) {
    ReportMisuse("StateManager::Create: empty name", where);
    return nullptr;
  }
  Ref<Topic> all = Topic::Create(name, {}, where);
  return Ref<StateManager>::Adopt(new StateManager(name, std::move(all)), where);
}

StateManager::StateManager(std::string_view name, Ref<Topic> all)
    : name_(name), all_(std::move(all)) {}

// Handles hold their manager, so what the table still lists is held by implicit publishers
// only: those states go with the manager (their forwards cancelled, their last references let
// go), as nobody could reach them any more.
StateManager::~StateManager() {
  std::vector<StateEntry*> orphans;
  {
    MutexLock lock(mu_);
    for (StateEntry* head : buckets_) {
      for (StateEntry* s = head; s != nullptr; s = s->next) orphans.push_back(s);
    }
    buckets_.clear();
    count_ = 0;
  }
  for (StateEntry* s : orphans) {
    s->next = nullptr;
    s->CancelForward();
    s->DecRef(SourceLocation::current(), this);
  }
}

std::string_view StateManager::IdOf(const StateEntry& state) const noexcept {
  return state.Id(name_.size() + 1);
}

StateEntry* StateManager::FindLocked(std::string_view id, std::uint32_t hash) const {
  if (buckets_.empty()) return nullptr;
  for (StateEntry* s = buckets_[hash & (buckets_.size() - 1)]; s != nullptr; s = s->next) {
    if (s->Hash() == hash && IdOf(*s) == id) return s;
  }
  return nullptr;
}

void StateManager::LinkLocked(StateEntry* state) {
  if (count_ + 1 > buckets_.size()) {
    // Load factor at most 1; the table never shrinks (a server's population of ids comes back).
    std::vector<StateEntry*> grown(std::max(kInitialBuckets, buckets_.size() * 2), nullptr);
    for (StateEntry* head : buckets_) {
      while (head != nullptr) {
        StateEntry* next = head->next;
        StateEntry*& slot = grown[head->Hash() & (grown.size() - 1)];
        head->next = slot;
        slot = head;
        head = next;
      }
    }
    buckets_.swap(grown);
  }
  StateEntry*& slot = buckets_[state->Hash() & (buckets_.size() - 1)];
  state->next = slot;
  slot = state;
  ++count_;
  // The table's own reference, let go by Release once the state is unlinked.
  state->AddRef(SourceLocation::current(), this);
}

void StateManager::UnlinkLocked(StateEntry* state) {
  StateEntry** link = &buckets_[state->Hash() & (buckets_.size() - 1)];
  while (*link != state) link = &(*link)->next;
  *link = state->next;
  state->next = nullptr;
  --count_;
}

void StateManager::AddHolderLocked(StateEntry& state, Holder kind, NodeId node) {
  switch (kind) {
    case Holder::kSubscriber:
      ++state.subscribers;
      break;
    case Holder::kPublisher:
      ++state.publishers;
      break;
    case Holder::kNode:
      if (state.nodes == nullptr) state.nodes = std::make_unique<std::vector<NodeId>>();
      if (std::find(state.nodes->begin(), state.nodes->end(), node) == state.nodes->end()) {
        state.nodes->push_back(node);
      }
      break;
  }
}

Ref<StateEntry> StateManager::Acquire(std::string_view id, Holder kind, NodeId node,
                                      SourceLocation where) {
  const std::uint32_t hash = HashOf(id);
  {
    MutexLock lock(mu_);
    if (StateEntry* s = FindLocked(id, hash)) {
      AddHolderLocked(*s, kind, node);
      return Ref<StateEntry>(s, where);
    }
  }
  // The topic and its forward are made outside mu_: ForwardAll takes the topic's lock, and
  // the manager's lock must never be held while a topic's is taken (header, "Lock order").
  Ref<Topic> topic = Topic::Create(name_ + "/" + std::string(id), {}, where);
  Forward forward = ForwardAll(topic, all_, where);
  Ref<StateEntry> fresh =
      Ref<StateEntry>::Adopt(new StateEntry(std::move(topic), std::move(forward), hash), where);
  Ref<StateEntry> result;
  {
    MutexLock lock(mu_);
    if (StateEntry* s = FindLocked(id, hash)) {
      // Another thread made the state meanwhile: join it; ours goes, unused, below.
      AddHolderLocked(*s, kind, node);
      result = Ref<StateEntry>(s, where);
    } else {
      LinkLocked(fresh.get());
      AddHolderLocked(*fresh, kind, node);
      result = std::move(fresh);
    }
  }
  return result;
}

bool StateManager::Release(StateEntry& state, Holder kind, NodeId node, SourceLocation where) {
  bool removed = false;
  {
    MutexLock lock(mu_);
    switch (kind) {
      case Holder::kSubscriber:
        --state.subscribers;
        break;
      case Holder::kPublisher:
        --state.publishers;
        break;
      case Holder::kNode: {
        if (state.nodes == nullptr) return false;
        auto it = std::find(state.nodes->begin(), state.nodes->end(), node);
        if (it == state.nodes->end()) return false;
        state.nodes->erase(it);
        break;
      }
    }
    if (state.Holders() == 0) {
      UnlinkLocked(&state);
      removed = true;
    }
  }
  if (removed) {
    // Outside mu_ (Cancel takes the topic's lock). The caller holds `state`, so the table's
    // reference is not the last; the topic and last message go with the caller's.
    state.CancelForward();
    state.DecRef(where, this);
  }
  return true;
}

Ref<StateEntry> StateManager::Find(std::string_view id) const {
  const std::uint32_t hash = HashOf(id);
  MutexLock lock(mu_);
  return Ref<StateEntry>(FindLocked(id, hash));
}

Ref<Message> StateManager::LastOf(const StateEntry& state) const {
  MutexLock lock(last_mu_[state.Hash() % kStripes]);
  return state.last;
}

Ref<Message> StateManager::ExchangeLast(StateEntry& state, Ref<Message> message) const {
  {
    MutexLock lock(last_mu_[state.Hash() % kStripes]);
    state.last.swap(message);
  }
  return message;  // the previous one, dropped by the caller outside the lock
}

PublishResult StateManager::StoreAndPublish(StateEntry& state, const Ref<Message>& message,
                                            SourceLocation where) const {
  ExchangeLast(state, message);
  return state.GetTopic()->Publish(message, where);
}

void StateManager::NotifySubscribe(const StateEntry& state) const {
  std::shared_ptr<const ObserverList> observers;
  {
    MutexLock lock(mu_);
    observers = observers_;
  }
  if (observers == nullptr) return;
  const Ref<Message> last = LastOf(state);
  for (const ObserverSlot& slot : *observers) {
    if (!slot.observer->on_subscribe) continue;
    core_internal::RunCatching([&] { slot.observer->on_subscribe(IdOf(state), last); },
                               [&] { return "state observer (on_subscribe) of " + name_; },
                               SourceLocation::current());
  }
}

void StateManager::NotifyUnsubscribe(const StateEntry& state) const {
  std::shared_ptr<const ObserverList> observers;
  {
    MutexLock lock(mu_);
    observers = observers_;
  }
  if (observers == nullptr) return;
  for (const ObserverSlot& slot : *observers) {
    if (!slot.observer->on_unsubscribe) continue;
    core_internal::RunCatching([&] { slot.observer->on_unsubscribe(IdOf(state)); },
                               [&] { return "state observer (on_unsubscribe) of " + name_; },
                               SourceLocation::current());
  }
}

StateSubscriber StateManager::AddSubscriber(std::string_view id, SourceLocation where) {
  if (id.empty()) {
    ReportMisuse("StateManager::AddSubscriber: empty id", where);
    return {};
  }
  StateSubscriber subscriber(Ref<StateManager>(this, where),
                             Acquire(id, Holder::kSubscriber, NodeId(), where), Subscription());
  NotifySubscribe(*subscriber.state_);
  return subscriber;
}

StateSubscriber StateManager::Subscribe(std::string_view id, MessageHandler handler,
                                        SubscriptionOptions options, SourceLocation where) {
  if (id.empty()) {
    ReportMisuse("StateManager::Subscribe: empty id", where);
    return {};
  }
  if (!handler) {
    ReportMisuse("StateManager::Subscribe: empty handler", where);
    return {};
  }
  Ref<StateEntry> state = Acquire(id, Holder::kSubscriber, NodeId(), where);
  // Made outside mu_ (subscribing takes the topic's lock). Should it throw, the hold goes.
  Subscription subscription;
  try {
    subscription =
        Subscription::Create(state->GetTopic(), std::move(handler), std::move(options), where);
  } catch (...) {
    Release(*state, Holder::kSubscriber, NodeId(), where);
    throw;
  }
  StateSubscriber subscriber(Ref<StateManager>(this, where), std::move(state),
                             std::move(subscription));
  NotifySubscribe(*subscriber.state_);
  return subscriber;
}

StatePublisher StateManager::AddPublisher(std::string_view id, SourceLocation where) {
  if (id.empty()) {
    ReportMisuse("StateManager::AddPublisher: empty id", where);
    return {};
  }
  return StatePublisher(Ref<StateManager>(this, where),
                        Acquire(id, Holder::kPublisher, NodeId(), where));
}

PublishResult StateManager::PublishById(std::string_view id, NodeId node,
                                        const Ref<Message>& message, SourceLocation where) {
  if (id.empty()) {
    ReportMisuse("StateManager::PublishById: empty id", where);
    return {};
  }
  if (message == nullptr) {
    ReportMisuse("StateManager::PublishById: null message", where);
    return {};
  }
  if (node.IsNone()) node = NodeId::Local();
  const Ref<StateEntry> state = Acquire(id, Holder::kNode, node, where);
  return StoreAndPublish(*state, message, where);
}

bool StateManager::RemovePublishById(std::string_view id, NodeId node,
                                     const Ref<Message>& final_message, SourceLocation where) {
  if (id.empty()) {
    ReportMisuse("StateManager::RemovePublishById: empty id", where);
    return false;
  }
  if (node.IsNone()) node = NodeId::Local();
  Ref<StateEntry> state;
  {
    const std::uint32_t hash = HashOf(id);
    MutexLock lock(mu_);
    StateEntry* s = FindLocked(id, hash);
    if (s == nullptr || s->nodes == nullptr ||
        std::find(s->nodes->begin(), s->nodes->end(), node) == s->nodes->end()) {
      return false;
    }
    state = Ref<StateEntry>(s, where);
  }
  // Published while `node` still holds the state, so its subscribers are there to see it.
  if (final_message != nullptr) StoreAndPublish(*state, final_message, where);
  return Release(*state, Holder::kNode, node, where);
}

std::uint64_t StateManager::AddObserver(StateObserver observer) {
  auto shared = std::make_shared<const StateObserver>(std::move(observer));
  std::shared_ptr<const ObserverList> previous;  // dropped outside the lock
  MutexLock lock(mu_);
  auto next = observers_ != nullptr ? std::make_shared<ObserverList>(*observers_)
                                    : std::make_shared<ObserverList>();
  const std::uint64_t key = ++next_observer_key_;
  next->push_back(ObserverSlot{key, std::move(shared)});
  previous = std::exchange(observers_, std::move(next));
  return key;
}

bool StateManager::RemoveObserver(std::uint64_t key) {
  // Dropped outside the lock: the observer's functions may hold anything.
  std::shared_ptr<const ObserverList> previous;
  {
    MutexLock lock(mu_);
    if (observers_ == nullptr) return false;
    auto it = std::find_if(observers_->begin(), observers_->end(),
                           [key](const ObserverSlot& s) { return s.key == key; });
    if (it == observers_->end()) return false;
    std::shared_ptr<const ObserverList> next;
    if (observers_->size() > 1) {
      auto copy = std::make_shared<ObserverList>();
      for (const ObserverSlot& s : *observers_) {
        if (s.key != key) copy->push_back(s);
      }
      next = std::move(copy);
    }
    previous = std::exchange(observers_, std::move(next));
  }
  return true;
}

std::size_t StateManager::Visit(const StateVisitor& visit, bool subscribed_only, const char* caller,
                                SourceLocation where) const {
  if (!visit) {
    ReportMisuse(std::string("StateManager::") + caller + ": empty visitor", where);
    return 0;
  }
  std::vector<Ref<StateEntry>> snapshot;
  {
    MutexLock lock(mu_);
    snapshot.reserve(count_);
    for (StateEntry* head : buckets_) {
      for (StateEntry* s = head; s != nullptr; s = s->next) {
        if (!subscribed_only || s->subscribers > 0) snapshot.emplace_back(s, where);
      }
    }
  }
  std::size_t visited = 0;
  for (const Ref<StateEntry>& s : snapshot) {
    ++visited;
    if (!visit(IdOf(*s), LastOf(*s))) break;
  }
  return visited;
}

std::size_t StateManager::ForEachState(const StateVisitor& visit, SourceLocation where) const {
  return Visit(visit, false, "ForEachState", where);
}

std::size_t StateManager::ForEachSubscribedState(const StateVisitor& visit,
                                                 SourceLocation where) const {
  return Visit(visit, true, "ForEachSubscribedState", where);
}

std::size_t StateManager::StateCount() const {
  MutexLock lock(mu_);
  return count_;
}

bool StateManager::HasState(std::string_view id) const {
  return Find(id) != nullptr;
}

Ref<Topic> StateManager::FindTopic(std::string_view id) const {
  const Ref<StateEntry> state = Find(id);
  return state != nullptr ? state->GetTopic() : nullptr;
}

Ref<Message> StateManager::LastMessage(std::string_view id) const {
  const Ref<StateEntry> state = Find(id);
  return state != nullptr ? LastOf(*state) : nullptr;
}

// -----------------------------------------------------------------------------
// StateSubscriber
// -----------------------------------------------------------------------------

StateSubscriber::StateSubscriber() noexcept = default;

StateSubscriber::StateSubscriber(Ref<StateManager> manager, Ref<StateEntry> state,
                                 Subscription subscription) noexcept
    : manager_(std::move(manager)),
      state_(std::move(state)),
      subscription_(std::move(subscription)) {}

StateSubscriber::StateSubscriber(StateSubscriber&& other) noexcept
    : manager_(std::move(other.manager_)),
      state_(std::move(other.state_)),
      subscription_(std::move(other.subscription_)) {}

StateSubscriber& StateSubscriber::operator=(StateSubscriber&& other) noexcept {
  if (this != &other) {
    Unsubscribe(SourceLocation{});
    manager_ = std::move(other.manager_);
    state_ = std::move(other.state_);
    subscription_ = std::move(other.subscription_);
  }
  return *this;
}

StateSubscriber::~StateSubscriber() {
  Unsubscribe(SourceLocation{});
}

std::string_view StateSubscriber::Id() const noexcept {
  return state_ != nullptr ? manager_->IdOf(*state_) : std::string_view();
}

Ref<Topic> StateSubscriber::GetTopic() const {
  return state_ != nullptr ? state_->GetTopic() : nullptr;
}

Ref<Message> StateSubscriber::LastMessage() const {
  return state_ != nullptr ? manager_->LastOf(*state_) : nullptr;
}

void StateSubscriber::Release(SourceLocation where) noexcept {
  // The state goes before the manager (declared after it): the manager's destructor expects
  // every state it does not list to be held elsewhere.
  const Ref<StateManager> manager = std::move(manager_);
  const Ref<StateEntry> state = std::move(state_);
  manager->Release(*state, StateManager::Holder::kSubscriber, NodeId(), where);
  manager->NotifyUnsubscribe(*state);
}

bool StateSubscriber::Unsubscribe(SourceLocation where) {
  if (state_ == nullptr) return false;
  if (subscription_) subscription_.Unsubscribe(where);
  Release(where);
  return true;
}

bool StateSubscriber::UnsubscribeAndJoin(SourceLocation where) {
  if (state_ == nullptr) return false;
  bool joined = true;
  if (subscription_) {
    // Unsubscribe first, apart from the join: a join from the subscription's own callback is
    // refused, and the subscription must not outlive the hold on its state then.
    subscription_.Unsubscribe(where);
    try {
      joined = subscription_.Join(where);
    } catch (...) {
      Release(where);
      throw;
    }
  }
  Release(where);
  return joined;
}

// -----------------------------------------------------------------------------
// StatePublisher
// -----------------------------------------------------------------------------

StatePublisher::StatePublisher() noexcept = default;

StatePublisher::StatePublisher(Ref<StateManager> manager, Ref<StateEntry> state) noexcept
    : manager_(std::move(manager)), state_(std::move(state)) {}

StatePublisher::StatePublisher(StatePublisher&& other) noexcept
    : manager_(std::move(other.manager_)), state_(std::move(other.state_)) {}

StatePublisher& StatePublisher::operator=(StatePublisher&& other) noexcept {
  if (this != &other) {
    Release(SourceLocation{});
    manager_ = std::move(other.manager_);
    state_ = std::move(other.state_);
  }
  return *this;
}

StatePublisher::~StatePublisher() {
  Release(SourceLocation{});
}

std::string_view StatePublisher::Id() const noexcept {
  return state_ != nullptr ? manager_->IdOf(*state_) : std::string_view();
}

Ref<Topic> StatePublisher::GetTopic() const {
  return state_ != nullptr ? state_->GetTopic() : nullptr;
}

PublishResult StatePublisher::Publish(const Ref<Message>& message, SourceLocation where) {
  if (state_ == nullptr) {
    ReportMisuse("StatePublisher::Publish on an empty handle", where);
    return {};
  }
  if (message == nullptr) {
    ReportMisuse("StatePublisher::Publish: null message", where);
    return {};
  }
  return manager_->StoreAndPublish(*state_, message, where);
}

bool StatePublisher::Release(SourceLocation where) noexcept {
  if (state_ == nullptr) return false;
  const Ref<StateManager> manager = std::move(manager_);
  const Ref<StateEntry> state = std::move(state_);
  manager->Release(*state, StateManager::Holder::kPublisher, NodeId(), where);
  return true;
}

}  // namespace plexus
