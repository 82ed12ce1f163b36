// Test helpers shared by the core and sync suites: capturing log output, switching global
// settings for one test and restoring them, checking misuse reports, and waiting on a
// condition with a generous bound that only fires on failure (never a sleep).

#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "gtest/gtest.h"
#include "plexus/core/log.h"
#include "plexus/core/misuse.h"
#include "plexus/core/ref_debug.h"
#include "plexus/core/source_location.h"
#include "plexus/core/thread_annotations.h"

namespace plexus_test {

// One log record, copied out of the sink (the record's message is only a view).
struct CapturedRecord {
  plexus::LogLevel level;
  std::string message;
  std::string file;
  unsigned line;
};

// Installs a sink that keeps every record for the lifetime of the object, then restores the
// previous sink.
class LogCapture {
 public:
  LogCapture() : previous_(plexus::SetLogSink(&LogCapture::Sink, this)) {}
  ~LogCapture() { plexus::SetLogSink(previous_.sink, previous_.context); }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;

  std::vector<CapturedRecord> Records() const {
    std::lock_guard lock(mu_);
    return records_;
  }

  // Every message, one per line.
  std::string Text() const {
    std::string out;
    for (const CapturedRecord& r : Records()) out += r.message + "\n";
    return out;
  }

 private:
  static void Sink(const plexus::LogRecord& record, void* context) {
    auto* self = static_cast<LogCapture*>(context);
    std::lock_guard lock(self->mu_);
    self->records_.push_back(
        CapturedRecord{record.level, std::string(record.message),
                       record.where.file_name() != nullptr ? record.where.file_name() : "",
                       static_cast<unsigned>(record.where.line())});
  }

  plexus::LogSinkBinding previous_;
  mutable std::mutex mu_;
  std::vector<CapturedRecord> records_;
};

// Sets the misuse action for one scope.
class ScopedMisuseAction {
 public:
  explicit ScopedMisuseAction(plexus::MisuseAction action)
      : previous_(plexus::SetMisuseAction(action)) {}
  ~ScopedMisuseAction() { plexus::SetMisuseAction(previous_); }
  ScopedMisuseAction(const ScopedMisuseAction&) = delete;
  ScopedMisuseAction& operator=(const ScopedMisuseAction&) = delete;

 private:
  plexus::MisuseAction previous_;
};

// Switches reference debugging for one scope; switches it off again at the end (the state
// every test expects to start from).
class ScopedRefDebugging {
 public:
  explicit ScopedRefDebugging(bool on) { plexus::EnableRefDebugging(on); }
  ~ScopedRefDebugging() { plexus::EnableRefDebugging(false); }
  ScopedRefDebugging(const ScopedRefDebugging&) = delete;
  ScopedRefDebugging& operator=(const ScopedRefDebugging&) = delete;
};

// "file:line " as the reports print a location; the trailing character keeps line 12 from
// matching line 123.
inline std::string LocationText(const char* file, int line) {
  return std::string(file) + ":" + std::to_string(line);
}

// True when `text` names `file:line` (not followed by another digit).
inline bool MentionsLocation(std::string_view text, const char* file, int line) {
  const std::string needle = LocationText(file, line);
  for (std::size_t at = text.find(needle); at != std::string_view::npos;
       at = text.find(needle, at + 1)) {
    const std::size_t end = at + needle.size();
    if (end == text.size() || text[end] < '0' || text[end] > '9') return true;
  }
  return false;
}

// Polls `done` until it holds or `limit` passes (a bound for failures only: a passing test
// never gets near it). Returns whether it held.
template <class Predicate>
bool WaitUntil(Predicate done, std::chrono::seconds limit = std::chrono::seconds(60)) {
  const auto deadline = std::chrono::steady_clock::now() + limit;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::yield();
  }
  return true;
}

// Runs `body` with the misuse action kThrow and expects exactly one misuse report, thrown as a
// UsageError that names `file`:`line`.
template <class Body>
void ExpectMisuseAt(Body body, const char* file, int line, const char* what) {
  SCOPED_TRACE(what);
  ScopedMisuseAction action(plexus::MisuseAction::kThrow);
  const std::uint64_t reports_before = plexus::MisuseReportCount();
  bool thrown = false;
  try {
    body();
  } catch (const plexus::UsageError& e) {
    thrown = true;
    EXPECT_EQ(e.Where().line(), static_cast<unsigned>(line)) << e.what();
    EXPECT_STREQ(e.Where().file_name(), file) << e.what();
    EXPECT_TRUE(MentionsLocation(e.what(), file, line)) << e.what();
  }
  EXPECT_TRUE(thrown) << "no UsageError was thrown";
  EXPECT_EQ(plexus::MisuseReportCount(), reports_before + 1);
}

}  // namespace plexus_test

// Expects `statement` to be reported as misuse naming this file and the line the macro is
// written on. Keep the whole invocation on one line: the reported line is the call's.
#define PLEXUS_EXPECT_MISUSE_HERE(statement)                                                     \
  ::plexus_test::ExpectMisuseAt([&]() PLEXUS_NO_THREAD_SAFETY_ANALYSIS { statement; }, __FILE__, \
                                __LINE__, #statement)
