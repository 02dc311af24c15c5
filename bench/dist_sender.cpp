// beamlink's side of `scripts/bench dist`: connects to the receiving node,
// arms its counter over rpc, sends N messages {relay, <<"topic">>, <<100
// bytes>>} to the registered `counter` as fast as the connection takes them
// (waiting for room when the outbound queue is full), waits until the last
// one was written (its send completion), then asks for the receiver's timing. Prints one line:
// "beamlink N us cpu_us".
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>

#include <cstdio>
#include <cstdlib>
#include <string>

#include "dist/node.hpp"
#include "term/term_text.hpp"

using namespace beamlink;
using namespace beamlink::term;
using namespace beamlink::dist;

namespace {

double cpu_us() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return static_cast<double>(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
         static_cast<double>(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

struct Bench {
  Node& node;
  std::string target;
  long n;
  std::string msg;
  // Set once the node is up. Not in the aggregate's initializer: from an
  // empty Pid temporary there GCC 12 at -O3 warns that its string may be
  // used uninitialized.
  Pid self{};
  long sent = 0;
  double cpu0 = 0, cpu1 = 0;
  int code = 1;

  void fail(const std::string& what) {
    std::fprintf(stderr, "dist_sender: %s\n", what.c_str());
    node.stop();
  }

  void pump() {
    if (n <= 0) return collect();
    while (sent < n) {
      // The last send's completion says that everything was written (the
      // connection writes in order).
      SendDone done;
      if (sent + 1 == n)
        done = [this](Result<void> w) {
          if (!w) return fail(w.error().message);
          collect();
        };
      auto r = node.reg_send(self, target, "counter", {msg.data(), msg.size()}, std::move(done));
      if (!r) {
        if (r.error().code == Errc::queue_full) {
          node.when_writable(target, [this](Result<void> w) {
            if (!w) return fail(w.error().message);
            pump();
          });
          return;
        }
        return fail(r.error().message);
      }
      ++sent;
    }
  }

  // Everything was written: the receiver's timing.
  void collect() {
    cpu1 = cpu_us();
    TermWriter args;
    args.list(1).integer(120000).nil();
    node.rpc(target, "bench_recv", "wait", args.bytes(), std::chrono::seconds(130),
             [this](Result<RpcReply> r) {
               if (!r) return fail(r.error().message);
               auto in = TermReader::from_external({r->term.data(), r->term.size()});
               auto a = in->read_tuple_header();
               auto count = in->read_int();
               auto us = in->read_int();
               if (!a || !count || !us) return fail("unexpected reply from bench_recv:wait");
               std::printf("beamlink %lld %lld %.0f\n", static_cast<long long>(*count),
                           static_cast<long long>(*us), cpu1 - cpu0);
               code = 0;
               node.stop();
             });
  }
};

}  // namespace

int main(int argc, char** argv) {
  if (argc < 4) {
    std::fprintf(stderr, "usage: dist_sender TARGET_NODE N EPMD_PORT (cookie in ERLANG_COOKIE)\n");
    return 2;
  }
  spdlog::set_default_logger(spdlog::stderr_color_mt("dist_sender"));  // stdout is the result
  spdlog::set_level(spdlog::level::warn);
  const char* cookie = std::getenv("ERLANG_COOKIE");
  NodeConfig cfg;
  cfg.name = "bench_sender@127.0.0.1";
  cfg.cookie = cookie ? cookie : "";
  cfg.publish = false;
  cfg.epmd_port = static_cast<std::uint16_t>(std::atoi(argv[3]));
  uv_loop_t loop;
  uv_loop_init(&loop);
  int code = 1;
  {
    Node node(&loop, cfg);
    TermWriter m;
    m.tuple(3).atom("relay").binary("topic").binary(std::string(100, 'x'));
    Bench b{node, argv[1], std::atol(argv[2]), std::string(m.bytes().data(), m.size())};
    auto started = node.start([&](Result<void> r) {
      if (!r) return b.fail(r.error().message);
      node.connect(b.target, [&](Result<void> c) {
        if (!c) return b.fail(c.error().message);
        TermWriter args;
        args.list(1).integer(b.n).nil();
        node.rpc(b.target, "bench_recv", "expect", args.bytes(), std::chrono::seconds(10),
                 [&](Result<RpcReply> r2) {
                   if (!r2) return b.fail(r2.error().message);
                   b.self = node.spawn([](const Pid&, const Envelope&) {});
                   b.cpu0 = cpu_us();
                   b.pump();
                 });
      });
    });
    if (!started) {
      std::fprintf(stderr, "dist_sender: %s\n", started.error().message.c_str());
      return 2;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    code = b.code;
  }
  uv_run(&loop, UV_RUN_DEFAULT);
  uv_loop_close(&loop);
  return code;
}
