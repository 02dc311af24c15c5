// Several beamlinks in the eWallet deployment simulated by scripts/cluster
// (DESIGN.md, "Several beamlinks in one cluster"): a sidecar sharing pod 1's
// IP and epmd, and two relays in namespaces of their own with a `beamlink
// subscribe` beside them. Elixir pods run tests/fixtures/phoenix_pubsub.ex;
// WebSocket clients are the official phoenix npm client.
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>

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
  REQUIRE_MESSAGE(w1.wait(60s).has_value(), w1.out() << w1.err() << r1->proc->err());
  REQUIRE_MESSAGE(w2.wait(60s).has_value(), w2.out() << w2.err() << r2.proc->err());
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
  REQUIRE_MESSAGE(w3.wait(60s).has_value(), w3.out()
                                                << w3.err() << r1->proc->err() << r2.proc->err());
  CHECK_MESSAGE(count(w3.out(), "msg room:1 new_msg {\"n\":42}") == 1, w3.out());
}

namespace {

// How many times each "N.A" arrived: the payload {"n": N, "a": A} of each
// line of `text` that contains `must_contain`.
std::map<std::string, int> tally(const std::string& text, const std::string& must_contain) {
  static const std::regex n_re(R"("n":(\d+))"), a_re(R"("a":(\d+))");
  std::map<std::string, int> seen;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find(must_contain) == std::string::npos) continue;
    std::smatch n, a;
    if (std::regex_search(line, n, n_re) && std::regex_search(line, a, a_re))
      ++seen[n[1].str() + "." + a[1].str()];
  }
  return seen;
}

// The poster's attempts: "202 N A" (accepted) and "fail N A why" lines.
std::set<std::string> attempts(const std::string& out, const std::string& kind) {
  std::set<std::string> s;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);) {
    std::istringstream l(line);
    std::string k, n, a;
    if (l >> k >> n >> a && k == kind) s.insert(n + "." + a);
  }
  return s;
}

// Every accepted attempt exactly once, no attempt twice; how many attempts
// that were not answered 202 arrived (their answer was lost) is returned.
std::size_t check_exactly_once(const std::string& who, const std::map<std::string, int>& got,
                               const std::set<std::string>& accepted) {
  std::size_t missing = 0, twice = 0, unanswered = 0;
  std::string examples;
  for (auto& m : accepted) {
    auto it = got.find(m);
    if (it == got.end()) {
      ++missing;
      if (examples.size() < 200) examples += " missing " + m;
    }
  }
  for (auto& [m, k] : got) {
    if (k > 1) {
      ++twice;
      if (examples.size() < 400) examples += " twice " + m;
    }
    if (!accepted.count(m)) ++unanswered;
  }
  CHECK_MESSAGE(missing == 0, who << ": " << missing << " of " << accepted.size()
                                  << " accepted broadcasts missing:" << examples);
  CHECK_MESSAGE(twice == 0,
                who << ": " << twice << " broadcasts received more than once:" << examples);
  return unanswered;
}

}  // namespace

// Two relays behind one Service address (scripts/cluster service: a virtual
// IP DNAT'ed at random to the ready relays, as kube-proxy does), restarted
// one after the other as a Deployment's rolling update does: the relay is
// taken out of the address, gets SIGTERM, exits, starts again and is put
// back once its /readyz answers 200 (what kubelet and the endpoints
// controller do). Meanwhile a client posts through the address without
// pause, trying again on errors, and WebSocket clients reconnect through it.
TEST_CASE(
    "beamlinks in the cluster: a rolling restart of two relays behind one address loses no "
    "accepted broadcast") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:My.PubSub:2";
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  REQUIRE(c.cmd({"add-beamlink", "r1"}).code == 0);
  REQUIRE(c.cmd({"add-beamlink", "r2"}).code == 0);
  const std::string topic = "roll:1";
  for (int p = 1; p <= 3; ++p)
    REQUIRE(pubsub(c, p, "subscribe(\"My.PubSub\", \"" + topic + "\")") == kOk);
  auto v = c.vars();
  const std::string token = "roll-token-" + std::to_string(::getpid());
  const std::string token_file = v["CLUSTER_STATE"] + "/relay-token";
  {
    std::ofstream f(token_file);
    f << token << "\n";
  }
  auto start_relay = [&](const std::string& name) {
    auto b = std::make_unique<Beamlink>(
        c, env_of(c, {"--beamlink", name}),
        std::vector<std::string>{"run", "--pubsub", "My.PubSub", "--relay-listen", "0.0.0.0:7070",
                                 "--relay-token-file", token_file});
    b->token = token;
    return b;
  };
  std::map<std::string, std::unique_ptr<Beamlink>> relays;
  relays["r1"] = start_relay("r1");
  relays["r2"] = start_relay("r2");
  Beamlink sub(c, env_of(c, {}), {"subscribe", "--pubsub", "My.PubSub", topic});
  auto ips = c.pod_ips();
  std::vector<std::string> all = {"ewallet@" + ips[0], "ewallet@" + ips[1], "ewallet@" + ips[2]};
  for (auto& [name, r] : relays) {
    auto& other = relays[name == "r1" ? "r2" : "r1"];
    auto want = all;
    want.push_back(other->node());
    REQUIRE_MESSAGE(wait_until([&] { return r->lists(want); }, 60s), r->proc->err());
    REQUIRE_MESSAGE(
        wait_until([&] { return count(r->http("GET", "/readyz").body, "beamlink_") == 1; }, 60s),
        sub.proc->err());
  }
  REQUIRE(c.cmd({"service", "7070", "beamlink:r1", "beamlink:r2"}).code == 0);
  const std::string vip = v["CLUSTER_SERVICE_IP"];
  REQUIRE(!vip.empty());

  auto js = [](const char* f) { return source_path(std::string("tests/js/") + f); };
  std::vector<std::unique_ptr<Subprocess>> ws;
  for (int k = 0; k < 4; ++k)
    ws.push_back(std::make_unique<Subprocess>(sub.in_ns(
        {"node", js("reconnecting_client.js"), "ws://" + vip + ":7070/socket", topic, token})));
  for (auto& w : ws) REQUIRE_MESSAGE(w->wait_out("joined " + topic, 60s), w->out() << w->err());
  Subprocess poster(sub.in_ns(
      {"node", js("service_poster.js"), "http://" + vip + ":7070", token, topic, "roll"}));
  // Reads every client's output as it comes: a full pipe would block the
  // subscriber's loop (and its ticks) and the WebSocket clients.
  auto drain = [&] {
    (void)sub.proc->out();
    for (auto& w : ws) (void)w->out();
  };
  auto accepted = [&] {
    drain();
    return attempts(poster.out(), "202").size();
  };
  // Waits until the poster has had `more` more broadcasts accepted.
  auto progressed = [&](std::size_t more) {
    auto base = accepted();
    return wait_until([&] { return accepted() >= base + more || !poster.running(); }, 120s) &&
           poster.running();
  };
  REQUIRE_MESSAGE(progressed(50), poster.out() << poster.err());

  for (const std::string name : {"r1", "r2"}) {
    const std::string other = name == "r1" ? "r2" : "r1";
    INFO("restarting " << name);
    // Out of the Service, then SIGTERM: it writes what it accepted and exits.
    REQUIRE(c.cmd({"service", "7070", "beamlink:" + other}).code == 0);
    relays[name]->proc->signal(SIGTERM);
    REQUIRE(wait_until(
        [&] {
          drain();
          return !relays[name]->proc->running();
        },
        120s));
    auto code = relays[name]->proc->wait(10s);
    REQUIRE(code.has_value());
    auto log = relays[name]->proc->err();
    CHECK_MESSAGE(*code == 0, log);
    // Nothing it accepted was left unwritten by its shutdown. (Earlier, when
    // the other relay restarted, a message in flight to that one may have
    // waited for its return: that is logged too, and is not this.)
    const auto term = log.find("SIGTERM");
    REQUIRE_MESSAGE(term != std::string::npos, log);
    CHECK_MESSAGE(log.find("not written", term) == std::string::npos, log);
    REQUIRE_MESSAGE(progressed(50), poster.out() << poster.err());
    // Started again; back in the Service once ready.
    relays[name] = start_relay(name);
    REQUIRE_MESSAGE(wait_until(
                        [&] {
                          drain();
                          return relays[name]->http("GET", "/readyz").status == 200;
                        },
                        120s),
                    relays[name]->proc->err());
    REQUIRE(c.cmd({"service", "7070", "beamlink:r1", "beamlink:r2"}).code == 0);
    REQUIRE_MESSAGE(progressed(50), poster.out() << poster.err());
  }
  poster.signal(SIGTERM);
  REQUIRE(poster.wait(60s).has_value());
  const auto ok = attempts(poster.out(), "202");
  const auto failed = attempts(poster.out(), "fail");
  MESSAGE(ok.size() << " broadcasts accepted, " << failed.size() << " attempts failed");
  REQUIRE(ok.size() >= 250);

  // Everything the clients and relays said, for a failure's message.
  auto story = [&] {
    std::ostringstream o;
    for (std::size_t k = 0; k < ws.size(); ++k) o << "client " << k << ":\n" << ws[k]->err();
    for (auto& [name, r] : relays) o << "relay " << name << ":\n" << r->proc->err();
    return o.str();
  };
  // Every client is joined again (its last "joined" after its last
  // "closed"): a fence that passed while one reconnected would never reach
  // it, as Phoenix has no replay.
  auto joined = [&](Subprocess& w) {
    auto text = w.out();
    auto j = text.rfind("joined " + topic), cl = text.rfind("closed");
    return j != std::string::npos && (cl == std::string::npos || j > cl);
  };
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        drain();
                        for (auto& w : ws)
                          if (!joined(*w)) return false;
                        return true;
                      },
                      60s),
                  story());
  // A fence through each relay ends the WebSocket clients and closes the
  // count everywhere (each relay's broadcasts reach everyone in order).
  for (auto& [name, r] : relays) {
    auto h = r->http("POST", "/v1/broadcast", broadcast(topic, "fence", name == "r1" ? 1 : 2));
    REQUIRE_MESSAGE(h.status == 202, h.body);
  }
  std::size_t unanswered = 0;
  for (int p = 1; p <= 3; ++p) {
    CAPTURE(p);
    drain();
    auto fences = pubsub(c, p,
                         "wait_until(fn -> messages(\"My.PubSub\", \"" + topic +
                             "\") |> Enum.count(&match?(%{event: \"fence\"}, &1)) end, &(&1 >= 2), "
                             "60_000)");
    CHECK(fences == "2");
    auto got = pubsub(c, p,
                      "messages(\"My.PubSub\", \"" + topic +
                          "\") |> Enum.flat_map(fn %Phoenix.Socket.Broadcast{event: \"roll\", "
                          "payload: %{\"n\" => n, \"a\" => a}} -> [\"#{n}.#{a}\"]; _ -> [] end)");
    std::map<std::string, int> seen;
    static const std::regex item(R"re("(\d+\.\d+)")re");
    for (std::sregex_iterator it(got.begin(), got.end(), item), end; it != end; ++it)
      ++seen[(*it)[1].str()];
    unanswered += check_exactly_once("pod " + std::to_string(p), seen, ok);
  }
  REQUIRE_MESSAGE(wait_until([&] { return count(sub.proc->out(), "\"fence\"") == 2; }, 60s),
                  sub.proc->err());
  unanswered += check_exactly_once("subscribe", tally(sub.proc->out(), "\"roll\""), ok);
  for (auto& w : ws) {
    REQUIRE_MESSAGE(w->wait(60s).has_value(), w->out() << story());
    // Broadcasts made while it reconnected never reach it (Phoenix has no
    // replay); none reaches it twice.
    auto seen = tally(w->out(), " roll ");
    CHECK(!seen.empty());
    for (auto& [m, k] : seen) CHECK_MESSAGE(k == 1, m << " received " << k << " times");
  }
  MESSAGE(unanswered << " attempts arrived without their 202 (the answer was lost)");
  std::remove(token_file.c_str());
}
