// SHA-1 (RFC 3174 / FIPS 180-4), for the WebSocket opening handshake only:
// RFC 6455 section 4.2.2 fixes Sec-WebSocket-Accept as
// base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")). Not for
// anything that needs a secure hash; a ~100-line implementation avoids a
// dependency on OpenSSL (as dist/md5.hpp does for the distribution digest).
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace beamlink::relay {

using Sha1Digest = std::array<std::uint8_t, 20>;

// Incremental SHA-1: update() any number of times, then finish() once.
class Sha1 {
 public:
  Sha1() noexcept;
  void update(std::string_view data) noexcept;
  Sha1Digest finish() noexcept;

 private:
  void block(const std::uint8_t* p) noexcept;
  std::array<std::uint32_t, 5> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::uint64_t length_ = 0;  // bytes hashed so far
};

Sha1Digest sha1(std::string_view data) noexcept;
std::string sha1_hex(std::string_view data);  // 40 lowercase hex digits

// Base64 with padding (RFC 4648 section 4).
std::string base64_encode(std::string_view bytes);

}  // namespace beamlink::relay
