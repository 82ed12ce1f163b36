// Helpers for the operator view's tests: a minimal HTTP/1.1 client over a raw socket (so
// tests can also send malformed, oversized and trickled requests), a runner for external
// tools (promtool, prometheus, chromium), and counts of the process's threads and sockets.

#pragma once

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

extern char** environ;

namespace plexus_test {

struct HttpResponse {
  int status = 0;  // 0: no status line came back (the connection was closed or failed)
  std::string head;
  std::string body;
};

// A blocking loopback connection; -1 when it cannot connect.
inline int ConnectLoopback(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  // A safety net for a broken server, not a timing assertion: reads give up after a minute.
  timeval tv{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  return fd;
}

inline bool SendAll(int fd, std::string_view data) {
  while (!data.empty()) {
    const ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    data.remove_prefix(static_cast<std::size_t>(n));
  }
  return true;
}

// Reads until the server closes the connection (it serves one request per connection).
inline std::string ReadToEnd(int fd) {
  std::string out;
  char buf[16384];
  for (;;) {
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

inline HttpResponse ParseResponse(const std::string& raw) {
  HttpResponse r;
  const std::size_t end = raw.find("\r\n\r\n");
  if (raw.rfind("HTTP/1.", 0) != 0 || end == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + raw.find(' ') + 1);
  r.head = raw.substr(0, end);
  r.body = raw.substr(end + 4);
  return r;
}

inline HttpResponse Exchange(std::uint16_t port, std::string_view request) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return {};
  SendAll(fd, request);
  std::string raw = ReadToEnd(fd);
  ::close(fd);
  return ParseResponse(raw);
}

inline HttpResponse Request(std::uint16_t port, std::string_view method, std::string_view path) {
  return Exchange(port, std::string(method) + " " + std::string(path) +
                            " HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
}

inline HttpResponse Get(std::uint16_t port, std::string_view path) {
  return Request(port, "GET", path);
}

// Sockets and threads of this process, from /proc.
inline int CountSockets() {
  int n = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    const auto target = std::filesystem::read_symlink(entry.path(), ec);
    if (!ec && target.string().rfind("socket:", 0) == 0) ++n;
  }
  return n;
}

inline int CountThreads() {
  int n = 0;
  for ([[maybe_unused]] const auto& entry :
       std::filesystem::directory_iterator("/proc/self/task")) {
    ++n;
  }
  return n;
}

// The full path of `tool` on PATH; empty when absent.
inline std::string FindTool(const std::string& tool) {
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/bin:/bin");
  std::string dir;
  while (std::getline(dirs, dir, ':')) {
    const std::filesystem::path candidate = std::filesystem::path(dir) / tool;
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
  }
  return {};
}

// Starts `argv` with stdout sent to `log` and stderr to `err` (empty: to `log` too); returns
// its pid (or -1).
inline pid_t Spawn(const std::vector<std::string>& argv, const std::string& log,
                   const std::string& err = {}) {
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (err.empty()) {
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
  } else {
    posix_spawn_file_actions_addopen(&actions, 2, err.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  }
  std::vector<char*> args;
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = -1;
  if (posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ) != 0) pid = -1;
  posix_spawn_file_actions_destroy(&actions);
  return pid;
}

inline int WaitExit(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

// Runs `argv` to completion; returns its exit status and leaves its output in `log`.
inline int Run(const std::vector<std::string>& argv, const std::string& log,
               const std::string& err = {}) {
  const pid_t pid = Spawn(argv, log, err);
  return pid < 0 ? -1 : WaitExit(pid);
}

inline std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

inline void WriteFile(const std::string& path, std::string_view text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
}

// A fresh directory under the system's temporary directory.
inline std::filesystem::path TempDir(const std::string& tag) {
  std::string templ =
      (std::filesystem::temp_directory_path() / ("plexus-" + tag + "-XXXXXX")).string();
  const char* made = ::mkdtemp(templ.data());
  return made != nullptr ? std::filesystem::path(made) : std::filesystem::path();
}

// A loopback port that was free a moment ago (for tools that must be told a port), never one
// this process was given before: the kernel may hand a port just closed to the next bind, so
// two picks in a row could otherwise name the same port. Another process can still take it
// before the tool binds it: a caller starts the tool again on a fresh port when it exits.
inline std::uint16_t FreeLoopbackPort() {
  static std::mutex mu;
  static std::set<std::uint16_t> given;
  const std::lock_guard<std::mutex> lock(mu);
  for (;;) {
    const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
    socklen_t len = sizeof addr;
    ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
    ::close(fd);
    const std::uint16_t port = ntohs(addr.sin_port);
    if (given.insert(port).second) return port;
  }
}

// Whether the child `pid` has exited (it is reaped if so); `status` gets its exit status.
inline bool HasExited(pid_t pid, int& status) {
  int raw = 0;
  pid_t r = 0;
  while ((r = ::waitpid(pid, &raw, WNOHANG)) < 0 && errno == EINTR) {
  }
  if (r != pid) return false;
  status = WIFEXITED(raw) ? WEXITSTATUS(raw) : 128 + WTERMSIG(raw);
  return true;
}

// The samples of a Prometheus text page: "name{labels}" -> value, for lines that are not
// comments.
inline std::map<std::string, double> ParseSamples(const std::string& text) {
  std::map<std::string, double> out;
  std::stringstream lines(text);
  std::string line;
  while (std::getline(lines, line)) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t space = line.rfind(' ');
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

}  // namespace plexus_test
