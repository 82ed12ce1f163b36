#include "plexus/core/clock.h"
