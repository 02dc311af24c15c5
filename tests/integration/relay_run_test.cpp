// `beamlink run` with its relay against a real epmd and real erl nodes that
// run tests/fixtures/pubsub_fixture.erl (Phoenix.PubSub's wire behaviour):
// POST /v1/broadcast reaches each node's subscribers exactly once, /healthz
// and /metrics tell the truth, a full queue and no peers answer 503, and a
// non-loopback listener without a token refuses to start. Clients are curl
// subprocesses.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <string>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// A relay process: `beamlink run` named relay@127.0.0.1 with the given
// pubsubs, connected to `nodes`.
struct Relay : RelayProcess {
  Relay(int epmd_port, const std::vector<std::string>& nodes, const std::string& pubsub,
        std::vector<std::string> extra = {}, std::map<std::string, std::string> env = {})
      : RelayProcess(epmd_port, args(nodes, pubsub, std::move(extra)), env) {}
  static std::vector<std::string> args(const std::vector<std::string>& nodes,
                                       const std::string& pubsub, std::vector<std::string> extra) {
    std::vector<std::string> argv = {"--name", "relay@127.0.0.1"};
    if (!pubsub.empty()) {
      argv.push_back("--pubsub");
      argv.push_back(pubsub);
    }
    for (auto& n : nodes) {
      argv.push_back("--connect");
      argv.push_back(n);
    }
    for (auto& e : extra) argv.push_back(e);
    return argv;
  }
};

std::string new_msg_body(const std::string& topic, int n) {
  return R"({"topic":")" + topic + R"(","event":"new_msg","payload":{"n":)" + std::to_string(n) +
         R"(,"body":"hi"}})";
}

// Every node's beamlink membership is in all `pool` groups of the scope.
bool joined_everywhere(ErlNode& n, int pool) {
  return n.eval(
             "length([G || G <- pg:which_groups('Elixir.Phoenix.PubSub'), "
             "lists:any(fun(P) -> node(P) =:= 'relay@127.0.0.1' end, "
             "pg:get_members('Elixir.Phoenix.PubSub', G))])") == std::to_string(pool);
}

}  // namespace

TEST_CASE("relay: POST /v1/broadcast reaches each node's subscribers exactly once") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()), false);
  ErlNode t2(erl_options("t2@127.0.0.1", epmd.port()), false);
  t1.wait_ready();
  t2.wait_ready();
  // Pool sizes 3 and 1: beamlink joins the largest pool it sees, and sends
  // to the first group's worker, which every pool has.
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 3)") == "ok");
  CHECK(t2.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  for (auto* n : {&t1, &t2}) {
    CHECK(n->eval("pubsub_fixture:subscribe(<<\"room:1\">>)") == "ok");
    CHECK(n->eval("pubsub_fixture:subscribe(<<\"room:2\">>)") == "ok");
  }
  Relay relay(epmd.port(), {"t1@127.0.0.1", "t2@127.0.0.1"}, "My.PubSub");
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  REQUIRE(wait_until([&] { return joined_everywhere(t1, 3) && joined_everywhere(t2, 3); }, 20s));
  for (int i = 0; i < 5; ++i) {
    auto r = http("POST", relay.url("/v1/broadcast"), new_msg_body("room:1", i));
    CHECK_MESSAGE(r.status == 202, r.body);
    CHECK(r.body == R"({"status":"accepted"})");
  }
  for (auto* n : {&t1, &t2}) {
    REQUIRE(wait_until(
        [&] { return n->eval("length(pubsub_fixture:received(<<\"room:1\">>))") == "5"; }));
    // In order, each a %Phoenix.Socket.Broadcast{} with the topic, event and payload.
    CHECK(n->eval("[N || #{'__struct__' := 'Elixir.Phoenix.Socket.Broadcast', "
                  "topic := <<\"room:1\">>, event := <<\"new_msg\">>, "
                  "payload := #{<<\"n\">> := N, <<\"body\">> := <<\"hi\">>}} "
                  "<- pubsub_fixture:received(<<\"room:1\">>)]") == "[0,1,2,3,4]");
    CHECK(n->eval("pubsub_fixture:received(<<\"room:2\">>)") == "[]");
  }
  // Exactly once: a sixth broadcast, queued behind the five on the same
  // connections, arrives and the counts are then 6.
  CHECK(http("POST", relay.url("/v1/broadcast"), new_msg_body("room:1", 5)).status == 202);
  for (auto* n : {&t1, &t2}) {
    REQUIRE(wait_until(
        [&] { return n->eval("length(pubsub_fixture:received(<<\"room:1\">>)) >= 6") == "true"; }));
    CHECK(n->eval("length(pubsub_fixture:received(<<\"room:1\">>))") == "6");
  }

  auto m = http("GET", relay.url("/metrics"));
  CHECK(m.status == 200);
  CHECK(m.headers.find("text/plain; version=0.0.4") != std::string::npos);
  CHECK(m.body.find("beamlink_peers 2\n") != std::string::npos);
  CHECK(m.body.find("beamlink_relay_broadcasts_total{outcome=\"accepted\"} 6\n") !=
        std::string::npos);
  CHECK(m.body.find("beamlink_relay_messages_queued_total 12\n") != std::string::npos);
  CHECK(m.body.find("beamlink_relay_http_broadcast_responses_total{status=\"202\"} 6\n") !=
        std::string::npos);
  CHECK(m.body.find("beamlink_epmd_registered 1\n") != std::string::npos);
  // Prometheus's own parser reads every family.
  // Debian's python3 (python3-prometheus-client), whatever python3 is first on PATH.
  auto parsed = run({"/usr/bin/python3", "-c",
                     "import sys, urllib.request\n"
                     "from prometheus_client.parser import text_string_to_metric_families\n"
                     "text = urllib.request.urlopen(sys.argv[1]).read().decode()\n"
                     "fams = list(text_string_to_metric_families(text))\n"
                     "print(len(fams), sum(len(f.samples) for f in fams))\n",
                     relay.url("/metrics")},
                    20s);
  CHECK_MESSAGE(parsed.code == 0, parsed.err);
  CHECK(std::atoi(parsed.out.c_str()) >= 20);
}

TEST_CASE("relay: bad requests get their status and reason") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub", {"--relay-max-body", "4096"});
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  auto r = http("POST", relay.url("/v1/broadcast"), R"({"topic":"t","event":"e","payload":{)");
  CHECK(r.status == 400);
  CHECK(r.body.find("\"error\":\"bad_json\"") != std::string::npos);
  r = http("POST", relay.url("/v1/broadcast"), R"({"topic":"t","event":"e"})");
  CHECK(r.status == 400);
  CHECK(r.body.find("missing field \\\"payload\\\"") != std::string::npos);
  r = http("POST", relay.url("/v1/broadcast"),
           R"({"topic":"t","event":"e","payload":{},"extra":1})");
  CHECK(r.status == 400);
  CHECK(r.body.find("unknown field \\\"extra\\\"") != std::string::npos);
  r = http("POST", relay.url("/v1/broadcast"), std::string(5000, ' ') + "{}");
  CHECK(r.status == 413);
  std::string deep = R"({"topic":"t","event":"e","payload":{"a":)" + std::string(100, '[') +
                     std::string(100, ']') + "}}";
  r = http("POST", relay.url("/v1/broadcast"), deep);
  CHECK(r.status == 400);
  CHECK(r.body.find("nested deeper than 64") != std::string::npos);
  r = http("POST", relay.url("/v1/broadcast"),
           "{\"topic\":\"t\xff\",\"event\":\"e\",\"payload\":{}}");
  CHECK(r.status == 400);
  CHECK(r.body.find("UTF-8") != std::string::npos);
  r = http("POST", relay.url("/v1/broadcast"),
           R"({"topic":"t","event":"e","payload":{"n":123456789012345678901234567890}})");
  CHECK(r.status == 400);
  CHECK(r.body.find("range") != std::string::npos);
  r = http("GET", relay.url("/v1/broadcast"));
  CHECK(r.status == 405);
  r = http("GET", relay.url("/nowhere"));
  CHECK(r.status == 404);
  // After all that the relay still works.
  r = http("POST", relay.url("/v1/broadcast"), new_msg_body("t", 1));
  CHECK(r.status == 202);
}

TEST_CASE("relay: no peer answers 503 on /healthz and /v1/broadcast - with the reason") {
  Epmd epmd;
  Relay relay(epmd.port(), {}, "My.PubSub");
  HttpReply h;
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        h = http("GET", relay.url("/healthz"));
                        return h.status == 503 &&
                               h.body.find("no BEAM node connected") != std::string::npos;
                      },
                      20s),
                  (relay.proc->err() + h.body));
  CHECK(h.body.find("set NODE_DNS or --connect") != std::string::npos);
  auto r = http("POST", relay.url("/v1/broadcast"), new_msg_body("room:1", 1));
  CHECK(r.status == 503);
  CHECK(r.body.find("not_connected") != std::string::npos);
  CHECK(r.headers.find("Retry-After: 1") != std::string::npos);
  // epmd gone: the registration is lost and /healthz says so.
  epmd.kill();
  REQUIRE(wait_until(
      [&] {
        h = http("GET", relay.url("/healthz"));
        return h.body.find("not registered with epmd") != std::string::npos;
      },
      20s));
  CHECK(h.status == 503);
}

TEST_CASE("relay: a full queue answers 503 with Retry-After and is counted") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"t\">>)") == "ok");
  // A queue of 2 and a node that stops reading (bodies of 100 kB, under
  // the 128 kB a single argv string may have): SIGSTOP freezes it, so what
  // we send piles up once the socket buffers fill.
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub", {"--relay-queue", "2"});
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  REQUIRE(wait_until([&] { return joined_everywhere(t1, 1); }, 20s));
  t1.process().signal(SIGSTOP);
  std::string big =
      R"({"topic":"t","event":"e","payload":{"pad":")" + std::string(100000, 'x') + "\"}}";
  int accepted = 0, refused = 0;
  HttpReply last;
  INFO("accepted ", accepted, ", refused ", refused, ", last: ", last.status, " ", last.body);
  REQUIRE(wait_until(
      [&] {
        last = http("POST", relay.url("/v1/broadcast"), big);
        (last.status == 202 ? accepted : refused)++;
        return last.status == 503;
      },
      60s));
  t1.process().signal(SIGCONT);
  CHECK(last.body.find("queue_full") != std::string::npos);
  CHECK(last.body.find("t1@127.0.0.1") != std::string::npos);
  CHECK(last.headers.find("Retry-After") != std::string::npos);
  auto m = http("GET", relay.url("/metrics"));
  CHECK(m.body.find("beamlink_relay_broadcasts_total{outcome=\"refused_queue_full\"} 1\n") !=
        std::string::npos);
  // Once the node reads again, everything accepted arrives.
  REQUIRE(wait_until(
      [&] {
        return t1.eval("length(pubsub_fixture:received(<<\"t\">>))") == std::to_string(accepted);
      },
      30s));
}

TEST_CASE("relay: a queue over --relay-queue-bytes answers 503 naming the byte bound") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"t\">>)") == "ok");
  // A byte bound of 64 KiB, the count bound left at its default: messages
  // of about 40 kB, so two waiting for the frozen node are over the bytes
  // long before they are over the count.
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub", {"--relay-queue-bytes", "65536"});
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 60s),
                  relay.proc->err());
  REQUIRE(wait_until([&] { return joined_everywhere(t1, 1); }, 60s));
  t1.process().signal(SIGSTOP);
  std::string big =
      R"({"topic":"t","event":"e","payload":{"pad":")" + std::string(40000, 'x') + "\"}}";
  int accepted = 0;
  HttpReply last;
  INFO("accepted ", accepted, ", last: ", last.status, " ", last.body);
  REQUIRE(wait_until(
      [&] {
        last = http("POST", relay.url("/v1/broadcast"), big);
        if (last.status == 202) ++accepted;
        return last.status == 503;
      },
      120s));
  CHECK(last.body.find("queue_full") != std::string::npos);
  CHECK(last.body.find("t1@127.0.0.1") != std::string::npos);
  CHECK(last.body.find("byte bound") != std::string::npos);
  CHECK(last.body.find("at most 65536") != std::string::npos);
  CHECK(last.body.find("--relay-queue-bytes") != std::string::npos);
  CHECK(last.headers.find("Retry-After") != std::string::npos);
  auto m = http("GET", relay.url("/metrics")).body;
  CHECK(m.find("beamlink_relay_queue_refusals_total{bound=\"bytes\"} ") != std::string::npos);
  CHECK(m.find("beamlink_relay_queue_refusals_total{bound=\"bytes\"} 0\n") == std::string::npos);
  CHECK(m.find("beamlink_relay_queue_refusals_total{bound=\"count\"} 0\n") != std::string::npos);
  CHECK(m.find("beamlink_relay_queue_limit{bound=\"bytes\"} 65536\n") != std::string::npos);
  CHECK(m.find("beamlink_relay_queue_limit{bound=\"count\"} 10000\n") != std::string::npos);
  // The node back: its queue drains and a later POST is accepted.
  t1.process().signal(SIGCONT);
  REQUIRE(wait_until(
      [&] {
        last = http("POST", relay.url("/v1/broadcast"), big);
        if (last.status == 202) ++accepted;
        return last.status == 202;
      },
      60s));
  REQUIRE(wait_until(
      [&] {
        return t1.eval("length(pubsub_fixture:received(<<\"t\">>))") == std::to_string(accepted);
      },
      60s));
}

TEST_CASE(
    "relay: beyond loopback without a token it refuses to start - with one - 401 without it") {
  Epmd epmd;
  auto port = std::to_string(free_port());
  auto r =
      run({beamlink_bin(), "run", "--name", "relay@127.0.0.1", "--relay-listen", "0.0.0.0:" + port},
          20s, beamlink_env(epmd.port()));
  CHECK(r.code == 2);
  CHECK(r.err.find("beyond loopback, without a token") != std::string::npos);
  CHECK(r.err.find("RELAY_TOKEN") != std::string::npos);

  Relay relay(epmd.port(), {}, "", {"--relay-token", "s3cret"});
  HttpReply h;
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        h = http("GET", relay.url("/healthz"));
                        return h.status == 401;
                      },
                      20s),
                  relay.proc->err());
  h = http("GET", relay.url("/healthz"), "", {"-H", "Authorization: Bearer s3cret"});
  CHECK(h.status == 503);  // authorized; unhealthy (no peer)
  h = http("GET", relay.url("/healthz"), "", {"-H", "Authorization: Bearer wrong"});
  CHECK(h.status == 401);
}

TEST_CASE("beamlink broadcast sends one broadcast to every node's subscribers and exits") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()), false);
  ErlNode t2(erl_options("t2@127.0.0.1", epmd.port()), false);
  t1.wait_ready();
  t2.wait_ready();
  for (auto* n : {&t1, &t2}) {
    CHECK(n->eval("pubsub_fixture:start(<<\"My.PubSub\">>, 3)") == "ok");
    CHECK(n->eval("pubsub_fixture:subscribe(<<\"room:9\">>)") == "ok");
  }
  auto bin = beamlink_bin();
  auto r = run({bin, "broadcast", "--pubsub", "My.PubSub", "--connect", "t1@127.0.0.1", "--connect",
                "t2@127.0.0.1", "room:9", "ping", R"({"n":7,"ok":true})"},
               30s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "broadcast room:9 ping: 2 message(s) written (one per node per pubsub)\n");
  for (auto* n : {&t1, &t2}) {
    REQUIRE(wait_until(
        [&] { return n->eval("length(pubsub_fixture:received(<<\"room:9\">>))") == "1"; }));
    CHECK(n->eval("[{E, P} || #{'__struct__' := 'Elixir.Phoenix.Socket.Broadcast', event := E, "
                  "payload := P} <- pubsub_fixture:received(<<\"room:9\">>)]") ==
          "[{<<\"ping\">>,#{<<\"n\">> => 7,<<\"ok\">> => true}}]");
  }
  // Bad payload: usage error, nothing sent.
  r = run({bin, "broadcast", "--pubsub", "My.PubSub", "--connect", "t1@127.0.0.1", "room:9", "e",
           "[1,2"},
          30s, beamlink_env(epmd.port()));
  CHECK(r.code == 2);
  CHECK(r.err.find("JSON") != std::string::npos);
  // A pubsub no node runs: exit 1, and it says so.
  r = run({bin, "broadcast", "--pubsub", "Other.PubSub:2", "--connect", "t1@127.0.0.1", "--timeout",
           "1500", "room:9", "e", "{}"},
          30s, beamlink_env(epmd.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("runs none of the pubsubs") != std::string::npos);
  CHECK(t1.eval("length(pubsub_fixture:received(<<\"room:9\">>))") == "1");
}

TEST_CASE("beamlink broadcast and run with --pg-scope use another pg scope") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:use_scope(beamlink_test_scope)") == "ok");
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 2)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"room:s\">>)") == "ok");
  CHECK(t1.eval("whereis('Elixir.Phoenix.PubSub')") == "undefined");
  auto bin = beamlink_bin();
  // The default scope finds no 2.x pubsub there; the configured one does.
  auto r = run({bin, "broadcast", "--pubsub", "My.PubSub:2", "--connect", "t1@127.0.0.1",
                "--timeout", "1500", "room:s", "e", "{}"},
               30s, beamlink_env(epmd.port()));
  CHECK(r.code == 1);
  r = run({bin, "broadcast", "--pubsub", "My.PubSub:2", "--pg-scope", "beamlink_test_scope",
           "--connect", "t1@127.0.0.1", "room:s", "first", "{}"},
          30s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  // run takes it from PG_SCOPE: its members join the scope's pool groups.
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub:2", {},
              {{"PG_SCOPE", "beamlink_test_scope"}});
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  REQUIRE(wait_until([&] {
    return t1.eval(
               "length([P || G <- pg:which_groups(beamlink_test_scope), "
               "P <- pg:get_members(beamlink_test_scope, G), node(P) =/= node()])") == "2";
  }));
  auto h = http("POST", relay.url("/v1/broadcast"),
                R"({"topic":"room:s","event":"second","payload":{}})");
  CHECK_MESSAGE(h.status == 202, h.body);
  REQUIRE(wait_until(
      [&] { return t1.eval("length(pubsub_fixture:received(<<\"room:s\">>))") == "2"; }));
  CHECK(t1.eval("[E || #{event := E} <- pubsub_fixture:received(<<\"room:s\">>)]") ==
        "[<<\"first\">>,<<\"second\">>]");
  // An empty name is a usage error.
  r = run({bin, "broadcast", "--pubsub", "My.PubSub", "--pg-scope", "", "--connect", "t1@127.0.0.1",
           "room:s", "e", "{}"},
          30s, beamlink_env(epmd.port()));
  CHECK(r.code == 2);
  CHECK(r.err.find("the pg scope name is empty") != std::string::npos);
}

TEST_CASE("relay: --relay-atom-keys and --relay-atom-values give eWallet's payload shape") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"wallet:1\">>)") == "ok");
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub",
              {"--relay-atom-keys", "--relay-atom-values", "status"});
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  REQUIRE(wait_until([&] { return joined_everywhere(t1, 1); }, 20s));
  auto r = http("POST", relay.url("/v1/broadcast"),
                R"({"topic":"wallet:1","event":"transaction","payload":)"
                R"({"status":"ok","data":{"amount":100,"status":"confirmed"},)"
                R"("tag":{"$tuple":[{"$atom":"ok"},1]}}})");
  CHECK_MESSAGE(r.status == 202, r.body);
  REQUIRE(wait_until(
      [&] { return t1.eval("length(pubsub_fixture:received(<<\"wallet:1\">>))") == "1"; }));
  CHECK(t1.eval("[P || #{payload := P} <- pubsub_fixture:received(<<\"wallet:1\">>)]") ==
        "[#{data => #{amount => 100,status => confirmed},status => ok,tag => {ok,1}}]");
}

TEST_CASE("beamlink broadcast --atom-keys --atom-values gives a 1.1 pubsub eWallet's payload") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start_v1(<<\"EWalletAPI.PubSub\">>)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"user:1\">>)") == "ok");
  auto r = run({beamlink_bin(), "broadcast", "--pubsub", "EWalletAPI.PubSub:1.1", "--connect",
                "t1@127.0.0.1", "--atom-keys", "--atom-values", "status", "user:1", "transaction",
                R"({"status":"ok","data":{"amount":100},"error":null})"},
               30s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  REQUIRE(wait_until(
      [&] { return t1.eval("length(pubsub_fixture:received(<<\"user:1\">>))") == "1"; }));
  CHECK(t1.eval("[P || #{payload := P} <- pubsub_fixture:received(<<\"user:1\">>)]") ==
        "[#{data => #{amount => 100},error => nil,status => ok}]");
}

TEST_CASE("relay: SIGTERM writes what was accepted before it stops") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 1)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"t\">>)") == "ok");
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub");
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  REQUIRE(wait_until([&] { return joined_everywhere(t1, 1); }, 20s));
  // The node stops reading: accepted messages pile up in the relay's queue.
  t1.process().signal(SIGSTOP);
  std::string big =
      R"({"topic":"t","event":"e","payload":{"pad":")" + std::string(100000, 'x') + "\"}}";
  int accepted = 0;
  REQUIRE(wait_until(
      [&] {
        if (http("POST", relay.url("/v1/broadcast"), big).status == 202) ++accepted;
        auto m = http("GET", relay.url("/metrics")).body;
        return m.find("beamlink_relay_queue_depth{node=\"t1@127.0.0.1\"} ") != std::string::npos &&
               m.find("beamlink_relay_queue_depth{node=\"t1@127.0.0.1\"} 0\n") ==
                   std::string::npos &&
               m.find("beamlink_relay_queue_bytes{node=\"t1@127.0.0.1\"} ") != std::string::npos &&
               m.find("beamlink_relay_queue_bytes{node=\"t1@127.0.0.1\"} 0\n") == std::string::npos;
      },
      60s));
  relay.proc->signal(SIGTERM);
  REQUIRE(relay.proc->wait_err("before stopping", 10s));
  // The listener is closed at once; the node reads again; the relay writes
  // the rest and exits.
  CHECK(http("GET", relay.url("/healthz")).status == 0);
  t1.process().signal(SIGCONT);
  auto rc = relay.proc->wait(20s);
  REQUIRE(rc.has_value());
  CHECK(*rc == 0);
  CHECK(relay.proc->err().find("not written") == std::string::npos);
  REQUIRE(wait_until(
      [&] {
        return t1.eval("length(pubsub_fixture:received(<<\"t\">>))") == std::to_string(accepted);
      },
      30s));
}

TEST_CASE("relay: auto finds a 1.1 pubsub started after the node connected") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "Late.PubSub");
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 20s),
                  relay.proc->err());
  REQUIRE(relay.proc->wait_err("has no such pubsub (yet)", 10s));
  auto r = http("POST", relay.url("/v1/broadcast"), new_msg_body("late", 1));
  CHECK(r.status == 503);
  // The app starts its pubsub later (eWallet's 1.1: a PG2Server under the name).
  CHECK(t1.eval("pubsub_fixture:start_v1(<<\"Late.PubSub\">>)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"late\">>)") == "ok");
  REQUIRE(wait_until(
      [&] {
        return http("POST", relay.url("/v1/broadcast"), new_msg_body("late", 2)).status == 202;
      },
      20s));
  CHECK(relay.proc->err().find("runs Phoenix.PubSub 1.1") != std::string::npos);
  REQUIRE(
      wait_until([&] { return t1.eval("length(pubsub_fixture:received(<<\"late\">>))") == "1"; }));
}

TEST_CASE("relay: /readyz is 503 until a connected node has the pubsub and /healthz stays live") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  // t1 has a pubsub, but not the relay's: the relay is alive, not ready.
  CHECK(t1.eval("pubsub_fixture:start(<<\"Other.PubSub\">>, 1)") == "ok");
  Relay relay(epmd.port(), {"t1@127.0.0.1"}, "My.PubSub");
  REQUIRE_MESSAGE(wait_until([&] { return http("GET", relay.url("/healthz")).status == 200; }, 60s),
                  relay.proc->err());
  // The relay has synced with t1's scope (its members are there), so it
  // knows what t1 has.
  REQUIRE(wait_until(
      [&] {
        return t1.eval(
                   "lists:any(fun(G) -> lists:any(fun(P) -> node(P) =:= 'relay@127.0.0.1' "
                   "end, pg:get_members('Elixir.Phoenix.PubSub', G)) end, "
                   "pg:which_groups('Elixir.Phoenix.PubSub'))") == "true";
      },
      60s));
  HttpReply h = http("GET", relay.url("/readyz"));
  CHECK(h.status == 503);
  CHECK(h.body.find("\"error\":\"not_ready\"") != std::string::npos);
  CHECK_MESSAGE(h.body.find("no connected BEAM node has the configured pubsub(s) "
                            "(Elixir.My.PubSub)") != std::string::npos,
                h.body);
  CHECK(http("POST", relay.url("/v1/broadcast"), new_msg_body("room:1", 1)).status == 503);
  // The node starts My.PubSub: the relay finds it and becomes ready.
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 2)") == "ok");
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        h = http("GET", relay.url("/readyz"));
                        return h.status == 200;
                      },
                      60s),
                  (relay.proc->err() + h.body));
  CHECK(h.body.find("\"status\":\"ready\"") != std::string::npos);
  CHECK(h.body.find("\"Elixir.My.PubSub\":[\"t1@127.0.0.1\"]") != std::string::npos);
  CHECK(http("POST", relay.url("/v1/broadcast"), new_msg_body("room:1", 2)).status == 202);
}

TEST_CASE("relay: /readyz is 503 with the reason while no peer is connected") {
  Epmd epmd;
  Relay relay(epmd.port(), {}, "Nobody.PubSub");
  HttpReply h;
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        h = http("GET", relay.url("/readyz"));
                        return h.status == 503 &&
                               h.body.find("no BEAM node connected") != std::string::npos;
                      },
                      60s),
                  (relay.proc->err() + h.body));
  CHECK(h.body.find("\"error\":\"not_ready\"") != std::string::npos);
}
