// A scripts/cluster cluster of the test's own (its own namespace prefix,
// subnet and state directory), torn down when the test ends.
#pragma once

#include <doctest/doctest.h>
#include <unistd.h>

#include <map>
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
  std::map<std::string, std::string> vars() {
    std::map<std::string, std::string> kv;
    std::istringstream in(cmd({"env"}).out);
    for (std::string line; std::getline(in, line);) {
      auto eq = line.find('=');
      if (eq != std::string::npos) kv[line.substr(0, eq)] = line.substr(eq + 1);
    }
    return kv;
  }
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

}  // namespace beamlink::test
