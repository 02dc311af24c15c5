// LOG_FORMAT=json: every stderr line is one JSON object with time, level,
// event, peer, reason and message; connects and disconnects name the event,
// the peer and the reason. Each line is parsed by python3's json module.
#include <doctest/doctest.h>
#include <signal.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// Every line of `text` parsed as JSON; one "level|event|peer|reason" line
// for each, or the parse error (python3's exit code is then non-zero).
RunResult parse_json_lines(const std::string& text) {
  auto path = std::filesystem::temp_directory_path() /
              ("beamlink-log-" + std::to_string(::getpid()) + ".jsonl");
  { std::ofstream(path) << text; }
  static const char* kScript = R"(
import json, sys
keys = ["time", "level", "event", "peer", "reason", "message"]
for n, line in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    obj = json.loads(line)
    assert isinstance(obj, dict), "line %d is not an object" % n
    assert sorted(obj) == sorted(keys), "line %d has keys %s" % (n, sorted(obj))
    assert obj["time"].endswith("Z") and "T" in obj["time"], obj["time"]
    print("|".join(str(obj[k]) for k in ["level", "event", "peer", "reason"]))
)";
  auto r = run({"python3", "-c", kScript, path.string()}, 20s);
  std::filesystem::remove(path);
  return r;
}

}  // namespace

TEST_CASE("LOG_FORMAT=json: one JSON object per line - connect and disconnect say what happened") {
  Epmd epmd;
  auto t1 = std::make_unique<ErlNode>(erl_options("t1@127.0.0.1", epmd.port()));
  Subprocess::Options o;
  o.env = beamlink_env(epmd.port());
  o.env["LOG_FORMAT"] = "json";
  int port = free_port();
  Subprocess bl({beamlink_bin(), "run", "--dist-ports",
                 std::to_string(port) + "-" + std::to_string(port), "--connect", "t1@127.0.0.1"},
                o);
  REQUIRE_MESSAGE(bl.wait_err("\"event\":\"connected\"", 60s), bl.err());
  t1.reset();  // the node goes: a disconnect, then redial failures
  REQUIRE_MESSAGE(bl.wait_err("\"event\":\"disconnected\"", 60s), bl.err());
  bl.signal(SIGTERM);
  REQUIRE(bl.wait(60s));

  auto parsed = parse_json_lines(bl.err());
  REQUIRE_MESSAGE(parsed.code == 0, parsed.err << "\n" << bl.err());
  CHECK(parsed.out.find("info|connected|t1@127.0.0.1|outbound\n") != std::string::npos);
  CHECK(parsed.out.find("warning|disconnected|t1@127.0.0.1|") != std::string::npos);
  CHECK(parsed.out.find("warning|lost; redialling|t1@127.0.0.1|") != std::string::npos);
  // A line without fields has its message as its event.
  CHECK(parsed.out.find("|SIGTERM: closing connections and unregistering|None|None") !=
        std::string::npos);
  // No line is a bare node name.
  CHECK(parsed.out.find("|t1@127.0.0.1|None|None") == std::string::npos);
}

TEST_CASE("LOG_FORMAT=text keeps the text lines - and run names what happened on connect") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  Subprocess::Options o;
  o.env = beamlink_env(epmd.port());
  int port = free_port();
  Subprocess bl({beamlink_bin(), "run", "--log-format", "text", "--dist-ports",
                 std::to_string(port) + "-" + std::to_string(port), "--connect", "t1@127.0.0.1"},
                o);
  REQUIRE_MESSAGE(bl.wait_err("connected to t1@127.0.0.1 (outbound)", 60s), bl.err());
  bl.signal(SIGTERM);
  REQUIRE(bl.wait(60s));
  // Every info line says what happened: none is just the node's name.
  auto err = bl.err();
  CHECK(err.find("info t1@127.0.0.1\n") == std::string::npos);
  CHECK(err.find("{\"time\"") == std::string::npos);
}
