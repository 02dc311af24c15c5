#include "dist/node.hpp"

#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <random>
#include <unordered_map>

#include "common/log_event.hpp"
#include "common/uv_handle.hpp"
#include "common/uv_util.hpp"
#include "connection.hpp"
#include "dialer.hpp"
#include "dist/control.hpp"
#include "dist/handshake_core.hpp"
#include "ei_socket.hpp"
#include "epmd_client/client.hpp"
#include "handshake.hpp"
#include "listener.hpp"
#include "net_kernel.hpp"
#include "rpc_client.hpp"

namespace beamlink::dist {

namespace {
// How long a stopping node waits for a peer to close after our FIN (see
// Connection::finish): a live BEAM closes at once; a stopped or partitioned
// one would otherwise hold the exit forever.
constexpr std::uint64_t kFinishLingerMs = 5000;
// Version 6 handshakes (ei, blocking) at once; more connects wait their turn.
constexpr int kDialThreads = 4;

// The cap on inbound handshakes in progress: the configured one, but no
// more than half the descriptors the process may open (at least 64).
std::size_t handshake_cap(std::size_t configured) {
  rlimit rl{};
  if (::getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return configured;
  auto half = std::max<std::size_t>(64, static_cast<std::size_t>(rl.rlim_cur / 2));
  if (half < configured)
    spdlog::info(
        "at most {} inbound handshakes in progress: half the descriptor limit ({}; raise it "
        "with ulimit -n to hold a bigger flood)",
        half, static_cast<std::size_t>(rl.rlim_cur));
  return std::min(configured, half);
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

struct Node::Impl final : ConnectionOwner {
  explicit Impl(Node& n) : node(n), listener(n.loop_), rpc(n, n.stats_.late_rpc_replies) {}
  Node& node;
  Liveness alive;
  ei_cnode ec{};                        // the acceptors' identity
  ei_cnode ec_dial{};                   // the dialling identity: ei over poll_socket_callbacks()
  std::unique_ptr<DialPool> dial_pool;  // version 6 dials, kDialThreads at most
  int listen_fd = -1;                   // until the listener takes it
  Listener listener;
  std::unique_ptr<epmd_client::Client> epmd;
  std::unique_ptr<epmd_client::Registration> registration;
  std::function<void(Result<void>)> on_ready;  // start()'s callback, until called
  UvHandle<uv_timer_t> ticker;
  // Connections with frames to write: flushed once per loop turn, after the
  // turn's I/O callbacks (uv_check), so that the frames of many sends (e.g.
  // one relay broadcast per HTTP request read in this turn) leave in one
  // write per connection instead of one each.
  UvHandle<uv_check_t> flusher;
  std::vector<Connection*> dirty;
  // Per peer from here to inbound_peers: a container added for peers must
  // be counted in peer_entries() and emptied when its peer goes.
  std::unordered_map<std::string, std::unique_ptr<Connection>> connections;
  // Closed connections, destroyed on a later loop turn (a connection closes
  // inside its own callbacks).
  std::vector<std::unique_ptr<Connection>> closed;
  bool reap_scheduled = false;
  // Outbound connects under way, and who waits for each.
  std::map<std::string, std::unique_ptr<Dialer>> dialers;
  std::map<std::string, std::vector<std::function<void(Result<void>)>>> connecting;
  // What the handshake of each inbound connection proved, by peer name.
  std::map<std::string, AcceptedPeer> inbound_peers;
  RpcClient rpc;
  bool started = false;
  bool ready = false;       // the ei identity exists: connects and rpcs may run
  bool destroying = false;  // ~Node: drop pending callbacks instead of calling them
  bool stopped = false;

  Result<void> start_loop_handles();
  void tick();
  void flush_dirty();
  void on_registration(const epmd_client::Registration::Event& ev);
  Result<void> registered(std::uint32_t creation);
  void accepted(Listener::Accepted item);
  NameStatus name_status(const std::string& peer) const;
  void dialed(const std::string& peer, Result<DialedPeer> fd);
  void report_ready(Result<void> r) {
    if (on_ready) std::exchange(on_ready, nullptr)(std::move(r));
  }

  // ConnectionOwner
  void connection_closed(Connection& c, const Error& why) override {
    node.connection_closed(c, why);
  }
  void dispatch(Connection& c, std::span<const char> control,
                std::span<const char> message) override {
    node.dispatch(c, control, message);
  }
  void frames_written(Connection& c) override { node.frames_written(c); }
  void schedule_flush(Connection& c) override {
    if (!flusher) return c.flush();  // not started or stopped: write now
    dirty.push_back(&c);
  }
  NodeStats& stats() override { return node.stats_; }
  const NodeConfig& config() const override { return node.config_; }
  uv_loop_t* loop() const override { return node.loop_; }
};

Node::Node(uv_loop_t* loop, NodeConfig config)
    : loop_(loop), config_(std::move(config)), table_(config_.name, 0), impl_(new Impl(*this)) {
  // ei's blocking writes on worker threads would otherwise kill the process
  // when a peer goes away mid-handshake.
  ::signal(SIGPIPE, SIG_IGN);
}

Node::~Node() {
  impl_->destroying = true;
  stop();
  impl_->registration.reset();
  impl_->epmd.reset();
  // ~Node may run inside a connection's callback (a handler that destroys
  // the node): closed connections go on a later loop turn.
  if (!impl_->closed.empty()) {
    auto closed =
        std::make_shared<std::vector<std::unique_ptr<Connection>>>(std::move(impl_->closed));
    defer(loop_, [closed] {});
  }
}

Result<void> Node::start(std::function<void(Result<void>)> on_ready) {
  if (impl_->started) return make_error(Errc::invalid_argument, "node already started");
  auto parts = split_node_name(config_.name);
  if (!parts) return parts.error();
  if (config_.ticktime.count() < 1000)
    return make_error(Errc::invalid_argument, "net_ticktime must be at least 1 s");
  impl_->started = true;
  impl_->epmd = std::make_unique<epmd_client::Client>(loop_);
  if (auto r = impl_->start_loop_handles(); !r) return r;

  if (!config_.publish) {
    // A one-shot client: not listening, not registered; a random creation as
    // erl_call uses.
    std::random_device rd;
    std::uint32_t creation = (rd() % 0x7ffffff0u) + 4;
    table_.set_creation(creation);
    if (auto r = init_ei_identity(&impl_->ec, config_.name, config_.cookie, creation); !r)
      return r.error();
    if (auto r = init_ei_identity(&impl_->ec_dial, config_.name, config_.cookie, creation,
                                  poll_socket_callbacks());
        !r)
      return r.error();
    install_builtins();
    impl_->ready = true;
    defer(loop_, impl_->alive.watch(), [cb = std::move(on_ready)] { cb({}); });
    return {};
  }

  // Listen first (epmd needs the port), then register; the acceptors start
  // once the creation is known (Impl::registered).
  auto listening = listen_in_range(config_.port_min, config_.port_max);
  if (!listening) return listening.error();
  impl_->listen_fd = listening->first;
  listen_port_ = listening->second;
  impl_->on_ready = std::move(on_ready);
  epmd_client::Registration::Options ro;
  ro.epmd.host = config_.epmd_host;
  ro.epmd.port = config_.epmd_port;
  ro.alive = parts->first;
  ro.port = listen_port_;
  // Our acceptor speaks versions 5 and 6. An OTP 21/22 node reads the lowest
  // version from epmd and sends version 0 ("no common version") in its name
  // when it is above 5.
  ro.lowest = 5;
  impl_->registration = std::make_unique<epmd_client::Registration>(
      loop_, ro, [impl = impl_.get()](const auto& ev) { impl->on_registration(ev); });
  impl_->registration->start();
  return {};
}

// The ticker: every ticktime/8, send ticks on idle connections and drop
// silent ones (silent for a whole ticktime). The flusher: see `flusher`.
Result<void> Node::Impl::start_loop_handles() {
  if (int rc = ticker.init(node.loop_, this, uv_timer_init); rc != 0)
    return uv_error(Errc::io_error, std::string("cannot create the tick timer: ") + uv_strerror(rc),
                    rc);
  auto period = static_cast<std::uint64_t>(node.config_.ticktime.count() / 8);
  uv_timer_start(
      ticker.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Impl*>(t->data)) self->tick();
      },
      period, period);
  uv_unref(ticker.handle());
  if (int rc = flusher.init(node.loop_, this, uv_check_init); rc != 0)
    return uv_error(Errc::io_error,
                    std::string("cannot create the write flusher: ") + uv_strerror(rc), rc);
  uv_check_start(flusher.get(), [](uv_check_t* h) {
    if (auto* self = static_cast<Impl*>(h->data)) self->flush_dirty();
  });
  uv_unref(flusher.handle());
  return {};
}

void Node::Impl::tick() {
  auto now = uv_now(node.loop_);
  std::vector<Connection*> conns;
  for (auto& [n, c] : connections) conns.push_back(c.get());
  for (auto* c : conns)
    c->on_tick_check(now, static_cast<std::uint64_t>(node.config_.ticktime.count()));
}

void Node::Impl::flush_dirty() {
  if (dirty.empty()) return;
  auto list = std::move(dirty);
  dirty.clear();
  for (auto* c : list) c->flush();  // a closed one left the list in connection_closed
}

void Node::Impl::on_registration(const epmd_client::Registration::Event& ev) {
  using Kind = epmd_client::Registration::Event::Kind;
  const auto& cfg = node.config_;
  switch (ev.kind) {
    case Kind::registered:
      if (auto r = registered(ev.creation); !r) return report_ready(r.error());
      spdlog::info("{} registered with epmd at {}:{} (port {}, creation {})", cfg.name,
                   cfg.epmd_host, cfg.epmd_port, node.listen_port_, ev.creation);
      node.registered_ = true;
      report_ready({});
      break;
    case Kind::failed:
      if (on_ready)
        report_ready(ev.error);
      else
        spdlog::warn("epmd: {}", ev.error.message);
      break;
    case Kind::lost:
      node.registered_ = false;
      spdlog::warn(
          "lost the registration with epmd at {}:{} ({}); re-registering — connections stay up",
          cfg.epmd_host, cfg.epmd_port, ev.error.message);
      break;
    case Kind::reregistered:
      node.registered_ = true;
      ++node.stats_.epmd_reregistrations;
      spdlog::info("re-registered {} with epmd at {}:{} (port {})", cfg.name, cfg.epmd_host,
                   cfg.epmd_port, node.listen_port_);
      break;
  }
}

// The creation is known: the ei identity, the built-in processes, then the
// acceptors on the listen socket.
Result<void> Node::Impl::registered(std::uint32_t creation) {
  const auto& cfg = node.config_;
  node.table_.set_creation(creation);
  if (auto r = init_ei_identity(&ec, cfg.name, cfg.cookie, creation); !r) return r;
  if (auto r = init_ei_identity(&ec_dial, cfg.name, cfg.cookie, creation, poll_socket_callbacks());
      !r)
    return r;
  node.install_builtins();
  ready = true;
  int fd = std::exchange(listen_fd, -1);
  Listener::Options lo;
  lo.our_name = cfg.name;
  lo.cookie = cfg.cookie;
  lo.creation = creation;
  lo.handshake_timeout = cfg.accept_timeout;
  lo.max_per_source = cfg.max_handshakes_per_source;
  lo.max_total = handshake_cap(cfg.max_handshakes);
  return listener.start(
      fd, std::move(lo), [this](const std::string& peer) { return name_status(peer); },
      [this](Listener::Accepted a) { accepted(std::move(a)); });
}

// send_status for an inbound name: our own name is refused; a name we hold
// a connection to is asked "alive" (dist_util's answer: the peer says true
// when it restarted, and its new connection replaces the old one).
NameStatus Node::Impl::name_status(const std::string& peer) const {
  if (peer == node.config_.name) return NameStatus::not_allowed;
  if (connections.count(peer)) return NameStatus::alive;
  return NameStatus::ok;
}

// An inbound handshake completed (the listener counted and logged the
// failures): adopt the connection.
void Node::Impl::accepted(Listener::Accepted item) {
  if (stopped) {
    ::close(item.fd);
    return;
  }
  ++node.stats_.accepts;
  auto peer = item.peer.name;
  // The capabilities are what the peer's own handshake declared.
  PeerCaps caps{item.peer.version, item.peer.flags, true};
  if (auto r = node.adopt(item.fd, peer, true, caps, &item.peer); !r)
    log_event(spdlog::level::warn, {"accept failed", peer, r.error().message},
              "accepting {} from {}: {}", peer, item.address, r.error().message);
}

void Node::stop() {
  if (!impl_) return;
  if (impl_->stopped) {
    // Again: connections still finishing close now.
    std::vector<Connection*> finishing;
    for (auto& [n, c] : impl_->connections) finishing.push_back(c.get());
    for (auto* c : finishing) c->close(make_error(Errc::shutting_down, config_.name + " stopped"));
    return;
  }
  impl_->stopped = true;
  impl_->listener.stop();  // it owns the listen socket once started
  if (impl_->listen_fd >= 0) ::close(impl_->listen_fd);
  impl_->listen_fd = -1;
  // stop() may run inside a registration or epmd callback: stop them here,
  // destroy them with the node.
  if (impl_->registration) impl_->registration->stop();
  registered_ = false;
  impl_->ticker.reset();
  impl_->flusher.reset();
  std::vector<Connection*> conns;
  for (auto& [n, c] : impl_->connections) conns.push_back(c.get());
  // Orderly: what was written reaches the peer (see Connection::finish).
  for (auto* c : conns)
    c->finish(make_error(Errc::shutting_down, config_.name + " is stopping"), kFinishLingerMs);
  impl_->dialers.clear();    // their callbacks are dropped: the waiters hear it here
  impl_->dial_pool.reset();  // handshakes under way finish on their threads and are closed
  auto connecting = std::move(impl_->connecting);
  impl_->connecting.clear();
  if (!impl_->destroying)
    for (auto& [n, cbs] : connecting)
      for (auto& cb : cbs) cb(make_error(Errc::shutting_down, config_.name + " is stopping"));
  impl_->rpc.stop(make_error(Errc::shutting_down, config_.name + " is stopping"),
                  impl_->destroying);
  impl_->alive.expire();
}

// ------------------------------------------------------------- connections

void Node::connect(const std::string& node, std::function<void(Result<void>)> cb) {
  auto later = [this](std::function<void(Result<void>)> f, Result<void> r) {
    defer(loop_, impl_->alive.watch(),
          [f = std::move(f), r = std::move(r)]() mutable { f(std::move(r)); });
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
  if (!impl_->dial_pool) impl_->dial_pool = std::make_unique<DialPool>(loop_, kDialThreads);
  auto dialer = std::make_unique<Dialer>(
      loop_, *impl_->epmd, *impl_->dial_pool, impl_->ec_dial, config_, node,
      [impl = impl_.get(), node](Result<DialedPeer> p) { impl->dialed(node, std::move(p)); });
  Dialer& d = *dialer;
  impl_->dialers[node] = std::move(dialer);
  d.start();
}

// The dialer for `peer` finished (it touches nothing after calling this).
void Node::Impl::dialed(const std::string& peer, Result<DialedPeer> p) {
  dialers.erase(peer);
  if (connections.count(peer)) {
    // An inbound connection from the same node won the race (the peer may
    // also have refused our dial for it, as a simultaneous connect does):
    // connected either way.
    if (p) ::close(p->fd);
    return node.finish_connect(peer, {});
  }
  if (!p) return node.finish_connect(peer, std::move(p).error());
  ++node.stats_.connects;
  PeerCaps caps{p->version, p->flags, p->flags_known};
  node.finish_connect(peer, node.adopt(p->fd, peer, false, caps));
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

Result<void> Node::adopt(int fd, const std::string& peer, bool inbound, PeerCaps caps,
                         const AcceptedPeer* handshake) {
  auto conn = std::make_unique<Connection>(*impl_, fd, peer, inbound, ++last_connection_id_);
  conn->set_caps(caps);
  if (auto r = conn->open(); !r) {
    conn->close(r.error());  // never in the table: nobody hears of it
    return r.error();
  }
  Connection& c = *conn;
  if (auto old = impl_->connections.find(peer); old != impl_->connections.end()) {
    // The peer handshook again while we still hold a connection to it: it
    // restarted (or lost the old one first). ei has already told it "ok", so
    // the new connection is the live one; the old one goes, as erts does.
    log_event(spdlog::level::info, {"reconnected", peer, "replacing the previous connection"},
              "{} connected again: replacing the previous connection", peer);
    old->second->close(
        make_error(Errc::connection_closed, "replaced by a new connection from " + peer));
  }
  impl_->connections.emplace(peer, std::move(conn));
  if (handshake)
    impl_->inbound_peers[peer] = *handshake;
  else
    impl_->inbound_peers.erase(peer);
  const char* direction = c.inbound() ? "inbound" : "outbound";
  log_event(spdlog::level::info, {"connected", c.peer(), direction},
            "connected to {} ({}), handshake version {}{}", c.peer(), direction, caps.version,
            caps.has(dflag::unlink_id) ? "" : ", old link protocol");
  node_up_.emit(c.peer());
  return {};
}

void Node::connection_closed(Connection& c, const Error& why) {
  std::erase(impl_->dirty, &c);
  auto it = impl_->connections.find(c.peer());
  if (it == impl_->connections.end() || it->second.get() != &c) return;  // never adopted
  impl_->closed.push_back(std::move(it->second));
  impl_->connections.erase(it);
  impl_->inbound_peers.erase(c.peer());
  if (!impl_->reap_scheduled) {
    impl_->reap_scheduled = true;
    defer(loop_, impl_->alive.watch(), [this] {
      impl_->reap_scheduled = false;
      impl_->closed.clear();
    });
  }
  if (why.code == Errc::shutting_down)
    spdlog::debug("closing connection to {}", c.peer());
  else
    log_event(spdlog::level::warn, {"disconnected", c.peer(), why.message},
              "connection to {} closed: {}", c.peer(), why.message);
  table_.node_down(c.peer());
  // Fail pending rpcs to that node now rather than at their timeout.
  impl_->rpc.node_down(c.peer(), why);
  if (impl_->destroying) return;
  node_down_.emit(c.peer(), why);
}

bool Node::is_connected(const std::string& node) const {
  return impl_->connections.count(node) != 0;
}

std::optional<PeerCaps> Node::peer_caps(const std::string& node) const {
  auto it = impl_->connections.find(node);
  if (it == impl_->connections.end()) return std::nullopt;
  return it->second->caps();
}

const NodeStats& Node::stats() const {
  const auto& ls = impl_->listener.stats();
  stats_.accept_failures = ls.failed;
  stats_.handshakes_shed = ls.shed;
  stats_.handshakes_spared = ls.spared;
  stats_.handshakes_in_progress = ls.in_progress;
  return stats_;
}

const std::map<std::string, std::uint64_t>& Node::accept_failures_by_reason() const {
  return impl_->listener.stats().failed_by_reason;
}

std::optional<AcceptedPeer> Node::inbound_handshake(const std::string& node) const {
  auto it = impl_->inbound_peers.find(node);
  if (it == impl_->inbound_peers.end()) return std::nullopt;
  return it->second;
}

std::vector<std::string> Node::connected_nodes() const {
  std::vector<std::string> out;
  for (auto& [n, c] : impl_->connections) out.push_back(n);
  std::sort(out.begin(), out.end());
  return out;
}

std::size_t Node::peer_entries() const {
  return impl_->connections.size() + impl_->dialers.size() + impl_->connecting.size() +
         impl_->inbound_peers.size() + impl_->closed.size();
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

std::uint64_t Node::connection_id(const std::string& node) const {
  auto it = impl_->connections.find(node);
  return it == impl_->connections.end() ? 0 : it->second->id();
}

void Node::frames_written(Connection& c) {
  if (written_.empty() || impl_->destroying) return;
  std::string peer = c.peer();  // the connection may close in a callback
  written_.emit(peer);
}

void Node::when_writable(const std::string& node, std::function<void(Result<void>)> cb) {
  auto it = impl_->connections.find(node);
  if (it == impl_->connections.end()) {
    defer(loop_, impl_->alive.watch(), [cb = std::move(cb), node] {
      cb(make_error(Errc::not_connected, "not connected to " + node));
    });
    return;
  }
  if (it->second->has_room()) {
    // Room already (the queue drained meanwhile): no write completion will
    // come to report it.
    defer(loop_, impl_->alive.watch(), [cb = std::move(cb)] { cb({}); });
    return;
  }
  it->second->when_writable(std::move(cb));
}

// ------------------------------------------------------------- sending

namespace {

// A local delivery is written at once: its completion says so, later.
void complete_local(uv_loop_t* loop, SendDone done) {
  if (done) defer(loop, [done = std::move(done)] { done({}); });
}

}  // namespace

Result<void> Node::send(const term::Pid& to, std::span<const char> msg, SendDone done) {
  if (to.node == config_.name) {
    Envelope e;
    e.term = msg;
    if (!table_.deliver(to, e)) ++stats_.dropped_messages;
    complete_local(loop_, std::move(done));
    return {};
  }
  auto it = impl_->connections.find(to.node);
  if (it == impl_->connections.end())
    return make_error(Errc::not_connected, "not connected to " + to.node);
  Connection* c = it->second.get();
  if (c->queued() >= config_.max_outbound) {
    ++stats_.queue_full;
    return make_error(Errc::queue_full, "the queue to " + to.node + " is full (" +
                                            std::to_string(c->queued()) + " bytes)");
  }
  auto control = encode_send(to);
  if (auto s = control.status(); !s) return s;
  c->send_frame(control.bytes(), msg, std::move(done));
  return {};
}

Result<void> Node::reg_send(const term::Pid& from, const std::string& node, const std::string& name,
                            std::span<const char> msg, SendDone done) {
  if (node == config_.name) {
    Envelope e;
    e.term = msg;
    e.from = &from;
    if (!table_.deliver(name, e)) ++stats_.dropped_messages;
    complete_local(loop_, std::move(done));
    return {};
  }
  auto it = impl_->connections.find(node);
  if (it == impl_->connections.end())
    return make_error(Errc::not_connected, "not connected to " + node);
  Connection* c = it->second.get();
  if (c->queued() >= config_.max_outbound) {
    ++stats_.queue_full;
    return make_error(Errc::queue_full, "the queue to " + node + " is full (" +
                                            std::to_string(c->queued()) + " bytes)");
  }
  // The REG_SEND control for a (from, name) pair is encoded once and reused.
  Result<void> encoded;
  auto control = c->reg_send_control(from, name, encoded);
  if (!encoded) return encoded;
  c->send_frame(control, msg, std::move(done));
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
        // Only a peer with UNLINK_ID sends UNLINK_ID; one without it uses the
        // old protocol (UNLINK, no acknowledgement) and gets none.
        if (!it->second->caps().has(dflag::unlink_id)) continue;
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

void Node::dispatch(Connection& c, std::span<const char> control_bytes,
                    std::span<const char> message) {
  auto decoded = decode_control(control_bytes);
  if (!decoded) {
    if (decoded.error().code == Errc::unexpected_message) {
      ++stats_.unknown_controls;
      spdlog::debug("ignoring a control message from {}: {}", c.peer(), decoded.error().message);
      return;
    }
    ++stats_.malformed_frames;
    c.close(make_error(Errc::protocol_error, "malformed control message from " + c.peer() + ": " +
                                                 decoded.error().message));
    return;
  }
  const Control& ctl = *decoded;
  spdlog::trace("{} -> {}: {}", c.peer(), config_.name, control_tag_name(ctl.tag));
  if (ctl.expects_message == message.empty()) {
    ++stats_.malformed_frames;
    c.close(make_error(Errc::protocol_error, "malformed control message from " + c.peer() + ": " +
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
        spdlog::debug("{} sent to unregistered name '{}' here: dropped", c.peer(), ctl.to_name);
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
      spdlog::debug("{} sent to an alias we do not have: dropped", c.peer());
      break;
    default:
      ++stats_.unknown_controls;
      spdlog::debug("ignoring control {} from {}", static_cast<int>(ctl.tag), c.peer());
      break;
  }
}

// ------------------------------------------------------------- built-ins

void Node::install_builtins() {
  // Called once, when the creation is known (epmd's, or ours for a client),
  // so these pids carry it.
  if (auto r = register_net_kernel(*this); !r)
    spdlog::error("cannot register net_kernel: {}", r.error().message);
  if (auto r = impl_->rpc.install(); !r)
    spdlog::error("cannot register the rpc client: {}", r.error().message);
}

void Node::rpc(const std::string& node, const std::string& mod, const std::string& fun,
               std::span<const char> args, std::chrono::milliseconds timeout,
               std::function<void(Result<RpcReply>)> cb) {
  if (impl_->stopped || !impl_->ready) {
    defer(loop_, impl_->alive.watch(), [cb = std::move(cb), stopped = impl_->stopped] {
      cb(make_error(stopped ? Errc::shutting_down : Errc::invalid_argument,
                    stopped ? "the node is stopping" : "the node is not started yet"));
    });
    return;
  }
  impl_->rpc.call(node, mod, fun, args, timeout, std::move(cb));
}

void Node::write_metrics(MetricsWriter& m) const {
  using T = MetricsWriter::Type;
  const auto& s = stats_;
  auto peers = connected_nodes();
  m.gauge("beamlink_epmd_registered", "1 while registered with epmd.", registered() ? 1 : 0);
  m.gauge("beamlink_peers", "Connected BEAM nodes.", static_cast<double>(peers.size()));
  m.family("beamlink_peer_up", T::gauge, "1 for each connected BEAM node.");
  for (auto& p : peers) m.sample("beamlink_peer_up", std::uint64_t{1}, {{"node", p}});
  m.counter("beamlink_connects_total", "Outbound connections established.", s.connects);
  m.family("beamlink_connect_failures_total", T::counter, "Outbound connects that failed.");
  for (auto& [why, n] : connect_failure_reasons_)
    m.sample("beamlink_connect_failures_total", n, {{"reason", why}});
  m.counter("beamlink_accepts_total", "Inbound connections accepted.", s.accepts);
  m.family("beamlink_accept_failures_total", T::counter,
           "Inbound handshakes that failed, by step and cause (digest_mismatch, timeout, "
           "name_refused, protocol, version, flags, closed, ...).");
  const auto& ls = impl_->listener.stats();
  for (auto& [why, n] : ls.failed_by_reason)
    m.sample("beamlink_accept_failures_total", n, {{"reason", why}});
  m.gauge("beamlink_handshakes_in_progress", "Inbound handshakes in progress.",
          static_cast<double>(ls.in_progress));
  m.counter("beamlink_handshakes_shed_total",
            "Inbound handshakes closed to make room for newer ones (caps per source and total).",
            ls.shed);
  m.counter("beamlink_frames_in_total", "Distribution frames received (ticks excluded).",
            s.frames_in);
  m.counter("beamlink_frames_out_total", "Distribution frames sent (ticks excluded).",
            s.frames_out);
  m.counter("beamlink_bytes_in_total", "Distribution bytes received.", s.bytes_in);
  m.counter("beamlink_bytes_out_total", "Distribution bytes sent.", s.bytes_out);
  m.counter("beamlink_malformed_frames_total", "Frames that could not be decoded.",
            s.malformed_frames);
  m.counter("beamlink_dropped_messages_total",
            "Messages to a name or pid that does not exist here.", s.dropped_messages);
  m.counter("beamlink_tick_timeouts_total", "Connections closed for missing ticks.",
            s.tick_timeouts);
}

}  // namespace beamlink::dist
