// The input buffering of the hashes built on 64-byte blocks (MD5, RFC 1321;
// SHA-1, RFC 3174): fill the pending partial block, hash every whole block
// straight from the input, keep the rest for the next call.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace beamlink {

// `length` counts every byte hashed so far (the pending ones included);
// `block(p)` hashes the 64 bytes at p.
template <class BlockFn>
void hash_update(std::array<std::uint8_t, 64>& buffer, std::uint64_t& length, std::string_view data,
                 BlockFn&& block) noexcept {
  auto used = static_cast<std::size_t>(length % 64);
  length += data.size();
  const auto* p = reinterpret_cast<const std::uint8_t*>(data.data());
  std::size_t n = data.size();
  if (used > 0) {
    std::size_t take = std::min(n, 64 - used);
    std::memcpy(buffer.data() + used, p, take);
    p += take;
    n -= take;
    if (used + take < 64) return;
    block(buffer.data());
  }
  for (; n >= 64; p += 64, n -= 64) block(p);
  if (n > 0) std::memcpy(buffer.data(), p, n);
}

}  // namespace beamlink
