// exec_internal::TurnWord, the task processor's lock with its turn's flags in the word: when a
// turn may end without the lock, and that the lock still excludes and keeps the flags.

#include "plexus/exec/internal/turn_word.h"

#include <thread>
#include <vector>

#include "exec/exec_test_support.h"
#include "gtest/gtest.h"

namespace plexus::exec_internal {
namespace {

using plexus_test::Scaled;

TEST(TurnWord, ATurnEndsWithoutTheLockOnlyWhenNothingButScheduledIsSet) {
  TurnWord word;
  EXPECT_FALSE(word.MayEndTurn());  // no turn scheduled
  EXPECT_FALSE(word.TryEndTurn());

  word.Acquire();
  word.ReleaseWith(TurnWord::kScheduled, 0);
  EXPECT_TRUE(word.MayEndTurn());
  EXPECT_TRUE(word.TryEndTurn());
  EXPECT_FALSE(word.TryEndTurn());  // ended once

  // A push since the turn looked: the end must take the lock.
  word.Acquire();
  word.ReleaseWith(TurnWord::kScheduled | TurnWord::kPushed, 0);
  EXPECT_FALSE(word.MayEndTurn());
  EXPECT_FALSE(word.TryEndTurn());
  word.Acquire();
  EXPECT_TRUE(word.Has(TurnWord::kScheduled));
  EXPECT_TRUE(word.Has(TurnWord::kPushed));
  word.ReleaseWith(0, TurnWord::kPushed);  // the turn swapped the queue
  EXPECT_TRUE(word.TryEndTurn());

  // Someone waits for the end.
  word.Acquire();
  word.Change(TurnWord::kScheduled | TurnWord::kSlowEnd, 0);
  word.Release();
  EXPECT_FALSE(word.TryEndTurn());
  word.Acquire();
  word.Change(0, TurnWord::kSlowEnd);
  word.Release();
  EXPECT_TRUE(word.TryEndTurn());

  // Held: never, whatever the flags.
  word.Acquire();
  word.Change(TurnWord::kScheduled, 0);
  EXPECT_FALSE(word.TryEndTurn());
  bool taken_elsewhere = true;
  std::thread([&] { taken_elsewhere = word.TryAcquire(); }).join();
  EXPECT_FALSE(taken_elsewhere);
  word.Release();
  EXPECT_TRUE(word.TryEndTurn());
}

// Threads increment a plain counter under the lock (the sleeping path included: more threads
// than cores), each unlock setting or clearing a flag, while another thread keeps ending turns
// without the lock and scheduling them again under it: no increment is lost, and the flags set
// under the lock are there when the holder looks.
TEST(TurnWord, TheLockExcludesWhileTurnsEndWithoutIt) {
  TurnWord word;
  long counter = 0;  // guarded by `word`
  const int per_thread = Scaled(100'000);
  constexpr int kThreads = 4;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < per_thread; ++i) {
        word.Acquire();
        ++counter;
        word.ReleaseWith(t % 2 == 0 ? TurnWord::kPushed : 0, t % 2 == 0 ? 0 : TurnWord::kPushed);
      }
    });
  }
  std::thread turns([&] {
    for (int i = 0; i < per_thread; ++i) {
      if (!word.TryEndTurn()) {
        word.Acquire();
        word.Change(TurnWord::kScheduled, 0);
        EXPECT_TRUE(word.Has(TurnWord::kScheduled));
        word.Release();
      }
    }
  });
  for (std::thread& t : threads) t.join();
  turns.join();
  word.Acquire();
  EXPECT_EQ(counter, static_cast<long>(kThreads) * per_thread);
  word.Release();
}

}  // namespace
}  // namespace plexus::exec_internal
