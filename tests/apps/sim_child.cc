#include "sim_child.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace sim_test {

SimChild::SimChild(const std::vector<std::string>& args) {
  int out[2];
  int err[2];
  if (pipe2(out, O_CLOEXEC) != 0 || pipe2(err, O_CLOEXEC) != 0) std::abort();
  pid_ = fork();
  if (pid_ == 0) {
    dup2(out[1], STDOUT_FILENO);
    dup2(err[1], STDERR_FILENO);
    std::vector<char*> argv;
    std::string program = PLEXUS_SIM_PATH;
    argv.push_back(program.data());
    std::vector<std::string> copies = args;
    for (std::string& a : copies) argv.push_back(a.data());
    argv.push_back(nullptr);
    execv(program.c_str(), argv.data());
    std::perror("execv");
    _exit(127);
  }
  close(out[1]);
  close(err[1]);
  out_fd_ = out[0];
  err_fd_ = err[0];
}

SimChild::~SimChild() {
  if (status_ == -1 && pid_ > 0) {
    kill(pid_, SIGKILL);
    (void)Wait();
  }
}

bool SimChild::ReadSome() {
  pollfd fds[2];
  int n = 0;
  if (out_fd_ >= 0) fds[n++] = {out_fd_, POLLIN, 0};
  if (err_fd_ >= 0) fds[n++] = {err_fd_, POLLIN, 0};
  if (n == 0) return false;
  if (poll(fds, static_cast<nfds_t>(n), -1) < 0) return true;  // EINTR: try again
  for (int i = 0; i < n; ++i) {
    if ((fds[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
    char buffer[8192];
    const ssize_t got = read(fds[i].fd, buffer, sizeof buffer);
    const bool is_out = fds[i].fd == out_fd_;
    if (got <= 0) {
      close(fds[i].fd);
      (is_out ? out_fd_ : err_fd_) = -1;
      continue;
    }
    (is_out ? out_ : err_).append(buffer, static_cast<std::size_t>(got));
  }
  return true;
}

void SimChild::Signal(int signal) {
  kill(pid_, signal);
}

int SimChild::Wait() {
  while (ReadSome()) {
  }
  if (status_ != -1) return status_;
  int raw = 0;
  while (waitpid(pid_, &raw, 0) < 0) {
  }
  status_ = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return status_;
}

SimResult RunSim(const std::vector<std::string>& args) {
  SimChild child(args);
  const int status = child.Wait();
  return {status, child.Out(), child.Err()};
}

void ExpectEachFlagRefused(const std::vector<std::pair<std::string, std::string>>& cases) {
  for (const auto& [flag, name] : cases) {
    const SimResult r = RunSim({flag});
    EXPECT_EQ(r.status, 2) << flag << ": " << r.err;
    EXPECT_NE(r.err.find(name), std::string::npos) << flag << ": " << r.err;
    EXPECT_EQ(r.err.find('\n'), r.err.size() - 1) << flag << ": not one line: " << r.err;
    EXPECT_TRUE(r.out.empty()) << flag;
  }
}

std::string ScratchPath(const std::string& name) {
  const char* tmp = std::getenv("TMPDIR");
  const std::filesystem::path dir = tmp != nullptr ? tmp : "/tmp";
  const std::filesystem::path path =
      dir / ("plexus_sim_test_" + std::to_string(getpid()) + "_" + name);
  std::filesystem::remove(path);
  std::filesystem::remove(path.string() + "-wal");
  std::filesystem::remove(path.string() + "-shm");
  return path.string();
}

}  // namespace sim_test
