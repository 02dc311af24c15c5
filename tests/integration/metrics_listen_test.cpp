// `beamlink run` with RELAY_LISTEN=off and METRICS_LISTEN on a free port,
// against a real epmd and a real erl node: GET /metrics answers with the
// node's families (and none of the relay's), anything else is 404, and a
// port in use refuses to start naming METRICS_LISTEN. Clients are curl
// subprocesses.
#include <doctest/doctest.h>
#include <signal.h>

#include <cstdlib>
#include <map>
#include <string>

#include "support.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

std::map<std::string, std::string> env_for(int epmd_port, int metrics_port) {
  auto env = beamlink_env(epmd_port);
  env["METRICS_LISTEN"] = "127.0.0.1:" + std::to_string(metrics_port);
  env["DIST_PORT_MIN"] = std::to_string(free_port());
  return env;
}

}  // namespace

TEST_CASE("metrics listen: GET /metrics with the relay off") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  const int port = free_port();
  Subprocess::Options so;
  so.env = env_for(epmd.port(), port);
  Subprocess bl({beamlink_bin(), "run", "--name", "metrics@127.0.0.1", "--connect", "t1@127.0.0.1"},
                so);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  HttpReply m;
  REQUIRE_MESSAGE(wait_until(
                      [&] {
                        m = http("GET", base + "/metrics");
                        return m.body.find("beamlink_peers 1\n") != std::string::npos;
                      },
                      20s),
                  bl.err());
  CHECK(m.status == 200);
  CHECK(m.headers.find("text/plain; version=0.0.4") != std::string::npos);
  CHECK(m.body.find("# TYPE beamlink_peers gauge\n") != std::string::npos);
  CHECK(m.body.find("beamlink_peer_up{node=\"t1@127.0.0.1\"} 1\n") != std::string::npos);
  CHECK(m.body.find("beamlink_epmd_registered 1\n") != std::string::npos);
  CHECK(m.body.find("beamlink_known_peers{state=\"connected\"} 1\n") != std::string::npos);
  CHECK(m.body.find("beamlink_pubsub_bridges 0\n") != std::string::npos);
  CHECK(m.body.find("beamlink_heap_bytes{state=\"in_use\"} ") != std::string::npos);
  CHECK(m.body.find("# TYPE beamlink_heap_trims_total counter\n") != std::string::npos);
  CHECK(m.body.find("beamlink_relay_") == std::string::npos);  // no relay, no relay families
  CHECK(http("GET", base + "/healthz").status == 404);
  CHECK(http("GET", base + "/v1/broadcast").status == 404);
  // Prometheus's own parser reads every family.
  auto parsed = run({"/usr/bin/python3", "-c",
                     "import sys, urllib.request\n"
                     "from prometheus_client.parser import text_string_to_metric_families\n"
                     "text = urllib.request.urlopen(sys.argv[1]).read().decode()\n"
                     "print(len(list(text_string_to_metric_families(text))))\n",
                     base + "/metrics"},
                    20s);
  CHECK_MESSAGE(parsed.code == 0, parsed.err);
  CHECK(std::atoi(parsed.out.c_str()) >= 10);
  bl.signal(SIGTERM);
  auto rc = bl.wait(20s);
  REQUIRE(rc.has_value());
  CHECK(*rc == 0);
}

TEST_CASE("metrics listen: a port in use refuses to start and names METRICS_LISTEN") {
  Epmd epmd;
  const int port = free_port();
  // The first one holds the port.
  Subprocess::Options so;
  so.env = env_for(epmd.port(), port);
  Subprocess first({beamlink_bin(), "run", "--name", "first@127.0.0.1"}, so);
  REQUIRE_MESSAGE(
      wait_until(
          [&] {
            return http("GET", "http://127.0.0.1:" + std::to_string(port) + "/metrics").status ==
                   200;
          },
          20s),
      first.err());
  auto env = env_for(epmd.port(), port);
  auto r = run({beamlink_bin(), "run", "--name", "second@127.0.0.1"}, 20s, env);
  CHECK(r.code == 2);
  CHECK_MESSAGE(r.err.find("choose another METRICS_LISTEN") != std::string::npos, r.err);
  env["METRICS_LISTEN"] = "nowhere:1";
  r = run({beamlink_bin(), "run", "--name", "third@127.0.0.1"}, 20s, env);
  CHECK(r.code == 2);
  CHECK_MESSAGE(r.err.find("METRICS_LISTEN: listen address \"nowhere:1\"") != std::string::npos,
                r.err);
}
