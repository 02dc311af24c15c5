#include "dialer.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <memory>

#include "common/uv_util.hpp"
#include "handshake.hpp"

namespace beamlink::dist {
namespace {

struct ResolveWork {
  uv_getaddrinfo_t req;
  Liveness::Watch alive;
  std::function<void(Result<in_addr>)> cb;
};

struct HandshakeWork {
  uv_work_t req;
  Liveness::Watch alive;
  std::function<void(Result<int>)> cb;
  ei_cnode ec;
  std::string peer;
  in_addr addr;
  std::uint16_t port;
  unsigned timeout_ms;
  Result<int> result = make_error(Errc::io_error, "not run");
};

}  // namespace

Dialer::Dialer(uv_loop_t* loop, epmd_client::Client& epmd, const ei_cnode& ec,
               const NodeConfig& config, std::string peer, Done done)
    : loop_(loop),
      epmd_(epmd),
      ec_(ec),
      epmd_port_(config.epmd_port),
      timeout_(config.connect_timeout),
      peer_(std::move(peer)),
      done_(std::move(done)) {
  auto at = peer_.find('@');
  alive_name_ = peer_.substr(0, at);
  host_ = at == std::string::npos ? std::string() : peer_.substr(at + 1);
}

void Dialer::start() {
  resolve();
}

// resolve: a literal at once (reported later), a name on libuv's pool.
void Dialer::resolve() {
  step_ = Step::resolve;
  auto resolved = [this](Result<in_addr> addr) {
    if (!addr)
      return fail(make_error(addr.error().code, peer_ + ": " + addr.error().message,
                             addr.error().domain, addr.error().source));
    port_please(*addr);
  };
  in_addr a{};
  if (inet_pton(AF_INET, host_.c_str(), &a) == 1) {
    defer(loop_, alive_.watch(), [resolved, a] { resolved(a); });
    return;
  }
  auto* w = new ResolveWork{{}, alive_.watch(), resolved};
  w->req.data = w;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(
      loop_, &w->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<ResolveWork> work(static_cast<ResolveWork*>(req->data));
        if (work->alive) {
          if (status != 0 || !res)
            work->cb(uv_error(Errc::not_found,
                              std::string("cannot resolve the host part to an IPv4 address: ") +
                                  uv_strerror(status) + " — use the node's IP address or fix DNS",
                              status));
          else
            work->cb(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr);
        }
        if (res) uv_freeaddrinfo(res);
      },
      host_.c_str(), nullptr, &hints);
  if (rc != 0) {
    std::unique_ptr<ResolveWork> work(w);
    defer(loop_, alive_.watch(), [cb = std::move(work->cb), rc, host = host_] {
      cb(uv_error(Errc::io_error, "cannot start resolving " + host + ": " + uv_strerror(rc), rc));
    });
  }
}

// port_please: PORT_PLEASE2 to the epmd on the peer's host.
void Dialer::port_please(in_addr addr) {
  step_ = Step::port_please;
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, ip, sizeof ip);
  epmd_client::Endpoint ep;
  ep.host = ip;
  ep.port = epmd_port_;
  epmd_.port_please(
      ep, alive_name_, timeout_,
      [this, alive = alive_.watch(), addr](Result<epmd_client::NodeInfo> info) {
        if (!alive) return;
        if (!info)
          return fail(make_error(info.error().code,
                                 "connecting to " + peer_ + ": " + info.error().message,
                                 info.error().domain, info.error().source));
        if (info->highest_version < 6)
          return fail(make_error(Errc::handshake_failed,
                                 peer_ + " speaks distribution version " +
                                     std::to_string(info->highest_version) +
                                     " only; beamlink needs OTP 23 or newer (version 6)"));
        handshake(addr, info->port);
      });
}

// handshake: ei's blocking connect and handshake on libuv's pool.
void Dialer::handshake(in_addr addr, std::uint16_t port) {
  step_ = Step::handshake;
  auto* w = new HandshakeWork{};
  w->req.data = w;
  w->alive = alive_.watch();
  w->cb = [this](Result<int> fd) {
    if (!fd) return fail(std::move(fd).error());
    succeed(*fd);
  };
  w->ec = ec_;
  w->peer = peer_;
  w->addr = addr;
  w->port = port;
  w->timeout_ms = static_cast<unsigned>(timeout_.count());
  int rc = uv_queue_work(
      loop_, &w->req,
      [](uv_work_t* req) {
        auto* work = static_cast<HandshakeWork*>(req->data);
        work->result =
            handshake_initiate(work->ec, work->peer, work->addr, work->port, work->timeout_ms);
      },
      [](uv_work_t* req, int) {
        std::unique_ptr<HandshakeWork> work(static_cast<HandshakeWork*>(req->data));
        if (!work->alive) {
          if (work->result) ::close(*work->result);
          return;
        }
        work->cb(std::move(work->result));
      });
  if (rc != 0) {
    delete w;
    defer(loop_, alive_.watch(), [this, rc] {
      fail(uv_error(Errc::io_error,
                    "connecting to " + peer_ + ": cannot start the handshake: " + uv_strerror(rc),
                    rc));
    });
  }
}

void Dialer::succeed(int fd) {
  step_ = Step::done;
  auto done = std::move(done_);
  done(fd);  // may destroy this Dialer: nothing after it
}

void Dialer::fail(Error why) {
  step_ = Step::done;
  auto done = std::move(done_);
  done(std::move(why));  // may destroy this Dialer: nothing after it
}

}  // namespace beamlink::dist
