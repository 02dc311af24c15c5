// The accepting side of the distribution handshake without I/O (ERTS user's
// guide, "Distribution Protocol", section "Distribution Handshake"; the
// steps as erts dist_util.erl and ei_connect.c name them).
#include "dist/handshake_acceptor_core.hpp"

#include <cctype>
#include <cstring>
#include <string>
#include <utility>

#include "handshake_wire.hpp"

namespace beamlink::dist {

using wire::byte_text;
using wire::framed;
using wire::get_be;
using wire::put_be;

std::string_view stage_name(AcceptorStage s) noexcept {
  switch (s) {
    case AcceptorStage::recv_name:
      return "recv_name";
    case AcceptorStage::recv_status:
      return "recv_status";
    case AcceptorStage::recv_complement:
      return "recv_complement";
    case AcceptorStage::recv_challenge_reply:
      return "recv_challenge_reply";
    case AcceptorStage::done:
      return "done";
    case AcceptorStage::failed:
      return "failed";
  }
  return "unknown";
}

std::string node_name_problem(std::string_view name) {
  auto at = name.find('@');
  if (at == std::string_view::npos) return "no '@'";
  if (name.find('@', at + 1) != std::string_view::npos) return "more than one '@'";
  if (at == 0) return "an empty alive part";
  if (at + 1 == name.size()) return "an empty host part";
  if (at > 255 || name.size() - at - 1 > 255) return "a part longer than 255 bytes";
  for (char c : name) {
    auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u == 0x7f) return "a space or control character";
  }
  return {};
}

HandshakeAcceptorCore::HandshakeAcceptorCore(Options opts)
    : opts_(std::move(opts)),
      our_challenge_(opts_.our_challenge ? *opts_.our_challenge : wire::random_challenge()) {}

void HandshakeAcceptorCore::fail(Errc code, std::string_view reason, std::string message) {
  if (stage_ == AcceptorStage::failed) return;  // the first finding stands
  failed_at_ = stage_;
  stage_ = AcceptorStage::failed;
  reason_ = reason;
  error_ = make_error(code, std::move(message));
}

std::string HandshakeAcceptorCore::who() const {
  return peer_.name.empty() ? std::string("the peer") : "peer " + peer_.name;
}

std::string HandshakeAcceptorCore::feed(std::span<const char> bytes) {
  if (stage_ == AcceptorStage::done || stage_ == AcceptorStage::failed) return {};
  in_.append(bytes.data(), bytes.size());
  auto out = wire::take_messages(
      in_, kMaxMessage,
      [&] { return stage_ != AcceptorStage::done && stage_ != AcceptorStage::failed; },
      [&](std::size_t len, std::string_view first) {
        fail(Errc::protocol_error, "protocol",
             "protocol error at " + std::string(stage_name(stage_)) + ": " + who() +
                 " announced a " + std::to_string(len) + "-byte handshake message (1 to " +
                 std::to_string(kMaxMessage) + " expected; first bytes " +
                 byte_text(static_cast<unsigned char>(first[0])) + " " +
                 byte_text(static_cast<unsigned char>(first[1])) +
                 ") — not an Erlang distribution handshake");
      },
      [&](std::string_view msg) { return on_message(msg); });
  if (stage_ == AcceptorStage::failed) in_.clear();
  return out;
}

std::string HandshakeAcceptorCore::on_message(std::string_view msg) {
  switch (stage_) {
    case AcceptorStage::recv_name:
      return on_name(msg);
    case AcceptorStage::recv_status:
      return on_status(msg);
    case AcceptorStage::recv_complement:
      return on_complement(msg);
    case AcceptorStage::recv_challenge_reply:
      return on_challenge_reply(msg);
    default:
      return {};
  }
}

// recv_name: 'N' Flags:8 Creation:4 Nlen:2 Name, or 'n' Version:2 Flags:4 Name.
std::string HandshakeAcceptorCore::on_name(std::string_view msg) {
  std::string_view name;
  if (msg[0] == 'N') {
    constexpr std::size_t kFixed = 1 + 8 + 4 + 2;
    if (msg.size() < kFixed || msg.size() != kFixed + get_be(msg, kFixed - 2, 2)) {
      fail(Errc::protocol_error, "protocol",
           "protocol error at recv_name: a version 6 name message of " +
               std::to_string(msg.size()) + " bytes that does not match its name length");
      return {};
    }
    peer_.version = 6;
    peer_.flags = get_be(msg, 1, 8);
    peer_.creation = static_cast<std::uint32_t>(get_be(msg, 9, 4));
    name = msg.substr(kFixed);
  } else if (msg[0] == 'n') {
    if (msg.size() < 1 + 2 + 4) {
      fail(Errc::protocol_error, "protocol",
           "protocol error at recv_name: a version 5 name message of " +
               std::to_string(msg.size()) + " bytes (at least 7 expected)");
      return {};
    }
    auto version = static_cast<int>(get_be(msg, 1, 2));
    if (version < 5) {
      fail(Errc::handshake_failed, "version",
           "peer speaks handshake version " + std::to_string(version) +
               " (recv_name): beamlink speaks versions 5 (OTP 21/22) and 6 (OTP 23+) — upgrade "
               "the peer");
      return {};
    }
    peer_.flags = get_be(msg, 3, 4);
    // An OTP 23+ node that did not know our version sends the old name with
    // DFLAG_HANDSHAKE_23: it is answered with a version 6 challenge and
    // completes its flags with a complement ('c') message.
    peer_.version = (peer_.flags & dflag::handshake_23) ? 6 : 5;
    name = msg.substr(7);
    complement_pending_ = peer_.version == 6;
  } else {
    fail(Errc::protocol_error, "protocol",
         "protocol error at recv_name: expected the name message 'N' or 'n', got " +
             byte_text(static_cast<unsigned char>(msg[0])) +
             " — not an Erlang distribution handshake");
    return {};
  }
  std::string shown(name.substr(0, 64));
  if (auto problem = node_name_problem(name); !problem.empty()) {
    // dist_util closes without a status for a name it cannot use.
    fail(Errc::handshake_failed, "name_refused",
         "name refused: '" + shown + "' is not a node name alive@host (" + problem +
             ") — start the peer with -name alive@host");
    return {};
  }
  peer_.name = std::string(name);
  if (peer_.flags & dflag::name_me) {
    fail(Errc::handshake_failed, "name_refused",
         "name refused: " + peer_.name +
             " asks to be given a name (DFLAG_NAME_ME); beamlink does not assign names — start "
             "the peer with a full name");
    return {};
  }
  if (peer_.flags & dflag::mandatory_25_digest) peer_.flags |= dflag::mandatory_25;
  auto required = peer_.version == 6 ? dflag::required_v6 : dflag::required_v5;
  if (auto missing = required & ~peer_.flags; missing != 0 && !complement_pending_) {
    std::string names;
    for (auto& n : dflag_names(missing)) names += (names.empty() ? "" : ", ") + n;
    fail(Errc::handshake_failed, "flags",
         "peer " + peer_.name + " lacks mandatory distribution flags (" + names +
             ") at recv_name — it is too old or not an Erlang node; refused with not_allowed");
    return framed("snot_allowed");
  }
  auto status = opts_.name_status ? opts_.name_status(peer_.name) : NameStatus::ok;
  if (status == NameStatus::not_allowed) {
    fail(Errc::handshake_failed, "name_refused",
         "name refused: " + peer_.name +
             " is not allowed (it is our own name) — give each node its own name");
    return framed("snot_allowed");
  }
  if (status == NameStatus::alive) {
    // dist_util: a node of that name is connected; the peer decides.
    stage_ = AcceptorStage::recv_status;
    return framed("salive");
  }
  return framed("sok") + send_challenge();
}

// recv_status (after "alive"): 's' "true" | "false".
std::string HandshakeAcceptorCore::on_status(std::string_view msg) {
  if (msg == "strue") {
    peer_.replaced = true;
    return send_challenge();
  }
  if (msg == "sfalse") {
    fail(Errc::already_exists, "alive_declined",
         "peer " + peer_.name +
             " answered false to status alive at recv_status: beamlink already holds a "
             "connection to a node of that name and the peer gave up — another instance runs "
             "under the same name (give each its own)");
    return {};
  }
  fail(Errc::protocol_error, "protocol",
       "protocol error at recv_status: " + who() +
           " answered status alive with something other than 's' true/false (" +
           std::to_string(msg.size()) + " bytes starting with " +
           byte_text(static_cast<unsigned char>(msg[0])) + ")");
  return {};
}

// send_challenge, in the version the peer spoke.
std::string HandshakeAcceptorCore::send_challenge() {
  std::string body;
  if (peer_.version == 6) {
    // 'N' Flags:8 Challenge:4 Creation:4 Nlen:2 Name.
    body = "N";
    put_be(body, opts_.our_flags, 8);
    put_be(body, our_challenge_, 4);
    put_be(body, opts_.creation, 4);
    put_be(body, opts_.our_name.size(), 2);
  } else {
    // 'n' Version:2 Flags:4 Challenge:4 Name.
    body = "n";
    put_be(body, 5, 2);
    put_be(body, opts_.our_flags_v5, 4);
    put_be(body, our_challenge_, 4);
  }
  body += opts_.our_name;
  stage_ =
      complement_pending_ ? AcceptorStage::recv_complement : AcceptorStage::recv_challenge_reply;
  return framed(body);
}

// recv_complement: 'c' FlagsHigh:4 Creation:4 (after an old name with
// DFLAG_HANDSHAKE_23 and our version 6 challenge).
std::string HandshakeAcceptorCore::on_complement(std::string_view msg) {
  if (msg[0] != 'c' || msg.size() != 9) {
    fail(Errc::protocol_error, "protocol",
         "protocol error at recv_complement: " + who() +
             " sent no complement 'c' FlagsHigh:4 Creation:4 after its old name (" +
             std::to_string(msg.size()) + " bytes starting with " +
             byte_text(static_cast<unsigned char>(msg[0])) + ")");
    return {};
  }
  complement_pending_ = false;
  peer_.flags |= get_be(msg, 1, 4) << 32;
  peer_.creation = static_cast<std::uint32_t>(get_be(msg, 5, 4));
  if (peer_.flags & dflag::mandatory_25_digest) peer_.flags |= dflag::mandatory_25;
  if (auto missing = dflag::required_v6 & ~peer_.flags; missing != 0) {
    std::string names;
    for (auto& n : dflag_names(missing)) names += (names.empty() ? "" : ", ") + n;
    fail(Errc::handshake_failed, "flags",
         "peer " + peer_.name + " lacks mandatory distribution flags (" + names +
             ") at recv_complement — it is too old or not an Erlang node");
    return {};
  }
  stage_ = AcceptorStage::recv_challenge_reply;
  return {};
}

// recv_challenge_reply: 'r' Challenge:4 Digest:16; then send_challenge_ack:
// 'a' Digest:16.
std::string HandshakeAcceptorCore::on_challenge_reply(std::string_view msg) {
  if (msg[0] != 'r' || msg.size() != 21) {
    fail(Errc::protocol_error, "protocol",
         "protocol error at recv_challenge_reply: expected 'r' Challenge:4 Digest:16 from " +
             who() + ", got " + std::to_string(msg.size()) + " bytes starting with " +
             byte_text(static_cast<unsigned char>(msg[0])));
    return {};
  }
  auto expected = handshake_digest(our_challenge_, opts_.cookie);
  if (std::memcmp(expected.data(), msg.data() + 5, expected.size()) != 0) {
    fail(Errc::cookie_rejected, "digest_mismatch",
         "digest mismatch — the cookies differ (peer " + peer_.name +
             ") at recv_challenge_reply: give the peer and beamlink the same cookie");
    return {};
  }
  auto peer_challenge = static_cast<std::uint32_t>(get_be(msg, 1, 4));
  auto ack = handshake_digest(peer_challenge, opts_.cookie);
  std::string body = "a";
  body.append(reinterpret_cast<const char*>(ack.data()), ack.size());
  stage_ = AcceptorStage::done;
  return framed(body);
}

void HandshakeAcceptorCore::on_closed() {
  switch (stage_) {
    case AcceptorStage::recv_name:
      fail(Errc::connection_closed, "closed",
           "peer closed at recv_name before sending a complete name");
      return;
    case AcceptorStage::recv_status:
      fail(Errc::connection_closed, "closed",
           "peer " + peer_.name + " closed at recv_status after our status alive");
      return;
    case AcceptorStage::recv_complement:
    case AcceptorStage::recv_challenge_reply:
      // An initiator closes here when our challenge's name is not the name it
      // dialled, or our flags lack one it requires (its log says which).
      fail(Errc::connection_closed, "closed",
           "peer " + peer_.name + " closed at " + std::string(stage_name(stage_)) +
               " after our challenge: it refused us (it dialled another name than '" +
               opts_.our_name + "', or our flags lack one it requires — see its log)");
      return;
    case AcceptorStage::done:
    case AcceptorStage::failed:
      return;
  }
}

void HandshakeAcceptorCore::on_timeout(std::chrono::milliseconds waited,
                                       std::chrono::milliseconds idle) {
  if (done() || failed()) return;
  std::string at(stage_name(stage_));
  if (idle >= waited)
    fail(Errc::timeout, "timeout",
         "no data for " + std::to_string(waited.count()) + " ms at " + at + " (" + who() +
             " connected and stopped sending)");
  else
    fail(Errc::timeout, "timeout",
         "no handshake within " + std::to_string(waited.count()) + " ms at " + at + ": " + who() +
             " sends too slowly (last bytes " + std::to_string(idle.count()) + " ms ago)");
}

void HandshakeAcceptorCore::on_io_error(std::string_view what) {
  if (done() || failed()) return;
  fail(Errc::io_error, "io",
       "socket error at " + std::string(stage_name(stage_)) + ": " + std::string(what));
}

}  // namespace beamlink::dist
