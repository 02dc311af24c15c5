// PeerManager against real erl nodes and a black-holed address.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include "dist/peer_manager.hpp"
#include "node_fixture.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// A listener on ip:port that never accepts: connects complete in the kernel's
// backlog and then nothing ever answers, like a firewall that drops replies.
struct BlackHole {
  int fd;
  BlackHole(const char* ip, int port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    int one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(static_cast<std::uint16_t>(port));
    inet_pton(AF_INET, ip, &a.sin_addr);
    REQUIRE(::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
    REQUIRE(::listen(fd, 64) == 0);
  }
  ~BlackHole() { ::close(fd); }
};

int count_lines(const std::vector<std::string>& lines, const std::string& needle) {
  int n = 0;
  for (auto& l : lines)
    if (l.find(needle) != std::string::npos) ++n;
  return n;
}

}  // namespace

TEST_CASE("peers are dialled in parallel and a dead address delays nobody") {
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
  auto previous = spdlog::default_logger();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", ring));

  Epmd epmd;
  BlackHole hole("127.0.0.3", epmd.port());  // "epmd" on the dead pods' address
  std::vector<std::unique_ptr<ErlNode>> live;
  for (int i = 1; i <= 3; ++i) {
    ErlNode::Options o;
    o.name = "t" + std::to_string(i) + "@127.0.0.1";
    o.epmd_port = epmd.port();
    live.push_back(std::make_unique<ErlNode>(o, false));
  }
  for (auto& n : live) n->wait_ready();

  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.connect_timeout = 1500ms;
  TestNode bl(lt, cfg);
  dist::PeerManager::Options po;
  po.initial_backoff = 100ms;
  po.max_backoff = 400ms;
  auto pm = bl.on_loop([&] { return std::make_unique<dist::PeerManager>(*bl, po); });

  auto t0 = std::chrono::steady_clock::now();
  bl.on_loop([&] {
    // The dead ones first: with serial dialling they would hold up the rest.
    pm->add("dead1@127.0.0.3");
    pm->add("dead2@127.0.0.3");
    for (int i = 1; i <= 3; ++i) pm->add("t" + std::to_string(i) + "@127.0.0.1");
  });
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->connected_nodes().size(); }) == 3; },
                   10s));
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("3 live peers connected in " << took.count() << " ms with 2 dead ones dialled first");
  CHECK(took < cfg.connect_timeout);  // nobody waited for the dead ones' timeout

  // The dead ones are retried with backoff, and logged once per reason.
  CHECK(wait_until(
      [&] {
        return bl.on_loop([&] {
          for (auto& p : pm->peers())
            if (p.node == "dead1@127.0.0.3") return p.failures >= 3;
          return false;
        });
      },
      20s));
  auto lines = ring->last_formatted();
  CHECK(count_lines(lines, "dead1@127.0.0.3") == 1);
  CHECK(count_lines(lines, "connecting to dead1@127.0.0.3: epmd at 127.0.0.3") == 1);

  // A peer that leaves the set but is connected stays connected (checked
  // after a full redial period of the others), and is not redialled once
  // its connection goes.
  bl.on_loop([&] { pm->remove("t1@127.0.0.1"); });
  CHECK_FALSE(wait_until([&] { return !bl.connected("t1@127.0.0.1"); }, 1s));
  CHECK(live[0]->eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "true");
  auto before = bl.on_loop([&] { return bl->stats().connects; });
  CHECK(live[0]->eval("erlang:disconnect_node('beamlink@127.0.0.1')") == "true");
  CHECK(wait_until([&] { return !bl.connected("t1@127.0.0.1"); }, 5s));
  CHECK_FALSE(wait_until([&] { return bl.connected("t1@127.0.0.1"); }, 1500ms));
  CHECK(bl.on_loop([&] { return bl->stats().connects; }) == before);

  // A lost peer that is still wanted is redialled: a new outbound connection.
  auto connects = bl.on_loop([&] { return bl->stats().connects; });
  CHECK(live[1]->eval("erlang:disconnect_node('beamlink@127.0.0.1')") == "true");
  CHECK(
      wait_until([&] { return bl.on_loop([&] { return bl->stats().connects; }) > connects; }, 10s));
  CHECK(wait_until([&] { return bl.connected("t2@127.0.0.1"); }, 10s));

  bl.on_loop([&] { pm.reset(); });
  spdlog::set_default_logger(previous);
}
