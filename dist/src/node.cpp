#include "dist/node.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <random>
#include <unordered_map>

#include "common/log_event.hpp"
#include "common/uv_util.hpp"
#include "connection.hpp"
#include "dist/control.hpp"
#include "dist/framer.hpp"
#include "dist/io_request.hpp"
#include "epmd_client/client.hpp"
#include "handshake.hpp"
#include "term/term_text.hpp"

namespace beamlink::dist {
namespace {

// How long a closed connection's final counts stay answerable (far longer
// than any consumer's settle interval).
constexpr std::uint64_t kLastProgressKeepMs = 10 * 60 * 1000;

std::string span_str(std::span<const char> s) {
  return std::string(s.data(), s.size());
}

}  // namespace

Result<std::pair<std::string, std::string>> split_node_name(const std::string& node) {
  auto at = node.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == node.size() ||
      node.find('@', at + 1) != std::string::npos)
    return make_error(
        Errc::invalid_argument,
        "'" + node + "' is not a node name: expected alive@host, e.g. ewallet@10.0.0.5");
  return std::make_pair(node.substr(0, at), node.substr(at + 1));
}

struct PendingRpc {
  std::function<void(Result<RpcReply>)> cb;
  uv_timer_t* timer = nullptr;  // data: a RpcTimer
  std::string node;
  Error failure;  // what the timer reports when it fires
};
struct RpcTimer {
  Node* node;
  term::Ref ref;
};

struct Node::Impl {
  std::shared_ptr<int> alive = std::make_shared<int>(0);
  ei_cnode ec{};
  int listen_fd = -1;
  std::unique_ptr<HandshakeAcceptor> acceptor;
  uv_async_t* inbox_async = nullptr;
  std::mutex inbox_mutex;
  std::deque<HandshakeAcceptor::Accepted> inbox;
  std::unique_ptr<epmd_client::Client> epmd;
  std::unique_ptr<epmd_client::Registration> registration;
  uv_timer_t* ticker = nullptr;
  // Connections with frames to write: flushed once per loop turn, after the
  // turn's I/O callbacks (uv_check), so that the frames of many sends (e.g.
  // one relay broadcast per HTTP request read in this turn) leave in one
  // write per connection instead of one each.
  uv_check_t* flusher = nullptr;
  std::vector<Connection*> dirty;
  std::unordered_map<std::string, Connection*> connections;
  // The last closed connection's progress per peer, for progress(node,
  // connection) after the close. Forgotten kLastProgressKeepMs after the
  // close once final, so peers that come and go (pods replaced under new
  // addresses) do not accumulate.
  struct Closed {
    std::shared_ptr<const OutboundProgress> progress;
    std::uint64_t closed_at = 0;  // uv_now
  };
  std::unordered_map<std::string, Closed> last_progress;
  std::map<std::string, std::vector<std::function<void(Result<void>)>>> connecting;
  std::map<std::string, std::uint64_t> last_accept_warning;  // message -> uv_now when warned
  term::Pid rpc_pid;
  std::map<term::Ref, PendingRpc> rpcs;
  bool started = false;
  bool ready = false;       // the ei identity exists: connects and rpcs may run
  bool destroying = false;  // ~Node: drop pending callbacks instead of calling them
  bool stopped = false;
};

Node::Node(uv_loop_t* loop, NodeConfig config)
    : loop_(loop), config_(std::move(config)), table_(config_.name, 0), impl_(new Impl) {
  // ei's blocking writes on worker threads would otherwise kill the process
  // when a peer goes away mid-handshake.
  ::signal(SIGPIPE, SIG_IGN);
}

Node::~Node() {
  impl_->destroying = true;
  stop();
  impl_->registration.reset();
  impl_->epmd.reset();
}

Result<void> Node::start(std::function<void(Result<void>)> on_ready) {
  if (impl_->started) return make_error(Errc::invalid_argument, "node already started");
  auto parts = split_node_name(config_.name);
  if (!parts) return parts.error();
  if (config_.ticktime.count() < 1000)
    return make_error(Errc::invalid_argument, "net_ticktime must be at least 1 s");
  impl_->started = true;
  impl_->epmd = std::make_unique<epmd_client::Client>(loop_);

  // The ticker: every ticktime/8, send ticks on idle connections and drop
  // silent ones (silent for a whole ticktime).
  impl_->ticker = new uv_timer_t;
  uv_timer_init(loop_, impl_->ticker);
  impl_->ticker->data = this;
  auto period = static_cast<std::uint64_t>(config_.ticktime.count() / 8);
  uv_timer_start(
      impl_->ticker,
      [](uv_timer_t* t) {
        auto* self = static_cast<Node*>(t->data);
        auto now = uv_now(self->loop_);
        std::vector<Connection*> conns;
        for (auto& [n, c] : self->impl_->connections) conns.push_back(c);
        for (auto* c : conns)
          c->on_tick_check(now, static_cast<std::uint64_t>(self->config_.ticktime.count()));
      },
      period, period);
  uv_unref(reinterpret_cast<uv_handle_t*>(impl_->ticker));
  impl_->flusher = new uv_check_t;
  uv_check_init(loop_, impl_->flusher);
  impl_->flusher->data = this;
  uv_check_start(impl_->flusher, [](uv_check_t* h) {
    auto* self = static_cast<Node*>(h->data);
    if (self->impl_->dirty.empty()) return;
    auto list = std::move(self->impl_->dirty);
    self->impl_->dirty.clear();
    for (auto* c : list) c->flush();  // a closed one left the list in connection_closed
  });
  uv_unref(reinterpret_cast<uv_handle_t*>(impl_->flusher));

  if (!config_.publish) {
    // A one-shot client: not listening, not registered; a random creation as
    // erl_call uses.
    std::random_device rd;
    std::uint32_t creation = (rd() % 0x7ffffff0u) + 4;
    table_.set_creation(creation);
    if (auto r = init_ei_identity(&impl_->ec, config_.name, config_.cookie, creation); !r)
      return r.error();
    install_builtins();
    impl_->ready = true;
    defer(loop_, impl_->alive, [cb = std::move(on_ready)] { cb({}); });
    return {};
  }

  // Listen on the first free port of the range, as inet_dist_listen_min/max.
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return make_error(Errc::io_error, std::string("socket: ") + std::strerror(errno), errno);
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  int bound_port = -1;
  int last_errno = 0;
  for (int port = config_.port_min; port <= config_.port_max; ++port) {
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
    return make_error(Errc::already_exists,
                      "no free distribution port in " + std::to_string(config_.port_min) + "-" +
                          std::to_string(config_.port_max) + " (" + std::strerror(last_errno) +
                          ") — widen DIST_PORT_MIN/MAX or stop what uses them",
                      last_errno);
  }
  impl_->listen_fd = fd;
  // Port 0 in the range means "any": read back what the kernel chose.
  sockaddr_in bound{};
  socklen_t bound_len = sizeof bound;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&bound), &bound_len) == 0)
    bound_port = ntohs(bound.sin_port);
  listen_port_ = static_cast<std::uint16_t>(bound_port);

  epmd_client::Registration::Options ro;
  ro.epmd.host = config_.epmd_host;
  ro.epmd.port = config_.epmd_port;
  ro.alive = parts->first;
  ro.port = listen_port_;
  auto ready = std::make_shared<std::function<void(Result<void>)>>(std::move(on_ready));
  impl_->registration = std::make_unique<epmd_client::Registration>(
      loop_, ro, [this, ready](const epmd_client::Registration::Event& ev) {
        using Kind = epmd_client::Registration::Event::Kind;
        switch (ev.kind) {
          case Kind::registered: {
            table_.set_creation(ev.creation);
            if (auto r = init_ei_identity(&impl_->ec, config_.name, config_.cookie, ev.creation);
                !r) {
              if (*ready) std::exchange(*ready, nullptr)(r.error());
              return;
            }
            install_builtins();
            impl_->ready = true;
            impl_->inbox_async = new uv_async_t;
            uv_async_init(loop_, impl_->inbox_async, [](uv_async_t* a) {
              auto* self = static_cast<Node*>(a->data);
              std::deque<HandshakeAcceptor::Accepted> items;
              {
                std::lock_guard lock(self->impl_->inbox_mutex);
                items.swap(self->impl_->inbox);
              }
              for (auto& item : items) {
                if (self->impl_->stopped) {
                  if (item.fd >= 0) ::close(item.fd);
                  continue;
                }
                if (item.fd < 0) {
                  ++self->stats_.accept_failures;
                  ++self->accept_failure_reasons_[std::string(errc_name(item.error.code))];
                  // The same failure (e.g. a pod with another cookie
                  // redialling every few seconds) is a warning once a minute.
                  auto now = uv_now(self->loop_);
                  auto [at, fresh] =
                      self->impl_->last_accept_warning.try_emplace(item.error.message, now);
                  if (fresh || now - at->second >= 60000) {
                    at->second = now;
                    spdlog::warn("{}", item.error.message);
                  } else {
                    spdlog::debug("{}", item.error.message);
                  }
                  continue;
                }
                ++self->stats_.accepts;
                auto* c = new Connection(*self, item.fd, item.node, true);
                if (auto r = c->open(); !r) {
                  log_event(spdlog::level::warn, {"accept failed", item.node, r.error().message},
                            "accepting {}: {}", item.node, r.error().message);
                  c->close(r.error());
                  continue;
                }
                self->connection_up(c);
              }
            });
            impl_->inbox_async->data = this;
            impl_->acceptor = std::make_unique<HandshakeAcceptor>(
                impl_->ec, impl_->listen_fd, config_.acceptor_threads,
                static_cast<unsigned>(config_.accept_timeout.count()),
                [impl = impl_.get()](HandshakeAcceptor::Accepted a) {
                  {
                    std::lock_guard lock(impl->inbox_mutex);
                    impl->inbox.push_back(std::move(a));
                  }
                  uv_async_send(impl->inbox_async);
                });
            impl_->acceptor->start();
            spdlog::info("{} registered with epmd at {}:{} (port {}, creation {})", config_.name,
                         config_.epmd_host, config_.epmd_port, listen_port_, ev.creation);
            registered_ = true;
            if (*ready) std::exchange(*ready, nullptr)({});
            break;
          }
          case Kind::failed:
            if (*ready) {
              std::exchange(*ready, nullptr)(ev.error);
            } else {
              spdlog::warn("epmd: {}", ev.error.message);
            }
            break;
          case Kind::lost:
            registered_ = false;
            spdlog::warn(
                "lost the registration with epmd at {}:{} ({}); re-registering — "
                "connections stay up",
                config_.epmd_host, config_.epmd_port, ev.error.message);
            break;
          case Kind::reregistered:
            registered_ = true;
            ++stats_.epmd_reregistrations;
            spdlog::info("re-registered {} with epmd at {}:{} (port {})", config_.name,
                         config_.epmd_host, config_.epmd_port, listen_port_);
            break;
        }
      });
  impl_->registration->start();
  return {};
}

void Node::stop() {
  if (!impl_ || impl_->stopped) return;
  impl_->stopped = true;
  if (impl_->acceptor) {
    impl_->acceptor->stop();  // it owns the listen socket from start() on
  } else if (impl_->listen_fd >= 0) {
    ::close(impl_->listen_fd);
  }
  impl_->listen_fd = -1;
  {
    std::lock_guard lock(impl_->inbox_mutex);
    for (auto& item : impl_->inbox)
      if (item.fd >= 0) ::close(item.fd);
    impl_->inbox.clear();
  }
  if (impl_->inbox_async) close_and_delete(impl_->inbox_async);
  impl_->inbox_async = nullptr;
  // stop() may run inside a registration or epmd callback: stop them here,
  // destroy them with the node.
  if (impl_->registration) impl_->registration->stop();
  registered_ = false;
  if (impl_->ticker) close_and_delete(impl_->ticker);
  impl_->ticker = nullptr;
  if (impl_->flusher) close_and_delete(impl_->flusher);
  impl_->flusher = nullptr;
  std::vector<Connection*> conns;
  for (auto& [n, c] : impl_->connections) conns.push_back(c);
  for (auto* c : conns) c->close(make_error(Errc::shutting_down, config_.name + " is stopping"));
  auto connecting = std::move(impl_->connecting);
  impl_->connecting.clear();
  if (!impl_->destroying)
    for (auto& [n, cbs] : connecting)
      for (auto& cb : cbs) cb(make_error(Errc::shutting_down, config_.name + " is stopping"));
  std::vector<term::Ref> pending_rpcs;
  for (auto& [ref, p] : impl_->rpcs) pending_rpcs.push_back(ref);
  for (auto& ref : pending_rpcs) {
    if (impl_->destroying) impl_->rpcs.at(ref).cb = [](Result<RpcReply>) {};
    finish_rpc(ref, make_error(Errc::shutting_down, config_.name + " is stopping"));
  }
  impl_->alive.reset();
}

// ------------------------------------------------------------- connections

namespace {

struct ConnectWork {
  uv_work_t req;
  std::weak_ptr<int> alive;
  Node* node;
  ei_cnode ec;
  std::string peer;
  in_addr addr;
  std::uint16_t port;
  unsigned timeout_ms;
  Result<int> result = make_error(Errc::io_error, "not run");
};

struct ResolveWork {
  uv_getaddrinfo_t req;
  std::weak_ptr<int> alive;
  std::function<void(Result<in_addr>)> cb;
};

// Resolves the host part of a node name to an IPv4 address (ei is
// IPv4-only): a literal at once (reported later), a name on libuv's pool.
void resolve_host(uv_loop_t* loop, std::weak_ptr<int> alive, const std::string& host,
                  std::function<void(Result<in_addr>)> cb) {
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) == 1) {
    defer(loop, std::move(alive), [cb = std::move(cb), a] { cb(a); });
    return;
  }
  auto* w = new ResolveWork{{}, alive, std::move(cb)};
  w->req.data = w;
  addrinfo hints{};
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  int rc = uv_getaddrinfo(
      loop, &w->req,
      [](uv_getaddrinfo_t* req, int status, addrinfo* res) {
        std::unique_ptr<ResolveWork> work(static_cast<ResolveWork*>(req->data));
        if (!work->alive.expired()) {
          if (status != 0 || !res)
            work->cb(make_error(Errc::not_found,
                                std::string("cannot resolve the host part to an IPv4 address: ") +
                                    uv_strerror(status) + " — use the node's IP address or fix DNS",
                                status));
          else
            work->cb(reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr);
        }
        if (res) uv_freeaddrinfo(res);
      },
      host.c_str(), nullptr, &hints);
  if (rc != 0) {
    std::unique_ptr<ResolveWork> work(w);
    defer(loop, std::move(alive), [cb = std::move(work->cb), rc, host] {
      cb(make_error(Errc::io_error, "cannot start resolving " + host + ": " + uv_strerror(rc), rc));
    });
  }
}

}  // namespace

void Node::connect(const std::string& node, std::function<void(Result<void>)> cb) {
  auto later = [this](std::function<void(Result<void>)> f, Result<void> r) {
    defer(loop_, impl_->alive, [f = std::move(f), r = std::move(r)]() mutable { f(std::move(r)); });
  };
  if (impl_->stopped)
    return later(std::move(cb), make_error(Errc::shutting_down, "the node is stopping"));
  if (!impl_->ready)
    return later(std::move(cb),
                 make_error(Errc::invalid_argument,
                            "the node is not ready: connect after start()'s callback"));
  auto parts = split_node_name(node);
  if (!parts) return later(std::move(cb), parts.error());
  if (node == config_.name)
    return later(std::move(cb), make_error(Errc::invalid_argument, "cannot connect to ourselves"));
  if (impl_->connections.count(node)) return later(std::move(cb), Result<void>{});
  auto& waiters = impl_->connecting[node];
  waiters.push_back(std::move(cb));
  if (waiters.size() > 1) return;  // already under way

  auto finish = [this, node](Result<void> r) { finish_connect(node, std::move(r)); };

  std::string alive_name = parts->first;
  std::string host = parts->second;
  resolve_host(
      loop_, impl_->alive, host, [this, node, alive_name, host, finish](Result<in_addr> addr) {
        if (!addr) {
          finish(make_error(addr.error().code, node + ": " + addr.error().message,
                            addr.error().source));
          return;
        }
        if (impl_->stopped) return finish(make_error(Errc::shutting_down, "the node is stopping"));
        char ip[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &*addr, ip, sizeof ip);
        epmd_client::Endpoint ep;
        ep.host = ip;
        ep.port = config_.epmd_port;
        in_addr a = *addr;
        impl_->epmd->port_please(
            ep, alive_name, config_.connect_timeout,
            [this, node, a, finish](Result<epmd_client::NodeInfo> info) {
              if (!info) {
                finish(make_error(info.error().code,
                                  "connecting to " + node + ": " + info.error().message,
                                  info.error().source));
                return;
              }
              if (info->highest_version < 6) {
                finish(make_error(Errc::handshake_failed,
                                  node + " speaks distribution version " +
                                      std::to_string(info->highest_version) +
                                      " only; beamlink needs OTP 23 or newer (version 6)"));
                return;
              }
              auto* w = new ConnectWork{};
              w->req.data = w;
              w->alive = impl_->alive;
              w->node = this;
              w->ec = impl_->ec;
              w->peer = node;
              w->addr = a;
              w->port = info->port;
              w->timeout_ms = static_cast<unsigned>(config_.connect_timeout.count());
              uv_queue_work(
                  loop_, &w->req,
                  [](uv_work_t* req) {
                    auto* work = static_cast<ConnectWork*>(req->data);
                    work->result = handshake_initiate(work->ec, work->peer, work->addr, work->port,
                                                      work->timeout_ms);
                  },
                  [](uv_work_t* req, int) {
                    auto* work = static_cast<ConnectWork*>(req->data);
                    std::unique_ptr<ConnectWork> owned(work);
                    if (work->alive.expired()) {
                      if (work->result) ::close(*work->result);
                      return;
                    }
                    Node* self = work->node;
                    auto complete = [&](Result<void> r) {
                      self->finish_connect(work->peer, std::move(r));
                    };
                    if (!work->result) return complete(std::move(work->result).error());
                    int fd = *work->result;
                    if (self->impl_->connections.count(work->peer)) {
                      // An inbound connection from the same node won the race.
                      ::close(fd);
                      return complete({});
                    }
                    ++self->stats_.connects;
                    auto* c = new Connection(*self, fd, work->peer, false);
                    if (auto r = c->open(); !r) {
                      c->close(r.error());
                      return complete(r.error());
                    }
                    self->connection_up(c);
                    complete({});
                  });
            });
      });
}

void Node::finish_connect(const std::string& node, Result<void> r) {
  auto it = impl_->connecting.find(node);
  if (it == impl_->connecting.end()) return;
  auto cbs = std::move(it->second);
  impl_->connecting.erase(it);
  if (!r) {
    ++stats_.connect_failures;
    ++connect_failure_reasons_[std::string(errc_name(r.error().code))];
    spdlog::debug("connect {}: {}", node, r.error().message);
  }
  for (auto& f : cbs) f(r);
}

void Node::connection_up(Connection* c) {
  if (auto old = impl_->connections.find(c->peer()); old != impl_->connections.end()) {
    // The peer handshook again while we still hold a connection to it: it
    // restarted (or lost the old one first). ei has already told it "ok", so
    // the new connection is the live one; the old one goes, as erts does.
    log_event(spdlog::level::info, {"reconnected", c->peer(), "replacing the previous connection"},
              "{} connected again: replacing the previous connection", c->peer());
    old->second->close(
        make_error(Errc::connection_closed, "replaced by a new connection from " + c->peer()));
  }
  impl_->connections.emplace(c->peer(), c);
  const char* direction = c->inbound() ? "inbound" : "outbound";
  log_event(spdlog::level::info, {"connected", c->peer(), direction}, "connected to {} ({})",
            c->peer(), direction);
  auto handlers = node_up_;  // a handler may add handlers
  for (auto& f : handlers) f(c->peer());
}

void Node::connection_closed(Connection* c, const Error& why) {
  std::erase(impl_->dirty, c);
  auto it = impl_->connections.find(c->peer());
  if (it == impl_->connections.end() || it->second != c) return;  // a duplicate that lost
  impl_->connections.erase(it);
  std::uint64_t now = uv_now(loop_);
  std::erase_if(impl_->last_progress, [now](const auto& e) {
    return e.second.progress->final && now - e.second.closed_at > kLastProgressKeepMs;
  });
  impl_->last_progress[c->peer()] = Impl::Closed{c->progress(), now};
  if (why.code == Errc::shutting_down)
    spdlog::debug("closing connection to {}", c->peer());
  else
    log_event(spdlog::level::warn, {"disconnected", c->peer(), why.message},
              "connection to {} closed: {}", c->peer(), why.message);
  table_.node_down(c->peer());
  // Fail pending rpcs to that node now rather than at their timeout.
  std::vector<term::Ref> lost;
  for (auto& [ref, pending] : impl_->rpcs)
    if (pending.node == c->peer()) lost.push_back(ref);
  for (auto& ref : lost)
    finish_rpc(ref, make_error(Errc::not_connected,
                               "connection to " + c->peer() + " lost during rpc: " + why.message));
  if (impl_->destroying) return;
  auto handlers = node_down_;  // a handler may add handlers
  for (auto& f : handlers) f(c->peer(), why);
}

bool Node::is_connected(const std::string& node) const {
  return impl_->connections.count(node) != 0;
}

std::vector<std::string> Node::connected_nodes() const {
  std::vector<std::string> out;
  for (auto& [n, c] : impl_->connections) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

void Node::disconnect(const std::string& node) {
  auto it = impl_->connections.find(node);
  if (it != impl_->connections.end())
    it->second->close(make_error(Errc::connection_closed, "disconnected by " + config_.name));
}

std::size_t Node::queued_bytes(const std::string& node) const {
  auto it = impl_->connections.find(node);
  return it == impl_->connections.end() ? 0 : it->second->queued();
}

OutboundProgress Node::progress(const std::string& node) const {
  if (auto it = impl_->connections.find(node); it != impl_->connections.end())
    return *it->second->progress();
  if (auto it = impl_->last_progress.find(node); it != impl_->last_progress.end())
    return *it->second.progress;
  return {};
}

OutboundProgress Node::progress(const std::string& node, std::uint64_t connection) const {
  if (auto it = impl_->connections.find(node);
      it != impl_->connections.end() && it->second->id() == connection)
    return *it->second->progress();
  if (auto it = impl_->last_progress.find(node);
      it != impl_->last_progress.end() && it->second.progress->connection == connection)
    return *it->second.progress;
  return {};
}

void Node::schedule_flush(Connection* c) {
  if (!impl_->flusher) return c->flush();  // not started or stopped: write now
  impl_->dirty.push_back(c);
}

void Node::frames_written(Connection* c) {
  if (written_.empty() || impl_->destroying) return;
  std::string peer = c->peer();  // the connection may close in a callback
  // By index: a handler may add handlers (they run from the next write on);
  // none is ever removed. No copy of the vector per write.
  for (std::size_t i = 0, n = written_.size(); i < n; ++i) written_[i](peer);
}

void Node::when_writable(const std::string& node, std::function<void(Result<void>)> cb) {
  auto it = impl_->connections.find(node);
  if (it == impl_->connections.end()) {
    defer(loop_, impl_->alive, [cb = std::move(cb), node] {
      cb(make_error(Errc::not_connected, "not connected to " + node));
    });
    return;
  }
  if (it->second->has_room()) {
    // Room already (the queue drained meanwhile): no write completion will
    // come to report it.
    defer(loop_, impl_->alive, [cb = std::move(cb)] { cb({}); });
    return;
  }
  it->second->when_writable(std::move(cb));
}

// ------------------------------------------------------------- sending

Result<void> Node::send(const term::Pid& to, std::span<const char> msg) {
  if (to.node == config_.name) {
    Envelope e;
    e.term = msg;
    if (!table_.deliver(to, e)) ++stats_.dropped_messages;
    return {};
  }
  auto it = impl_->connections.find(to.node);
  if (it == impl_->connections.end())
    return make_error(Errc::not_connected, "not connected to " + to.node);
  Connection* c = it->second;
  if (c->queued() >= config_.max_outbound) {
    ++stats_.queue_full;
    return make_error(Errc::queue_full, "the queue to " + to.node + " is full (" +
                                            std::to_string(c->queued()) + " bytes)");
  }
  auto control = encode_send(to);
  if (auto s = control.status(); !s) return s;
  c->send_frame(control.bytes(), msg);
  return {};
}

Result<void> Node::reg_send(const term::Pid& from, const std::string& node, const std::string& name,
                            std::span<const char> msg) {
  if (node == config_.name) {
    Envelope e;
    e.term = msg;
    e.from = &from;
    if (!table_.deliver(name, e)) ++stats_.dropped_messages;
    return {};
  }
  auto it = impl_->connections.find(node);
  if (it == impl_->connections.end())
    return make_error(Errc::not_connected, "not connected to " + node);
  Connection* c = it->second;
  if (c->queued() >= config_.max_outbound) {
    ++stats_.queue_full;
    return make_error(Errc::queue_full, "the queue to " + node + " is full (" +
                                            std::to_string(c->queued()) + " bytes)");
  }
  // The REG_SEND control for a (from, name) pair is encoded once and reused.
  if (!c->regsend_valid || c->regsend_from != from || c->regsend_name != name) {
    auto control = encode_reg_send(from, name);
    if (auto s = control.status(); !s) return s;
    c->regsend_control = span_str(control.bytes());
    c->regsend_from = from;
    c->regsend_name = name;
    c->regsend_valid = true;
  }
  c->send_frame(c->regsend_control, msg);
  return {};
}

void Node::exit(const term::Pid& pid, std::string_view reason_atom) {
  send_outgoing(table_.exit(pid, atom_reason(reason_atom)));
}

void Node::send_outgoing(const std::vector<Outgoing>& out) {
  for (auto& o : out) {
    auto it = impl_->connections.find(o.to.node);
    if (it == impl_->connections.end()) continue;  // that node is gone: nothing to tell
    std::span<const char> reason(o.reason.data(), o.reason.size());
    term::TermWriter control;
    switch (o.kind) {
      case Outgoing::Kind::exit:
        control = encode_exit(std::get<term::Pid>(o.from), o.to, reason);
        break;
      case Outgoing::Kind::monitor_p_exit:
        control = encode_monitor_p_exit(o.from, o.to, o.ref, reason);
        break;
      case Outgoing::Kind::unlink_id_ack:
        control = encode_unlink_id_ack(o.id, std::get<term::Pid>(o.from), o.to);
        break;
    }
    if (!control.ok()) {
      spdlog::error("cannot encode a control message for {}: {}", o.to.node,
                    control.status().error().message);
      continue;
    }
    it->second->send_frame(control.bytes(), {});
  }
}

// ------------------------------------------------------------- receiving

namespace {

// MONITOR_P / DEMONITOR_P name their target by pid or by registered name.
std::variant<term::Pid, std::string> monitor_target(const Control& ctl) {
  if (ctl.has_to_pid) return ctl.to;
  return ctl.to_name;
}

}  // namespace

void Node::dispatch(Connection* c, std::span<const char> control_bytes,
                    std::span<const char> message) {
  auto decoded = decode_control(control_bytes);
  if (!decoded) {
    if (decoded.error().code == Errc::not_found) {
      ++stats_.unknown_controls;
      spdlog::debug("ignoring a control message from {}: {}", c->peer(), decoded.error().message);
      return;
    }
    ++stats_.malformed_frames;
    c->close(make_error(Errc::protocol_error, "malformed control message from " + c->peer() + ": " +
                                                  decoded.error().message));
    return;
  }
  const Control& ctl = *decoded;
  spdlog::trace("{} -> {}: {}", c->peer(), config_.name, control_tag_name(ctl.tag));
  if (ctl.expects_message == message.empty()) {
    ++stats_.malformed_frames;
    c->close(make_error(Errc::protocol_error, "malformed control message from " + c->peer() + ": " +
                                                  std::string(control_tag_name(ctl.tag)) +
                                                  (ctl.expects_message ? " without its message"
                                                                       : " with a stray message")));
    return;
  }
  // Reasons of the PAYLOAD_* variants travel as the message term.
  std::span<const char> payload_reason =
      message.empty() ? std::span<const char>{} : message.subspan(1);
  switch (ctl.tag) {
    case ControlTag::send:
    case ControlTag::send_tt:
    case ControlTag::send_sender:
    case ControlTag::send_sender_tt: {
      Envelope e;
      e.term = message;
      e.from = ctl.has_from ? &ctl.from : nullptr;
      if (ctl.to.node != config_.name || !table_.deliver(ctl.to, e)) ++stats_.dropped_messages;
      break;
    }
    case ControlTag::reg_send:
    case ControlTag::reg_send_tt: {
      Envelope e;
      e.term = message;
      e.from = &ctl.from;
      if (!table_.deliver(ctl.to_name, e)) {
        ++stats_.dropped_messages;
        spdlog::debug("{} sent to unregistered name '{}' here: dropped", c->peer(), ctl.to_name);
      }
      break;
    }
    case ControlTag::link:
      send_outgoing(table_.link(ctl.from, ctl.to));
      break;
    case ControlTag::unlink:
      table_.unlink(ctl.from, ctl.to);
      break;
    case ControlTag::unlink_id:
      send_outgoing(table_.unlink_id(ctl.id, ctl.from, ctl.to));
      break;
    case ControlTag::unlink_id_ack:
      break;
    case ControlTag::exit:
    case ControlTag::exit_tt:
      table_.linked_exit(ctl.from, ctl.to, ctl.reason);
      break;
    case ControlTag::payload_exit:
    case ControlTag::payload_exit_tt:
      table_.linked_exit(ctl.from, ctl.to, payload_reason);
      break;
    case ControlTag::exit2:
    case ControlTag::exit2_tt:
    case ControlTag::payload_exit2:
    case ControlTag::payload_exit2_tt: {
      Envelope e;
      e.kind = Envelope::Kind::exit;
      e.from = &ctl.from;
      e.term = (ctl.tag == ControlTag::exit2 || ctl.tag == ControlTag::exit2_tt) ? ctl.reason
                                                                                 : payload_reason;
      table_.deliver(ctl.to, e);
      break;
    }
    case ControlTag::monitor_p:
      send_outgoing(table_.monitor(ctl.from, monitor_target(ctl), ctl.ref));
      break;
    case ControlTag::demonitor_p:
      table_.demonitor(ctl.from, monitor_target(ctl), ctl.ref);
      break;
    case ControlTag::monitor_p_exit:
    case ControlTag::payload_monitor_p_exit: {
      Envelope e;
      e.kind = Envelope::Kind::down;
      e.from = ctl.has_from ? &ctl.from : nullptr;
      e.ref = &ctl.ref;
      e.term = ctl.tag == ControlTag::monitor_p_exit ? ctl.reason : payload_reason;
      table_.deliver(ctl.to, e);
      break;
    }
    case ControlTag::alias_send:
    case ControlTag::alias_send_tt:
      // We never hand out aliases, so no message can be addressed to one.
      ++stats_.dropped_messages;
      spdlog::debug("{} sent to an alias we do not have: dropped", c->peer());
      break;
    default:
      ++stats_.unknown_controls;
      spdlog::debug("ignoring control {} from {}", static_cast<int>(ctl.tag), c->peer());
      break;
  }
}

// ------------------------------------------------------------- built-ins

void Node::install_builtins() {
  // Called once, when the creation is known (epmd's, or ours for a client),
  // so these pids carry it.
  // net_kernel: net_adm:ping sends {'$gen_call', {From, Tag}, {is_auth, Node}}
  // and waits for {Tag, yes}; Tag is copied as received ([alias | Ref] on
  // OTP 24+).
  (void)table_.register_name("net_kernel", [this](const term::Pid&, const Envelope& e) {
    if (e.kind != Envelope::Kind::message) return;
    auto r = term::TermReader::from_external(e.term);
    if (!r) return;
    term::TermReader& in = *r;
    auto arity = in.read_tuple_header();
    if (!arity || *arity != 3 || !in.expect_atom("$gen_call")) return;
    auto from_arity = in.read_tuple_header();
    if (!from_arity || *from_arity != 2) return;
    auto from = in.read_pid();
    auto tag = in.read_raw();
    if (!from || !tag) return;
    term::TermReader req = in;
    std::string request = "unknown";
    if (auto ra = req.read_tuple_header(); ra && *ra >= 1)
      if (auto a = req.read_atom()) request = *a;
    term::TermWriter reply;
    reply.tuple(2).raw(*tag);
    if (request == "is_auth") {
      reply.atom("yes");
    } else {
      spdlog::debug("net_kernel: unsupported call '{}' from {}", request, to_string(*from));
      reply.tuple(2).atom("error").atom("not_supported");
    }
    if (reply.ok()) (void)send(*from, reply.bytes());
  });

  // The rpc client: replies {Ref, Reply} from rex, and io requests from the
  // code it runs (we are its group leader).
  auto rpc = table_.register_name("$rpc", [this](const term::Pid&, const Envelope& e) {
    if (e.kind != Envelope::Kind::message) return;
    auto r = term::TermReader::from_external(e.term);
    if (!r) return;
    term::TermReader in = *r;
    auto arity = in.read_tuple_header();
    if (!arity) return;
    if (*arity == 2) {
      term::TermReader probe = in;
      auto t = probe.peek();
      if (t && (t->tag == ERL_NEWER_REFERENCE_EXT || t->tag == ERL_NEW_REFERENCE_EXT)) {
        auto ref = in.read_ref();
        auto reply = in.read_raw();
        if (!ref || !reply) return;
        if (!impl_->rpcs.count(*ref)) {
          ++stats_.late_rpc_replies;
          spdlog::debug("an rpc reply arrived after its call timed out: dropped");
          return;
        }
        RpcReply out;
        term::TermWriter w;
        w.raw(*reply);
        out.term = span_str(w.bytes());
        // {badrpc, Reason} is the remote side's error.
        term::TermReader br(*reply);
        if (auto ba = br.read_tuple_header(); ba && *ba == 2 && br.next_is_atom()) {
          term::TermReader br2 = br;
          if (auto a = br2.read_atom(); a && *a == "badrpc") {
            auto reason = br2.read_raw();
            std::string text = "?";
            if (reason) {
              term::TermReader rr(*reason);
              if (auto f = term::format_term(rr)) text = *f;
            }
            finish_rpc(*ref, make_error(Errc::badrpc, "badrpc: " + text));
            return;
          }
        }
        finish_rpc(*ref, std::move(out));
        return;
      }
    }
    if (*arity == 4 && in.next_is_atom()) {
      // {io_request, From, ReplyAs, Request}: print output, answer ok.
      term::TermReader io = in;
      if (auto a = io.read_atom(); !a || *a != "io_request") return;
      auto from = io.read_pid();
      auto reply_as = io.read_raw();
      if (!from || !reply_as) return;
      auto request = io.read_raw();
      if (!request) return;
      serve_io_request(*request, node_io_hooks(*this, *from, span_str(*reply_as)));
    }
  });
  if (rpc) impl_->rpc_pid = *rpc;
}

void Node::finish_rpc(const term::Ref& ref, Result<RpcReply> result) {
  auto it = impl_->rpcs.find(ref);
  if (it == impl_->rpcs.end()) return;
  auto pending = std::move(it->second);
  impl_->rpcs.erase(it);
  delete static_cast<RpcTimer*>(pending.timer->data);
  close_and_delete(pending.timer);
  pending.cb(std::move(result));
}

void Node::rpc(const std::string& node, const std::string& mod, const std::string& fun,
               std::span<const char> args, std::chrono::milliseconds timeout,
               std::function<void(Result<RpcReply>)> cb) {
  if (impl_->stopped || !impl_->ready) {
    defer(loop_, impl_->alive, [cb = std::move(cb), stopped = impl_->stopped] {
      cb(make_error(stopped ? Errc::shutting_down : Errc::invalid_argument,
                    stopped ? "the node is stopping" : "the node is not started yet"));
    });
    return;
  }
  // The gen_call form of rex's protocol: {'$gen_call', {Self, Ref}, {call,
  // M, F, Args, GroupLeader}}; the reply {Ref, Reply} is matched by Ref, so
  // ticks and unrelated messages are never mistaken for it (unlike ei_rpc).
  // We are the call's group leader: its output comes to us.
  term::Ref ref = table_.make_ref();
  term::TermWriter msg;
  msg.tuple(3).atom("$gen_call").tuple(2).pid(impl_->rpc_pid).ref(ref);
  msg.tuple(5).atom("call").atom(mod).atom(fun);
  if (args.size() > 1 && static_cast<unsigned char>(args[0]) == 131)
    msg.raw(args.subspan(1));
  else
    msg.nil();
  msg.pid(impl_->rpc_pid);

  auto* timer = new uv_timer_t;
  uv_timer_init(loop_, timer);
  timer->data = new RpcTimer{this, ref};
  impl_->rpcs.emplace(ref, PendingRpc{std::move(cb), timer, node, {}});
  auto& pending = impl_->rpcs.at(ref);
  auto sent = msg.status();
  if (sent) sent = reg_send(impl_->rpc_pid, node, "rex", msg.bytes());
  if (!sent) {
    pending.failure = std::move(sent).error();
    timeout = std::chrono::milliseconds(0);  // report it on the next loop iteration
  } else {
    pending.failure =
        make_error(Errc::timeout, "rpc " + mod + ":" + fun + " on " + node +
                                      " got no reply within " + std::to_string(timeout.count()) +
                                      " ms — the call may still be running there");
  }
  // The node outlives the timer: stop() finishes and closes every pending rpc.
  uv_timer_start(
      timer,
      [](uv_timer_t* t) {
        auto* rt = static_cast<RpcTimer*>(t->data);
        Node* self = rt->node;
        term::Ref r = rt->ref;
        auto it = self->impl_->rpcs.find(r);
        if (it == self->impl_->rpcs.end()) return;
        Error why = it->second.failure;
        self->finish_rpc(r, std::move(why));
      },
      static_cast<std::uint64_t>(timeout.count()), 0);
}

}  // namespace beamlink::dist
