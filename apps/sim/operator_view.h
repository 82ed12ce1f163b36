// Where the operator view (HTTP on loopback: metrics, listings, a live page) is switched on.
// The simulator accepts --listen=ADDR:PORT, checks it here, and starts plexus::ops's view on it.

#pragma once

#include <memory>
#include <string>
#include <vector>

#include "plexus/ops/section.h"

namespace sim {

// "" if `address` is a usable ADDR:PORT (an IPv4 address or "localhost"; a port 0-65535, 0
// meaning any free one; not in use), else why not. Used as the --listen validator.
std::string ValidateListenAddress(const std::string& address);

// A running operator view; it stops (its threads joined, its socket closed) when the last copy
// of the handle goes.
using OperatorViewHandle = std::shared_ptr<void>;

// Switches the operator view on at `address` and says where on stderr ("plexus_sim: operator view
// on http://ADDR:PORT"). Null, with a message on stderr, when it cannot start.
// `sections`: the simulator's own parts of the view (the cluster's, with --nats).
OperatorViewHandle StartOperatorView(const std::string& address,
                                     std::vector<plexus::ops::Section> sections = {});

}  // namespace sim
