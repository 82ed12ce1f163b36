// One simulator run, from the first arrival to the report.

#pragma once

#include "options.h"

namespace sim {

// Runs the workload `options` describe, prints the report on stdout, and returns the exit
// status: 0 when every invariant held, 1 when one failed (named in the report), 2 when the
// run could not start (a file that cannot be opened, an operator view that cannot start).
int Run(const Options& options);

}  // namespace sim
