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

  auto env = key_values(c.cmd({"env"}).out);
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
  CHECK(wait_until([&] { return c.cmd({"nodes", "2"}).out == "ewallet@" + base + ".13\n"; }, 60s));
  CHECK(key_values(c.cmd({"env"}).out)["CLUSTER_POD_IPS"].find(base + ".11") != std::string::npos);

  // A partitioned pod is dropped within ticktime and rejoins after heal.
  REQUIRE(c.cmd({"partition", "3"}).code == 0);
  CHECK(wait_until([&] { return c.cmd({"nodes", "2"}).out.empty(); }, 60s));
  REQUIRE(c.cmd({"heal", "3"}).code == 0);
  CHECK(wait_until([&] { return c.cmd({"nodes", "2"}).out == "ewallet@" + base + ".13\n"; }, 60s));

  r = c.cmd({"down"});
  CHECK_MESSAGE(r.code == 0, r.err);
  auto netns = run({"ip", "netns", "list"}).out;
  CHECK(netns.find(c.prefix + "-") == std::string::npos);
  CHECK(!std::filesystem::exists("/etc/netns/" + c.prefix + "-bl"));
  CHECK(!std::filesystem::exists(c.env["CLUSTER_STATE"]));
  CHECK(c.cmd({"down"}).code == 0);  // idempotent
}

namespace {

constexpr const char* kOk = R"({"$atom":"ok"})";

// Broadcasts 1..12 on NAME's "room:1" from pod 1, each from a new process
// (so phash2(self(), N) picks different groups) followed, from the same
// process, by a fence to every remote worker of every group; waits on pod 2
// for all the fences (12 * pool): every copy a broadcast sent to pod 2 has
// then arrived. Checks that pod 2's and pod 1's recorders got each number
// exactly once.
void check_broadcast_once(Cluster& c, const std::string& name, int pool) {
  const std::string n = "\"" + name + "\"";
  REQUIRE(pubsub(c, 1, "subscribe(" + n + ", \"room:1\")") == kOk);
  REQUIRE(pubsub(c, 2, "subscribe(" + n + ", \"room:1\")") == kOk);
  CHECK(pubsub(c, 1, "clear(" + n + ", \"room:1\")") == kOk);
  CHECK(pubsub(c, 2, "clear(" + n + ", \"room:1\")") == kOk);
  pubsub(c, 1,
         "for i <- 1..12 do\n"
         "  {pid, ref} = spawn_monitor(fn -> broadcast(" +
             n + ", \"room:1\", i); fence(" + n +
             ", \"room:1\") end)\n"
             "  receive do {:DOWN, ^ref, :process, ^pid, :normal} -> :ok end\n"
             "end");
  const auto fences = std::to_string(12 * pool);
  CHECK(pubsub(c, 2, "wait_for(" + n + ", \"room:1\", fence_message(), " + fences + ", 10_000)") ==
        fences);
  const std::string numbers = "[1,2,3,4,5,6,7,8,9,10,11,12]";
  const std::string sorted =
      "messages(" + n + ", \"room:1\") |> Enum.filter(&is_integer/1) |> Enum.sort()";
  CHECK(pubsub(c, 2, sorted) == numbers);
  CHECK(pubsub(c, 1, sorted) == numbers);
  CHECK(pubsub(c, 1, "count(" + n + ", \"room:1\")") == "12");  // no fence comes back
}

// Every group of NAME (pool size 3 and 1 here) has a member on both pods.
std::string all_members_expr(const std::string& names) {
  return "wait_until(fn -> Enum.flat_map(" + names +
         ", &Map.values(members(&1))) end, fn l -> Enum.all?(l, &(length(&1) == 2)) end, 10_000)"
         " |> Enum.all?(&(length(&1) == 2))";
}

}  // namespace

TEST_CASE(
    "scripts/cluster CLUSTER_PUBSUB 2.x: one group per broadcast - restart_scope - start-pod") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "2:Bad:0";
  auto r = c.cmd({"up", "2"});
  CHECK(r.code == 1);
  CHECK(r.err.find("CLUSTER_PUBSUB: bad entry '2:Bad:0'") != std::string::npos);
  CHECK(!std::filesystem::exists(c.env["CLUSTER_STATE"]));

  c.env["CLUSTER_PUBSUB"] = "2:EWalletAPI.PubSub:3;2:Single.PubSub";
  r = c.cmd({"up", "2"});
  REQUIRE_MESSAGE(r.code == 0, std::string(r.out + r.err));
  CHECK(c.vars()["CLUSTER_PUBSUB"] == "2:EWalletAPI.PubSub:3,2:Single.PubSub");

  // What a peer sees: the scope Phoenix.PubSub with NAME.Adapter, _2, _3,
  // each group's worker registered under the group's name, NAME registered.
  const std::string groups =
      R"([{"$atom":"Elixir.EWalletAPI.PubSub.Adapter"},{"$atom":"Elixir.EWalletAPI.PubSub.Adapter_2"},)"
      R"({"$atom":"Elixir.EWalletAPI.PubSub.Adapter_3"},{"$atom":"Elixir.Single.PubSub.Adapter"}])";
  CHECK(pubsub(c, 1, "groups()") == groups);
  CHECK(
      pubsub(c, 2,
             "Enum.map([EWalletAPI.PubSub, EWalletAPI.PubSub.Adapter, EWalletAPI.PubSub.Adapter_3,"
             " Single.PubSub, Single.PubSub.Adapter], &(&1 in :erlang.registered()))") ==
      "[true,true,true,true,true]");
  CHECK(pubsub(c, 1, "Process.whereis(Single.PubSub.Adapter_2)") == "null");
  CHECK(pubsub(c, 1, all_members_expr("[\"EWalletAPI.PubSub\", \"Single.PubSub\"]")) == "true");

  check_broadcast_once(c, "EWalletAPI.PubSub", 3);
  check_broadcast_once(c, "Single.PubSub", 1);

  // A channel broadcast through the Phoenix.Channel.Server dispatcher, as a
  // remote peer publishes it: to the registered group name on the pod.
  auto ip2 = c.pod_ips().at(1);
  CHECK(pubsub(c, 2, "clear(\"EWalletAPI.PubSub\", \"room:1\")") == kOk);
  pubsub(c, 1,
         "forward(\"ewallet@" + ip2 +
             "\", \"EWalletAPI.PubSub\", \"room:1\", %Phoenix.Socket.Broadcast{topic: \"room:1\","
             " event: \"new_msg\", payload: %{\"body\" => \"hi\"}})");
  CHECK(pubsub(c, 2, "wait_count(\"EWalletAPI.PubSub\", \"room:1\", 1, 10_000)") == "1");
  CHECK(
      pubsub(c, 2, "messages(\"EWalletAPI.PubSub\", \"room:1\")") ==
      R"([{"__struct__":{"$atom":"Elixir.Phoenix.Socket.Broadcast"},"event":"new_msg","payload":{"body":"hi"},"topic":"room:1"}])");
  CHECK(pubsub(c, 2, "errors()") == "[]");

  // A restarted scope: the workers join the new one and pod 2 sees them.
  CHECK(pubsub(c, 1, "restart_scope()") == groups);
  CHECK(pubsub(c, 1, "groups()") == groups);
  CHECK(pubsub(c, 2, all_members_expr("[\"EWalletAPI.PubSub\", \"Single.PubSub\"]")) == "true");
  check_broadcast_once(c, "EWalletAPI.PubSub", 3);

  // A killed pod comes back with its pubsubs (and a fresh recorder).
  REQUIRE(c.cmd({"kill-pod", "2"}).code == 0);
  r = c.cmd({"start-pod", "2"});
  REQUIRE_MESSAGE(r.code == 0, r.err);
  CHECK(r.out.find("with pubsub 2:EWalletAPI.PubSub:3 2:Single.PubSub") != std::string::npos);
  CHECK(pubsub(c, 2, "groups()") == groups);
  CHECK(pubsub(c, 1, all_members_expr("[\"EWalletAPI.PubSub\", \"Single.PubSub\"]")) == "true");
  check_broadcast_once(c, "EWalletAPI.PubSub", 3);

  // bench_broadcast returns the elapsed microseconds; the remote recorder
  // gets every one.
  CHECK(pubsub(c, 2, "clear(\"EWalletAPI.PubSub\", \"room:1\")") == kOk);
  r = c.cmd({"pubsub", "1",
             "bench_broadcast(\"EWalletAPI.PubSub\", \"room:1\", \"ev\", %{\"x\" => 1}, 1000)"});
  CHECK(r.code == 0);
  CHECK(std::stol(r.out) > 0);
  CHECK(pubsub(c, 2, "wait_count(\"EWalletAPI.PubSub\", \"room:1\", 1000, 10_000)") == "1000");

  CHECK(c.cmd({"down"}).code == 0);
}

TEST_CASE("scripts/cluster CLUSTER_PUBSUB 1.1: two PG2Servers - forward_to_local by name") {
  NEED_NETNS();
  Cluster c;
  c.env["CLUSTER_PUBSUB"] = "1.1:EWalletAPI.PubSub 1.1:AdminAPI.PubSub";
  auto r = c.cmd({"up", "2"});
  REQUIRE_MESSAGE(r.code == 0, std::string(r.out + r.err));
  auto ip2 = c.pod_ips().at(1);

  // 1.1 has no pg scope; each pubsub's server is registered under its name.
  CHECK(pubsub(c, 2, "Process.whereis(Phoenix.PubSub)") == "null");
  CHECK(pubsub(c, 2,
               "Enum.map([EWalletAPI.PubSub, AdminAPI.PubSub], &(&1 in :erlang.registered()))") ==
        "[true,true]");

  REQUIRE(pubsub(c, 2, R"(subscribe("EWalletAPI.PubSub", "room:1"))") == kOk);
  REQUIRE(pubsub(c, 2, R"(subscribe("AdminAPI.PubSub", "room:1"))") == kOk);
  // {forward_to_local, Phoenix.Channel.Server, none, Topic, Msg} to
  // 'Elixir.AdminAPI.PubSub' on pod 2, then fences to both servers there.
  CHECK(pubsub(c, 1,
               "forward(\"ewallet@" + ip2 +
                   "\", \"AdminAPI.PubSub\", \"room:1\", %Phoenix.Socket.Broadcast{topic: "
                   "\"room:1\", event: \"e\", payload: %{status: :ok}});"
                   " fence(\"AdminAPI.PubSub\", \"room:1\"); fence(\"EWalletAPI.PubSub\", "
                   "\"room:1\")") == "{\"ewallet@" + ip2 + "\":1}");
  CHECK(pubsub(c, 2,
               R"({wait_for("AdminAPI.PubSub", "room:1", fence_message(), 1, 10_000),)"
               R"( wait_for("EWalletAPI.PubSub", "room:1", fence_message(), 1, 10_000)})") ==
        R"({"$tuple":[1,1]})");
  CHECK(
      pubsub(c, 2, R"(messages("AdminAPI.PubSub", "room:1"))") ==
      R"([{"__struct__":{"$atom":"Elixir.Phoenix.Socket.Broadcast"},"event":"e","payload":{"status":{"$atom":"ok"}},"topic":"room:1"},{"$atom":"$fence"}])");
  CHECK(pubsub(c, 2, R"(messages("EWalletAPI.PubSub", "room:1"))") == R"([{"$atom":"$fence"}])");

  // A 1.1 broadcast on pod 1 reaches the same pubsub on pod 2, once.
  pubsub(
      c, 1,
      R"(broadcast("EWalletAPI.PubSub", "room:1", :hello); fence("EWalletAPI.PubSub", "room:1"))");
  CHECK(pubsub(c, 2, R"(wait_for("EWalletAPI.PubSub", "room:1", fence_message(), 2, 10_000))") ==
        "2");
  CHECK(pubsub(c, 2, R"(count("EWalletAPI.PubSub", "room:1", :hello))") == "1");
  CHECK(pubsub(c, 2, R"(count("AdminAPI.PubSub", "room:1"))") == "2");
  CHECK(pubsub(c, 2, "errors()") == "[]");

  CHECK(c.cmd({"down"}).code == 0);
}

TEST_CASE(
    "scripts/cluster CLUSTER_OTP=22: OTP 22 pods mesh by DNS with Phoenix.PubSub 1.1.2 on pg2") {
  NEED_NETNS();
  NEED_OTP22();
  Cluster c;
  c.env["CLUSTER_OTP"] = "22";
  // 2.x needs pg (OTP 23+): refused before anything is made.
  c.env["CLUSTER_PUBSUB"] = "2:EWalletAPI.PubSub";
  auto r = c.cmd({"up", "3"});
  CHECK(r.code == 1);
  CHECK(r.err.find("OTP 22 pods offer 1.1:NAME") != std::string::npos);

  c.env["CLUSTER_PUBSUB"] = "1.1:EWalletAPI.PubSub,1.1:AdminAPI.PubSub";
  r = c.cmd({"up", "3"}, std::chrono::seconds(180));
  REQUIRE_MESSAGE(r.code == 0, std::string(r.out + r.err));
  CHECK(r.out.find("3 pods meshed") != std::string::npos);
  CHECK(c.vars()["CLUSTER_OTP"] == "22");
  auto ips = c.pod_ips();
  REQUIRE(ips.size() == 3);
  std::string all_pods = "[";
  for (auto& ip : ips)
    all_pods += std::string(all_pods.size() > 1 ? "," : "") + "\"ewallet@" + ip + "\"";
  all_pods += "]";

  for (int p = 1; p <= 3; ++p) {
    CHECK(pubsub(c, p, "list_to_binary(erlang:system_info(otp_release))") == "\"22\"");
    // The PG2Servers of every pod are members of {phx, NAME} (pg2's own
    // exchange between visible nodes) and registered under the name.
    CHECK(pubsub(c, p, "member_nodes(\"EWalletAPI.PubSub\")") == all_pods);
    CHECK(pubsub(c, p, "member_nodes(\"AdminAPI.PubSub\")") == all_pods);
    CHECK(pubsub(c, p,
                 "[lists:member(N, registered()) || N <- ['Elixir.EWalletAPI.PubSub', "
                 "'Elixir.AdminAPI.PubSub', pg2]]") == "[true,true,true]");
    CHECK(pubsub(c, p, "whereis(pg)") == "null");  // no pg on OTP 22
    REQUIRE(pubsub(c, p, "subscribe(\"EWalletAPI.PubSub\", \"room:1\")") == kOk);
  }

  // A 1.1 broadcast on pod 1 reaches each pod's subscribers once.
  CHECK(pubsub(c, 1,
               "broadcast(\"EWalletAPI.PubSub\", \"room:1\", #{status => ok, data => 1}),"
               " fence(\"EWalletAPI.PubSub\", \"room:1\")") ==
        "{\"ewallet@" + ips[1] + "\":1,\"ewallet@" + ips[2] + "\":1}");
  for (int p = 2; p <= 3; ++p)
    CHECK(pubsub(c, p, "wait_for(\"EWalletAPI.PubSub\", \"room:1\", fence_message(), 1, 60000)") ==
          "1");
  CHECK(pubsub(c, 1, "messages(\"EWalletAPI.PubSub\", \"room:1\")") ==
        R"([{"data":1,"status":{"$atom":"ok"}}])");
  for (int p = 2; p <= 3; ++p) {
    CHECK(pubsub(c, p, "messages(\"EWalletAPI.PubSub\", \"room:1\")") ==
          R"([{"data":1,"status":{"$atom":"ok"}},{"$atom":"$fence"}])");
    CHECK(pubsub(c, p, "errors()") == "[]");
  }

  // A restarted pod comes back with its pubsubs and its pg2 membership.
  CHECK(c.cmd({"kill-pod", "2"}).code == 0);
  r = c.cmd({"start-pod", "2"}, std::chrono::seconds(120));
  REQUIRE_MESSAGE(r.code == 0, std::string(r.out + r.err));
  CHECK(r.out.find("with pubsub 1.1:EWalletAPI.PubSub 1.1:AdminAPI.PubSub") != std::string::npos);
  CHECK(pubsub(c, 1,
               "wait_until(fun() -> member_nodes(\"EWalletAPI.PubSub\") end, fun(L) -> length(L) "
               "== 3 end, 60000)") == all_pods);

  CHECK(c.cmd({"down"}).code == 0);
}

namespace {

// A TCP server that, to each client, streams "NAME N" lines every 20 ms;
// and a client that prints each line it reads ("got NAME N"), then "eof" or
// "error TEXT" when its connection ends.
constexpr const char* kStreamServer = R"py(
import socket, sys, threading, time
name = sys.argv[1]
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7070))
s.listen(16)
print("listening", flush=True)
def serve(c):
    n = 0
    try:
        while True:
            c.sendall(b"%s %d\n" % (name.encode(), n))
            n += 1
            time.sleep(0.02)
    except OSError:
        c.close()
while True:
    c, _ = s.accept()
    threading.Thread(target=serve, args=(c,), daemon=True).start()
)py";

constexpr const char* kStreamClient = R"py(
import socket, sys
try:
    c = socket.create_connection((sys.argv[1], 7070), timeout=30)
    for line in c.makefile("rb"):
        print("got " + line.decode().strip(), flush=True)
    print("eof", flush=True)
except OSError as e:
    print("error " + str(e), flush=True)
)py";

}  // namespace

TEST_CASE(
    "scripts/cluster service: open connections keep their endpoint through changes - none "
    "refuses") {
  NEED_NETNS();
  Cluster c;
  REQUIRE(c.cmd({"up", "1"}).code == 0);
  std::map<std::string, std::unique_ptr<Subprocess>> servers;
  for (const std::string name : {"r1", "r2"}) {
    REQUIRE(c.cmd({"add-beamlink", name}).code == 0);
    auto ns = env_of(c, {"--beamlink", name})["BEAMLINK_NETNS"];
    servers[name] = std::make_unique<Subprocess>(
        std::vector<std::string>{"ip", "netns", "exec", ns, "python3", "-c", kStreamServer, name});
    REQUIRE_MESSAGE(servers[name]->wait_out("listening", 60s), servers[name]->err());
  }
  auto v = c.vars();
  const std::string vip = v["CLUSTER_SERVICE_IP"];
  auto client = [&] {
    return std::make_unique<Subprocess>(std::vector<std::string>{
        "ip", "netns", "exec", v["BEAMLINK_NETNS"], "python3", "-c", kStreamClient, vip});
  };
  auto lines = [](Subprocess& p) { return occurrences(p.out(), "got "); };

  REQUIRE(c.cmd({"service", "7070", "beamlink:r1"}).code == 0);
  auto open = client();
  REQUIRE_MESSAGE(open->wait_out("got r1 ", 60s), open->out() << open->err());
  // Endpoints come and go while r1 streams to the open connection, as in a
  // rolling restart: the connection stays with r1 and loses nothing.
  for (int k = 0; k < 10; ++k) {
    std::vector<std::string> args = {"service", "7070", "beamlink:r1"};
    if (k % 2 == 0) args.push_back("beamlink:r2");
    auto r = c.cmd(args);
    REQUIRE_MESSAGE(r.code == 0, r.err);
    auto seen = lines(*open);
    REQUIRE_MESSAGE(wait_until([&] { return lines(*open) >= seen + 5 || !open->running(); }, 60s),
                    open->out());
    REQUIRE_MESSAGE(open->running(), "change " << k << ": " << open->out());
  }
  CHECK(occurrences(open->out(), "got r2 ") == 0);

  // A new connection goes to the endpoints there are now; with none it is
  // refused.
  REQUIRE(c.cmd({"service", "7070", "beamlink:r2"}).code == 0);
  auto second = client();
  CHECK_MESSAGE(second->wait_out("got r2 ", 60s), second->out() << second->err());
  REQUIRE(c.cmd({"service", "7070"}).code == 0);
  auto refused = client();
  CHECK_MESSAGE(refused->wait_out("error ", 60s), refused->out());
  CHECK(refused->out().find("refused") != std::string::npos);
  CHECK(open->running());
  CHECK(second->running());
}
