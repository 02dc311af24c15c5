// scripts/cluster, the network-namespace cluster the `cluster` tests run
// against: up, env, status, the pods' view of each other, kill-pod, partition
// and heal, and a down that leaves nothing behind. Needs root and network
// namespaces; without them the script must say so and exit 2.
#include <doctest/doctest.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <sstream>

#include "cluster_fixture.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

std::map<std::string, std::string> parse_env(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

}  // namespace

TEST_CASE("scripts/cluster is valid bash and prints its usage") {
  CHECK(run({"bash", "-n", script()}).code == 0);
  auto r = run({script(), "help"});
  CHECK(r.code == 0);
  CHECK(r.out.find("up N") != std::string::npos);
  CHECK(r.out.find("partition I") != std::string::npos);
}

TEST_CASE("scripts/cluster without root says what it needs and exits 2") {
  if (::geteuid() != 0) {
    auto r = run({script(), "up", "1"});
    CHECK(r.code == 2);
    CHECK(r.err.find("root") != std::string::npos);
    return;
  }
  if (run({"setpriv", "--version"}).code != 0) return;
  auto r =
      run({"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", script(), "up", "1"});
  CHECK(r.code == 2);
  CHECK(r.err.find("needs root") != std::string::npos);
}

TEST_CASE("scripts/cluster: 3 pods mesh - kill and partition and heal - down leaves nothing") {
  NEED_NETNS();
  Cluster c;
  auto r = c.cmd({"up", "3"});
  REQUIRE_MESSAGE(r.code == 0, std::string(r.out + r.err));
  CHECK(r.out.find("3 pods meshed") != std::string::npos);

  r = c.cmd({"up", "3"});  // idempotent
  CHECK(r.code == 0);
  CHECK(r.out.find("already up") != std::string::npos);

  auto env = parse_env(c.cmd({"env"}).out);
  CHECK(env["NODE_DNS"] == "ewallet.default.svc.cluster.local");
  CHECK(env["BEAMLINK_NETNS"] == c.prefix + "-bl");
  REQUIRE(!env["CLUSTER_COOKIE_FILE"].empty());
  CHECK((std::filesystem::status(env["CLUSTER_COOKIE_FILE"]).permissions() &
         std::filesystem::perms::all) == std::filesystem::perms::owner_read);
  const std::string base = env["CLUSTER_SUBNET"].substr(0, env["CLUSTER_SUBNET"].rfind('.'));
  CHECK(env["CLUSTER_POD_IPS"] == base + ".11," + base + ".12," + base + ".13");

  // The cluster DNS answers the service name through the search list, and
  // nothing else.
  r = c.cmd({"exec", "beamlink", "getent", "ahostsv4", "ewallet"});
  CHECK(r.code == 0);
  CHECK(r.out.find(base + ".12") != std::string::npos);
  CHECK(c.cmd({"exec", "beamlink", "getent", "hosts", "example.com"}).code != 0);

  // A real rpc into pod 2 lists the other two pods.
  r = c.cmd({"eval", "2", "lists:sort(nodes())"});
  CHECK_MESSAGE(r.code == 0, r.err);
  CHECK(r.out == "['ewallet@" + base + ".11','ewallet@" + base + ".13']\n");

  r = c.cmd({"status"});
  CHECK(r.code == 0);
  CHECK(r.out.find("alive(") != std::string::npos);

  // A killed pod stays in DNS; the others drop it.
  REQUIRE(c.cmd({"kill-pod", "1"}).code == 0);
  CHECK(wait_until([&] { return c.cmd({"nodes", "2"}).out == "ewallet@" + base + ".13\n"; }, 10s));
  CHECK(parse_env(c.cmd({"env"}).out)["CLUSTER_POD_IPS"].find(base + ".11") != std::string::npos);

  // A partitioned pod is dropped within ticktime and rejoins after heal.
  REQUIRE(c.cmd({"partition", "3"}).code == 0);
  CHECK(wait_until([&] { return c.cmd({"nodes", "2"}).out.empty(); }, 20s));
  REQUIRE(c.cmd({"heal", "3"}).code == 0);
  CHECK(wait_until([&] { return c.cmd({"nodes", "2"}).out == "ewallet@" + base + ".13\n"; }, 15s));

  r = c.cmd({"down"});
  CHECK_MESSAGE(r.code == 0, r.err);
  auto netns = run({"ip", "netns", "list"}).out;
  CHECK(netns.find(c.prefix + "-") == std::string::npos);
  CHECK(!std::filesystem::exists("/etc/netns/" + c.prefix + "-bl"));
  CHECK(!std::filesystem::exists(c.env["CLUSTER_STATE"]));
  CHECK(c.cmd({"down"}).code == 0);  // idempotent
}
