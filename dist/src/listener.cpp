#include "listener.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
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
  // A deep backlog: a connection flood is drained by the loop at once (and
  // shed by the caps), so legitimate peers' SYNs are not dropped meanwhile.
  if (bound_port < 0 || ::listen(fd, 4096) != 0) {
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

// One inbound handshake in progress.
struct Listener::Pending {
  Pending(Listener* l, HandshakeAcceptorCore::Options o) : owner(l), core(std::move(o)) {}
  Listener* owner;
  UvHandle<uv_tcp_t> tcp;  // data: this
  HandshakeAcceptorCore core;
  std::string address;  // ip:port
  std::uint64_t started_ms = 0;
  std::uint64_t last_data_ms = 0;
  List::iterator self;
  Sources::value_type* source = nullptr;  // its address's entry (ip, count)
  int writes_in_flight = 0;
  bool acking = false;  // done: our ack is being written
};

namespace {
// A queued write of handshake bytes (what uv_try_write could not send).
struct WriteReq {
  uv_write_t req;
  std::string data;
};
}  // namespace

Listener::Listener(uv_loop_t* loop) : loop_(loop) {}

Listener::~Listener() {
  stop();
}

Result<void> Listener::start(int listen_fd, Options opts, NameStatusFn name_status,
                             OnAccepted on_accepted) {
  opts_ = std::move(opts);
  name_status_ = std::move(name_status);
  on_accepted_ = std::move(on_accepted);
  int rc = server_.init(loop_, this, uv_tcp_init);
  if (rc != 0) {
    ::close(listen_fd);
    return uv_error(Errc::io_error,
                    std::string("cannot create the listen handle: ") + uv_strerror(rc), rc);
  }
  rc = uv_tcp_open(server_.get(), listen_fd);
  if (rc != 0) {
    ::close(listen_fd);
    server_.reset();
    return uv_error(Errc::io_error,
                    std::string("cannot put the listen socket on the loop: ") + uv_strerror(rc),
                    rc);
  }
  rc = uv_listen(server_.stream(), 4096, on_connection);
  if (rc == 0) rc = deadline_.init(loop_, this, uv_timer_init);
  if (rc == 0) rc = log_timer_.init(loop_, this, uv_timer_init);
  if (rc == 0) rc = resume_.init(loop_, this, uv_idle_init);
  if (rc != 0) {
    server_.reset();  // closes listen_fd
    return uv_error(Errc::io_error,
                    std::string("cannot listen on the distribution port: ") + uv_strerror(rc), rc);
  }
  uv_unref(deadline_.handle());
  uv_timer_start(
      log_timer_.get(),
      [](uv_timer_t* t) {
        auto* self = static_cast<Listener*>(t->data);
        if (!self) return;
        if (uv_now(self->loop_) - self->log_window_start_ >= kLogWindowMs) {
          self->flush_log_summary();
          self->log_window_start_ = uv_now(self->loop_);
          self->logged_in_window_.clear();
        }
      },
      kLogWindowMs, kLogWindowMs);
  uv_unref(log_timer_.handle());
  log_window_start_ = uv_now(loop_);
  return {};
}

void Listener::stop() {
  if (stopped_) return;
  stopped_ = true;
  server_.reset();
  deadline_.reset();
  resume_.reset();
  flush_log_summary();
  log_timer_.reset();
  by_source_.clear();
  pending_.clear();  // closes each handshake's socket
  stats_.in_progress = 0;
}

void Listener::on_connection(uv_stream_t* server, int status) {
  auto* self = static_cast<Listener*>(server->data);
  if (!self) return;
  if (status < 0) {
    // libuv keeps accepting after EMFILE (it closes a reserved fd to drain
    // the queue): log it, never pause.
    self->log_failure(std::string("accepting on the distribution port failed: ") +
                          uv_strerror(status) +
                          (status == UV_EMFILE ? " — raise the descriptor limit (ulimit -n)" : ""),
                      "accept");
    return;
  }
  if (self->accepted_in_burst_ >= kAcceptBurst) {
    // Leave this connection pending: libuv stops watching the listen socket
    // until uv_accept takes it, which the idle handle does on the loop's
    // next turn, before that turn's reads and accepts.
    uv_idle_start(self->resume_.get(), [](uv_idle_t* h) {
      auto* l = static_cast<Listener*>(h->data);
      if (!l) return;
      uv_idle_stop(h);
      l->accepted_in_burst_ = 0;
      // uv_accept watches the listen socket again, unless it failed: then
      // listen again so that accepting goes on.
      if (!l->accept_one()) (void)uv_listen(l->server_.stream(), 4096, on_connection);
    });
    return;
  }
  ++self->accepted_in_burst_;
  (void)self->accept_one();
}

bool Listener::accept_one() {
  HandshakeAcceptorCore::Options co;
  co.our_name = opts_.our_name;
  co.cookie = opts_.cookie;
  co.creation = opts_.creation;
  co.name_status = name_status_;
  auto p = std::make_unique<Pending>(this, std::move(co));
  if (int rc = p->tcp.init(loop_, p.get(), uv_tcp_init); rc != 0) return false;
  if (int rc = uv_accept(server_.stream(), p->tcp.stream()); rc != 0) {
    log_failure(std::string("accepting on the distribution port failed: ") + uv_strerror(rc),
                "accept");
    return false;
  }
  sockaddr_storage ss{};
  int len = sizeof ss;
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (uv_tcp_getpeername(p->tcp.get(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    if (ss.ss_family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&ss);
      uv_ip4_name(a, ip, sizeof ip);
      port = ntohs(a->sin_port);
    } else if (ss.ss_family == AF_INET6) {
      auto* a = reinterpret_cast<sockaddr_in6*>(&ss);
      uv_ip6_name(a, ip, sizeof ip);
      port = ntohs(a->sin6_port);
    }
  }
  p->address = std::string(ip) + ":" + std::to_string(port);
  p->started_ms = p->last_data_ms = uv_now(loop_);

  make_room(ip);

  uv_tcp_nodelay(p->tcp.get(), 1);
  if (int rc = uv_read_start(p->tcp.stream(), on_alloc, on_read); rc != 0) {
    log_failure("inbound handshake from " + p->address +
                    " failed: cannot read from the socket: " + uv_strerror(rc),
                "io");
    return true;
  }
  Pending* raw = p.get();
  pending_.push_back(std::move(p));
  raw->self = std::prev(pending_.end());
  raw->source = &*by_source_.try_emplace(ip, 0).first;
  ++raw->source->second;
  stats_.in_progress = pending_.size();
  if (pending_.size() == 1) arm_deadline();
  // Read what the peer sent already (a legitimate peer sends its name right
  // after connecting): libuv accepts a whole burst of connections before it
  // reads any of them, and a handshake that got its name is not shed for
  // the idle ones accepted after it in the same burst.
  int fd = -1;
  if (uv_fileno(raw->tcp.handle(), &fd) == 0) {
    ssize_t n = ::recv(fd, read_buf_, sizeof read_buf_, MSG_DONTWAIT);
    if (n > 0) {
      uv_buf_t b = uv_buf_init(read_buf_, static_cast<unsigned>(n));
      on_read(raw->tcp.stream(), n, &b);  // may fail or complete it: touch nothing after
    }
  }
  return true;
}

void Listener::make_room(const std::string& source) {
  // Below the total cap nobody is shed, whatever its source: a connection
  // shed is one a flood opens again at once, and every flood connection not
  // held here waits in the kernel's accept queue, in front of a legitimate
  // peer's. Held, an idle connection costs a descriptor and a few hundred
  // bytes until its deadline.
  if (pending_.size() < opts_.max_total) return;
  const auto now = uv_now(loop_);
  const auto grace = static_cast<std::uint64_t>(opts_.shed_grace.count());
  // Over the cap: among the kShedScan oldest, the sources over their own
  // cap (the new connection's counted) first, then idle past the grace,
  // then waiting for a name, then the oldest. A bounded scan: the
  // bookkeeping per accept stays the same however many are held.
  auto rank = [&](const Pending* q) {
    std::size_t n = q->source->second + (q->source->first == source);
    bool over = n > opts_.max_per_source;
    bool idle = now - q->last_data_ms >= grace;
    bool waiting_name = q->core.stage() == AcceptorStage::recv_name;
    return (over ? 0 : 4) + (idle ? 0 : 2) + (waiting_name ? 0 : 1);
  };
  std::vector<std::pair<int, Pending*>> scan;
  scan.reserve(kShedScan);
  for (auto& q : pending_) {
    if (scan.size() == kShedScan) break;
    scan.emplace_back(rank(q.get()), q.get());
  }
  std::stable_sort(scan.begin(), scan.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  std::vector<Pending*> candidates;
  candidates.reserve(scan.size());
  for (auto& [r, q] : scan) candidates.push_back(q);
  // One whose bytes wait unread is spared; all spared: the first of them.
  Pending* victim = first_quiet(candidates);
  shed((victim ? victim : candidates.front())->self);
}

Listener::Pending* Listener::first_quiet(const std::vector<Pending*>& candidates) {
  for (Pending* q : candidates) {
    int fd = -1;
    char byte = 0;
    // MSG_PEEK: nothing is consumed; on_read gets it when libuv reads.
    if (uv_fileno(q->tcp.handle(), &fd) == 0 && ::recv(fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT) > 0) {
      ++stats_.spared;
      continue;
    }
    return q;
  }
  return nullptr;
}

void Listener::on_alloc(uv_handle_t* h, size_t, uv_buf_t* buf) {
  auto* p = static_cast<Pending*>(h->data);
  if (!p) {
    *buf = uv_buf_init(nullptr, 0);
    return;
  }
  // The core copies what it is fed: one buffer serves every handshake (libuv
  // calls on_read right after on_alloc).
  *buf = uv_buf_init(p->owner->read_buf_, sizeof p->owner->read_buf_);
}

void Listener::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
  auto* p = static_cast<Pending*>(s->data);
  if (!p || nread == 0 || p->acking) return;
  Listener& l = *p->owner;
  auto it = p->self;
  if (nread < 0) {
    if (nread == UV_EOF)
      p->core.on_closed();
    else
      p->core.on_io_error(uv_strerror(static_cast<int>(nread)));
    return l.fail(it);
  }
  p->last_data_ms = uv_now(l.loop_);
  auto out = p->core.feed(std::span<const char>(buf->base, static_cast<std::size_t>(nread)));
  if (p->core.failed()) {
    // A refusal's status (not_allowed) goes out best effort before the close.
    if (!out.empty()) {
      uv_buf_t b = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
      (void)uv_try_write(p->tcp.stream(), &b, 1);
    }
    return l.fail(it);
  }
  if (p->core.done()) {
    p->acking = true;
    uv_read_stop(p->tcp.stream());
    if (!l.send(*p, std::move(out))) return l.fail(it);
    if (p->writes_in_flight == 0) l.succeed(it);
    return;
  }
  if (!out.empty() && !l.send(*p, std::move(out))) l.fail(it);
}

bool Listener::send(Pending& p, std::string bytes) {
  if (bytes.empty()) return true;
  uv_buf_t b = uv_buf_init(bytes.data(), static_cast<unsigned>(bytes.size()));
  int rc = uv_try_write(p.tcp.stream(), &b, 1);
  if (rc == static_cast<int>(bytes.size())) return true;
  if (rc < 0 && rc != UV_EAGAIN) {
    p.core.on_io_error(uv_strerror(rc));
    return false;
  }
  auto* w = new WriteReq;
  w->data = bytes.substr(rc > 0 ? static_cast<std::size_t>(rc) : 0);
  w->req.data = w;
  b = uv_buf_init(w->data.data(), static_cast<unsigned>(w->data.size()));
  rc = uv_write(&w->req, p.tcp.stream(), &b, 1, [](uv_write_t* req, int status) {
    // The handle before the request is freed (req lives inside the WriteReq).
    auto* hs = static_cast<Pending*>(req->handle->data);  // null once the handshake is gone
    delete static_cast<WriteReq*>(req->data);
    if (!hs) return;
    --hs->writes_in_flight;
    if (status < 0) {
      hs->core.on_io_error(uv_strerror(status));
      return hs->owner->fail(hs->self);
    }
    if (hs->acking && hs->writes_in_flight == 0) hs->owner->succeed(hs->self);
  });
  if (rc != 0) {
    delete w;
    p.core.on_io_error(uv_strerror(rc));
    return false;
  }
  ++p.writes_in_flight;
  return true;
}

void Listener::fail(List::iterator it) {
  Pending& p = **it;
  ++stats_.failed;
  std::string reason(p.core.reason().empty() ? "io" : p.core.reason());
  ++stats_.failed_by_reason[reason];
  log_failure("inbound handshake from " + p.address + " failed: " + p.core.error().message, reason);
  remove(it);
}

void Listener::shed(List::iterator it) {
  Pending& p = **it;
  ++stats_.shed;
  log_failure("inbound handshake from " + p.address + " shed at " +
                  std::string(stage_name(p.core.stage())) + " after " +
                  std::to_string(uv_now(loop_) - p.started_ms) + " ms (nothing from it for " +
                  std::to_string(uv_now(loop_) - p.last_data_ms) +
                  " ms): " + std::to_string(opts_.max_total) +
                  " handshakes in progress, the most allowed (addresses with more than " +
                  std::to_string(opts_.max_per_source) +
                  " pay first) — a newer connection took its place",
              "shed");
  remove(it);
}

void Listener::succeed(List::iterator it) {
  Pending& p = **it;
  int fd = -1;
  int dup = -1;
  if (uv_fileno(p.tcp.handle(), &fd) == 0) dup = ::fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (dup < 0) {
    p.core.on_io_error(std::string("cannot hand the socket over: ") + std::strerror(errno));
    return fail(it);
  }
  Accepted a{dup, p.core.peer(), p.address};
  remove(it);  // closes the handshake's handle; the dup keeps the socket
  ++stats_.accepted;
  // A copy: the callback may destroy this listener, and with it on_accepted_.
  auto cb = on_accepted_;
  cb(std::move(a));  // may stop or destroy this listener: touch nothing after
}

void Listener::remove(List::iterator it) {
  Pending* p = it->get();
  if (--p->source->second == 0) by_source_.erase(by_source_.find(p->source->first));
  bool was_front = it == pending_.begin();
  pending_.erase(it);
  stats_.in_progress = pending_.size();
  if (was_front) arm_deadline();
}

void Listener::arm_deadline() {
  if (!deadline_) return;
  if (pending_.empty()) {
    uv_timer_stop(deadline_.get());
    return;
  }
  auto now = uv_now(loop_);
  auto due =
      pending_.front()->started_ms + static_cast<std::uint64_t>(opts_.handshake_timeout.count());
  uv_timer_start(
      deadline_.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Listener*>(t->data)) self->expire();
      },
      due > now ? due - now : 0, 0);
}

void Listener::expire() {
  auto now = uv_now(loop_);
  auto limit = static_cast<std::uint64_t>(opts_.handshake_timeout.count());
  while (!pending_.empty() && pending_.front()->started_ms + limit <= now) {
    auto& p = *pending_.front();
    p.core.on_timeout(std::chrono::milliseconds(now - p.started_ms),
                      std::chrono::milliseconds(now - p.last_data_ms));
    fail(pending_.begin());  // re-arms for the next one
  }
  arm_deadline();
}

void Listener::log_failure(const std::string& line, std::string_view reason) {
  auto now = uv_now(loop_);
  if (now - log_window_start_ >= kLogWindowMs) {
    flush_log_summary();
    log_window_start_ = now;
    logged_in_window_.clear();
  }
  if (int& n = logged_in_window_[std::string(reason)]; n < kLogBurst) {
    ++n;
    spdlog::warn("{}", line);
  } else {
    ++suppressed_[std::string(reason)];
    spdlog::debug("{}", line);
  }
}

void Listener::flush_log_summary() {
  if (suppressed_.empty()) return;
  std::uint64_t total = 0;
  std::string by;
  for (auto& [why, n] : suppressed_) {
    total += n;
    by += (by.empty() ? "" : ", ") + why + ": " + std::to_string(n);
  }
  suppressed_.clear();
  spdlog::warn(
      "{} more inbound handshake failures in the last {} s were not logged one by one ({}) — "
      "see beamlink_accept_failures_total",
      total, kLogWindowMs / 1000, by);
}

}  // namespace beamlink::dist
