// HandshakeInitiatorCore driven by peer messages built by hand from "Distribution
// Handshake" in the ERTS user's guide, fed whole, split at every point and
// byte by byte; and each failure turned into its finding.
#include <doctest/doctest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "dist/handshake_core.hpp"
#include "handshake_bytes.hpp"

using namespace beamlink;
using namespace beamlink::dist;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

constexpr const char* kOurName = "probe@127.0.0.1";
constexpr std::uint32_t kOurChallenge = 42;
constexpr std::uint32_t kPeerChallenge = 3735928559u;
// The flags a real OTP 25 node (Debian's erlang 25, started with -name) sent
// in its challenge to handshake_probe_test's probe.
constexpr std::uint64_t kOtp25Flags = 0xd07df7fbd;

// recv_status: 's' Status.
std::string status(const std::string& s) {
  return frame("s" + s);
}
// recv_challenge, version 6: 'N' Flags:8 Challenge:4 Creation:4 Nlen:2 Name.
std::string challenge(const std::string& name, std::uint64_t flags = kOtp25Flags,
                      std::uint32_t ch = kPeerChallenge, std::uint32_t creation = 0x64a1b2c3) {
  return frame("N" + be(flags, 8) + be(ch, 4) + be(creation, 4) + be(name.size(), 2) + name);
}
// recv_challenge_ack: 'a' Digest:16.
std::string ack(const std::string& cookie = kCookie) {
  return frame("a" + digest_bytes(kOurChallenge, cookie));
}
// What we must answer: 'r' OurChallenge:4 MD5(Cookie ++ integer_to_list(PeerChallenge)).
std::string expected_reply() {
  return frame("r" + be(kOurChallenge, 4) + digest_bytes(kPeerChallenge, kCookie));
}

HandshakeInitiatorCore make_core() {
  return HandshakeInitiatorCore(kOurName, kCookie, dflag::probe_default, 7, kOurChallenge);
}

std::string feed(HandshakeInitiatorCore& core, const std::string& bytes) {
  return core.feed(std::span<const char>(bytes.data(), bytes.size()));
}

// A core that has sent its name and received `before` (without a failure).
HandshakeInitiatorCore core_after(const std::string& before) {
  auto core = make_core();
  (void)core.start();
  (void)feed(core, before);
  return core;
}

void check_success(HandshakeInitiatorCore& core, const std::string& out) {
  CHECK(out == expected_reply());
  CHECK(core.stage() == HandshakeStage::done);
  CHECK(core.error().code == Errc::ok);
  const auto& f = core.findings();
  CHECK(f.status == "ok");
  CHECK(f.peer_name == "t1@127.0.0.1");
  CHECK(f.peer_flags == kOtp25Flags);
  CHECK(f.peer_creation == 0x64a1b2c3);
  CHECK(f.peer_version == 6);
  CHECK(f.ack_verified);
  CHECK(f.missing_mandatory.empty());
  CHECK(f.otp.at_least == 25);
}

}  // namespace

TEST_CASE("send_name is version 6 with our flags creation and name") {
  auto core = make_core();
  CHECK(core.stage() == HandshakeStage::send_name);
  auto out = core.start();
  std::string name = kOurName;
  CHECK(out == frame("N" + be(dflag::probe_default, 8) + be(7, 4) + be(name.size(), 2) + name));
  CHECK(core.stage() == HandshakeStage::recv_status);
  CHECK((dflag::probe_default & dflag::published) == 0);  // a hidden node
  CHECK((dflag::probe_default & dflag::handshake_23) != 0);
  CHECK(missing_mandatory_dflags(dflag::probe_default & ~dflag::mandatory_25_digest).empty());
}

TEST_CASE("a complete handshake fed whole") {
  auto core = make_core();
  (void)core.start();
  auto out = feed(core, status("ok") + challenge("t1@127.0.0.1"));
  CHECK(core.stage() == HandshakeStage::recv_challenge_ack);
  CHECK(feed(core, ack()).empty());
  check_success(core, out);
}

TEST_CASE("a complete handshake split at every point") {
  std::string peer = status("ok") + challenge("t1@127.0.0.1");
  std::string all = peer + ack();
  for (std::size_t cut = 0; cut <= all.size(); ++cut) {
    CAPTURE(cut);
    auto core = make_core();
    (void)core.start();
    auto out = feed(core, all.substr(0, cut));
    out += feed(core, all.substr(cut));
    check_success(core, out);
  }
}

TEST_CASE("a complete handshake fed byte by byte") {
  std::string all = status("ok") + challenge("t1@127.0.0.1") + ack();
  auto core = make_core();
  (void)core.start();
  std::string out;
  for (char c : all) {
    out += feed(core, std::string(1, c));
    CHECK(!core.failed());
  }
  check_success(core, out);
}

TEST_CASE("ok_simultaneous continues like ok and bytes after the ack are ignored") {
  auto core = make_core();
  (void)core.start();
  auto out = feed(core, status("ok_simultaneous") + challenge("t1@127.0.0.1"));
  CHECK(out == expected_reply());
  CHECK(feed(core, ack() + std::string(4, '\0')).empty());  // a tick right behind the ack
  CHECK(core.done());
  CHECK(core.findings().status == "ok_simultaneous");
}

TEST_CASE("status not_allowed says the peer does not allow our name") {
  auto core = core_after(status("not_allowed"));
  CHECK(core.failed());
  CHECK(core.failed_at() == HandshakeStage::recv_status);
  CHECK(core.error().code == Errc::handshake_failed);
  CHECK(contains(core.error().message, "does not allow our node name"));
  CHECK(contains(core.error().message, "net_kernel:allow/1"));
  CHECK(core.findings().status == "not_allowed");
  core.on_closed();  // the peer closes next: the finding stays
  CHECK(core.error().code == Errc::handshake_failed);
}

TEST_CASE("status alive answers false and says our name is already connected") {
  auto core = make_core();
  (void)core.start();
  auto out = feed(core, status("alive"));
  CHECK(out == frame("sfalse"));
  CHECK(core.failed());
  CHECK(core.error().code == Errc::already_exists);
  CHECK(contains(core.error().message, "already connected"));
}

TEST_CASE("status nok is a simultaneous connect") {
  auto core = core_after(status("nok"));
  CHECK(core.error().code == Errc::handshake_failed);
  CHECK(contains(core.error().message, "simultaneous connect"));
}

TEST_CASE("unknown and named statuses are protocol errors") {
  auto unknown = core_after(status("maybe"));
  CHECK(unknown.error().code == Errc::protocol_error);
  CHECK(contains(unknown.error().message, "unknown status 'maybe'"));
  auto named = core_after(status("named:" + be(2, 2) + "xy" + be(1, 4)));
  CHECK(named.error().code == Errc::protocol_error);
  CHECK(named.findings().status == "named:");
}

TEST_CASE("closed right after send_name means the peer refused us before a status") {
  auto core = core_after("");
  core.on_closed();
  CHECK(core.failed_at() == HandshakeStage::recv_status);
  CHECK(core.error().code == Errc::handshake_failed);
  CHECK(contains(core.error().message, "before answering a status"));
  CHECK(contains(core.error().message, "malformed"));
}

TEST_CASE("closed after status ok and before the challenge") {
  auto core = core_after(status("ok"));
  core.on_closed();
  CHECK(core.failed_at() == HandshakeStage::recv_challenge);
  CHECK(core.error().code == Errc::handshake_failed);
  CHECK(contains(core.error().message, "without sending its challenge"));
}

TEST_CASE("closed after our challenge reply means the cookies differ") {
  auto core = core_after(status("ok") + challenge("t1@127.0.0.1"));
  core.on_closed();
  CHECK(core.failed_at() == HandshakeStage::recv_challenge_ack);
  CHECK(core.error().code == Errc::cookie_rejected);
  CHECK(contains(core.error().message, "cookies differ"));
  // What the peer told us before closing is kept for the report.
  CHECK(core.findings().peer_name == "t1@127.0.0.1");
  CHECK_FALSE(core.findings().ack_verified);
}

TEST_CASE("closing after done changes nothing") {
  auto core = core_after(status("ok") + challenge("t1@127.0.0.1") + ack());
  core.on_closed();
  CHECK(core.done());
}

TEST_CASE("a wrong challenge ack digest means the peer's cookie differs") {
  auto core = core_after(status("ok") + challenge("t1@127.0.0.1") + ack("another-cookie"));
  CHECK(core.failed_at() == HandshakeStage::recv_challenge_ack);
  CHECK(core.error().code == Errc::cookie_rejected);
  CHECK(contains(core.error().message, "cookies differ"));
  CHECK_FALSE(core.findings().ack_verified);
}

TEST_CASE("malformed and oversized messages are protocol errors") {
  struct Case {
    const char* what;
    std::string bytes;
    HandshakeStage at;
    const char* says;
  };
  std::string ok = status("ok");
  std::string good_ch = challenge("t1@127.0.0.1");
  std::vector<Case> cases = {
      {"empty message", be(0, 2), HandshakeStage::recv_status, "empty handshake message"},
      {"oversized", be(HandshakeInitiatorCore::kMaxMessage + 1, 2), HandshakeStage::recv_status,
       "something other than an Erlang node"},
      {"http answer", "HTTP/1.1 400 Bad Request\r\n", HandshakeStage::recv_status,
       "something other than an Erlang node"},
      {"wrong status tag", frame("xok"), HandshakeStage::recv_status, "expected the status"},
      {"wrong challenge tag", ok + frame("Z123"), HandshakeStage::recv_challenge,
       "expected the challenge"},
      {"short challenge", ok + frame("N" + be(0, 8)), HandshakeStage::recv_challenge, "malformed"},
      {"name length too long", ok + frame("N" + be(0, 8) + be(1, 4) + be(1, 4) + be(9, 2) + "ab"),
       HandshakeStage::recv_challenge, "malformed"},
      {"name length too short", ok + frame("N" + be(0, 8) + be(1, 4) + be(1, 4) + be(1, 2) + "abc"),
       HandshakeStage::recv_challenge, "malformed"},
      {"short ack", ok + good_ch + frame("a123"), HandshakeStage::recv_challenge_ack,
       "16-byte digest"},
      {"wrong ack tag", ok + good_ch + frame("b" + std::string(16, 'x')),
       HandshakeStage::recv_challenge_ack, "expected the challenge ack"},
  };
  for (const auto& c : cases) {
    CAPTURE(c.what);
    auto core = core_after(c.bytes);
    CHECK(core.failed());
    CHECK(core.failed_at() == c.at);
    CHECK(core.error().code == Errc::protocol_error);
    CHECK(contains(core.error().message, c.says));
  }
}

TEST_CASE("a version 5 challenge says the peer is older than OTP 23") {
  // 'n' Version:2 Flags:4 Challenge:4 Name.
  std::string v5 = frame("n" + be(5, 2) + be(0x7fffd, 4) + be(99, 4) + "old@10.0.0.5");
  auto core = core_after(status("ok") + v5);
  CHECK(core.failed());
  CHECK(core.failed_at() == HandshakeStage::recv_challenge);
  CHECK(core.error().code == Errc::handshake_failed);
  CHECK(contains(core.error().message, "older than OTP 23"));
  CHECK(core.findings().peer_version == 5);
  CHECK(core.findings().peer_name == "old@10.0.0.5");
  CHECK(core.findings().otp.at_most == 22);
}

TEST_CASE("peer flags are decoded to names with missing mandatory flags named") {
  std::uint64_t flags = dflag::mandatory_25 & ~dflag::map_tag & ~dflag::bit_binaries;
  auto core = core_after(status("ok") + challenge("t1@127.0.0.1", flags | (1ull << 50)));
  const auto& f = core.findings();
  CHECK(std::count(f.peer_flag_names.begin(), f.peer_flag_names.end(), "DFLAG_UTF8_ATOMS") == 1);
  CHECK(std::count(f.peer_flag_names.begin(), f.peer_flag_names.end(), "bit 50") == 1);
  CHECK(f.missing_mandatory == std::vector<std::string>{"DFLAG_BIT_BINARIES", "DFLAG_MAP_TAG"});
  CHECK(f.otp.at_least == 23);
  CHECK(contains(f.otp.text, "DFLAG_HANDSHAKE_23"));
}

TEST_CASE("the OTP hint claims only what the flags prove") {
  CHECK(otp_hint_from(6, dflag::mandatory_25 | dflag::mandatory_25_digest).at_least == 25);
  CHECK(otp_hint_from(6, dflag::mandatory_25 | dflag::alias).at_least == 24);
  CHECK(otp_hint_from(6, dflag::mandatory_25).at_least == 23);
  CHECK(otp_hint_from(6, 0).at_least == 23);  // version 6 itself
  CHECK(otp_hint_from(6, dflag::mandatory_25).at_most == 0);
  CHECK(otp_hint_from(5, 0).at_most == 22);
  CHECK(otp_hint_from(0, 0).at_least == 0);
  // OTP 25's digest flag stands for every OTP 25 mandatory flag.
  CHECK(missing_mandatory_dflags(dflag::mandatory_25_digest).empty());
  CHECK(missing_mandatory_dflags(0).size() == 11);
}

TEST_CASE("a timeout names the stage it happened at") {
  auto silent = core_after("");
  silent.on_timeout(500ms);
  CHECK(silent.error().code == Errc::timeout);
  CHECK(silent.failed_at() == HandshakeStage::recv_status);
  CHECK(contains(silent.error().message, "recv_status"));
  CHECK(contains(silent.error().message, "500 ms"));
  auto no_ack = core_after(status("ok") + challenge("t1@127.0.0.1"));
  no_ack.on_timeout(500ms);
  CHECK(contains(no_ack.error().message, "recv_challenge_ack"));
}

TEST_CASE("a malformed own name fails before anything is sent") {
  HandshakeInitiatorCore core("no-at-sign", kCookie);
  CHECK(core.start().empty());
  CHECK(core.failed());
  CHECK(core.error().code == Errc::invalid_argument);
  HandshakeInitiatorCore no_cookie(kOurName, "");
  CHECK(no_cookie.start().empty());
  CHECK(no_cookie.error().code == Errc::invalid_argument);
}

TEST_CASE("the random challenge differs between cores") {
  HandshakeInitiatorCore a(kOurName, kCookie), b(kOurName, kCookie), c(kOurName, kCookie);
  CHECK_FALSE((a.our_challenge() == b.our_challenge() && b.our_challenge() == c.our_challenge()));
}

TEST_CASE("the handshake digest equals erlang:md5 of cookie and challenge") {
  // erlang:md5("beamlink-test-cookie" ++ integer_to_list(3735928559)) on OTP 25.
  Md5Digest big = {75, 181, 105, 180, 189, 131, 232, 126, 191, 18, 48, 229, 185, 81, 42, 180};
  Md5Digest small = {15, 228, 237, 139, 227, 19, 93, 77, 191, 148, 89, 51, 128, 165, 217, 101};
  CHECK(handshake_digest(3735928559u, "beamlink-test-cookie") == big);
  CHECK(handshake_digest(42, "beamlink-test-cookie") == small);
}

// ----------------------------------------------------------- version 5

namespace {

// The flags a real OTP 22.3 node (../shared/otp22, -name) sent in its version
// 5 challenge to a hidden version 5 name with our flags: 32 bits, without
// HANDSHAKE_23 or UNLINK_ID.
constexpr std::uint64_t kOtp22Flags = 0x1f7f94;

HandshakeInitiatorCore make_v5_core() {
  return HandshakeInitiatorCore(kOurName, kCookie, dflag::v5_default, 7, kOurChallenge, 5);
}
// recv_challenge, version 5: 'n' Version:2 Flags:4 Challenge:4 Name.
std::string challenge_v5(const std::string& name, std::uint64_t flags = kOtp22Flags) {
  return frame("n" + be(5, 2) + be(flags, 4) + be(kPeerChallenge, 4) + name);
}

}  // namespace

TEST_CASE("version 5 send_name is n with version 5 our 32-bit flags and name") {
  auto core = make_v5_core();
  auto out = core.start();
  std::string name = kOurName;
  CHECK(out == frame("n" + be(5, 2) + be(dflag::v5_default, 4) + name));
  CHECK(core.version() == 5);
  CHECK((dflag::v5_default & dflag::published) == 0);  // hidden
  CHECK((dflag::v5_default >> 32) == 0);
  CHECK((dflag::v5_default & dflag::handshake_23) == 0);
  CHECK((dflag::v5_default & dflag::v5_required) == dflag::v5_required);
}

TEST_CASE("a version 5 handshake completes fed whole and byte by byte") {
  std::string peer = status("ok") + challenge_v5("t1@127.0.0.1");
  for (bool bytewise : {false, true}) {
    auto core = make_v5_core();
    (void)core.start();
    std::string out;
    if (bytewise) {
      for (char c : peer) {
        CHECK(core.bytes_wanted() >= 1);
        out += feed(core, std::string(1, c));
      }
    } else {
      out = feed(core, peer);
    }
    CHECK(out == expected_reply());
    CHECK(core.stage() == HandshakeStage::recv_challenge_ack);
    CHECK(core.bytes_wanted() == 2);
    CHECK(feed(core, ack()).empty());
    CHECK(core.done());
    CHECK(core.bytes_wanted() == 0);
    const auto& f = core.findings();
    CHECK(f.peer_version == 5);
    CHECK(f.peer_flags == kOtp22Flags);
    CHECK(f.peer_name == "t1@127.0.0.1");
    CHECK(f.missing_mandatory.empty());
    CHECK(f.otp.at_most == 22);
    CHECK(f.otp.text == "OTP 22 or older (eWallet pins 21)");
  }
}

TEST_CASE("bytes_wanted asks for exactly the rest of the current message") {
  auto core = make_v5_core();
  (void)core.start();
  CHECK(core.bytes_wanted() == 2);
  std::string st = status("ok");
  (void)feed(core, st.substr(0, 1));
  CHECK(core.bytes_wanted() == 1);
  (void)feed(core, st.substr(1, 1));
  CHECK(core.bytes_wanted() == st.size() - 2);
  (void)feed(core, st.substr(2));
  CHECK(core.stage() == HandshakeStage::recv_challenge);
  CHECK(core.bytes_wanted() == 2);
}

TEST_CASE(
    "a version 5 wrong cookie and a closed connection after the reply say the cookies differ") {
  auto wrong = make_v5_core();
  (void)wrong.start();
  (void)feed(wrong, status("ok") + challenge_v5("t1@127.0.0.1"));
  (void)feed(wrong, ack("other-cookie"));
  CHECK(wrong.error().code == Errc::cookie_rejected);
  auto closed = make_v5_core();
  (void)closed.start();
  (void)feed(closed, status("ok") + challenge_v5("t1@127.0.0.1"));
  closed.on_closed();
  CHECK(closed.error().code == Errc::cookie_rejected);
  CHECK(contains(closed.error().message, "cookies differ"));
}

TEST_CASE("a version 5 peer lacking the flags beamlink needs is refused before our reply") {
  auto core = make_v5_core();
  (void)core.start();
  auto out = feed(core, status("ok") + challenge_v5("t1@127.0.0.1", dflag::extended_references));
  CHECK(out.empty());
  CHECK(core.failed());
  CHECK(contains(core.error().message, "DFLAG_EXTENDED_PIDS_PORTS"));
}

TEST_CASE("a challenge naming another node than the one dialled is refused before our reply") {
  for (int version : {5, 6}) {
    HandshakeInitiatorCore core(kOurName, kCookie,
                                version == 5 ? dflag::v5_default : dflag::probe_default, 7,
                                kOurChallenge, version);
    core.expect_peer("t1@localhost");
    (void)core.start();
    auto out = feed(core, status("ok") + (version == 5 ? challenge_v5("t1@127.0.0.1")
                                                       : challenge("t1@127.0.0.1")));
    CHECK(out.empty());  // no reply: the peer sees us close, as a BEAM closes
    CHECK(core.failed());
    CHECK(core.failed_at() == HandshakeStage::recv_challenge);
    CHECK(contains(core.error().message, "calls itself 't1@127.0.0.1'"));
    CHECK(contains(core.error().message, "dial 't1@127.0.0.1'"));
    CHECK(contains(core.error().message, "t1@localhost (NODE_HOST on the peer)"));
  }
}

TEST_CASE("a version 6 name closed at once hints at an OTP 22 peer") {
  auto core = core_after("");
  core.on_closed();
  CHECK(contains(core.error().message, "OTP 22 or older"));
}
