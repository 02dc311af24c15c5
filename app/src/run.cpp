// `beamlink run`: join and stay. Registers with epmd, connects to the nodes
// given with --connect and keeps them connected (redialling with capped
// exponential backoff and jitter), accepts inbound connections, and on
// SIGINT/SIGTERM closes every connection and unregisters.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <random>

#include "commands.hpp"

namespace beamlink::app {
namespace {

// Keeps a set of nodes connected. A failed or lost node is redialled after
// a delay that doubles up to a cap, with jitter; a failure is logged when its
// reason changes, not on every attempt.
class Redialer {
 public:
  Redialer(cnode::Node& node, std::vector<std::string> targets) : node_(node) {
    for (auto& t : targets) peers_[t];
    node_.on_node_down([this](const std::string& n, const Error& why) {
      auto it = peers_.find(n);
      if (it == peers_.end() || stopping_) return;
      spdlog::warn("lost {}: {}; redialling", n, why.message);
      it->second.backoff_ms = kInitialMs;
      schedule(n);
    });
  }
  ~Redialer() {
    stopping_ = true;
    for (auto& [n, p] : peers_)
      if (p.timer) close_timer(p);
  }
  void start() {
    for (auto& [n, p] : peers_) dial(n);
  }
  void stop() {
    stopping_ = true;
    for (auto& [n, p] : peers_)
      if (p.timer) close_timer(p);
  }

 private:
  static constexpr std::uint64_t kInitialMs = 500;
  static constexpr std::uint64_t kCapMs = 30000;
  struct Peer {
    std::uint64_t backoff_ms = kInitialMs;
    std::string last_error;
    uv_timer_t* timer = nullptr;
  };
  struct TimerCtx {
    Redialer* self;
    std::string node;
  };

  static void close_timer(Peer& p) {
    delete static_cast<TimerCtx*>(p.timer->data);
    uv_close(reinterpret_cast<uv_handle_t*>(p.timer),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    p.timer = nullptr;
  }

  void dial(const std::string& n) {
    if (stopping_) return;
    node_.connect(n, [this, n](Result<void> r) {
      if (stopping_) return;
      auto& p = peers_[n];
      if (r) {
        if (!p.last_error.empty()) spdlog::info("{} is reachable again", n);
        p.last_error.clear();
        p.backoff_ms = kInitialMs;
        return;
      }
      if (r.error().message != p.last_error) {
        spdlog::warn("cannot connect to {}: {} (retrying with backoff up to {} s)", n,
                     r.error().message, kCapMs / 1000);
        p.last_error = r.error().message;
      }
      schedule(n);
    });
  }

  void schedule(const std::string& n) {
    auto& p = peers_[n];
    if (p.timer) return;
    std::uniform_int_distribution<std::uint64_t> jitter(0, p.backoff_ms / 2);
    std::uint64_t delay = p.backoff_ms + jitter(rng_);
    p.backoff_ms = std::min(p.backoff_ms * 2, kCapMs);
    p.timer = new uv_timer_t;
    uv_timer_init(node_.loop(), p.timer);
    p.timer->data = new TimerCtx{this, n};
    uv_timer_start(
        p.timer,
        [](uv_timer_t* t) {
          auto* ctx = static_cast<TimerCtx*>(t->data);
          Redialer* self = ctx->self;
          std::string node = ctx->node;
          close_timer(self->peers_[node]);
          self->dial(node);
        },
        delay, 0);
  }

  cnode::Node& node_;
  std::map<std::string, Peer> peers_;
  std::mt19937_64 rng_{std::random_device{}()};
  bool stopping_ = false;
};

struct StopCtx {
  cnode::Node* node;
  Redialer* redialer;
  uv_signal_t* sigs[2];
};

void stop_all(StopCtx* ctx) {
  ctx->redialer->stop();
  ctx->node->stop();
  for (auto* s : ctx->sigs)
    if (!uv_is_closing(reinterpret_cast<uv_handle_t*>(s)))
      uv_close(reinterpret_cast<uv_handle_t*>(s), nullptr);
}

}  // namespace

int cmd_run(const Config& cfg, const RunOptions& opts) {
  auto nc = make_node_config(cfg, true);
  if (!nc) {
    std::fprintf(stderr, "beamlink: %s\n", nc.error().message.c_str());
    return 2;
  }
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 0;
  {
    cnode::Node node(&loop, *nc);
    Redialer redialer(node, opts.connect);
    node.on_node_up([](const std::string& n) { spdlog::info("node up: {}", n); });

    uv_signal_t sigint, sigterm;
    uv_signal_init(&loop, &sigint);
    uv_signal_init(&loop, &sigterm);
    StopCtx stop_ctx{&node, &redialer, {&sigint, &sigterm}};
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
      std::printf("beamlink: %s is up (distribution port %u, epmd port %u)\n", node.name().c_str(),
                  unsigned{node.listen_port()}, unsigned{nc->epmd_port});
      std::fflush(stdout);
      redialer.start();
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
