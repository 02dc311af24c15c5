// The one-shot commands: ping, names, rpc. Each runs a hidden client node
// that neither listens nor registers (as erl_call), does one thing, and
// stops.
#include <arpa/inet.h>
#include <netdb.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <iostream>

#include "commands.hpp"
#include "common/uv_handle.hpp"
#include "common/uv_util.hpp"
#include "epmd_client/client.hpp"
#include "term/term_json.hpp"
#include "term/term_text.hpp"

namespace beamlink::app {

void drain_and_close(uv_loop_t* loop) {
  uv_run(loop, UV_RUN_DEFAULT);
  if (uv_loop_close(loop) != 0) {
    // Should not happen: every handle is closed by its owner. Log the rest.
    uv_walk(
        loop,
        [](uv_handle_t* h, void*) {
          spdlog::debug("handle left open: {}", uv_handle_type_name(h->type));
        },
        nullptr);
  }
}

void on_next_tick(uv_loop_t* loop, std::function<void()> fn) {
  defer(loop, std::move(fn));
}

namespace {

using Clock = std::chrono::steady_clock;

double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// A client node around one operation: builds the node, runs `body` once it is
// up, and returns the exit code body set. rpc_output: where the output of
// the node's rpcs goes (the log when empty).
template <class Body>
int with_client_node(const Config& cfg, int timeout_ms,
                     std::function<void(const std::string&)> rpc_output, Body body) {
  auto nc = make_node_config(cfg, false);
  if (!nc) {
    std::fprintf(stderr, "beamlink: %s\n", nc.error().message.c_str());
    return 2;
  }
  nc->connect_timeout = std::chrono::milliseconds(timeout_ms);
  nc->rpc_output = std::move(rpc_output);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 1;
  {
    dist::Node node(&loop, *nc);
    auto stop = [&](int c) {
      code = c;
      on_next_tick(&loop, [&] { node.stop(); });
    };
    auto started = node.start([&](Result<void> r) {
      if (!r) {
        std::fprintf(stderr, "beamlink: %s\n", r.error().message.c_str());
        return stop(1);
      }
      body(node, stop);
    });
    if (!started) {
      std::fprintf(stderr, "beamlink: %s\n", started.error().message.c_str());
      return 2;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  drain_and_close(&loop);
  return code;
}

template <class Body>
int with_client_node(const Config& cfg, int timeout_ms, Body body) {
  return with_client_node(cfg, timeout_ms, {}, std::move(body));
}

}  // namespace

int cmd_ping(const Config& cfg, const std::string& target, int timeout_ms) {
  auto t0 = Clock::now();
  return with_client_node(cfg, timeout_ms, [&](dist::Node& node, auto stop) {
    node.connect(target, [&node, target, t0, stop, timeout_ms](Result<void> c) {
      if (!c) {
        std::fprintf(stderr, "pang: %s\n", c.error().message.c_str());
        return stop(1);
      }
      // As net_adm:ping: a gen_call {is_auth, OurNode} to net_kernel there;
      // pong when it answers yes.
      auto ref = node.make_ref();
      // The wait for the answer is bounded by a timer, closed by whichever
      // of answer and timeout comes first.
      struct Wait {
        UvHandle<uv_timer_t> timer;
        std::function<void()> on_timeout;
        void close() { timer.reset(); }
      };
      auto wait = std::make_shared<Wait>();
      term::Pid self = node.spawn([=, &node](const term::Pid& me, const dist::Envelope& e) {
        if (e.kind != dist::Envelope::Kind::message) return;
        auto r = term::TermReader::from_external(e.term);
        if (!r) return;
        auto a = r->read_tuple_header();
        auto got = r->read_ref();
        if (!a || *a != 2 || !got || *got != ref) return;
        auto answer = r->read_atom();
        wait->close();
        node.exit(me);
        if (answer && *answer == "yes") {
          std::printf("pong from %s in %.1f ms\n", target.c_str(), ms_since(t0));
          return stop(0);
        }
        std::fprintf(stderr, "pang: %s answered is_auth with something else than yes\n",
                     target.c_str());
        stop(1);
      });
      term::TermWriter msg;
      msg.tuple(3).atom("$gen_call").tuple(2).pid(self).ref(ref);
      msg.tuple(2).atom("is_auth").atom(node.name());
      if (auto s = node.reg_send(self, target, "net_kernel", msg.bytes()); !s) {
        std::fprintf(stderr, "pang: %s\n", s.error().message.c_str());
        return stop(1);
      }
      (void)wait->timer.init(node.loop(), wait.get(), uv_timer_init);  // cannot fail for a timer
      // The handler above holds the Wait until it answers; the timer only
      // points at it.
      wait->on_timeout = [stop, target, timeout_ms] {
        std::fprintf(stderr,
                     "pang: %s accepted the connection but net_kernel did not answer within "
                     "%d ms\n",
                     target.c_str(), timeout_ms);
        stop(1);
      };
      uv_timer_start(
          wait->timer.get(),
          [](uv_timer_t* timer) {
            auto* w = static_cast<Wait*>(timer->data);
            auto fire = std::move(w->on_timeout);
            w->close();
            fire();
          },
          static_cast<std::uint64_t>(timeout_ms), 0);
    });
  });
}

int cmd_rpc(const Config& cfg, const RpcOptions& opts) {
  term::TermWriter args;
  std::string text = opts.args.empty() ? "[]" : opts.args;
  if (auto p = term::parse_term(text, args); !p) {
    std::fprintf(stderr, "beamlink rpc: ARGS: %s\n", p.error().message.c_str());
    return 2;
  }
  if (args.size() < 2 || (static_cast<unsigned char>(args.bytes()[1]) != 108 &&
                          static_cast<unsigned char>(args.bytes()[1]) != 106 &&
                          static_cast<unsigned char>(args.bytes()[1]) != 107)) {
    std::fprintf(stderr, "beamlink rpc: ARGS must be an Erlang list, e.g. '[1, <<\"x\">>]'\n");
    return 2;
  }
  // What the call prints comes before its result, as erl_call -fetch_stdout
  // shows it; with --json on stderr, so that stdout stays one JSON value.
  auto print_output = [out = opts.json ? stderr : stdout](const std::string& chars) {
    std::fwrite(chars.data(), 1, chars.size(), out);
    std::fflush(out);
  };
  return with_client_node(cfg, opts.timeout_ms, print_output, [&](dist::Node& node, auto stop) {
    node.connect(opts.node, [&node, &opts, &args, stop](Result<void> c) {
      if (!c) {
        std::fprintf(stderr, "beamlink rpc: %s\n", c.error().message.c_str());
        return stop(1);
      }
      node.rpc(opts.node, opts.mod, opts.fun, args.bytes(),
               std::chrono::milliseconds(opts.timeout_ms),
               [&opts, stop](Result<dist::RpcReply> reply) {
                 if (!reply) {
                   std::fprintf(stderr, "beamlink rpc: %s\n", reply.error().message.c_str());
                   return stop(1);
                 }
                 auto r = term::TermReader::from_external(
                     std::span<const char>(reply->term.data(), reply->term.size()));
                 Result<std::string> out = opts.json ? term::to_json(*r) : term::format_term(*r);
                 if (!out) {
                   std::fprintf(stderr, "beamlink rpc: cannot print the reply: %s\n",
                                out.error().message.c_str());
                   return stop(1);
                 }
                 std::printf("%s\n", out->c_str());
                 stop(0);
               });
    });
  });
}

int cmd_names(const Config& cfg, const std::string& host_in, int timeout_ms) {
  std::string host = host_in.empty() ? "127.0.0.1" : host_in;
  in_addr a{};
  if (inet_pton(AF_INET, host.c_str(), &a) != 1) {
    addrinfo hints{};
    hints.ai_family = AF_INET;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
    if (rc != 0 || !res) {
      std::fprintf(stderr, "beamlink names: cannot resolve %s: %s\n", host.c_str(),
                   gai_strerror(rc));
      return 1;
    }
    a = reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr;
    freeaddrinfo(res);
  }
  char ip[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, &a, ip, sizeof ip);
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 1;
  {
    epmd_client::Client client(&loop);
    epmd_client::Endpoint ep;
    ep.host = ip;
    ep.port = static_cast<std::uint16_t>(cfg.epmd_port);
    client.names(ep, std::chrono::milliseconds(timeout_ms),
                 [&](Result<std::vector<epmd_client::NameEntry>> names) {
                   if (!names) {
                     std::fprintf(stderr, "beamlink names: %s\n", names.error().message.c_str());
                     return;
                   }
                   std::printf("epmd: up and running on port %d with data:\n", cfg.epmd_port);
                   for (auto& n : *names)
                     std::printf("name %s at port %u\n", n.name.c_str(), unsigned{n.port});
                   code = 0;
                 });
    uv_run(&loop, UV_RUN_DEFAULT);
  }
  drain_and_close(&loop);
  return code;
}

}  // namespace beamlink::app
