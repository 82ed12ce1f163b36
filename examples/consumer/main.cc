// Uses the installed plexus: a group lock whose destroy handler frees its member, with an
// external lock chained before the group's own.
#include <cstdio>
#include <mutex>

#include "plexus/sync/group_lock.h"

namespace {

// A Lockable that counts how often it is held, to see the chain at work.
struct CountingLock {
  std::mutex mu;
  int held = 0;
  void lock() {
    mu.lock();
    ++held;
  }
  bool try_lock() { return mu.try_lock() ? (++held, true) : false; }
  void unlock() {
    --held;
    mu.unlock();
  }
};

int destroyed = 0;
void OnDestroy(void* member) {
  ++*static_cast<int*>(member);
}

}  // namespace

int main() {
  CountingLock external;
  auto group = plexus::GroupLock::Create({.member = &destroyed, .handler = &OnDestroy});
  group->Chain(external, -1);
  {
    std::scoped_lock guard(*group);
    if (external.held != 1 || !group->HeldByCurrentThread()) return 1;
  }
  if (external.held != 0) return 2;
  if (group.Reset() != plexus::Liveness::kGone || destroyed != 1) return 3;
  std::puts("consumer: ok");
  return 0;
}
