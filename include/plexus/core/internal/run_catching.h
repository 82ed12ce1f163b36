// Internal: the one way plexus runs code it does not own (a task, a callback, a destroy
// handler, a formatter) where an exception must not escape: it is caught, logged with what
// threw and where, and the caller carries on. Callers count failures from the return value.
#pragma once

#include <exception>
#include <string>
#include <utility>

#include "plexus/core/source_location.h"

namespace plexus::core_internal {

// Logs "<what> threw: <reason>" at error level; `error` is null for a non-exception.
void LogThrown(const std::string& what, const std::exception* error, SourceLocation where);

// Runs `fn()`. If it throws, logs `describe()` (called only then, so the hot path builds no
// string) with the exception's message and returns false; otherwise returns true.
template <class Fn, class Describe>
bool RunCatching(Fn&& fn, Describe&& describe, SourceLocation where) {
  try {
    std::forward<Fn>(fn)();
    return true;
  } catch (const std::exception& e) {
    LogThrown(std::forward<Describe>(describe)(), &e, where);
  } catch (...) {
    LogThrown(std::forward<Describe>(describe)(), nullptr, where);
  }
  return false;
}

}  // namespace plexus::core_internal
