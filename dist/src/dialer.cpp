#include "dialer.hpp"

#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
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
  ei_cnode ec;
  std::string peer;
  in_addr addr;
  std::uint16_t port;
  std::chrono::steady_clock::time_point deadline;  // the dial's, from submission
  std::shared_ptr<Dialer::JobState> state;         // Dialer::job_state_
  Result<EiDialed> result = make_error(Errc::io_error, "not run");
};

}  // namespace

Dialer::Dialer(uv_loop_t* loop, epmd_client::Client& epmd, DialPool& pool, const ei_cnode& ec,
               const NodeConfig& config, std::string peer, Done done)
    : loop_(loop),
      epmd_(epmd),
      pool_(pool),
      ec_(ec),
      epmd_port_(config.epmd_port),
      timeout_(config.connect_timeout),
      our_name_(config.name),
      cookie_(config.cookie),
      peer_(std::move(peer)),
      done_(std::move(done)) {
  auto at = peer_.find('@');
  alive_name_ = peer_.substr(0, at);
  host_ = at == std::string::npos ? std::string() : peer_.substr(at + 1);
}

Dialer::~Dialer() {
  // A lookup still queued on libuv's pool is dropped; a running one ends on
  // its own and its callback frees the result (our watch has expired).
  if (resolving_) uv_cancel(resolving_);
}

void Dialer::start() {
  deadline_ = std::chrono::steady_clock::now() + timeout_;
  if (int rc = timer_.init(loop_, this, uv_timer_init); rc != 0) {
    defer(loop_, alive_.watch(), [this, rc] {
      fail(uv_error(Errc::io_error,
                    "connecting to " + peer_ + ": uv_timer_init: " + uv_strerror(rc), rc));
    });
    return;
  }
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Dialer*>(t->data)) self->on_deadline();
      },
      static_cast<std::uint64_t>(timeout_.count()), 0);
  resolve();
}

std::chrono::milliseconds Dialer::remaining() const {
  auto left =
      std::chrono::ceil<std::chrono::milliseconds>(deadline_ - std::chrono::steady_clock::now());
  return std::max(left, std::chrono::milliseconds(1));
}

void Dialer::on_deadline() {
  if (step_ == Step::done) return;
  bool queued = false;
  if (step_ == Step::handshake && job_state_) {
    int expected = 0;
    queued = job_state_->state.compare_exchange_strong(expected, 2);
  }
  fail(deadline_error(queued));
}

Error Dialer::deadline_error(bool queued) const {
  const std::string ms = std::to_string(timeout_.count()) + " ms";
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &addr_, ip, sizeof ip);
  std::string text = "connecting to " + peer_ + ": ";
  switch (step_) {
    case Step::resolve:
      text += "resolving " + host_ + " took longer than " + ms +
              " (connect_timeout) — the resolver does not answer; use the node's IP address "
              "or fix DNS";
      break;
    case Step::port_please:
      text += "epmd at " + std::string(ip) + ":" + std::to_string(epmd_port_) +
              " did not give the port of '" + alive_name_ + "' within " + ms +
              " of the dial (connect_timeout) — is a firewall dropping port " +
              std::to_string(epmd_port_) + ", or is the host overloaded?";
      break;
    case Step::handshake:
      if (queued)
        text += "waited " +
                std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                   std::chrono::steady_clock::now() - queued_at_)
                                   .count()) +
                " ms for a dial thread (all " + std::to_string(pool_.threads()) +
                " busy with slower handshakes) — connect_timeout (" + ms +
                ") ran out before the handshake could start";
      else {
        text += "TCP connect and handshake with " + std::string(ip) + ":" + std::to_string(port_) +
                " did not finish within " + ms + " of the dial (connect_timeout)";
        // A job that got its thread late had little of the budget left: say so.
        if (job_state_ && job_state_->started.load() != 0) {
          auto started = std::chrono::steady_clock::time_point(
              std::chrono::steady_clock::duration(job_state_->started.load()));
          auto waited = std::chrono::duration_cast<std::chrono::milliseconds>(started - queued_at_);
          if (waited * 4 >= timeout_)
            text += ", " + std::to_string(waited.count()) +
                    " ms of it waiting for a dial thread (all " + std::to_string(pool_.threads()) +
                    " busy with slower handshakes)";
        }
        text += " — is a firewall dropping the port, or is the node overloaded?";
      }
      break;
    case Step::done:
      text += "connect_timeout (" + ms + ") ran out";
      break;
  }
  return posix_error(Errc::timeout, text, ETIMEDOUT);
}

// resolve: a literal at once (reported later), a name on libuv's pool.
void Dialer::resolve() {
  step_ = Step::resolve;
  auto resolved = [this](Result<in_addr> addr) {
    resolving_ = nullptr;
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
  // The watch expires when the dial ends (deadline or not): a late result
  // is then freed and ignored.
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
  if (rc == 0) resolving_ = reinterpret_cast<uv_req_t*>(&w->req);
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
  addr_ = addr;
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &addr, ip, sizeof ip);
  epmd_client::Endpoint ep;
  ep.host = ip;
  ep.port = epmd_port_;
  epmd_.port_please(
      ep, alive_name_, remaining(),
      [this, alive = alive_.watch(), addr](Result<epmd_client::NodeInfo> info) {
        if (!alive) return;
        if (!info && info.error().code == Errc::timeout) return fail(deadline_error(false));
        if (!info)
          return fail(make_error(info.error().code,
                                 "connecting to " + peer_ + ": " + info.error().message,
                                 info.error().domain, info.error().source));
        if (info->highest_version >= 6) return handshake(addr, info->port);
        if (info->highest_version == 5 || info->lowest_version <= 5)
          return handshake_v5(addr, info->port);
        fail(make_error(Errc::handshake_failed,
                        peer_ + " speaks distribution versions " +
                            std::to_string(info->lowest_version) + " to " +
                            std::to_string(info->highest_version) +
                            " (epmd's answer); beamlink speaks 5 (OTP 21/22) and 6 (OTP 23+)"));
      });
}

// handshake: ei's blocking connect and handshake on a dial thread, through
// the poll() socket callbacks (no fd_set, one deadline).
void Dialer::handshake(in_addr addr, std::uint16_t port) {
  step_ = Step::handshake;
  port_ = port;
  auto w = std::make_shared<HandshakeWork>();
  w->ec = ec_;
  w->peer = peer_;
  w->addr = addr;
  w->port = port;
  w->deadline = deadline_;
  w->state = job_state_ = std::make_shared<JobState>();
  queued_at_ = std::chrono::steady_clock::now();
  DialPool::Job job;
  job.run = [w] {
    int expected = 0;
    if (!w->state->state.compare_exchange_strong(expected, 1)) return;  // abandoned while queued
    w->state->started = std::chrono::steady_clock::now().time_since_epoch().count();
    auto left = std::chrono::ceil<std::chrono::milliseconds>(w->deadline -
                                                             std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      w->result = make_error(Errc::timeout, "no time left");
      return;
    }
    w->result =
        handshake_initiate(w->ec, w->peer, w->addr, w->port, static_cast<unsigned>(left.count()));
  };
  job.discard = [w] {
    if (w->result) ::close(w->result->fd);
  };
  job.complete = [this, w, alive = alive_.watch()] {
    if (!alive) {
      if (w->result) ::close(w->result->fd);
      return;
    }
    if (!w->result && w->result.error().code == Errc::timeout) return fail(deadline_error(false));
    if (!w->result) return fail(std::move(w->result).error());
    DialedPeer p;
    p.fd = w->result->fd;
    p.version = 6;
    p.name = w->result->peer_name;
    if (w->result->challenge_seen) {
      p.flags = w->result->peer_flags;
    } else {
      // Not seen (cannot happen with our callbacks): an OTP 23+ peer has at
      // least OTP 23's flags, which include UNLINK_ID.
      p.flags = dflag::mandatory_25 | dflag::unlink_id;
      p.flags_known = false;
    }
    succeed(std::move(p));
  };
  if (auto r = pool_.submit(std::move(job)); !r)
    defer(loop_, alive_.watch(), [this, e = r.error()] {
      fail(make_error(e.code, "connecting to " + peer_ + ": " + e.message, e.domain, e.source));
    });
}

// handshake, version 5: our core on the loop, one deadline for all of it.
void Dialer::handshake_v5(in_addr addr, std::uint16_t port) {
  step_ = Step::handshake;
  port_ = port;
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = addr;
  sa.sin_port = htons(port);
  char ip[INET_ADDRSTRLEN] = "?";
  inet_ntop(AF_INET, &addr, ip, sizeof ip);
  HandshakeInitiatorCore core(our_name_, cookie_, dflag::v5_default, 0, std::nullopt, 5);
  core.expect_peer(peer_);
  driver_ = std::make_unique<HandshakeDriver>(
      loop_, std::move(core), sa, remaining(),
      "connecting to " + peer_ + " at " + ip + ":" + std::to_string(port) + " (version 5)",
      [this](Result<DialedPeer> p) {
        auto driver = std::move(driver_);  // destroyed when this returns
        if (!p && p.error().code == Errc::timeout) return fail(deadline_error(false));
        if (!p) return fail(std::move(p).error());
        succeed(std::move(*p));
      });
  driver_->start();
}

void Dialer::succeed(DialedPeer p) {
  step_ = Step::done;
  timer_.reset();
  alive_.expire();  // nothing pending reaches this Dialer any more
  auto done = std::move(done_);
  done(std::move(p));  // may destroy this Dialer: nothing after it
}

void Dialer::fail(Error why) {
  step_ = Step::done;
  timer_.reset();
  driver_.reset();  // a version 5 handshake in progress closes its socket
  if (resolving_) {
    uv_cancel(resolving_);  // only while queued; a running lookup is ignored when it ends
    resolving_ = nullptr;
  }
  alive_.expire();  // a late lookup, epmd answer or handshake is dropped (its socket closed)
  auto done = std::move(done_);
  done(std::move(why));  // may destroy this Dialer: nothing after it
}

}  // namespace beamlink::dist
