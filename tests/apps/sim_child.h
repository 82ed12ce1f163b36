// Runs the real plexus_sim as a child process for the acceptance tests: its stdout and stderr
// are collected through pipes, and a test may wait for a line on stderr before signalling it.
// Waiting is on the child's output and exit, never on a clock.

#pragma once

#include <string>
#include <utility>
#include <vector>

namespace sim_test {

class SimChild {
 public:
  // Starts plexus_sim with `args` (argv[1...]).
  explicit SimChild(const std::vector<std::string>& args);
  ~SimChild();
  SimChild(const SimChild&) = delete;
  SimChild& operator=(const SimChild&) = delete;

  // Reads the child's output until stderr holds a line for which `match(line)` is true (true),
  // or the child closed both pipes (false).
  template <class Match>
  bool WaitForStderrLine(Match match) {
    for (;;) {
      for (; scanned_ < err_.size();) {
        const std::size_t end = err_.find_first_of("\r\n", scanned_);
        if (end == std::string::npos) break;
        const std::string line = err_.substr(scanned_, end - scanned_);
        scanned_ = end + 1;
        if (match(line)) return true;
      }
      if (!ReadSome()) return false;
    }
  }

  void Signal(int signal);
  // Reads everything until both pipes close, then reaps the child. Returns its exit status
  // (128 + the signal if it was killed).
  int Wait();

  const std::string& Out() const { return out_; }
  const std::string& Err() const { return err_; }

 private:
  // Reads what is available from either pipe (blocking until something is); false once both
  // are closed.
  bool ReadSome();

  int pid_ = -1;
  int out_fd_ = -1;
  int err_fd_ = -1;
  std::string out_;
  std::string err_;
  std::size_t scanned_ = 0;
  int status_ = -1;
};

// Runs plexus_sim with `args` to the end.
struct SimResult {
  int status;
  std::string out;
  std::string err;
};
SimResult RunSim(const std::vector<std::string>& args);

// Runs plexus_sim once per (flag, name) pair and expects each run to be refused the way a bad
// command line must be: exit status 2, one line on stderr naming `name`, nothing on stdout.
void ExpectEachFlagRefused(const std::vector<std::pair<std::string, std::string>>& cases);

// A scratch file name in the test's temporary directory (removed first if it exists).
std::string ScratchPath(const std::string& name);

}  // namespace sim_test
