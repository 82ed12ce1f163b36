#include "plexus/sync/internal/parking_lot.h"

namespace plexus::sync_internal {

ParkingSlot g_parking_lot[kParkingSlots];

}  // namespace plexus::sync_internal
