// MD5 as specified by RFC 1321, section 3 ("MD5 Algorithm Description").

#include "dist/md5.hpp"

#include <cstring>

#include "common/block_hash.hpp"

namespace beamlink::dist {

namespace {

// RFC 1321 3.4: T[i] = floor(4294967296 * abs(sin(i))), i = 1..64.
constexpr std::array<std::uint32_t, 64> kT = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391};

// The per-round shift amounts of RFC 1321 3.4 (S11..S44).
constexpr std::array<unsigned, 16> kShift = {7, 12, 17, 22, 5, 9,  14, 20,
                                             4, 11, 16, 23, 6, 10, 15, 21};

constexpr std::uint32_t rotl(std::uint32_t x, unsigned n) {
  return (x << n) | (x >> (32 - n));
}

}  // namespace

Md5::Md5() noexcept : state_{0x67452301, 0xefcdab89, 0x98badcfe, 0x10325476} {}

void Md5::block(const std::uint8_t* p) noexcept {
  std::uint32_t x[16];
  for (int i = 0; i < 16; ++i)  // little-endian words (RFC 1321 3.4)
    x[i] = std::uint32_t(p[4 * i]) | std::uint32_t(p[4 * i + 1]) << 8 |
           std::uint32_t(p[4 * i + 2]) << 16 | std::uint32_t(p[4 * i + 3]) << 24;
  std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3];
  for (unsigned i = 0; i < 64; ++i) {
    std::uint32_t f;
    unsigned k;
    unsigned round = i / 16;
    if (round == 0) {
      f = (b & c) | (~b & d);  // F
      k = i;
    } else if (round == 1) {
      f = (b & d) | (c & ~d);  // G
      k = (5 * i + 1) % 16;
    } else if (round == 2) {
      f = b ^ c ^ d;  // H
      k = (3 * i + 5) % 16;
    } else {
      f = c ^ (b | ~d);  // I
      k = (7 * i) % 16;
    }
    std::uint32_t next = b + rotl(a + f + kT[i] + x[k], kShift[round * 4 + i % 4]);
    a = d;
    d = c;
    c = b;
    b = next;
  }
  state_[0] += a;
  state_[1] += b;
  state_[2] += c;
  state_[3] += d;
}

void Md5::update(std::string_view data) noexcept {
  hash_update(buffer_, length_, data, [this](const std::uint8_t* p) { block(p); });
}

Md5Digest Md5::finish() noexcept {
  // RFC 1321 3.1-3.2: a 1 bit, zeros to 56 mod 64, then the bit length (LE).
  std::uint64_t bits = length_ * 8;
  static constexpr char kPad[64] = {'\x80'};
  auto used = static_cast<std::size_t>(length_ % 64);
  update(std::string_view(kPad, used < 56 ? 56 - used : 120 - used));
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((bits >> (8 * i)) & 0xff);
  update(std::string_view(len, 8));
  Md5Digest out{};
  for (int i = 0; i < 4; ++i)
    for (int j = 0; j < 4; ++j)
      out[std::size_t(4 * i + j)] = std::uint8_t(state_[std::size_t(i)] >> (8 * j));
  return out;
}

Md5Digest md5(std::string_view data) noexcept {
  Md5 m;
  m.update(data);
  return m.finish();
}

std::string md5_hex(std::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (auto b : md5(data)) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

Md5Digest handshake_digest(std::uint32_t challenge, std::string_view cookie) {
  Md5 m;
  m.update(cookie);
  m.update(std::to_string(challenge));
  return m.finish();
}

}  // namespace beamlink::dist
