// -----------------------------------------------------------------------------
// plexus/ops/operator_view.h
// -----------------------------------------------------------------------------
//
// OperatorView is a small read-only HTTP server that shows an operator what a running plexus
// program is doing, without recompiling it (what Asterisk's "core show taskprocessors" and
// "stasis show topics" show at its console):
//
//   /                    one self-contained page (script included, no external assets):
//                        busiest topics, queue depths against their alert levels, alerts,
//                        a per-second chart of the program's first counter (or, without
//                        one, of the messages published), group locks
//   /metrics             Prometheus text exposition (plexus/ops/metrics.h)
//   /api/topics          JSON (plexus/ops/api_json.h), rendered from the same snapshot
//   /api/subscriptions   structs the statistics APIs return
//   /api/taskprocessors
//   /api/timers
//   /api/locks           live group locks with holders and chains; lock-order reports
//   /api/refs            tracked objects and their holders (reference debugging on)
//   /api/counters        the program's own counters (plexus/ops/counter.h)
//   /api/sections        the names and titles of the program's own sections, each served
//   /api/<name>          as its name (plexus/ops/section.h)
//
// Any other path is 404; any method other than GET (and HEAD) is 405.
//
// Switching it on is one call; a program that never calls Start pays nothing: no thread, no
// socket, and no per-message cost, since everything shown is read from counters the layers
// keep anyway.
//
//   auto view = plexus::ops::OperatorView::Start({.listen = "127.0.0.1:8088"});
//   if (view) log("operator view on " + view->Url());
//
// Safe by default: it binds to loopback unless told otherwise and only reads. Each
// connection serves one request that must arrive whole within `request_timeout` (a client
// that trickles bytes is cut off when it runs out, however often it sends), with bounded
// request line, headers and body; the requests are served by a fixed number of threads, and
// the listen backlog is deep enough for bursts of concurrent scrapes.
//
// HTTP comes from cpp-httplib (Debian's libcpp-httplib-dev): a small, dependency-free server
// with a thread pool, timeouts and size limits, packaged by the distribution, and hidden
// behind this header (consumers never include it). prometheus-cpp's own HTTP exposer would
// bring civetweb and serve only /metrics.
//
// Thread safety: Start is thread-safe (several views may run, on different ports); an
// OperatorView's member functions may be called from any thread; Stop and the destructor
// must not be called from a request handler (none is user code).

#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "plexus/ops/section.h"

namespace plexus::ops {

struct OperatorViewOptions {
  // "host:port" to listen on; port 0 picks a free one (see OperatorView::Port). Loopback by
  // default: the view is read-only, but it tells a lot about the process.
  std::string listen = "127.0.0.1:0";
  // Threads that serve requests; a connection waiting for one queues in the listen backlog.
  std::size_t threads = 4;
  // A request (line, headers, body) must have arrived this long after the connection was
  // accepted, or the connection is closed.
  std::chrono::milliseconds request_timeout{5000};
  // The longest the server waits for the client to take more of a response.
  std::chrono::milliseconds write_timeout{5000};
  // The largest request body accepted (GET requests have none); larger ones get 413.
  std::size_t max_body_bytes = 1024;
  // Pending connections the kernel queues for accept.
  int listen_backlog = 1024;
  // The program's own parts (plexus/ops/section.h): each served at /api/<name>, exported to
  // /metrics and shown on the page. A section with an unusable or repeated name makes Start
  // fail (null, with a log line).
  std::vector<Section> sections;
};

class OperatorView {
 public:
  // Binds and starts serving. Returns null (with a log line) when the address cannot be
  // parsed or bound.
  static std::unique_ptr<OperatorView> Start(OperatorViewOptions options = {});

  OperatorView(const OperatorView&) = delete;
  OperatorView& operator=(const OperatorView&) = delete;
  // Stops and joins.
  ~OperatorView();

  // Stops accepting, lets the requests being served finish (each is bounded by the
  // timeouts), and joins every thread of the view. Idempotent.
  void Stop();

  const std::string& Host() const noexcept;
  // The bound port (the one picked when the options said 0).
  std::uint16_t Port() const noexcept;
  // "http://host:port".
  std::string Url() const;

 private:
  struct Impl;
  explicit OperatorView(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace plexus::ops
