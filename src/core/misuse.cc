#include "plexus/core/misuse.h"

#include <cstdlib>

#include "plexus/core/log.h"

namespace plexus {
namespace {
std::atomic<MisuseAction> g_action{MisuseAction::kThrow};
std::atomic<std::uint64_t> g_reports{0};
}  // namespace

UsageError::UsageError(const std::string& message, SourceLocation where)
    : std::logic_error(FormatLocation(where) + ": plexus usage error: " + message), where_(where) {}

MisuseAction SetMisuseAction(MisuseAction action) {
  return g_action.exchange(action);
}
MisuseAction GetMisuseAction() {
  return g_action.load();
}
std::uint64_t MisuseReportCount() {
  return g_reports.load();
}

void ReportMisuse(std::string_view message, SourceLocation where) {
  g_reports.fetch_add(1);
  std::string text = "usage error: ";
  text += message;
  Log(LogLevel::kError, text, where);
  switch (g_action.load()) {
    case MisuseAction::kThrow:
      throw UsageError(std::string(message), where);
    case MisuseAction::kAbort:
      std::abort();
    case MisuseAction::kLog:
      return;
  }
}

}  // namespace plexus
