// The initiating side of the distribution handshake without I/O (ERTS user's
// guide, "Distribution Protocol", section "Distribution Handshake").
#include "dist/handshake_core.hpp"

#include "handshake_wire.hpp"

#include <cstring>
#include <string>
#include <utility>

#include "common/utf8.hpp"

namespace beamlink::dist {

using wire::byte_text;
using wire::framed;
using wire::get_be;
using wire::put_be;
using wire::random_challenge;

namespace {

struct FlagName {
  std::uint64_t bit;
  const char* name;
};

// Names as in the "Distribution Flags" section of the ERTS user's guide.
constexpr FlagName kFlagNames[] = {
    {dflag::published, "DFLAG_PUBLISHED"},
    {dflag::atom_cache, "DFLAG_ATOM_CACHE"},
    {dflag::extended_references, "DFLAG_EXTENDED_REFERENCES"},
    {dflag::dist_monitor, "DFLAG_DIST_MONITOR"},
    {dflag::fun_tags, "DFLAG_FUN_TAGS"},
    {dflag::dist_monitor_name, "DFLAG_DIST_MONITOR_NAME"},
    {dflag::hidden_atom_cache, "DFLAG_HIDDEN_ATOM_CACHE"},
    {dflag::new_fun_tags, "DFLAG_NEW_FUN_TAGS"},
    {dflag::extended_pids_ports, "DFLAG_EXTENDED_PIDS_PORTS"},
    {dflag::export_ptr_tag, "DFLAG_EXPORT_PTR_TAG"},
    {dflag::bit_binaries, "DFLAG_BIT_BINARIES"},
    {dflag::new_floats, "DFLAG_NEW_FLOATS"},
    {dflag::unicode_io, "DFLAG_UNICODE_IO"},
    {dflag::dist_hdr_atom_cache, "DFLAG_DIST_HDR_ATOM_CACHE"},
    {dflag::small_atom_tags, "DFLAG_SMALL_ATOM_TAGS"},
    {dflag::utf8_atoms, "DFLAG_UTF8_ATOMS"},
    {dflag::map_tag, "DFLAG_MAP_TAG"},
    {dflag::big_creation, "DFLAG_BIG_CREATION"},
    {dflag::send_sender, "DFLAG_SEND_SENDER"},
    {dflag::big_seqtrace_labels, "DFLAG_BIG_SEQTRACE_LABELS"},
    {dflag::exit_payload, "DFLAG_EXIT_PAYLOAD"},
    {dflag::fragments, "DFLAG_FRAGMENTS"},
    {dflag::handshake_23, "DFLAG_HANDSHAKE_23"},
    {dflag::unlink_id, "DFLAG_UNLINK_ID"},
    {dflag::mandatory_25_digest, "DFLAG_MANDATORY_25_DIGEST"},
    {dflag::spawn, "DFLAG_SPAWN"},
    {dflag::name_me, "DFLAG_NAME_ME"},
    {dflag::v4_nc, "DFLAG_V4_NC"},
    {dflag::alias, "DFLAG_ALIAS"},
    {dflag::local_ext, "DFLAG_LOCAL_EXT"},
    {dflag::altact_sig, "DFLAG_ALTACT_SIG"},
};

}  // namespace

std::string name_mismatch_text(const std::string& dialled, const std::string& actual) {
  auto at = actual.find('@');
  std::string alive = actual.substr(0, at);
  std::string dialled_host =
      dialled.find('@') == std::string::npos ? dialled : dialled.substr(dialled.find('@') + 1);
  return "the peer calls itself '" + actual + "' but we dialled '" + dialled +
         "', and Erlang nodes refuse a peer whose name differs from the one they dialled, so "
         "the connection is closed — dial '" +
         actual + "' instead, or start the peer as " + alive + "@" + dialled_host +
         " (NODE_HOST on the peer)";
}

Md5Digest handshake_digest(std::uint32_t challenge, std::string_view cookie) {
  std::string text(cookie);
  text += std::to_string(challenge);
  return md5(text);
}

std::vector<std::string> dflag_names(std::uint64_t flags) {
  std::vector<std::string> out;
  std::uint64_t known = 0;
  for (const auto& f : kFlagNames) {
    known |= f.bit;
    if (flags & f.bit) out.emplace_back(f.name);
  }
  for (unsigned bit = 0; bit < 64; ++bit)
    if ((flags & ~known) & (std::uint64_t{1} << bit)) out.push_back("bit " + std::to_string(bit));
  return out;
}

std::vector<std::string> missing_mandatory_dflags(std::uint64_t flags) {
  std::vector<std::string> out;
  // OTP 25's dist.hrl: DFLAG_MANDATORY_25_DIGEST stands for all of MANDATORY_DFLAGS_25.
  if (flags & dflag::mandatory_25_digest) return out;
  for (const auto& f : kFlagNames)
    if ((dflag::mandatory_25 & f.bit) && !(flags & f.bit)) out.emplace_back(f.name);
  return out;
}

std::vector<std::string> missing_v5_dflags(std::uint64_t flags) {
  std::vector<std::string> out;
  for (const auto& f : kFlagNames)
    if ((dflag::v5_required & f.bit) && !(flags & f.bit)) out.emplace_back(f.name);
  return out;
}

OtpHint otp_hint_from(int handshake_version, std::uint64_t flags) {
  OtpHint h;
  if (handshake_version != 0 && handshake_version < 6) {
    // An OTP 23+ node answers a version 6 name with a version 6 challenge.
    h.at_most = 22;
    h.text = "OTP 22 or older (eWallet pins 21)";  // the evidence: handshake version < 6
    return h;
  }
  // Lower bounds only, each from a flag first sent by that release.
  if (flags & dflag::mandatory_25_digest) {
    h.at_least = 25;
    h.text = "OTP 25 or newer (DFLAG_MANDATORY_25_DIGEST)";
  } else if (flags & dflag::alias) {
    h.at_least = 24;
    h.text = "OTP 24 or newer (DFLAG_ALIAS)";
  } else if ((flags & dflag::handshake_23) || handshake_version == 6) {
    h.at_least = 23;
    h.text = (flags & dflag::handshake_23) ? "OTP 23 or newer (DFLAG_HANDSHAKE_23)"
                                           : "OTP 23 or newer (handshake version 6)";
  }
  return h;
}

std::string_view stage_name(HandshakeStage s) noexcept {
  switch (s) {
    case HandshakeStage::send_name:
      return "send_name";
    case HandshakeStage::recv_status:
      return "recv_status";
    case HandshakeStage::recv_challenge:
      return "recv_challenge";
    case HandshakeStage::send_challenge_reply:
      return "send_challenge_reply";
    case HandshakeStage::recv_challenge_ack:
      return "recv_challenge_ack";
    case HandshakeStage::done:
      return "done";
    case HandshakeStage::failed:
      return "failed";
  }
  return "unknown";
}

HandshakeInitiatorCore::HandshakeInitiatorCore(std::string our_name, std::string cookie,
                                               std::uint64_t our_flags, std::uint32_t creation,
                                               std::optional<std::uint32_t> our_challenge,
                                               int version)
    : our_name_(std::move(our_name)),
      cookie_(std::move(cookie)),
      our_flags_(our_flags),
      creation_(creation),
      our_challenge_(our_challenge ? *our_challenge : random_challenge()),
      version_(version == 5 ? 5 : 6) {}

std::size_t HandshakeInitiatorCore::bytes_wanted() const noexcept {
  if (stage_ != HandshakeStage::recv_status && stage_ != HandshakeStage::recv_challenge &&
      stage_ != HandshakeStage::recv_challenge_ack)
    return 0;
  if (in_.size() < 2) return 2 - in_.size();
  auto len = static_cast<std::size_t>(get_be(in_, 0, 2));
  if (len == 0 || len > kMaxMessage) return 1;  // feed() fails on it
  return 2 + len > in_.size() ? 2 + len - in_.size() : 1;
}

void HandshakeInitiatorCore::fail(Errc code, std::string message, ErrorDomain domain, int source) {
  if (stage_ == HandshakeStage::failed) return;  // the first finding stands
  failed_at_ = stage_;
  stage_ = HandshakeStage::failed;
  error_ = make_error(code, std::move(message), domain, source);
}

std::string HandshakeInitiatorCore::start() {
  if (stage_ != HandshakeStage::send_name) return {};
  auto at = our_name_.find('@');
  if (at == std::string::npos || at == 0 || at + 1 == our_name_.size() ||
      our_name_.size() > 255 + 1 + 255) {
    fail(Errc::invalid_argument,
         "our node name '" + our_name_ + "' is not of the form alive@host — set a valid name");
    return {};
  }
  if (cookie_.empty()) {
    fail(Errc::invalid_argument, "the cookie is empty — set the cluster's cookie");
    return {};
  }
  std::string body;
  if (version_ == 5) {
    // send_name, version 5: 'n' Version:2 Flags:4 Name.
    body = "n";
    put_be(body, 5, 2);
    put_be(body, our_flags_ & 0xffffffffu, 4);
    body += our_name_;
  } else {
    // send_name, version 6: 'N' Flags:8 Creation:4 Nlen:2 Name.
    body = "N";
    put_be(body, our_flags_, 8);
    put_be(body, creation_, 4);
    put_be(body, our_name_.size(), 2);
    body += our_name_;
  }
  stage_ = HandshakeStage::recv_status;
  return framed(body);
}

std::string HandshakeInitiatorCore::feed(std::span<const char> bytes) {
  if (stage_ == HandshakeStage::done || stage_ == HandshakeStage::failed ||
      stage_ == HandshakeStage::send_name)
    return {};
  in_.append(bytes.data(), bytes.size());
  auto out = wire::take_messages(
      in_, kMaxMessage,
      [&] {
        return stage_ == HandshakeStage::recv_status || stage_ == HandshakeStage::recv_challenge ||
               stage_ == HandshakeStage::recv_challenge_ack;
      },
      [&](std::size_t len, std::string_view) {
        if (len == 0) {
          fail(Errc::protocol_error, "the peer sent an empty handshake message at " +
                                         std::string(stage_name(stage_)) +
                                         " — this is not an Erlang distribution handshake");
          return;
        }
        fail(Errc::protocol_error,
             "the peer announced a " + std::to_string(len) + "-byte handshake message at " +
                 std::string(stage_name(stage_)) + " (at most " + std::to_string(kMaxMessage) +
                 " expected) — something other than an Erlang node listens on this port; check "
                 "the port epmd reports");
      },
      [&](std::string_view msg) { return on_message(msg); });
  if (stage_ == HandshakeStage::done || stage_ == HandshakeStage::failed) in_.clear();
  return out;
}

std::string HandshakeInitiatorCore::on_message(std::string_view msg) {
  switch (stage_) {
    case HandshakeStage::recv_status:
      return on_status(msg);
    case HandshakeStage::recv_challenge:
      return on_challenge(msg);
    case HandshakeStage::recv_challenge_ack:
      on_challenge_ack(msg);
      return {};
    default:
      return {};
  }
}

// recv_status: 's' Status.
std::string HandshakeInitiatorCore::on_status(std::string_view msg) {
  if (msg[0] != 's') {
    fail(Errc::protocol_error, "expected the status message 's' after our name, got " +
                                   byte_text(static_cast<unsigned char>(msg[0])) +
                                   " — the peer does not speak the distribution handshake");
    return {};
  }
  std::string status(msg.substr(1));
  if (status.rfind("named:", 0) == 0) {
    findings_.status = "named:";
    fail(Errc::protocol_error,
         "the peer answered status named: (it assigns a name to a node that asked for one with "
         "DFLAG_NAME_ME) though we sent the full name '" +
             our_name_ + "' — the peer's handshake is broken");
    return {};
  }
  findings_.status = status;
  if (status == "ok" || status == "ok_simultaneous") {
    stage_ = HandshakeStage::recv_challenge;
    return {};
  }
  if (status == "not_allowed") {
    // OTP answers not_allowed both for a name outside net_kernel:allow/1 and
    // for an initiator lacking a flag it requires (it logs "Connection attempt
    // from node ... rejected since it cannot handle [...]").
    fail(Errc::handshake_failed,
         "the peer answered status not_allowed: it does not allow our node name '" + our_name_ +
             "' (net_kernel:allow/1 on the peer lists other nodes, or a names mismatch), or "
             "our distribution flags lack one it requires (its log then says 'cannot handle') "
             "— allow '" +
             our_name_ + "' on the peer or drop the restriction");
    return {};
  }
  if (status == "alive") {
    fail(Errc::already_exists,
         "the peer answered status alive: a node with our name '" + our_name_ +
             "' is already connected to it — another instance runs under the same name (give "
             "each its own name), or the peer still holds a stale connection that it drops "
             "within net_ticktime");
    return framed("sfalse");  // do not take over the existing connection
  }
  if (status == "nok") {
    fail(Errc::handshake_failed,
         "the peer answered status nok: it is connecting to '" + our_name_ +
             "' at the same time (a simultaneous connect) and its attempt wins — retry; the "
             "connection it sets up is the one to use");
    return {};
  }
  fail(Errc::protocol_error,
       "the peer answered an unknown status '" + std::string(utf8_prefix(status, 64)) +
           "' (expected ok, ok_simultaneous, nok, not_allowed, alive or named:)");
  return {};
}

// recv_challenge: 'N' Flags:8 Challenge:4 Creation:4 Nlen:2 Name (version 6), or
// 'n' Version:2 Flags:4 Challenge:4 Name (version 5, OTP 22 and older).
std::string HandshakeInitiatorCore::on_challenge(std::string_view msg) {
  std::uint32_t challenge = 0;
  if (msg[0] == 'n') {
    if (msg.size() < 1 + 2 + 4 + 4 + 1) {
      fail(Errc::protocol_error, "the peer's version 5 challenge is truncated (" +
                                     std::to_string(msg.size()) + " bytes)");
      return {};
    }
    findings_.challenge_received = true;
    findings_.peer_version = static_cast<int>(get_be(msg, 1, 2));
    findings_.peer_flags = get_be(msg, 3, 4);
    challenge = static_cast<std::uint32_t>(get_be(msg, 7, 4));
    findings_.peer_name = std::string(msg.substr(11));
    findings_.peer_flag_names = dflag_names(findings_.peer_flags);
    findings_.otp = otp_hint_from(findings_.peer_version, findings_.peer_flags);
    if (version_ != 5) {
      findings_.missing_mandatory = missing_mandatory_dflags(findings_.peer_flags);
      fail(Errc::handshake_failed,
           "the peer '" + findings_.peer_name + "' answered with a version " +
               std::to_string(findings_.peer_version) +
               " challenge ('n') to our version 6 name: the peer is older than OTP 23 — dial it "
               "with version 5 (beamlink does when the peer's epmd reports version 5)");
      return {};
    }
    findings_.missing_mandatory = missing_v5_dflags(findings_.peer_flags);
    if (!findings_.missing_mandatory.empty()) {
      std::string names;
      for (auto& n : findings_.missing_mandatory) names += (names.empty() ? "" : ", ") + n;
      fail(Errc::handshake_failed, "the peer '" + findings_.peer_name + "' lacks " + names +
                                       ", which beamlink needs — it is not a usable OTP node");
      return {};
    }
    return challenge_reply(challenge);
  }
  if (msg[0] != 'N') {
    fail(Errc::protocol_error, "expected the challenge message 'N' after status '" +
                                   findings_.status + "', got " +
                                   byte_text(static_cast<unsigned char>(msg[0])));
    return {};
  }
  constexpr std::size_t kFixed = 1 + 8 + 4 + 4 + 2;
  if (msg.size() < kFixed || msg.size() != kFixed + get_be(msg, kFixed - 2, 2)) {
    fail(Errc::protocol_error, "the peer's challenge is malformed: " + std::to_string(msg.size()) +
                                   " bytes do not match its name length");
    return {};
  }
  findings_.challenge_received = true;
  findings_.peer_version = 6;
  findings_.peer_flags = get_be(msg, 1, 8);
  challenge = static_cast<std::uint32_t>(get_be(msg, 9, 4));
  findings_.peer_creation = static_cast<std::uint32_t>(get_be(msg, 13, 4));
  findings_.peer_name = std::string(msg.substr(kFixed));
  findings_.peer_flag_names = dflag_names(findings_.peer_flags);
  findings_.missing_mandatory = missing_mandatory_dflags(findings_.peer_flags);
  findings_.otp = otp_hint_from(6, findings_.peer_flags);
  return challenge_reply(challenge);
}

// send_challenge_reply: 'r' OurChallenge:4 Digest:16 (both versions).
std::string HandshakeInitiatorCore::challenge_reply(std::uint32_t challenge) {
  if (!expected_peer_.empty() && findings_.peer_name != expected_peer_) {
    fail(Errc::handshake_failed, name_mismatch_text(expected_peer_, findings_.peer_name));
    return {};
  }
  auto digest = handshake_digest(challenge, cookie_);
  std::string body = "r";
  put_be(body, our_challenge_, 4);
  body.append(reinterpret_cast<const char*>(digest.data()), digest.size());
  stage_ = HandshakeStage::recv_challenge_ack;
  return framed(body);
}

// recv_challenge_ack: 'a' Digest:16.
void HandshakeInitiatorCore::on_challenge_ack(std::string_view msg) {
  if (msg[0] != 'a' || msg.size() != 17) {
    fail(Errc::protocol_error, "expected the challenge ack 'a' with a 16-byte digest, got " +
                                   std::to_string(msg.size()) + " bytes starting with " +
                                   byte_text(static_cast<unsigned char>(msg[0])));
    return;
  }
  auto expected = handshake_digest(our_challenge_, cookie_);
  if (std::memcmp(expected.data(), msg.data() + 1, expected.size()) != 0) {
    fail(Errc::cookie_rejected,
         "the peer accepted our digest but its challenge ack does not match our cookie: the "
         "cookies differ (the peer's cookie for us differs from ours — a per-node cookie set "
         "with erlang:set_cookie/2?) and beamlink would reject this connection — give both "
         "sides the same cookie");
    return;
  }
  findings_.ack_verified = true;
  stage_ = HandshakeStage::done;
}

void HandshakeInitiatorCore::on_closed() {
  switch (stage_) {
    case HandshakeStage::send_name:
      fail(Errc::connection_closed, "the connection closed before we sent our name");
      return;
    case HandshakeStage::recv_status:
      // OTP 25 closes without a status when it cannot parse the name sent;
      // the name form (short or long) does not matter to an accepting node.
      if (version_ == 5)
        fail(Errc::handshake_failed,
             "the peer closed the connection right after our version 5 name '" + our_name_ +
                 "', before answering a status: it refused the name (malformed, or it does not "
                 "speak version 5 — check the version its epmd reports)");
      else
        fail(Errc::handshake_failed,
             "the peer closed the connection right after our name '" + our_name_ +
                 "', before answering a status: it refused our name as malformed (an Erlang "
                 "node closes like this for a name that is not a valid alive@host) — give "
                 "beamlink a plain name such as beamlink@<pod IP>; an OTP 22 or older node "
                 "closes like this too for a version 6 name (its epmd reports version 5)");
      return;
    case HandshakeStage::recv_challenge:
      fail(Errc::handshake_failed, "the peer closed the connection after status '" +
                                       findings_.status +
                                       "' without sending its challenge — check the peer's log");
      return;
    case HandshakeStage::send_challenge_reply:
    case HandshakeStage::recv_challenge_ack:
      fail(Errc::cookie_rejected,
           "the peer closed the connection after our challenge reply: it rejected our digest, "
           "so the cookies differ — give beamlink the cluster's cookie (the peer logs "
           "'Connection attempt from node " +
               our_name_ + " rejected. Invalid challenge reply.')");
      return;
    case HandshakeStage::done:
    case HandshakeStage::failed:
      return;
  }
}

void HandshakeInitiatorCore::on_timeout(std::chrono::milliseconds waited) {
  std::string ms = std::to_string(waited.count()) + " ms";
  switch (stage_) {
    case HandshakeStage::send_name:
      fail(Errc::timeout, "timed out after " + ms + " before sending our name");
      return;
    case HandshakeStage::recv_status:
      fail(Errc::timeout,
           "the peer accepted the TCP connection but did not answer our name within " + ms +
               " (stage recv_status) — the port is probably not an Erlang distribution listener "
               "(check the port epmd reports), or the node is overloaded");
      return;
    case HandshakeStage::recv_challenge:
      fail(Errc::timeout, "the peer answered status '" + findings_.status +
                              "' but sent no challenge within " + ms +
                              " (stage recv_challenge) — the node is overloaded or stuck");
      return;
    case HandshakeStage::send_challenge_reply:
    case HandshakeStage::recv_challenge_ack:
      fail(Errc::timeout, "the peer did not answer our challenge reply within " + ms +
                              " (stage recv_challenge_ack) — the node is overloaded or stuck");
      return;
    case HandshakeStage::done:
    case HandshakeStage::failed:
      return;
  }
}

void HandshakeInitiatorCore::on_io_error(int err) {
  if (stage_ == HandshakeStage::done || stage_ == HandshakeStage::failed) return;
  fail(Errc::io_error,
       "socket error at stage " + std::string(stage_name(stage_)) + ": " + std::strerror(err),
       ErrorDomain::posix, err);
}

}  // namespace beamlink::dist
