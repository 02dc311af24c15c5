#include "doctor/doctor.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "common/uv_util.hpp"
#include "dist/handshake_probe.hpp"
#include "dist/identity.hpp"
#include "dist/node.hpp"
#include "epmd_client/client.hpp"
#include "term/term_text.hpp"

namespace beamlink::doctor {
namespace {

std::string ms(std::chrono::milliseconds d) {
  return std::to_string(d.count()) + " ms";
}

// The per-peer stages, in order; a peer stops at its first failure and the
// rest are reported as skipped.
const std::vector<std::string> kPeerStages = {
    "epmd.reachable",   "epmd.registered", "dist.port_range",   "dist.port_reachable",
    "handshake.status", "handshake.name",  "handshake.version", "handshake.cookie"};

struct Peer {
  std::string node;  // PEER_NAME@IP (or as given)
  std::string alive;
  std::string ip;
  std::vector<Check> checks;
  bool epmd_failed = false;
  bool handshake_ok = false;
  std::uint16_t port = 0;
  int version = 6;  // the highest distribution version its epmd reports
};

struct ProbeWork {
  uv_work_t req;
  Liveness::Watch alive;
  std::function<void(dist::HandshakeReport)> done;
  std::string expected, our_name, cookie;
  in_addr ip;
  std::uint16_t port;
  std::chrono::milliseconds timeout;
  int version = 6;
  dist::HandshakeReport report;
};

}  // namespace

struct Doctor::Impl {
  uv_loop_t* loop;
  Options opt;
  Report report;
  std::function<void(Report)> done;
  std::unique_ptr<discovery::Resolver> resolver;
  std::unique_ptr<epmd_client::Client> epmd;
  std::unique_ptr<dist::Node> node;
  std::vector<Peer> peers;
  std::size_t dns_addresses = 0;
  std::vector<std::string> own_in_dns;  // this host's IPs that NODE_DNS answers
  std::size_t pending = 0;
  Liveness alive;

  void add(const std::string& id, const std::string& subject, Status s, std::string finding,
           std::string fix = {}) {
    report.add(Check{id, subject, s, std::move(finding), std::move(fix)});
  }

  // ------------------------------------------------------------ cookie
  void check_cookie() {
    std::string fp = dist::cookie_fingerprint(opt.cookie);
    std::string finding = "cookie from " + opt.cookie_source + ", fingerprint " + fp +
                          " (compare it with the fingerprint `beamlink doctor` prints on the "
                          "other side; the cookie itself is never shown)";
    if (!opt.cookie_warning.empty())
      add("cookie.source", "this node", Status::warn, finding + "; " + opt.cookie_warning,
          "make the file readable by its owner only: chmod 400 " + opt.cookie_source);
    else
      add("cookie.source", "this node", Status::pass, finding);
    auto exposed = cookies_on_command_lines();
    if (exposed.empty()) {
      add("cookie.cmdline", "this node", Status::pass,
          "no BEAM node in this network namespace has its cookie on its command line");
    } else {
      std::string who;
      for (auto& e : exposed)
        who += (who.empty() ? "" : ", ") + e.node + " (pid " + std::to_string(e.pid) + ")";
      add("cookie.cmdline", "this node", Status::warn,
          "the cookie is on the command line of " + who + ": any local user reads it with ps",
          "give the node a cookie file readable by its owner only (~/.erlang.cookie, mode 0400) "
          "instead of --cookie/-setcookie");
    }
  }

  // ------------------------------------------------------------ DNS
  void start() {
    check_cookie();
    for (auto& p : opt.peers) {
      Peer peer;
      peer.node = p;
      auto at = p.find('@');
      peer.alive = p.substr(0, at);
      peer.ip = at == std::string::npos ? "" : p.substr(at + 1);
      in_addr a{};
      if (peer.ip.empty() || inet_pton(AF_INET, peer.ip.c_str(), &a) != 1) {
        add("peer.address", p, Status::fail, "'" + p + "' is not alive@IPv4",
            "give peers as NAME@IP, e.g. ewallet@10.0.0.5");
        continue;
      }
      peers.push_back(std::move(peer));
    }
    if (opt.dns.empty()) {
      if (peers.empty() && report.checks.size() <= 1) {
        report.doctor_failed = true;
        report.doctor_error = "nothing to check: set NODE_DNS (--dns) or give peers with --connect";
        return finish();
      }
      return start_peers();
    }
    auto r = discovery::Resolver::create(loop, opt.resolver);
    if (!r) {
      report.doctor_failed = true;
      report.doctor_error = r.error().message;
      return finish();
    }
    resolver = std::move(r).value();
    auto on_addresses = [this, a = alive.watch()](Result<std::vector<discovery::Address>> res) {
      if (!a) return;
      on_dns(std::move(res));
    };
    if (opt.srv) {
      resolver->resolve_srv(opt.dns, [on_addresses](Result<std::vector<discovery::SrvTarget>> r2) {
        on_addresses(discovery::srv_addresses(r2));
      });
    } else {
      resolver->resolve(opt.dns, on_addresses);
    }
  }

  void on_dns(Result<std::vector<discovery::Address>> res) {
    const std::string subject = "NODE_DNS " + opt.dns;
    if (!res) {
      add("dns.resolve", subject, Status::fail, res.error().message,
          res.error().code == Errc::not_found
              ? "check the Service's name and namespace "
                "(NODE_DNS=SERVICE.NAMESPACE.svc.cluster.local)"
              : "check that this host's DNS server (resolv.conf) is up and reachable");
      return start_peers();
    }
    std::vector<std::string> v4, v6;
    for (auto& addr : *res) (addr.family == discovery::Family::ipv4 ? v4 : v6).push_back(addr.text);
    dns_addresses = v4.size();
    if (v4.empty() && !v6.empty()) {
      add("dns.resolve", subject, Status::fail,
          "answers only IPv6 addresses (" + std::to_string(v6.size()) + ")",
          "beamlink (through ei) is IPv4-only: give the Service IPv4 endpoints");
      return start_peers();
    }
    std::string list;
    for (auto& ip : v4) list += (list.empty() ? "" : ", ") + ip;
    add("dns.resolve", subject, Status::pass,
        std::to_string(v4.size()) + " address(es): " + list +
            (v6.empty() ? "" : " (and " + std::to_string(v6.size()) + " IPv6, skipped)"));
    if (opt.dns.find('.') == std::string::npos)
      add("dns.search", subject, Status::warn,
          "a short name: it resolves here only through resolv.conf's search list",
          "Peerage (:inet_res) does not apply the search list: give the pods the fully qualified "
          "name, e.g. " +
              opt.dns + ".NAMESPACE.svc.cluster.local");
    // Only PEER_NAME@IP that would be this node itself is skipped: in a
    // sidecar PEER_NAME@<own IP> is the pod's own node, checked like others.
    const discovery::PeerSet self(opt.peer_name, opt.own_addresses, opt.our_name);
    for (auto& ip : v4) {
      if (self.is_own_address(ip)) own_in_dns.push_back(ip);
      if (self.is_self(ip)) continue;
      std::string peer_node = opt.peer_name + "@" + ip;
      if (std::any_of(peers.begin(), peers.end(),
                      [&](const Peer& p) { return p.node == peer_node; }))
        continue;
      peers.push_back(Peer{peer_node, opt.peer_name, ip, {}, false, false, 0});
    }
    start_peers();
  }

  // ------------------------------------------------------------ peers
  void start_peers() {
    if (peers.empty()) return finish();
    epmd = std::make_unique<epmd_client::Client>(loop);
    pending = peers.size();
    for (std::size_t i = 0; i < peers.size(); ++i) check_epmd(i);
  }

  void peer_done() {
    if (--pending > 0) return;
    if (dns_addresses == 1 && peers.size() == 1 && peers[0].epmd_failed)
      add("dns.single_address", "NODE_DNS " + opt.dns, Status::warn,
          "NODE_DNS answers a single address and nothing answers epmd there",
          "the Service looks load-balanced (a ClusterIP): set `clusterIP: None` so its name "
          "answers every pod's IP");
    check_own_address();
    check_mesh();
  }

  // This host's IP in NODE_DNS's answer is right only for a sidecar: a
  // PEER_NAME node registered with the epmd here (the pod's own node).
  // Otherwise every pod's Peerage keeps dialling PEER_NAME@<this IP>.
  void check_own_address() {
    for (auto& ip : own_in_dns) {
      const std::string peer_node = opt.peer_name + "@" + ip;
      auto it = std::find_if(peers.begin(), peers.end(),
                             [&](const Peer& p) { return p.node == peer_node; });
      if (it == peers.end()) continue;  // PEER_NAME@ip is this node itself
      const std::string subject = "NODE_DNS " + opt.dns;
      if (it->port != 0) {
        add("dns.own_address", subject, Status::pass,
            "this host's IP " + ip + " is in the answer: a sidecar beside " + peer_node +
                ", which is registered with the epmd here and checked as a peer");
      } else {
        add("dns.own_address", subject, Status::warn,
            "this host's IP " + ip + " is in the answer, but no node named '" + opt.peer_name +
                "' is registered with the epmd here: beamlink is not a sidecar, and every "
                "pod's Peerage keeps dialling " +
                peer_node + " in vain",
            "take beamlink's pods out of the headless Service (labels its selector does not "
            "match), or run beamlink as a sidecar in the pods the Service selects");
      }
    }
  }

  void stop_peer(std::size_t i, const std::string& failed_stage) {
    auto at = std::find(kPeerStages.begin(), kPeerStages.end(), failed_stage);
    for (auto it = at + 1; it != kPeerStages.end(); ++it)
      peers[i].checks.push_back(
          Check{*it, peers[i].node, Status::skip, "not checked: " + failed_stage + " failed", ""});
    flush_peer(i);
    peer_done();
  }

  void flush_peer(std::size_t i) {
    for (auto& c : peers[i].checks) report.add(c);
    peers[i].checks.clear();
  }

  void peer_check(std::size_t i, const std::string& id, Status s, std::string finding,
                  std::string fix = {}) {
    peers[i].checks.push_back(Check{id, peers[i].node, s, std::move(finding), std::move(fix)});
  }

  void check_epmd(std::size_t i) {
    epmd_client::Endpoint ep;
    ep.host = peers[i].ip;
    ep.port = opt.epmd_port;
    epmd->names(
        ep, opt.timeout,
        [this, i, a = alive.watch()](Result<std::vector<epmd_client::NameEntry>> names) {
          if (!a) return;
          Peer& p = peers[i];
          std::string where = p.ip + ":" + std::to_string(opt.epmd_port);
          if (!names) {
            p.epmd_failed = true;
            std::string fix;
            if (names.error().code == Errc::connection_refused)
              fix = "nothing listens on " + where +
                    ": the node is down, or its epmd is not running (start it with `epmd -daemon`, "
                    "or let erl start it)";
            else if (names.error().code == Errc::timeout)
              fix = "nothing answered on " + where + " within " + ms(opt.timeout) +
                    ": a firewall drops port " + std::to_string(opt.epmd_port) +
                    ", or the address is dead (a stale DNS entry)";
            else
              fix = "check that " + p.ip + " is reachable from here";
            peer_check(i, "epmd.reachable", Status::fail, names.error().message, fix);
            return stop_peer(i, "epmd.reachable");
          }
          peer_check(i, "epmd.reachable", Status::pass, "epmd answers on " + where);
          std::string known;
          for (auto& n : *names) {
            known += (known.empty() ? "" : ", ") + n.name + " (" + std::to_string(n.port) + ")";
            if (n.name == p.alive) p.port = n.port;
          }
          if (p.port == 0) {
            peer_check(i, "epmd.registered", Status::fail,
                       "epmd on " + p.ip + " has no node named '" + p.alive + "'" +
                           (known.empty() ? " (it knows none)" : " (it knows: " + known + ")"),
                       "start the node as " + p.alive + "@" + p.ip +
                           ", or set PEER_NAME to the name the pods use");
            return stop_peer(i, "epmd.registered");
          }
          std::string registered =
              "'" + p.alive + "' is registered on port " + std::to_string(p.port);
          if (p.port < opt.port_min || p.port > opt.port_max)
            peer_check(i, "dist.port_range", Status::warn,
                       "distribution port " + std::to_string(p.port) + " is outside " +
                           std::to_string(opt.port_min) + "-" + std::to_string(opt.port_max),
                       "start the node with --erl '-kernel inet_dist_listen_min " +
                           std::to_string(opt.port_min) + "' --erl '-kernel inet_dist_listen_max " +
                           std::to_string(opt.port_max) +
                           "', or firewall rules for that range will not match");
          else
            peer_check(i, "dist.port_range", Status::pass,
                       "port " + std::to_string(p.port) + " is inside " +
                           std::to_string(opt.port_min) + "-" + std::to_string(opt.port_max));
          versions(i, std::move(registered));
        });
  }

  // The versions the node speaks (PORT_PLEASE2): a node whose epmd says
  // highest version 5 is OTP 22 or older and is probed with version 5.
  void versions(std::size_t i, std::string registered) {
    epmd_client::Endpoint ep;
    ep.host = peers[i].ip;
    ep.port = opt.epmd_port;
    epmd->port_please(
        ep, peers[i].alive, opt.timeout,
        [this, i, registered, a = alive.watch()](Result<epmd_client::NodeInfo> info) {
          if (!a) return;
          Peer& p = peers[i];
          std::string text = registered;
          if (info) {
            p.version = info->highest_version >= 6 ? 6 : 5;
            text +=
                " (distribution versions " + std::to_string(info->lowest_version) + "-" +
                std::to_string(info->highest_version) +
                (p.version == 5 ? ": OTP 22 or older (eWallet pins 21))" : ": OTP 23 or newer)");
          } else {
            // Probed with version 6; should it close after our name, the
            // handshake's text says an OTP 22 node does that too.
            text += " (its distribution versions are unknown: " + info.error().message +
                    "; probing with version 6)";
          }
          // The registration check goes first in the report.
          p.checks.insert(std::find_if(p.checks.begin(), p.checks.end(),
                                       [](const Check& c) { return c.id == "dist.port_range"; }),
                          Check{"epmd.registered", p.node, Status::pass, text, ""});
          probe(i);
        });
  }

  void probe(std::size_t i) {
    Peer& p = peers[i];
    auto* w = new ProbeWork{};
    w->req.data = w;
    w->alive = alive.watch();
    w->expected = p.alive + "@" + p.ip;
    w->our_name = opt.our_name;
    w->cookie = opt.cookie;
    inet_pton(AF_INET, p.ip.c_str(), &w->ip);
    w->port = p.port;
    w->timeout = opt.timeout;
    w->version = p.version;
    w->done = [this, i](dist::HandshakeReport r) { on_probe(i, std::move(r)); };
    uv_queue_work(
        loop, &w->req,
        [](uv_work_t* req) {
          auto* work = static_cast<ProbeWork*>(req->data);
          work->report = dist::probe_handshake(
              work->expected, work->ip, work->port, work->our_name, work->cookie, work->timeout,
              work->version == 5 ? dist::dflag::v5_default : dist::dflag::probe_default,
              work->version);
        },
        [](uv_work_t* req, int) {
          std::unique_ptr<ProbeWork> work(static_cast<ProbeWork*>(req->data));
          if (work->alive) work->done(std::move(work->report));
        });
  }

  void on_probe(std::size_t i, dist::HandshakeReport r);

  // ------------------------------------------------------------ mesh
  void check_mesh();
  void finish() {
    auto d = std::move(done);
    if (node) node->stop();
    if (d) d(std::move(report));
  }
};

void Doctor::Impl::on_probe(std::size_t i, dist::HandshakeReport r) {
  Peer& p = peers[i];
  std::string where = p.ip + ":" + std::to_string(p.port);
  std::string why = r.outcome ? std::string() : r.outcome.error().message;
  if (!r.tcp_connected) {
    peer_check(i, "dist.port_reachable", Status::fail, why,
               "the node registered port " + std::to_string(p.port) +
                   " but nothing accepts there: a firewall drops the distribution ports, or the "
                   "node is hung");
    return stop_peer(i, "dist.port_reachable");
  }
  peer_check(i, "dist.port_reachable", Status::pass, "connected to " + where);
  const auto& peer = r.peer;
  if (peer.status.empty() || (peer.status != "ok" && peer.status != "ok_simultaneous")) {
    peer_check(i, "handshake.status", Status::fail,
               peer.status.empty() ? why : "the peer answered '" + peer.status + "': " + why,
               "see the finding; the peer's log says more ('** Connection attempt ...')");
    return stop_peer(i, "handshake.status");
  }
  peer_check(i, "handshake.status", Status::pass, "status " + peer.status);
  if (r.name_mismatch) {
    peer_check(
        i, "handshake.name", Status::fail,
        "it calls itself " + peer.peer_name + ", but discovery dials " + p.alive + "@" + p.ip,
        r.name_mismatch_message.empty()
            ? "start the pods with NODE_HOST set to the pod IP (status.podIP)"
            : r.name_mismatch_message);
    return stop_peer(i, "handshake.name");
  }
  if (peer.challenge_received)
    peer_check(i, "handshake.name", Status::pass, "it calls itself " + peer.peer_name);
  if (!peer.missing_mandatory.empty()) {
    std::string missing;
    for (auto& f : peer.missing_mandatory) missing += (missing.empty() ? "" : ", ") + f;
    peer_check(
        i, "handshake.version", Status::fail,
        "version " + std::to_string(peer.peer_version) + ", missing mandatory flags " + missing,
        peer.peer_version == 5 ? "the peer lacks flags every Erlang node since R13 has: it is "
                                 "not a usable OTP node"
                               : "beamlink needs OTP 23 or newer on the peers (or OTP 21/22 "
                                 "speaking version 5)");
    return stop_peer(i, "handshake.version");
  }
  if (peer.challenge_received)
    peer_check(i, "handshake.version", Status::pass,
               "version " + std::to_string(peer.peer_version) + ", " + peer.otp.text);
  if (!r.outcome) {
    std::string id = peer.challenge_received ? "handshake.cookie" : "handshake.status";
    std::string fix =
        r.outcome.error().code == Errc::cookie_rejected
            ? "give every node the same cookie (compare fingerprints: `beamlink doctor` prints "
              "this side's)"
            : "see the finding";
    peer_check(i, id, Status::fail, why, fix);
    return stop_peer(i, id);
  }
  peer_check(i, "handshake.cookie", Status::pass,
             "the cookies match (each side verified the other's digest)");
  p.handshake_ok = true;
  flush_peer(i);
  peer_done();
}

void Doctor::Impl::check_mesh() {
  std::vector<std::size_t> ok;
  for (std::size_t i = 0; i < peers.size(); ++i)
    if (peers[i].handshake_ok) ok.push_back(i);
  if (ok.empty()) return finish();
  dist::NodeConfig nc;
  // The auto-made name differs from the probe's: a pod that still holds the
  // probe's connection under a name may refuse a second one from it.
  nc.name = opt.rpc_name.empty() ? opt.our_name : opt.rpc_name;
  nc.cookie = opt.cookie;
  nc.publish = false;
  nc.epmd_port = opt.epmd_port;
  nc.connect_timeout = opt.timeout * 2;
  node = std::make_unique<dist::Node>(loop, nc);
  struct View {
    bool ok = false;
    std::set<std::string> sees;
    std::string ticktime;
    std::map<std::string, int> pool;  // pubsub -> groups found
    bool scope = true;
    std::string error;
  };
  auto views = std::make_shared<std::map<std::size_t, View>>();
  auto left = std::make_shared<std::size_t>(ok.size());
  auto a = alive.watch();
  auto conclude = [this, views, ok]() {
    // Connectivity matrix over the peers that answered.
    std::set<std::string> answered;
    for (auto& [i, v] : *views)
      if (v.ok) answered.insert(peers[i].node);
    std::map<std::string, std::vector<std::string>> ticktimes;
    for (auto i : ok) {
      auto& v = (*views)[i];
      const std::string& me = peers[i].node;
      if (!v.ok) {
        add("mesh.visibility", me, Status::fail, "rpc failed: " + v.error,
            "check that rex runs on the node and that it is not overloaded");
        continue;
      }
      std::vector<std::string> missing;
      for (auto& other : answered)
        if (other != me && !v.sees.count(other)) missing.push_back(other);
      if (missing.empty()) {
        add("mesh.visibility", me, Status::pass,
            "sees all " + std::to_string(answered.size() - 1) + " other reachable peer(s)");
      } else {
        std::string m;
        for (auto& x : missing) m += (m.empty() ? "" : ", ") + x;
        add("mesh.visibility", me, Status::fail, "does not see " + m + " (a partition)",
            "check the network between them (both ways, epmd 4369 and the distribution ports) "
            "and that their discovery finds each other");
      }
      ticktimes[v.ticktime].push_back(me);
    }
    if (ticktimes.size() > 1) {
      std::string m;
      for (auto& [t, nodes] : ticktimes) {
        m += (m.empty() ? "" : "; ") + t + " s on ";
        for (std::size_t k = 0; k < nodes.size(); ++k) m += (k ? ", " : "") + nodes[k];
      }
      add("mesh.ticktime", "the cluster", Status::warn, "net_ticktime differs: " + m,
          "start every node with the same -kernel net_ticktime (and beamlink with NET_TICKTIME)");
    } else if (ticktimes.size() == 1) {
      add("mesh.ticktime", "the cluster", Status::pass,
          "every reachable node has net_ticktime " + ticktimes.begin()->first + " s");
    }
    for (auto& name : opt.pubsub) {
      std::map<int, std::vector<std::string>> sizes;
      for (auto i : ok) {
        auto& v = (*views)[i];
        if (!v.ok) continue;
        if (!v.scope) {
          add("pubsub.scope", peers[i].node, Status::fail,
              "no pg scope '" + opt.pg_scope + "' on " + peers[i].node,
              "Phoenix.PubSub 2.x is not started there (for 1.1, look for its PG2Server)");
          continue;
        }
        sizes[v.pool[name]].push_back(peers[i].node);
      }
      if (sizes.size() == 1) {
        int n = sizes.begin()->first;
        add("pubsub.pool_size", name, n > 0 ? Status::pass : Status::fail,
            n > 0 ? "pool size " + std::to_string(n) + " on every node"
                  : "no group of " + name + " on any node",
            n > 0 ? "" : "is the pubsub named " + name + " and started on the nodes?");
      } else if (sizes.size() > 1) {
        std::string m;
        for (auto& [n, nodes] : sizes) {
          m += (m.empty() ? "" : "; ") + std::to_string(n) + " on ";
          for (std::size_t k = 0; k < nodes.size(); ++k) m += (k ? ", " : "") + nodes[k];
        }
        add("pubsub.pool_size", name, Status::fail, "pool sizes differ: " + m,
            "give " + name +
                " the same pool_size on every node: a broadcast picks one group by "
                "hash and is lost on nodes whose pool lacks it");
      }
    }
    finish();
  };
  auto rpc_atoms = [](const dist::RpcReply& r, std::set<std::string>& out) {
    auto in = term::TermReader::from_external({r.term.data(), r.term.size()});
    if (!in) return;
    auto n = in->read_list_header();
    if (!n) return;
    for (int k = 0; k < *n; ++k) {
      if (auto atom = in->read_atom())
        out.insert(*atom);
      else
        (void)in->skip();
    }
  };
  auto started = node->start([](Result<void>) {});
  (void)started;
  for (auto i : ok) {
    std::string target = peers[i].node;
    auto on_connected = [this, i, target, views, left, conclude, rpc_atoms, a](Result<void> c) {
      if (!a) return;
      auto step_done = [left, conclude]() {
        if (--*left == 0) conclude();
      };
      if (!c) {
        (*views)[i].error = c.error().message;
        return step_done();
      }
      term::TermWriter none;
      none.nil();
      node->rpc(
          target, "erlang", "nodes", none.bytes(), opt.timeout * 2,
          [this, i, target, views, step_done, rpc_atoms, a](Result<dist::RpcReply> r) {
            if (!a) return;
            if (!r) {
              (*views)[i].error = r.error().message;
              return step_done();
            }
            (*views)[i].ok = true;
            rpc_atoms(*r, (*views)[i].sees);
            term::TermWriter none2;
            none2.nil();
            node->rpc(
                target, "net_kernel", "get_net_ticktime", none2.bytes(), opt.timeout * 2,
                [this, i, target, views, step_done, a](Result<dist::RpcReply> t) {
                  if (!a) return;
                  if (t) {
                    auto in = term::TermReader::from_external({t->term.data(), t->term.size()});
                    if (auto txt = term::format_term(*in)) (*views)[i].ticktime = *txt;
                  }
                  if (opt.pubsub.empty()) return step_done();
                  // pg's table holds {Group, AllMembers, LocalMembers};
                  // which_groups would also list groups whose members
                  // are all remote (pg syncs them), hiding the local pool.
                  term::TermWriter args;
                  args.list(1).atom(opt.pg_scope).nil();
                  node->rpc(
                      target, "ets", "tab2list", args.bytes(), opt.timeout * 2,
                      [this, i, views, step_done, a](Result<dist::RpcReply> g) {
                        if (!a) return;
                        if (!g) {
                          (*views)[i].scope = false;
                          return step_done();
                        }
                        std::set<std::string> groups;
                        auto in = term::TermReader::from_external({g->term.data(), g->term.size()});
                        auto n = in->read_list_header();
                        for (int k = 0; n && k < *n; ++k) {
                          auto arity = in->read_tuple_header();
                          if (!arity || *arity != 3) break;
                          std::string group;
                          if (in->next_is_atom()) {
                            auto atom = in->read_atom();
                            if (!atom) break;
                            group = *atom;
                          } else if (!in->skip()) {
                            break;
                          }
                          if (!in->skip()) break;  // all members
                          auto local = in->read_list_header();
                          if (!local) break;
                          if (*local > 0) groups.insert(group);
                          for (int e = 0; e < *local; ++e) (void)in->skip();
                          if (*local > 0) (void)in->skip();  // the tail
                        }
                        for (auto& name : opt.pubsub) {
                          std::string base = "Elixir." + name + ".Adapter";
                          int count = 0;
                          for (auto& grp : groups)
                            if (grp == base || grp.rfind(base + "_", 0) == 0) ++count;
                          (*views)[i].pool[name] = count;
                        }
                        step_done();
                      });
                });
          });
    };
    // A pod may hold the probe's connection under our name for a moment and
    // refuse this one: a second try 250 ms later before it counts.
    node->connect(target, [this, target, on_connected, a](Result<void> c) {
      if (!a) return;
      if (c) return on_connected(std::move(c));
      defer(
          loop, a, [this, target, on_connected] { node->connect(target, on_connected); }, 250);
    });
  }
}

std::vector<CmdlineCookie> cookies_on_command_lines() {
  std::vector<CmdlineCookie> out;
  namespace fs = std::filesystem;
  std::error_code ec;
  auto own_ns = fs::read_symlink("/proc/self/ns/net", ec);
  if (ec) return out;
  for (auto& entry : fs::directory_iterator("/proc", ec)) {
    const std::string name = entry.path().filename().string();
    if (name.empty() || name.find_first_not_of("0123456789") != std::string::npos) continue;
    std::error_code e2;
    if (fs::read_symlink(entry.path() / "ns" / "net", e2) != own_ns || e2) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::vector<std::string> argv;
    for (std::string arg; std::getline(in, arg, '\0');) argv.push_back(arg);
    if (argv.empty() || argv[0].find("beam") == std::string::npos) continue;
    bool has_cookie = false;
    std::string node = "?";
    for (std::size_t k = 0; k + 1 < argv.size(); ++k) {
      if (argv[k] == "-setcookie") has_cookie = true;
      if (argv[k] == "-name" || argv[k] == "-sname") node = argv[k + 1];
    }
    if (has_cookie) out.push_back(CmdlineCookie{std::stoi(name), node});
  }
  return out;
}

Doctor::Doctor(uv_loop_t* loop, Options options) : impl_(new Impl) {
  impl_->loop = loop;
  impl_->opt = std::move(options);
}

Doctor::~Doctor() {
  if (impl_->node) impl_->node->stop();
}

void Doctor::run(std::function<void(Report)> done) {
  impl_->done = std::move(done);
  // Start on the next loop iteration, so `done` never runs inside run();
  // nothing starts if the Doctor is destroyed first.
  defer(impl_->loop, impl_->alive.watch(), [impl = impl_.get()] { impl->start(); });
}

}  // namespace beamlink::doctor
