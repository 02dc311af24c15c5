// Byte helpers shared by the two handshake cores (handshake_core.cpp, the
// initiator, and handshake_acceptor_core.cpp): big-endian integers, the
// 2-byte length framing of every handshake message, a byte printed for an
// error message, and a random challenge. Private to dist/.
#pragma once

#include <cstddef>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

namespace beamlink::dist::wire {

// The n-byte big-endian integer at s[at]; the caller checked the length.
inline std::uint64_t get_be(std::string_view s, std::size_t at, std::size_t n) {
  std::uint64_t v = 0;
  for (std::size_t i = 0; i < n; ++i) v = (v << 8) | static_cast<unsigned char>(s[at + i]);
  return v;
}

inline void put_be(std::string& out, std::uint64_t v, std::size_t n) {
  for (std::size_t i = n; i-- > 0;) out.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// A handshake message with its 2-byte length.
inline std::string framed(std::string_view body) {
  std::string out;
  put_be(out, body.size(), 2);
  out.append(body);
  return out;
}

// Takes the whole handshake messages (Length:2, then Length bytes) from the
// front of `in` while `more()` holds, returning what `on_message(body)`
// answers to each, joined; erases what it took. A length of 0 or above
// `max_len` calls `bad_length(len, first_two_bytes)`, which must fail the
// core, and stops. A partial message stays in `in` for the next call.
template <class More, class BadLength, class OnMessage>
std::string take_messages(std::string& in, std::size_t max_len, More more, BadLength bad_length,
                          OnMessage on_message) {
  std::string out;
  std::size_t pos = 0;
  while (more()) {
    if (in.size() - pos < 2) break;
    auto len = static_cast<std::size_t>(get_be(in, pos, 2));
    if (len == 0 || len > max_len) {
      bad_length(len, std::string_view(in).substr(pos, 2));
      break;
    }
    if (in.size() - pos < 2 + len) break;
    out += on_message(std::string_view(in).substr(pos + 2, len));
    pos += 2 + len;
  }
  in.erase(0, pos);
  return out;
}

// "0x4e ('N')" for an error message.
inline std::string byte_text(unsigned char c) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string s = "0x";
  s.push_back(kHex[c >> 4]);
  s.push_back(kHex[c & 0xf]);
  if (c >= 0x20 && c < 0x7f) s += std::string(" ('") + static_cast<char>(c) + "')";
  return s;
}

inline std::uint32_t random_challenge() {
  std::random_device rd;
  return static_cast<std::uint32_t>(rd());
}

}  // namespace beamlink::dist::wire
