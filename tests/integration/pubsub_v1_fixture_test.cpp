// tests/fixtures/pubsub_v1_pg2.erl (Phoenix.PubSub 1.1.2 on real pg2) between
// two OTP 22 nodes (../shared/otp22): what a remote peer meets on the wire.
// The fixture is the oracle the 1.x tests of beamlink rely on, so it is
// checked against DESIGN.md's facts here first.
#include <doctest/doctest.h>

#include <string>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

const std::string kM = "pubsub_v1_pg2:";
const std::string kName = "\"EWalletAPI.PubSub\"";

}  // namespace

TEST_CASE("the 1.1.2 fixture on pg2 joins both groups and broadcasts to each node once") {
  NEED_OTP22();
  Epmd epmd;
  ErlNode a(otp22_options("v1a@127.0.0.1", epmd.port()), false);
  ErlNode b(otp22_options("v1b@127.0.0.1", epmd.port()), false);
  a.wait_ready();
  b.wait_ready();
  REQUIRE(a.eval("erlang:system_info(otp_release)") == "\"22\"");
  REQUIRE(a.eval(kM + "start_spec(\"1.1:EWalletAPI.PubSub,1.1:AdminAPI.PubSub\")") == "ok");
  REQUIRE(b.eval(kM + "start_spec(\"1.1:EWalletAPI.PubSub\")") == "ok");
  REQUIRE(a.eval("net_kernel:connect_node('v1b@127.0.0.1')") == "true");

  // The PG2Server is registered under the name and a member of both groups.
  CHECK(a.eval("is_pid(whereis('Elixir.EWalletAPI.PubSub'))") == "true");
  CHECK(a.eval("pg2:get_local_members({phx, 'Elixir.EWalletAPI.PubSub'}) =:= "
               "[whereis('Elixir.EWalletAPI.PubSub')]") == "true");
  CHECK(a.eval("pg2:get_local_members({phx, 'Elixir.EWalletAPI.PubSub.Adapter'}) =:= "
               "[whereis('Elixir.EWalletAPI.PubSub')]") == "true");
  // pg2 exchanges between the visible nodes: each sees the other's member.
  REQUIRE(wait_until(
      [&] {
        return a.eval(kM + "member_nodes(" + kName + ")") ==
               "[<<\"v1a@127.0.0.1\">>,<<\"v1b@127.0.0.1\">>]";
      },
      60s));

  for (auto* n : {&a, &b}) REQUIRE(n->eval(kM + "subscribe(" + kName + ", \"room:1\")") == "ok");
  // A broadcast reaches the subscribers of both nodes once: the local one by
  // dispatch, the remote one through the 1.x tuple to its server.
  REQUIRE(a.eval(kM + "broadcast(" + kName + ", \"room:1\", #{status => ok, data => 1})") == "ok");
  REQUIRE(b.eval(kM + "broadcast(" + kName + ", <<\"room:1\">>, hello)") == "ok");
  CHECK(a.eval(kM + "fence(" + kName + ", \"room:1\")") == "#{<<\"v1b@127.0.0.1\">> => 1}");
  CHECK(b.eval(kM + "fence(" + kName + ", \"room:1\")") == "#{<<\"v1a@127.0.0.1\">> => 1}");
  for (auto* n : {&a, &b}) {
    CHECK(n->eval(kM + "wait_for(" + kName + ", \"room:1\", '$fence', 1, 60000)") == "1");
    // (sorted: the two broadcasts race each other to the remote node)
    CHECK(n->eval("lists:sort(" + kM + "messages(" + kName + ", \"room:1\"))") ==
          "['$fence',hello,#{data => 1,status => ok}]");
    CHECK(n->eval(kM + "errors()") == "[]");
  }

  // Both shapes are accepted by the server: the 1.x one with a fastlane and
  // the 2.x one with a dispatcher; Phoenix.Channel.Server takes only a
  // %Phoenix.Socket.Broadcast{} (anything else is recorded, not delivered).
  CHECK(a.eval("{'Elixir.EWalletAPI.PubSub', 'v1b@127.0.0.1'} ! {forward_to_local, <<\"room:1\">>, "
               "two, 'Elixir.Phoenix.PubSub'}, ok") == "ok");
  CHECK(a.eval(kM + "forward('v1b@127.0.0.1', " + kName +
               ", \"room:1\", #{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', "
               "topic => <<\"room:1\">>, event => <<\"e\">>, payload => #{}})") == "ok");
  CHECK(a.eval(kM + "forward('v1b@127.0.0.1', " + kName + ", \"room:1\", not_a_broadcast)") ==
        "ok");
  CHECK(a.eval(kM + "fence(" + kName + ", \"room:1\")") == "#{<<\"v1b@127.0.0.1\">> => 1}");
  CHECK(b.eval(kM + "wait_for(" + kName + ", \"room:1\", '$fence', 2, 60000)") == "2");
  CHECK(b.eval("[M || M <- " + kM + "messages(" + kName +
               ", \"room:1\"), not is_map(M) orelse not is_map_key(status, M)]") ==
        "[hello,'$fence',two,#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',"
        "event => <<\"e\">>,payload => #{},topic => <<\"room:1\">>},'$fence']");
  CHECK(b.eval("[K || #{kind := K} <- " + kM + "errors()]") == "[bad_dispatch]");

  // A process of a third node that joined {phx, NAME} (as beamlink does)
  // gets the 1.x tuple; one that joined only NAME.Adapter (a 2.x node) gets
  // the 2.x tuple; each once per broadcast.
  CHECK(b.eval("Self = self(), P1 = spawn(fun() -> receive M -> Self ! {p1, M} end end), "
               "P2 = spawn(fun() -> receive M -> Self ! {p2, M} end end), "
               "ok = pg2:join({phx, 'Elixir.EWalletAPI.PubSub'}, P1), "
               "ok = pg2:join({phx, 'Elixir.EWalletAPI.PubSub.Adapter'}, P2), ok") == "ok");
  REQUIRE(wait_until(
      [&] {
        return a.eval("length(pg2:get_members({phx, 'Elixir.EWalletAPI.PubSub'}))") == "3" &&
               a.eval("length(pg2:get_members({phx, 'Elixir.EWalletAPI.PubSub.Adapter'}))") == "3";
      },
      60s));
  REQUIRE(a.eval(kM + "broadcast(" + kName + ", \"room:2\", x)") == "ok");
  CHECK(b.eval("receive {p1, M1} -> M1 after 60000 -> timeout end") ==
        "{forward_to_local,nil,none,<<\"room:2\">>,x}");
  CHECK(b.eval("receive {p2, M2} -> M2 after 60000 -> timeout end") ==
        "{forward_to_local,<<\"room:2\">>,x,'Elixir.Phoenix.PubSub'}");

  // restart_pg2/0: pg2 starts empty, the local servers join again, and the
  // visible peer's members come back through pg2's own exchange (b's P1 and
  // P2 have exited since: pg2 dropped them).
  CHECK(a.eval(kM + "restart_pg2(), ok") == "ok");
  CHECK(a.eval("pg2:get_local_members({phx, 'Elixir.EWalletAPI.PubSub'}) =:= "
               "[whereis('Elixir.EWalletAPI.PubSub')]") == "true");
  CHECK(wait_until(
      [&] {
        return a.eval(
                   "lists:sort([node(P) || P <- pg2:get_members({phx, "
                   "'Elixir.EWalletAPI.PubSub'})])") == "['v1a@127.0.0.1','v1b@127.0.0.1']";
      },
      60s));

  // eval_json/1: what `scripts/cluster pubsub` prints.
  CHECK(a.eval(kM + "eval_json(<<\"count(\\\"EWalletAPI.PubSub\\\", \\\"room:1\\\")\">>)") ==
        "{ok,<<\"3\">>}");
  CHECK(a.eval(kM + "json(#{a => [1, 2.5, nil, ok, {x}, <<\"s\">>]})") ==
        "<<\"{\\\"a\\\":[1,2.5,null,{\\\"$atom\\\":\\\"ok\\\"},{\\\"$tuple\\\":[{\\\"$atom\\\":"
        "\\\"x\\\"}]},\\\"s\\\"]}\">>");
}
