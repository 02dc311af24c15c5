// The distribution handshake as the acceptor meets it (every inbound
// connection to beamlink's distribution port): whatever an initiator sends,
// versions 5 ('n') and 6 ('N'), the OTP 23/24 'n' with DFLAG_HANDSHAKE_23
// and its 'c' complement, the "alive" status exchange, cut at arbitrary
// points. The core must end done (a valid peer) or failed with a reason,
// never crash, and only ever send whole 2-byte-framed messages.
//
// Input: byte 0 chooses the Node's answer for the name (ok, alive,
// not_allowed, or ok again after the peer closes: on_timeout instead of
// on_closed), then fuzz::feed_in_pieces (byte 1 seeds the splits). The
// seeds (fuzz/corpus/handshake_acceptor) are real erl initiators recorded by
// fuzz/capture_handshake.py, for cookie "c" and our challenge 0x11223344:
// with those the handshake completes.
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>

#include "dist/handshake_acceptor_core.hpp"
#include "splitter.hpp"

using namespace beamlink;

namespace {

// Every message the core sends is framed: 2-byte length, then that many bytes.
void check_framed(const std::string& out) {
  std::size_t at = 0;
  while (at < out.size()) {
    if (out.size() - at < 2) std::abort();
    std::size_t n =
        (static_cast<unsigned char>(out[at]) << 8) | static_cast<unsigned char>(out[at + 1]);
    if (n == 0 || out.size() - at - 2 < n) std::abort();
    at += 2 + n;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const unsigned mode = data[0] % 4;
  dist::HandshakeAcceptorCore::Options o;
  o.our_name = "fake@127.0.0.1";
  o.cookie = "c";
  o.creation = 7;
  o.our_challenge = 0x11223344u;
  int asked = 0;
  o.name_status = [&](const std::string& name) {
    ++asked;
    if (!dist::node_name_problem(name).empty()) std::abort();  // only valid names are asked
    switch (mode) {
      case 1:
        return dist::NameStatus::alive;
      case 2:
        return dist::NameStatus::not_allowed;
      default:
        return dist::NameStatus::ok;
    }
  };
  dist::HandshakeAcceptorCore core(std::move(o));
  fuzz::feed_in_pieces(data + 1, size - 1, [&](std::span<const char> piece) {
    check_framed(core.feed(piece));
    return !core.done() && !core.failed();
  });
  if (!core.done() && !core.failed()) {
    if (mode == 3)
      core.on_timeout(std::chrono::milliseconds(7000), std::chrono::milliseconds(7000));
    else
      core.on_closed();
  }
  if (!core.done() && !core.failed()) std::abort();  // closed mid-way must be a failure
  if (asked > 1) std::abort();                       // the Node is asked once
  if (core.failed() && (core.error().message.empty() || core.reason().empty())) std::abort();
  if (core.done()) {
    const auto& p = core.peer();
    if (!dist::node_name_problem(p.name).empty()) std::abort();
    if (p.version != 5 && p.version != 6) std::abort();
    if (mode == 2) std::abort();  // a refused name never completes
  }
  // Bytes after the end change nothing.
  const char more[] = "\x00\x01s";
  if (!core.feed(std::span<const char>(more, 3)).empty()) std::abort();
  return 0;
}
