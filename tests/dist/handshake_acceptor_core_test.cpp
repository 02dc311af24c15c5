// HandshakeAcceptorCore driven by initiator messages built by hand from
// "Distribution Handshake" in the ERTS user's guide (versions 5 and 6), fed
// whole, split at every point and byte by byte; every failure turned into
// its error; and the initiator core against the acceptor core.
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "dist/handshake_acceptor_core.hpp"
#include "dist/handshake_core.hpp"
#include "handshake_bytes.hpp"

using namespace beamlink;
using namespace beamlink::dist;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kOurName = "beamlink@127.0.0.1";
constexpr const char* kPeerName = "t1@127.0.0.1";
constexpr std::uint32_t kOurChallenge = 1234567;
constexpr std::uint32_t kPeerChallenge = 3735928559u;
constexpr std::uint32_t kCreation = 0x5eed;
// The flags a real OTP 25 node (Debian's erlang 25, -name) sent in its challenge.
constexpr std::uint64_t kOtp25Flags = 0xd07df7fbd;
// The flags OTP 22.3 (../shared/otp22) sends in its version 5 name.
constexpr std::uint64_t kOtp22Flags = 0xdf7fbd;
// What ei (OTP 25, erl_interface 5.3) sent in its challenge to an OTP 25-style
// name, read from an ei_accept_tmo acceptor (beamlink before this core).
constexpr std::uint64_t kEiChallengeFlags = 0x407074f9c;

// send_name, version 6: 'N' Flags:8 Creation:4 Nlen:2 Name.
std::string name_v6(const std::string& name = kPeerName, std::uint64_t flags = kOtp25Flags) {
  return frame("N" + be(flags, 8) + be(0x64a1b2c3, 4) + be(name.size(), 2) + name);
}
// send_name, version 5: 'n' Version:2 Flags:4 Name.
std::string name_v5(const std::string& name = kPeerName, std::uint64_t flags = kOtp22Flags,
                    int version = 5) {
  return frame("n" + be(version, 2) + be(flags, 4) + name);
}
// send_challenge_reply: 'r' Challenge:4 Digest:16 (the digest of our challenge).
std::string reply(const std::string& cookie = kCookie) {
  return frame("r" + be(kPeerChallenge, 4) + digest_bytes(kOurChallenge, cookie));
}
std::string expected_challenge_v6() {
  return frame("N" + be(dflag::ei_hidden_node, 8) + be(kOurChallenge, 4) + be(kCreation, 4) +
               be(std::string(kOurName).size(), 2) + kOurName);
}
std::string expected_challenge_v5() {
  return frame("n" + be(5, 2) + be(dflag::v5_default, 4) + be(kOurChallenge, 4) + kOurName);
}
std::string expected_ack() {
  return frame("a" + digest_bytes(kPeerChallenge, kCookie));
}

HandshakeAcceptorCore make_core(NameStatus status = NameStatus::ok) {
  HandshakeAcceptorCore::Options o;
  o.our_name = kOurName;
  o.cookie = kCookie;
  o.creation = kCreation;
  o.our_challenge = kOurChallenge;
  o.name_status = [status](const std::string&) { return status; };
  return HandshakeAcceptorCore(std::move(o));
}

std::string feed(HandshakeAcceptorCore& core, const std::string& bytes) {
  return core.feed(std::span<const char>(bytes.data(), bytes.size()));
}

// Feeds `in` split at `cut`, then the rest; returns everything the core sent.
std::string feed_split(HandshakeAcceptorCore& core, const std::string& in, std::size_t cut) {
  std::string out = feed(core, in.substr(0, cut));  // in order: + does not sequence
  return out + feed(core, in.substr(cut));
}

}  // namespace

TEST_CASE("acceptor core completes a version 6 handshake whole and at every split") {
  const std::string in = name_v6() + reply();
  const std::string want = frame("sok") + expected_challenge_v6() + expected_ack();
  for (std::size_t cut = 0; cut <= in.size(); ++cut) {
    auto core = make_core();
    // The reply only comes after our challenge: feed the name part first.
    auto name_len = name_v6().size();
    std::string out;
    if (cut <= name_len) {
      out = feed_split(core, in.substr(0, name_len), cut);
      out += feed(core, in.substr(name_len));
    } else {
      out = feed(core, in.substr(0, name_len));
      out += feed_split(core, in.substr(name_len), cut - name_len);
    }
    CAPTURE(cut);
    REQUIRE(core.done());
    CHECK(out == want);
    CHECK(core.peer().name == kPeerName);
    CHECK(core.peer().version == 6);
    CHECK(core.peer().flags == kOtp25Flags);
    CHECK(core.peer().creation == 0x64a1b2c3u);
    CHECK_FALSE(core.peer().replaced);
  }
}

TEST_CASE("acceptor core completes byte by byte") {
  auto core = make_core();
  std::string out;
  for (char c : name_v6()) out += core.feed(std::span<const char>(&c, 1));
  for (char c : reply()) out += core.feed(std::span<const char>(&c, 1));
  CHECK(core.done());
  CHECK(out == frame("sok") + expected_challenge_v6() + expected_ack());
}

TEST_CASE("acceptor core answers a version 5 peer in version 5") {
  auto name = name_v5();
  for (std::size_t cut = 0; cut <= name.size(); ++cut) {
    auto core = make_core();
    CAPTURE(cut);
    auto out = feed_split(core, name, cut);
    CHECK(out == frame("sok") + expected_challenge_v5());
    CHECK(core.stage() == AcceptorStage::recv_challenge_reply);
    auto r = reply();
    CHECK(feed_split(core, r, cut % r.size()) == expected_ack());
    REQUIRE(core.done());
    CHECK(core.peer().version == 5);
    CHECK(core.peer().flags == kOtp22Flags);
    CHECK(core.peer().creation == 0u);
  }
}

TEST_CASE(
    "acceptor core answers an old name with DFLAG_HANDSHAKE_23 in version 6 with a complement") {
  auto core = make_core();
  auto low = kOtp25Flags & 0xffffffffu;
  CHECK(feed(core, name_v5(kPeerName, low)) == frame("sok") + expected_challenge_v6());
  CHECK(core.stage() == AcceptorStage::recv_complement);
  CHECK(feed(core, frame("c" + be(kOtp25Flags >> 32, 4) + be(77, 4)) + reply()) == expected_ack());
  REQUIRE(core.done());
  CHECK(core.peer().version == 6);
  CHECK(core.peer().flags == kOtp25Flags);
  CHECK(core.peer().creation == 77u);
}

TEST_CASE("initiator core and acceptor core complete with each other") {
  for (std::size_t chunk : {std::size_t{1}, std::size_t{3}, std::size_t{1000}}) {
    CAPTURE(chunk);
    HandshakeInitiatorCore ini(kPeerName, kCookie, dflag::probe_default, 9, kPeerChallenge);
    auto acc = make_core();
    std::string to_acc = ini.start(), to_ini;
    for (int round = 0; round < 10 && !(ini.done() && acc.done()); ++round) {
      for (std::size_t i = 0; i < to_acc.size(); i += chunk)
        to_ini +=
            acc.feed(std::span<const char>(to_acc).subspan(i, std::min(chunk, to_acc.size() - i)));
      to_acc.clear();
      for (std::size_t i = 0; i < to_ini.size(); i += chunk)
        to_acc +=
            ini.feed(std::span<const char>(to_ini).subspan(i, std::min(chunk, to_ini.size() - i)));
      to_ini.clear();
    }
    CHECK(ini.done());
    CHECK(acc.done());
    CHECK(ini.findings().peer_name == kOurName);
    CHECK(ini.findings().peer_flags == dflag::ei_hidden_node);
    CHECK(acc.peer().name == kPeerName);
    CHECK(acc.peer().flags == dflag::probe_default);
  }
}

TEST_CASE("initiator core with another cookie: digest mismatch - the cookies differ") {
  HandshakeInitiatorCore ini(kPeerName, "another-cookie", dflag::probe_default, 9, kPeerChallenge);
  auto acc = make_core();
  auto to_ini = feed(acc, ini.start());
  auto to_acc = feed(acc, ini.feed(std::span<const char>(to_ini)));
  CHECK(to_acc.empty());
  REQUIRE(acc.failed());
  CHECK(acc.failed_at() == AcceptorStage::recv_challenge_reply);
  CHECK(acc.error().code == Errc::cookie_rejected);
  CHECK(acc.reason() == "digest_mismatch");
  CHECK(acc.error().message ==
        "digest mismatch — the cookies differ (peer t1@127.0.0.1) at recv_challenge_reply: give "
        "the peer and beamlink the same cookie");
  ini.on_closed();
  CHECK(ini.error().code == Errc::cookie_rejected);
}

TEST_CASE("acceptor core refuses malformed names without a status") {
  const std::vector<std::string> bads = {"noat",  "@host",       "alive@",
                                         "a@b@c", "has space@h", std::string(256, 'a') + "@h"};
  for (const auto& bad : bads) {
    CAPTURE(bad);
    auto core = make_core();
    CHECK(feed(core, name_v6(bad)).empty());
    REQUIRE(core.failed());
    CHECK(core.reason() == "name_refused");
    CHECK(contains(core.error().message, "name refused: '"));
  }
  auto core = make_core();
  CHECK(feed(core, name_v6(kPeerName, kOtp25Flags | dflag::name_me)).empty());
  CHECK(core.reason() == "name_refused");
  CHECK(contains(core.error().message, "DFLAG_NAME_ME"));
}

TEST_CASE("acceptor core refuses a peer lacking mandatory flags with not_allowed") {
  auto core = make_core();
  CHECK(feed(core, name_v6(kPeerName, dflag::extended_references | dflag::handshake_23)) ==
        frame("snot_allowed"));
  REQUIRE(core.failed());
  CHECK(core.reason() == "flags");
  CHECK(contains(core.error().message, "DFLAG_UTF8_ATOMS"));
  auto v5 = make_core();
  CHECK(feed(v5, name_v5(kPeerName, dflag::extended_references)) == frame("snot_allowed"));
  CHECK(v5.reason() == "flags");
}

TEST_CASE("acceptor core refuses handshake version 4 and garbage") {
  auto core = make_core();
  CHECK(feed(core, name_v5(kPeerName, kOtp22Flags, 4)).empty());
  CHECK(core.reason() == "version");
  CHECK(contains(core.error().message, "peer speaks handshake version 4"));

  auto http = make_core();
  CHECK(feed(http, "GET / HTTP/1.1\r\n\r\n").empty());
  CHECK(http.reason() == "protocol");
  CHECK(contains(http.error().message, "not an Erlang distribution handshake"));

  auto empty = make_core();
  CHECK(feed(empty, std::string("\0\0", 2)).empty());
  CHECK(empty.reason() == "protocol");

  auto tag = make_core();
  CHECK(feed(tag, frame("x123")).empty());
  CHECK(contains(tag.error().message, "expected the name message"));

  auto short_n = make_core();
  CHECK(feed(short_n, frame("N" + be(kOtp25Flags, 8) + be(1, 4) + be(40, 2) + "a@b")).empty());
  CHECK(short_n.reason() == "protocol");

  auto bad_reply = make_core();
  (void)feed(bad_reply, name_v6());
  CHECK(feed(bad_reply, frame("a" + std::string(16, 'x'))).empty());
  CHECK(bad_reply.reason() == "protocol");
  CHECK(bad_reply.failed_at() == AcceptorStage::recv_challenge_reply);
}

TEST_CASE("acceptor core asks a peer already connected - true replaces and false gives up") {
  auto yes = make_core(NameStatus::alive);
  CHECK(feed(yes, name_v6()) == frame("salive"));
  CHECK(yes.stage() == AcceptorStage::recv_status);
  CHECK(feed(yes, frame("strue")) == expected_challenge_v6());
  CHECK(feed(yes, reply()) == expected_ack());
  CHECK(yes.done());
  CHECK(yes.peer().replaced);

  auto no = make_core(NameStatus::alive);
  (void)feed(no, name_v6());
  CHECK(feed(no, frame("sfalse")).empty());
  CHECK(no.failed());
  CHECK(no.reason() == "alive_declined");
  CHECK(no.error().code == Errc::already_exists);

  auto ours = make_core(NameStatus::not_allowed);
  CHECK(feed(ours, name_v6()) == frame("snot_allowed"));
  CHECK(ours.reason() == "name_refused");
}

TEST_CASE("acceptor core names the stage where the peer closed or went silent") {
  auto a = make_core();
  a.on_closed();
  CHECK(a.reason() == "closed");
  CHECK(a.error().message == "peer closed at recv_name before sending a complete name");

  auto b = make_core();
  (void)feed(b, name_v6());
  b.on_closed();
  CHECK(b.failed_at() == AcceptorStage::recv_challenge_reply);
  CHECK(contains(b.error().message, "peer t1@127.0.0.1 closed at recv_challenge_reply"));

  auto c = make_core();
  c.on_timeout(5000ms, 5000ms);
  CHECK(c.reason() == "timeout");
  CHECK(c.error().message ==
        "no data for 5000 ms at recv_name (the peer connected and stopped sending)");

  auto d = make_core();
  (void)feed(d, name_v6().substr(0, 5));
  d.on_timeout(5000ms, 900ms);
  CHECK(contains(d.error().message, "sends too slowly"));

  auto e = make_core();
  e.on_io_error("connection reset by peer");
  CHECK(e.reason() == "io");
  CHECK(contains(e.error().message, "socket error at recv_name"));
}

TEST_CASE("acceptor core ignores bytes after it completed or failed") {
  auto core = make_core();
  (void)feed(core, name_v6());
  (void)feed(core, reply());
  REQUIRE(core.done());
  CHECK(feed(core, "more").empty());
  CHECK(core.done());
}

TEST_CASE("node_name_problem accepts alive at host and names what is wrong") {
  CHECK(node_name_problem("t1@127.0.0.1").empty());
  CHECK(node_name_problem("ewallet@ewallet-0.ewallet.default.svc.cluster.local").empty());
  CHECK(node_name_problem("t1") == "no '@'");
  CHECK(node_name_problem("a@b@c") == "more than one '@'");
}

TEST_CASE("acceptor core announces the flags ei announces") {
  CHECK(dflag::ei_hidden_node == kEiChallengeFlags);
  CHECK((dflag::ei_hidden_node & dflag::published) == 0);  // hidden
}

// A peer sees the same flags whichever way the connection was made: version
// 6 inbound announces ei's (above) as ei_connect does outbound; version 5
// inbound announces what the initiator core announces when beamlink dials
// an OTP 21/22 node, both in the handshake bytes themselves.
TEST_CASE("version 5 - the acceptor's challenge and the initiator's name announce the same flags") {
  // Inbound: the flags in the acceptor's challenge ('n' Version:2 Flags:4
  // after the status frame and the 2-byte length).
  auto core = make_core();
  auto out = feed(core, name_v5());
  const auto status = frame("sok");
  REQUIRE(out.size() > status.size() + 2 + 1 + 2 + 4);
  auto inbound = out.substr(status.size() + 2 + 1 + 2, 4);
  // Outbound: the flags in the initiator's name as the dialer runs it for
  // an OTP 21/22 peer (Len:2 'n' Version:2 Flags:4 Name).
  HandshakeInitiatorCore init("a@127.0.0.1", kCookie, dflag::v5_default, 0, std::nullopt, 5);
  auto name = init.start();
  REQUIRE(name.size() > 2 + 1 + 2 + 4);
  auto outbound = name.substr(2 + 1 + 2, 4);
  CHECK(inbound == outbound);
  CHECK(inbound == be(dflag::v5_default, 4));
  CHECK((dflag::v5_default & dflag::published) == 0);  // hidden both ways
  CHECK((dflag::v5_default & dflag::v6_only) == 0);
}
