// plexus_sim: the project's main program, run by `make demo`. A PBX-like call workload on
// every layer of plexus at once, verified by invariants at the end.
//
// The parts: options.h (flags), workload.h (what each call does, from the --seed value), engine.h
// (calls: dialog and transaction group locks, timers, per-call cached topics), generator.h
// (arrivals and admission), consumers.h (the routers: CDR to SQLite, device states, the JSON
// event stream), cdr_writer.h (SQLite), alerts.h, progress.h, signals.h, operator_view.h,
// report.h (the report and the invariants), run.h (one run, start to finish).

#include "options.h"
#include "run.h"

int main(int argc, char** argv) {
  const sim::Parsed parsed = sim::ParseOptions(argc, argv);
  if (!parsed.options) return parsed.exit_status;
  return sim::Run(*parsed.options);
}
