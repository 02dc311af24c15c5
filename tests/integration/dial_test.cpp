// Outbound connects to real OTP 25 nodes (ei over poll() on the dial
// threads): what each connection records about its peer, a peer whose name
// differs from the one dialled, and many connects at once.
#include <doctest/doctest.h>

#include <future>
#include <vector>

#include "dist/handshake_core.hpp"
#include "node_fixture.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

TEST_CASE("dial - an OTP 25 connection records version 6 and the peer's real flags") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(ErlNode::Options{"t1@127.0.0.1", kCookie, epmd.port(), 60, {}});
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  auto caps = bl.on_loop([&] { return bl->peer_caps("t1@127.0.0.1"); });
  REQUIRE(caps.has_value());
  CHECK(caps->version == 6);
  CHECK(caps->flags_known);  // read from the challenge ei received
  CHECK(caps->has(dist::dflag::handshake_23));
  CHECK(caps->has(dist::dflag::unlink_id));
  CHECK(caps->has(dist::dflag::mandatory_25_digest));
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
}

TEST_CASE("dial - an OTP 25 peer whose handshake name differs from the dialled one is refused") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(ErlNode::Options{"t1@127.0.0.1", kCookie, epmd.port(), 60, {}});
  auto err = bl.connect("t1@localhost");
  INFO(err);
  CHECK(err.find("calls itself 't1@127.0.0.1'") != std::string::npos);
  CHECK(err.find("dial 't1@127.0.0.1'") != std::string::npos);
  CHECK(err.find("NODE_HOST") != std::string::npos);
  CHECK_FALSE(bl.connected("t1@localhost"));
  CHECK_FALSE(bl.connected("t1@127.0.0.1"));
  // The peer saw the connection close.
  CHECK(wait_until([&] { return t1.eval("nodes(hidden)") == "[]"; }, 60s));
  // Dialled by its real name, it connects.
  CHECK(bl.connect("t1@127.0.0.1") == "");
}

TEST_CASE("dial - eight connects at once share the four dial threads and all succeed") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  std::vector<std::unique_ptr<ErlNode>> nodes;
  for (int i = 0; i < 8; ++i)
    nodes.push_back(std::make_unique<ErlNode>(
        ErlNode::Options{"n" + std::to_string(i) + "@127.0.0.1", kCookie, epmd.port(), 60, {}},
        false));
  for (auto& n : nodes) n->wait_ready();
  std::vector<std::future<std::string>> results;
  for (auto& n : nodes) {
    auto done = std::make_shared<std::promise<std::string>>();
    results.push_back(done->get_future());
    lt.post([&bl, name = n->name(), done] {
      bl->connect(
          name, [done](Result<void> r) { done->set_value(r ? std::string() : r.error().message); });
    });
  }
  for (auto& f : results) {
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    CHECK(f.get() == "");
  }
  CHECK(bl.on_loop([&] { return bl->connected_nodes().size(); }) == 8);
}
