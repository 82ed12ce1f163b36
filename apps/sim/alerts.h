// AlertLog records the queue alerts of the run (task processors and subscriptions, through
// the executor's process-wide alert handler), for the progress line and the report. While it
// lives it is also the log sink: plexus logs a warning at every alert raised, which an
// overloaded run would repeat thousands of times; the first few are printed, the rest
// counted in the report.
//
// Thread safety: thread-safe; the handler runs on whichever thread crossed a level.

#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "plexus/core/thread_annotations.h"
#include "plexus/sync/mutex.h"

namespace sim {

class AlertLog {
 public:
  // Installs the handler; the destructor removes it.
  AlertLog();
  ~AlertLog();
  AlertLog(const AlertLog&) = delete;
  AlertLog& operator=(const AlertLog&) = delete;

  std::uint64_t Raised() const PLEXUS_EXCLUDES(mu_);
  // Queues in alert now, process-wide.
  std::size_t Active() const;
  // The queues that raised an alert, each once, in the order they first did (at most 32).
  std::vector<std::string> Queues() const PLEXUS_EXCLUDES(mu_);

 private:
  mutable plexus::Mutex mu_;
  std::uint64_t raised_ PLEXUS_GUARDED_BY(mu_) = 0;
  std::vector<std::string> queues_ PLEXUS_GUARDED_BY(mu_);
};

}  // namespace sim
