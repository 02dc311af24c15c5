// The beamlink binary against real epmd and erl nodes: run, ping, names, rpc.
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {}  // namespace

TEST_CASE("beamlink rpc returns erlang:node() and prints Erlang or JSON") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "rpc", "t1@127.0.0.1", "erlang", "node"}, 20s,
               beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "'t1@127.0.0.1'\n");

  r = run(
      {beamlink_bin(), "rpc", "t1@127.0.0.1", "lists", "reverse", "[[1, <<\"two\">>, three, 4.5]]"},
      20s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "[4.5,three,<<\"two\">>,1]\n");

  r = run({beamlink_bin(), "rpc", "--json", "t1@127.0.0.1", "maps", "from_list",
           "[[{<<\"a\">>, 1}, {b, [true, nil]}]]"},
          20s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out.find("\"a\":1") != std::string::npos);
  CHECK(r.out.find("\"b\":[true,null]") != std::string::npos);
}

TEST_CASE("beamlink rpc reports badrpc - timeouts and bad arguments clearly") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "rpc", "t1@127.0.0.1", "no_such_module", "f", "[]"}, 20s,
               beamlink_env(epmd.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("badrpc") != std::string::npos);
  CHECK(r.err.find("undef") != std::string::npos);

  r = run({beamlink_bin(), "rpc", "--timeout", "300", "t1@127.0.0.1", "timer", "sleep", "[3000]"},
          20s, beamlink_env(epmd.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("no reply within 300 ms") != std::string::npos);

  r = run({beamlink_bin(), "rpc", "t1@127.0.0.1", "erlang", "node", "[1, 2"}, 20s,
          beamlink_env(epmd.port()));
  CHECK(r.code == 2);
  CHECK(r.err.find("ARGS") != std::string::npos);

  r = run({beamlink_bin(), "rpc", "nobody@127.0.0.1", "erlang", "node"}, 20s,
          beamlink_env(epmd.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("has no node named 'nobody'") != std::string::npos);
}

TEST_CASE("beamlink ping: pong - and pang with the reason") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "ping", "t1@127.0.0.1"}, 20s, beamlink_env(epmd.port()));
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out.find("pong from t1@127.0.0.1") != std::string::npos);

  r = run({beamlink_bin(), "ping", "t1@127.0.0.1"}, 20s, beamlink_env(epmd.port(), "wrong-cookie"));
  CHECK(r.code == 1);
  CHECK(r.err.find("pang") != std::string::npos);
  CHECK(r.err.find("cookies differ") != std::string::npos);
  CHECK(t1.eval("1 + 1") == "2");

  RefusedPort empty;
  r = run({beamlink_bin(), "ping", "t1@127.0.0.1"}, 20s, beamlink_env(empty.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("no epmd at 127.0.0.1:" + std::to_string(empty.port())) != std::string::npos);
  CHECK(r.err.find("-daemon") != std::string::npos);
}

TEST_CASE("beamlink run joins - is listed by epmd - and unregisters on SIGTERM") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  Subprocess::Options o;
  o.env = beamlink_env(epmd.port());
  int port = free_port();
  Subprocess bl({beamlink_bin(), "run", "--dist-ports",
                 std::to_string(port) + "-" + std::to_string(port), "--connect", "t1@127.0.0.1"},
                o);
  REQUIRE_MESSAGE(bl.wait_out("is up", 10s), bl.err());
  auto names = run({beamlink_bin(), "names"}, 10s, beamlink_env(epmd.port()));
  CHECK(names.out.find("name beamlink at port " + std::to_string(port)) != std::string::npos);
  CHECK(wait_until(
      [&] { return t1.eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "true"; }, 10s));

  bl.signal(SIGTERM);
  auto code = bl.wait(10s);
  REQUIRE(code);
  CHECK(*code == 0);
  CHECK(bl.err().find("SIGTERM") != std::string::npos);
  names = run({beamlink_bin(), "names"}, 10s, beamlink_env(epmd.port()));
  CHECK(names.out.find("beamlink") == std::string::npos);
  CHECK(wait_until(
      [&] { return t1.eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "false"; },
      10s));
}

TEST_CASE("beamlink run: a name already registered and a missing epmd are clear errors") {
  Epmd epmd;
  ErlNode taken(erl_options("beamlink@127.0.0.1", epmd.port()));
  auto r = run({beamlink_bin(), "run"}, 20s, beamlink_env(epmd.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("already registered") != std::string::npos);

  RefusedPort gone;
  r = run({beamlink_bin(), "run"}, 20s, beamlink_env(gone.port()));
  CHECK(r.code == 1);
  CHECK(r.err.find("-daemon") != std::string::npos);
}

TEST_CASE("a cookie file that others can read is refused") {
  auto dir =
      std::filesystem::temp_directory_path() / ("beamlink-cookie-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  auto file = dir / "cookie";
  { std::ofstream(file) << "secret\n"; }
  ::chmod(file.c_str(), 0644);
  auto env = beamlink_env(4369);
  env.erase("ERLANG_COOKIE");
  auto r = run({"env", "-u", "ERLANG_COOKIE", beamlink_bin(), "ping", "--cookie-file",
                file.string(), "x@127.0.0.1"},
               10s, env);
  CHECK(r.code == 2);
  CHECK(r.err.find("chmod 400") != std::string::npos);
  CHECK(r.err.find("secret") == std::string::npos);  // the cookie is never printed
  std::filesystem::remove_all(dir);
}

TEST_CASE("beamlink subscribe prints the cluster's broadcasts on its topics as JSON lines") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("pubsub_fixture:start(<<\"My.PubSub\">>, 3)") == "ok");
  Subprocess::Options o;
  o.env = beamlink_env(epmd.port());
  Subprocess sub(
      {beamlink_bin(), "subscribe", "--pubsub", "My.PubSub", "--connect", "t1@127.0.0.1", "room:1"},
      o);
  REQUIRE_MESSAGE(sub.wait_err("subscribed as", 10s), sub.err());
  // Once beamlink's workers are in every pool group on t1, a broadcast from
  // any process reaches it whichever group phash2 picks.
  REQUIRE(wait_until([&] {
    return t1.eval(
               "length([G || G <- pg:which_groups('Elixir.Phoenix.PubSub'), "
               "lists:any(fun(P) -> node(P) =/= node() end, "
               "pg:get_members('Elixir.Phoenix.PubSub', G))])") == "3";
  }));
  for (int i = 0; i < 6; ++i)
    t1.eval(
        "pubsub_fixture:broadcast_from_new_process(<<\"My.PubSub\">>, <<\"room:1\">>, "
        "#{event => <<\"msg\">>, n => " +
        std::to_string(i) + "})");
  t1.eval("pubsub_fixture:broadcast_from_new_process(<<\"My.PubSub\">>, <<\"room:2\">>, other)");
  for (int i = 0; i < 6; ++i) CHECK(sub.wait_out("\"n\":" + std::to_string(i), 10s));
  auto out = sub.out();
  // Exactly once each, and nothing from the other topic.
  CHECK(std::count(out.begin(), out.end(), '\n') == 6);
  CHECK(out.find("room:2") == std::string::npos);
  CHECK(out.find("{\"pubsub\":\"My.PubSub\",\"topic\":\"room:1\",\"message\":{") !=
        std::string::npos);
}

TEST_CASE("beamlink --version prints the version and the git commit it was built from") {
  auto r = run({beamlink_bin(), "--version"}, 10s);
  CHECK(r.code == 0);
  // The version project() declares in CMakeLists.txt.
  std::ifstream lists(source_path("CMakeLists.txt"));
  std::string text((std::istreambuf_iterator<char>(lists)), std::istreambuf_iterator<char>());
  auto at = text.find("project(beamlink VERSION ");
  REQUIRE(at != std::string::npos);
  at += std::string("project(beamlink VERSION ").size();
  std::string version = text.substr(at, text.find(' ', at) - at);
  // The commit: HEAD's when the source is a git checkout, else "unknown".
  auto git = run({"git", "-C", source_path(""), "rev-parse", "--short", "HEAD"}, 10s);
  std::string commit = git.code == 0 ? git.out.substr(0, git.out.find('\n')) : "unknown";
  CHECK(r.out == "beamlink " + version + " (commit " + commit + ")\n");
}
