// A scripts/cluster cluster of the test's own (its own namespace prefix,
// subnet and state directory), torn down when the test ends.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "support.hpp"

namespace beamlink::test {

inline std::string script() {
  return source_path("scripts/cluster");
}

inline bool have_netns() {
  return ::geteuid() == 0 && run({"ip", "netns", "list"}, std::chrono::seconds(10)).code == 0;
}

// Cluster tests need root and network namespaces; elsewhere they report
// themselves skipped (ctest's SKIP_REGULAR_EXPRESSION matches the message).
#define NEED_NETNS()                                       \
  if (!have_netns()) {                                     \
    MESSAGE("skipped: needs root and network namespaces"); \
    return;                                                \
  }

// The KEY=VALUE lines of `text` as a map (other lines are passed over).
inline std::map<std::string, std::string> key_values(const std::string& text) {
  std::map<std::string, std::string> kv;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    auto eq = line.find('=');
    if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return kv;
}

struct Cluster {
  std::string prefix = "bt" + std::to_string(::getpid());
  std::map<std::string, std::string> env{{"CLUSTER_PREFIX", prefix},
                                         {"CLUSTER_STATE", "/tmp/beamlink-cluster-test-" + prefix},
                                         {"CLUSTER_TICKTIME", "10"},
                                         {"CLUSTER_POLL_MS", "1000"}};
  RunResult cmd(std::vector<std::string> args,
                std::chrono::milliseconds timeout = std::chrono::seconds(90)) {
    args.insert(args.begin(), script());
    return run(std::move(args), timeout, env);
  }
  // KEY=VALUE lines of `scripts/cluster env`.
  std::map<std::string, std::string> vars() { return key_values(cmd({"env"}).out); }
  // The pods' IPs, in pod order.
  std::vector<std::string> pod_ips() {
    std::vector<std::string> ips;
    std::stringstream ss(vars()["CLUSTER_POD_IPS"]);
    for (std::string ip; std::getline(ss, ip, ',');) ips.push_back(ip);
    return ips;
  }
  ~Cluster() { cmd({"down"}); }
};

// `scripts/cluster pubsub POD EXPR`: the result's JSON (last line of stdout,
// without the newline); fails the check with stderr when EXPR raised.
inline std::string pubsub(Cluster& c, int pod, const std::string& expr) {
  auto r = c.cmd({"pubsub", std::to_string(pod), expr}, std::chrono::seconds(60));
  CHECK_MESSAGE(r.code == 0, "pubsub " << pod << " " << expr << ": " << r.err);
  auto out = r.out;
  while (!out.empty() && out.back() == '\n') out.pop_back();
  auto nl = out.rfind('\n');
  return nl == std::string::npos ? out : out.substr(nl + 1);
}

// `scripts/cluster env [ARGS]` as a map (ARGS: --sidecar I, --beamlink
// NAME); fails the test when the script does.
inline std::map<std::string, std::string> env_of(Cluster& c, std::vector<std::string> args) {
  args.insert(args.begin(), "env");
  auto r = c.cmd(args);
  REQUIRE_MESSAGE(r.code == 0, r.err);
  return key_values(r.out);
}

// `beamlink ARGS...` (ARGS[0] the subcommand) as a deployment starts it:
// inside the namespace BEAMLINK_NETNS of `where` with its NODE_HOST (the
// cluster's own beamlink namespace when `where` is empty), with the
// cluster's cookie file and NODE_DNS, log level info, net_ticktime 10 and a
// DNS poll every second.
struct BeamlinkInNs {
  std::string netns, host;
  std::string token;  // sent as a bearer token by http() when set
  std::unique_ptr<Subprocess> proc;
  BeamlinkInNs(Cluster& c, std::vector<std::string> args) : BeamlinkInNs(c, {}, std::move(args)) {}
  BeamlinkInNs(Cluster& c, std::map<std::string, std::string> where,
               std::vector<std::string> args) {
    auto v = c.vars();
    if (where.empty()) where = v;
    netns = where.at("BEAMLINK_NETNS");
    host = where.at("NODE_HOST");
    std::vector<std::string> argv = {beamlink_bin(),           args.at(0),    "--cookie-file",
                                     v["CLUSTER_COOKIE_FILE"], "--log-level", "info"};
    argv.insert(argv.end(), args.begin() + 1, args.end());
    Subprocess::Options o;
    o.env = {{"NODE_DNS", v["NODE_DNS"]},
             {"NODE_HOST", host},
             {"NET_TICKTIME", "10"},
             {"POLL_INTERVAL", "1"}};
    proc = std::make_unique<Subprocess>(in_ns(argv), o);
  }
  std::string node() const { return "beamlink@" + host; }
  // A command inside this beamlink's namespace.
  std::vector<std::string> in_ns(std::vector<std::string> argv) const {
    argv.insert(argv.begin(), {"ip", "netns", "exec", netns});
    return argv;
  }
  // A request to the relay on 127.0.0.1:7070 in this beamlink's namespace.
  HttpReply http(const std::string& method, const std::string& path,
                 const std::string& body = "") const {
    std::vector<std::string> extra;
    if (!token.empty()) extra = {"-H", "Authorization: Bearer " + token};
    return test::http(method, "http://127.0.0.1:7070" + path, body, extra, in_ns({}));
  }
};

}  // namespace beamlink::test
