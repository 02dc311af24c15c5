// `beamlink broadcast TOPIC EVENT JSON`: one channel broadcast into the
// cluster from the command line, through the relay's own path (ClusterHub
// and Delivery over the PubSub bridges), for scripts and debugging.
//
// A hidden client node (neither listening nor registered) joins the pg scope,
// connects to the --connect nodes and to NODE_DNS's peers (one DNS poll; each
// dial bounded by half the timeout, so one dead address in DNS does not sink
// the rest), waits until every connected node's pubsubs are known (or the
// timeout), sends one forward_to_local per node per pubsub, and exits once
// every send was written to its socket (a budget of its own). Exit 0: written to every node that
// has the pubsub; 1: none had it, a send was not written, or nothing connected; 2: usage.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <set>

#include "commands.hpp"
#include "common/uv_handle.hpp"
#include "common/uv_util.hpp"
#include "discovery/dns_poller.hpp"
#include "pubsub/beamlink_finder.hpp"
#include "pubsub/pg_scope.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "relay/cluster_hub.hpp"

namespace beamlink::app {

namespace {

// What the command does, step by step, on the loop.
struct Broadcast {
  Broadcast(const Config& c, const BroadcastCmdOptions& o, std::vector<pubsub::PubSubOptions> p,
            uv_loop_t* l, dist::Node& n)
      : cfg(c), opts(o), pubsubs(std::move(p)), loop(l), node(n) {}
  const Config& cfg;
  const BroadcastCmdOptions& opts;
  std::vector<pubsub::PubSubOptions> pubsubs;
  uv_loop_t* loop;
  dist::Node& node;
  std::unique_ptr<discovery::DnsPoller> poller;
  std::unique_ptr<pubsub::PgScope> scope;
  std::vector<std::unique_ptr<pubsub::PubSubBridge>> bridges;
  std::unique_ptr<relay::Delivery> delivery;
  std::unique_ptr<relay::ClusterHub> hub;
  std::set<std::string> pending;  // connects not answered yet
  std::vector<std::string> connected;
  UvHandle<uv_timer_t> timer;  // the phase check, every 10 ms
  std::uint64_t deadline = 0;  // of the current phase
  // Other beamlinks (relays, sidecars, subscribe) found through the pods:
  // a broadcast reaches their subscribers too, as a pure Elixir member's does.
  std::unique_ptr<pubsub::BeamlinkFinder> finder;
  enum class Phase {
    connecting,
    syncing,
    finding,  // asking the pods for the other beamlinks, then connecting to them
    joining,  // until their scopes said which groups they have
    writing,
    done
  } phase = Phase::connecting;
  int code = 1;

  void finish(int c) {
    if (phase == Phase::done) return;
    phase = Phase::done;
    code = c;
    if (poller) poller->stop();
    if (finder) finder->stop();
    timer.reset();
    on_next_tick(loop, [this] {
      finder.reset();
      hub.reset();
      delivery.reset();
      bridges.clear();
      scope.reset();
      node.stop();
    });
  }

  void start() {
    (void)timer.init(loop, this, uv_timer_init);  // cannot fail for a timer
    if (!make_bridges()) return finish(1);
    deadline = uv_now(loop) + static_cast<std::uint64_t>(opts.timeout_ms);
    // Checked every 10 ms: the phases wait on conditions of several sources.
    uv_timer_start(
        timer.get(), [](uv_timer_t* t) { static_cast<Broadcast*>(t->data)->tick(); }, 10, 10);
    for (auto& n : opts.connect) dial(n);
    if (!cfg.dns.empty()) {
      auto po = dns_poller_options(cfg, node.name());
      auto made = discovery::DnsPoller::create(loop, po, [this](const auto& ev) {
        using Kind = discovery::DnsPoller::Event::Kind;
        if (ev.kind == Kind::changed) {
          for (auto& p : ev.diff.added) dial(p);
        } else if (ev.kind == Kind::failing) {
          std::fprintf(stderr, "beamlink: %s\n", ev.error.message.c_str());
        }
        pending.erase("$dns");
        poller->stop();
      });
      if (!made) {
        std::fprintf(stderr, "beamlink: %s\n", made.error().message.c_str());
        return finish(2);
      }
      poller = std::move(made).value();
      pending.insert("$dns");
      poller->start();
    }
    if (pending.empty()) {
      std::fprintf(stderr, "beamlink: no node to broadcast to: set NODE_DNS or --connect\n");
      finish(2);
    }
  }

  // Starts one poll of the pods for the hidden members of the 2.x pubsubs'
  // groups (pubsub::BeamlinkFinder). False when there is nothing to ask.
  bool find_beamlinks() {
    pubsub::BeamlinkFinderOptions fo;
    fo.scope = opts.pg_scope;
    fo.groups = pubsub::finder_groups(pubsubs);
    if (fo.groups.empty()) return false;
    fo.interval = std::chrono::hours(1);  // one poll: this command is over long before
    std::set<std::string> pods(connected.begin(), connected.end());
    finder = std::make_unique<pubsub::BeamlinkFinder>(
        node, fo, [pods](const std::string& n) { return pods.count(n) != 0; },
        [](const pubsub::BeamlinkFinder::Diff&) {});
    if (auto r = finder->start(); !r) {
      std::fprintf(stderr, "beamlink: not looking for other beamlinks: %s\n",
                   r.error().message.c_str());
      return false;
    }
    return true;
  }

  // This node is not published: it dials every beamlink it finds.
  void dial_beamlink(const std::string& peer) {
    if (!pending.insert(peer).second) return;
    node.connect(peer, [this, peer](Result<void> r) {
      if (phase != Phase::joining) return;
      pending.erase(peer);
      if (r) {
        connected.push_back(peer);
      } else {
        std::fprintf(stderr,
                     "beamlink: beamlink %s cannot be reached, its subscribers miss this "
                     "broadcast: %s\n",
                     peer.c_str(), r.error().message.c_str());
      }
    });
  }

  void dial(const std::string& peer) {
    if (!pending.insert(peer).second) return;
    node.connect(peer, [this, peer](Result<void> r) {
      if (phase != Phase::connecting) return;
      pending.erase(peer);
      if (r)
        connected.push_back(peer);
      else
        std::fprintf(stderr, "beamlink: %s\n", r.error().message.c_str());
    });
  }

  // Every connected node has told which pubsubs it runs (2.x: its scope's
  // groups; automatic: the registered() probe answered).
  bool synced() const {
    for (auto& n : connected)
      for (auto& b : bridges)
        if (!b->knows(n)) return false;
    return true;
  }

  void tick() {
    bool late = uv_now(loop) >= deadline;
    switch (phase) {
      case Phase::connecting:
        if (!pending.empty() && !late) return;
        if (connected.empty()) {
          std::fprintf(stderr, "beamlink: connected to no node\n");
          return finish(1);
        }
        phase = Phase::syncing;
        return;
      case Phase::syncing:
        if (!synced() && !late) return;
        if (late || !find_beamlinks()) return send();
        phase = Phase::finding;
        return;
      case Phase::finding:
        if (finder->polls_completed() == 0 && !late) return;
        for (auto& b : finder->found()) dial_beamlink(b);
        phase = Phase::joining;
        return;
      case Phase::joining: {
        bool joined = pending.empty() && synced();
        if (!joined && !late) return;
        return send();
      }
      case Phase::writing: {
        auto depths = delivery->depths();
        if (!depths.empty() && !late) return;
        for (auto& [n, d] : depths)
          std::fprintf(stderr, "beamlink: %zu message(s) to %s not written in time\n", d,
                       n.c_str());
        if (depths.empty()) {
          std::printf("broadcast %s %s: %zu message(s) written (one per node per pubsub)\n",
                      opts.topic.c_str(), opts.event.c_str(),
                      static_cast<std::size_t>(delivery->stats().delivered));
          std::fflush(stdout);
        }
        return finish(depths.empty() ? 0 : 1);
      }
      case Phase::done:
        return;
    }
  }

  bool make_bridges() {
    pubsub::PgScopeOptions so;
    so.scope = opts.pg_scope;
    auto s = pubsub::PgScope::create(node, so);
    if (!s) {
      std::fprintf(stderr, "beamlink: %s\n", s.error().message.c_str());
      return false;
    }
    scope = std::move(s).value();
    for (auto& po : pubsubs) {
      auto b = pubsub::PubSubBridge::create(node, *scope, po);
      if (!b) {
        std::fprintf(stderr, "beamlink: %s: %s\n", po.name.c_str(), b.error().message.c_str());
        return false;
      }
      bridges.push_back(std::move(b).value());
    }
    delivery = std::make_unique<relay::Delivery>(node);
    std::vector<pubsub::PubSubBridge*> raw;
    for (auto& b : bridges) raw.push_back(b.get());
    term::JsonTermOptions jo;
    jo.atom_keys = opts.atom_keys;
    jo.atom_value_keys = opts.atom_values;
    hub = std::make_unique<relay::ClusterHub>(*delivery, raw, jo);
    return true;
  }

  void send() {
    for (auto& n : connected) {
      bool known = std::any_of(bridges.begin(), bridges.end(), [&](auto& b) {
        auto ns = b->nodes();
        return std::find(ns.begin(), ns.end(), n) != ns.end();
      });
      bool heard =
          std::all_of(bridges.begin(), bridges.end(), [&](auto& b) { return b->knows(n); });
      if (!known)
        std::fprintf(stderr, "beamlink: %s %s\n", n.c_str(),
                     heard ? "runs none of the pubsubs"
                           : "did not tell which pubsubs it runs within the timeout");
    }
    auto r = hub->publish(opts.topic, opts.event, opts.payload);
    if (!r) {
      std::fprintf(stderr, "beamlink: %s\n", r.error().message.c_str());
      auto why = r.error().code;
      return finish(why == Errc::invalid_argument || why == Errc::bad_json ? 2 : 1);
    }
    phase = Phase::writing;
    deadline = uv_now(loop) + static_cast<std::uint64_t>(opts.timeout_ms);
  }
};

}  // namespace

int cmd_broadcast(const Config& cfg, const BroadcastCmdOptions& opts) {
  auto parsed = parse_pubsub_entries(opts.pubsub);
  if (!parsed) {
    std::fprintf(stderr, "beamlink: %s\n", parsed.error().message.c_str());
    return 2;
  }
  auto pubsubs = std::move(parsed).value();
  auto nc = make_node_config(cfg, false);
  if (!nc) {
    std::fprintf(stderr, "beamlink: %s\n", nc.error().message.c_str());
    return 2;
  }
  nc->connect_timeout = std::chrono::milliseconds(std::max(500, opts.timeout_ms / 2));
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 1;
  {
    dist::Node node(&loop, *nc);
    Broadcast b(cfg, opts, pubsubs, &loop, node);
    auto started = node.start([&](Result<void> r) {
      if (!r) {
        std::fprintf(stderr, "beamlink: %s\n", r.error().message.c_str());
        b.phase = Broadcast::Phase::done;
        return on_next_tick(&loop, [&] { node.stop(); });
      }
      b.start();
    });
    if (!started) {
      std::fprintf(stderr, "beamlink: %s\n", started.error().message.c_str());
      return 2;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    code = b.code;
  }
  drain_and_close(&loop);
  return code;
}

}  // namespace beamlink::app
