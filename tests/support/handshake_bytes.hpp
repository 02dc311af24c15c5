// Distribution handshake messages built by hand ("Distribution Handshake" in
// the ERTS user's guide): the 2-byte length frame and the challenge digest,
// for tests that feed the handshake cores or a listener raw bytes.
#pragma once

#include <cstdint>
#include <string>

#include "dist/handshake_core.hpp"
#include "support.hpp"

namespace beamlink::test {

// A handshake message: Length:2 (big-endian) then `body`.
inline std::string frame(const std::string& body) {
  return be(body.size(), 2) + body;
}

// The 16 digest bytes of `challenge` under `cookie`, as the handshake sends them.
inline std::string digest_bytes(std::uint32_t challenge, const std::string& cookie) {
  auto d = dist::handshake_digest(challenge, cookie);
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

}  // namespace beamlink::test
