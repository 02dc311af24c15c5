#include "discovery/resolver.hpp"

#include <ares.h>
#include <arpa/inet.h>
#include <arpa/nameser.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <mutex>
#include <optional>
#include <utility>

namespace beamlink::discovery {

namespace {

std::vector<Address> to_addresses(const ares_addrinfo* res) {
  std::vector<Address> out;
  if (!res) return out;
  char buf[INET6_ADDRSTRLEN];
  for (const ares_addrinfo_node* n = res->nodes; n; n = n->ai_next) {
    if (n->ai_family == AF_INET) {
      const auto* sa = reinterpret_cast<const sockaddr_in*>(n->ai_addr);
      if (inet_ntop(AF_INET, &sa->sin_addr, buf, sizeof buf)) out.push_back({Family::ipv4, buf});
    } else if (n->ai_family == AF_INET6) {
      const auto* sa = reinterpret_cast<const sockaddr_in6*>(n->ai_addr);
      if (inet_ntop(AF_INET6, &sa->sin6_addr, buf, sizeof buf)) out.push_back({Family::ipv6, buf});
    }
  }
  normalize(out);
  return out;
}

ares_addrinfo_hints address_hints() {
  ares_addrinfo_hints h{};
  h.ai_family = AF_UNSPEC;      // A and AAAA
  h.ai_flags = ARES_AI_NOSORT;  // we sort; RFC 6724 sorting would connect() UDP sockets
  return h;
}

std::vector<std::string> servers_in_use(ares_channel channel) {
  std::vector<std::string> out;
  ares_addr_port_node* list = nullptr;
  if (ares_get_servers_ports(channel, &list) != ARES_SUCCESS) return out;
  char buf[INET6_ADDRSTRLEN];
  for (auto* n = list; n; n = n->next) {
    int port = n->udp_port ? n->udp_port : NAMESERVER_PORT;
    std::string server;
    if (n->family == AF_INET && inet_ntop(AF_INET, &n->addr.addr4, buf, sizeof buf)) {
      server = buf;
    } else if (n->family == AF_INET6 && inet_ntop(AF_INET6, &n->addr.addr6, buf, sizeof buf)) {
      server = '[';
      server += buf;
      server += ']';
    } else {
      continue;
    }
    server += ':';
    server += std::to_string(port);
    out.push_back(std::move(server));
  }
  ares_free_data(list);
  return out;
}

}  // namespace

struct Resolver::TargetQuery {
  Request* request = nullptr;
  std::size_t index = 0;
};

struct Resolver::Request {
  Resolver* owner = nullptr;
  std::string name;
  QueryType type = QueryType::address;
  uint64_t started_ns = 0;  // uv_hrtime: the loop's cached clock lags
  AddressCallback on_addresses;
  SrvCallback on_srv;
  std::optional<Error> error;
  std::vector<Address> addresses;           // resolve()
  std::vector<SrvTarget> targets;           // resolve_srv()
  std::vector<TargetQuery> target_queries;  // one per target, stable once sized
  std::size_t outstanding = 0;              // target lookups not finished
  std::list<std::unique_ptr<Request>>::iterator self;
};

Resolver::Resolver(uv_loop_t* loop) : loop_(loop) {
  (void)timer_.init(loop_, this, uv_timer_init);  // cannot fail
  (void)deliver_timer_.init(loop_, this, uv_timer_init);
}

Result<std::unique_ptr<Resolver>> Resolver::create(uv_loop_t* loop, Options opts) {
  static std::once_flag once;
  static int init_status = ARES_SUCCESS;
  std::call_once(once, [] { init_status = ares_library_init(ARES_LIB_INIT_ALL); });
  if (init_status != ARES_SUCCESS)
    return ares_error(Errc::io_error,
                      std::string("could not initialise c-ares: ") + ares_strerror(init_status),
                      init_status);

  std::unique_ptr<Resolver> self(new Resolver(loop));
  ares_options o{};
  int mask = ARES_OPT_SOCK_STATE_CB | ARES_OPT_LOOKUPS;
  o.sock_state_cb = &Resolver::on_sock_state;
  o.sock_state_cb_data = self.get();
  char dns_only[] = "b";  // DNS only, never /etc/hosts (c-ares copies it)
  o.lookups = dns_only;
  std::vector<char*> domains;
  for (auto& d : opts.search) domains.push_back(d.data());
  if (!domains.empty()) {
    mask |= ARES_OPT_DOMAINS;
    o.domains = domains.data();
    o.ndomains = static_cast<int>(domains.size());
  }
  if (opts.ndots >= 0) {
    mask |= ARES_OPT_NDOTS;
    o.ndots = opts.ndots;
  }
  if (opts.timeout.count() > 0) {
    mask |= ARES_OPT_TIMEOUTMS;
    o.timeout = static_cast<int>(opts.timeout.count());
  }
  if (opts.tries > 0) {
    mask |= ARES_OPT_TRIES;
    o.tries = opts.tries;
  }
  ares_channel channel = nullptr;
  if (int st = ares_init_options(&channel, &o, mask); st != ARES_SUCCESS)
    return ares_error(Errc::io_error,
                      std::string("could not initialise the DNS resolver (c-ares): ") +
                          ares_strerror(st) + " — check /etc/resolv.conf",
                      st);
  self->channel_ = channel;
  ares_set_socket_callback(channel, &Resolver::on_socket_created, self.get());
  if (!opts.servers.empty()) {
    std::string csv;
    for (const auto& s : opts.servers) csv += (csv.empty() ? "" : ",") + s;
    if (int st = ares_set_servers_ports_csv(channel, csv.c_str()); st != ARES_SUCCESS)
      return ares_error(
          Errc::invalid_argument,
          "bad DNS server list '" + csv + "': expected IP or IP:PORT entries separated by commas",
          st);
  }
  self->servers_ = servers_in_use(channel);
  return self;
}

Resolver::~Resolver() {
  destroying_ = true;
  // Calls every pending c-ares callback with ARES_EDESTRUCTION (ignored: no
  // user callback runs) and reports each socket closed, which closes its poll.
  if (channel_) ares_destroy(channel_);
  polls_.clear();  // each UvHandle closes its poll (closing stops it)
  completed_.clear();
  requests_.clear();
}

Resolver::Request& Resolver::add(std::string name, QueryType type) {
  requests_.push_back(std::make_unique<Request>());
  Request& r = *requests_.back();
  r.self = std::prev(requests_.end());
  r.owner = this;
  r.name = std::move(name);
  r.type = type;
  r.started_ns = uv_hrtime();
  return r;
}

void Resolver::resolve(std::string name, AddressCallback cb) {
  Request& r = add(std::move(name), QueryType::address);
  r.on_addresses = std::move(cb);
  const ares_addrinfo_hints hints = address_hints();
  // May call on_addrinfo before returning (a bad name, an IP literal): that
  // only queues the result.
  ares_getaddrinfo(channel_, r.name.c_str(), nullptr, &hints, &Resolver::on_addrinfo, &r);
  rearm_timer();
}

void Resolver::resolve_srv(std::string name, SrvCallback cb) {
  Request& r = add(std::move(name), QueryType::srv);
  r.on_srv = std::move(cb);
  ares_search(channel_, r.name.c_str(), ns_c_in, ns_t_srv, &Resolver::on_srv, &r);
  rearm_timer();
}

void Resolver::start_target(Request* r, std::size_t index) {
  TargetQuery& q = r->target_queries[index];
  q.request = r;
  q.index = index;
  const ares_addrinfo_hints hints = address_hints();
  ares_getaddrinfo(channel_, r->targets[index].target.c_str(), nullptr, &hints,
                   &Resolver::on_target, &q);
}

Error Resolver::error_for(int status, const Request& r, std::string_view what,
                          std::string_view name, QueryType type) const {
  QueryContext ctx;
  ctx.what = what;
  ctx.name = name;
  ctx.type = type;
  ctx.servers = servers_;
  ctx.elapsed = std::chrono::milliseconds((uv_hrtime() - r.started_ns) / 1000000);
  return dns_error(status, ctx);
}

void Resolver::complete(Request* r) {
  completed_.push_back(r);
  if (!uv_is_active(deliver_timer_.handle()))
    uv_timer_start(
        deliver_timer_.get(), [](uv_timer_t* t) { static_cast<Resolver*>(t->data)->deliver(); }, 0,
        0);
}

void Resolver::deliver() noexcept {
  const Liveness::Watch alive = alive_.watch();
  while (!completed_.empty()) {
    Request* r = completed_.front();
    completed_.pop_front();
    std::unique_ptr<Request> owned = std::move(*r->self);
    requests_.erase(r->self);
    if (owned->type == QueryType::address) {
      auto cb = std::move(owned->on_addresses);
      Result<std::vector<Address>> res =
          owned->error ? Result<std::vector<Address>>(std::move(*owned->error))
                       : Result<std::vector<Address>>(std::move(owned->addresses));
      owned.reset();
      cb(std::move(res));
    } else {
      auto cb = std::move(owned->on_srv);
      Result<std::vector<SrvTarget>> res =
          owned->error ? Result<std::vector<SrvTarget>>(std::move(*owned->error))
                       : Result<std::vector<SrvTarget>>(std::move(owned->targets));
      owned.reset();
      cb(std::move(res));
    }
    if (!alive) return;  // the callback destroyed the Resolver
  }
}

void Resolver::rearm_timer() noexcept {
  if (destroying_) return;
  timeval tv{};
  timeval* next = ares_timeout(channel_, nullptr, &tv);
  if (!next) {
    uv_timer_stop(timer_.get());
    return;
  }
  auto ms = static_cast<uint64_t>(next->tv_sec) * 1000 +
            (static_cast<uint64_t>(next->tv_usec) + 999) / 1000;
  uv_timer_start(timer_.get(), &Resolver::on_timer, ms, 0);
}

void Resolver::on_sock_state(void* data, int fd, int readable, int writable) noexcept {
  auto* self = static_cast<Resolver*>(data);
  auto it = self->polls_.find(fd);
  if (!readable && !writable) {                            // c-ares is about to close the socket
    if (it != self->polls_.end()) self->polls_.erase(it);  // closes the poll
    return;
  }
  uv_poll_t* p = nullptr;
  if (it != self->polls_.end()) {
    p = it->second.get();
  } else {
    UvHandle<uv_poll_t> h;
    // Cannot watch it: c-ares's timeout will fail the query.
    if (h.init(self->loop_, self, uv_poll_init_socket, fd) != 0) return;
    p = h.get();
    self->polls_.emplace(fd, std::move(h));
  }
  int events = (readable ? UV_READABLE : 0) | (writable ? UV_WRITABLE : 0);
  uv_poll_start(p, events, &Resolver::on_poll);
}

int Resolver::on_socket_created(int, int type, void* data) noexcept {
  auto* self = static_cast<Resolver*>(data);
  if (type == SOCK_STREAM)
    ++self->stats_.tcp_sockets;
  else
    ++self->stats_.udp_sockets;
  return 0;
}

void Resolver::on_poll(uv_poll_t* p, int status, int events) noexcept {
  auto* self = static_cast<Resolver*>(p->data);
  uv_os_fd_t fd = -1;
  if (uv_fileno(reinterpret_cast<uv_handle_t*>(p), &fd) != 0) return;
  ares_socket_t rfd = ARES_SOCKET_BAD;
  ares_socket_t wfd = ARES_SOCKET_BAD;
  if (status < 0) {
    rfd = wfd = fd;  // let c-ares meet the error on its own read/write
  } else {
    if (events & UV_READABLE) rfd = fd;
    if (events & UV_WRITABLE) wfd = fd;
  }
  ares_process_fd(self->channel_, rfd, wfd);
  self->rearm_timer();
}

void Resolver::on_timer(uv_timer_t* t) noexcept {
  auto* self = static_cast<Resolver*>(t->data);
  ares_process_fd(self->channel_, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
  self->rearm_timer();
}

void Resolver::on_addrinfo(void* arg, int status, int, ares_addrinfo* res) noexcept {
  auto* r = static_cast<Request*>(arg);
  Resolver* self = r->owner;
  if (status == ARES_EDESTRUCTION || self->destroying_) {
    if (res) ares_freeaddrinfo(res);
    return;
  }
  if (status == ARES_SUCCESS)
    r->addresses = to_addresses(res);
  else
    r->error = self->error_for(status, *r, "NODE_DNS name", r->name, QueryType::address);
  if (res) ares_freeaddrinfo(res);
  self->complete(r);
}

void Resolver::on_srv(void* arg, int status, int, unsigned char* abuf, int alen) noexcept {
  auto* r = static_cast<Request*>(arg);
  Resolver* self = r->owner;
  if (status == ARES_EDESTRUCTION || self->destroying_) return;
  if (status != ARES_SUCCESS) {
    r->error = self->error_for(status, *r, "NODE_DNS name", r->name, QueryType::srv);
    return self->complete(r);
  }
  ares_srv_reply* reply = nullptr;
  if (int st = ares_parse_srv_reply(abuf, alen, &reply); st != ARES_SUCCESS) {
    r->error = self->error_for(st, *r, "NODE_DNS name", r->name, QueryType::srv);
    return self->complete(r);
  }
  for (auto* s = reply; s; s = s->next) {
    std::string host = s->host ? s->host : "";
    if (host.empty() || host == ".") continue;  // RFC 2782: "." means no service here
    r->targets.push_back({std::move(host), s->port, s->priority, s->weight, {}, std::nullopt});
  }
  ares_free_data(reply);
  if (r->targets.empty()) {
    r->error = self->error_for(ARES_ENODATA, *r, "NODE_DNS name", r->name, QueryType::srv);
    return self->complete(r);
  }
  r->target_queries.resize(r->targets.size());
  r->outstanding = r->targets.size();
  for (std::size_t i = 0; i < r->targets.size(); ++i) self->start_target(r, i);
}

void Resolver::on_target(void* arg, int status, int, ares_addrinfo* res) noexcept {
  auto* q = static_cast<TargetQuery*>(arg);
  Request* r = q->request;
  Resolver* self = r->owner;
  if (status == ARES_EDESTRUCTION || self->destroying_) {
    if (res) ares_freeaddrinfo(res);
    return;
  }
  SrvTarget& t = r->targets[q->index];
  if (status == ARES_SUCCESS)
    t.addresses = to_addresses(res);
  else
    t.error = self->error_for(status, *r, "SRV target", t.target, QueryType::address);
  if (res) ares_freeaddrinfo(res);
  if (--r->outstanding == 0) self->complete(r);
}

}  // namespace beamlink::discovery
