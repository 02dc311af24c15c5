// `beamlink run`: join and stay. Registers with epmd, keeps the nodes given
// with --connect and the peers NODE_DNS names connected (discovery::DnsPoller
// feeding dist::PeerManager), accepts inbound connections, and on
// SIGINT/SIGTERM closes every connection and unregisters.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <ctime>
#include <optional>

#include "commands.hpp"
#include "common/heap_trim.hpp"
#include "common/log_event.hpp"
#include "common/metrics.hpp"
#include "common/uv_handle.hpp"
#include "common/uv_util.hpp"
#include "discovery/dns_poller.hpp"
#include "dist/peer_manager.hpp"
#include "pubsub/beamlink_finder.hpp"
#include "pubsub/pg_scope.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "relay/gateway.hpp"
#include "relay/http_server.hpp"
#include "term/term_json.hpp"

namespace beamlink::app {
namespace {

struct StopCtx {
  dist::Node* node;
  dist::PeerManager* peers;
  discovery::DnsPoller* poller;
  std::array<UvHandle<uv_signal_t>, 2> sigs{};  // SIGINT, SIGTERM
  relay::Gateway* gateway = nullptr;
  relay::HttpServer* metrics = nullptr;  // METRICS_LISTEN's listener
  std::chrono::milliseconds drain_limit{5000};
  UvHandle<uv_timer_t> drain{};  // checks the drain every 10 ms while stopping
  std::uint64_t drain_deadline = 0;
  bool stopping = false;
  std::unique_ptr<pubsub::BeamlinkFinder>* finder = nullptr;  // made once the node is up
};

std::size_t queued_messages(const StopCtx* ctx) {
  std::size_t n = 0;
  if (ctx->gateway)
    for (auto& [node, d] : ctx->gateway->delivery().depths()) n += d;
  return n;
}

// Closes every connection and handle: the loop then ends.
void stop_now(StopCtx* ctx) {
  if (ctx->gateway) ctx->gateway->close();
  if (ctx->metrics) ctx->metrics->close();
  if (ctx->poller) ctx->poller->stop();
  if (ctx->finder && *ctx->finder) (*ctx->finder)->stop();
  ctx->peers->stop();
  ctx->drain.reset();
  ctx->node->stop();
  for (auto& s : ctx->sigs) s.reset();
}

// SIGTERM: stop taking broadcasts (the listener closes) and discovering,
// let the connections write what the relay already accepted (a rolling
// restart must not drop what it answered 202 to), then stop. Bounded by
// drain_limit; a second signal stops at once.
void stop_gracefully(StopCtx* ctx, uv_loop_t* loop) {
  if (ctx->stopping) return stop_now(ctx);
  ctx->stopping = true;
  if (ctx->gateway) ctx->gateway->close();
  if (ctx->poller) ctx->poller->stop();
  if (ctx->finder && *ctx->finder) (*ctx->finder)->stop();
  ctx->peers->stop();
  auto left = queued_messages(ctx);
  if (left == 0 || ctx->node->connected_nodes().empty()) return stop_now(ctx);
  spdlog::info(
      "writing {} accepted message(s) before stopping (at most {} ms; signal again to "
      "stop now)",
      left, ctx->drain_limit.count());
  ctx->drain_deadline = uv_now(loop) + static_cast<std::uint64_t>(ctx->drain_limit.count());
  (void)ctx->drain.init(loop, ctx, uv_timer_init);  // cannot fail for a timer
  uv_timer_start(
      ctx->drain.get(),
      [](uv_timer_t* t) {
        auto* c = static_cast<StopCtx*>(t->data);
        auto n = queued_messages(c);
        bool late = uv_now(t->loop) >= c->drain_deadline;
        if (n != 0 && !late && !c->node->connected_nodes().empty()) return;
        if (n != 0) spdlog::error("stopping with {} accepted message(s) not written", n);
        stop_now(c);
      },
      10, 10);
}

Result<std::string> read_token_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (!f) return make_error(Errc::io_error, "cannot read the relay token file " + path);
  std::string token;
  char buf[512];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) token.append(buf, n);
  std::fclose(f);
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' || token.back() == ' '))
    token.pop_back();
  if (token.empty())
    return make_error(Errc::invalid_argument, "the relay token file " + path + " is empty");
  return token;
}

// Why METRICS_LISTEN's listener could not listen, naming the setting.
std::string metrics_listen_error(const relay::ListenAddress& a, const Error& e) {
  std::string where = a.host + ":" + std::to_string(a.port);
  if (e.code == Errc::already_exists)
    return "metrics cannot listen on " + where + ": address in use — choose another METRICS_LISTEN";
  if (e.domain == ErrorDomain::uv)
    return "metrics cannot listen on " + where + ": " + uv_strerror(e.source);
  return "metrics cannot listen on " + where + ": " + e.message;
}

}  // namespace

int cmd_run(const Config& cfg, const RunOptions& opts) {
  // watch: a hidden client that neither listens nor registers, printing
  // membership changes on stdout as they happen.
  const bool subscribing = !opts.subscribe_topics.empty();
  auto nc = make_node_config(cfg, !opts.watch && !subscribing);
  if (!nc) {
    std::fprintf(stderr, "beamlink: %s\n", nc.error().message.c_str());
    return 2;
  }
  auto parsed = parse_pubsub_entries(opts.pubsub);
  if (!parsed) {
    std::fprintf(stderr, "beamlink: %s\n", parsed.error().message.c_str());
    return 2;
  }
  auto pubsubs = std::move(parsed).value();
  // The relay: run only (watch and subscribe are one-off clients).
  const bool relaying = !opts.watch && !subscribing && opts.relay_listen != "off";
  relay::GatewayOptions go;
  if (relaying) {
    auto addr = relay::parse_listen_address(opts.relay_listen);
    if (!addr) {
      std::fprintf(stderr, "beamlink: RELAY_LISTEN: %s\n", addr.error().message.c_str());
      return 2;
    }
    go.listen = *addr;
    go.token = opts.relay_token;
    if (!opts.relay_token_file.empty()) {
      auto t = read_token_file(opts.relay_token_file);
      if (!t) {
        std::fprintf(stderr, "beamlink: %s\n", t.error().message.c_str());
        return 2;
      }
      go.token = *t;
    }
    go.limits.max_body = opts.relay_max_body;
    go.broadcast.json.max_size = opts.relay_max_body;
    go.broadcast.json.atom_keys = opts.relay_atom_keys;
    go.broadcast.json.atom_value_keys = opts.relay_atom_values;
    go.delivery.max_queue = opts.relay_queue;
    go.delivery.max_queue_bytes = opts.relay_queue_bytes;
    go.delivery.ttl = std::chrono::milliseconds(opts.relay_ttl_ms);
    go.max_connections = opts.relay_max_connections;
    go.channels.max_sockets = opts.relay_max_websockets;
    if (go.token.empty() && !relay::is_loopback(go.listen.host)) {
      std::fprintf(stderr, "beamlink: relay: %s\n",
                   relay::insecure_listen_error(go.listen).message.c_str());
      return 2;
    }
  }
  // GET /metrics on a listener of its own: run only, like the relay.
  std::optional<relay::ListenAddress> metrics_at;
  if (!opts.watch && !subscribing && opts.metrics_listen != "off") {
    auto addr = relay::parse_listen_address(opts.metrics_listen);
    if (!addr) {
      std::fprintf(stderr, "beamlink: METRICS_LISTEN: %s\n", addr.error().message.c_str());
      return 2;
    }
    metrics_at = *addr;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 0;
  {
    dist::Node node(&loop, *nc);
    dist::PeerManager peers(node);
    // subscribe: a pg scope and a PubSub bridge per --pubsub, created once
    // the node is up; destroyed before the node (declared after it).
    std::unique_ptr<pubsub::PgScope> scope;
    std::vector<std::unique_ptr<pubsub::PubSubBridge>> bridges;
    std::vector<Subscription> printed_topics;  // subscribe's printers, per bridge and topic
    // The other beamlinks of the cluster, found through the pods' pg groups.
    std::unique_ptr<pubsub::BeamlinkFinder> finder;
    // The relay, destroyed before the bridges it uses.
    std::unique_ptr<relay::Gateway> gateway;
    // METRICS_LISTEN's listener, destroyed before everything it reports on.
    std::unique_ptr<relay::HttpServer> metrics;
    std::string dns_last;  // the last poll's outcome, for /healthz
    // An event: a log line for run (with its fields for LOG_FORMAT=json), a
    // timestamped stdout line for watch.
    auto say = [&](spdlog::level::level_enum level, const char* tag, const std::string& text,
                   const LogFields& fields) {
      if (!opts.watch) return log_event(level, fields, "{}", text);
      uv_timeval64_t tv;
      uv_gettimeofday(&tv);
      std::time_t secs = static_cast<std::time_t>(tv.tv_sec);
      std::tm tm{};
      gmtime_r(&secs, &tm);
      std::printf("%02d:%02d:%02d.%03d %-9s %s\n", tm.tm_hour, tm.tm_min, tm.tm_sec,
                  static_cast<int>(tv.tv_usec / 1000), tag, text.c_str());
      std::fflush(stdout);
    };
    std::unique_ptr<discovery::DnsPoller> poller;
    if (!cfg.dns.empty()) {
      auto po = dns_poller_options(cfg, node.name());
      po.interval = std::chrono::seconds(cfg.poll_interval);
      // c-ares's defaults (5 s, doubling, 4 tries) would make one failing
      // poll outlast many intervals. A quarter of the interval for the first
      // try, doubled for the second: a lost packet costs a fraction of a
      // poll, a dead server at most 3/4 of one (3 s at 5 s). Within 500 ms
      // to 1 s: a busy node's DNS server can take a few hundred ms, and a
      // short POLL_INTERVAL must not turn that into failed polls.
      po.resolver.timeout =
          std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(po.interval) / 4,
                     std::chrono::milliseconds(500), std::chrono::milliseconds(1000));
      po.resolver.tries = 2;
      auto made =
          discovery::DnsPoller::create(&loop, po, [&](const discovery::DnsPoller::Event& ev) {
            using Kind = discovery::DnsPoller::Event::Kind;
            if (ev.kind == Kind::failing)
              dns_last = "DNS " + cfg.dns + ": " + ev.error.message;
            else if (ev.kind == Kind::skipped)
              dns_last = "DNS " + cfg.dns + ": " + ev.skipped.message;
            else if (poller)
              dns_last = "DNS " + cfg.dns + ": " + std::to_string(poller->peers().size()) +
                         " peer(s), none connected yet";
            switch (ev.kind) {
              case Kind::changed:
                for (auto& p : ev.diff.added) {
                  say(spdlog::level::info, "dns+", "discovered " + p, {"discovered", p, cfg.dns});
                  peers.add(p);
                }
                for (auto& p : ev.diff.removed) {
                  say(spdlog::level::info, "dns-", p + " left " + cfg.dns,
                      {"left DNS", p, cfg.dns});
                  peers.remove(p);
                }
                break;
              case Kind::ok:
                say(spdlog::level::info, "dns",
                    cfg.dns + ": " + std::to_string(ev.peers) + " peer(s)",
                    {"DNS poll", {}, std::to_string(ev.peers) + " peer(s)"});
                break;
              case Kind::failing:
                say(spdlog::level::warn, "dns!",
                    ev.error.message + " (keeping the " +
                        std::to_string(poller ? poller->peers().size() : 0) + " known peer(s))",
                    {"DNS poll failed", {}, ev.error.message});
                break;
              case Kind::skipped:
                say(spdlog::level::info, "dns", cfg.dns + ": " + ev.skipped.message,
                    {"DNS poll skipped", {}, ev.skipped.message});
                break;
            }
          });
      if (!made) {
        std::fprintf(stderr, "beamlink: %s\n", made.error().message.c_str());
        return 2;
      }
      poller = std::move(made).value();
    }
    // watch prints membership; run's log already has both, from the node
    // ("connected to NODE (outbound)", "connection to NODE closed: why") and
    // the PeerManager.
    Subscription up_said, down_said;
    if (opts.watch) {
      up_said = node.on_node_up([&](const std::string& n) {
        say(spdlog::level::info, "up", n, {"up", n, {}});
      });
      down_said = node.on_node_down([&](const std::string& n, const Error& why) {
        if (why.code != Errc::shutting_down)
          say(spdlog::level::warn, "down", n + ": " + why.message, {"down", n, why.message});
      });
    }

    // Readiness at start (/readyz), beyond "a connected node has the pubsub":
    // a relay started, or restarted behind a Service, must not answer 202
    // for a broadcast that reaches only the part of the cluster it has found
    // so far (the pods it has not connected yet, the other beamlinks it has
    // not found: their subscribers would never get it). So it is ready once
    //   - DNS has answered and every peer it names (and every --connect
    //     node) is connected, or has failed to connect at least once (a dead
    //     address left in DNS must not hold it back);
    //   - the beamlink finder has completed a poll that began after that;
    //   - every beamlink found is connected and its pg scope is known (its
    //     groups' members are where a broadcast goes).
    // Checked on each /readyz until met, then no more: a pod or beamlink that
    // appears later does not take a serving relay out of its Service.
    struct StartupReadiness {
      bool met = false;
      bool marked = false;     // the finder was asked to poll once DNS was settled
      std::uint64_t mark = 0;  // polls_completed() that poll must exceed
    } startup;
    auto startup_not_ready = [&](StartupReadiness& st) -> std::string {
      if (st.met) return {};
      if (poller && poller->events_by_kind().empty())
        return "starting: waiting for the first DNS answer";
      std::map<std::string, int> failures;
      for (auto& p : peers.peers()) failures[p.node] = p.failures;
      std::vector<std::string> beams(opts.connect.begin(), opts.connect.end());
      if (poller) beams.insert(beams.end(), poller->peers().begin(), poller->peers().end());
      for (auto& n : beams)
        if (!node.is_connected(n) && failures[n] == 0)
          return "starting: connecting to " + n + " (found by DNS or --connect)";
      if (finder) {
        if (!st.marked) {
          st.marked = true;
          st.mark = finder->polls_completed() + (finder->polling() ? 1 : 0);
          finder->poll_now();
        }
        if (finder->polls_completed() <= st.mark)
          return std::string("starting: asking the pods for the other beamlinks");
        auto known = scope ? scope->nodes() : std::vector<std::string>{};
        for (auto& b : finder->found())
          if (!node.is_connected(b) || std::find(known.begin(), known.end(), b) == known.end())
            return "starting: connecting to beamlink " + b;
      }
      st.met = true;
      return {};
    };

    // A burst (a handshake flood, a pipelining client, a queue filled while
    // a node was away) leaves freed memory resident: give it back.
    HeapTrimmer trimmer(&loop);

    // What `run` itself reports besides the node and the relay.
    auto run_metrics = [&](MetricsWriter& m) {
      discovery::DnsPoller::write_metrics(m, poller.get());
      peers.write_metrics(m);
      m.gauge("beamlink_pubsub_bridges", "Phoenix.PubSub bridges.",
              static_cast<double>(bridges.size()));
      trimmer.write_metrics(m);
    };

    if (relaying) {
      gateway = std::make_unique<relay::Gateway>(&loop, node, go);
      gateway->expect_bridges(pubsubs.size());
      gateway->set_peer_hint([&]() -> std::string {
        if (!dns_last.empty()) return dns_last;
        if (cfg.dns.empty() && opts.connect.empty()) return "set NODE_DNS or --connect";
        return {};
      });
      gateway->add_metrics(run_metrics);
      gateway->set_readiness_check([&]() { return startup_not_ready(startup); });
      if (auto r = gateway->start(); !r) {
        // Nothing has started yet: free what was made and end.
        std::fprintf(stderr, "beamlink: relay: %s\n", r.error().message.c_str());
        gateway.reset();
        poller.reset();
        code = 2;
      } else {
        spdlog::info(
            "relay listening on http://{}:{} (POST /v1/broadcast, GET /healthz, GET /metrics){}",
            go.listen.host, gateway->port(), go.token.empty() ? "" : ", token required");
      }
    }
    if (code == 0 && metrics_at) {
      // The same text as the relay's GET /metrics when the relay runs.
      relay::Router router;
      router.add("GET", "/metrics", [&](const relay::Request&, relay::Responder res) {
        relay::Response r;
        r.content_type = std::string(MetricsWriter::content_type);
        if (gateway) {
          r.body = gateway->metrics_text();
        } else {
          MetricsWriter m;
          node.write_metrics(m);
          run_metrics(m);
          r.body = m.take();
        }
        res.respond(std::move(r));
      });
      relay::ServerOptions so;
      so.host = metrics_at->host;
      so.port = metrics_at->port;
      metrics = std::make_unique<relay::HttpServer>(
          &loop, so, [router = std::move(router)](const relay::Request& req, relay::Responder res) {
            router(req, res);
          });
      if (auto r = metrics->listen(); !r) {
        std::fprintf(stderr, "beamlink: %s\n",
                     metrics_listen_error(*metrics_at, r.error()).c_str());
        metrics.reset();
        gateway.reset();
        poller.reset();
        code = 2;
      } else {
        spdlog::info("metrics on http://{}:{}/metrics", metrics_at->host, metrics->port());
      }
    }
    if (code == 0) {  // else the relay could not listen: nothing else starts
      StopCtx stop_ctx{&node, &peers, poller.get(), {}, gateway.get(), metrics.get()};
      stop_ctx.finder = &finder;
      stop_ctx.drain_limit = std::min(std::chrono::milliseconds(5000), go.delivery.ttl);
      auto on_signal = [](uv_signal_t* s, int signum) {
        auto* ctx = static_cast<StopCtx*>(s->data);
        if (!ctx) return;
        spdlog::info("{}: closing connections and unregistering",
                     signum == SIGINT ? "SIGINT" : "SIGTERM");
        stop_gracefully(ctx, s->loop);
      };
      const int signums[2] = {SIGINT, SIGTERM};
      for (int i = 0; i < 2; ++i) {
        (void)stop_ctx.sigs[i].init(&loop, &stop_ctx, uv_signal_init);  // cannot fail
        uv_signal_start(stop_ctx.sigs[i].get(), on_signal, signums[i]);
      }

      auto started = node.start([&](Result<void> r) {
        if (!r) {
          std::fprintf(stderr, "beamlink: %s\n", r.error().message.c_str());
          code = 1;
          on_next_tick(&loop, [&] { stop_now(&stop_ctx); });
          return;
        }
        if (opts.watch || subscribing)
          std::fprintf(stderr, "beamlink: %s as %s (hidden, not registered); Ctrl-C to stop\n",
                       subscribing ? "subscribed" : "watching", node.name().c_str());
        else
          std::printf("beamlink: %s is up (distribution port %u, epmd port %u)\n",
                      node.name().c_str(), unsigned{node.listen_port()}, unsigned{nc->epmd_port});
        std::fflush(stdout);
        if (!pubsubs.empty()) {
          pubsub::PgScopeOptions so;
          so.scope = opts.pg_scope;
          auto made_scope = pubsub::PgScope::create(node, so);
          if (!made_scope) {
            std::fprintf(stderr, "beamlink: %s\n", made_scope.error().message.c_str());
            code = 1;
            return on_next_tick(&loop, [&] { stop_now(&stop_ctx); });
          }
          scope = std::move(made_scope).value();
          for (auto& po : pubsubs) {
            const std::string name = po.name;
            auto bridge = pubsub::PubSubBridge::create(node, *scope, po);
            if (!bridge) {
              std::fprintf(stderr, "beamlink: %s: %s\n", name.c_str(),
                           bridge.error().message.c_str());
              code = 1;
              return on_next_tick(&loop, [&] { stop_now(&stop_ctx); });
            }
            for (auto& topic : opts.subscribe_topics)
              printed_topics.push_back(
                  (*bridge)->subscribe(topic, [name](const pubsub::PubSubMessage& m) {
                    term::TermReader reader(m.message);
                    auto json = term::to_json(reader);
                    std::printf(
                        "{\"pubsub\":%s,\"topic\":%s,\"message\":%s}\n",
                        term::json_quote(name).c_str(), term::json_quote(m.topic).c_str(),
                        json ? json->c_str()
                             : term::json_quote("unprintable: " + json.error().message).c_str());
                    std::fflush(stdout);
                  }));
            if (gateway) gateway->add_bridge(bridge->get());
            bridges.push_back(std::move(bridge).value());
          }
        }
        for (auto& n : opts.connect) peers.add(n);
        if (poller) poller->start();
        if (!pubsubs.empty()) {
          // Other beamlinks (relays, sidecars, subscribe) are hidden: they
          // find each other through the hidden members of the pubsubs'
          // groups on the pods, then exchange pg membership like any peer.
          pubsub::BeamlinkFinderOptions fo;
          fo.scope = opts.pg_scope;
          fo.groups = pubsub::finder_groups(pubsubs);
          fo.interval = std::chrono::seconds(cfg.poll_interval);
          auto is_beam = [&](const std::string& n) {
            return (poller && poller->peers().count(n) != 0) ||
                   std::find(opts.connect.begin(), opts.connect.end(), n) != opts.connect.end();
          };
          const bool published = nc->publish;
          const std::string self = node.name();
          finder = std::make_unique<pubsub::BeamlinkFinder>(
              node, fo, is_beam, [&, published, self](const pubsub::BeamlinkFinder::Diff& d) {
                for (auto& b : d.added) {
                  // One side dials: a published beamlink dials those named
                  // before it; one that is not published (subscribe) cannot
                  // be dialled and dials every one.
                  bool dial = !published || b < self;
                  say(spdlog::level::info, "bl+",
                      "found beamlink " + b + (dial ? "; connecting" : "; it connects to us"),
                      {"beamlink found", b, dial ? "connecting" : "it connects to us"});
                  if (dial) peers.add(b);
                }
                for (auto& b : d.removed) {
                  say(spdlog::level::info, "bl-", "beamlink " + b + " left the pubsub's groups",
                      {"beamlink left", b, "left the pubsub's groups"});
                  peers.remove(b);
                }
              });
          if (auto fr = finder->start(); !fr)
            spdlog::warn("not looking for other beamlinks: {}", fr.error().message);
        }
      });
      if (!started) {
        std::fprintf(stderr, "beamlink: %s\n", started.error().message.c_str());
        stop_now(&stop_ctx);
        uv_run(&loop, UV_RUN_DEFAULT);
        code = 2;
      } else {
        uv_run(&loop, UV_RUN_DEFAULT);
      }
    }
  }
  drain_and_close(&loop);
  return code;
}

}  // namespace beamlink::app
