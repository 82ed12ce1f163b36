// -----------------------------------------------------------------------------
// plexus/bus/bus.h
// -----------------------------------------------------------------------------
//
// The message bus (the `bus` layer): Asterisk's Stasis on plexus's executors. Include
// this for all of it; json.h (nlohmann-json formatters) is separate and optional.

#pragma once

#include "plexus/bus/bus_stats.h"
#include "plexus/bus/cache.h"
#include "plexus/bus/cache_pattern.h"
#include "plexus/bus/caching_topic.h"
#include "plexus/bus/message.h"
#include "plexus/bus/message_router.h"
#include "plexus/bus/message_type.h"
#include "plexus/bus/node_id.h"
#include "plexus/bus/state_manager.h"
#include "plexus/bus/subscription.h"
#include "plexus/bus/subscription_change.h"
#include "plexus/bus/topic.h"
#include "plexus/bus/topic_pool.h"
