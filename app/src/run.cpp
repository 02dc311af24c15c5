// `beamlink run`: join and stay. Registers with epmd, keeps the nodes given
// with --connect and the peers NODE_DNS names connected (discovery::DnsPoller
// feeding cnode::PeerManager), accepts inbound connections, and on
// SIGINT/SIGTERM closes every connection and unregisters.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <ctime>

#include "cnode/peer_manager.hpp"
#include "cnode/pg_scope.hpp"
#include "cnode/pubsub_bridge.hpp"
#include "cnode/term_json.hpp"
#include "commands.hpp"
#include "discovery/dns_poller.hpp"

namespace beamlink::app {
namespace {

struct StopCtx {
  cnode::Node* node;
  cnode::PeerManager* peers;
  discovery::DnsPoller* poller;
  uv_signal_t* sigs[2];
};

void stop_all(StopCtx* ctx) {
  if (ctx->poller) ctx->poller->stop();
  ctx->peers->stop();
  ctx->node->stop();
  for (auto* s : ctx->sigs)
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(s)))
      uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
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
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 0;
  {
    cnode::Node node(&loop, *nc);
    cnode::PeerManager peers(node);
    // subscribe: a pg scope and a PubSub bridge per --pubsub, created once
    // the node is up; destroyed before the node (declared after it).
    std::unique_ptr<cnode::PgScope> scope;
    std::vector<std::unique_ptr<cnode::PubSubBridge>> bridges;
    // An event: a log line for run, a timestamped stdout line for watch.
    auto say = [&](spdlog::level::level_enum level, const char* tag, const std::string& text) {
      if (!opts.watch) return spdlog::log(level, "{}", text);
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
      discovery::DnsPoller::Options po;
      po.name = cfg.dns;
      po.srv = cfg.dns_srv;
      po.peer_name = cfg.peer_name;
      po.own_addresses = own_ipv4_addresses();
      po.interval = std::chrono::seconds(cfg.poll_interval);
      po.resolver.servers = cfg.dns_servers;
      // c-ares's defaults (5 s, doubling, 4 tries) would make one failing
      // poll outlast many intervals. A quarter of the interval (at most 1 s)
      // for the first try, doubled for the second: a lost packet costs a
      // fraction of a poll, a dead server at most 3/4 of one (3 s at 5 s).
      po.resolver.timeout =
          std::min(std::chrono::milliseconds(1000),
                   std::chrono::duration_cast<std::chrono::milliseconds>(po.interval) / 4);
      po.resolver.tries = 2;
      auto made =
          discovery::DnsPoller::create(&loop, po, [&](const discovery::DnsPoller::Event& ev) {
            using Kind = discovery::DnsPoller::Event::Kind;
            switch (ev.kind) {
              case Kind::changed:
                for (auto& p : ev.diff.added) {
                  say(spdlog::level::info, "dns+", "discovered " + p);
                  peers.add(p);
                }
                for (auto& p : ev.diff.removed) {
                  say(spdlog::level::info, "dns-", p + " left " + cfg.dns);
                  peers.remove(p);
                }
                break;
              case Kind::ok:
                say(spdlog::level::info, "dns",
                    cfg.dns + ": " + std::to_string(ev.peers) + " peer(s)");
                break;
              case Kind::failing:
                say(spdlog::level::warn, "dns!",
                    ev.error.message + " (keeping the " +
                        std::to_string(poller ? poller->peers().size() : 0) + " known peer(s))");
                break;
              case Kind::skipped:
                say(spdlog::level::info, "dns", cfg.dns + ": " + ev.skipped.message);
                break;
            }
          });
      if (!made) {
        std::fprintf(stderr, "beamlink: %s\n", made.error().message.c_str());
        return 2;
      }
      poller = std::move(made).value();
    }
    node.on_node_up([&](const std::string& n) { say(spdlog::level::info, "up", n); });
    if (opts.watch)  // run logs the loss through the connection and the PeerManager
      node.on_node_down([&](const std::string& n, const Error& why) {
        if (why.code != Errc::shutting_down)
          say(spdlog::level::warn, "down", n + ": " + why.message);
      });

    uv_signal_t sigint, sigterm;
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    StopCtx stop_ctx{&node, &peers, poller.get(), {&sigint, &sigterm}};
    sigint.data = sigterm.data = &stop_ctx;
    auto on_signal = [](uv_signal_t* s, int signum) {
      spdlog::info("{}: closing connections and unregistering",
                   signum == SIGINT ? "SIGINT" : "SIGTERM");
      stop_all(static_cast<StopCtx*>(s->data));
    };
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);

    auto started = node.start([&](Result<void> r) {
      if (!r) {
        std::fprintf(stderr, "beamlink: %s\n", r.error().message.c_str());
        code = 1;
        on_next_tick(&loop, [&] { stop_all(&stop_ctx); });
        return;
      }
      if (opts.watch || subscribing)
        std::fprintf(stderr, "beamlink: %s as %s (hidden, not registered); Ctrl-C to stop\n",
                     subscribing ? "subscribed" : "watching", node.name().c_str());
      else
        std::printf("beamlink: %s is up (distribution port %u, epmd port %u)\n",
                    node.name().c_str(), unsigned{node.listen_port()}, unsigned{nc->epmd_port});
      std::fflush(stdout);
      if (subscribing) {
        auto made_scope = cnode::PgScope::create(node);
        if (!made_scope) {
          std::fprintf(stderr, "beamlink: %s\n", made_scope.error().message.c_str());
          code = 1;
          return on_next_tick(&loop, [&] { stop_all(&stop_ctx); });
        }
        scope = std::move(made_scope).value();
        for (auto& name : opts.pubsub) {
          cnode::PubSubOptions po;
          po.name = name;
          auto bridge = cnode::PubSubBridge::create(node, *scope, po);
          if (!bridge) {
            std::fprintf(stderr, "beamlink: %s: %s\n", name.c_str(),
                         bridge.error().message.c_str());
            code = 1;
            return on_next_tick(&loop, [&] { stop_all(&stop_ctx); });
          }
          for (auto& topic : opts.subscribe_topics)
            (*bridge)->subscribe(topic, [name](const cnode::PubSubMessage& m) {
              cnode::TermReader reader(m.message);
              auto json = cnode::to_json(reader);
              std::printf("{\"pubsub\":%s,\"topic\":%s,\"message\":%s}\n",
                          cnode::json_quote(name).c_str(), cnode::json_quote(m.topic).c_str(),
                          json ? json->c_str()
                               : cnode::json_quote("unprintable: " + json.error().message).c_str());
              std::fflush(stdout);
            });
          bridges.push_back(std::move(bridge).value());
        }
      }
      for (auto& n : opts.connect) peers.add(n);
      if (poller) poller->start();
    });
    if (!started) {
      std::fprintf(stderr, "beamlink: %s\n", started.error().message.c_str());
      stop_all(&stop_ctx);
      uv_run(&loop, UV_RUN_DEFAULT);
      code = 2;
    } else {
      uv_run(&loop, UV_RUN_DEFAULT);
    }
  }
  drain_and_close(&loop);
  return code;
}

}  // namespace beamlink::app
