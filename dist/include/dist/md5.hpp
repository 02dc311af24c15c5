// MD5 (RFC 1321), for the distribution handshake's digests only: "Distribution
// Handshake" in the ERTS user's guide defines a digest as
// MD5(Cookie ++ integer_to_list(Challenge)). Not for anything that needs a
// secure hash; it is here because the handshake protocol fixes it, and a
// ~100-line implementation avoids a dependency on OpenSSL.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace beamlink::dist {

using Md5Digest = std::array<std::uint8_t, 16>;

// Incremental MD5: update() any number of times, then finish() once.
class Md5 {
 public:
  Md5() noexcept;
  void update(std::string_view data) noexcept;
  Md5Digest finish() noexcept;

 private:
  void block(const std::uint8_t* p) noexcept;
  std::array<std::uint32_t, 4> state_;
  std::array<std::uint8_t, 64> buffer_{};
  std::uint64_t length_ = 0;  // bytes hashed so far
};

Md5Digest md5(std::string_view data) noexcept;
std::string md5_hex(std::string_view data);  // 32 lowercase hex digits

// The handshake digest: MD5(cookie ++ integer_to_list(challenge)), the
// challenge printed as an unsigned decimal number.
Md5Digest handshake_digest(std::uint32_t challenge, std::string_view cookie);

}  // namespace beamlink::dist
