// The registry of live timer heaps behind ListTimerHeaps. Private to the exec library.

#pragma once

namespace plexus {

class TimerHeap;

namespace exec_internal {

// Called by the heap's constructor and destructor.
void RegisterTimerHeap(TimerHeap* heap);
void UnregisterTimerHeap(TimerHeap* heap);

}  // namespace exec_internal
}  // namespace plexus
