// Live timer heaps, for ListTimerHeaps. Heaps are few and long-lived, so one leaf lock over a
// vector is enough. The registry keeps plain pointers; a listing takes a reference only on a
// heap whose count is still above zero (TryAddRef), and a heap leaves the registry in its
// destructor, before its memory is freed.

#include "timer_heap_registry.h"

#include <algorithm>
#include <vector>

#include "plexus/exec/timer_heap.h"
#include "plexus/sync/mutex.h"

namespace plexus {
namespace {

struct Registry {
  sync_internal::AnnotatedMutex mu;
  std::vector<TimerHeap*> heaps PLEXUS_GUARDED_BY(mu);
};

// Never destroyed: heaps may be freed by threads still running during static destruction.
Registry& TheRegistry() {
  static auto* registry = new Registry();
  return *registry;
}

}  // namespace

namespace exec_internal {

void RegisterTimerHeap(TimerHeap* heap) {
  Registry& r = TheRegistry();
  MutexLock lock(r.mu);
  r.heaps.push_back(heap);
}

void UnregisterTimerHeap(TimerHeap* heap) {
  Registry& r = TheRegistry();
  MutexLock lock(r.mu);
  r.heaps.erase(std::remove(r.heaps.begin(), r.heaps.end(), heap), r.heaps.end());
}

}  // namespace exec_internal

std::vector<TimerHeapStats> ListTimerHeaps() {
  std::vector<Ref<TimerHeap>> alive;
  {
    Registry& r = TheRegistry();
    MutexLock lock(r.mu);
    alive.reserve(r.heaps.size());
    for (TimerHeap* heap : r.heaps) {
      if (heap->TryAddRef()) alive.push_back(Ref<TimerHeap>::Adopt(heap));
    }
  }
  // Read with the registry let go: Stats takes the heap's lock, and dropping the last
  // reference (below) joins the heap's thread and frees it, which unregisters it.
  std::vector<TimerHeapStats> out;
  out.reserve(alive.size());
  for (const Ref<TimerHeap>& heap : alive) out.push_back(heap->Stats());
  return out;
}

}  // namespace plexus
