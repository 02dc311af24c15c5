// beamlink's pg scope and Phoenix.PubSub bridge against real erl nodes running
// tests/fixtures/pubsub_fixture.erl (Phoenix.PubSub's wire behaviour).
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "node_fixture.hpp"
#include "pubsub/pg_scope.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "pubsub/socket_broadcast.hpp"
#include "term/term_text.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

const std::string kBl = "beamlink@127.0.0.1";
const std::string kPubSub = "MyApp.PubSub";

// The groups whose members on `node` include a beamlink process, sorted.
std::string beamlink_groups(ErlNode& n) {
  return n.eval(
      "lists:sort([G || G <- pg:which_groups('Elixir.Phoenix.PubSub'), "
      "lists:any(fun(P) -> node(P) =:= 'beamlink@127.0.0.1' end, "
      "pg:get_members('Elixir.Phoenix.PubSub', G))])");
}

std::string group_list(int n) {
  std::string s = "[";
  for (int i = 1; i <= n; ++i) {
    if (i > 1) s += ",";
    s += "'" + pubsub::pubsub_group(kPubSub, i) + "'";
  }
  return s + "]";
}

// The scope and a bridge on the node's loop, with what the bridge's
// subscribers received (term text, per topic); ended on the loop before the
// node goes.
class Bridge {
 public:
  Bridge(TestNode& bl, pubsub::PubSubOptions opts, std::chrono::milliseconds rediscover = 5s)
      : bl_(bl) {
    auto err = bl_.on_loop([&] {
      pubsub::PgScopeOptions so;
      so.rediscover = rediscover;
      auto s = pubsub::PgScope::create(*bl_, so);
      if (!s) return s.error().message;
      scope_ = std::move(*s);
      auto b = pubsub::PubSubBridge::create(*bl_, *scope_, opts);
      if (!b) return b.error().message;
      bridge_ = std::move(*b);
      return std::string();
    });
    REQUIRE_MESSAGE(err.empty(), err);
  }
  ~Bridge() {
    bl_.on_loop([&] {
      subs_.clear();
      bridge_.reset();
      scope_.reset();
    });
  }
  pubsub::PgScope& scope() { return *scope_; }
  pubsub::PubSubBridge& bridge() { return *bridge_; }

  void subscribe(const std::string& topic) {
    bl_.on_loop([&] {
      subs_.push_back(bridge_->subscribe(topic, [this](const pubsub::PubSubMessage& m) {
        term::TermReader r(m.message.data(), m.message.size());
        auto text = term::format_term(r);
        got_[std::string(m.topic)].push_back(text ? *text : "?");
      }));
    });
  }
  std::vector<std::string> received(const std::string& topic) {
    return bl_.on_loop([&] { return got_[topic]; });
  }
  int pool_size() {
    return bl_.on_loop([&] { return bridge_->pool_size(); });
  }
  std::size_t nodes() {
    return bl_.on_loop([&] { return bridge_->nodes().size(); });
  }
  // Publishes a term given as Erlang text; returns the number of nodes sent to.
  std::size_t publish(const std::string& topic, const std::string& term_text) {
    return bl_.on_loop([&]() -> std::size_t {
      term::TermWriter w(false);
      if (!term::parse_term(term_text, w)) return 0;
      auto r = bridge_->publish(topic, w.bytes());
      return r ? r->size() : 0;
    });
  }
  // A %Phoenix.Socket.Broadcast{} with the given payload text.
  std::size_t publish_broadcast(const std::string& topic, const std::string& event,
                                const std::string& payload_text) {
    return bl_.on_loop([&]() -> std::size_t {
      term::TermWriter p(false);
      if (!term::parse_term(payload_text, p)) return 0;
      auto b = pubsub::socket_broadcast(topic, event, p.bytes());
      if (!b) return 0;
      auto r = bridge_->publish(topic, std::span<const char>(b->data(), b->size()));
      return r ? r->size() : 0;
    });
  }

 private:
  TestNode& bl_;
  std::unique_ptr<pubsub::PgScope> scope_;
  std::unique_ptr<pubsub::PubSubBridge> bridge_;
  std::vector<Subscription> subs_;  // what subscribe() asked for, until the bridge goes
  std::map<std::string, std::vector<std::string>> got_;
};

pubsub::PubSubOptions v2() {
  pubsub::PubSubOptions o;
  o.name = kPubSub;
  return o;
}

const std::string kExpectBroadcast =
    "case pubsub_fixture:received(<<\"room:1\">>) of "
    "[#{'__struct__' := 'Elixir.Phoenix.Socket.Broadcast', topic := <<\"room:1\">>, "
    "event := <<\"new_msg\">>, payload := #{<<\"body\">> := <<\"hi\">>}}, done] -> ok; "
    "Other -> Other end";

}  // namespace

TEST_CASE("beamlink's pg scope is discovered by a BEAM scope and joins its whole pool") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"MyApp.PubSub\">>, 3)") == "ok");
  Bridge b(bl, v2());
  CHECK(b.pool_size() == 1);  // nothing known yet
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  // The BEAM's sync tells us its pool size; we join the two other groups.
  CHECK(wait_until([&] { return b.pool_size() == 3; }, 10s));
  CHECK(wait_until([&] { return beamlink_groups(t1) == group_list(3); }, 10s));
  CHECK(beamlink_groups(t1) == group_list(3));
  // Our scope knows t1's workers.
  auto groups = bl.on_loop([&] { return b.scope().groups_of("t1@127.0.0.1"); });
  CHECK(groups.size() == 3);
  CHECK(t1.eval("length(pg:get_members('Elixir.Phoenix.PubSub', "
                "'Elixir.MyApp.PubSub.Adapter_2'))") == "2");
}

TEST_CASE("a publish from beamlink reaches each BEAM node's subscribers exactly once") {
  for (int pool : {1, 3}) {
    CAPTURE(pool);
    Epmd epmd;
    LoopThread lt;
    TestNode bl(lt, test_node_config(epmd.port()));
    ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
    ErlNode t2(erl_options("t2@127.0.0.1", epmd.port()));
    CHECK(t1.eval("net_adm:ping('t2@127.0.0.1')") == "pong");
    std::string start = "pubsub_fixture:start(<<\"MyApp.PubSub\">>, " + std::to_string(pool) + ")";
    for (auto* n : {&t1, &t2}) {
      CHECK(n->eval(start) == "ok");
      CHECK(n->eval("pubsub_fixture:subscribe(<<\"room:1\">>)") == "ok");
      CHECK(n->eval("pubsub_fixture:subscribe(<<\"room:2\">>)") == "ok");
    }
    Bridge b(bl, v2());
    REQUIRE(bl.connect("t1@127.0.0.1") == "");
    REQUIRE(bl.connect("t2@127.0.0.1") == "");
    REQUIRE(wait_until([&] { return b.nodes() == 2; }, 10s));
    CHECK(wait_until([&] { return b.pool_size() == pool; }, 10s));

    CHECK(b.publish_broadcast("room:1", "new_msg", "#{<<\"body\">> => <<\"hi\">>}") == 2);
    // A marker sent after it on the same connections: once it arrived,
    // any duplicate of the first would have too.
    CHECK(b.publish("room:1", "done") == 2);
    for (auto* n : {&t1, &t2}) {
      CAPTURE(n->name());
      CHECK(wait_until(
          [&] {
            return n->eval("lists:member(done, pubsub_fixture:received(<<\"room:1\">>))") == "true";
          },
          10s));
      CHECK(n->eval(kExpectBroadcast) == "ok");
      CHECK(n->eval("pubsub_fixture:received(<<\"room:2\">>)") == "[]");
    }
  }
}

TEST_CASE("a broadcast on a BEAM node reaches beamlink's subscriber exactly once") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  ErlNode t2(erl_options("t2@127.0.0.1", epmd.port()));
  CHECK(t1.eval("net_adm:ping('t2@127.0.0.1')") == "pong");
  for (auto* n : {&t1, &t2})
    CHECK(n->eval("pubsub_fixture:start(<<\"MyApp.PubSub\">>, 3)") == "ok");
  CHECK(t2.eval("pubsub_fixture:subscribe(<<\"room:1\">>)") == "ok");
  Bridge b(bl, v2());
  b.subscribe("room:1");
  b.subscribe("room:2");
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  REQUIRE(bl.connect("t2@127.0.0.1") == "");
  REQUIRE(wait_until([&] { return beamlink_groups(t1) == group_list(3); }, 10s));

  // From 20 processes, so phash2(self(), 3) picks every group of the pool.
  CHECK(t1.eval("lists:usort([pubsub_fixture:broadcast_from_new_process(<<\"MyApp.PubSub\">>, "
                "<<\"room:1\">>, {n, I}) || I <- lists:seq(1, 20)])") == "[normal]");
  CHECK(t1.eval("pubsub_fixture:broadcast_from_new_process(<<\"MyApp.PubSub\">>, "
                "<<\"room:1\">>, done)") == "normal");
  CHECK(wait_until(
      [&] {
        auto got = b.received("room:1");
        return !got.empty() && got.back() == "done";
      },
      10s));
  auto got = b.received("room:1");
  REQUIRE(got.size() == 21);
  for (int i = 1; i <= 20; ++i)
    CHECK(std::count(got.begin(), got.end(), "{n," + std::to_string(i) + "}") == 1);
  CHECK(b.received("room:2").empty());
  // The other BEAM node got each once too (the fixture is Phoenix-faithful).
  CHECK(t2.eval("length(pubsub_fixture:received(<<\"room:1\">>))") == "21");
}

TEST_CASE("a restarted BEAM scope gets beamlink's membership back") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"MyApp.PubSub\">>, 1)") == "ok");
  Bridge b(bl, v2(), 300ms);
  b.subscribe("room:1");
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  REQUIRE(wait_until([&] { return beamlink_groups(t1) == group_list(1); }, 10s));

  CHECK(t1.eval("pubsub_fixture:stop_scope()") == "ok");
  CHECK(t1.eval("pubsub_fixture:restart_scope()") == "ok");
  // The new scope cannot see a hidden node; our periodic discover finds it.
  CHECK(wait_until([&] { return beamlink_groups(t1) == group_list(1); }, 10s));
  CHECK(t1.eval("pubsub_fixture:broadcast_from_new_process(<<\"MyApp.PubSub\">>, "
                "<<\"room:1\">>, after_restart)") == "normal");
  CHECK(wait_until([&] { return b.received("room:1").size() == 1; }, 10s));
  CHECK(b.received("room:1") == std::vector<std::string>{"after_restart"});
}

TEST_CASE("when beamlink's connection goes the BEAM drops its members and we drop the BEAM's") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"MyApp.PubSub\">>, 2)") == "ok");
  Bridge b(bl, v2());
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  REQUIRE(wait_until([&] { return beamlink_groups(t1) == group_list(2); }, 10s));
  CHECK(bl.on_loop([&] { return b.scope().groups_of("t1@127.0.0.1").size(); }) == 2);

  bl.on_loop([&] { bl->disconnect("t1@127.0.0.1"); });
  CHECK(wait_until([&] { return beamlink_groups(t1) == "[]"; }, 10s));
  CHECK(bl.on_loop([&] { return b.scope().groups_of("t1@127.0.0.1").empty(); }));
  CHECK(b.nodes() == 0);
  // t1's own workers are still there.
  CHECK(t1.eval("length(pg:get_members('Elixir.Phoenix.PubSub', 'Elixir.MyApp.PubSub.Adapter'))") ==
        "1");
}

TEST_CASE("a 1.1 publish reaches the PG2Server under the pubsub name once per node") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start_v1(<<\"EWalletAPI.PubSub\">>)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"room:1\">>)") == "ok");
  pubsub::PubSubOptions o;
  o.name = "EWalletAPI.PubSub";
  o.version = pubsub::PubSubOptions::Version::v1_1;
  Bridge b(bl, o);
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  CHECK(b.publish_broadcast("room:1", "new_msg", "#{<<\"body\">> => <<\"hi\">>}") == 1);
  CHECK(b.publish("room:1", "done") == 1);
  CHECK(wait_until(
      [&] {
        return t1.eval("lists:member(done, pubsub_fixture:received(<<\"room:1\">>))") == "true";
      },
      10s));
  CHECK(t1.eval(kExpectBroadcast) == "ok");
}

// pg2 (OTP 21/22) as far as beamlink meets it: a process registered as pg2
// that stores the members of each exchange cast as pg2's store/1 does (a pid
// it already has is not added again) and keeps the casts it got. OTP 25 has
// no pg2; the real one is exercised against ../shared/otp22 in the cluster
// tests. erl_driver keeps bindings between lines: every expression here
// binds nothing at the top (funs), so each can run again.
const std::string kFakePg2 =
    "register(pg2, spawn(fun() -> (fun Loop(Casts, Members) -> receive "
    "{'$gen_cast', {exchange, _, List}} = C -> "
    "Loop([C | Casts], lists:foldl(fun([G, Ps], Acc) -> "
    "Old = maps:get(G, Acc, []), Acc#{G => Old ++ (Ps -- Old)} end, Members, List)); "
    "{get, From} -> From ! {pg2, lists:reverse(Casts), Members}, Loop(Casts, Members) end end)"
    "([], #{}) end))";

// Evaluates `body` inside a fun: its variables are its own.
std::string in_fun(const std::string& body) {
  return "(fun() -> " + body + " end)()";
}

TEST_CASE("a 1.1 bridge joins {phx NAME} through pg2's exchange and hears broadcasts once") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  REQUIRE(t1.eval(kFakePg2) == "true");
  CHECK(t1.eval("pubsub_fixture:start_v1(<<\"EWalletAPI.PubSub\">>)") == "ok");
  CHECK(t1.eval("pubsub_fixture:subscribe(<<\"room:1\">>)") == "ok");
  pubsub::PubSubOptions o;
  o.name = "EWalletAPI.PubSub";
  o.version = pubsub::PubSubOptions::Version::v1_1;
  o.pg2_announce = 200ms;
  Bridge b(bl, o);
  b.subscribe("room:1");
  REQUIRE(bl.connect("t1@127.0.0.1") == "");

  // On connect: {'$gen_cast', {exchange, OurNode, [[{phx, NAME}, [Member]]]}}.
  const std::string members = in_fun(
      "pg2 ! {get, self()}, receive {pg2, Cs, Ms} -> {length(Cs) > 0, "
      "[{G, [node(P) || P <- Ps]} || {G, Ps} <- maps:to_list(Ms)]} after 5000 -> timeout end");
  REQUIRE(wait_until(
      [&] {
        return t1.eval(members) ==
               "{true,[{{phx,'Elixir.EWalletAPI.PubSub'},['beamlink@127.0.0.1']}]}";
      },
      60s));
  CHECK(t1.eval(in_fun("pg2 ! {get, self()}, receive {pg2, [C | _], _} -> "
                       "case C of {'$gen_cast', {exchange, 'beamlink@127.0.0.1', "
                       "[[{phx, 'Elixir.EWalletAPI.PubSub'}, [P]]]}} when is_pid(P) -> ok; "
                       "_ -> C end end")) == "ok");
  // Announced again periodically: the member stays one pid.
  REQUIRE(wait_until(
      [&] {
        return t1.eval(in_fun("pg2 ! {get, self()}, receive {pg2, Cs, _} -> length(Cs) >= 3 "
                              "end")) == "true";
      },
      60s));
  CHECK(t1.eval(members) == "{true,[{{phx,'Elixir.EWalletAPI.PubSub'},['beamlink@127.0.0.1']}]}");

  // 1.1.2's broadcast sends the 1.x tuple to the member; the 2.x one is
  // taken too. Each reaches beamlink's subscriber once.
  CHECK(t1.eval(in_fun(
            "pg2 ! {get, self()}, receive {pg2, _, #{{phx, "
            "'Elixir.EWalletAPI.PubSub'} := [M]}} -> "
            "M ! {forward_to_local, nil, none, <<\"room:1\">>, hello}, "
            "M ! {forward_to_local, 'Elixir.Phoenix.Channel.Server', self(), <<\"room:1\">>, "
            "#{status => ok}}, "
            "M ! {forward_to_local, <<\"room:1\">>, two, 'Elixir.Phoenix.PubSub'}, "
            "M ! {forward_to_local, <<\"room:2\">>, other, 'Elixir.Phoenix.PubSub'}, "
            "M ! not_a_forward, ok end")) == "ok");
  REQUIRE(wait_until([&] { return b.received("room:1").size() >= 3; }, 60s));
  CHECK(b.received("room:1") == std::vector<std::string>{"hello", "#{status => ok}", "two"});

  // A restarted pg2 (empty) gets the membership back from the periodic
  // announce.
  CHECK(t1.eval(in_fun("P = whereis(pg2), unregister(pg2), exit(P, kill), ok")) == "ok");
  REQUIRE(t1.eval(kFakePg2) == "true");
  REQUIRE(wait_until(
      [&] {
        return t1.eval(members) ==
               "{true,[{{phx,'Elixir.EWalletAPI.PubSub'},['beamlink@127.0.0.1']}]}";
      },
      60s));

  // beamlink's 1.1 publish goes to the PG2Server under the name (dispatched
  // there once) and does not come back to beamlink's own member.
  CHECK(b.publish("room:1", "mine") == 1);
  CHECK(b.publish("room:1", "done") == 1);
  REQUIRE(wait_until(
      [&] {
        return t1.eval("lists:member(done, pubsub_fixture:received(<<\"room:1\">>))") == "true";
      },
      60s));
  CHECK(t1.eval("pubsub_fixture:received(<<\"room:1\">>)") == "[mine,done]");
  CHECK(b.received("room:1") == std::vector<std::string>{"hello", "#{status => ok}", "two"});
  CHECK(b.received("room:2") == std::vector<std::string>{});
}

TEST_CASE(
    "1.1 on a real OTP 22 pg2: beamlink is a member of {phx NAME} and hears and publishes "
    "once") {
  NEED_OTP22();
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  auto o22 = erl_options("v22a@127.0.0.1", epmd.port());
  o22.erl = otp22_erl();
  ErlNode t1(o22);
  const std::string m = "pubsub_v1_pg2:";
  const std::string name = "\"EWalletAPI.PubSub\"";
  REQUIRE(t1.eval(m + "start_spec(\"1.1:EWalletAPI.PubSub\")") == "ok");
  REQUIRE(t1.eval(m + "subscribe(" + name + ", \"room:1\")") == "ok");
  for (auto version :
       {pubsub::PubSubOptions::Version::v1_1, pubsub::PubSubOptions::Version::automatic}) {
    INFO("version " << pubsub::to_string(version));
    pubsub::PubSubOptions o;
    o.name = "EWalletAPI.PubSub";
    o.version = version;
    o.pg2_announce = 300ms;
    auto b = std::make_unique<Bridge>(bl, o);
    b->subscribe("room:1");
    if (!bl.connected("v22a@127.0.0.1")) REQUIRE(bl.connect("v22a@127.0.0.1") == "");
    // The real pg2 stores beamlink's member from the exchange cast (auto:
    // once erlang:registered() through OTP 22's rex says 1.1).
    auto members = [&] { return t1.eval(m + "member_nodes(" + name + ")"); };
    REQUIRE(wait_until(
        [&] { return members() == "[<<\"beamlink@127.0.0.1\">>,<<\"v22a@127.0.0.1\">>]"; }, 60s));
    CHECK(t1.eval("length(pg2:get_members({phx, 'Elixir.EWalletAPI.PubSub'}))") == "2");

    // 1.1.2's broadcast reaches beamlink's subscriber once; beamlink's
    // publish reaches the pod's subscriber once and does not come back.
    REQUIRE(t1.eval(m + "clear(" + name + ", \"room:1\")") == "ok");
    REQUIRE(t1.eval(m + "broadcast(" + name + ", \"room:1\", #{status => ok})") == "ok");
    REQUIRE(wait_until([&] { return b->received("room:1").size() >= 1; }, 60s));
    CHECK(b->publish("room:1", "mine") == 1);
    CHECK(b->publish("room:1", "done") == 1);
    REQUIRE(t1.eval(m + "wait_for(" + name + ", \"room:1\", done, 1, 60000)") == "1");
    CHECK(t1.eval(m + "messages(" + name + ", \"room:1\")") == "[#{status => ok},mine,done]");
    REQUIRE(t1.eval(m + "broadcast(" + name + ", \"room:1\", last)") == "ok");
    REQUIRE(wait_until([&] { return b->received("room:1").size() >= 2; }, 60s));
    CHECK(b->received("room:1") == std::vector<std::string>{"#{status => ok}", "last"});

    // A restarted pg2 (empty) gets the membership back.
    CHECK(t1.eval(m + "restart_pg2(), ok") == "ok");
    CHECK(wait_until(
        [&] { return members() == "[<<\"beamlink@127.0.0.1\">>,<<\"v22a@127.0.0.1\">>]"; }, 60s));
    CHECK(t1.eval(m + "errors()") == "[]");
    // pg2 drops the member when the connection closes (a BEAM monitor on a
    // C node's process watches the connection).
    b.reset();
    bl.on_loop([&] { bl->disconnect("v22a@127.0.0.1"); });
    CHECK(wait_until([&] { return members() == "[<<\"v22a@127.0.0.1\">>]"; }, 60s));
  }
}

TEST_CASE("automatic: what the bridge keeps for a peer goes with it - none accumulates") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  pubsub::PubSubOptions o = v2();
  o.version = pubsub::PubSubOptions::Version::automatic;
  Bridge b(bl, o);
  auto entries = [&] { return bl.on_loop([&] { return b.bridge().peer_entries(); }); };
  for (int i = 0; i < 3; ++i) {
    // Plain erl nodes without the pubsub: each is probed, found without it,
    // and asked again with backoff (its probe result, attempt count and
    // timer), until it goes.
    std::string name = "plain" + std::to_string(i) + "@127.0.0.1";
    auto t = std::make_unique<ErlNode>(erl_options(name, epmd.port()));
    REQUIRE(bl.connect(name) == "");
    CHECK_MESSAGE(wait_until([&] { return entries() == 3; }, 60s), entries() << " entries");
    t.reset();
    CHECK_MESSAGE(wait_until([&] { return entries() == 0; }, 60s), entries() << " entries");
  }
}
