// -----------------------------------------------------------------------------
// plexus/bus/state_manager.h
// -----------------------------------------------------------------------------
//
// StateManager keeps a last-value state per id (Asterisk's stasis_state): for a family of
// objects (mailboxes, devices, presence) that come and go by id, it hands out each object's
// topic, remembers the last message published on it, and forgets the object when nobody holds
// it any more.
//
//   auto mwi = plexus::StateManager::Create("mwi");
//   plexus::StatePublisher alice = mwi->AddPublisher("alice@example");
//   plexus::StateSubscriber watch = mwi->Subscribe("alice@example", handler);
//   alice.Publish(message);             // stored as the last message, then published
//   mwi->ForEachState([](std::string_view id, const plexus::Ref<plexus::Message>& last) {
//     return true;                      // false stops the iteration
//   });
//
// A manager over name "foo" has an "all" topic named "foo"; the state of id "x" has its own
// topic "foo/x", forwarded into "all", and its last message (none until one is published).
//
// Lifetime of a state. A state exists exactly while something holds it:
//   * an explicit subscriber (AddSubscriber, Subscribe: a StateSubscriber handle),
//   * an explicit publisher (AddPublisher: a StatePublisher handle), or
//   * an implicit publisher per node (PublishById(id, node, ...) adds one for `node` on its
//     first publish; RemovePublishById(id, node) lets it go), as Asterisk's EIDs do.
// When the last holder lets go, the state is removed: its topic's forward into "all" is
// cancelled and the topic and last message are dropped with the state. A later publish or
// subscribe of the same id makes a new state, with a new topic and no last message. A handle
// holds its state and the manager, so the manager's own Ref may be dropped first. When the
// manager's last reference goes (no handle left), the states that only implicit publishers
// still hold are removed with it: nobody could reach them any more.
//
// Observers (AddObserver) hear each explicit subscriber arrive, with the state's last message
// (or none), and leave. Iteration (ForEachState, ForEachSubscribedState) walks a snapshot of
// the states taken under the manager's lock; the visitor runs with no lock held and may stop
// the walk.
//
// Departures from Asterisk: handles own their hold (dropping a StateSubscriber unsubscribes,
// dropping a StatePublisher lets go), FindTopic returns an owning reference (Asterisk's
// stasis_state_topic returns a pointer that may already be freed), and an empty id is misuse
// reported at the caller's line.
//
// Lock order: the manager's lock is a leaf with respect to topics: no topic's lock is taken
// while it is held (topics and forwards are made and cancelled outside it), so a synchronous
// subscriber of a state's topic may call the manager from its callback.
//
// Thread safety: StateManager is thread-safe. Observers and visitors are never called under
// a lock of the manager; an observer may be called on any thread that subscribes or
// unsubscribes, concurrently with itself. Two publishers of one state racing each other leave
// as its last message the one stored last, which need not be the one delivered last.
// StateSubscriber and StatePublisher are thread-compatible handles (one owner), whose const
// members may be called from any thread while the handle is not being changed.

#pragma once

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
#include "plexus/bus/subscription.h"
#include "plexus/bus/topic.h"
#include "plexus/core/ref.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"

namespace plexus {

class StateManager;
namespace bus_internal {
class StateEntry;
}  // namespace bus_internal

// What an observer hears. Either function may be empty. Both run on the thread that
// subscribed or unsubscribed, after the manager let go of its locks; an exception thrown by
// one is caught and logged.
struct StateObserver {
  // A new explicit subscriber of state `id`; `last` is the state's last message, or null.
  std::function<void(std::string_view id, const Ref<Message>& last)> on_subscribe;
  // An explicit subscriber of state `id` let go.
  std::function<void(std::string_view id)> on_unsubscribe;
};

// Visits one state during an iteration: its id and its last message (or null). Returning
// false stops the iteration.
using StateVisitor = std::function<bool(std::string_view id, const Ref<Message>& last)>;

// An explicit subscriber of one state: holds the state alive, and, when made by Subscribe, owns
// a subscription to the state's topic. Destroying the handle (or Unsubscribe) lets go: the
// subscription is unsubscribed without waiting, the observers hear of it, and the state is
// removed if it was its last holder.
class StateSubscriber {
 public:
  StateSubscriber() noexcept;
  StateSubscriber(StateSubscriber&& other) noexcept;
  // Lets go of the state held before, then takes `other`'s.
  StateSubscriber& operator=(StateSubscriber&& other) noexcept;
  StateSubscriber(const StateSubscriber&) = delete;
  StateSubscriber& operator=(const StateSubscriber&) = delete;
  ~StateSubscriber();

  // Whether the handle holds a state (false once it let go).
  explicit operator bool() const noexcept { return state_ != nullptr; }

  // The state's id, and its topic ("<manager>/<id>"); empty and null once it let go.
  std::string_view Id() const noexcept;
  Ref<Topic> GetTopic() const;
  // The state's last message, or null (Asterisk's stasis_state_subscriber_data).
  Ref<Message> LastMessage() const;
  // The subscription to the state's topic (an empty handle for AddSubscriber). It stays here
  // after Unsubscribe, so that it can still be joined.
  Subscription& GetSubscription() noexcept { return subscription_; }
  const Subscription& GetSubscription() const noexcept { return subscription_; }

  // Lets go of the state (unsubscribing without waiting). True if this call let go, false if
  // the handle held nothing.
  bool Unsubscribe(SourceLocation where = SourceLocation::current());
  // Unsubscribes, waits for the subscription's final message to be handled, then lets go of
  // the state. From the subscription's own callback the wait is misuse (reported, as by
  // Subscription::Join, and false returned); it unsubscribes and lets go all the same.
  bool UnsubscribeAndJoin(SourceLocation where = SourceLocation::current());

 private:
  friend class StateManager;
  StateSubscriber(Ref<StateManager> manager, Ref<bus_internal::StateEntry> state,
                  Subscription subscription) noexcept;
  // Lets go of the state, if held; the subscription must be unsubscribed already.
  void Release(SourceLocation where) noexcept;

  Ref<StateManager> manager_;
  Ref<bus_internal::StateEntry> state_;
  Subscription subscription_;
};

// An explicit publisher of one state: holds the state alive and publishes on its topic,
// storing each message as the state's last first. Destroying the handle (or Release) lets go.
class StatePublisher {
 public:
  StatePublisher() noexcept;
  StatePublisher(StatePublisher&& other) noexcept;
  // Lets go of the state held before, then takes `other`'s.
  StatePublisher& operator=(StatePublisher&& other) noexcept;
  StatePublisher(const StatePublisher&) = delete;
  StatePublisher& operator=(const StatePublisher&) = delete;
  ~StatePublisher();

  explicit operator bool() const noexcept { return state_ != nullptr; }
  std::string_view Id() const noexcept;
  Ref<Topic> GetTopic() const;

  // Stores `message` as the state's last message, then publishes it on the state's topic (and
  // so on "all"). A null message, or an empty handle, is misuse (reported; nothing published).
  PublishResult Publish(const Ref<Message>& message,
                        SourceLocation where = SourceLocation::current());
  // Makes a message of `type` carrying `value` and publishes it; nothing for a declined type.
  template <class T>
  PublishResult Publish(const TypedMessageType<T>& type, std::type_identity_t<T> value,
                        SourceLocation where = SourceLocation::current()) {
    if (type.get() == nullptr || type->IsDeclined()) return {};
    return Publish(type.Make(std::move(value), where), where);
  }

  // Lets go of the state. True if this call let go, false if the handle held nothing.
  bool Release(SourceLocation where = SourceLocation::current()) noexcept;

 private:
  friend class StateManager;
  StatePublisher(Ref<StateManager> manager, Ref<bus_internal::StateEntry> state) noexcept;

  Ref<StateManager> manager_;
  Ref<bus_internal::StateEntry> state_;
};

class StateManager final : public RefCounted {
 public:
  // A manager whose "all" topic is named `name`. An empty name is misuse (reported, null
  // returned).
  static Ref<StateManager> Create(std::string_view name,
                                  SourceLocation where = SourceLocation::current());

  const std::string& Name() const noexcept { return name_; }
  // Every state's topic is forwarded here.
  const Ref<Topic>& AllTopic() const noexcept { return all_; }

  // An explicit subscriber of state `id` (made if need be) without a subscription: for callers
  // who subscribe to GetTopic() themselves (Asterisk's stasis_state_add_subscriber). The
  // observers hear of it before this returns. An empty id is misuse (reported; an empty
  // handle returned).
  StateSubscriber AddSubscriber(std::string_view id,
                                SourceLocation where = SourceLocation::current());
  // An explicit subscriber of state `id` with a subscription of `handler` to the state's topic
  // (Asterisk's stasis_state_subscribe_pool, in any delivery mode). The observers hear of it
  // once the subscription exists. An empty id or handler is misuse (reported; an empty handle).
  StateSubscriber Subscribe(std::string_view id, MessageHandler handler,
                            SubscriptionOptions options = {},
                            SourceLocation where = SourceLocation::current());

  // An explicit publisher of state `id` (made if need be). An empty id is misuse (reported; an
  // empty handle returned).
  StatePublisher AddPublisher(std::string_view id,
                              SourceLocation where = SourceLocation::current());

  // Publishes `message` on state `id` as node `node` (NodeId::None() stands for the local node,
  // as Asterisk's NULL EID does): the state is made if need be, `node` becomes one of its
  // implicit publishers if it was not already, the message is stored as the state's last, then
  // published. An empty id or a null message is misuse (reported; nothing published).
  PublishResult PublishById(std::string_view id, NodeId node, const Ref<Message>& message,
                            SourceLocation where = SourceLocation::current());
  // Lets go of `node`'s implicit hold on state `id`, publishing `final_message` first (stored
  // as the last message, and seen by the subscribers) if it is not null. False, and nothing
  // published, when `node` does not publish on `id`. An empty id is misuse.
  bool RemovePublishById(std::string_view id, NodeId node,
                         const Ref<Message>& final_message = nullptr,
                         SourceLocation where = SourceLocation::current());

  // Adds an observer; returns a key for RemoveObserver. A subscribe or unsubscribe that had
  // already begun when the observer was added or removed may or may not be heard by it.
  std::uint64_t AddObserver(StateObserver observer) PLEXUS_EXCLUDES(mu_);
  // False if no observer has `key`.
  bool RemoveObserver(std::uint64_t key) PLEXUS_EXCLUDES(mu_);

  // Visits every state (ForEachState) or those with at least one explicit subscriber
  // (ForEachSubscribedState), as they were when the call began, until `visit` returns false.
  // Returns the number of states visited. An empty visitor is misuse (reported; 0 returned).
  std::size_t ForEachState(const StateVisitor& visit,
                           SourceLocation where = SourceLocation::current()) const;
  std::size_t ForEachSubscribedState(const StateVisitor& visit,
                                     SourceLocation where = SourceLocation::current()) const;

  // The number of states.
  std::size_t StateCount() const PLEXUS_EXCLUDES(mu_);
  bool HasState(std::string_view id) const PLEXUS_EXCLUDES(mu_);
  // State `id`'s topic, or null when there is no such state. The reference keeps the topic,
  // not the state: a state removed meanwhile leaves a topic that no longer reaches "all".
  Ref<Topic> FindTopic(std::string_view id) const PLEXUS_EXCLUDES(mu_);
  // State `id`'s last message, or null (no such state, or nothing published yet).
  Ref<Message> LastMessage(std::string_view id) const PLEXUS_EXCLUDES(mu_);

 private:
  friend class StateSubscriber;
  friend class StatePublisher;
  friend class bus_internal::StateEntry;

  // Who holds a state.
  enum class Holder : std::uint8_t { kSubscriber, kPublisher, kNode };
  struct ObserverSlot {
    std::uint64_t key;
    std::shared_ptr<const StateObserver> observer;
  };
  using ObserverList = std::vector<ObserverSlot>;

  StateManager(std::string_view name, Ref<Topic> all);
  ~StateManager() override;

  // The state of `id`, made if need be, with one more holder of `kind` (for kNode: `node`,
  // unless it holds the state already).
  Ref<bus_internal::StateEntry> Acquire(std::string_view id, Holder kind, NodeId node,
                                        SourceLocation where) PLEXUS_EXCLUDES(mu_);
  // Lets go of one holder of `state`; removes the state when it was the last. False when `kind`
  // is kNode and `node` does not hold the state.
  bool Release(bus_internal::StateEntry& state, Holder kind, NodeId node, SourceLocation where)
      PLEXUS_EXCLUDES(mu_);
  Ref<bus_internal::StateEntry> Find(std::string_view id) const PLEXUS_EXCLUDES(mu_);
  std::string_view IdOf(const bus_internal::StateEntry& state) const noexcept;
  std::size_t Visit(const StateVisitor& visit, bool subscribed_only, const char* caller,
                    SourceLocation where) const PLEXUS_EXCLUDES(mu_);

  bus_internal::StateEntry* FindLocked(std::string_view id, std::uint32_t hash) const
      PLEXUS_REQUIRES(mu_);
  void LinkLocked(bus_internal::StateEntry* state) PLEXUS_REQUIRES(mu_);
  void UnlinkLocked(bus_internal::StateEntry* state) PLEXUS_REQUIRES(mu_);
  void AddHolderLocked(bus_internal::StateEntry& state, Holder kind, NodeId node)
      PLEXUS_REQUIRES(mu_);

  // The last message of a state, behind one of kStripes leaf locks picked by the id's hash:
  // a lock per state would cost 40 bytes a state, one lock for all would serialize publishers.
  Ref<Message> LastOf(const bus_internal::StateEntry& state) const;
  Ref<Message> ExchangeLast(bus_internal::StateEntry& state, Ref<Message> message) const;
  PublishResult StoreAndPublish(bus_internal::StateEntry& state, const Ref<Message>& message,
                                SourceLocation where) const;

  void NotifySubscribe(const bus_internal::StateEntry& state) const PLEXUS_EXCLUDES(mu_);
  void NotifyUnsubscribe(const bus_internal::StateEntry& state) const PLEXUS_EXCLUDES(mu_);

  static constexpr std::size_t kStripes = 32;

  const std::string name_;
  const Ref<Topic> all_;
  mutable Mutex mu_;
  // An intrusive chained hash table of the states, keyed by id: each state links the next of
  // its bucket, so the table costs a state one pointer here and one in the state. The table
  // owns one reference on each state it holds.
  std::vector<bus_internal::StateEntry*> buckets_ PLEXUS_GUARDED_BY(mu_);
  std::size_t count_ PLEXUS_GUARDED_BY(mu_) = 0;
  // Replaced whole on a change, so a notification copies one pointer under mu_.
  std::shared_ptr<const ObserverList> observers_ PLEXUS_GUARDED_BY(mu_);
  std::uint64_t next_observer_key_ PLEXUS_GUARDED_BY(mu_) = 0;
  mutable sync_internal::AnnotatedMutex last_mu_[kStripes];
};

}  // namespace plexus
