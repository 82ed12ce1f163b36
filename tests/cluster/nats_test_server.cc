#include "cluster/nats_test_server.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <iterator>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>

namespace plexus::cluster::testing {
namespace {

using Clock = std::chrono::steady_clock;

// How often readiness is polled: short enough that a test starts within a few ms of the
// server, long enough not to spin a core that the server itself needs.
constexpr auto kPollInterval = std::chrono::milliseconds(10);

// A picked port is only free when picked: another process (ctest runs tests in parallel) may
// bind it before the server does. A server that cannot bind exits at start-up, and is
// started again on fresh ports, up to this many times in all.
constexpr int kLaunchAttempts = 3;

bool IsExecutable(const std::string& path) {
  return !path.empty() && ::access(path.c_str(), X_OK) == 0;
}

// A loopback TCP connection to `port`, or -1.
int ConnectLoopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// The body of GET `path` on the loopback monitoring port, or nullopt. The monitoring server
// answers small JSON documents and closes after "Connection: close", so reading to EOF is
// bounded.
std::optional<std::string> HttpGet(int port, const std::string& path) {
  const int fd = ConnectLoopback(port);
  if (fd < 0) return std::nullopt;
  timeval timeout{.tv_sec = 2, .tv_usec = 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
  const std::string request =
      "GET " + path + " HTTP/1.0\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(request.size())) {
    ::close(fd);
    return std::nullopt;
  }
  std::string response;
  char buffer[4096];
  for (;;) {
    const ssize_t n = ::recv(fd, buffer, sizeof buffer, 0);
    if (n > 0) {
      response.append(buffer, static_cast<std::size_t>(n));
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    break;
  }
  ::close(fd);
  if (response.rfind("HTTP/1.", 0) != 0 || response.find(" 200 ") == std::string::npos) {
    return std::nullopt;
  }
  const std::size_t body = response.find("\r\n\r\n");
  if (body == std::string::npos) return std::nullopt;
  return response.substr(body + 4);
}

// The integer after "key": in a JSON document, or -1 (a full parser is not worth a
// dependency for one number).
long JsonNumber(const std::string& json, const std::string& key) {
  const std::size_t at = json.find("\"" + key + "\"");
  if (at == std::string::npos) return -1;
  const std::size_t colon = json.find(':', at);
  if (colon == std::string::npos) return -1;
  return std::strtol(json.c_str() + colon + 1, nullptr, 10);
}

// A loopback port the kernel picks for a bind to port 0, released again; 0 on failure.
int BindEphemeralPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return 0;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = 0;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int port = 0;
  socklen_t len = sizeof addr;
  if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

}  // namespace

std::string NatsServerBinary() {
  if (const char* env = std::getenv("PLEXUS_NATS_SERVER"); env != nullptr && IsExecutable(env)) {
    return env;
  }
  if (IsExecutable("/usr/sbin/nats-server")) return "/usr/sbin/nats-server";
  if (const char* path = std::getenv("PATH"); path != nullptr) {
    std::istringstream dirs(path);
    for (std::string dir; std::getline(dirs, dir, ':');) {
      if (dir.empty()) continue;
      const std::string candidate = dir + "/nats-server";
      if (IsExecutable(candidate)) return candidate;
    }
  }
  return {};
}

int PickFreePort() {
  // The kernel may hand the same ephemeral port to two binds in a row once the first socket
  // is closed, so a port given out before (say, as a server's route port, not yet bound by
  // the server) is never given out again by this process.
  static std::mutex mu;
  static std::set<int> given;
  std::lock_guard<std::mutex> lock(mu);
  for (int attempt = 0; attempt < 64; ++attempt) {
    const int port = BindEphemeralPort();
    if (port == 0) return 0;
    if (given.insert(port).second) return port;
  }
  return 0;
}

std::unique_ptr<NatsServer> NatsServer::Start(Options options,
                                              std::chrono::milliseconds ready_within) {
  if (NatsServerBinary().empty()) {
    std::cerr << "nats-server: no binary (install nats-server or set PLEXUS_NATS_SERVER)\n";
    return nullptr;
  }
  std::unique_ptr<NatsServer> server(new NatsServer());
  std::string dir_template =
      (std::filesystem::temp_directory_path() / "plexus-nats-XXXXXX").string();
  if (::mkdtemp(dir_template.data()) == nullptr) {
    std::cerr << "nats-server: mkdtemp failed: " << std::strerror(errno) << "\n";
    return nullptr;
  }
  server->dir_ = dir_template;
  server->options_ = std::move(options);
  const bool pick_client = server->options_.client_port == 0;
  const bool pick_cluster =
      !server->options_.cluster_name.empty() && server->options_.cluster_port == 0;
  for (int attempt = 1;; ++attempt) {
    if (pick_client) server->options_.client_port = PickFreePort();
    if (pick_cluster) server->options_.cluster_port = PickFreePort();
    if (server->Launch(ready_within)) return server;
    if (attempt == kLaunchAttempts) return nullptr;
    std::cerr << "nats-server " << server->options_.name << ": starting again (attempt "
              << attempt + 1 << " of " << kLaunchAttempts << ")\n";
  }
}

NatsServer::~NatsServer() {
  Stop();
  if (!dir_.empty()) {
    std::error_code ignored;
    std::filesystem::remove_all(dir_, ignored);
  }
}

std::string NatsServer::Url() const {
  return "nats://127.0.0.1:" + std::to_string(options_.client_port);
}
int NatsServer::ClientPort() const noexcept {
  return options_.client_port;
}
pid_t NatsServer::Pid() const noexcept {
  return pid_;
}
bool NatsServer::Running() const noexcept {
  return pid_ > 0;
}

bool NatsServer::Launch(std::chrono::milliseconds ready_within) {
  // A fresh monitoring port each launch: the old one may linger in TIME_WAIT after a kill.
  http_port_ = PickFreePort();
  const std::string config = dir_ + "/" + options_.name + ".conf";
  const std::string log = dir_ + "/" + options_.name + ".log";
  {
    std::ofstream out(config);
    out << "server_name: " << options_.name << "\n"
        << "listen: 127.0.0.1:" << options_.client_port << "\n"
        << "http: 127.0.0.1:" << http_port_ << "\n";
    if (!options_.cluster_name.empty()) {
      out << "cluster {\n"
          << "  name: " << options_.cluster_name << "\n"
          << "  listen: 127.0.0.1:" << options_.cluster_port << "\n"
          << "  routes: [";
      for (std::size_t i = 0; i < options_.route_ports.size(); ++i) {
        out << (i ? ", " : "") << "nats-route://127.0.0.1:" << options_.route_ports[i];
      }
      out << "]\n}\n";
    }
    if (!out) {
      std::cerr << "nats-server: cannot write " << config << "\n";
      return false;
    }
  }
  // Everything the child needs is built before fork: after it, only exec-safe calls.
  const std::string binary = NatsServerBinary();
  const std::string stdio = dir_ + "/" + options_.name + ".stdio";
  std::vector<std::string> args = {binary, "-a", "127.0.0.1", "-c", config, "-l", log};
  std::vector<char*> argv;
  for (std::string& arg : args) argv.push_back(arg.data());
  argv.push_back(nullptr);

  const pid_t pid = ::fork();
  if (pid < 0) {
    std::cerr << "nats-server: fork failed: " << std::strerror(errno) << "\n";
    return false;
  }
  if (pid == 0) {
    const int fd = ::open(stdio.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
      ::dup2(fd, STDOUT_FILENO);
      ::dup2(fd, STDERR_FILENO);
    }
    ::execv(binary.c_str(), argv.data());
    ::_exit(127);
  }
  pid_ = pid;
  if (!WaitReady(ready_within)) {
    Kill();
    return false;
  }
  return true;
}

bool NatsServer::WaitReady(std::chrono::milliseconds ready_within) {
  const Clock::time_point deadline = Clock::now() + ready_within;
  bool healthy = false;
  for (;;) {
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      DumpLog("exited during start-up (status " + std::to_string(status) + ")");
      return false;
    }
    if (!healthy) {
      const std::optional<std::string> body = HttpGet(http_port_, "/healthz");
      healthy = body && body->find("ok") != std::string::npos;
    }
    if (healthy) {
      if (options_.cluster_name.empty()) return true;
      // Routes to every other member that is running now (members not started yet connect
      // to this one when they start).
      long expected = 0;
      for (int port : options_.route_ports) {
        if (port == options_.cluster_port) continue;
        const int fd = ConnectLoopback(port);
        if (fd >= 0) {
          ::close(fd);
          ++expected;
        }
      }
      const std::optional<std::string> routes = HttpGet(http_port_, "/routez");
      if (routes && JsonNumber(*routes, "num_routes") >= expected) return true;
    }
    if (Clock::now() >= deadline) {
      DumpLog("not ready within " + std::to_string(ready_within.count()) + " ms");
      return false;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
}

void NatsServer::DumpLog(const std::string& why) const {
  std::cerr << "nats-server " << options_.name << " (client port " << options_.client_port
            << "): " << why << "\n--- log ---\n"
            << ReadFile(dir_ + "/" + options_.name + ".log") << "--- stdout/stderr ---\n"
            << ReadFile(dir_ + "/" + options_.name + ".stdio") << "---\n";
}

void NatsServer::Kill() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  while (::waitpid(pid_, nullptr, 0) < 0 && errno == EINTR) {
  }
  pid_ = -1;
}

void NatsServer::Stop() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGTERM);
  const Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (Clock::now() < deadline) {
    if (::waitpid(pid_, nullptr, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(kPollInterval);
  }
  DumpLog("did not stop on SIGTERM; killing it");
  Kill();
}

bool NatsServer::Restart(std::chrono::milliseconds ready_within) {
  Stop();
  // The client port was freed by the old process; a killed server's listening socket is
  // closed by the kernel at once, so the same port binds again. Only the monitoring port is
  // new at each attempt.
  for (int attempt = 1; attempt <= kLaunchAttempts; ++attempt) {
    if (Launch(ready_within)) return true;
  }
  return false;
}

std::unique_ptr<NatsCluster> NatsCluster::Start(int n, std::chrono::milliseconds ready_within) {
  if (n < 1) return nullptr;
  // A member retries its own client port, but the route ports are shared by every member:
  // one that another process took means starting the whole cluster again on fresh ones.
  for (int attempt = 1; attempt <= kLaunchAttempts; ++attempt) {
    if (auto cluster = StartOnce(n, ready_within)) return cluster;
    if (attempt < kLaunchAttempts) {
      std::cerr << "nats-server cluster: starting again (attempt " << attempt + 1 << " of "
                << kLaunchAttempts << ")\n";
    }
  }
  return nullptr;
}

std::unique_ptr<NatsCluster> NatsCluster::StartOnce(int n, std::chrono::milliseconds ready_within) {
  std::vector<int> route_ports;
  for (int i = 0; i < n; ++i) route_ports.push_back(PickFreePort());
  auto cluster = std::unique_ptr<NatsCluster>(new NatsCluster());
  for (int i = 0; i < n; ++i) {
    NatsServer::Options options;
    options.name = "n" + std::to_string(i + 1);
    options.cluster_name = "plexus-test";
    options.cluster_port = route_ports[i];
    options.route_ports = route_ports;
    std::unique_ptr<NatsServer> server = NatsServer::Start(std::move(options), ready_within);
    if (!server) return nullptr;
    cluster->servers_.push_back(std::move(server));
  }
  // Every server saw the ones before it; the first ones now also need routes to the later.
  const Clock::time_point deadline = Clock::now() + ready_within;
  for (auto& server : cluster->servers_) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (!server->WaitReady(std::max(left, std::chrono::milliseconds(1)))) return nullptr;
  }
  return cluster;
}

std::vector<std::string> NatsCluster::Urls() const {
  std::vector<std::string> urls;
  for (const auto& server : servers_) urls.push_back(server->Url());
  return urls;
}

}  // namespace plexus::cluster::testing
