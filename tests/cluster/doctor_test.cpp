// `beamlink doctor --json` against scripts/cluster, each failure induced for
// real: the check id, its status and its fix are asserted.
#include <doctest/doctest.h>

#include <regex>

#include "cluster_fixture.hpp"

using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

struct Doctor {
  int code = -1;
  std::string json;
  std::string err;
  // The {"id":...,"subject":...,"status":...} objects, as text.
  std::vector<std::string> checks() const {
    std::vector<std::string> out;
    std::regex obj(
        "\\{\"id\":\"[^\"]*\",\"subject\":\"[^\"]*\",\"status\":\"[a-z]+\",\"finding\":\"(?:[^"
        "\"\\\\]|\\\\.)*\",\"fix\":\"(?:[^\"\\\\]|\\\\.)*\"\\}");
    for (auto it = std::sregex_iterator(json.begin(), json.end(), obj);
         it != std::sregex_iterator(); ++it)
      out.push_back(it->str());
    return out;
  }
  // The check with this id (and subject containing `subject`), or "".
  std::string check(const std::string& id, const std::string& subject = "") const {
    for (auto& c : checks())
      if (c.find("\"id\":\"" + id + "\"") != std::string::npos &&
          (subject.empty() || c.find(subject) != std::string::npos))
        return c;
    return "";
  }
  bool has(const std::string& id, const std::string& status,
           const std::string& subject = "") const {
    return check(id, subject).find("\"status\":\"" + status + "\"") != std::string::npos;
  }
};

Doctor doctor(Cluster& c, std::vector<std::string> extra = {}, std::string dns = "",
              std::string cookie_file = "") {
  auto v = c.vars();
  std::vector<std::string> argv = {"ip",
                                   "netns",
                                   "exec",
                                   v["BEAMLINK_NETNS"],
                                   "env",
                                   "NODE_HOST=" + v["NODE_HOST"],
                                   beamlink_bin(),
                                   "doctor",
                                   "--json",
                                   "--cookie-file",
                                   cookie_file.empty() ? v["CLUSTER_COOKIE_FILE"] : cookie_file,
                                   "--dns",
                                   dns.empty() ? v["NODE_DNS"] : dns};
  // These tests assert which check fails, not how fast: a generous stage
  // timeout keeps a loaded CI machine from turning slowness into failures.
  argv.insert(argv.end(), {"--timeout", "5000"});
  for (auto& e : extra) argv.push_back(e);
  auto r = run(argv, 60s);
  return Doctor{r.code, r.out, r.err};
}

// An erl node started inside pod i's namespace (on that pod's epmd).
std::unique_ptr<Subprocess> erl_in_pod(Cluster& c, int i, const std::string& name,
                                       std::vector<std::string> args) {
  auto v = c.vars();
  std::string cookie = run({"cat", v["CLUSTER_COOKIE_FILE"]}).out;
  std::vector<std::string> argv = {
      "ip",  "netns",      "exec",     c.prefix + "-p" + std::to_string(i),
      "erl", "-noshell",   "-noinput", "-name",
      name,  "-setcookie", cookie};
  for (auto& a : args) argv.push_back(a);
  auto p = std::make_unique<Subprocess>(argv);
  std::string alive = name.substr(0, name.find('@'));
  REQUIRE(wait_until(
      [&] {
        auto names = c.cmd({"exec", std::to_string(i), "epmd", "-names"}, 60s);
        return names.out.find("name " + alive + " at port") != std::string::npos;
      },
      20s));
  return p;
}

}  // namespace

TEST_CASE("doctor: a healthy 3-pod cluster exits 0 with every check passed") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "3"}).code == 0);
  auto d = doctor(c);
  CHECK_MESSAGE(d.code == 0, d.json << d.err);
  CHECK(d.json.find("\"healthy\":true") != std::string::npos);
  CHECK(d.json.find("\"status\":\"fail\"") == std::string::npos);
  CHECK(d.json.find("\"status\":\"warn\"") == std::string::npos);
  for (auto& ip : c.pod_ips())
    for (auto id : {"epmd.reachable", "epmd.registered", "dist.port_range", "dist.port_reachable",
                    "handshake.status", "handshake.name", "handshake.version", "handshake.cookie",
                    "mesh.visibility"})
      CHECK_MESSAGE(d.has(id, "pass", "ewallet@" + ip), id << " " << ip);
  CHECK(d.has("dns.resolve", "pass"));
  CHECK(d.has("mesh.ticktime", "pass"));
  CHECK(d.has("cookie.source", "pass"));
}

TEST_CASE("doctor: a pod with another cookie fails at handshake.cookie") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  auto odd = c.cmd({"add-pod", "--cookie", "another-cookie", "--no-wait"});
  std::smatch m;
  REQUIRE(std::regex_search(odd.out, m, std::regex("pod (\\d+) ([0-9.]+)")));
  // It never joins (that is the point): wait until it is registered instead.
  REQUIRE(wait_until(
      [&] {
        return c.cmd({"exec", m[1].str(), "epmd", "-names"}, 60s).out.find("name ewallet at") !=
               std::string::npos;
      },
      20s));
  auto d = doctor(c);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("handshake.cookie", "ewallet@" + m[2].str());
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("cookie") != std::string::npos);
  CHECK(d.has("handshake.cookie", "pass", "ewallet@" + c.pod_ips()[0]));
}

TEST_CASE("doctor: epmd stopped in a pod fails at epmd.reachable and skips the rest") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  REQUIRE(c.cmd({"kill-pod", "1", "--epmd"}).code == 0);
  auto d = doctor(c);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("epmd.reachable", "ewallet@" + ips[0]);
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("epmd -daemon") != std::string::npos);
  CHECK(d.has("handshake.status", "skip", "ewallet@" + ips[0]));
  CHECK(d.has("handshake.cookie", "pass", "ewallet@" + ips[1]));
}

TEST_CASE("doctor: a node listening outside the port range is flagged") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  auto ip = c.pod_ips()[0];
  auto odd = erl_in_pod(
      c, 1, "odd@" + ip,
      {"-kernel", "inet_dist_listen_min", "7100", "-kernel", "inet_dist_listen_max", "7100"});
  auto d = doctor(c, {"--connect", "odd@" + ip});
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("dist.port_range", "odd@" + ip);
  CHECK(check.find("\"status\":\"warn\"") != std::string::npos);
  CHECK(check.find("7100") != std::string::npos);
  CHECK(check.find("inet_dist_listen_min") != std::string::npos);
}

TEST_CASE("doctor: a node named after its hostname is a name mismatch") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto ips = c.pod_ips();
  REQUIRE(c.cmd({"kill-pod", "1"}).code == 0);  // its epmd stays
  auto named = erl_in_pod(c, 1, "ewallet@pod-1.example", {});
  auto d = doctor(c);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("handshake.name", "ewallet@" + ips[0]);
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("ewallet@pod-1.example") != std::string::npos);
  CHECK(check.find("NODE_HOST") != std::string::npos);
}

TEST_CASE("doctor: DNS answering one address with nothing behind it points at clusterIP None") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  REQUIRE(c.cmd({"kill-pod", "1", "--epmd"}).code == 0);
  auto d = doctor(c);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("dns.single_address");
  CHECK(check.find("\"status\":\"warn\"") != std::string::npos);
  CHECK(check.find("clusterIP: None") != std::string::npos);
}

TEST_CASE("doctor: NXDOMAIN and a stopped DNS server fail at dns.resolve") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  auto d = doctor(c, {}, "nosuch.default.svc.cluster.local");
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("dns.resolve");
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("NXDOMAIN") != std::string::npos);
  CHECK(check.find("Service") != std::string::npos);

  REQUIRE(c.cmd({"dns-stop"}).code == 0);
  d = doctor(c);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  check = d.check("dns.resolve");
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("DNS server") != std::string::npos);
}

TEST_CASE("doctor: pods that do not see each other show in the mesh check") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto v = c.vars();
  auto ips = c.pod_ips();
  std::string me = "doctor@" + v["NODE_HOST"];
  // Each pod allows only the doctor, and drops the other pod: a partition
  // between them that the doctor can still see across.
  for (int i : {1, 2}) {
    auto other = "ewallet@" + ips[i == 1 ? 1 : 0];
    auto r = c.cmd({"eval", std::to_string(i),
                    "net_kernel:allow(['" + me + "']), erlang:disconnect_node('" + other + "')"});
    REQUIRE_MESSAGE(r.code == 0, r.out << r.err);
  }
  auto d = doctor(c, {"--name", me});
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("mesh.visibility", "ewallet@" + ips[0]);
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("does not see ewallet@" + ips[1]) != std::string::npos);
}

TEST_CASE("doctor: different net_ticktimes are flagged") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  auto ip = c.pod_ips()[0];
  auto odd = erl_in_pod(c, 1, "tick@" + ip, {"-kernel", "net_ticktime", "20"});
  auto d = doctor(c, {"--connect", "tick@" + ip});
  INFO(d.json);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("mesh.ticktime");
  CHECK(check.find("\"status\":\"warn\"") != std::string::npos);
  CHECK(check.find("20") != std::string::npos);
  CHECK(check.find("net_ticktime") != std::string::npos);
}

TEST_CASE("doctor: Phoenix.PubSub pool sizes that differ are flagged") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  // Phoenix.PubSub 2.x's footprint in pg: scope 'Elixir.Phoenix.PubSub',
  // groups 'Elixir.NAME.Adapter', '..._2', ... one per pool worker.
  auto join = [](int groups) {
    std::string gs = "['Elixir.My.PubSub.Adapter'";
    for (int k = 2; k <= groups; ++k) gs += ",'Elixir.My.PubSub.Adapter_" + std::to_string(k) + "'";
    gs += "]";
    return "pg:start('Elixir.Phoenix.PubSub'), spawn(fun() -> [pg:join('Elixir.Phoenix.PubSub', G, "
           "self()) || G <- " +
           gs + "], receive stop -> ok end end), ok";
  };
  REQUIRE(c.cmd({"eval", "1", join(3)}).code == 0);
  REQUIRE(c.cmd({"eval", "2", join(1)}).code == 0);
  auto d = doctor(c, {"--pubsub", "My.PubSub"});
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("pubsub.pool_size");
  CHECK(check.find("\"status\":\"fail\"") != std::string::npos);
  CHECK(check.find("pool sizes differ") != std::string::npos);
  CHECK(check.find("pool_size") != std::string::npos);
}

TEST_CASE("doctor: a readable cookie file and a cookie on a command line are flagged") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  auto v = c.vars();
  // A copy of the cluster's cookie that others can read.
  std::string loose = v["CLUSTER_STATE"] + "/loose-cookie";
  REQUIRE(run({"install", "-m", "0644", v["CLUSTER_COOKIE_FILE"], loose}).code == 0);
  auto d = doctor(c, {}, "", loose);
  CHECK_MESSAGE(d.code == 1, d.json << d.err);
  auto check = d.check("cookie.source");
  CHECK(check.find("\"status\":\"warn\"") != std::string::npos);
  CHECK(check.find("chmod 400") != std::string::npos);
  CHECK(d.has("handshake.cookie", "pass"));  // the doctor still ran every stage

  // A BEAM node in the doctor's own namespace started with -setcookie.
  std::string cookie = run({"cat", v["CLUSTER_COOKIE_FILE"]}).out;
  Subprocess exposed({"ip", "netns", "exec", v["BEAMLINK_NETNS"], "erl", "-noshell", "-noinput",
                      "-name", "exposed@" + v["NODE_HOST"], "-setcookie", cookie});
  REQUIRE(wait_until(
      [&] {
        return c.cmd({"exec", "beamlink", "epmd", "-names"}, 60s).out.find("name exposed at") !=
               std::string::npos;
      },
      20s));
  d = doctor(c);
  check = d.check("cookie.cmdline");
  INFO(d.json);
  CHECK(check.find("\"status\":\"warn\"") != std::string::npos);
  CHECK(check.find("exposed@" + v["NODE_HOST"]) != std::string::npos);
  CHECK(check.find(cookie) == std::string::npos);  // named, never shown
}

TEST_CASE("doctor: its own IP in NODE_DNS warns unless it is a sidecar") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "2"}).code == 0);
  auto v = c.vars();
  auto ips = c.pod_ips();
  auto doctor = [&](const std::map<std::string, std::string>& where) {
    return run(
        {"ip", "netns", "exec", where.at("BEAMLINK_NETNS"), "env",
         "NODE_HOST=" + where.at("NODE_HOST"), beamlink_bin(), "doctor", "--json", "--cookie-file",
         v["CLUSTER_COOKIE_FILE"], "--dns", v["NODE_DNS"], "--timeout", "5000"},
        60s);
  };
  // The beamlink namespace's IP in the headless Service: not a sidecar.
  REQUIRE(c.cmd({"dns-add", "beamlink"}).code == 0);
  auto d = doctor(env_of(c, {}));
  INFO(d.out << d.err);
  std::regex own_warn(
      "\\{\"id\":\"dns.own_address\",[^}]*\"status\":\"warn\",[^}]*keeps dialling ewallet@" +
      std::regex_replace(v["NODE_HOST"], std::regex("\\."), "\\.") + "[^}]*\\}");
  CHECK(std::regex_search(d.out, own_warn));
  CHECK(d.code == 1);
  REQUIRE(c.cmd({"dns-del", "beamlink"}).code == 0);
  // A sidecar in pod 1: its pod's node is checked as a peer, all pass.
  d = doctor(env_of(c, {"--sidecar", "1"}));
  INFO(d.out << d.err);
  // (cookie.cmdline warns there: the pod's node has -setcookie.)
  CHECK(d.out.find("\"status\":\"fail\"") == std::string::npos);
  CHECK(d.out.find("\"id\":\"handshake.cookie\",\"subject\":\"ewallet@" + ips[0] +
                   "\",\"status\":\"pass\"") != std::string::npos);
  CHECK(std::regex_search(d.out, std::regex("\\{\"id\":\"dns.own_address\",[^}]*\"status\":"
                                            "\"pass\",[^}]*sidecar")));
}
