// discovery against a real dnsmasq: one per test, on 127.0.0.1 and a free
// port, serving A/AAAA records from an addn-hosts file in a temp dir the test
// makes and removes (rewritten + SIGHUP to change DNS), SRV records from
// --srv-host, and nothing else (--no-resolv, --local=/cluster.local/).
//
// Each test runs its own uv loop until a condition holds, bounded by a
// deadline, under an unref'd watchdog timer that fails the test instead of
// hanging; each ends with uv_loop_close() == 0. dnsmasq is ended by PID.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>
#include <uv.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "discovery/dns_poller.hpp"
#include "discovery/resolver.hpp"
#include "support.hpp"
#include "test_loop.hpp"

using namespace beamlink;
using namespace beamlink::discovery;
using namespace std::chrono_literals;
using beamlink::test::TestLoop;
using Kind = DnsPoller::Event::Kind;

namespace {

const std::string fqdn = "ewallet.default.svc.cluster.local";
const std::string search_domain = "default.svc.cluster.local";

using Hosts = std::vector<std::pair<std::string, std::string>>;  // {ip, name}

Hosts records(const std::string& name, const std::vector<std::string>& ips) {
  Hosts h;
  for (const auto& ip : ips) h.emplace_back(ip, name);
  return h;
}

// A real dnsmasq on 127.0.0.1:port() answering from a hosts file it rereads
// on SIGHUP. The temp dir is readable by all: dnsmasq drops to `nobody`.
class Dnsmasq {
 public:
  explicit Dnsmasq(const Hosts& hosts, std::vector<std::string> extra = {})
      : port_(test::free_port()), extra_(std::move(extra)) {
    char tmpl[] = "/tmp/beamlink-dns-XXXXXX";
    REQUIRE(mkdtemp(tmpl) != nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);
    hosts_path_ = dir_ + "/hosts";
    write(hosts);
    start();
  }
  ~Dnsmasq() {
    proc_.reset();  // SIGTERM by PID, then SIGKILL, reaped
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  int port() const { return port_; }
  std::string server() const { return "127.0.0.1:" + std::to_string(port_); }
  int pid() const { return proc_ ? proc_->pid() : -1; }

  // Rewrites the hosts file and makes dnsmasq reread it (SIGHUP); returns once
  // it has logged the reread.
  void update(const Hosts& hosts) {
    write(hosts);
    std::size_t before = reads();
    proc_->signal(SIGHUP);
    REQUIRE(test::wait_until([&] { return reads() > before; }, 5s));
  }
  void kill() {
    proc_->signal(SIGKILL);
    REQUIRE(proc_->wait(5s).has_value());
    proc_.reset();
  }
  void start() {
    std::vector<std::string> argv{"dnsmasq",
                                  "--keep-in-foreground",
                                  "--conf-file=/dev/null",
                                  "--no-resolv",
                                  "--no-hosts",
                                  "--port=" + std::to_string(port_),
                                  "--listen-address=127.0.0.1",
                                  "--bind-interfaces",
                                  "--local=/cluster.local/",
                                  "--addn-hosts=" + hosts_path_,
                                  "--pid-file=",
                                  "--log-facility=-"};
    argv.insert(argv.end(), extra_.begin(), extra_.end());
    proc_ = std::make_unique<test::Subprocess>(argv);
    // It binds its sockets before it reads the hosts file.
    bool ready = test::wait_until([&] { return reads() > 0 || !proc_->running(); }, 10s);
    REQUIRE_MESSAGE(ready, "dnsmasq did not start: " << proc_->err());
    REQUIRE_MESSAGE(proc_->running(), "dnsmasq exited: " << proc_->err());
  }

 private:
  void write(const Hosts& hosts) {
    std::ofstream f(hosts_path_, std::ios::trunc);
    for (const auto& [ip, name] : hosts) f << ip << ' ' << name << '\n';
    f.close();
    chmod(hosts_path_.c_str(), 0644);
  }
  std::size_t reads() {
    std::string err = proc_->err();
    std::string needle = "read " + hosts_path_;
    std::size_t n = 0;
    for (auto pos = err.find(needle); pos != std::string::npos; pos = err.find(needle, pos + 1))
      ++n;
    return n;
  }

  int port_;
  std::vector<std::string> extra_;
  std::string dir_;
  std::string hosts_path_;
  std::unique_ptr<test::Subprocess> proc_;
};

Resolver::Options resolver_options(const std::string& server) {
  Resolver::Options o;
  o.servers = {server};
  o.search = {search_domain};
  o.timeout = 500ms;
  o.tries = 2;
  return o;
}

std::unique_ptr<Resolver> make_resolver(TestLoop& loop, Resolver::Options o) {
  auto r = Resolver::create(loop.get(), std::move(o));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return std::move(*r);
}

Result<std::vector<Address>> resolve_now(TestLoop& loop, Resolver& resolver,
                                         const std::string& name) {
  std::optional<Result<std::vector<Address>>> got;
  resolver.resolve(name, [&](Result<std::vector<Address>> r) { got = std::move(r); });
  REQUIRE(loop.run_until([&] { return got.has_value(); }));
  return std::move(*got);
}

std::vector<std::string> texts(const std::vector<Address>& a) {
  std::vector<std::string> out;
  for (const auto& x : a) out.push_back(x.text);
  return out;
}

// Records a poller's events.
struct Events {
  std::vector<DnsPoller::Event> all;
  DnsPoller::EventCallback sink() {
    return [this](const DnsPoller::Event& e) { all.push_back(e); };
  }
  std::size_t count(Kind k) const {
    std::size_t n = 0;
    for (const auto& e : all) n += e.kind == k;
    return n;
  }
  const DnsPoller::Event* last(Kind k) const {
    for (auto it = all.rbegin(); it != all.rend(); ++it)
      if (it->kind == k) return &*it;
    return nullptr;
  }
};

std::unique_ptr<DnsPoller> make_poller(TestLoop& loop, DnsPoller::Options o, Events& ev) {
  auto p = DnsPoller::create(loop.get(), std::move(o), ev.sink());
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
  return std::move(*p);
}

DnsPoller::Options poller_options(const Dnsmasq& dns, std::string name = fqdn) {
  DnsPoller::Options o;
  o.name = std::move(name);
  o.interval = 60s;  // the tests drive polls with poll_now()
  o.resolver = resolver_options(dns.server());
  return o;
}

// poll_now(), then run until that poll (or a later one) has completed.
void poll_once(TestLoop& loop, DnsPoller& poller) {
  uint64_t before = poller.polls_completed();
  poller.poll_now();
  REQUIRE(loop.run_until([&] { return poller.polls_completed() > before; }));
}

using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("discovery: resolver finds the A and AAAA records dnsmasq serves") {
  Hosts hosts = records(fqdn, {"10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::7"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    auto resolver = make_resolver(loop, resolver_options(dns.server()));
    CHECK(resolver->servers() == Strings{dns.server()});
    auto r = resolve_now(loop, *resolver, fqdn);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(texts(*r) == Strings{"10.0.0.1", "10.0.0.2", "10.0.0.3", "fd00::7"});
    CHECK((*r)[3].family == Family::ipv6);
    CHECK(resolver->stats().udp_sockets >= 1);
    CHECK(resolver->stats().tcp_sockets == 0);
    CHECK(resolver->pending() == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: a short name resolves through the search list") {
  Dnsmasq dns(records(fqdn, {"10.0.0.1", "10.0.0.2"}));
  TestLoop loop;
  {
    auto resolver = make_resolver(loop, resolver_options(dns.server()));
    auto r = resolve_now(loop, *resolver, "ewallet");
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(texts(*r) == Strings{"10.0.0.1", "10.0.0.2"});

    // The same through a shorter search domain and a name with one dot.
    Resolver::Options o = resolver_options(dns.server());
    o.search = {"svc.cluster.local"};
    o.ndots = 5;  // as Kubernetes sets it
    auto resolver2 = make_resolver(loop, o);
    auto r2 = resolve_now(loop, *resolver2, "ewallet.default");
    REQUIRE_MESSAGE(r2.ok(), (r2.ok() ? "" : r2.error().message));
    CHECK(texts(*r2) == Strings{"10.0.0.1", "10.0.0.2"});

    // And the poller with NODE_DNS=ewallet.
    Events ev;
    auto poller = make_poller(loop, poller_options(dns, "ewallet"), ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));
    CHECK(poller->peers() == std::set<std::string>{"ewallet@10.0.0.1", "ewallet@10.0.0.2"});
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: poller reports the initial set then added and removed peers") {
  Hosts hosts = records(fqdn, {"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    Events ev;
    auto poller = make_poller(loop, poller_options(dns), ev);
    poller->start();
    CHECK(ev.all.empty());  // never from inside start()
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));
    REQUIRE(ev.count(Kind::changed) == 1);
    CHECK(ev.last(Kind::changed)->diff.added ==
          Strings{"ewallet@10.0.0.1", "ewallet@10.0.0.2", "ewallet@10.0.0.3"});
    CHECK(ev.last(Kind::changed)->diff.removed.empty());
    CHECK(ev.last(Kind::ok)->peers == 3);
    CHECK(poller->state() == PollState::ok);

    // Nothing changed: no event.
    poll_once(loop, *poller);
    CHECK(ev.all.size() == 2);

    // A pod joins.
    hosts.emplace_back("10.0.0.4", fqdn);
    dns.update(hosts);
    poll_once(loop, *poller);
    REQUIRE(ev.count(Kind::changed) == 2);
    CHECK(ev.last(Kind::changed)->diff.added == Strings{"ewallet@10.0.0.4"});
    CHECK(ev.last(Kind::changed)->diff.removed.empty());

    // Two leave.
    dns.update(records(fqdn, {"10.0.0.2", "10.0.0.4"}));
    poll_once(loop, *poller);
    REQUIRE(ev.count(Kind::changed) == 3);
    CHECK(ev.last(Kind::changed)->diff.added.empty());
    CHECK(ev.last(Kind::changed)->diff.removed == Strings{"ewallet@10.0.0.1", "ewallet@10.0.0.3"});
    CHECK(poller->peers() == std::set<std::string>{"ewallet@10.0.0.2", "ewallet@10.0.0.4"});
    CHECK(ev.count(Kind::ok) == 1);
    CHECK(ev.count(Kind::failing) == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: a poller event callback may destroy the poller") {
  Dnsmasq dns(records(fqdn, {"10.0.0.1", "fd00::1"}));
  TestLoop loop;
  {
    std::unique_ptr<DnsPoller> poller;
    int events = 0;
    auto p = DnsPoller::create(loop.get(), poller_options(dns), [&](const DnsPoller::Event&) {
      ++events;
      poller.reset();  // on the first of the three events this poll has
    });
    REQUIRE(p.ok());
    poller = std::move(*p);
    poller->start();
    REQUIRE(loop.run_until([&] { return poller == nullptr; }));
    loop.run_for(50ms);
    CHECK(events == 1);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: poller polls again after its interval") {
  Hosts hosts = records(fqdn, {"10.0.0.1"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    Events ev;
    DnsPoller::Options o = poller_options(dns);
    o.interval = 200ms;
    auto poller = make_poller(loop, o, ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::changed) == 1; }));
    hosts.emplace_back("10.0.0.2", fqdn);
    dns.update(hosts);
    // No poll_now(): the timer brings it.
    REQUIRE(loop.run_until([&] { return ev.count(Kind::changed) == 2; }, 5s));
    CHECK(ev.last(Kind::changed)->diff.added == Strings{"ewallet@10.0.0.2"});
    CHECK(poller->polls_completed() >= 2);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: poller never lists itself and skips IPv6 peers once") {
  Hosts hosts = records(fqdn, {"10.0.0.1", "10.0.0.2", "10.0.0.9", "fd00::1"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    Events ev;
    DnsPoller::Options o = poller_options(dns);
    o.own_addresses = {"10.0.0.9"};
    o.own_name = "ewallet@10.0.0.9";  // PEER_NAME@10.0.0.9 is this node
    auto poller = make_poller(loop, o, ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));
    CHECK(ev.last(Kind::changed)->diff.added == Strings{"ewallet@10.0.0.1", "ewallet@10.0.0.2"});
    REQUIRE(ev.count(Kind::skipped) == 2);
    bool own = false, v6 = false;
    for (const auto& e : ev.all) {
      if (e.kind != Kind::skipped) continue;
      if (e.skipped.reason == Skipped::Reason::own_address)
        own = e.skipped.address.text == "10.0.0.9";
      if (e.skipped.reason == Skipped::Reason::ipv6) {
        v6 = e.skipped.address.text == "fd00::1";
        CHECK(e.skipped.message.find("ei is IPv4-only") != std::string::npos);
      }
    }
    CHECK(own);
    CHECK(v6);
    poll_once(loop, *poller);
    poll_once(loop, *poller);
    CHECK(ev.count(Kind::skipped) == 2);  // reported once
    CHECK(poller->peers().count("ewallet@10.0.0.9") == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: a sidecar lists the pod's own node at its own address as a peer") {
  Hosts hosts = records(fqdn, {"10.0.0.1", "10.0.0.9"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    Events ev;
    DnsPoller::Options o = poller_options(dns);
    o.own_addresses = {"10.0.0.9"};
    o.own_name = "beamlink@10.0.0.9";  // shares 10.0.0.9 with ewallet@10.0.0.9
    auto poller = make_poller(loop, o, ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));
    CHECK(ev.last(Kind::changed)->diff.added == Strings{"ewallet@10.0.0.1", "ewallet@10.0.0.9"});
    CHECK(ev.count(Kind::skipped) == 0);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: NXDOMAIN is reported once as not_found and the last set is kept") {
  Hosts hosts = records(fqdn, {"10.0.0.1", "10.0.0.2"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    auto resolver = make_resolver(loop, resolver_options(dns.server()));
    const std::string missing = "nope.default.svc.cluster.local";
    auto r = resolve_now(loop, *resolver, missing);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::not_found);
    CHECK(r.error().message == "NODE_DNS name " + missing +
                                   " does not exist (NXDOMAIN) — check the Service name and "
                                   "namespace");

    Events ev;
    auto poller = make_poller(loop, poller_options(dns), ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));

    dns.update({{"10.9.9.9", "other.default.svc.cluster.local"}});  // the Service is gone
    poll_once(loop, *poller);
    REQUIRE(ev.count(Kind::failing) == 1);
    const auto* f = ev.last(Kind::failing);
    CHECK(f->error.code == Errc::not_found);
    CHECK(f->error.message.find("does not exist (NXDOMAIN)") != std::string::npos);
    CHECK(poller->state() == PollState::failing);
    CHECK(poller->peers() == std::set<std::string>{"ewallet@10.0.0.1", "ewallet@10.0.0.2"});
    poll_once(loop, *poller);
    poll_once(loop, *poller);
    CHECK(ev.count(Kind::failing) == 1);  // once per change, not every poll
    CHECK(ev.count(Kind::changed) == 1);  // nothing removed

    dns.update(hosts);
    poll_once(loop, *poller);
    CHECK(ev.count(Kind::ok) == 2);
    CHECK(ev.count(Kind::changed) == 1);  // the same set as before
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: dnsmasq stopped keeps the set and reports failing once until it returns") {
  Hosts hosts = records(fqdn, {"10.0.0.1", "10.0.0.2", "10.0.0.3"});
  Dnsmasq dns(hosts);
  TestLoop loop;
  {
    Events ev;
    auto poller = make_poller(loop, poller_options(dns), ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));

    dns.kill();
    poll_once(loop, *poller);
    REQUIRE(ev.count(Kind::failing) == 1);
    const auto* f = ev.last(Kind::failing);
    MESSAGE("dnsmasq down: " << errc_name(f->error.code) << ": " << f->error.message);
    CHECK((f->error.code == Errc::connection_refused || f->error.code == Errc::timeout));
    CHECK(f->error.message.find(dns.server()) != std::string::npos);
    poll_once(loop, *poller);
    poll_once(loop, *poller);
    CHECK(ev.count(Kind::failing) == 1);
    CHECK(poller->peers().size() == 3);
    CHECK(ev.count(Kind::changed) == 1);

    dns.start();
    poll_once(loop, *poller);
    CHECK(ev.count(Kind::ok) == 2);
    CHECK(ev.last(Kind::ok)->peers == 3);
    CHECK(ev.count(Kind::changed) == 1);

    // A new pod is found once DNS is back.
    hosts.emplace_back("10.0.0.4", fqdn);
    dns.update(hosts);
    poll_once(loop, *poller);
    CHECK(ev.last(Kind::changed)->diff.added == Strings{"ewallet@10.0.0.4"});
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: SRV records resolve to their targets and their addresses") {
  const std::string srv = "_epmd._tcp." + fqdn;
  Hosts hosts{{"10.0.1.1", "ewallet-0.ewallet.default.svc.cluster.local"},
              {"10.0.1.2", "ewallet-1.ewallet.default.svc.cluster.local"}};
  Dnsmasq dns(hosts, {"--srv-host=" + srv + ",ewallet-0.ewallet.default.svc.cluster.local,4369",
                      "--srv-host=" + srv + ",ewallet-1.ewallet.default.svc.cluster.local,4369",
                      "--srv-host=" + srv + ",ewallet-2.ewallet.default.svc.cluster.local,4369"});
  TestLoop loop;
  {
    auto resolver = make_resolver(loop, resolver_options(dns.server()));
    std::optional<Result<std::vector<SrvTarget>>> got;
    resolver->resolve_srv(srv, [&](Result<std::vector<SrvTarget>> r) { got = std::move(r); });
    CHECK_FALSE(got.has_value());
    REQUIRE(loop.run_until([&] { return got.has_value(); }));
    REQUIRE_MESSAGE(got->ok(), (got->ok() ? "" : got->error().message));
    auto targets = **got;
    REQUIRE(targets.size() == 3);
    std::sort(targets.begin(), targets.end(),
              [](const SrvTarget& a, const SrvTarget& b) { return a.target < b.target; });
    CHECK(targets[0].target == "ewallet-0.ewallet.default.svc.cluster.local");
    CHECK(targets[0].port == 4369);
    CHECK(texts(targets[0].addresses) == Strings{"10.0.1.1"});
    CHECK(texts(targets[1].addresses) == Strings{"10.0.1.2"});
    // ewallet-2 has no A record: that target is reported as not found.
    REQUIRE(targets[2].error.has_value());
    CHECK(targets[2].error->code == Errc::not_found);
    CHECK(targets[2].error->message.find("SRV target ewallet-2") != std::string::npos);

    Events ev;
    DnsPoller::Options o = poller_options(dns, srv);
    o.srv = true;
    auto poller = make_poller(loop, o, ev);
    poller->start();
    REQUIRE(loop.run_until([&] { return ev.count(Kind::ok) == 1; }));
    CHECK(ev.last(Kind::changed)->diff.added == Strings{"ewallet@10.0.1.1", "ewallet@10.0.1.2"});

    // A name with A records only: SRV lookup says so.
    std::optional<Result<std::vector<SrvTarget>>> none;
    resolver->resolve_srv("ewallet-0.ewallet.default.svc.cluster.local",
                          [&](Result<std::vector<SrvTarget>> r) { none = std::move(r); });
    REQUIRE(loop.run_until([&] { return none.has_value(); }));
    REQUIRE_FALSE(none->ok());
    CHECK(none->error().code == Errc::not_found);
    MESSAGE("SRV on an A-only name: " << none->error().message);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: a truncated UDP answer is asked again over TCP") {
  std::vector<std::string> ips;
  for (int i = 1; i <= 100; ++i) ips.push_back("10.0.2." + std::to_string(i));
  Dnsmasq dns(records(fqdn, ips));
  TestLoop loop;
  {
    auto resolver = make_resolver(loop, resolver_options(dns.server()));
    auto r = resolve_now(loop, *resolver, fqdn);
    REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
    CHECK(r->size() == 100);
    // 100 A records (~1.6 kB) do not fit the 512-byte UDP answer c-ares asks
    // for (no EDNS): dnsmasq sets TC and c-ares asks again over TCP.
    CHECK(resolver->stats().tcp_sockets >= 1);
    MESSAGE("sockets: udp " << resolver->stats().udp_sockets << ", tcp "
                            << resolver->stats().tcp_sockets);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: no answer within the timeout is a timeout error") {
  // A UDP socket that never answers.
  int fd = socket(AF_INET, SOCK_DGRAM, 0);
  REQUIRE(fd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  const std::string server = "127.0.0.1:" + std::to_string(ntohs(sa.sin_port));

  TestLoop loop;
  {
    Resolver::Options o = resolver_options(server);
    o.timeout = 100ms;
    o.tries = 1;
    auto resolver = make_resolver(loop, o);
    auto r = resolve_now(loop, *resolver, fqdn);
    REQUIRE_FALSE(r.ok());
    CHECK(r.error().code == Errc::timeout);
    CHECK(r.error().message.find("no DNS server answered within") != std::string::npos);
    CHECK(r.error().message.find(server) != std::string::npos);
    MESSAGE(r.error().message);
  }
  CHECK(loop.close() == 0);
  close(fd);
}

TEST_CASE("discovery: destroying the resolver cancels pending lookups without callbacks") {
  int fd = socket(AF_INET, SOCK_DGRAM, 0);  // never answers
  REQUIRE(fd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  socklen_t len = sizeof sa;
  REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);

  TestLoop loop;
  int calls = 0;
  {
    auto resolver =
        make_resolver(loop, resolver_options("127.0.0.1:" + std::to_string(ntohs(sa.sin_port))));
    resolver->resolve(fqdn, [&](Result<std::vector<Address>>) { ++calls; });
    resolver->resolve_srv("_epmd._tcp." + fqdn, [&](Result<std::vector<SrvTarget>>) { ++calls; });
    CHECK(resolver->pending() == 2);
    loop.run_for(50ms);  // the queries are on the wire
  }
  loop.run_for(50ms);
  CHECK(calls == 0);
  CHECK(loop.close() == 0);
  close(fd);
}

TEST_CASE("discovery: an IP literal is answered later and a callback may destroy the resolver") {
  TestLoop loop;
  {
    auto resolver = make_resolver(loop, resolver_options("127.0.0.1:9"));
    std::optional<Result<std::vector<Address>>> got;
    resolver->resolve("10.1.2.3", [&](Result<std::vector<Address>> r) {
      got = std::move(r);
      resolver.reset();  // allowed from a callback
    });
    CHECK_FALSE(got.has_value());  // never from inside the call
    REQUIRE(loop.run_until([&] { return got.has_value(); }));
    REQUIRE(got->ok());
    CHECK(texts(**got) == Strings{"10.1.2.3"});
    CHECK(resolver == nullptr);
  }
  CHECK(loop.close() == 0);
}

TEST_CASE("discovery: bad resolver options fail at creation") {
  TestLoop loop;
  Resolver::Options o;
  o.servers = {"not an address"};
  auto r = Resolver::create(loop.get(), o);
  REQUIRE_FALSE(r.ok());
  CHECK(r.error().code == Errc::invalid_argument);
  DnsPoller::Options p;
  auto none = DnsPoller::create(loop.get(), p, nullptr);
  REQUIRE_FALSE(none.ok());
  CHECK(none.error().code == Errc::invalid_argument);
  CHECK(loop.close() == 0);
}
