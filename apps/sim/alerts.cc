#include "alerts.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <string_view>

#include "plexus/core/log.h"
#include "plexus/exec/task_processor.h"

namespace sim {

namespace {
constexpr std::size_t kMaxNames = 32;
constexpr int kAlertLinesShown = 3;
std::atomic<int> g_alert_lines{0};

void Sink(const plexus::LogRecord& record, void*) {
  static constexpr const char* kLevels[] = {"DEBUG", "INFO", "WARNING", "ERROR"};
  const bool alert = record.message.find("waiting items") != std::string_view::npos;
  if (alert) {
    const int n = g_alert_lines.fetch_add(1, std::memory_order_relaxed);
    if (n > kAlertLinesShown) return;
    if (n == kAlertLinesShown) {
      std::fprintf(stderr, "plexus_sim: further queue alerts are counted in the report\n");
      return;
    }
  }
  std::fprintf(stderr, "plexus %s %s:%u: %.*s\n", kLevels[static_cast<int>(record.level)],
               record.where.file_name(), static_cast<unsigned>(record.where.line()),
               static_cast<int>(record.message.size()), record.message.data());
}
}  // namespace

AlertLog::AlertLog() {
  plexus::SetLogSink(&Sink);
  plexus::SetTaskProcessorAlertHandler([this](const plexus::TaskProcessorAlert& alert) {
    if (!alert.raised) return;
    plexus::MutexLock lock(mu_);
    ++raised_;
    const std::string name(alert.processor);
    if (queues_.size() < kMaxNames &&
        std::find(queues_.begin(), queues_.end(), name) == queues_.end()) {
      queues_.push_back(name);
    }
  });
}

AlertLog::~AlertLog() {
  plexus::SetTaskProcessorAlertHandler(nullptr);
}

std::uint64_t AlertLog::Raised() const {
  plexus::MutexLock lock(mu_);
  return raised_;
}

std::size_t AlertLog::Active() const {
  return plexus::TaskProcessorProcessAlertCount();
}

std::vector<std::string> AlertLog::Queues() const {
  plexus::MutexLock lock(mu_);
  return queues_;
}

}  // namespace sim
