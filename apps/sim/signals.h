// SIGINT and SIGTERM: the first asks the run to stop (no new calls, the calls in flight are
// ended, everything drains, the report is printed); a second exits at once.

#pragma once

namespace sim {

void InstallStopSignals();
// True once a stop signal arrived.
bool StopRequested();

}  // namespace sim
