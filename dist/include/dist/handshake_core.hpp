// The initiating side of the distribution handshake as a core without I/O,
// for `beamlink doctor`: ei runs the real handshake but reports every failure
// as the same EIO, so the doctor's probe runs the steps itself and records
// what the peer answered at each one.
//
// ERTS user's guide, "Distribution Protocol", section "Distribution
// Handshake" (version 6, OTP 23 and newer). Every handshake message is framed
// with a 2-byte big-endian length. A is us, B is the peer:
//
//   A -> B  send_name             'N' Flags:8 Creation:4 Nlen:2 Name
//   B -> A  recv_status           's' Status  (ok | ok_simultaneous | nok |
//                                              not_allowed | alive | named:...)
//   B -> A  recv_challenge        'N' Flags:8 Challenge:4 Creation:4 Nlen:2 Name
//   A -> B  send_challenge_reply  'r' OurChallenge:4 Digest:16
//   B -> A  recv_challenge_ack    'a' Digest:16
//
// Digest = MD5(Cookie ++ integer_to_list(Challenge)). On status `alive` A
// answers 's' "true" (kill B's old connection and continue) or 's' "false";
// the probe always answers "false", so a probe never disturbs a live link.
//
// No I/O: the driver sends start(), feeds every received byte to feed() (in
// any split) and sends what it returns, and calls on_closed() when the peer
// closes or on_timeout() when its deadline passes. Each failure becomes an
// Error saying what happened and what to do. Thread: one owner, no locking.
#pragma once

#include <chrono>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/digest.hpp"
#include "common/result.hpp"

namespace beamlink::dist {

// Distribution flags ("Distribution Flags" in the same chapter; dist.hrl).
namespace dflag {
inline constexpr std::uint64_t published = 0x1;
inline constexpr std::uint64_t atom_cache = 0x2;
inline constexpr std::uint64_t extended_references = 0x4;
inline constexpr std::uint64_t dist_monitor = 0x8;
inline constexpr std::uint64_t fun_tags = 0x10;
inline constexpr std::uint64_t dist_monitor_name = 0x20;
inline constexpr std::uint64_t hidden_atom_cache = 0x40;
inline constexpr std::uint64_t new_fun_tags = 0x80;
inline constexpr std::uint64_t extended_pids_ports = 0x100;
inline constexpr std::uint64_t export_ptr_tag = 0x200;
inline constexpr std::uint64_t bit_binaries = 0x400;
inline constexpr std::uint64_t new_floats = 0x800;
inline constexpr std::uint64_t unicode_io = 0x1000;
inline constexpr std::uint64_t dist_hdr_atom_cache = 0x2000;
inline constexpr std::uint64_t small_atom_tags = 0x4000;
inline constexpr std::uint64_t utf8_atoms = 0x10000;
inline constexpr std::uint64_t map_tag = 0x20000;
inline constexpr std::uint64_t big_creation = 0x40000;
inline constexpr std::uint64_t send_sender = 0x80000;
inline constexpr std::uint64_t big_seqtrace_labels = 0x100000;
inline constexpr std::uint64_t exit_payload = 0x400000;
inline constexpr std::uint64_t fragments = 0x800000;
inline constexpr std::uint64_t handshake_23 = 0x1000000;
inline constexpr std::uint64_t unlink_id = 0x2000000;
inline constexpr std::uint64_t mandatory_25_digest = 0x4000000;
inline constexpr std::uint64_t spawn = 1ull << 32;
inline constexpr std::uint64_t name_me = 1ull << 33;
inline constexpr std::uint64_t v4_nc = 1ull << 34;
inline constexpr std::uint64_t alias = 1ull << 35;
inline constexpr std::uint64_t local_ext = 1ull << 36;
inline constexpr std::uint64_t altact_sig = 1ull << 37;

// The flags OTP 25 refuses a connection without (MANDATORY_DFLAGS_25 in
// OTP 25's dist.hrl). A peer that sets mandatory_25_digest declares all of them.
inline constexpr std::uint64_t mandatory_25 =
    extended_references | fun_tags | extended_pids_ports | new_fun_tags | export_ptr_tag |
    bit_binaries | new_floats | utf8_atoms | map_tag | big_creation | handshake_23;
// Added to the mandatory set by OTP 26 (erts dist.h DFLAG_DIST_MANDATORY_26).
inline constexpr std::uint64_t mandatory_26 = v4_nc | unlink_id;

// What the probe announces: a hidden node (no `published`) with everything
// OTP 23 to 26 require. The probe closes right after the handshake, so it
// never has to honour these capabilities.
inline constexpr std::uint64_t probe_default = mandatory_25 | mandatory_26 | mandatory_25_digest;

// What we announce in a version 5 handshake (OTP 21/22 peers): exactly what
// ei announced in those releases (OTP 22's ei_connect.c send_name_or_challenge),
// hidden (no `published`). OTP 21/22's dist_util requires a subset of it.
inline constexpr std::uint64_t v5_default = extended_references | dist_monitor |
                                            extended_pids_ports | fun_tags | new_fun_tags |
                                            new_floats | small_atom_tags | utf8_atoms | map_tag |
                                            big_creation | export_ptr_tag | bit_binaries;
// What we need from a version 5 peer (ei's recv_challenge checks these).
inline constexpr std::uint64_t v5_required = extended_references | extended_pids_ports | new_floats;
}  // namespace dflag

// The handshake digest: MD5(Cookie ++ integer_to_list(Challenge)), the
// challenge as an unsigned decimal number.
Md5Digest handshake_digest(std::uint32_t challenge, std::string_view cookie);

// Why a peer whose handshake name `actual` differs from the `dialled` one is
// refused, with the fix (dial `actual`, or NODE_HOST on the peer).
std::string name_mismatch_text(const std::string& dialled, const std::string& actual);

// "DFLAG_UTF8_ATOMS" ... for each set bit; "bit N" for bits this build does not know.
std::vector<std::string> dflag_names(std::uint64_t flags);

// The mandatory flags (OTP 25's set) missing from `flags`, by name. A peer
// with mandatory_25_digest set is missing none of them.
std::vector<std::string> missing_mandatory_dflags(std::uint64_t flags);
// The flags of dflag::v5_required missing from a version 5 peer's `flags`.
std::vector<std::string> missing_v5_dflags(std::uint64_t flags);

// The oldest OTP release the peer's handshake proves, with the evidence.
// Only lower bounds are claimed from flags (a flag's presence proves support;
// its absence proves nothing), except handshake version 5, which no OTP 23+
// node answers to a version 6 name.
struct OtpHint {
  int at_least = 0;  // 0: nothing proven
  int at_most = 0;   // 0: no upper bound
  std::string text;  // e.g. "OTP 25 or newer (DFLAG_MANDATORY_25_DIGEST)"
};
OtpHint otp_hint_from(int handshake_version, std::uint64_t flags);

enum class HandshakeStage {
  send_name,             // nothing sent yet (start() not called)
  recv_status,           // our name sent, waiting for the peer's status
  recv_challenge,        // status ok, waiting for the peer's challenge
  send_challenge_reply,  // named after the spec's step; the core returns our reply from
                         // feed() and moves straight on to recv_challenge_ack
  recv_challenge_ack,    // our reply sent, waiting for the peer's digest
  done,                  // both digests verified: the handshake completed
  failed,                // see error() and failed_at()
};
std::string_view stage_name(HandshakeStage s) noexcept;

// Everything the peer told us, for the doctor's report.
struct HandshakeFindings {
  std::string status;     // the status text ("ok", "not_allowed", ...); empty before it came
  std::string peer_name;  // the peer's own node name from its challenge
  std::uint64_t peer_flags = 0;
  std::uint32_t peer_creation = 0;
  int peer_version = 0;  // 6 for an 'N' challenge, the announced version for 'n'
  std::vector<std::string> peer_flag_names;
  std::vector<std::string> missing_mandatory;  // against OTP 25's set (v6), v5_required (v5)
  OtpHint otp;
  bool challenge_received = false;
  bool ack_verified = false;  // the peer's challenge ack matched our cookie
};

class HandshakeInitiatorCore {
 public:
  // The largest handshake message accepted (a name is at most 255 + 1 + 255
  // bytes; a challenge carries 19 bytes besides it).
  static constexpr std::size_t kMaxMessage = 1024;

  // our_name: alive@host. our_challenge: injected by tests; random otherwise.
  // version: 6 (OTP 23+) or 5 (OTP 21/22: the send_name carries the low 32
  // bits of our_flags, and the peer's 'n' challenge is answered).
  HandshakeInitiatorCore(std::string our_name, std::string cookie,
                         std::uint64_t our_flags = dflag::probe_default, std::uint32_t creation = 1,
                         std::optional<std::uint32_t> our_challenge = std::nullopt,
                         int version = 6);

  // The framed send_name message. Moves send_name -> recv_status; returns ""
  // and fails (Errc::invalid_argument) if our name is malformed.
  [[nodiscard]] std::string start();

  // How many more bytes the current handshake message needs (at least 1
  // while waiting for the peer; 0 when done or failed). A driver that reads
  // at most this much never reads past the handshake into the first frames.
  std::size_t bytes_wanted() const noexcept;
  // The name we dialled: a challenge naming another node fails the handshake
  // before our reply, as a BEAM refuses it (dist_util: the name in the
  // challenge must be the node it connects to). Not set by the doctor's
  // probe, which reports the mismatch instead.
  void expect_peer(std::string node) { expected_peer_ = std::move(node); }
  int version() const noexcept { return version_; }

  // Consumes received bytes; returns the bytes to send now (our challenge
  // reply, or "false" to an `alive` status), usually empty. Bytes after the
  // handshake completed or failed are ignored.
  [[nodiscard]] std::string feed(std::span<const char> bytes);

  // The peer closed the connection: turns the stage into a finding (after our
  // challenge reply, the peer rejected our digest: the cookies differ).
  void on_closed();
  // The driver's deadline passed while waiting at the current stage.
  void on_timeout(std::chrono::milliseconds waited);
  // A socket error (errno) while connected.
  void on_io_error(int err);

  HandshakeStage stage() const noexcept { return stage_; }
  HandshakeStage failed_at() const noexcept { return failed_at_; }  // when stage() == failed
  bool done() const noexcept { return stage_ == HandshakeStage::done; }
  bool failed() const noexcept { return stage_ == HandshakeStage::failed; }
  const Error& error() const noexcept { return error_; }  // Errc::ok unless failed
  const HandshakeFindings& findings() const noexcept { return findings_; }
  std::uint32_t our_challenge() const noexcept { return our_challenge_; }

 private:
  void fail(Errc code, std::string message, ErrorDomain domain = ErrorDomain::none, int source = 0);
  std::string on_message(std::string_view msg);
  std::string on_status(std::string_view msg);
  std::string on_challenge(std::string_view msg);
  std::string challenge_reply(std::uint32_t challenge);
  void on_challenge_ack(std::string_view msg);

  std::string our_name_;
  std::string cookie_;
  std::uint64_t our_flags_;
  std::uint32_t creation_;
  std::uint32_t our_challenge_;
  int version_;
  std::string expected_peer_;
  HandshakeStage stage_ = HandshakeStage::send_name;
  HandshakeStage failed_at_ = HandshakeStage::send_name;
  Error error_;
  HandshakeFindings findings_;
  std::string in_;  // received bytes not yet consumed
};

}  // namespace beamlink::dist
