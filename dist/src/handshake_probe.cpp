// The blocking driver around HandshakeInitiatorCore: one non-blocking socket,
// poll() against a single deadline, no threads of its own.
#include "dist/handshake_probe.hpp"

#include <arpa/inet.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace beamlink::dist {

namespace {

using Clock = std::chrono::steady_clock;

class Fd {
 public:
  explicit Fd(int fd) : fd_(fd) {}
  ~Fd() {
    if (fd_ >= 0) ::close(fd_);
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

// Milliseconds left until the deadline, rounded up; 0 when it has passed.
int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now()).count();
  return left > 0 ? static_cast<int>(left) : 0;
}

// Waits for `events` on fd until the deadline. 1: ready, 0: timed out, -1: errno set.
int wait_for(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    int ms = remaining_ms(deadline);
    if (ms == 0) return 0;
    pollfd p{fd, events, 0};
    int rc = ::poll(&p, 1, ms);
    if (rc < 0 && errno == EINTR) continue;
    if (rc <= 0) return rc;
    return 1;
  }
}

bool is_closed_errno(int err) {
  return err == ECONNRESET || err == EPIPE;
}

std::pair<std::string, std::string> split_node(const std::string& node) {
  auto at = node.find('@');
  if (at == std::string::npos) return {node, ""};
  return {node.substr(0, at), node.substr(at + 1)};
}

}  // namespace

std::string describe_name_mismatch(const std::string& expected, const std::string& actual) {
  if (actual.empty() || expected == actual) return {};
  auto [e_alive, e_host] = split_node(expected);
  auto [a_alive, a_host] = split_node(actual);
  if (e_host != a_host)
    return "the peer calls itself '" + actual + "' but we dialled it as '" + expected +
           "': Erlang nodes refuse a peer whose name differs from the one they dialled, so the "
           "cluster cannot form — NODE_HOST must be the pod IP (start the node as " +
           a_alive + "@" + e_host + " with -name)";
  return "the node at that address is '" + actual + "', not '" + expected +
         "' — set PEER_NAME to '" + a_alive +
         "' (the part before the @ of the cluster's node names)";
}

HandshakeReport probe_handshake(const std::string& peer_node_expected, in_addr ip,
                                std::uint16_t port, const std::string& our_name,
                                const std::string& cookie, std::chrono::milliseconds timeout,
                                std::uint64_t our_flags, int version) {
  auto t0 = Clock::now();
  auto deadline = t0 + timeout;
  HandshakeReport report;
  char ip_text[INET_ADDRSTRLEN] = "?";
  ::inet_ntop(AF_INET, &ip, ip_text, sizeof ip_text);
  std::string addr = std::string(ip_text) + ":" + std::to_string(port);
  std::string where = "handshake with " + peer_node_expected + " at " + addr + ": ";
  auto finish = [&](Error e) {
    e.message = where + e.message;
    report.outcome = std::move(e);
    report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    return report;
  };

  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (fd.get() < 0)
    return finish(
        posix_error(Errc::io_error, std::string("socket: ") + std::strerror(errno), errno));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = ip;
  sa.sin_port = htons(port);
  int rc = ::connect(fd.get(), reinterpret_cast<const sockaddr*>(&sa), sizeof sa);
  int err = rc == 0 ? 0 : errno;
  if (err == EINPROGRESS) {
    int w = wait_for(fd.get(), POLLOUT, deadline);
    if (w == 0)
      return finish(posix_error(Errc::timeout,
                                "the TCP connect to " + addr + " did not complete within " +
                                    std::to_string(timeout.count()) +
                                    " ms — a firewall drops the port, or the address is wrong",
                                ETIMEDOUT));
    socklen_t len = sizeof err;
    if (w < 0)
      err = errno;
    else if (::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0)
      err = errno;
  }
  if (err == ECONNREFUSED)
    return finish(posix_error(
        Errc::connection_refused,
        "nothing listens at " + addr + " — the node is down or epmd's entry for it is stale", err));
  if (err != 0)
    return finish(
        posix_error(Errc::io_error, "cannot connect to " + addr + ": " + std::strerror(err), err));
  report.tcp_connected = true;
  int one = 1;
  (void)::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);

  if (version == 5 && our_flags == dflag::probe_default) our_flags = dflag::v5_default;
  HandshakeInitiatorCore core(our_name, cookie, our_flags, 1, std::nullopt, version);
  std::string out = core.start();
  char buf[4096];
  while (!core.failed()) {
    // Send what is due (our name, our reply, or "false" to `alive`).
    std::size_t sent = 0;
    while (sent < out.size() && !core.failed()) {
      ssize_t n = ::send(fd.get(), out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
      if (n >= 0) {
        sent += static_cast<std::size_t>(n);
      } else if (errno == EAGAIN || errno == EINTR) {
        if (wait_for(fd.get(), POLLOUT, deadline) == 0) core.on_timeout(timeout);
      } else if (is_closed_errno(errno)) {
        core.on_closed();
      } else {
        core.on_io_error(errno);
      }
    }
    out.clear();
    if (core.done() || core.failed()) break;

    int w = wait_for(fd.get(), POLLIN, deadline);
    if (w == 0) {
      core.on_timeout(timeout);
      break;
    }
    if (w < 0) {
      core.on_io_error(errno);
      break;
    }
    ssize_t n = ::recv(fd.get(), buf, sizeof buf, 0);
    if (n > 0) {
      out = core.feed(std::span<const char>(buf, static_cast<std::size_t>(n)));
    } else if (n == 0 || is_closed_errno(errno)) {
      core.on_closed();
    } else if (errno != EAGAIN && errno != EINTR) {
      core.on_io_error(errno);
    }
  }

  report.peer = core.findings();
  report.name_mismatch_message = describe_name_mismatch(peer_node_expected, report.peer.peer_name);
  report.name_mismatch = !report.name_mismatch_message.empty();
  if (core.done()) {
    // A clean close: the peer sees the connection go (nodedown), nothing more.
    (void)::shutdown(fd.get(), SHUT_WR);
    report.stage = HandshakeStage::done;
    report.elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
    return report;
  }
  report.stage = core.failed_at();
  return finish(core.error());
}

}  // namespace beamlink::dist
