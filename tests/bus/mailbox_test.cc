// Mailbox, the queue of a subscription that is not synchronous, driven directly: one thread
// plays the producers and the consumer's turn, so each step of the contract (mailbox.h) is
// checked in isolation: order and positions, turns scheduled once, the bounded policies, the
// final message, the congestion alert, and the references it holds.

#include "mailbox.h"

#include <cstdint>
#include <string>
#include <vector>

#include "bus/bus_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/message.h"
#include "plexus/core/ref.h"
#include "plexus/exec/task_processor.h"

namespace plexus::bus_internal {
namespace {

using plexus_test::IntType;

Mailbox Unbounded(std::uint32_t high_water = 1000, std::uint32_t low_water = 900) {
  return Mailbox(QueuePolicy::kUnbounded, 1024, high_water, low_water);
}

std::vector<Ref<Message>> MakeMessages(int n) {
  std::vector<Ref<Message>> messages;
  for (int i = 0; i < n; ++i) messages.push_back(IntType().Make(i));
  return messages;
}

// One push, with the tallies a fan-out would keep, gathered for the checks.
struct Pushed {
  Mailbox::Outcome outcome;
  bool schedule;
  bool dropped;
  bool alert_changed;
  std::uint64_t seq;
};

// The reference the queue keeps is taken here, as a fan-out takes it, and dropped again when
// the queue did not take the message.
Pushed Push(Mailbox& mailbox, const Ref<Message>& message) {
  std::uint64_t seq = 0;
  std::uint32_t dropped = 0;
  bool alert_changed = false;
  message->AddRef(SourceLocation::current(), &mailbox);
  const Mailbox::PushResult r = mailbox.Push(message.get(), &seq, dropped, alert_changed);
  if (r.outcome != Mailbox::Outcome::kQueued) message->DecRef(SourceLocation::current(), &mailbox);
  return {r.outcome, r.schedule, dropped != 0, alert_changed, seq};
}

Pushed PushFinal(Mailbox& mailbox, const Ref<Message>& message) {
  bool alert_changed = false;
  const Mailbox::PushResult r = mailbox.PushFinal(message.get(), alert_changed);
  return {r.outcome, r.schedule, false, alert_changed, 0};
}

// Takes everything queued, as a turn would, letting go of each reference once "handled".
std::vector<int> TakeAll(Mailbox& mailbox) {
  std::vector<int> values;
  Message* batch[Mailbox::kTakeBatch];
  while (const std::uint32_t n = mailbox.Take(batch)) {
    for (std::uint32_t i = 0; i < n; ++i) {
      values.push_back(*IntType().Get(*batch[i]));
      mailbox.NoteHandled();
      batch[i]->DecRef(SourceLocation::current(), &mailbox);
    }
    mailbox.NoteBatchDone();
  }
  return values;
}

TEST(Mailbox, QueuesInOrderAcrossSegmentsAndNumbersEachMessage) {
  Mailbox mailbox = Unbounded();
  const auto messages = MakeMessages(100);  // several segments, and two batches
  for (int i = 0; i < 100; ++i) {
    const Pushed pushed = Push(mailbox, messages[i]);
    EXPECT_EQ(pushed.outcome, Mailbox::Outcome::kQueued);
    EXPECT_EQ(pushed.seq, static_cast<std::uint64_t>(i + 1));
  }
  EXPECT_EQ(mailbox.Depth(), 100u);
  EXPECT_EQ(mailbox.MaxDepth(), 100u);
  EXPECT_EQ(mailbox.Queued(), 100u);
  Message* batch[Mailbox::kTakeBatch];
  EXPECT_EQ(mailbox.Take(batch), Mailbox::kTakeBatch);
  for (std::uint32_t i = 0; i < Mailbox::kTakeBatch; ++i) {
    EXPECT_EQ(*IntType().Get(*batch[i]), static_cast<int>(i));
    mailbox.NoteHandled();
    batch[i]->DecRef(SourceLocation::current(), &mailbox);
  }
  mailbox.NoteBatchDone();
  EXPECT_EQ(mailbox.DoneUpto(), Mailbox::kTakeBatch);
  std::vector<int> rest = TakeAll(mailbox);
  ASSERT_EQ(rest.size(), 100u - Mailbox::kTakeBatch);
  EXPECT_EQ(rest.front(), static_cast<int>(Mailbox::kTakeBatch));
  EXPECT_EQ(rest.back(), 99);
  EXPECT_EQ(mailbox.Depth(), 0u);
  EXPECT_EQ(mailbox.DoneUpto(), 100u);
}

TEST(Mailbox, OnlyThePushThatFindsNoTurnSchedulesOne) {
  Mailbox mailbox = Unbounded();
  const auto messages = MakeMessages(3);
  EXPECT_TRUE(Push(mailbox, messages[0]).schedule);
  EXPECT_FALSE(Push(mailbox, messages[1]).schedule);
  TakeAll(mailbox);
  EXPECT_TRUE(mailbox.LooksEmpty());
  EXPECT_TRUE(mailbox.EndTurn());
  EXPECT_TRUE(Push(mailbox, messages[2]).schedule);
  TakeAll(mailbox);
}

TEST(Mailbox, AMessageThatSawTheTurnScheduledKeepsTheTurnGoing) {
  Mailbox mailbox = Unbounded();
  const auto messages = MakeMessages(2);
  ASSERT_TRUE(Push(mailbox, messages[0]).schedule);
  TakeAll(mailbox);
  // Arrives while the turn still runs: schedules nothing, so the ending turn must go on.
  EXPECT_FALSE(Push(mailbox, messages[1]).schedule);
  EXPECT_FALSE(mailbox.LooksEmpty());
  EXPECT_FALSE(mailbox.EndTurn());
  EXPECT_EQ(TakeAll(mailbox), std::vector<int>{1});
  EXPECT_TRUE(mailbox.EndTurn());
}

TEST(Mailbox, ACancelledTurnIsScheduledAgainByTheNextPush) {
  Mailbox mailbox = Unbounded();
  const auto messages = MakeMessages(2);
  ASSERT_TRUE(Push(mailbox, messages[0]).schedule);
  mailbox.CancelTurn();
  EXPECT_TRUE(Push(mailbox, messages[1]).schedule);
  EXPECT_EQ(TakeAll(mailbox), (std::vector<int>{0, 1}));
}

TEST(Mailbox, DropOldestDropsTheHeadToTakeTheNewMessage) {
  Mailbox mailbox(QueuePolicy::kDropOldest, 2, 1000, 900);
  const auto messages = MakeMessages(5);
  int dropped = 0;
  for (const Ref<Message>& m : messages) {
    const Pushed pushed = Push(mailbox, m);
    EXPECT_EQ(pushed.outcome, Mailbox::Outcome::kQueued);
    dropped += pushed.dropped ? 1 : 0;
  }
  // Capacity 2 besides the one being handled: three held, the two oldest dropped.
  EXPECT_EQ(dropped, 2);
  EXPECT_EQ(mailbox.Dropped(), 2u);
  EXPECT_EQ(mailbox.Depth(), 3u);
  EXPECT_EQ(TakeAll(mailbox), (std::vector<int>{2, 3, 4}));
  for (const Ref<Message>& m : messages) EXPECT_EQ(m->RefCount(), 1);
}

TEST(Mailbox, DropOldestDropsTheNewMessageWhenEveryOlderOneIsBeingHandled) {
  Mailbox mailbox(QueuePolicy::kDropOldest, 1, 1000, 900);
  const auto messages = MakeMessages(3);
  Push(mailbox, messages[0]);
  Push(mailbox, messages[1]);
  Message* batch[Mailbox::kTakeBatch];
  ASSERT_EQ(mailbox.Take(batch), 2u);  // taken, not yet handled: both still count as held
  const Pushed pushed = Push(mailbox, messages[2]);
  EXPECT_EQ(pushed.outcome, Mailbox::Outcome::kDropped);
  EXPECT_TRUE(pushed.dropped);
  EXPECT_EQ(messages[2]->RefCount(), 1);  // no reference kept
  for (int i = 0; i < 2; ++i) {
    mailbox.NoteHandled();
    batch[i]->DecRef(SourceLocation::current(), &mailbox);
  }
}

TEST(Mailbox, RejectNewRefusesWhenFull) {
  Mailbox mailbox(QueuePolicy::kRejectNew, 1, 1000, 900);
  const auto messages = MakeMessages(3);
  EXPECT_EQ(Push(mailbox, messages[0]).outcome, Mailbox::Outcome::kQueued);
  EXPECT_EQ(Push(mailbox, messages[1]).outcome, Mailbox::Outcome::kQueued);
  const Pushed pushed = Push(mailbox, messages[2]);
  EXPECT_EQ(pushed.outcome, Mailbox::Outcome::kRejected);
  EXPECT_FALSE(pushed.dropped);
  EXPECT_EQ(mailbox.Rejected(), 1u);
  EXPECT_EQ(messages[2]->RefCount(), 1);
  EXPECT_EQ(TakeAll(mailbox), (std::vector<int>{0, 1}));
}

TEST(Mailbox, TheFinalMessageIsQueuedWhateverTheDepthAndClosesTheMailbox) {
  Mailbox mailbox(QueuePolicy::kRejectNew, 1, 1000, 900);
  const auto messages = MakeMessages(4);
  Push(mailbox, messages[0]);
  Push(mailbox, messages[1]);
  EXPECT_EQ(PushFinal(mailbox, messages[2]).outcome, Mailbox::Outcome::kQueued);
  EXPECT_EQ(Push(mailbox, messages[3]).outcome, Mailbox::Outcome::kClosed);
  EXPECT_EQ(messages[3]->RefCount(), 1);
  EXPECT_EQ(TakeAll(mailbox), (std::vector<int>{0, 1, 2}));
}

TEST(Mailbox, RaisesTheAlertAtHighWaterAndClearsItAtLowWater) {
  std::vector<std::pair<bool, std::size_t>> reports;
  SetTaskProcessorAlertHandler([&](const TaskProcessorAlert& alert) {
    if (alert.processor == "bus/mailbox-test") reports.emplace_back(alert.raised, alert.depth);
  });
  Mailbox mailbox = Unbounded(/*high_water=*/4, /*low_water=*/2);
  const auto messages = MakeMessages(6);
  for (int i = 0; i < 3; ++i) EXPECT_FALSE(Push(mailbox, messages[i]).alert_changed);
  EXPECT_TRUE(Push(mailbox, messages[3]).alert_changed);
  EXPECT_TRUE(mailbox.Alerted());
  mailbox.ReportAlertChanges("mailbox-test");
  EXPECT_FALSE(Push(mailbox, messages[4]).alert_changed);  // raised once

  Message* batch[Mailbox::kTakeBatch];
  ASSERT_EQ(mailbox.Take(batch), 5u);
  for (int i = 0; i < 5; ++i) {
    mailbox.NoteHandled();
    batch[i]->DecRef(SourceLocation::current(), &mailbox);
    // Depth 5 - (i + 1): still above low water (2) until three were handled.
    EXPECT_EQ(mailbox.RecheckAlert(), i == 2) << i;
  }
  EXPECT_FALSE(mailbox.Alerted());
  mailbox.ReportAlertChanges("mailbox-test");
  mailbox.ReportAlertChanges("mailbox-test");  // nothing new: nothing reported
  SetTaskProcessorAlertHandler(nullptr);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[0], std::make_pair(true, std::size_t{4}));
  EXPECT_EQ(reports[1], std::make_pair(false, std::size_t{2}));
}

TEST(Mailbox, ReleasesWhatIsStillQueuedWhenItGoes) {
  const auto messages = MakeMessages(20);
  {
    Mailbox mailbox = Unbounded();
    for (const Ref<Message>& m : messages) Push(mailbox, m);
    for (const Ref<Message>& m : messages) EXPECT_EQ(m->RefCount(), 2);
  }
  for (const Ref<Message>& m : messages) EXPECT_EQ(m->RefCount(), 1);
}

}  // namespace
}  // namespace plexus::bus_internal
