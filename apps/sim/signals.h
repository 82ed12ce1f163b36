// SIGINT and SIGTERM: the first asks the run to stop (no new calls, the calls in flight are
// ended, everything drains, the report is printed); a second exits at once, with
// kSecondSignalStatus and no report, whatever the drain was doing.

#pragma once

namespace sim {

// 128 + SIGINT, as a shell reports a program that SIGINT killed: distinct from the run's own
// statuses (0 invariants held, 1 one failed, 2 bad flag).
inline constexpr int kSecondSignalStatus = 130;

void InstallStopSignals();
// True once a stop signal arrived.
bool StopRequested();

}  // namespace sim
