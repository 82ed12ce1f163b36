#include "plexus/core/log.h"

#include <atomic>
#include <cstdio>
#include <mutex>
#include <string>

#include "plexus/core/internal/run_catching.h"

namespace plexus {
namespace {

void StderrSink(const LogRecord& record, void* /*context*/) {
  // One fprintf per record keeps lines from different threads whole (stdio locks the stream).
  std::fprintf(stderr, "plexus %s %s:%u: %.*s\n", LogLevelName(record.level).data(),
               record.where.file_name(), static_cast<unsigned>(record.where.line()),
               static_cast<int>(record.message.size()), record.message.data());
}

// The sink and its context change together, so they are published as one pair under a mutex;
// logging is not a hot path.
std::mutex& SinkMutex() {
  static std::mutex mu;
  return mu;
}
LogSinkBinding g_binding{&StderrSink, nullptr};
std::atomic<LogLevel> g_min_level{LogLevel::kInfo};

}  // namespace

LogSinkBinding SetLogSink(LogSink sink, void* context) {
  std::lock_guard lock(SinkMutex());
  LogSinkBinding previous = g_binding;
  g_binding = LogSinkBinding{sink ? sink : &StderrSink, sink ? context : nullptr};
  return previous;
}

void SetMinLogLevel(LogLevel level) {
  g_min_level.store(level, std::memory_order_relaxed);
}

void Log(LogLevel level, std::string_view message, SourceLocation where) {
  if (level < g_min_level.load(std::memory_order_relaxed)) return;
  LogSinkBinding binding;
  {
    std::lock_guard lock(SinkMutex());
    binding = g_binding;
  }
  binding.sink(LogRecord{level, message, where}, binding.context);
}

std::string_view LogLevelName(LogLevel level) {
  switch (level) {
    case LogLevel::kDebug:
      return "DEBUG";
    case LogLevel::kInfo:
      return "INFO";
    case LogLevel::kWarning:
      return "WARNING";
    case LogLevel::kError:
      return "ERROR";
  }
  return "?";
}

namespace core_internal {

void LogThrown(const std::string& what, const std::exception* error, SourceLocation where) {
  if (error != nullptr) {
    Log(LogLevel::kError, what + " threw: " + error->what(), where);
  } else {
    Log(LogLevel::kError, what + " threw a non-exception", where);
  }
}

}  // namespace core_internal

}  // namespace plexus
