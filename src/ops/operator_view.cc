// The HTTP side of the operator view. cpp-httplib parses requests and routes them; this file
// replaces how it reads a connection (see BoundedServer) so that a request has one deadline
// as a whole rather than a timeout per read, which a client trickling a byte a second would
// never hit.

#include "plexus/ops/operator_view.h"

#include <arpa/inet.h>
#include <httplib.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <thread>

#include "plexus/core/log.h"
#include "plexus/ops/api_json.h"
#include "plexus/ops/metrics.h"
#include "plexus/ops/page.h"
#include "plexus/ops/snapshot.h"
#include "plexus/sync/mutex.h"

namespace plexus::ops {
namespace {

using Clock = std::chrono::steady_clock;

int MillisUntil(Clock::time_point deadline) {
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}

void Address(int fd, bool peer, std::string& ip, int& port) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  const int rc = peer ? getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len)
                      : getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  if (rc != 0) return;
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &in->sin_addr, text, sizeof text);
    port = ntohs(in->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &in6->sin6_addr, text, sizeof text);
    port = ntohs(in6->sin6_port);
  }
  ip = text;
}

// A connection whose reads all share one deadline (the request's), and whose writes each
// wait at most the write timeout.
class DeadlineStream final : public httplib::Stream {
 public:
  DeadlineStream(int fd, Clock::time_point read_deadline, std::chrono::milliseconds write_timeout)
      : fd_(fd), read_deadline_(read_deadline), write_timeout_(write_timeout) {}

  bool is_readable() const override { return Wait(POLLIN, MillisUntil(read_deadline_)); }
  bool is_writable() const override {
    return Wait(POLLOUT, static_cast<int>(write_timeout_.count()));
  }
  ssize_t read(char* ptr, std::size_t size) override {
    if (!is_readable()) return -1;
    ssize_t n;
    do {
      n = recv(fd_, ptr, size, 0);
    } while (n < 0 && errno == EINTR);
    return n;
  }
  ssize_t write(const char* ptr, std::size_t size) override {
    if (!is_writable()) return -1;
    ssize_t n;
    do {
      n = send(fd_, ptr, size, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    return n;
  }
  void get_remote_ip_and_port(std::string& ip, int& port) const override {
    Address(fd_, true, ip, port);
  }
  void get_local_ip_and_port(std::string& ip, int& port) const override {
    Address(fd_, false, ip, port);
  }
  socket_t socket() const override { return fd_; }

 private:
  bool Wait(short events, int timeout_ms) const {
    pollfd p{fd_, events, 0};
    int rc;
    do {
      rc = poll(&p, 1, timeout_ms);
    } while (rc < 0 && errno == EINTR);
    return rc > 0 && (p.revents & (events | POLLHUP | POLLERR)) != 0;
  }

  const int fd_;
  const Clock::time_point read_deadline_;
  const std::chrono::milliseconds write_timeout_;
};

// httplib's Server with each connection served by one request under one deadline (no
// keep-alive: a scrape or a page poll is one request) and a deeper listen backlog.
class BoundedServer final : public httplib::Server {
 public:
  explicit BoundedServer(const OperatorViewOptions& options) : options_(options) {}

  // httplib listens with a backlog of 5; a second listen() on a listening socket only
  // changes the backlog, so bursts of concurrent scrapes wait in the kernel's queue instead
  // of being dropped and retried.
  void DeepenBacklog() { ::listen(svr_sock_, options_.listen_backlog); }

  // Serves two requests over a socket pair on the calling thread, before any request thread
  // exists, so that cpp-httplib's function-local statics (the request-line parser's method
  // set, ...) are initialized before the request threads start rather than first by them
  // concurrently. The library is built without ThreadSanitizer, which cannot see its guards
  // for those statics and would report their first concurrent use as a race.
  void WarmUp() {
    for (const char* request : {"GET /warm-up HTTP/1.1\r\nHost: localhost\r\n\r\n",
                                "HEAD / HTTP/1.1\r\nHost: localhost\r\n\r\n"}) {
      int fds[2];
      if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return;
      (void)::send(fds[0], request, std::strlen(request), MSG_NOSIGNAL);
      ::shutdown(fds[0], SHUT_WR);
      DeadlineStream stream(fds[1], Clock::now() + options_.request_timeout,
                            options_.write_timeout);
      bool connection_closed = false;
      (void)process_request(stream, /*close_connection=*/true, connection_closed,
                            [](httplib::Request&) {});
      ::close(fds[0]);
      ::close(fds[1]);
    }
  }

 private:
  bool process_and_close_socket(socket_t sock) override {
    DeadlineStream stream(sock, Clock::now() + options_.request_timeout, options_.write_timeout);
    bool connection_closed = false;
    const bool ok = process_request(stream, /*close_connection=*/true, connection_closed,
                                    [](httplib::Request&) {});
    ::shutdown(sock, SHUT_RDWR);
    ::close(sock);
    return ok;
  }

  const OperatorViewOptions options_;
};

bool ParseListen(const std::string& listen, std::string& host, int& port) {
  const std::size_t colon = listen.rfind(':');
  if (colon == std::string::npos || colon == 0) return false;
  host = listen.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  const char* first = listen.data() + colon + 1;
  const char* last = listen.data() + listen.size();
  const auto [end, ec] = std::from_chars(first, last, port);
  return ec == std::errc() && end == last && first != last && port >= 0 && port <= 65535;
}

void ServeJson(httplib::Server& server, const char* path, SnapshotParts parts,
               nlohmann::json (*render)(const OpsSnapshot&)) {
  server.Get(path, [parts, render](const httplib::Request&, httplib::Response& res) {
    res.set_content(render(TakeSnapshot(parts)).dump(), "application/json");
  });
}

}  // namespace

struct OperatorView::Impl {
  explicit Impl(const OperatorViewOptions& o) : options(o), server(o) {}

  OperatorViewOptions options;
  BoundedServer server;
  std::string host;
  std::uint16_t port = 0;
  std::thread thread;
  std::atomic<bool> serving_ended{false};
  sync_internal::AnnotatedMutex stop_mu;
  bool stopped PLEXUS_GUARDED_BY(stop_mu) = false;
};

std::unique_ptr<OperatorView> OperatorView::Start(OperatorViewOptions options) {
  auto impl = std::make_unique<Impl>(options);
  int port = 0;
  if (!ParseListen(options.listen, impl->host, port)) {
    Log(LogLevel::kError, "operator view: cannot parse listen address '" + options.listen + "'");
    return nullptr;
  }
  BoundedServer& server = impl->server;
  const std::size_t threads = options.threads > 0 ? options.threads : 1;
  server.new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
  server.set_payload_max_length(options.max_body_bytes);
  // httplib's default adds SO_REUSEPORT, which would let another socket of the same user
  // bind the port too and take a share of the connections; SO_REUSEADDR alone only allows
  // a restart while old connections linger in TIME_WAIT.
  server.set_socket_options([](socket_t sock) {
    const int yes = 1;
    ::setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
  server.set_pre_routing_handler([](const httplib::Request& req, httplib::Response& res) {
    if (req.method == "GET" || req.method == "HEAD")
      return httplib::Server::HandlerResponse::Unhandled;
    res.status = 405;
    res.set_header("Allow", "GET, HEAD");
    res.set_content("method not allowed: the operator view is read-only\n", "text/plain");
    return httplib::Server::HandlerResponse::Handled;
  });
  server.set_error_handler([](const httplib::Request&, httplib::Response& res) {
    if (res.status == 404) res.set_content("not found\n", "text/plain");
  });
  server.Get("/", [](const httplib::Request&, httplib::Response& res) {
    const std::string_view page = OperatorPageHtml();
    res.set_content(page.data(), page.size(), "text/html; charset=utf-8");
  });
  for (std::size_t i = 0; i < options.sections.size(); ++i) {
    const std::string& name = options.sections[i].name;
    bool repeated = false;
    for (std::size_t j = 0; j < i; ++j) repeated |= options.sections[j].name == name;
    if (!ValidSectionName(name) || repeated || !options.sections[i].json) {
      Log(LogLevel::kError, "operator view: unusable section '" + name + "'");
      return nullptr;
    }
  }
  // The sections' functions are the program's code: called here, on the request's thread,
  // under no lock of the view's.
  const std::vector<Section>& sections = impl->options.sections;
  server.Get("/metrics", [&sections](const httplib::Request&, httplib::Response& res) {
    std::string text = MetricsText(TakeSnapshot(SnapshotParts::kMetrics | SnapshotParts::kRefs));
    for (const Section& section : sections) {
      try {
        text += SectionMetricsText(section.name, section.json());
      } catch (...) {
        // Left out: a section that cannot say its state has no numbers to export.
      }
    }
    res.set_content(text, "text/plain; version=0.0.4; charset=utf-8");
  });
  server.Get("/api/sections", [&sections](const httplib::Request&, httplib::Response& res) {
    nlohmann::json list = nlohmann::json::array();
    for (const Section& section : sections) {
      list.push_back({{"name", section.name},
                      {"title", section.title.empty() ? section.name : section.title}});
    }
    res.set_content(list.dump(), "application/json");
  });
  for (const Section& section : sections) {
    server.Get("/api/" + section.name, [&section](const httplib::Request&, httplib::Response& res) {
      std::string text;
      try {
        text = section.json();
      } catch (...) {
        text.clear();
      }
      if (!nlohmann::json::accept(text)) {
        res.status = 500;
        res.set_content("section '" + section.name + "' gave no JSON\n", "text/plain");
        return;
      }
      res.set_content(text, "application/json");
    });
  }
  ServeJson(server, "/api/topics", SnapshotParts::kTopics, &TopicsJson);
  ServeJson(server, "/api/subscriptions", SnapshotParts::kSubscriptions, &SubscriptionsJson);
  ServeJson(server, "/api/taskprocessors", SnapshotParts::kTaskProcessors, &TaskProcessorsJson);
  ServeJson(server, "/api/timers", SnapshotParts::kTimers, &TimersJson);
  ServeJson(server, "/api/locks", SnapshotParts::kGroupLocks | SnapshotParts::kLockOrder,
            &LocksJson);
  ServeJson(server, "/api/refs", SnapshotParts::kRefs, &RefsJson);
  ServeJson(server, "/api/counters", SnapshotParts::kCounters, &CountersJson);

  if (port == 0) {
    port = server.bind_to_any_port(impl->host);
    if (port < 0) port = 0;
  } else if (!server.bind_to_port(impl->host, port)) {
    port = 0;
  }
  if (port == 0) {
    Log(LogLevel::kError, "operator view: cannot listen on '" + options.listen + "'");
    return nullptr;
  }
  server.DeepenBacklog();
  server.WarmUp();
  impl->port = static_cast<std::uint16_t>(port);
  Impl* raw = impl.get();
  raw->thread = std::thread([raw] {
    raw->server.listen_after_bind();
    raw->serving_ended.store(true);
  });
  // httplib's stop() only stops a server that already runs: wait for the accept loop to
  // start, so that a Stop right after Start cannot be lost.
  while (!server.is_running() && !raw->serving_ended.load()) std::this_thread::yield();
  auto view = std::unique_ptr<OperatorView>(new OperatorView(std::move(impl)));
  Log(LogLevel::kInfo, "operator view: serving " + view->Url());
  return view;
}

OperatorView::OperatorView(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

OperatorView::~OperatorView() {
  Stop();
}

void OperatorView::Stop() {
  MutexLock lock(impl_->stop_mu);
  if (impl_->stopped) return;
  impl_->stopped = true;
  impl_->server.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
}

const std::string& OperatorView::Host() const noexcept {
  return impl_->host;
}
std::uint16_t OperatorView::Port() const noexcept {
  return impl_->port;
}
std::string OperatorView::Url() const {
  const bool v6 = impl_->host.find(':') != std::string::npos;
  return "http://" + (v6 ? "[" + impl_->host + "]" : impl_->host) + ":" +
         std::to_string(impl_->port);
}

}  // namespace plexus::ops
