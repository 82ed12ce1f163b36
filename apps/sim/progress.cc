#include "progress.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

namespace sim {

namespace {

std::int64_t StatusField(const char* field) {
  std::FILE* f = std::fopen("/proc/self/status", "r");
  if (f == nullptr) return 0;
  char line[256];
  std::int64_t kb = 0;
  const std::size_t length = std::strlen(field);
  while (std::fgets(line, sizeof line, f) != nullptr) {
    if (std::strncmp(line, field, length) == 0) {
      kb = std::strtoll(line + length, nullptr, 10);
      break;
    }
  }
  std::fclose(f);
  return kb;
}

}  // namespace

std::int64_t CurrentRssKb() {
  return StatusField("VmRSS:");
}
std::int64_t PeakRssKb() {
  return StatusField("VmHWM:");
}

Progress::Progress(std::function<ProgressSample()> sample)
    : sample_(std::move(sample)), terminal_(isatty(STDERR_FILENO) != 0) {}

double Progress::Elapsed() const {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count();
}

void Progress::Tick() {
  const auto now = std::chrono::steady_clock::now();
  const auto interval = terminal_ ? std::chrono::milliseconds(250) : std::chrono::milliseconds(500);
  if (now - last_ < interval) return;
  const double dt = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  const ProgressSample s = sample_();
  peak_rss_kb_ = std::max(peak_rss_kb_, CurrentRssKb());
  std::fprintf(stderr,
               "%s[%5.1fs %-8s] calls up %7lld | %8.0f calls/s | %9.0f events/s | queue %6zu | "
               "alerts %llu | shed %llu%s",
               terminal_ ? "\r" : "", Elapsed(), s.phase, static_cast<long long>(s.calls_up),
               static_cast<double>(s.finished - previous_.finished) / dt,
               static_cast<double>(s.events - previous_.events) / dt, s.queue_depth,
               static_cast<unsigned long long>(s.alerts), static_cast<unsigned long long>(s.shed),
               terminal_ ? "   " : "\n");
  std::fflush(stderr);
  previous_ = s;
  printed_ = true;
}

void Progress::Finish() {
  if (terminal_ && printed_) std::fputc('\n', stderr);
}

}  // namespace sim
