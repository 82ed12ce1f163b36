#include "operator_view.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>

#include "plexus/ops/operator_view.h"

namespace sim {

std::string ValidateListenAddress(const std::string& address) {
  const std::size_t colon = address.rfind(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == address.size()) {
    return "expected ADDR:PORT, got '" + address + "'";
  }
  std::string host = address.substr(0, colon);
  const std::string port_text = address.substr(colon + 1);
  char* end = nullptr;
  errno = 0;
  const long port = std::strtol(port_text.c_str(), &end, 10);
  if (errno != 0 || *end != '\0' || port < 0 || port > 65535) {
    return "port '" + port_text + "' is not in 0-65535";
  }
  if (host == "localhost") host = "127.0.0.1";
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(static_cast<std::uint16_t>(port));
  if (inet_pton(AF_INET, host.c_str(), &sa.sin_addr) != 1) {
    return "'" + host + "' is not an IPv4 address";
  }
  // The port must be free now; the view binds it when it starts.
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return std::string("socket: ") + std::strerror(errno);
  const int bound = bind(fd, reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  const int error = errno;
  close(fd);
  if (bound != 0) return address + ": " + std::strerror(error);
  return {};
}

// The one place where the operator view is switched on; it serves until the handle goes.
OperatorViewHandle StartOperatorView(const std::string& address,
                                     std::vector<plexus::ops::Section> sections) {
  std::string host = address.substr(0, address.rfind(':'));
  if (host == "localhost") host = "127.0.0.1";
  std::shared_ptr<plexus::ops::OperatorView> view = plexus::ops::OperatorView::Start(
      {.listen = host + ":" + address.substr(address.rfind(':') + 1),
       .sections = std::move(sections)});
  if (view == nullptr) {
    std::fprintf(stderr, "plexus_sim: --listen=%s: the operator view could not start\n",
                 address.c_str());
    return nullptr;
  }
  std::fprintf(stderr, "plexus_sim: operator view on %s\n", view->Url().c_str());
  return view;
}

}  // namespace sim
