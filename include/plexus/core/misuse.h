// -----------------------------------------------------------------------------
// plexus/core/misuse.h
// -----------------------------------------------------------------------------
//
// How plexus reports programming errors (misuse): releasing a lock the thread does not hold,
// dropping a reference that was never taken, joining a subscription from its own callback.
// Expected outcomes ("gone", "would block", "queue full") are return values, never misuse.
//
// A misuse report always names the caller's file and line. What happens next is the process's
// choice (SetMisuseAction):
//
//   kThrow   (default) log at error level, then throw UsageError. The operation has not been
//            performed; state is as before the call. Note that a throw from a function that
//            is called by a destructor or a noexcept function terminates the process, which is
//            the loud outcome one wants in that case.
//   kLog     log at error level and return; the operation is refused and the call returns
//            its failure value.
//   kAbort   log at error level and abort().
//
// Thread safety: thread-safe.

#pragma once

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

#include "plexus/core/source_location.h"

namespace plexus {

// Thrown for misuse when the action is kThrow. what() includes "file:line: ".
class UsageError : public std::logic_error {
 public:
  UsageError(const std::string& message, SourceLocation where);
  const SourceLocation& Where() const noexcept { return where_; }

 private:
  SourceLocation where_;
};

enum class MisuseAction { kThrow, kLog, kAbort };

// Returns the previous action.
MisuseAction SetMisuseAction(MisuseAction action);
MisuseAction GetMisuseAction();

// Number of misuse reports since process start (tests and operators read it).
std::uint64_t MisuseReportCount();

// Reports a misuse at `where` and acts as configured. Returns only for kLog.
void ReportMisuse(std::string_view message, SourceLocation where);

}  // namespace plexus
