// beamlink against a real OTP 22.3 node (../shared/otp22: handshake version 5,
// the old link protocol, plain-ref gen_call tags), each test on its own epmd.
#include <doctest/doctest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <optional>
#include <vector>

#include "dist/handshake_core.hpp"
#include "node_fixture.hpp"
#include "term/term_text.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// Spawns a beamlink process that counts what it receives.
term::Pid spawn_counter(TestNode& node, std::shared_ptr<std::atomic<int>> got) {
  return node.on_loop([&] {
    return node->spawn([got](const term::Pid&, const dist::Envelope& e) {
      if (e.kind == dist::Envelope::Kind::message) ++*got;
    });
  });
}

// What a beamlink process received: kind, sender, the term as text.
struct Received {
  dist::Envelope::Kind kind;
  std::optional<term::Pid> from;
  std::string text;
};

// Spawns a beamlink process that records what it receives (read it on the
// loop). A beamlink process never dies of an exit signal: it receives it as
// an exit envelope, as a BEAM process that traps exits receives
// {'EXIT', From, Reason}.
term::Pid spawn_recorder(TestNode& node, std::shared_ptr<std::vector<Received>> seen) {
  return node.on_loop([&] {
    return node->spawn([seen](const term::Pid&, const dist::Envelope& e) {
      Received r{e.kind, e.from ? std::optional<term::Pid>(*e.from) : std::nullopt, {}};
      auto in = e.kind == dist::Envelope::Kind::message
                    ? term::TermReader::from_external(e.term)
                    : Result<term::TermReader>(term::TermReader(e.term));
      if (in) {
        auto text = term::format_term(*in);
        r.text = text ? *text : "unreadable: " + text.error().message;
      }
      seen->push_back(std::move(r));
    });
  });
}

// beamlink (with `echo` registered) on an epmd of its own, connected to the
// OTP 22 node t1@127.0.0.1 it dialled.
struct DialledOtp22 {
  DialledOtp22() {
    install_echo(bl);
    REQUIRE(bl.connect("t1@127.0.0.1") == "");
  }
  Epmd epmd;
  LoopThread lt;
  TestNode bl{lt, test_node_config(epmd.port())};
  ErlNode t1{otp22_options("t1@127.0.0.1", epmd.port())};
};

// Sends beamlink's pid `a` to the OTP 22 shell process, which keeps it as
// get(a) and as the variable A.
void hand_pid_to_shell(DialledOtp22& s, const term::Pid& a) {
  s.t1.eval("register(sink, self())");
  s.bl.on_loop([&] {
    term::TermWriter w;
    w.tuple(2).atom("pid").pid(a);
    return s.bl->reg_send(a, "t1@127.0.0.1", "sink", w.bytes()).ok();
  });
  REQUIRE(s.t1.eval("receive {pid, A} -> put(a, A), ok after 10000 -> timeout end") == "ok");
}

}  // namespace

TEST_CASE("otp22 - the OTP 22 runtime speaks handshake version 5 only") {
  auto r = run({otp22_erl(), "-noshell", "-eval",
                "io:format(\"~s~n\", [erlang:system_info(otp_release)]), halt()."},
               60s);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "22\n");
}

TEST_CASE_FIXTURE(DialledOtp22,
                  "otp22 - beamlink dials an OTP 22 node with version 5 and both ping") {
  auto caps = bl.on_loop([&] { return bl->peer_caps("t1@127.0.0.1"); });
  REQUIRE(caps.has_value());
  CHECK(caps->version == 5);
  CHECK(caps->flags_known);
  CHECK_FALSE(caps->has(dist::dflag::unlink_id));
  CHECK(caps->has(dist::dflag::extended_references));
  CHECK(t1.eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "true");
  // is_auth over the connection beamlink made: the gen_call tag is a plain ref.
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
}

TEST_CASE("otp22 - beamlink ping and rpc reach an OTP 22 node") {
  Epmd epmd;
  ErlNode t1(otp22_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "ping", "t1@127.0.0.1"}, 60s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(contains(r.out, "pong"));
  r = run({beamlink_bin(), "rpc", "t1@127.0.0.1", "erlang", "node"}, 60s,
          beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "'t1@127.0.0.1'\n");
  r = run({beamlink_bin(), "rpc", "t1@127.0.0.1", "lists", "reverse", "[[1, <<\"two\">>, three]]"},
          60s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "[three,<<\"two\">>,1]\n");
}

TEST_CASE_FIXTURE(DialledOtp22, "otp22 - messages to registered names and pids both ways") {
  // OTP 22 -> beamlink's registered name, beamlink -> the OTP 22 pid.
  t1.eval("{echo, 'beamlink@127.0.0.1'} ! {self(), {hello, <<\"v5\">>, 42}}");
  CHECK(t1.eval("receive {echo, M} -> M after 10000 -> timeout end") == "{hello,<<\"v5\">>,42}");
  // beamlink -> an OTP 22 registered name, and OTP 22 -> a beamlink pid.
  auto got = std::make_shared<std::atomic<int>>(0);
  auto counter = spawn_counter(bl, got);
  t1.eval("register(sink, spawn(fun() -> receive {Pb, Mb} -> Pb ! {back, Mb} end end))");
  auto sent = bl.on_loop([&] {
    term::TermWriter w;
    w.tuple(2).pid(counter).atom("ping");
    return bl->reg_send(counter, "t1@127.0.0.1", "sink", w.bytes()).ok();
  });
  CHECK(sent);
  CHECK(wait_until([&] { return got->load() == 1; }, 60s));
}

TEST_CASE_FIXTURE(DialledOtp22,
                  "otp22 - links use the old protocol and exits reach the OTP 22 side") {
  auto got = std::make_shared<std::atomic<int>>(0);
  auto a = spawn_counter(bl, got);
  auto b = spawn_counter(bl, got);
  // The pids come from a message beamlink sends to the shell, registered as `sink`.
  t1.eval("register(sink, self())");
  bl.on_loop([&] {
    term::TermWriter w;
    w.tuple(2).pid(a).pid(b);
    return bl->reg_send(a, "t1@127.0.0.1", "sink", w.bytes()).ok();
  });
  REQUIRE(t1.eval("receive {A, B} when is_pid(A) -> put(a, A), put(b, B), ok after 10000 -> "
                  "timeout end") == "ok");
  t1.eval("process_flag(trap_exit, true)");
  // Link to both, unlink from b (old UNLINK, no ack expected), then both exit.
  CHECK(t1.eval("link(get(a))") == "true");
  CHECK(t1.eval("link(get(b))") == "true");
  CHECK(t1.eval("unlink(get(b))") == "true");
  CHECK(t1.eval("{echo, 'beamlink@127.0.0.1'} ! {self(), sync}, receive {echo, sync} -> ok after "
                "10000 -> timeout end") == "ok");
  bl.on_loop([&] {
    bl->exit(a, "kill_a");
    bl->exit(b, "kill_b");
    return 0;
  });
  CHECK(t1.eval("receive {'EXIT', P, R} -> {P =:= get(a), R} after 10000 -> timeout end") ==
        "{true,kill_a}");
  CHECK(t1.eval("receive {'EXIT', _, R} -> R after 1000 -> none end") == "none");
  // The connection is still up and healthy.
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  CHECK(bl.connected("t1@127.0.0.1"));
}

TEST_CASE_FIXTURE(DialledOtp22,
                  "otp22 - an exit from a linked OTP 22 process reaches the beamlink process") {
  auto seen = std::make_shared<std::vector<Received>>();
  auto a = spawn_recorder(bl, seen);
  hand_pid_to_shell(*this, a);
  // Two OTP 22 processes link to it (LINK); the second unlinks again (the
  // old UNLINK: no id, no ack); each then waits to be told its exit reason.
  CHECK(t1.eval("Parent = self(), P1 = spawn(fun() -> link(A), Parent ! {ready, self()}, "
                "receive {go, R1} -> exit(R1) end end), receive {ready, P1} -> ok after 10000 "
                "-> timeout end") == "ok");
  CHECK(t1.eval("P2 = spawn(fun() -> link(A), unlink(A), Parent ! {ready, self()}, receive {go, "
                "R2} -> exit(R2) end end), receive {ready, P2} -> ok after 10000 -> timeout "
                "end") == "ok");
  // The echo's reply comes after the LINKs and the UNLINK on the connection.
  const std::string sync =
      "{echo, 'beamlink@127.0.0.1'} ! {self(), sync}, receive {echo, sync} -> ok after 10000 -> "
      "timeout end";
  CHECK(t1.eval(sync) == "ok");
  CHECK(bl.on_loop([&] { return bl->processes().link_count(); }) == 1);

  // Both exit: only the linked one's EXIT reaches the beamlink process, with
  // its reason, and the link is gone on our side.
  t1.eval("P2 ! {go, {shutdown, <<\"not linked\">>}}");
  t1.eval("P1 ! {go, {shutdown, <<\"v5\">>}}");
  REQUIRE(wait_until([&] { return bl.on_loop([&] { return !seen->empty(); }); }, 60s));
  CHECK(t1.eval("{is_process_alive(P1), is_process_alive(P2)}") == "{false,false}");
  CHECK(t1.eval(sync) == "ok");
  auto got = bl.on_loop([&] { return *seen; });
  REQUIRE(got.size() == 1);
  CHECK(got[0].kind == dist::Envelope::Kind::exit);
  CHECK(got[0].text == "{shutdown,<<\"v5\">>}");
  REQUIRE(got[0].from.has_value());
  CHECK(got[0].from->node == "t1@127.0.0.1");
  CHECK(bl.on_loop([&] { return bl->processes().link_count(); }) == 0);

  // The beamlink process traps the exit: it lives on and still receives.
  CHECK(bl.on_loop([&] { return bl->processes().exists(a); }));
  t1.eval("get(a) ! after_exit");
  REQUIRE(wait_until([&] { return bl.on_loop([&] { return seen->size() == 2; }); }, 60s));
  got = bl.on_loop([&] { return *seen; });
  CHECK(got[1].kind == dist::Envelope::Kind::message);
  CHECK(got[1].text == "after_exit");
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  CHECK(bl.connected("t1@127.0.0.1"));
}

// erts sends MONITOR_P only to a peer with DFLAG_DIST_MONITOR_NAME, which ei
// (and so beamlink) does not announce: a BEAM monitor on a beamlink process
// watches the connection, as for any C node.
TEST_CASE_FIXTURE(DialledOtp22,
                  "otp22 - a monitor from the OTP 22 side fires when the connection goes") {
  auto got = std::make_shared<std::atomic<int>>(0);
  auto a = spawn_counter(bl, got);
  hand_pid_to_shell(*this, a);
  CHECK(t1.eval("put(m, erlang:monitor(process, get(a))), ok") == "ok");
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  bl.on_loop([&] {
    bl->disconnect("t1@127.0.0.1");
    return 0;
  });
  CHECK(t1.eval("Mr = get(m), receive {'DOWN', Mr, process, _, R} -> R after 10000 -> timeout "
                "end") == "noconnection");
}

TEST_CASE("otp22 - ticks keep the connection and a stopped OTP 22 node is detected") {
  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.ticktime = 4000ms;
  TestNode bl(lt, cfg);
  ErlNode t1(otp22_options("t1@127.0.0.1", epmd.port(), 4));
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  // Both sides tick: at ticktime/4 = 1 s, several ticks arrive within 60 s
  // and the connection outlives a whole ticktime.
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->stats().ticks_in; }) >= 5; }, 60s));
  CHECK(bl.connected("t1@127.0.0.1"));
  CHECK(bl.on_loop([&] { return bl->stats().tick_timeouts; }) == 0);
  ::kill(t1.pid(), SIGSTOP);
  CHECK(wait_until([&] { return !bl.connected("t1@127.0.0.1"); }, 60s));
  CHECK(bl.on_loop([&] { return bl->stats().tick_timeouts; }) == 1);
  ::kill(t1.pid(), SIGCONT);
}

TEST_CASE("otp22 - a wrong cookie outbound says the cookies differ") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(otp22_options("t1@127.0.0.1", epmd.port(), 60, "another-cookie"));
  auto err = bl.connect("t1@127.0.0.1");
  INFO(err);
  CHECK(contains(err, "version 5"));
  CHECK(contains(err, "cookies differ"));
  CHECK(contains(err, "after our challenge reply"));
  CHECK_FALSE(bl.connected("t1@127.0.0.1"));

  // What `beamlink run` logs for it: one line with the peer, the version and
  // the cause, and no "malformed" or "Input/output error" guess.
  Subprocess::Options o;
  o.env = beamlink_env(epmd.port());
  o.env["DIST_PORT_MIN"] = o.env["DIST_PORT_MAX"] = std::to_string(free_port());
  Subprocess run_({beamlink_bin(), "run", "--name", "bl2@127.0.0.1", "--connect", "t1@127.0.0.1"},
                  o);
  REQUIRE_MESSAGE(run_.wait_err("cookies differ", 60s), run_.err());
  auto logged = run_.err();
  INFO(logged);
  CHECK(contains(logged, "t1@127.0.0.1"));
  CHECK(contains(logged, "version 5"));
  CHECK(contains(logged, "after our challenge reply"));
  CHECK_FALSE(contains(logged, "malformed"));
  CHECK_FALSE(contains(logged, "Input/output error"));
  run_.signal(SIGTERM);
  CHECK(run_.wait(60s).has_value());
}

TEST_CASE("otp22 - a peer whose handshake name differs from the dialled one is refused") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(otp22_options("t1@127.0.0.1", epmd.port()));
  auto err = bl.connect("t1@localhost");
  INFO(err);
  CHECK(contains(err, "calls itself 't1@127.0.0.1'"));
  CHECK(contains(err, "dial 't1@127.0.0.1'"));
  CHECK(contains(err, "NODE_HOST"));
  CHECK_FALSE(bl.connected("t1@localhost"));
  CHECK_FALSE(bl.connected("t1@127.0.0.1"));
  CHECK(t1.eval("nodes(hidden)") == "[]");
}

TEST_CASE("otp22 - doctor probes an OTP 22 node with version 5 through the cookie check") {
  Epmd epmd;
  ErlNode t1(otp22_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "doctor", "--connect", "t1@127.0.0.1", "--json"}, 60s,
               beamlink_env(epmd.port()));
  INFO(r.out);
  INFO(r.err);
  CHECK(contains(r.out, "OTP 22 or older (eWallet pins 21)"));
  CHECK(contains(r.out, "the cookies match"));
  CHECK_FALSE(contains(r.out, "malformed"));
  ErlNode t2(otp22_options("t2@127.0.0.1", epmd.port(), 60, "another-cookie"));
  r = run({beamlink_bin(), "doctor", "--connect", "t2@127.0.0.1", "--json"}, 60s,
          beamlink_env(epmd.port()));
  INFO(r.out);
  CHECK(contains(r.out, "OTP 22 or older (eWallet pins 21)"));
  CHECK(contains(r.out, "cookies differ"));
  CHECK_FALSE(contains(r.out, "malformed"));
}

// What eWallet's own services would run against its cluster: the one-shot
// `beamlink broadcast` and `beamlink subscribe`, with the pubsub's version
// left to `automatic`, against Phoenix.PubSub 1.1 on real pg2 (the 1.1.2
// fixture), with eWallet's payloads (atom keys, status => ok).
TEST_CASE("otp22 - beamlink broadcast and subscribe find Phoenix.PubSub 1.1 by themselves") {
  Epmd epmd;
  ErlNode t1(otp22_options("t1@127.0.0.1", epmd.port()));
  const std::string m = "pubsub_v1_pg2:", name = "\"EWalletAPI.PubSub\"";
  REQUIRE(t1.eval(m + "start_spec(\"1.1:EWalletAPI.PubSub\")") == "ok");
  REQUIRE(t1.eval(m + "subscribe(" + name + ", \"user:1\")") == "ok");

  // subscribe: no ":1.1" given. It finds 1.1 on t1 and becomes a pg2 member
  // of {phx, NAME} there by pg2's exchange.
  Subprocess::Options o;
  o.env = beamlink_env(epmd.port());
  Subprocess sub({beamlink_bin(), "subscribe", "--pubsub", "EWalletAPI.PubSub", "--connect",
                  "t1@127.0.0.1", "user:1"},
                 o);
  REQUIRE_MESSAGE(sub.wait_err("subscribed as", 60s), sub.err());
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        return t1.eval(
                                   "length(pg2:get_members({phx, "
                                   "'Elixir.EWalletAPI.PubSub'}))") == "2";
                      },
                      60s),
                  sub.err());
  // The pod broadcasts what eWallet's endpoint broadcasts: a
  // %Phoenix.Socket.Broadcast{} whose payload has atom keys; twice, so that
  // "once each" is checked, not "at least once".
  for (int n : {1, 2})
    REQUIRE(t1.eval(m + "broadcast(" + name +
                    ", \"user:1\", #{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', "
                    "topic => <<\"user:1\">>, event => <<\"transaction\">>, payload => "
                    "#{status => ok, n => " +
                    std::to_string(n) + "}})") == "ok");
  REQUIRE_MESSAGE(sub.wait_out("\"n\":2", 60s), (sub.out() + sub.err()));
  auto out = sub.out();
  INFO(out);
  CHECK(std::count(out.begin(), out.end(), '\n') == 2);
  CHECK(occurrences(out, "\"n\":1") == 1);
  // Atom keys become JSON keys; an atom value keeps its type ($atom).
  CHECK(contains(out, "\"payload\":{\"n\":1,\"status\":{\"$atom\":\"ok\"}}"));
  CHECK(contains(out, "\"event\":\"transaction\""));

  // broadcast: no ":1.1" either; eWallet's payload shape reaches t1's
  // subscriber once, through the PG2Server under the pubsub's name.
  auto r = run({beamlink_bin(), "broadcast", "--pubsub", "EWalletAPI.PubSub", "--connect",
                "t1@127.0.0.1", "--atom-keys", "--atom-values", "status", "user:1", "transaction",
                R"({"status":"ok","data":{"amount":100},"error":null})"},
               60s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  const std::string received = m + "messages(" + name + ", \"user:1\")";
  REQUIRE(wait_until([&] { return t1.eval("length(" + received + ")") == "3"; }, 60s));
  CHECK(t1.eval("[P || #{payload := P, '__struct__' := 'Elixir.Phoenix.Socket.Broadcast'} <- " +
                received + ", not is_map_key(n, P)]") ==
        "[#{data => #{amount => 100},error => nil,status => ok}]");
  CHECK(t1.eval(m + "errors()") == "[]");
  sub.signal(SIGTERM);
  CHECK(sub.wait(60s).has_value());
}
