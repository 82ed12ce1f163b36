// -----------------------------------------------------------------------------
// plexus/core/source_location.h
// -----------------------------------------------------------------------------
//
// SourceLocation is the caller's file, line and function, captured with a defaulted
// `SourceLocation where = SourceLocation::current()` parameter. Every plexus API that a
// misuse report, a reference holder or a lock-order edge can point at takes one.

#pragma once

#include <source_location>
#include <string>

namespace plexus {

using SourceLocation = std::source_location;

// Returns "file:line" with the directory part of `file` kept as given by the compiler.
std::string FormatLocation(const SourceLocation& where);

// Returns "file:line (function)".
std::string FormatLocationLong(const SourceLocation& where);

}  // namespace plexus
