// Several beamlinks in one cluster, against a real epmd and a real erl node
// running tests/fixtures/pubsub_fixture.erl: two relays and a `beamlink
// subscribe` find each other through the hidden members of the pubsub's pg
// groups on the node, connect to each other (hidden to hidden, our
// handshake both ways), exchange pg membership, and every broadcast reaches
// every member exactly once: the node's subscribers, the other relay's
// WebSocket clients (the official phoenix client, tests/js) and subscribe.
// A relay that goes away is dropped; restarted, it is found again.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <string>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// `beamlink run` named NAME@127.0.0.1 with a relay on a free port, polling
// for other beamlinks every second.
struct Relay : RelayProcess {
  Relay(int epmd_port, const std::string& alive, const std::string& node)
      : RelayProcess(epmd_port, {"--name", alive + "@127.0.0.1", "--pubsub", "My.PubSub",
                                 "--connect", node, "--poll-interval", "1"}),
        name(alive + "@127.0.0.1") {}
  std::string name;
};

// /readyz of `r` lists every one of `nodes` as having the pubsub.
bool lists(const Relay& r, const std::vector<std::string>& nodes) {
  auto h = http("GET", r.url("/readyz"));
  if (h.status != 200) return false;
  return std::all_of(nodes.begin(), nodes.end(), [&](const std::string& n) {
    return h.body.find("\"" + n + "\"") != std::string::npos;
  });
}

}  // namespace

TEST_CASE("beamlinks: two relays and subscribe find each other and every broadcast reaches all") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 2)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"room:1\">>)") == "ok");
  Relay a(epmd.port(), "relay_a", "t1@127.0.0.1");
  Relay b(epmd.port(), "relay_b", "t1@127.0.0.1");
  Subprocess::Options so;
  so.env = beamlink_env(epmd.port());
  Subprocess sub({beamlink_bin(), "subscribe", "--pubsub", "My.PubSub", "--connect", "t1@127.0.0.1",
                  "--poll-interval", "1", "room:1"},
                 so);
  const std::string sub_name = "beamlink_" + std::to_string(sub.pid()) + "@127.0.0.1";
  // Each relay has found (and synced pg with) the other and subscribe; both
  // hidden: the node lists all three in nodes(hidden) only.
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return lists(a, {"t1@127.0.0.1", b.name, sub_name});
                      },
                      60s),
                  a.proc->err() << http("GET", a.url("/readyz")).body);
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return lists(b, {"t1@127.0.0.1", a.name, sub_name});
                      },
                      60s),
                  b.proc->err() << http("GET", b.url("/readyz")).body);
  CHECK(t1.eval("lists:sort(nodes(hidden)) -- ['" + sub_name + "']") ==
        "['relay_a@127.0.0.1','relay_b@127.0.0.1']");
  CHECK(t1.eval("nodes()") == "[]");
  CHECK(a.proc->err().find("found beamlink relay_b@127.0.0.1") != std::string::npos);

  // A WebSocket client on relay b (it pushes one "shout" once joined).
  Subprocess ws({"node", source_path("tests/js/phoenix_client.js"), b.url("/socket"), "room:1"});
  REQUIRE_MESSAGE(ws.wait_out("push ok", 60s), ws.out() << ws.err());
  // POSTs to either relay, then a fence through relay a.
  for (int n = 0; n < 4; ++n) {
    auto h =
        http("POST", (n % 2 ? b : a).url("/v1/broadcast"), broadcast_body("room:1", "new_msg", n));
    CHECK_MESSAGE(h.status == 202, h.body);
  }
  // The one-shot `beamlink broadcast` finds the relays through the node and
  // reaches their subscribers too. subscribe is found as well, but neither
  // it nor the one-shot client is registered with epmd: they cannot connect
  // to each other, and the client says so.
  auto once = run({beamlink_bin(), "broadcast", "--pubsub", "My.PubSub", "--connect",
                   "t1@127.0.0.1", "room:1", "cli", R"({"n":7})"},
                  120s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(once.code == 0, once.err);
  // One message per node with the pubsub: t1 and both relays.
  CHECK_MESSAGE(
      once.out == "broadcast room:1 cli: 3 message(s) written (one per node per pubsub)\n",
      once.out << once.err);
  CHECK_MESSAGE(once.err.find("beamlink " + sub_name + " cannot be reached") != std::string::npos,
                once.err);
  CHECK(http("POST", a.url("/v1/broadcast"), broadcast_body("room:1", "fence", 9)).status == 202);
  REQUIRE_MESSAGE(wait_until([&] { return !ws.running(); }, 60s), ws.out() << ws.err());
  CHECK_MESSAGE(occurrences(ws.out(), "msg room:1 cli {\"n\":7}") == 1, ws.out());
  for (int n = 0; n < 4; ++n)
    CHECK_MESSAGE(
        occurrences(ws.out(), "msg room:1 new_msg {\"n\":" + std::to_string(n) + "}") == 1,
        ws.out());
  // The node: the shout and each POST once, in order per relay.
  REQUIRE(wait_until(
      [&] { return t1.eval("length(pubsub_fixture:received(<<\"room:1\">>))") == "7"; }, 60s));
  CHECK(t1.eval("lists:sort([N || #{event := <<\"new_msg\">>, payload := #{<<\"n\">> := N}} <- "
                "pubsub_fixture:received(<<\"room:1\">>)])") == "[0,1,2,3]");
  CHECK(t1.eval("length([S || #{event := <<\"shout\">>} = S <- "
                "pubsub_fixture:received(<<\"room:1\">>)])") == "1");
  // subscribe: everything once (the shout, four POSTs, the fence).
  REQUIRE_MESSAGE(sub.wait_out("\"fence\"", 60s), sub.out() << sub.err());
  for (int n = 0; n < 4; ++n)
    CHECK_MESSAGE(occurrences(sub.out(), "\"n\":" + std::to_string(n) + "}") == 1, sub.out());
  CHECK(occurrences(sub.out(), "\"shout\"") == 1);
  CHECK(occurrences(sub.out(), "\"cli\"") == 0);
  CHECK(t1.eval("length(pubsub_fixture:received(<<\"room:1\">>))") == "7");
}

TEST_CASE("beamlinks: a relay that goes away is dropped and found again when it restarts") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  Relay a(epmd.port(), "relay_a", "t1@127.0.0.1");
  auto b = std::make_unique<Relay>(epmd.port(), "relay_b", "t1@127.0.0.1");
  REQUIRE_MESSAGE(wait_until([&] { return lists(a, {b->name}); }, 60s), a.proc->err());
  b->proc->signal(SIGKILL);
  REQUIRE(b->proc->wait(60s).has_value());
  b.reset();
  // a drops it: no longer a target of a's broadcasts.
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        auto h = http("GET", a.url("/readyz"));
                        return h.status == 200 &&
                               h.body.find("relay_b@127.0.0.1") == std::string::npos;
                      },
                      60s),
                  a.proc->err());
  CHECK(http("POST", a.url("/v1/broadcast"), broadcast_body("room:2", "while_away", 1)).status ==
        202);
  // Restarted under the same name: found within a poll or two, and what a
  // accepts reaches its clients again.
  b = std::make_unique<Relay>(epmd.port(), "relay_b", "t1@127.0.0.1");
  REQUIRE_MESSAGE(wait_until([&] { return lists(a, {b->name}) && lists(*b, {a.name}); }, 60s),
                  a.proc->err() << b->proc->err());
  Subprocess ws({"node", source_path("tests/js/phoenix_client.js"), b->url("/socket"), "room:2"});
  REQUIRE_MESSAGE(ws.wait_out("push ok", 60s), ws.out() << ws.err());
  CHECK(http("POST", a.url("/v1/broadcast"), broadcast_body("room:2", "back", 2)).status == 202);
  CHECK(http("POST", a.url("/v1/broadcast"), broadcast_body("room:2", "fence", 3)).status == 202);
  REQUIRE_MESSAGE(wait_until([&] { return !ws.running(); }, 60s), ws.out() << ws.err());
  CHECK(occurrences(ws.out(), "msg room:2 back {\"n\":2}") == 1);
}

// Readiness at start: a relay answers 200 on /readyz only once the other
// beamlinks the node lists are connected with their members known, so
// behind a Service its first 202 already reaches their subscribers (a
// subscribe, which cannot be dialled, connects only at its next poll).
TEST_CASE("beamlinks: a starting relay is ready only once the other beamlinks are connected") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  Relay a(epmd.port(), "relay_a", "t1@127.0.0.1");
  Subprocess::Options so;
  so.env = beamlink_env(epmd.port());
  Subprocess sub({binary_path("app/beamlink"), "subscribe", "--pubsub", "My.PubSub", "--connect",
                  "t1@127.0.0.1", "--poll-interval", "1", "room:3"},
                 so);
  const std::string sub_name = "beamlink_" + std::to_string(sub.pid()) + "@127.0.0.1";
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return lists(a, {"t1@127.0.0.1", sub_name});
                      },
                      60s),
                  a.proc->err() << sub.err());
  Relay c(epmd.port(), "relay_c", "t1@127.0.0.1");
  HttpReply h;
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        h = http("GET", c.url("/readyz"));
                        return h.status == 200;
                      },
                      60s),
                  c.proc->err() << h.body);
  // Its first 200 lists them all.
  CHECK_MESSAGE(h.body.find("\"t1@127.0.0.1\"") != std::string::npos, h.body);
  CHECK_MESSAGE(h.body.find("\"relay_a@127.0.0.1\"") != std::string::npos, h.body);
  CHECK_MESSAGE(h.body.find("\"" + sub_name + "\"") != std::string::npos, h.body);
  REQUIRE(http("POST", c.url("/v1/broadcast"), broadcast_body("room:3", "first", 1)).status == 202);
  CHECK_MESSAGE(wait_until([&] { return occurrences(sub.out(), "\"first\"") == 1; }, 60s),
                sub.out() << sub.err());
}
