// The accepting side of the distribution handshake as a core without I/O:
// every inbound connection to beamlink's distribution port runs through it,
// driven by the listener on the loop (dist/src/listener.cpp).
//
// ERTS user's guide, "Distribution Protocol", section "Distribution
// Handshake"; erts dist_util.erl (handshake_other_started) and
// erl_interface's ei_connect.c (ei_accept) do the same. Every message is
// framed with a 2-byte big-endian length. A is the peer, B is us:
//
//   A -> B  recv_name             'N' Flags:8 Creation:4 Nlen:2 Name   (version 6, OTP 23+)
//                                 'n' Version:2 Flags:4 Name           (version 5, OTP 22-)
//   B -> A  send_status           's' "ok" | "not_allowed" | "alive" | "nok"
//   A -> B  recv_status           's' "true" | "false"   (only after "alive")
//   A -> B  recv_complement       'c' FlagsHigh:4 Creation:4  (only after an 'n' name with
//                                 DFLAG_HANDSHAKE_23, answered with an 'N' challenge)
//   B -> A  send_challenge        'N' Flags:8 Challenge:4 Creation:4 Nlen:2 Name  (to 'N')
//                                 'n' Version:2(=5) Flags:4 Challenge:4 Name     (to 'n')
//   A -> B  recv_challenge_reply  'r' Challenge:4 Digest:16
//   B -> A  send_challenge_ack    'a' Digest:16
//
// Digest = MD5(Cookie ++ integer_to_list(Challenge)): the peer's digest is
// of our challenge, our ack of the peer's. A peer is answered in the version
// it spoke.
//
// Names: the peer's name must be alive@host (both parts non-empty, at most
// 255 bytes each, printable, one '@'). A malformed name, a peer asking to be
// named (DFLAG_NAME_ME) or a peer lacking a mandatory flag is refused as an
// Erlang node refuses it (dist_util closes without a status, or sends
// not_allowed for missing flags). When the Node already holds a connection to
// that name, the status is "alive" as dist_util sends it: the peer answers
// "true" (it restarted; its new connection replaces the old one) or "false"
// (it gives up), so a second instance under the same name cannot silently
// take over.
//
// No I/O: the driver feeds every received byte to feed() (in any split) and
// sends what it returns, and calls on_closed() when the peer closes or
// on_timeout() when its one deadline for the whole handshake passes. When
// done() the driver sends what feed() returned (the ack) and then adopts the
// socket; should_close() says the driver should close after sending what
// feed() returned (a refusal's status). Each failure is an Error naming the
// step and why. Thread: one owner, no locking.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "dist/handshake_core.hpp"

namespace beamlink::dist {

namespace dflag {
// What beamlink announces to an inbound peer: exactly what ei (OTP 25,
// erl_interface 5.3, lib/erl_interface/src/connect/ei_connect.c,
// preferred_flags(), sent by both send_name and send_challenge) announces for
// a hidden C node, so a peer sees the same flags whichever path it met:
// DFLAG_MANDATORY_25_DIGEST | DFLAG_DIST_MANDATORY | DFLAG_DIST_MONITOR |
// DFLAG_SMALL_ATOM_TAGS, where ei_connect_int.h's DFLAG_DIST_MANDATORY is
// OTP 25's and OTP 26's mandatory sets. Checked against the bytes ei really
// sends (tests/dist/handshake_acceptor_core_test.cpp).
inline constexpr std::uint64_t ei_hidden_node =
    mandatory_25_digest | mandatory_25 | mandatory_26 | dist_monitor | small_atom_tags;

// What a peer must announce. Version 6: OTP 25's mandatory set
// (MANDATORY_DFLAGS_25; DFLAG_MANDATORY_25_DIGEST stands for all of it), what
// ei_accept requires too. Version 5 (OTP 21/22, 32-bit flags): the same
// without DFLAG_HANDSHAKE_23, which those releases do not know.
inline constexpr std::uint64_t required_v6 = mandatory_25;
inline constexpr std::uint64_t required_v5 = mandatory_25 & ~handshake_23;
// Flags that only mean something between version 6 nodes (an OTP 21/22
// peer does not know them): none is in v5_default, which a test checks.
inline constexpr std::uint64_t v6_only = handshake_23 | unlink_id | mandatory_25_digest;
}  // namespace dflag

enum class AcceptorStage {
  recv_name,             // waiting for the peer's name
  recv_status,           // we said "alive": waiting for the peer's "true" or "false"
  recv_complement,       // an old name with DFLAG_HANDSHAKE_23 got our version 6 challenge:
                         // waiting for the peer's 'c' FlagsHigh:4 Creation:4
  recv_challenge_reply,  // our challenge sent, waiting for the peer's digest
  done,                  // the peer's digest matched and our ack is returned
  failed,                // see error() and failed_at()
};
std::string_view stage_name(AcceptorStage s) noexcept;

// What the Node answers for a name (send_status).
enum class NameStatus {
  ok,           // not connected: go on
  alive,        // connected already: ask the peer (it answers true/false)
  not_allowed,  // refused
};

// The peer as the handshake proved it: what the Node records with the
// connection so that what it sends can depend on the peer's capabilities.
struct AcceptedPeer {
  std::string name;            // alive@host, validated
  int version = 0;             // 5 or 6: the handshake version the peer spoke
  std::uint64_t flags = 0;     // the peer's distribution flags (version 5: 32 bits);
                               // DFLAG_MANDATORY_25_DIGEST expanded to the set it stands for
  std::uint32_t creation = 0;  // version 6 only (0 for version 5)
  bool replaced = false;       // the peer answered "true" to "alive"
};

class HandshakeAcceptorCore {
 public:
  static constexpr std::size_t kMaxMessage = 1024;  // as the initiator core

  struct Options {
    std::string our_name;  // alive@host
    std::string cookie;
    std::uint32_t creation = 1;
    std::uint64_t our_flags = dflag::ei_hidden_node;  // version 6
    // Version 5: what the initiator core announces to OTP 21/22 (what ei
    // announced in those releases), so such a peer sees the same flags
    // whether it dialled beamlink or beamlink dialled it.
    std::uint32_t our_flags_v5 = static_cast<std::uint32_t>(dflag::v5_default);
    std::optional<std::uint32_t> our_challenge;  // injected by tests; random otherwise
    // Asked once, with the validated name, to choose the status. Empty: ok.
    std::function<NameStatus(const std::string&)> name_status;
  };

  explicit HandshakeAcceptorCore(Options opts);

  // Consumes received bytes; returns the bytes to send now (status and
  // challenge, the ack, or a refusal's status). Bytes after done or failed
  // are ignored (the peer sends nothing before our ack).
  [[nodiscard]] std::string feed(std::span<const char> bytes);

  // The peer closed the connection (after a challenge was sent: it did not
  // like something, e.g. it refused our name).
  void on_closed();
  // The driver's deadline for the whole handshake passed; `idle` is how long
  // nothing arrived (== waited when the peer sent nothing at all at this stage).
  void on_timeout(std::chrono::milliseconds waited, std::chrono::milliseconds idle);
  // A socket error (errno or a negated uv code) while handshaking.
  void on_io_error(std::string_view what);

  AcceptorStage stage() const noexcept { return stage_; }
  AcceptorStage failed_at() const noexcept { return failed_at_; }
  bool done() const noexcept { return stage_ == AcceptorStage::done; }
  bool failed() const noexcept { return stage_ == AcceptorStage::failed; }
  const Error& error() const noexcept { return error_; }
  // What the peer said (name, version, flags) as far as it got.
  const AcceptedPeer& peer() const noexcept { return peer_; }
  // A short stable reason for metrics: "digest_mismatch", "name_refused",
  // "timeout", "closed", "version", "flags", "protocol", "alive_declined", "io".
  std::string_view reason() const noexcept { return reason_; }
  std::uint32_t our_challenge() const noexcept { return our_challenge_; }

 private:
  void fail(Errc code, std::string_view reason, std::string message);
  std::string on_message(std::string_view msg);
  std::string on_name(std::string_view msg);
  std::string on_status(std::string_view msg);
  std::string on_complement(std::string_view msg);
  std::string on_challenge_reply(std::string_view msg);
  std::string send_challenge();
  std::string who() const;

  Options opts_;
  std::uint32_t our_challenge_;
  AcceptorStage stage_ = AcceptorStage::recv_name;
  AcceptorStage failed_at_ = AcceptorStage::recv_name;
  Error error_;
  std::string_view reason_;
  AcceptedPeer peer_;
  std::string in_;
  bool complement_pending_ = false;
};

// Checks a node name received in a handshake: "" when it is a valid
// alive@host, else why not.
std::string node_name_problem(std::string_view name);

}  // namespace beamlink::dist
