// MD5 and SHA-1, computed by nettle. Both are here
// because a protocol fixes them, not for security:
//   - MD5: the distribution handshake's digest, MD5(Cookie ++
//     integer_to_list(Challenge)) ("Distribution Handshake", ERTS user's
//     guide); dist::handshake_digest builds it;
//   - SHA-1: the WebSocket accept key, base64(SHA-1(key ++ GUID)) (RFC 6455
//     section 4.2.2), and the relay's constant-time token compare.
//
// Thread: pure functions; use them anywhere.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace beamlink {

using Md5Digest = std::array<std::uint8_t, 16>;
using Sha1Digest = std::array<std::uint8_t, 20>;

Md5Digest md5(std::string_view data);
Sha1Digest sha1(std::string_view data);

// Lowercase hex digits of a digest (32 for MD5, 40 for SHA-1).
template <std::size_t N>
std::string to_hex(const std::array<std::uint8_t, N>& digest) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * N);
  for (auto b : digest) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

}  // namespace beamlink
