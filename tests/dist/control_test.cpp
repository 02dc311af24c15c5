// Control-message codec tests. Golden bytes come from a real erl (OTP 25):
// `escript tests/dist/gen_control_golden.escript` prints the table below
// (term_to_binary(T, [{minor_version, 2}]), pids and references built with
// binary_to_term of handcrafted NEW_PID_EXT / NEWER_REFERENCE_EXT bytes).
#include "dist/control.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "control_golden.hpp"
#include "dist/framer.hpp"
#include "term/term.hpp"

namespace beamlink::dist {
using namespace beamlink::term;
using namespace beamlink::dist::golden;
namespace {

using TagCase = std::pair<std::string_view, ControlTag>;

std::string str(std::span<const char> s) {
  return std::string(s.data(), s.size());
}

const Pid kEP{"ewallet@10.0.0.1", 77, 3, 0x5f3a1b2c};
const Pid kBP{"beamlink@127.0.0.1", 1, 0, 0x12345678};
const Ref kR{"ewallet@10.0.0.1", 0x5f3a1b2c, 3, {0x11, 0x22, 0x33, 0, 0}};
const Ref kA{"beamlink@127.0.0.1", 0x12345678, 3, {0xa1, 0xb2, 0xc3, 0, 0}};
const std::string kW = "Elixir.EWallet.Worker";

// Raw term bytes without the version byte, as Control::reason holds them.
std::string bare(std::string_view hex) {
  return unhex(hex).substr(1);
}

Control decode_ok(std::string_view hex) {
  const std::string bytes = unhex(hex);
  auto c = decode_control(bytes);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  // Spans must not dangle in the checks below: copy what they point at.
  return *c;
}

// Decodes and returns the reason / trace token as owned strings (the spans
// point into the temporary input).
struct Decoded {
  Control c;
  std::string reason;
  std::string token;
};
Decoded decode_full(std::string_view hex) {
  const std::string bytes = unhex(hex);
  auto c = decode_control(bytes);
  REQUIRE_MESSAGE(c.ok(), (c.ok() ? "" : c.error().message));
  Decoded d{*c, str(c->reason), str(c->trace_token)};
  d.c.reason = {};
  d.c.trace_token = {};
  return d;
}

Error decode_err(std::string_view bytes) {
  auto c = decode_control(std::span<const char>(bytes.data(), bytes.size()));
  REQUIRE_FALSE(c.ok());
  return c.error();
}

}  // namespace

TEST_CASE("control tags carry the spec's numbers and names") {
  CHECK(static_cast<int>(ControlTag::link) == 1);
  CHECK(static_cast<int>(ControlTag::reg_send) == 6);
  CHECK(static_cast<int>(ControlTag::send_tt) == 12);
  CHECK(static_cast<int>(ControlTag::monitor_p_exit) == 21);
  CHECK(static_cast<int>(ControlTag::payload_monitor_p_exit) == 28);
  CHECK(static_cast<int>(ControlTag::alias_send) == 33);
  CHECK(static_cast<int>(ControlTag::unlink_id_ack) == 36);
  CHECK(control_tag_name(ControlTag::reg_send_tt) == "REG_SEND_TT");
  CHECK(base_tag(ControlTag::reg_send_tt) == ControlTag::reg_send);
  CHECK(base_tag(ControlTag::monitor_p) == ControlTag::monitor_p);
  int known = 0;
  for (int i = -1; i < 300; ++i) known += is_known_control_tag(i) ? 1 : 0;
  CHECK(known == 30);
  CHECK_FALSE(is_known_control_tag(9));
  CHECK_FALSE(is_known_control_tag(37));
}

TEST_CASE("decode SEND - SEND_TT - REG_SEND - REG_SEND_TT") {
  auto send = decode_full(kSend);
  CHECK(send.c.tag == ControlTag::send);
  CHECK(send.c.has_to_pid);
  CHECK(send.c.to == kBP);
  CHECK_FALSE(send.c.has_from);
  CHECK(send.c.expects_message);
  CHECK(send.token.empty());

  auto send_tt = decode_full(kSendTt);
  CHECK(send_tt.c.tag == ControlTag::send_tt);
  CHECK(send_tt.c.to == kBP);
  CHECK(send_tt.c.expects_message);
  CHECK(send_tt.token == bare(kTraceToken));

  auto reg = decode_full(kRegSend);
  CHECK(reg.c.tag == ControlTag::reg_send);
  CHECK(reg.c.has_from);
  CHECK(reg.c.from == kEP);
  CHECK(reg.c.to_name == "net_kernel");
  CHECK_FALSE(reg.c.has_to_pid);
  CHECK(reg.c.expects_message);

  auto reg_tt = decode_full(kRegSendTt);
  CHECK(reg_tt.c.tag == ControlTag::reg_send_tt);
  CHECK(reg_tt.c.from == kEP);
  CHECK(reg_tt.c.to_name == "net_kernel");
  CHECK(reg_tt.token == bare(kTraceToken));
}

TEST_CASE("decode LINK - UNLINK - NODE_LINK - GROUP_LEADER - SEND_SENDER") {
  for (auto [hex, tag] : std::initializer_list<TagCase>{{kLink, ControlTag::link},
                                                        {kUnlink, ControlTag::unlink},
                                                        {kGroupLeader, ControlTag::group_leader},
                                                        {kSendSender, ControlTag::send_sender}}) {
    CAPTURE(control_tag_name(tag));
    auto c = decode_ok(hex);
    CHECK(c.tag == tag);
    CHECK(c.from == kEP);
    CHECK(c.to == kBP);
    CHECK(c.has_from);
    CHECK(c.has_to_pid);
    CHECK(c.expects_message == (tag == ControlTag::send_sender));
  }
  auto tt = decode_full(kSendSenderTt);
  CHECK(tt.c.tag == ControlTag::send_sender_tt);
  CHECK(tt.c.expects_message);
  CHECK(tt.token == bare(kTraceToken));

  auto node_link = decode_ok(kNodeLink);
  CHECK(node_link.tag == ControlTag::node_link);
  CHECK_FALSE(node_link.has_from);
  CHECK_FALSE(node_link.expects_message);
}

TEST_CASE("decode EXIT - EXIT2 and their _TT variants keep the raw reason") {
  for (auto [hex, tag] : std::initializer_list<TagCase>{{kExit, ControlTag::exit},
                                                        {kExit2, ControlTag::exit2},
                                                        {kExitTt, ControlTag::exit_tt},
                                                        {kExit2Tt, ControlTag::exit2_tt}}) {
    CAPTURE(control_tag_name(tag));
    auto d = decode_full(hex);
    CHECK(d.c.tag == tag);
    CHECK(d.c.from == kEP);
    CHECK(d.c.to == kBP);
    CHECK(d.reason == bare(kReason));
    CHECK(d.token == (base_tag(tag) == tag ? std::string() : bare(kTraceToken)));
    CHECK_FALSE(d.c.expects_message);
  }
}

TEST_CASE("decode PAYLOAD_EXIT* and PAYLOAD_MONITOR_P_EXIT expect the reason as the message") {
  for (auto [hex, tag] :
       std::initializer_list<TagCase>{{kPayloadExit, ControlTag::payload_exit},
                                      {kPayloadExitTt, ControlTag::payload_exit_tt},
                                      {kPayloadExit2, ControlTag::payload_exit2},
                                      {kPayloadExit2Tt, ControlTag::payload_exit2_tt}}) {
    CAPTURE(control_tag_name(tag));
    auto d = decode_full(hex);
    CHECK(d.c.tag == tag);
    CHECK(d.c.from == kEP);
    CHECK(d.c.to == kBP);
    CHECK(d.reason.empty());
    CHECK(d.c.expects_message);
    CHECK(d.token == (base_tag(tag) == tag ? std::string() : bare(kTraceToken)));
  }
  auto pm = decode_full(kPayloadMonitorPExit);
  CHECK(pm.c.tag == ControlTag::payload_monitor_p_exit);
  CHECK(pm.c.from_name == kW);
  CHECK_FALSE(pm.c.has_from);
  CHECK(pm.c.to == kEP);
  CHECK(pm.c.ref == kR);
  CHECK(pm.c.expects_message);
}

TEST_CASE("decode MONITOR_P - DEMONITOR_P - MONITOR_P_EXIT by pid and by name") {
  for (auto [hex, tag] : std::initializer_list<TagCase>{{kMonitorP, ControlTag::monitor_p},
                                                        {kDemonitorP, ControlTag::demonitor_p}}) {
    auto c = decode_ok(hex);
    CHECK(c.tag == tag);
    CHECK(c.from == kEP);
    CHECK(c.has_to_pid);
    CHECK(c.to == kBP);
    CHECK(c.to_name.empty());
    CHECK(c.has_ref);
    CHECK(c.ref == kR);
  }
  for (auto [hex, tag] : std::initializer_list<TagCase>{
           {kMonitorPName, ControlTag::monitor_p}, {kDemonitorPName, ControlTag::demonitor_p}}) {
    auto c = decode_ok(hex);
    CHECK(c.tag == tag);
    CHECK_FALSE(c.has_to_pid);
    CHECK(c.to_name == kW);
    CHECK(c.ref == kR);
  }
  auto by_pid = decode_full(kMonitorPExit);
  CHECK(by_pid.c.tag == ControlTag::monitor_p_exit);
  CHECK(by_pid.c.has_from);
  CHECK(by_pid.c.from == kBP);
  CHECK(by_pid.c.to == kEP);
  CHECK(by_pid.c.ref == kR);
  CHECK(by_pid.reason == bare(kReason));

  auto by_name = decode_full(kMonitorPExitName);
  CHECK_FALSE(by_name.c.has_from);
  CHECK(by_name.c.from_name == kW);
  CHECK(by_name.c.to == kEP);
  CHECK(by_name.reason == std::string("\x77\x06normal", 8));
}

TEST_CASE("decode ALIAS_SEND - UNLINK_ID - SPAWN_*") {
  auto alias = decode_ok(kAliasSend);
  CHECK(alias.tag == ControlTag::alias_send);
  CHECK(alias.from == kEP);
  CHECK(alias.ref == kA);
  CHECK(alias.expects_message);
  auto alias_tt = decode_full(kAliasSendTt);
  CHECK(alias_tt.c.tag == ControlTag::alias_send_tt);
  CHECK(alias_tt.c.ref == kA);
  CHECK(alias_tt.token == bare(kTraceToken));

  auto unlink = decode_ok(kUnlinkId);
  CHECK(unlink.tag == ControlTag::unlink_id);
  CHECK(unlink.id == 5);
  CHECK(unlink.from == kEP);
  CHECK(unlink.to == kBP);
  CHECK(decode_ok(kUnlinkIdBig).id == (std::uint64_t{1} << 40) + 7);
  auto ack = decode_ok(kUnlinkIdAck);
  CHECK(ack.tag == ControlTag::unlink_id_ack);
  CHECK(ack.from == kBP);
  CHECK(ack.to == kEP);

  for (auto hex : {kSpawnRequest, kSpawnRequestTt}) {
    auto c = decode_ok(hex);
    CHECK(c.ref == kR);
    CHECK(c.from == kEP);
    CHECK(c.expects_message);  // the argument list
  }
  for (auto hex : {kSpawnReply, kSpawnReplyTt}) {
    auto c = decode_ok(hex);
    CHECK(c.ref == kR);
    CHECK(c.to == kBP);
    CHECK_FALSE(c.expects_message);
  }
}

TEST_CASE("encoders produce erl's bytes") {
  // ei writes atoms as SMALL_ATOM_UTF8_EXT, pids as NEW_PID_EXT and refs as
  // NEWER_REFERENCE_EXT, the same as term_to_binary(T, [{minor_version, 2}]),
  // so the comparison is byte for byte.
  auto same = [](const TermWriter& w, std::string_view hex) {
    REQUIRE(w.ok());
    CHECK(str(w.bytes()) == unhex(hex));
  };
  const std::string reason = unhex(kReason);  // with its version byte: skipped
  const std::string normal("\x77\x06normal", 8);
  same(encode_send(kBP), kSend);
  same(encode_reg_send(kEP, "net_kernel"), kRegSend);
  same(encode_link(kEP, kBP), kLink);
  same(encode_exit(kEP, kBP, reason), kExit);
  same(encode_exit(kEP, kBP, bare(kReason)), kExit);
  same(encode_exit2(kEP, kBP, reason), kExit2);
  same(encode_unlink_id(5, kEP, kBP), kUnlinkId);
  same(encode_unlink_id((std::uint64_t{1} << 40) + 7, kEP, kBP), kUnlinkIdBig);
  same(encode_unlink_id_ack(5, kBP, kEP), kUnlinkIdAck);
  same(encode_monitor_p(kEP, kBP, kR), kMonitorP);
  same(encode_monitor_p(kEP, kW, kR), kMonitorPName);
  same(encode_demonitor_p(kEP, kBP, kR), kDemonitorP);
  same(encode_demonitor_p(kEP, kW, kR), kDemonitorPName);
  same(encode_monitor_p_exit(kBP, kEP, kR, reason), kMonitorPExit);
  same(encode_monitor_p_exit(kW, kEP, kR, normal), kMonitorPExitName);
  same(encode_alias_send(kEP, kA), kAliasSend);

  // The appending overloads reuse one writer.
  TermWriter w(true);
  encode_reg_send(w, kEP, "net_kernel");
  same(w, kRegSend);
  w.clear(true);
  encode_send(w, kBP);
  same(w, kSend);
}

TEST_CASE("encode then decode round-trips") {
  auto w = encode_monitor_p_exit(kW, kEP, kR, unhex(kReason));
  auto c = decode_control(w.bytes());
  REQUIRE(c.ok());
  CHECK(c->from_name == kW);
  CHECK(c->to == kEP);
  CHECK(c->ref == kR);
  CHECK(str(c->reason) == bare(kReason));

  auto u = encode_unlink_id(~std::uint64_t{0}, kBP, kEP);
  auto d = decode_control(u.bytes());
  REQUIRE(d.ok());
  CHECK(d->id == ~std::uint64_t{0});
}

TEST_CASE("malformed controls are protocol errors with a precise message") {
  // {6, EP, ''} — REG_SEND with arity 3.
  TermWriter short_reg(true);
  short_reg.tuple(3).integer(6).pid(kEP).atom("");
  auto e = decode_err(std::string_view(short_reg.bytes().data(), short_reg.bytes().size()));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("REG_SEND has arity 3, expected 4") != std::string::npos);

  // Not a tuple: [2, '', BP].
  TermWriter list(true);
  list.list(3).integer(2).atom("").pid(kBP).nil();
  e = decode_err(std::string_view(list.bytes().data(), list.bytes().size()));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("not a tuple") != std::string::npos);

  // A pid where REG_SEND's ToName atom belongs.
  TermWriter pid_name(true);
  pid_name.tuple(4).integer(6).pid(kEP).atom("").pid(kBP);
  e = decode_err(std::string_view(pid_name.bytes().data(), pid_name.bytes().size()));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("ToName is not an atom") != std::string::npos);

  // An atom where SEND's ToPid belongs.
  TermWriter atom_pid(true);
  atom_pid.tuple(3).integer(2).atom("").atom("foo");
  e = decode_err(std::string_view(atom_pid.bytes().data(), atom_pid.bytes().size()));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("ToPid is not a pid") != std::string::npos);

  // MONITOR_P with a binary for ToProc, and a non-reference Ref.
  TermWriter bin_proc(true);
  bin_proc.tuple(4).integer(19).pid(kEP).binary("x").ref(kR);
  e = decode_err(std::string_view(bin_proc.bytes().data(), bin_proc.bytes().size()));
  CHECK(e.message.find("ToProc is not a pid or an atom") != std::string::npos);
  TermWriter int_ref(true);
  int_ref.tuple(4).integer(19).pid(kEP).pid(kBP).integer(7);
  e = decode_err(std::string_view(int_ref.bytes().data(), int_ref.bytes().size()));
  CHECK(e.message.find("Ref is not a reference") != std::string::npos);

  // A negative UNLINK_ID id.
  TermWriter neg(true);
  neg.tuple(4).integer(35).integer(-1).pid(kEP).pid(kBP);
  e = decode_err(std::string_view(neg.bytes().data(), neg.bytes().size()));
  CHECK(e.message.find("Id is not") != std::string::npos);

  // Operation that is not an integer; empty tuple; no version; trailing bytes.
  TermWriter atom_op(true);
  atom_op.tuple(3).atom("send").atom("").pid(kBP);
  e = decode_err(std::string_view(atom_op.bytes().data(), atom_op.bytes().size()));
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("not an integer operation") != std::string::npos);
  TermWriter empty(true);
  empty.tuple(0);
  e = decode_err(std::string_view(empty.bytes().data(), empty.bytes().size()));
  CHECK(e.message.find("empty tuple") != std::string::npos);
  e = decode_err(bare(kSend));
  CHECK(e.message.find("version byte 131") != std::string::npos);
  e = decode_err(unhex(kSend) + "a");
  CHECK(e.code == Errc::protocol_error);
  CHECK(e.message.find("1 bytes after the control term") != std::string::npos);
  e = decode_err("");
  CHECK(e.code == Errc::protocol_error);
}

TEST_CASE("an unknown operation is unexpected_message - not a protocol error") {
  TermWriter w(true);
  w.tuple(3).integer(99).atom("").pid(kBP);
  auto e = decode_err(std::string_view(w.bytes().data(), w.bytes().size()));
  CHECK(e.code == Errc::unexpected_message);
  CHECK(e.message.find("unknown control tag 99") != std::string::npos);

  TermWriter nine(true);
  nine.tuple(1).integer(9);
  CHECK(decode_err(std::string_view(nine.bytes().data(), nine.bytes().size())).code ==
        Errc::unexpected_message);
}

TEST_CASE("every truncation and byte mutation of golden controls decodes or fails cleanly") {
  const std::vector<std::string_view> all = {
      kSend,           kSendTt,         kRegSend,          kRegSendTt,      kLink,
      kUnlink,         kNodeLink,       kGroupLeader,      kExit,           kExitTt,
      kExit2,          kExit2Tt,        kMonitorP,         kMonitorPName,   kDemonitorP,
      kDemonitorPName, kMonitorPExit,   kMonitorPExitName, kSendSender,     kSendSenderTt,
      kPayloadExit,    kPayloadExitTt,  kPayloadExit2,     kPayloadExit2Tt, kPayloadMonitorPExit,
      kSpawnRequest,   kSpawnRequestTt, kSpawnReply,       kSpawnReplyTt,   kAliasSend,
      kAliasSendTt,    kUnlinkId,       kUnlinkIdBig,      kUnlinkIdAck};
  std::size_t decoded = 0, failed = 0;
  for (auto hex : all) {
    const std::string bytes = unhex(hex);
    REQUIRE(decode_control(bytes).ok());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
      auto c = decode_control(std::span<const char>(bytes.data(), n));
      CHECK_FALSE(c.ok());
    }
    for (std::size_t i = 0; i < bytes.size(); ++i) {
      for (int v : {0, 1, 0x7f, 0x80, 0xff, 97, 104, 119, 88, 90}) {
        std::string m = bytes;
        m[i] = static_cast<char>(v);
        auto c = decode_control(m);
        if (c.ok()) {
          ++decoded;
        } else {
          ++failed;
          CHECK((c.error().code == Errc::protocol_error ||
                 c.error().code == Errc::unexpected_message));
        }
      }
    }
  }
  CHECK(decoded > 0);
  CHECK(failed > 0);
}

TEST_CASE("a golden control and message form a frame the framer gives back") {
  std::string wire;
  append_frame(wire, unhex(kRegSend), unhex(kMsgIsAuth));
  Framer f;
  auto span = f.prepare(wire.size());
  REQUIRE(span.size() >= wire.size());
  std::copy(wire.begin(), wire.end(), span.begin());
  f.commit(wire.size());
  auto frame = f.next();
  REQUIRE(frame.ok());
  REQUIRE(frame->has_value());
  auto c = decode_control((*frame)->control);
  REQUIRE(c.ok());
  CHECK(c->to_name == "net_kernel");
  CHECK(c->expects_message);
  CHECK(str((*frame)->message) == unhex(kMsgIsAuth));
}

}  // namespace beamlink::dist
