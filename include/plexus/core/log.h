// -----------------------------------------------------------------------------
// plexus/core/log.h
// -----------------------------------------------------------------------------
//
// The logging hook. plexus's core depends on nothing beyond the standard library, so it does
// not choose a logger: it hands each record to a sink the application installs (spdlog,
// syslog, Asterisk's ast_log, ...). The default sink writes one line per record to stderr.
//
//   LogLevel     severity of a record.
//   LogRecord    what a sink receives: level, message, the source location it is about.
//   SetLogSink   installs a sink (or restores the default with nullptr).
//   Log          formats nothing itself; callers pass a finished message.
//
// Thread safety: thread-safe. SetLogSink may be called while other threads log; a record is
// delivered either to the old or to the new sink. A sink must itself be thread-safe and must
// not call back into plexus APIs that may log (it would recurse).

#pragma once

#include <string_view>

#include "plexus/core/source_location.h"

namespace plexus {

enum class LogLevel { kDebug, kInfo, kWarning, kError };

struct LogRecord {
  LogLevel level;
  std::string_view message;
  SourceLocation where;  // the code the record is about (often a caller's location)
};

// A sink receives every record at or above the minimum level. `context` is the pointer given
// to SetLogSink, passed back unchanged.
using LogSink = void (*)(const LogRecord& record, void* context);

// Installs `sink` (nullptr restores the stderr sink). Returns the previous sink and context.
struct LogSinkBinding {
  LogSink sink;
  void* context;
};
LogSinkBinding SetLogSink(LogSink sink, void* context = nullptr);

// Records below `level` are dropped before they reach the sink. Default: kInfo.
void SetMinLogLevel(LogLevel level);

void Log(LogLevel level, std::string_view message,
         SourceLocation where = SourceLocation::current());

std::string_view LogLevelName(LogLevel level);

}  // namespace plexus
