// Where the operator view (HTTP on loopback: metrics, listings, a live page) is switched on.
// The simulator accepts --listen=ADDR:PORT and checks it here; the view itself is not built
// into this program yet.

#pragma once

#include <string>

namespace sim {

// "" if `address` is a usable ADDR:PORT (an IPv4 address or "localhost"; a port 0-65535, 0
// meaning any free one; not in use), else why not. Used as the --listen validator.
std::string ValidateListenAddress(const std::string& address);

// Switches the operator view on at `address`. Returns false, with a message on stderr, when
// it cannot: this build has no operator view.
bool StartOperatorView(const std::string& address);

}  // namespace sim
