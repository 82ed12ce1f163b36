// Message blocks: a message's block goes back to the thread that made it, whichever thread
// drops the message; blocks freed on another thread come back in batches (and all of them when
// that thread exits); blocks of a maker that exited are given back to the system by whoever
// drops them last; every block starts on cache lines of its own. Under AddressSanitizer messages
// use operator new directly (so that it sees every block): the reuse checks are skipped there, the
// lifetime cases still run.

#include "message_allocator.h"

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "bus/bus_test_support.h"
#include "gtest/gtest.h"
#include "plexus/bus/bus.h"
#include "plexus/core/config.h"
#include "plexus/core/ref.h"

namespace plexus {
namespace {

using plexus_test::IntType;

std::vector<Ref<Message>> MakeMessages(int n, int first_value = 0) {
  std::vector<Ref<Message>> made;
  made.reserve(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) made.push_back(IntType().Make(first_value + i));
  return made;
}

std::set<const Message*> AddressesOf(const std::vector<Ref<Message>>& messages) {
  std::set<const Message*> addresses;
  for (const Ref<Message>& m : messages) addresses.insert(m.get());
  return addresses;
}

// Drops `messages` on a thread of its own, which then exits.
void DropOnAnotherThread(std::vector<Ref<Message>> messages) {
  std::thread dropper([batch = std::move(messages)]() mutable { batch.clear(); });
  dropper.join();
}

TEST(MessageAllocator, BlocksDroppedOnAnotherThreadGoBackToTheirMaker) {
  if (kSanitizeAddress) GTEST_SKIP() << "messages use operator new under AddressSanitizer";
  // A maker of its own, whose block cache holds nothing but what this test made.
  std::thread maker([] {
    // Fewer than one batch, so they come back only when the dropping thread exits.
    std::vector<Ref<Message>> first = MakeMessages(5);
    const std::set<const Message*> first_blocks = AddressesOf(first);
    DropOnAnotherThread(std::move(first));
    std::vector<Ref<Message>> second = MakeMessages(5, 100);
    EXPECT_EQ(AddressesOf(second), first_blocks);
    for (int i = 0; i < 5; ++i) {
      const int* value = IntType().Get(*second[static_cast<std::size_t>(i)]);
      ASSERT_NE(value, nullptr);
      EXPECT_EQ(*value, 100 + i);
    }
  });
  maker.join();
}

TEST(MessageAllocator, FullBatchesGoBackWhileTheDroppingThreadRuns) {
  if (kSanitizeAddress) GTEST_SKIP() << "messages use operator new under AddressSanitizer";
  std::thread maker([] {
    // Seven full batches of 32 and a partial one of 26.
    std::vector<Ref<Message>> first = MakeMessages(250);
    const std::set<const Message*> first_blocks = AddressesOf(first);
    std::atomic<bool> dropped{false};
    std::atomic<bool> checked{false};
    // The dropper stays alive while the maker allocates again: only full batches are back.
    std::thread dropper([&, batch = std::move(first)]() mutable {
      batch.clear();
      dropped.store(true);
      while (!checked.load()) std::this_thread::yield();
    });
    while (!dropped.load()) std::this_thread::yield();
    std::vector<Ref<Message>> second = MakeMessages(200);
    const std::set<const Message*> second_blocks = AddressesOf(second);
    checked.store(true);
    dropper.join();
    // The full batches (224 blocks) are back: the second round is made of the first's blocks
    // only, though the partial batch is still held by the dropper.
    std::vector<const Message*> reused;
    std::set_intersection(first_blocks.begin(), first_blocks.end(), second_blocks.begin(),
                          second_blocks.end(), std::back_inserter(reused));
    EXPECT_EQ(reused.size(), second_blocks.size());
  });
  maker.join();
}

// A payload of `n` bytes, to fill each block size in turn.
template <std::size_t N>
struct Bytes {
  unsigned char data[N];
};

template <std::size_t N>
const TypedMessageType<Bytes<N>>& BytesType() {
  static const auto type =
      TypedMessageType<Bytes<N>>::Create("MessageAllocatorTest.Bytes" + std::to_string(N));
  return type;
}

// The 128-byte units of memory (pairs of cache lines) `m`, of `size` bytes, lies on.
std::pair<std::uintptr_t, std::uintptr_t> PairsOf(const Message* m, std::size_t size) {
  const auto at = reinterpret_cast<std::uintptr_t>(m);
  return {at / 128, (at + size - 1) / 128};
}

// A block is a 16-byte header and the message, and starts on a 128-byte boundary: a message is
// made on one thread and read (and dropped) on another, and every cache line it lies on, or
// shares with another block (the L2 prefetcher fetches lines in aligned pairs), costs a line
// transfer per message.
template <std::size_t N>
void ExpectBlocksOnLinesOfTheirOwn() {
  constexpr std::size_t kSize = sizeof(bus_internal::InlineMessage<Bytes<N>>);
  std::vector<Ref<Message>> made;
  for (int i = 0; i < 64; ++i) made.push_back(BytesType<N>().Make(Bytes<N>{}));
  std::set<std::uintptr_t> pairs;
  for (const Ref<Message>& m : made) {
    EXPECT_EQ(reinterpret_cast<std::uintptr_t>(m.get()) % 128, 16u) << N << "-byte payload";
    const auto [first, last] = PairsOf(m.get(), kSize);
    EXPECT_EQ(last - first + 1, (16 + kSize + 127) / 128) << N << "-byte payload";
    for (std::uintptr_t pair = first; pair <= last; ++pair) {
      EXPECT_TRUE(pairs.insert(pair).second) << "two messages share a pair of lines";
    }
  }
}

TEST(MessageAllocator, EveryBlockSizeStartsOnLinesOfItsOwn) {
  if (kSanitizeAddress) GTEST_SKIP() << "messages use operator new under AddressSanitizer";
  std::thread maker([] {
    ExpectBlocksOnLinesOfTheirOwn<8>();    // 64-byte blocks (carved as 128)
    ExpectBlocksOnLinesOfTheirOwn<16>();   // 128: a 72-byte message (two 8-byte fields)
    ExpectBlocksOnLinesOfTheirOwn<120>();  // 192-byte blocks (carved as 256)
    ExpectBlocksOnLinesOfTheirOwn<180>();  // 256-byte blocks
  });
  maker.join();
}

TEST(MessageAllocator, AThreadThatDropsWhatItMadeAndExitsLeavesNoSlab) {
  if (kSanitizeAddress) GTEST_SKIP() << "messages use operator new under AddressSanitizer";
  const std::int64_t before = bus_internal::LiveMessageSlabs();
  std::thread maker([before] {
    std::vector<Ref<Message>> made = MakeMessages(1000);  // several slabs
    EXPECT_GT(bus_internal::LiveMessageSlabs(), before + 1);
    made.clear();
  });
  maker.join();
  EXPECT_EQ(bus_internal::LiveMessageSlabs(), before);
}

TEST(MessageAllocator, ASlabOutlivesItsThreadUntilItsLastBlockGoesBack) {
  if (kSanitizeAddress) GTEST_SKIP() << "messages use operator new under AddressSanitizer";
  const std::int64_t before = bus_internal::LiveMessageSlabs();
  std::vector<Ref<Message>> made;
  std::thread maker([&made] { made = MakeMessages(1000); });
  maker.join();
  std::vector<Ref<Message>> last;
  last.push_back(std::move(made.back()));
  made.pop_back();
  // Dropped on threads that exit, so that no block waits in a batch of this thread's.
  DropOnAnotherThread(std::move(made));
  EXPECT_EQ(bus_internal::LiveMessageSlabs(), before + 1) << "the last block holds its slab";
  ASSERT_NE(IntType().Get(*last[0]), nullptr);
  EXPECT_EQ(*IntType().Get(*last[0]), 999);
  DropOnAnotherThread(std::move(last));
  EXPECT_EQ(bus_internal::LiveMessageSlabs(), before);
}

TEST(MessageAllocator, MessagesOutliveTheThreadThatMadeThem) {
  std::vector<Ref<Message>> orphans;
  std::thread maker([&orphans] { orphans = MakeMessages(100); });
  maker.join();
  // The maker's cache is closed: these blocks go back to the system as they are dropped, some
  // through this thread's batches.
  for (int i = 0; i < 100; ++i) {
    ASSERT_NE(IntType().Get(*orphans[static_cast<std::size_t>(i)]), nullptr);
    EXPECT_EQ(*IntType().Get(*orphans[static_cast<std::size_t>(i)]), i);
  }
  DropOnAnotherThread(std::move(orphans));
}

TEST(MessageAllocator, AMakerThatExitsWhileItsBlocksWaitInABatchFreesNothingTwice) {
  std::vector<Ref<Message>> made;
  std::mutex mu;
  std::atomic<bool> batched{false};
  std::atomic<bool> maker_gone{false};
  std::thread maker([&] {
    std::lock_guard<std::mutex> lock(mu);
    made = MakeMessages(10);
  });
  std::thread dropper([&] {
    while (true) {
      std::lock_guard<std::mutex> lock(mu);
      if (!made.empty()) break;
    }
    {
      std::lock_guard<std::mutex> lock(mu);
      made.clear();  // ten blocks wait in this thread's batch
    }
    batched.store(true);
    while (!maker_gone.load()) std::this_thread::yield();
    // Exiting hands the batch to a closed cache: the blocks go back to the system.
  });
  maker.join();
  maker_gone.store(true);
  dropper.join();
  EXPECT_TRUE(batched.load());
}

// Several makers and several droppers, threads exiting in every order: under ThreadSanitizer
// this races the batched remote returns against the makers' takes and against cache closing.
TEST(MessageAllocatorStress, MakersAndDroppersComeAndGo) {
  constexpr int kRounds = kSanitizeThread ? 6 : 30;
  constexpr int kMakers = 3;
  constexpr int kDroppers = 3;
  constexpr int kPerMaker = 500;
  for (int round = 0; round < kRounds; ++round) {
    std::mutex mu;
    std::vector<Ref<Message>> shared;
    std::atomic<int> makers_done{0};
    std::atomic<long> checksum{0};
    std::vector<std::thread> threads;
    for (int m = 0; m < kMakers; ++m) {
      threads.emplace_back([&, m] {
        for (int i = 0; i < kPerMaker; ++i) {
          Ref<Message> message = IntType().Make(m * kPerMaker + i);
          std::lock_guard<std::mutex> lock(mu);
          shared.push_back(std::move(message));
        }
        makers_done.fetch_add(1);
      });
    }
    for (int d = 0; d < kDroppers; ++d) {
      threads.emplace_back([&] {
        for (;;) {
          Ref<Message> message;
          {
            std::lock_guard<std::mutex> lock(mu);
            if (!shared.empty()) {
              message = std::move(shared.back());
              shared.pop_back();
            } else if (makers_done.load() == kMakers) {
              return;
            }
          }
          if (message != nullptr) {
            checksum.fetch_add(*IntType().Get(*message));
          } else {
            std::this_thread::yield();
          }
        }
      });
    }
    for (std::thread& t : threads) t.join();
    constexpr long kTotal = long{kMakers} * kPerMaker;
    EXPECT_EQ(checksum.load(), kTotal * (kTotal - 1) / 2);
  }
}

}  // namespace
}  // namespace plexus
