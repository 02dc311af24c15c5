// The relay inside the eWallet deployment simulated by scripts/cluster: Elixir
// pods running tests/fixtures/phoenix_pubsub.ex (Phoenix.PubSub 2.x pools, or
// eWallet's two 1.1 pubsubs), beamlink run in its own namespace with PUBSUB
// and the relay on its loopback, and real clients there: curl, python's
// http.client and the official phoenix npm client over ws.
#include <doctest/doctest.h>

#include <functional>
#include <sstream>

#include "cluster_fixture.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kOk = R"({"$atom":"ok"})";

// beamlink run in the cluster's beamlink namespace, relaying PUBSUB.
struct Relay : BeamlinkInNs {
  Relay(Cluster& c, const std::string& pubsub, std::vector<std::string> extra = {})
      : BeamlinkInNs(c, args(pubsub, std::move(extra))) {
    REQUIRE_MESSAGE(proc->wait_out("is up", 60s), proc->err());
  }
  static std::vector<std::string> args(const std::string& pubsub, std::vector<std::string> extra) {
    std::vector<std::string> a = {"run", "--pubsub", pubsub};
    a.insert(a.end(), extra.begin(), extra.end());
    return a;
  }
  std::string metrics() { return http("GET", "/metrics").body; }
  // The value of a metric line "NAME{labels} VALUE" (-1 when absent).
  long long metric(const std::string& series) {
    auto text = metrics();
    auto at = text.find("\n" + series + " ");
    if (at == std::string::npos) return -1;
    return std::atoll(text.c_str() + at + series.size() + 2);
  }
};

// The payload "n" of each Socket.Broadcast pod `pod`'s recorder of NAME got
// on topic, in order, as JSON ("[0,1,2]"); other messages as null.
std::string ns_received(Cluster& c, int pod, const std::string& name, const std::string& topic) {
  return pubsub(c, pod,
                "messages(\"" + name + "\", \"" + topic +
                    "\") |> Enum.map(fn %Phoenix.Socket.Broadcast{topic: \"" + topic +
                    "\", event: \"new_msg\", payload: %{\"n\" => n}} -> n; _ -> nil end)");
}

std::string seq(int from, int to) {
  std::string s = "[";
  for (int i = from; i <= to; ++i) s += (i == from ? "" : ",") + std::to_string(i);
  return s + "]";
}

// POSTs 0..count-1 on topic, then waits until every pod's recorder of every
// name has them all and checks each got each exactly once, in order.
void check_post_reaches_each_pod_once(Cluster& c, Relay& relay,
                                      const std::vector<std::string>& names, int pods) {
  for (auto& n : names)
    for (int p = 1; p <= pods; ++p)
      REQUIRE(pubsub(c, p, "subscribe(\"" + n + "\", \"room:1\")") == kOk);
  // Ready once every pod's pubsubs are known: 202 (not 503 not_connected),
  // and the relay's metrics show a node per pod in each bridge's plan: wait
  // for healthz, then for a probe broadcast on another topic to reach all.
  REQUIRE(wait_until([&] { return relay.http("GET", "/healthz").status == 200; }, 60s));
  REQUIRE(wait_until(
      [&] {
        auto before = relay.metric("beamlink_relay_messages_queued_total");
        if (relay.http("POST", "/v1/broadcast", broadcast_body("probe", "p", 0)).status != 202)
          return false;
        return relay.metric("beamlink_relay_messages_queued_total") - before ==
               static_cast<long long>(pods * names.size());
      },
      20s));
  const int count = 20;
  for (int i = 0; i < count; ++i) {
    auto r = relay.http("POST", "/v1/broadcast", broadcast_body("room:1", "new_msg", i));
    REQUIRE_MESSAGE(r.status == 202, r.body);
  }
  for (auto& n : names) {
    for (int p = 1; p <= pods; ++p) {
      CHECK(pubsub(c, p,
                   "wait_count(\"" + n + "\", \"room:1\", " + std::to_string(count) +
                       ", 10_000)") == std::to_string(count));
    }
  }
  // A last one behind them on every connection: once it is in, anything
  // duplicated would be in too.
  REQUIRE(relay.http("POST", "/v1/broadcast", broadcast_body("room:1", "new_msg", count)).status ==
          202);
  for (auto& n : names) {
    for (int p = 1; p <= pods; ++p) {
      CHECK(pubsub(c, p,
                   "wait_count(\"" + n + "\", \"room:1\", " + std::to_string(count + 1) +
                       ", 10_000)") == std::to_string(count + 1));
      CHECK(ns_received(c, p, n, "room:1") == seq(0, count));
    }
  }
}

}  // namespace

TEST_CASE("relay in the cluster: POST reaches each pod's subscribers once (2.x pools 3 and 1)") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:EWalletAPI.PubSub:3,2:AdminAPI.PubSub:1";
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  Relay relay(c, "EWalletAPI.PubSub,AdminAPI.PubSub");
  check_post_reaches_each_pod_once(c, relay, {"EWalletAPI.PubSub", "AdminAPI.PubSub"}, 3);
  CHECK(relay.metric("beamlink_relay_messages_dropped_total{reason=\"expired\"}") == 0);
  CHECK(pubsub(c, 1, "errors()") == "[]");
}

TEST_CASE("relay in the cluster: eWallet's two 1.1 pubsubs - found by auto - get each POST once") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "1.1:EWalletAPI.PubSub,1.1:AdminAPI.PubSub";
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  Relay relay(c, "EWalletAPI.PubSub,AdminAPI.PubSub");
  check_post_reaches_each_pod_once(c, relay, {"EWalletAPI.PubSub", "AdminAPI.PubSub"}, 2);
  CHECK(relay.proc->wait_err("runs Phoenix.PubSub 1.1", 60s));
  CHECK(pubsub(c, 2, "errors()") == "[]");
}

TEST_CASE(
    "relay in the cluster: the phoenix client joins and pushes and gets a pod's broadcast once") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:EWalletAPI.PubSub:3";
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  Relay relay(c, "EWalletAPI.PubSub");
  for (int p = 1; p <= 2; ++p) {
    REQUIRE(pubsub(c, p, "subscribe(\"EWalletAPI.PubSub\", \"room:a\")") == kOk);
    REQUIRE(pubsub(c, p, "subscribe(\"EWalletAPI.PubSub\", \"room:b\")") == kOk);
  }
  REQUIRE(wait_until([&] { return relay.http("GET", "/healthz").status == 200; }, 60s));
  // Both pods' scopes have beamlink's members in all three pool groups.
  REQUIRE(wait_until(
      [&] {
        auto m = pubsub(c, 1, "members(\"EWalletAPI.PubSub\")");
        std::size_t n = 0;
        for (auto at = m.find(relay.node()); at != std::string::npos;
             at = m.find(relay.node(), at + 1))
          ++n;
        return n == 3;
      },
      20s));
  auto js = source_path("tests/js/phoenix_client.js");
  Subprocess a(relay.in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:a"}));
  Subprocess b(relay.in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:b"}));
  REQUIRE_MESSAGE(a.wait_out("joined room:a", 60s), a.err());
  REQUIRE_MESSAGE(b.wait_out("joined room:b", 60s), b.err());
  REQUIRE(a.wait_out("push ok", 60s));
  REQUIRE(b.wait_out("push ok", 60s));
  // Each client's push reached both pods as a channel broadcast.
  for (int p = 1; p <= 2; ++p) {
    CHECK(pubsub(c, p, "wait_count(\"EWalletAPI.PubSub\", \"room:a\", 1, 10_000)") == "1");
    CHECK(pubsub(c, p,
                 "match?([%Phoenix.Socket.Broadcast{event: \"shout\", payload: %{\"body\" => "
                 "\"hi from room:a\"}}], messages(\"EWalletAPI.PubSub\", \"room:a\"))") == "true");
  }
  // A broadcast on each pod, each from new processes (different pool groups),
  // then the fences that end the clients.
  for (int p = 1; p <= 2; ++p)
    CHECK(pubsub(c, p,
                 "broadcast_from_new_process(\"EWalletAPI.PubSub\", \"room:a\", "
                 "%Phoenix.Socket.Broadcast{topic: \"room:a\", event: \"hello\", payload: "
                 "%{\"from\" => " +
                     std::to_string(p) + "}}, Phoenix.Channel.Server)") == kOk);
  for (auto t : {"room:a", "room:b"})
    CHECK(pubsub(c, 1,
                 std::string("broadcast(\"EWalletAPI.PubSub\", \"") + t +
                     "\", %Phoenix.Socket.Broadcast{topic: \"" + t +
                     "\", event: \"fence\", payload: %{}}, Phoenix.Channel.Server)") == kOk);
  REQUIRE_MESSAGE(a.wait(60s).has_value(), a.out() << a.err() << relay.proc->err());
  REQUIRE_MESSAGE(b.wait(60s).has_value(), b.out() << b.err() << relay.proc->err());
  auto out_a = a.out(), out_b = b.out();
  auto count = [](const std::string& s, const std::string& needle) {
    int n = 0;
    for (auto at = s.find(needle); at != std::string::npos; at = s.find(needle, at + 1)) ++n;
    return n;
  };
  INFO("client a:\n" << out_a << "client b:\n" << out_b);
  CHECK(count(out_a, "msg room:a hello {\"from\":1}") == 1);
  CHECK(count(out_a, "msg room:a hello {\"from\":2}") == 1);
  CHECK(count(out_a, "msg room:a shout") == 1);  // its own push, as Phoenix echoes it
  CHECK(out_a.find("summary shouts=1 other_topics=0") != std::string::npos);
  CHECK(out_b.find("hello") == std::string::npos);
  CHECK(out_b.find("summary shouts=1 other_topics=0") != std::string::npos);
}

TEST_CASE("relay in the cluster: a restarted pod scope gets beamlink's membership back") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:EWalletAPI.PubSub:3";
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  Relay relay(c, "EWalletAPI.PubSub");
  auto beamlink_groups = [&] {
    auto m = pubsub(c, 1, "members(\"EWalletAPI.PubSub\")");
    std::size_t n = 0;
    for (auto at = m.find(relay.node()); at != std::string::npos; at = m.find(relay.node(), at + 1))
      ++n;
    return n;
  };
  REQUIRE(wait_until([&] { return beamlink_groups() == 3; }, 60s));
  pubsub(c, 1, "restart_scope()");
  // The new scope knows nothing of a hidden node until beamlink announces
  // itself again (it does periodically).
  CHECK(wait_until([&] { return beamlink_groups() == 3; }, 120s));
  // And a broadcast from pod 1 reaches beamlink's subscriber again.
  Subprocess sub(relay.in_ns(
      {"node", source_path("tests/js/phoenix_client.js"), "ws://127.0.0.1:7070/socket", "room:r"}));
  REQUIRE(sub.wait_out("joined room:r", 60s));
  pubsub(c, 1,
         "broadcast(\"EWalletAPI.PubSub\", \"room:r\", %Phoenix.Socket.Broadcast{topic: "
         "\"room:r\", event: \"fence\", payload: %{\"after\" => \"restart\"}}, "
         "Phoenix.Channel.Server)");
  CHECK(sub.wait_out("msg room:r fence {\"after\":\"restart\"}", 60s));
}

namespace {

// A pod killed mid-stream, in a cluster of either generation: once a probe
// POST reaches all 3 pods, a keep-alive client POSTs n broadcasts 0..n-1 on
// topic "s" through `relay` while pod 3 is killed. Every one is accepted
// (pods 1 and 2 were there all along), survivor_checks(pod, n) checks that
// pod's subscriber got them all in order, and the relay's counters account
// for every message queued.
void a_pod_killed_mid_stream(Cluster& c, Relay& relay, int n,
                             const std::function<void(int pod, int n)>& survivor_checks) {
  REQUIRE(wait_until(
      [&] {
        auto before = relay.metric("beamlink_relay_messages_queued_total");
        return relay.http("POST", "/v1/broadcast", broadcast_body("probe", "p", 0)).status == 202 &&
               relay.metric("beamlink_relay_messages_queued_total") - before == 3;
      },
      60s));
  // A keep-alive client POSTing 0..N-1 and counting answers by status.
  std::string py =
      "import http.client, sys, collections\n"
      "c = http.client.HTTPConnection('127.0.0.1', 7070)\n"
      "st = collections.Counter()\n"
      "accepted = []\n"
      "for i in range(" +
      std::to_string(n) +
      "):\n"
      "    body = '{\"topic\":\"s\",\"event\":\"new_msg\",\"payload\":{\"n\":%d}}' % i\n"
      "    c.request('POST', '/v1/broadcast', body, {'Content-Type': 'application/json'})\n"
      "    r = c.getresponse(); r.read()\n"
      "    st[r.status] += 1\n"
      "    if r.status == 202: accepted.append(i)\n"
      "print('statuses', dict(st))\n"
      "print('accepted', len(accepted))\n";
  Subprocess client(relay.in_ns({"/usr/bin/python3", "-c", py}));
  // Kill pod 3 once the stream is under way.
  REQUIRE(wait_until(
      [&] { return std::stoi(pubsub(c, 1, "count(\"EWalletAPI.PubSub\", \"s\")")) >= 2000; }, 60s));
  REQUIRE(c.cmd({"kill-pod", "3"}).code == 0);
  REQUIRE(client.wait(120s) == 0);
  auto out = client.out();
  INFO(out);
  auto at = out.find("accepted ");
  REQUIRE(at != std::string::npos);
  int accepted = std::atoi(out.c_str() + at + 9);
  CHECK(accepted == n);  // pods 1 and 2 were there all along: no 503
  // Every accepted broadcast reached both survivors exactly once, in order.
  for (int p = 1; p <= 2; ++p) survivor_checks(p, n);
  // Nothing without a trace: every message queued for a node was written to
  // its connection, or retried, or expired (pod 3 stays down past the TTL);
  // none is left waiting (every queue_depth series is 0).
  REQUIRE(wait_until(
      [&] {
        std::istringstream t(relay.metrics());
        for (std::string line; std::getline(t, line);)
          if (line.starts_with("beamlink_relay_queue_depth{") && !line.ends_with(" 0"))
            return false;
        return true;
      },
      20s));
  auto queued = relay.metric("beamlink_relay_messages_queued_total");
  auto delivered = relay.metric("beamlink_relay_messages_delivered_total");
  auto expired = relay.metric("beamlink_relay_messages_dropped_total{reason=\"expired\"}");
  auto retried = relay.metric("beamlink_relay_messages_retried_total");
  MESSAGE("queued " << queued << ", delivered " << delivered << ", retried " << retried
                    << ", expired " << expired);
  CHECK(queued == delivered + expired);
  if (retried > 0)
    CHECK(relay.proc->err().find("were not written before its connection closed") !=
          std::string::npos);
  if (expired > 0) CHECK(relay.proc->err().find("dropped") != std::string::npos);
}

}  // namespace

TEST_CASE(
    "relay in the cluster: a pod killed mid-stream costs the survivors nothing and is counted") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:EWalletAPI.PubSub:1";
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  Relay relay(c, "EWalletAPI.PubSub", {"--relay-ttl", "3000"});
  for (int p = 1; p <= 3; ++p)
    REQUIRE(pubsub(c, p, "subscribe(\"EWalletAPI.PubSub\", \"s\")") == kOk);
  a_pod_killed_mid_stream(c, relay, 20000, [&](int p, int n) {
    CHECK(pubsub(c, p,
                 "wait_count(\"EWalletAPI.PubSub\", \"s\", " + std::to_string(n) + ", 20_000)") ==
          std::to_string(n));
    CHECK(pubsub(c, p,
                 "messages(\"EWalletAPI.PubSub\", \"s\") |> Enum.map(& &1.payload[\"n\"]) == "
                 "Enum.to_list(0.." +
                     std::to_string(n - 1) + ")") == "true");
  });
}

namespace {

// Pod `pod`'s pg2 members of {phx, NAME} include `node` (within 60 s).
bool pg2_member(Cluster& c, int pod, const std::string& name, const std::string& node) {
  auto m = pubsub(c, pod,
                  "wait_until(fun() -> member_nodes(\"" + name +
                      "\") end, fun(L) -> lists:member(<<\"" + node + "\">>, L) end, 60000)");
  return m.find("\"" + node + "\"") != std::string::npos;
}

// An OTP 22 Erlang expression: a %Phoenix.Socket.Broadcast{} on topic.
std::string socket_broadcast22(const std::string& topic, const std::string& event,
                               const std::string& payload) {
  return "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<\"" + topic +
         "\">>, event => <<\"" + event + "\">>, payload => " + payload + "}";
}

}  // namespace

TEST_CASE(
    "relay in an OTP 22 cluster: Phoenix.PubSub 1.1 on pg2 both ways - POST and WebSocket and "
    "subscribe and restarts") {
  NEED_NETNS();
  NEED_OTP22();
  Cluster c;
  c.env["CLUSTER_OTP"] = "22";
  c.env["CLUSTER_PUBSUB"] = "1.1:EWalletAPI.PubSub,1.1:AdminAPI.PubSub";
  auto up = c.cmd({"up", "2"}, 180s);
  REQUIRE_MESSAGE(up.code == 0, std::string(up.out + up.err));
  const std::vector<std::string> names = {"EWalletAPI.PubSub", "AdminAPI.PubSub"};
  // eWallet's serializer reads atom keys and status =:= ok.
  Relay relay(c, "EWalletAPI.PubSub,AdminAPI.PubSub",
              {"--relay-atom-keys", "--relay-atom-values", "status"});
  CHECK(relay.proc->wait_err("runs Phoenix.PubSub 1.1", 60s));
  // beamlink's member is in {phx, NAME} on every pod (pg2's exchange cast).
  for (auto& n : names)
    for (int p = 1; p <= 2; ++p) CHECK(pg2_member(c, p, n, relay.node()));

  // POST: each pod's 1.1 subscribers get each broadcast once, in order, with
  // atom keys and status => ok.
  for (auto& n : names)
    for (int p = 1; p <= 2; ++p)
      REQUIRE(pubsub(c, p, "subscribe(\"" + n + "\", \"room:1\")") == kOk);
  REQUIRE(wait_until([&] { return relay.http("GET", "/healthz").status == 200; }, 60s));
  REQUIRE(wait_until(
      [&] {
        auto before = relay.metric("beamlink_relay_messages_queued_total");
        if (relay.http("POST", "/v1/broadcast", broadcast_body("probe", "p", 0)).status != 202)
          return false;
        return relay.metric("beamlink_relay_messages_queued_total") - before == 4;
      },
      60s));
  const int count = 10;
  for (int i = 0; i < count; ++i) {
    auto body = R"({"topic":"room:1","event":"new_msg","payload":{"status":"ok","data":{"n":)" +
                std::to_string(i) + "}}}";
    auto r = relay.http("POST", "/v1/broadcast", body);
    REQUIRE_MESSAGE(r.status == 202, r.body);
  }
  for (auto& n : names)
    for (int p = 1; p <= 2; ++p) {
      CHECK(pubsub(c, p,
                   "wait_count(\"" + n + "\", \"room:1\", " + std::to_string(count) + ", 60000)") ==
            std::to_string(count));
      CHECK(pubsub(c, p,
                   "[N || #{'__struct__' := 'Elixir.Phoenix.Socket.Broadcast', event := "
                   "<<\"new_msg\">>, payload := #{status := ok, data := #{n := N}}} <- "
                   "messages(\"" +
                       n + "\", \"room:1\")]") == seq(0, count - 1));
      CHECK(pubsub(c, p, "errors()") == "[]");
    }

  // A pod's 1.1 broadcast reaches a WebSocket client (the phoenix client)
  // and `beamlink subscribe` once each.
  auto js = source_path("tests/js/phoenix_client.js");
  Subprocess ws(relay.in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:a"}));
  REQUIRE_MESSAGE(ws.wait_out("joined room:a", 60s), ws.err());
  auto v = c.vars();
  Subprocess sub(relay.in_ns({binary_path("app/beamlink"), "subscribe", "--cookie-file",
                              v["CLUSTER_COOKIE_FILE"], "--pubsub", "EWalletAPI.PubSub:1.1",
                              "--connect", "ewallet@" + c.pod_ips().at(0), "--connect",
                              "ewallet@" + c.pod_ips().at(1), "room:a"}),
                 Subprocess::Options{{{"NODE_HOST", v["NODE_HOST"]}, {"NET_TICKTIME", "10"}}});
  REQUIRE_MESSAGE(sub.wait_err("subscribed as", 60s), sub.err());
  const std::string sub_node = "beamlink_" + std::to_string(sub.pid()) + "@" + v["NODE_HOST"];
  for (int p = 1; p <= 2; ++p) REQUIRE(pg2_member(c, p, "EWalletAPI.PubSub", sub_node));
  for (int p = 1; p <= 2; ++p)
    CHECK(pubsub(c, p,
                 "broadcast(\"EWalletAPI.PubSub\", \"room:a\", " +
                     socket_broadcast22("room:a", "hello",
                                        "#{<<\"from\">> => " + std::to_string(p) + "}") +
                     ", 'Elixir.Phoenix.Channel.Server')") == kOk);
  CHECK(pubsub(c, 1,
               "broadcast(\"EWalletAPI.PubSub\", \"room:a\", " +
                   socket_broadcast22("room:a", "fence", "#{}") +
                   ", 'Elixir.Phoenix.Channel.Server')") == kOk);
  REQUIRE_MESSAGE(ws.wait(60s).has_value(), ws.out() << ws.err() << relay.proc->err());
  REQUIRE_MESSAGE(wait_until([&] { return occurrences(sub.out(), "\"fence\"") >= 1; }, 60s),
                  sub.out() << sub.err());
  auto out_ws = ws.out(), out_sub = sub.out();
  INFO("client:\n" << out_ws << "subscribe:\n" << out_sub);
  CHECK(occurrences(out_ws, "msg room:a hello {\"from\":1}") == 1);
  CHECK(occurrences(out_ws, "msg room:a hello {\"from\":2}") == 1);
  CHECK(occurrences(out_sub, "\"from\":1") == 1);
  CHECK(occurrences(out_sub, "\"from\":2") == 1);
  CHECK(occurrences(out_sub, "\"fence\"") == 1);

  // A pod whose pg2 restarted (empty) gets beamlink's membership back from
  // the periodic announce; a restarted pod, on reconnect.
  pubsub(c, 1, "restart_pg2()");
  CHECK(pg2_member(c, 1, "EWalletAPI.PubSub", relay.node()));
  REQUIRE(c.cmd({"kill-pod", "2"}).code == 0);
  auto started = c.cmd({"start-pod", "2"}, 120s);
  REQUIRE_MESSAGE(started.code == 0, std::string(started.out + started.err));
  CHECK(pg2_member(c, 2, "EWalletAPI.PubSub", relay.node()));
  CHECK(pg2_member(c, 2, "AdminAPI.PubSub", relay.node()));
  Subprocess ws2(relay.in_ns({"node", js, "ws://127.0.0.1:7070/socket", "room:r"}));
  REQUIRE_MESSAGE(ws2.wait_out("joined room:r", 60s), ws2.err());
  CHECK(pubsub(c, 2,
               "broadcast(\"EWalletAPI.PubSub\", \"room:r\", " +
                   socket_broadcast22("room:r", "fence", "#{<<\"after\">> => <<\"restart\">>}") +
                   ", 'Elixir.Phoenix.Channel.Server')") == kOk);
  CHECK_MESSAGE(ws2.wait_out("msg room:r fence {\"after\":\"restart\"}", 60s),
                ws2.out() << ws2.err() << relay.proc->err());
  CHECK(pubsub(c, 1, "errors()") == "[]");
}

TEST_CASE(
    "relay in an OTP 22 cluster: a pod killed mid-stream costs the survivors nothing and is "
    "counted") {
  NEED_NETNS();
  NEED_OTP22();
  Cluster c;
  c.env["CLUSTER_OTP"] = "22";
  c.env["CLUSTER_PUBSUB"] = "1.1:EWalletAPI.PubSub";
  auto up = c.cmd({"up", "3"}, 180s);
  REQUIRE_MESSAGE(up.code == 0, std::string(up.out + up.err));
  Relay relay(c, "EWalletAPI.PubSub", {"--relay-ttl", "3000"});
  CHECK(relay.proc->wait_err("runs Phoenix.PubSub 1.1", 60s));
  for (int p = 1; p <= 3; ++p)
    REQUIRE(pubsub(c, p, "subscribe(\"EWalletAPI.PubSub\", \"s\")") == kOk);
  REQUIRE(wait_until([&] { return relay.http("GET", "/healthz").status == 200; }, 60s));
  a_pod_killed_mid_stream(c, relay, 20000, [&](int p, int n) {
    CHECK(pubsub(c, p,
                 "wait_count(\"EWalletAPI.PubSub\", \"s\", " + std::to_string(n) + ", 20000)") ==
          std::to_string(n));
    CHECK(pubsub(c, p,
                 "[N || #{'__struct__' := 'Elixir.Phoenix.Socket.Broadcast', payload := "
                 "#{<<\"n\">> := N}} <- messages(\"EWalletAPI.PubSub\", \"s\")] =:= "
                 "lists:seq(0, " +
                     std::to_string(n - 1) + ")") == "true");
    CHECK(pubsub(c, p, "errors()") == "[]");
  });
}
