// Several beamlinks in the eWallet deployment simulated by scripts/cluster
// (DESIGN.md, "Several beamlinks in one cluster"): a sidecar sharing pod 1's
// IP and epmd, and two relays in namespaces of their own with a `beamlink
// subscribe` beside them. Elixir pods run tests/fixtures/phoenix_pubsub.ex;
// WebSocket clients are the official phoenix npm client.
#include <doctest/doctest.h>
#include <signal.h>

#include <regex>

#include "cluster_fixture.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kOk = R"({"$atom":"ok"})";

// A beamlink process inside `netns` with NODE_HOST `host`.
struct Beamlink : BeamlinkInNs {
  using BeamlinkInNs::BeamlinkInNs;
  // /readyz lists each of `nodes` as having the pubsub.
  bool lists(const std::vector<std::string>& nodes) {
    auto h = http("GET", "/readyz");
    if (h.status != 200) return false;
    for (auto& n : nodes)
      if (h.body.find("\"" + n + "\"") == std::string::npos) return false;
    return true;
  }
};

std::string broadcast(const std::string& topic, const std::string& event, int n) {
  return R"({"topic":")" + topic + R"(","event":")" + event + R"(","payload":{"n":)" +
         std::to_string(n) + "}}";
}

std::size_t count(const std::string& s, const std::string& needle) {
  std::size_t n = 0;
  for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
  return n;
}

// The payload "n" of each new_msg pod `pod` got on topic, in order.
std::string received(Cluster& c, int pod, const std::string& topic) {
  return pubsub(c, pod,
                "messages(\"My.PubSub\", \"" + topic +
                    "\") |> Enum.flat_map(fn %Phoenix.Socket.Broadcast{event: \"new_msg\", "
                    "payload: %{\"n\" => n}} -> [n]; _ -> [] end)");
}

}  // namespace

TEST_CASE(
    "beamlinks in the cluster: a sidecar in pod 1 is every pod's hidden peer and reaches pod 1") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:My.PubSub:2";
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  auto ips = c.pod_ips();
  for (int p = 1; p <= 3; ++p) REQUIRE(pubsub(c, p, "subscribe(\"My.PubSub\", \"room:1\")") == kOk);
  Beamlink side(c, env_of(c, {"--sidecar", "1"}), {"run", "--pubsub", "My.PubSub"});
  CHECK(side.host == ips[0]);
  // Every pod, its own included, lists the sidecar as a hidden node.
  for (int p = 1; p <= 3; ++p)
    CHECK_MESSAGE(wait_until(
                      [&] {
                        return c.cmd({"eval", std::to_string(p), "nodes(hidden)"}, 60s)
                                   .out.find(side.node()) != std::string::npos;
                      },
                      60s),
                  "pod " << p << ": " << side.proc->err());
  REQUIRE_MESSAGE(
      wait_until(
          [&] {
            return side.lists({"ewallet@" + ips[0], "ewallet@" + ips[1], "ewallet@" + ips[2]});
          },
          60s),
      side.proc->err());
  for (int n = 0; n < 3; ++n)
    REQUIRE(side.http("POST", "/v1/broadcast", broadcast("room:1", "new_msg", n)).status == 202);
  for (int p = 1; p <= 3; ++p) {
    CHECK(pubsub(c, p, "wait_count(\"My.PubSub\", \"room:1\", 3, 10_000)") == "3");
    CHECK(received(c, p, "room:1") == "[0,1,2]");
  }
}

TEST_CASE("beamlinks in the cluster: two relays and subscribe get every broadcast exactly once") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:My.PubSub:2";
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  REQUIRE(c.cmd({"add-beamlink", "r1"}).code == 0);
  REQUIRE(c.cmd({"add-beamlink", "r2"}).code == 0);
  for (int p = 1; p <= 3; ++p) REQUIRE(pubsub(c, p, "subscribe(\"My.PubSub\", \"room:1\")") == kOk);
  auto r1 = std::make_unique<Beamlink>(c, env_of(c, {"--beamlink", "r1"}),
                                       std::vector<std::string>{"run", "--pubsub", "My.PubSub"});
  Beamlink r2(c, env_of(c, {"--beamlink", "r2"}), {"run", "--pubsub", "My.PubSub"});
  Beamlink sub(c, env_of(c, {}), {"subscribe", "--pubsub", "My.PubSub", "room:1"});
  auto ips = c.pod_ips();
  std::vector<std::string> pods = {"ewallet@" + ips[0], "ewallet@" + ips[1], "ewallet@" + ips[2]};
  auto with = [](std::vector<std::string> v, const std::string& n) {
    v.push_back(n);
    return v;
  };
  REQUIRE_MESSAGE(wait_until([&] { return r1->lists(with(pods, r2.node())); }, 60s),
                  r1->proc->err());
  REQUIRE_MESSAGE(wait_until([&] { return r2.lists(with(pods, r1->node())); }, 60s),
                  r2.proc->err());
  // subscribe has joined both relays (their scopes list its members).
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return count(r1->http("GET", "/readyz").body, "beamlink_") == 1 &&
                               count(r2.http("GET", "/readyz").body, "beamlink_") == 1;
                      },
                      60s),
                  sub.proc->err());
  // A WebSocket client on each relay.
  auto js = source_path("tests/js/phoenix_client.js");
  Subprocess w1(r1->in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:1"}));
  Subprocess w2(r2.in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:1"}));
  REQUIRE_MESSAGE(w1.wait_out("push ok", 60s), w1.err());
  REQUIRE_MESSAGE(w2.wait_out("push ok", 60s), w2.err());
  for (int n = 0; n < 10; ++n) {
    auto& r = n % 2 ? r2 : *r1;
    auto h = r.http("POST", "/v1/broadcast", broadcast("room:1", "new_msg", n));
    REQUIRE_MESSAGE(h.status == 202, h.body);
  }
  // Fences through both relays end the clients once each has seen both.
  REQUIRE(r1->http("POST", "/v1/broadcast", broadcast("room:1", "fence", 1)).status == 202);
  REQUIRE(r2.http("POST", "/v1/broadcast", broadcast("room:1", "fence", 2)).status == 202);
  REQUIRE(w1.wait(60s).has_value());
  REQUIRE(w2.wait(60s).has_value());
  for (auto* w : {&w1, &w2}) {
    INFO(w->out());
    for (int n = 0; n < 10; ++n)
      CHECK(count(w->out(), "msg room:1 new_msg {\"n\":" + std::to_string(n) + "}") == 1);
    // Its own push, and the other client's if it had joined by then.
    CHECK(count(w->out(), "msg room:1 shout") >= 1);
    CHECK(count(w->out(), "msg room:1 shout") <= 2);
  }
  for (int p = 1; p <= 3; ++p) {
    // 10 POSTs, 2 shouts, 2 fences.
    CHECK(pubsub(c, p, "wait_count(\"My.PubSub\", \"room:1\", 14, 10_000)") == "14");
    auto got = received(c, p, "room:1");
    for (int n = 0; n < 10; ++n) CHECK_MESSAGE(count(got, std::to_string(n)) == 1, got);
  }
  REQUIRE_MESSAGE(wait_until([&] { return count(sub.proc->out(), "\"fence\"") == 2; }, 60s),
                  sub.proc->out() << sub.proc->err());
  for (int n = 0; n < 10; ++n)
    CHECK_MESSAGE(
        count(sub.proc->out(), "\"new_msg\",\"payload\":{\"n\":" + std::to_string(n) + "}") == 1,
        sub.proc->out());

  // r1 killed: r2 drops it; restarted, it rejoins and r2's POSTs reach it.
  const std::string r1_node = r1->node();
  r1->proc->signal(SIGKILL);
  REQUIRE(r1->proc->wait(60s).has_value());
  r1.reset();
  REQUIRE(wait_until(
      [&] {
        auto h = r2.http("GET", "/readyz");
        return h.status == 200 && h.body.find(r1_node) == std::string::npos;
      },
      60s));
  r1 = std::make_unique<Beamlink>(c, env_of(c, {"--beamlink", "r1"}),
                                  std::vector<std::string>{"run", "--pubsub", "My.PubSub"});
  REQUIRE_MESSAGE(
      wait_until(
          [&] { return r1->lists(with(pods, r2.node())) && r2.lists(with(pods, r1->node())); },
          60s),
      r1->proc->err());
  Subprocess w3(r1->in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:1"}));
  REQUIRE_MESSAGE(w3.wait_out("push ok", 60s), w3.err());
  REQUIRE(r2.http("POST", "/v1/broadcast", broadcast("room:1", "new_msg", 42)).status == 202);
  REQUIRE(r2.http("POST", "/v1/broadcast", broadcast("room:1", "fence", 3)).status == 202);
  REQUIRE(w3.wait(60s).has_value());
  CHECK_MESSAGE(count(w3.out(), "msg room:1 new_msg {\"n\":42}") == 1, w3.out());
}
