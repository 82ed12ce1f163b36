#include "alerts.h"

#include <algorithm>

#include "plexus/exec/task_processor.h"

namespace sim {

namespace {
constexpr std::size_t kMaxNames = 32;
}  // namespace

AlertLog::AlertLog() {
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
