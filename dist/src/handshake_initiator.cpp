// The initiating side of the distribution handshake ("Distribution
// Handshake" in the ERTS user's guide: send_name, recv_status,
// recv_challenge, send_challenge_reply, recv_challenge_ack), run by ei.
#include <arpa/inet.h>
#include <ei.h>

#include <cerrno>
#include <cstring>
#include <mutex>

#include <unistd.h>

#include "dist/handshake_core.hpp"
#include "ei_socket.hpp"
#include "handshake.hpp"

namespace beamlink::dist {

Result<void> init_ei_identity(ei_cnode* ec, const std::string& node_name, const std::string& cookie,
                              std::uint32_t creation, ei_socket_callbacks* cbs) {
  static std::once_flag once;
  static int init_rc = 0;
  std::call_once(once, [] { init_rc = ei_init(); });
  if (init_rc != 0) return ei_error(Errc::io_error, "ei_init failed", init_rc);

  auto at = node_name.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == node_name.size())
    return make_error(Errc::invalid_argument,
                      "node name '" + node_name + "' is not of the form alive@host");
  std::string alive = node_name.substr(0, at);
  std::string host = node_name.substr(at + 1);
  if (alive.size() > EI_MAXALIVELEN || host.size() > EI_MAXHOSTNAMELEN ||
      node_name.size() > MAXNODELEN)
    return make_error(Errc::invalid_argument, "node name '" + node_name + "' is too long");
  if (cookie.empty() || cookie.size() > EI_MAX_COOKIE_SIZE)
    return make_error(Errc::invalid_argument, "the cookie is empty or longer than " +
                                                  std::to_string(EI_MAX_COOKIE_SIZE) + " bytes");
  in_addr unused{};
  int rc = cbs ? ei_connect_xinit_ussi(ec, host.c_str(), alive.c_str(), node_name.c_str(), &unused,
                                       cookie.c_str(), creation, cbs, sizeof *cbs, nullptr)
               : ei_connect_xinit(ec, host.c_str(), alive.c_str(), node_name.c_str(), &unused,
                                  cookie.c_str(), creation);
  if (rc < 0)
    return ei_error(Errc::invalid_argument,
                    "ei rejected the node identity '" + node_name + "' (erl_errno " +
                        std::to_string(erl_errno) + ")",
                    erl_errno);
  return {};
}

Result<EiDialed> handshake_initiate(const ei_cnode& ec, const std::string& peer, in_addr addr,
                                    std::uint16_t port, unsigned timeout_ms) {
  ei_cnode local = ec;  // ei keeps per-call state in the cnode; each worker uses its own copy
  errno = 0;
  HandshakeRecording recording(std::chrono::steady_clock::now() +
                               std::chrono::milliseconds(timeout_ms));
  int fd = ei_xconnect_host_port_tmo(&local, &addr, port, timeout_ms);
  int sys = errno;
  int eerr = erl_errno;
  if (fd >= 0) {
    EiDialed d;
    d.fd = fd;
    if (auto c = parse_received_challenge(recording.received())) {
      d.challenge_seen = true;
      d.peer_flags = c->flags;
      d.peer_name = c->name;
    }
    if (d.challenge_seen && d.peer_name != peer) {
      ::close(fd);  // a BEAM refuses it before its reply; ei cannot, so we close now
      return make_error(Errc::handshake_failed,
                        "connecting to " + peer + ": " + name_mismatch_text(peer, d.peer_name));
    }
    return d;
  }
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &addr, ip, sizeof ip);
  std::string where = peer + " at " + ip + ":" + std::to_string(port);
  if (eerr == ETIMEDOUT || sys == ETIMEDOUT)
    return posix_error(Errc::timeout,
                       "connecting to " + where + " timed out after " + std::to_string(timeout_ms) +
                           " ms (TCP connect or handshake) — is a firewall dropping "
                           "the port, or is the node overloaded?",
                       ETIMEDOUT);
  if (sys == ECONNREFUSED || eerr == ECONNREFUSED)
    return posix_error(Errc::connection_refused,
                       "nothing listens at " + std::string(ip) + ":" + std::to_string(port) +
                           " for " + peer + " — the node is down or epmd's entry is stale",
                       ECONNREFUSED);
  if (sys == EHOSTUNREACH || sys == ENETUNREACH)
    return posix_error(Errc::io_error, "cannot reach " + where + ": " + std::strerror(sys), sys);
  return ei_error(Errc::handshake_failed,
                  "handshake with " + where +
                      " failed: the peer closed the connection — most often the cookies "
                      "differ (the peer logs 'Connection attempt ... rejected'), or it refused "
                      "our name; `beamlink doctor` shows which step fails",
                  eerr);
}

}  // namespace beamlink::dist
