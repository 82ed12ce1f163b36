// Message: a message needs a type and a payload of the type's payload type, reports its type,
// payload and node, shares its payload with every other holder, and is stamped with a timestamp
// read from FastWallClock (BUS02).

#include <atomic>
#include <chrono>
#include <memory>
#include <string>
#include <utility>

#include "bus/bus_test_support.h"
#include "core/test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/clock.h"
#include "plexus/core/misuse.h"
#include "plexus/core/ref.h"

namespace plexus {
namespace {

using plexus_test::IntType;
using plexus_test::ScopedMisuseAction;
using plexus_test::StringType;

// -----------------------------------------------------------------------------------------
// BUS02 Messages
// -----------------------------------------------------------------------------------------

// A shared payload that says when it is destroyed.
class SharedPayload final : public RefCounted {
 public:
  SharedPayload(std::string value, std::shared_ptr<std::atomic<bool>> destroyed)
      : text(std::move(value)), destroyed_(std::move(destroyed)) {}
  ~SharedPayload() override { destroyed_->store(true); }
  const std::string text;

 private:
  std::shared_ptr<std::atomic<bool>> destroyed_;
};

const MessageType* Bus02Type() {
  static const MessageType* type = MessageType::Create("BusAcceptance.BUS02");
  return type;
}

TEST(BusAcceptance, BUS02_MessageNeedsTypeAndPayload) {
  PLEXUS_EXPECT_MISUSE_HERE(Message::Create(nullptr, std::string("data")));
  PLEXUS_EXPECT_MISUSE_HERE(Message::Create(Bus02Type(), Ref<SharedPayload>()));

  ScopedMisuseAction log(MisuseAction::kLog);
  EXPECT_EQ(Message::Create(nullptr, 42), nullptr);
  EXPECT_EQ(Message::Create(Bus02Type(), Ref<SharedPayload>()), nullptr);
  // A type bound to another payload type refuses the message.
  EXPECT_EQ(Message::Create(IntType().get(), std::string("not an int")), nullptr);
}

TEST(BusAcceptance, BUS02_MessagesReportTypePayloadAndNode) {
  // This API makes the local node the default (as Asterisk's stasis_message_create does):
  // a message made without a node id carries NodeId::Local(); NodeId::None() is explicit.
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  Ref<SharedPayload> payload = MakeRef<SharedPayload>("shared", destroyed);
  NodeId::Bytes ff;
  ff.fill(0xFF);
  const NodeId foreign(ff);

  Ref<Message> remote = Message::Create(Bus02Type(), payload, foreign);
  Ref<Message> local = Message::Create(Bus02Type(), payload);
  Ref<Message> none = Message::Create(Bus02Type(), payload, NodeId::None());
  ASSERT_NE(remote, nullptr);
  ASSERT_NE(local, nullptr);
  ASSERT_NE(none, nullptr);

  for (const Ref<Message>& m : {remote, local, none}) {
    EXPECT_EQ(&m->Type(), Bus02Type());
    EXPECT_EQ(m->PayloadPointer(), payload.get());
    EXPECT_EQ(m->As<SharedPayload>(), payload.get());
    EXPECT_EQ(m->As<std::string>(), nullptr);
    EXPECT_EQ(m->PayloadType(), typeid(SharedPayload));
  }
  EXPECT_EQ(remote->Node(), foreign);
  EXPECT_EQ(remote->Node().ToString(), "ff:ff:ff:ff:ff:ff");
  EXPECT_FALSE(remote->Node().IsLocal());
  EXPECT_FALSE(remote->Node().IsNone());
  EXPECT_EQ(local->Node(), NodeId::Local());
  EXPECT_TRUE(local->Node().IsLocal());
  EXPECT_TRUE(none->Node().IsNone());
  EXPECT_EQ(none->Node().ToString(), "none");

  // Each message holds the payload; the caller holds it too.
  EXPECT_EQ(payload->RefCount(), 4);
}

TEST(BusAcceptance, BUS02_PayloadLivesAsLongAsSomeHolder) {
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  Ref<SharedPayload> payload = MakeRef<SharedPayload>("shared", destroyed);
  Ref<Message> first = Message::Create(Bus02Type(), payload);
  Ref<Message> second = Message::Create(Bus02Type(), payload, NodeId::None());
  ASSERT_NE(first, nullptr);
  ASSERT_NE(second, nullptr);

  payload = nullptr;  // the caller lets go first
  EXPECT_FALSE(destroyed->load());
  EXPECT_EQ(first->As<SharedPayload>()->text, "shared");
  first = nullptr;
  EXPECT_FALSE(destroyed->load());
  EXPECT_EQ(second->As<SharedPayload>()->text, "shared");
  second = nullptr;  // the last holder
  EXPECT_TRUE(destroyed->load());

  // And the other way round: the messages go first, the caller keeps the payload.
  auto destroyed2 = std::make_shared<std::atomic<bool>>(false);
  Ref<SharedPayload> kept = MakeRef<SharedPayload>("kept", destroyed2);
  {
    Ref<Message> m = Message::Create(Bus02Type(), kept);
    ASSERT_NE(m, nullptr);
    EXPECT_EQ(kept->RefCount(), 2);
  }
  EXPECT_FALSE(destroyed2->load());
  EXPECT_EQ(kept->RefCount(), 1);
  EXPECT_EQ(kept->text, "kept");
  kept = nullptr;
  EXPECT_TRUE(destroyed2->load());
}

// Messages are stamped with FastWallClock (core/clock.h), whose readings never go backwards on
// one thread: the instants around the creation are read from it too.
TEST(BusAcceptance, BUS02_TimestampLiesBetweenTheInstantsAround) {
  for (int i = 0; i < 100; ++i) {
    const WallClock::time_point before = FastWallClock::now();
    Ref<Message> m = StringType().Make("when");
    const WallClock::time_point after = FastWallClock::now();
    ASSERT_NE(m, nullptr);
    EXPECT_LE(before, m->Timestamp());
    EXPECT_LE(m->Timestamp(), after);
  }
  const WallClock::time_point before = FastWallClock::now();
  auto destroyed = std::make_shared<std::atomic<bool>>(false);
  Ref<Message> shared = Message::Create(Bus02Type(), MakeRef<SharedPayload>("shared", destroyed));
  const WallClock::time_point after = FastWallClock::now();
  ASSERT_NE(shared, nullptr);
  EXPECT_LE(before, shared->Timestamp());
  EXPECT_LE(shared->Timestamp(), after);
}

// A message that reports another one is stamped with the instant its maker gives.
TEST(BusAcceptance, BUS02_AStampedMessageCarriesTheGivenInstant) {
  const WallClock::time_point when = WallClock::time_point(std::chrono::seconds(1700000000));
  Ref<Message> m = Message::CreateStamped(StringType().get(), std::string("then"), when);
  ASSERT_NE(m, nullptr);
  EXPECT_EQ(m->Timestamp(), when);
  EXPECT_EQ(*m->As<std::string>(), "then");
  EXPECT_EQ(m->Node(), NodeId::Local());
}

}  // namespace
}  // namespace plexus
