// beamlink joining the eWallet deployment simulated by scripts/cluster: real
// Elixir pods (ewallet@POD_IP, Peerage-like DNS loop), each with its own
// epmd, dnsmasq as the cluster DNS, and beamlink in a namespace of its own
// with NODE_DNS set.
#include <doctest/doctest.h>

#include <chrono>
#include <regex>

#include "cluster_fixture.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

constexpr auto kPoll = 1s;  // beamlink's POLL_INTERVAL in these tests

// beamlink run inside the cluster's beamlink namespace, as a deployment
// would start it: NODE_DNS, NODE_HOST, the cookie file, net_ticktime 10.
struct Beamlink : BeamlinkInNs {
  Beamlink(Cluster& c, std::vector<std::string> extra = {})
      : BeamlinkInNs(c, args(std::move(extra))) {
    REQUIRE_MESSAGE(proc->wait_out("is up", 60s), proc->err());
  }
  static std::vector<std::string> args(std::vector<std::string> extra) {
    extra.insert(extra.begin(), "run");
    return extra;
  }
  std::string log() { return proc->err(); }
  int count(const std::string& needle) { return occurrences(log(), needle); }
};

// Whether pod i (1-based) lists beamlink@NODE_HOST in nodes(hidden).
bool pod_sees_beamlink(Cluster& c, int i) {
  auto host = c.vars()["NODE_HOST"];
  auto r = c.cmd({"nodes", std::to_string(i), "--hidden"}, 20s);
  return r.out.find("beamlink@" + host) != std::string::npos;
}

}  // namespace

TEST_CASE("beamlink joins 3 pods within one poll interval and every pod sees it") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  auto t0 = std::chrono::steady_clock::now();
  Beamlink bl(c);
  for (auto& ip : c.pod_ips()) CHECK(bl.proc->wait_err("connected to ewallet@" + ip, kPoll + 1s));
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("joined 3 pods " << took.count() << " ms after exec");
  for (int i = 1; i <= 3; ++i) CHECK(wait_until([&] { return pod_sees_beamlink(c, i); }, 10s));

  // A pod added to the cluster is joined within one interval (+1 s).
  auto added = c.cmd({"add-pod"});
  REQUIRE(added.code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(added.out, m, std::regex("pod (\\d+) ([0-9.]+)")));
  CHECK_MESSAGE(bl.proc->wait_err("connected to ewallet@" + m[2].str(), kPoll + 60s),
                "add-pod: " << added.err << "\nbeamlink: " << bl.log());
  CHECK(wait_until([&] { return pod_sees_beamlink(c, std::stoi(m[1].str())); }, 60s));
}

TEST_CASE("a dead pod left in DNS slows nobody and is retried quietly with backoff") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  // Pod 1 becomes a black hole: still in DNS, every connect to it times out.
  REQUIRE(c.cmd({"kill-pod", "1", "--unreachable"}).code == 0);
  Beamlink bl(c);
  CHECK(bl.proc->wait_err("connected to ewallet@" + ips[1], kPoll + 60s));
  // A pod added now is joined at once, whatever the dead one is doing.
  auto added = c.cmd({"add-pod"});
  REQUIRE(added.code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(added.out, m, std::regex("pod (\\d+) ([0-9.]+)")));
  CHECK_MESSAGE(bl.proc->wait_err("connected to ewallet@" + m[2].str(), kPoll + 60s),
                "add-pod: " << added.err << "\nbeamlink: " << bl.log());
  // Over 15 s the dead pod is retried (backoff) but logged once.
  CHECK_FALSE(wait_until(
      [&] {
        return bl.count("ewallet@" + ips[0] + " at") + bl.count("connecting to ewallet@" + ips[0]) >
               1;
      },
      15s));
  CHECK(bl.count("connecting to ewallet@" + ips[0]) == 1);
}

TEST_CASE("a partitioned pod is dropped within net_ticktime and rejoined after heal") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  Beamlink bl(c);
  REQUIRE(bl.proc->wait_err("connected to ewallet@" + ips[0], kPoll + 60s));
  REQUIRE(c.cmd({"partition", "1"}).code == 0);
  auto t0 = std::chrono::steady_clock::now();
  CHECK(bl.proc->wait_err("connection to ewallet@" + ips[0] + " closed", 10s + 60s));
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("partition detected after " << took.count() << " ms (net_ticktime 10 s)");
  REQUIRE(c.cmd({"heal", "1"}).code == 0);
  int before = bl.count("connected to ewallet@" + ips[0]);
  CHECK(wait_until([&] { return bl.count("connected to ewallet@" + ips[0]) > before; }, 60s));
  CHECK(wait_until([&] { return pod_sees_beamlink(c, 1); }, 60s));
}

TEST_CASE("with the cluster DNS down nothing disconnects and new pods are found when it returns") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  Beamlink bl(c);
  for (auto& ip : ips) REQUIRE(bl.proc->wait_err("connected to ewallet@" + ip, kPoll + 1s));
  REQUIRE(c.cmd({"dns-stop"}).code == 0);
  CHECK(bl.proc->wait_err("keeping the 2 known peer(s)", kPoll + 60s));
  auto added = c.cmd({"add-pod", "--no-wait"});
  REQUIRE(added.code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(added.out, m, std::regex("pod (\\d+) ([0-9.]+)")));
  // Several failed polls: no disconnect, and the failure logged once.
  CHECK_FALSE(bl.proc->wait_err("closed", 4s));
  CHECK_MESSAGE(bl.count("keeping the 2 known peer(s)") == 1, bl.log());
  REQUIRE(c.cmd({"dns-start"}).code == 0);
  CHECK(bl.proc->wait_err("connected to ewallet@" + m[2].str(), kPoll + 60s));
  CHECK(bl.count("connection to ewallet@") == 0);
}

TEST_CASE("epmd restarted in beamlink's namespace: re-registered and connections untouched") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  Beamlink bl(c);
  for (auto& ip : ips) REQUIRE(bl.proc->wait_err("connected to ewallet@" + ip, kPoll + 1s));
  REQUIRE(c.cmd({"epmd-restart", "beamlink"}).code == 0);
  CHECK(bl.proc->wait_err("re-registered beamlink@", 60s));
  auto names = c.cmd({"exec", "beamlink", "epmd", "-names"});
  CHECK(names.out.find("name beamlink at port") != std::string::npos);
  CHECK(bl.count("connection to ewallet@") == 0);
  CHECK(pod_sees_beamlink(c, 1));
}

TEST_CASE("a pod with another cookie gives one clear error naming the cookie") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  auto odd = c.cmd({"add-pod", "--cookie", "not-the-cluster-cookie", "--no-wait"});
  REQUIRE(odd.code == 0);
  std::smatch m;
  REQUIRE(std::regex_search(odd.out, m, std::regex("pod (\\d+) ([0-9.]+)")));
  Beamlink bl(c);
  CHECK(bl.proc->wait_err("handshake with ewallet@" + m[2].str(), kPoll + 60s));
  CHECK(bl.log().find("cookies") != std::string::npos);
  // Retries (with backoff) do not repeat it.
  CHECK_FALSE(wait_until([&] { return bl.count("handshake with ewallet@" + m[2].str()) > 1; }, 8s));
  CHECK(bl.proc->wait_err("connected to ewallet@" + c.pod_ips()[0], 60s));
}

TEST_CASE("DNS naming an address where no epmd listens gives a clear error") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  REQUIRE(c.cmd({"kill-pod", "1", "--epmd"}).code == 0);
  Beamlink bl(c);
  CHECK(bl.proc->wait_err("no epmd at " + ips[0] + ":4369", kPoll + 60s));
  CHECK(bl.proc->wait_err("connected to ewallet@" + ips[1], 60s));
}

TEST_CASE("beamlink watch shows peers joining and leaving with the reason") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto v = c.vars();
  auto ips = c.pod_ips();
  Subprocess::Options o;
  o.env = {{"NODE_DNS", v["NODE_DNS"]}, {"NODE_HOST", v["NODE_HOST"]}, {"POLL_INTERVAL", "1"}};
  Subprocess watch({"ip", "netns", "exec", v["BEAMLINK_NETNS"], binary_path("app/beamlink"),
                    "watch", "--cookie-file", v["CLUSTER_COOKIE_FILE"]},
                   o);
  for (auto& ip : ips) {
    CHECK(watch.wait_out("discovered ewallet@" + ip, 60s));
    CHECK(watch.wait_out(" up        ewallet@" + ip, 60s));
  }
  REQUIRE(c.cmd({"kill-pod", "1"}).code == 0);
  CHECK(watch.wait_out(
      " down      ewallet@" + ips[0] + ": ewallet@" + ips[0] + " closed the connection", 60s));
  // watch does not register: it is nobody's peer.
  auto names = c.cmd({"exec", "beamlink", "epmd", "-names"});
  CHECK(names.out.find("beamlink") == std::string::npos);
}
