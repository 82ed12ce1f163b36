#include "signals.h"

#include <unistd.h>

#include <atomic>
#include <csignal>

namespace sim {

namespace {

std::atomic<int> g_signals{0};

extern "C" void OnStopSignal(int) {
  if (g_signals.fetch_add(1) == 0) {
    constexpr char kMessage[] = "\nplexus_sim: stopping (a second signal exits at once)\n";
    (void)!write(STDERR_FILENO, kMessage, sizeof kMessage - 1);
    return;
  }
  _exit(kSecondSignalStatus);
}

}  // namespace

void InstallStopSignals() {
  struct sigaction sa = {};
  sa.sa_handler = &OnStopSignal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool StopRequested() {
  return g_signals.load(std::memory_order_relaxed) != 0;
}

}  // namespace sim
