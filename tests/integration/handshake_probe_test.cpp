// probe_handshake against real erl nodes, each test on its own epmd: what an
// OTP node answers at each step, and each failure induced for real.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <string>

#include "dist/handshake_probe.hpp"
#include "support.hpp"

using namespace beamlink;
using namespace beamlink::dist;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

constexpr auto kProbeTimeout = 5000ms;

in_addr loopback() {
  in_addr a{};
  a.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

// The node's distribution port, as its epmd reports it.
std::uint16_t dist_port(ErlNode& n) {
  auto alive = n.name().substr(0, n.name().find('@'));
  auto r = n.eval("element(2, erl_epmd:port_please(\"" + alive + "\", {127,0,0,1}))");
  return static_cast<std::uint16_t>(std::stoi(r));
}

HandshakeReport probe(ErlNode& n, const std::string& expected,
                      const std::string& our_name = "probe@127.0.0.1",
                      const std::string& cookie = kCookie) {
  return probe_handshake(expected, loopback(), dist_port(n), our_name, cookie, kProbeTimeout);
}

bool has_flag(const HandshakeReport& r, const std::string& name) {
  const auto& v = r.peer.peer_flag_names;
  return std::find(v.begin(), v.end(), name) != v.end();
}

void log_report(const std::string& what, const HandshakeReport& r) {
  char flags[32];
  std::snprintf(flags, sizeof flags, "0x%llx", static_cast<unsigned long long>(r.peer.peer_flags));
  std::string text = what + ": stage " + std::string(stage_name(r.stage)) + ", status '" +
                     r.peer.status + "', peer '" + r.peer.peer_name + "', flags " + flags +
                     ", creation " + std::to_string(r.peer.peer_creation) + ", " + r.peer.otp.text +
                     ", " + (r.outcome.ok() ? std::string("ok") : r.outcome.error().message);
  MESSAGE(text);
}

}  // namespace

TEST_CASE("probe_handshake completes against an OTP node and reports its flags") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("net_kernel:monitor_nodes(true, [{node_type, all}])") == "ok");
  auto r = probe(t1, "t1@127.0.0.1");
  log_report("healthy", r);
  CHECK(r.outcome.ok());
  CHECK(r.tcp_connected);
  CHECK(r.stage == HandshakeStage::done);
  CHECK(r.peer.status == "ok");
  CHECK(r.peer.peer_name == "t1@127.0.0.1");
  CHECK(r.peer.peer_version == 6);
  CHECK(r.peer.peer_creation != 0);
  CHECK(r.peer.ack_verified);
  CHECK(has_flag(r, "DFLAG_UTF8_ATOMS"));
  CHECK(has_flag(r, "DFLAG_BIG_CREATION"));
  CHECK(has_flag(r, "DFLAG_HANDSHAKE_23"));
  CHECK(r.peer.missing_mandatory.empty());
  CHECK(r.peer.otp.at_least == 25);
  CHECK_FALSE(r.name_mismatch);
  // The peer saw a hidden node come up (and go again when the probe closed).
  CHECK(t1.eval("receive {nodeup, 'probe@127.0.0.1', I} -> proplists:get_value(node_type, I) "
                "after 5000 -> timeout end") == "hidden");
  CHECK(t1.eval("receive {nodedown, 'probe@127.0.0.1', _} -> down after 5000 -> timeout end") ==
        "down");
}

TEST_CASE("probe_handshake against a node with another cookie says the cookies differ") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port(), 60, "some-other-cookie"));
  auto r = probe(t1, "t1@127.0.0.1");
  log_report("other cookie", r);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK(r.outcome.error().code == Errc::cookie_rejected);
  CHECK(contains(r.outcome.error().message, "cookies differ"));
  CHECK(r.stage == HandshakeStage::recv_challenge_ack);
  CHECK(r.peer.status == "ok");
  CHECK(r.peer.peer_name == "t1@127.0.0.1");  // its challenge came before the rejection
  CHECK_FALSE(r.peer.ack_verified);
  // The peer logs the rejection the way the finding says it does.
  bool logged = wait_until(
      [&] {
        auto text = t1.process().out() + t1.process().err();
        return contains(text, "probe@127.0.0.1") && contains(text, "Invalid challenge reply");
      },
      5s);
  CHECK(logged);
}

TEST_CASE("probe_handshake reports a peer whose own name differs from the dialled one") {
  Epmd epmd;
  ErlNode pod(erl_options("ewallet@pod-7.ewallet.svc.cluster.local", epmd.port()));
  auto r = probe(pod, "ewallet@127.0.0.1");
  log_report("name mismatch", r);
  CHECK(r.outcome.ok());  // the handshake itself works
  CHECK(r.name_mismatch);
  CHECK(r.peer.peer_name == "ewallet@pod-7.ewallet.svc.cluster.local");
  CHECK(contains(r.name_mismatch_message, "NODE_HOST must be the pod IP"));
  CHECK(contains(r.name_mismatch_message, "ewallet@127.0.0.1"));
}

TEST_CASE("probe_handshake reports not_allowed from a node with net_kernel allow") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("net_kernel:allow(['someone@127.0.0.1'])") == "ok");
  auto r = probe(t1, "t1@127.0.0.1");
  log_report("not allowed", r);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK(r.peer.status == "not_allowed");
  CHECK(r.stage == HandshakeStage::recv_status);
  CHECK(r.outcome.error().code == Errc::handshake_failed);
  CHECK(contains(r.outcome.error().message, "does not allow our node name"));
}

TEST_CASE("probe_handshake reports alive when a node with our name is connected") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  ErlNode twin(erl_options("twin@127.0.0.1", epmd.port()));
  CHECK(twin.eval("net_adm:ping('t1@127.0.0.1')") == "pong");
  auto r = probe(t1, "t1@127.0.0.1", "twin@127.0.0.1");
  log_report("alive", r);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK(r.peer.status == "alive");
  CHECK(r.outcome.error().code == Errc::already_exists);
  CHECK(contains(r.outcome.error().message, "already connected"));
  // We answered "false": the real twin keeps its connection.
  CHECK(t1.eval("lists:member('twin@127.0.0.1', nodes())") == "true");
  CHECK(twin.eval("net_adm:ping('t1@127.0.0.1')") == "pong");
}

TEST_CASE("probe_handshake against a silent listener times out naming the stage") {
  int lfd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  REQUIRE(lfd >= 0);
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_addr = loopback();
  REQUIRE(::bind(lfd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
  REQUIRE(::listen(lfd, 4) == 0);  // never accepted: the kernel completes the connect
  socklen_t len = sizeof sa;
  REQUIRE(::getsockname(lfd, reinterpret_cast<sockaddr*>(&sa), &len) == 0);
  auto t0 = std::chrono::steady_clock::now();
  auto r = probe_handshake("t1@127.0.0.1", loopback(), ntohs(sa.sin_port), "probe@127.0.0.1",
                           kCookie, 300ms);
  auto took = std::chrono::steady_clock::now() - t0;
  ::close(lfd);
  log_report("silent", r);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK(r.tcp_connected);
  CHECK(r.outcome.error().code == Errc::timeout);
  CHECK(r.stage == HandshakeStage::recv_status);
  CHECK(contains(r.outcome.error().message, "recv_status"));
  CHECK(took >= 300ms);
  CHECK(took < 2s);
}

TEST_CASE("probe_handshake to a closed port is connection_refused") {
  auto port = static_cast<std::uint16_t>(free_port());
  auto r =
      probe_handshake("t1@127.0.0.1", loopback(), port, "probe@127.0.0.1", kCookie, kProbeTimeout);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK_FALSE(r.tcp_connected);
  CHECK(r.outcome.error().code == Errc::connection_refused);
  CHECK(contains(r.outcome.error().message, "nothing listens"));
}

TEST_CASE("probe_handshake with flags the peer requires missing gets not_allowed") {
  // OTP 25 answers not_allowed (not a closed connection) and logs which flag.
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = probe_handshake("t1@127.0.0.1", loopback(), dist_port(t1), "probe@127.0.0.1", kCookie,
                           kProbeTimeout, dflag::mandatory_25 & ~dflag::map_tag);
  log_report("without DFLAG_MAP_TAG", r);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK(r.peer.status == "not_allowed");
  CHECK(contains(r.outcome.error().message, "cannot handle"));
  CHECK(wait_until(
      [&] {
        auto text = t1.process().out() + t1.process().err();
        return contains(text, "probe@127.0.0.1") && contains(text, "cannot handle [\"MAP_TAG\"]");
      },
      5s));
}

TEST_CASE("probe_handshake with a malformed name is closed right after send_name") {
  Epmd epmd;
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  auto r = probe_handshake("t1@127.0.0.1", loopback(), dist_port(t1), "pro be@1@x", kCookie,
                           kProbeTimeout);
  log_report("malformed name", r);
  REQUIRE_FALSE(r.outcome.ok());
  CHECK(r.stage == HandshakeStage::recv_status);
  CHECK(r.peer.status.empty());
  CHECK(r.outcome.error().code == Errc::handshake_failed);
  CHECK(contains(r.outcome.error().message, "before answering a status"));
  CHECK(t1.eval("1 + 1") == "2");  // the peer stays up
}
