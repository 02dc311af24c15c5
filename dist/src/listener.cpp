#include "listener.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace beamlink::dist {

Result<std::pair<int, std::uint16_t>> listen_in_range(std::uint16_t port_min,
                                                      std::uint16_t port_max) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return posix_error(Errc::io_error, std::string("socket: ") + std::strerror(errno), errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int bound_port = -1;
  int last_errno = 0;
  for (int port = port_min; port <= port_max; ++port) {
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_ANY);
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0) {
      bound_port = port;
      break;
    }
    last_errno = errno;
  }
  if (bound_port < 0 || ::listen(fd, 128) != 0) {
    ::close(fd);
    return posix_error(Errc::already_exists,
                       "no free distribution port in " + std::to_string(port_min) + "-" +
                           std::to_string(port_max) + " (" + std::strerror(last_errno) +
                           ") — widen DIST_PORT_MIN/MAX or stop what uses them",
                       last_errno);
  }
  // Port 0 in the range means "any": read back what the kernel chose.
  sockaddr_in bound{};
  socklen_t bound_len = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) == 0)
    bound_port = ntohs(bound.sin_port);
  return std::make_pair(fd, static_cast<std::uint16_t>(bound_port));
}

Result<void> Listener::start(const ei_cnode& ec, int listen_fd, int threads, unsigned timeout_ms,
                             Accepted on_accepted) {
  on_accepted_ = std::move(on_accepted);
  int rc = wake_.init(loop_, this, uv_async_init, [](uv_async_t* a) {
    auto* self = static_cast<Listener*>(a->data);
    if (!self) return;
    std::deque<HandshakeAcceptor::Accepted> items;
    {
      std::lock_guard lock(self->inbox_->mutex);
      items.swap(self->inbox_->items);
    }
    for (auto& item : items) {
      if (self->stopped_) {
        if (item.fd >= 0) ::close(item.fd);
        continue;
      }
      self->on_accepted_(std::move(item));  // may stop (or destroy) the node
    }
  });
  if (rc != 0) {
    ::close(listen_fd);
    return uv_error(Errc::io_error,
                    std::string("cannot create the accept queue: ") + uv_strerror(rc), rc);
  }
  // The threads reach the inbox and the async handle only until stop(),
  // which returns once no callback can run any more.
  acceptor_ = std::make_unique<HandshakeAcceptor>(
      ec, listen_fd, threads, timeout_ms,
      [inbox = inbox_, wake = wake_.get()](HandshakeAcceptor::Accepted a) {
        {
          std::lock_guard lock(inbox->mutex);
          inbox->items.push_back(std::move(a));
        }
        uv_async_send(wake);
      });
  acceptor_->start();
  return {};
}

void Listener::stop() {
  if (stopped_) return;
  stopped_ = true;
  if (acceptor_) acceptor_->stop();  // no callback runs after it returns
  {
    std::lock_guard lock(inbox_->mutex);
    for (auto& item : inbox_->items)
      if (item.fd >= 0) ::close(item.fd);
    inbox_->items.clear();
  }
  wake_.reset();
}

}  // namespace beamlink::dist
