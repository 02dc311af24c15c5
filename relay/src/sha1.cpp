// SHA-1 as specified by RFC 3174, section 6 ("Computing the Message Digest",
// method 1), and base64 as RFC 4648 section 4.
#include "relay/sha1.hpp"

#include <algorithm>
#include <cstring>

#include "common/block_hash.hpp"

namespace beamlink::relay {

namespace {

constexpr std::uint32_t rotl(std::uint32_t x, unsigned n) {
  return (x << n) | (x >> (32 - n));
}

}  // namespace

// RFC 3174 6.1: H0..H4.
Sha1::Sha1() noexcept : state_{0x67452301, 0xEFCDAB89, 0x98BADCFE, 0x10325476, 0xC3D2E1F0} {}

void Sha1::block(const std::uint8_t* p) noexcept {
  std::uint32_t w[80];
  for (int t = 0; t < 16; ++t)  // big-endian words (RFC 3174 6.1 a)
    w[t] = std::uint32_t(p[4 * t]) << 24 | std::uint32_t(p[4 * t + 1]) << 16 |
           std::uint32_t(p[4 * t + 2]) << 8 | std::uint32_t(p[4 * t + 3]);
  for (int t = 16; t < 80; ++t) w[t] = rotl(w[t - 3] ^ w[t - 8] ^ w[t - 14] ^ w[t - 16], 1);
  std::uint32_t a = state_[0], b = state_[1], c = state_[2], d = state_[3], e = state_[4];
  for (int t = 0; t < 80; ++t) {
    std::uint32_t f, k;  // RFC 3174 section 5: f(t;B,C,D) and K(t)
    if (t < 20) {
      f = (b & c) | (~b & d);
      k = 0x5A827999;
    } else if (t < 40) {
      f = b ^ c ^ d;
      k = 0x6ED9EBA1;
    } else if (t < 60) {
      f = (b & c) | (b & d) | (c & d);
      k = 0x8F1BBCDC;
    } else {
      f = b ^ c ^ d;
      k = 0xCA62C1D6;
    }
    std::uint32_t temp = rotl(a, 5) + f + e + w[t] + k;
    e = d;
    d = c;
    c = rotl(b, 30);
    b = a;
    a = temp;
  }
  state_[0] += a;
  state_[1] += b;
  state_[2] += c;
  state_[3] += d;
  state_[4] += e;
}

void Sha1::update(std::string_view data) noexcept {
  hash_update(buffer_, length_, data, [this](const std::uint8_t* p) { block(p); });
}

Sha1Digest Sha1::finish() noexcept {
  // RFC 3174 section 4: a 1 bit, zeros to 56 mod 64, then the bit length (BE).
  std::uint64_t bits = length_ * 8;
  static constexpr char kPad[64] = {'\x80'};
  auto used = static_cast<std::size_t>(length_ % 64);
  update(std::string_view(kPad, used < 56 ? 56 - used : 120 - used));
  char len[8];
  for (int i = 0; i < 8; ++i) len[i] = static_cast<char>((bits >> (8 * (7 - i))) & 0xff);
  update(std::string_view(len, 8));
  Sha1Digest out{};
  for (int i = 0; i < 5; ++i)
    for (int j = 0; j < 4; ++j)
      out[std::size_t(4 * i + j)] = std::uint8_t(state_[std::size_t(i)] >> (8 * (3 - j)));
  return out;
}

Sha1Digest sha1(std::string_view data) noexcept {
  Sha1 s;
  s.update(data);
  return s.finish();
}

std::string sha1_hex(std::string_view data) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (auto b : sha1(data)) {
    out.push_back(kHex[b >> 4]);
    out.push_back(kHex[b & 0xf]);
  }
  return out;
}

std::string base64_encode(std::string_view bytes) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= bytes.size(); i += 3) {
    std::uint32_t v = std::uint32_t(std::uint8_t(bytes[i])) << 16 |
                      std::uint32_t(std::uint8_t(bytes[i + 1])) << 8 | std::uint8_t(bytes[i + 2]);
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(kAlphabet[(v >> 6) & 63]);
    out.push_back(kAlphabet[v & 63]);
  }
  std::size_t rest = bytes.size() - i;
  if (rest > 0) {
    std::uint32_t v = std::uint32_t(std::uint8_t(bytes[i])) << 16;
    if (rest == 2) v |= std::uint32_t(std::uint8_t(bytes[i + 1])) << 8;
    out.push_back(kAlphabet[(v >> 18) & 63]);
    out.push_back(kAlphabet[(v >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(v >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

}  // namespace beamlink::relay
