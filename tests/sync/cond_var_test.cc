// CondVar: waiting on plexus's own mutexes.
#include "plexus/sync/cond_var.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "plexus/sync/mutex.h"

namespace {

using namespace std::chrono_literals;

template <class M>
void ExpectHandOff() {
  M mu;
  plexus::CondVar cv;
  int stage = 0;
  std::thread other([&] {
    plexus::MutexLock lock(mu);
    while (stage != 1) cv.Wait(mu);
    stage = 2;
    cv.NotifyAll();
  });
  {
    plexus::MutexLock lock(mu);
    stage = 1;
    cv.NotifyAll();
    while (stage != 2) cv.Wait(mu);
    EXPECT_EQ(stage, 2);
  }
  other.join();
}

TEST(CondVar, WaitOnAMutexIsWokenByANotify) {
  ExpectHandOff<plexus::Mutex>();
}

TEST(CondVar, WaitOnTheInternalAnnotatedMutexIsWokenByANotify) {
  ExpectHandOff<plexus::sync_internal::AnnotatedMutex>();
}

TEST(CondVar, WaitForReportsATimeoutAndHoldsTheMutexAgain) {
  plexus::Mutex mu;
  plexus::CondVar cv;
  plexus::MutexLock lock(mu);
  bool notified = true;
  // Nobody notifies: the loop ends only by a timeout (a spurious wake-up goes round again).
  while (notified) notified = cv.WaitFor(mu, 1ms);
  EXPECT_FALSE(notified);
  // The mutex is held again: another thread cannot take it.
  bool other_got_it = true;
  std::thread([&] {
    other_got_it = false;
    if (mu.TryAcquire()) {
      other_got_it = true;
      mu.Release();
    }
  }).join();
  EXPECT_FALSE(other_got_it);
}

TEST(CondVar, WaitUntilReturnsTrueWhenNotifiedBeforeTheDeadline) {
  plexus::sync_internal::AnnotatedMutex mu;
  plexus::CondVar cv;
  bool ready = false;
  std::thread other([&] {
    plexus::MutexLock lock(mu);
    ready = true;
    cv.NotifyOne();
  });
  {
    plexus::MutexLock lock(mu);
    // A deadline far enough away that only a notify (or a spurious wake) ends the wait.
    const auto deadline = std::chrono::steady_clock::now() + 1h;
    while (!ready) EXPECT_TRUE(cv.WaitUntil(mu, deadline));
  }
  other.join();
}

}  // namespace
