// Text that came from a peer, made safe to show: valid UTF-8 (invalid bytes
// become U+FFFD, as the WHATWG decoder does) and, for a terminal, no control
// characters (C0, DEL and C1 become visible escapes such as \x1b), so a
// peer's node name or status text cannot move the cursor, ring the bell or
// make JSON output invalid.
//
// Thread: none; pure functions.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace beamlink {

namespace utf8_detail {
// Decodes one code point at s[i]; returns its length, or 0 when the bytes
// there are not well-formed UTF-8 (RFC 3629: no overlongs, no surrogates,
// nothing above U+10FFFF).
inline std::size_t decode(std::string_view s, std::size_t i, std::uint32_t& cp) noexcept {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const unsigned char c = b(0);
  const std::size_t left = s.size() - i;
  auto cont = [&](std::size_t k) { return k < left && (b(k) & 0xC0) == 0x80; };
  if (c < 0x80) {
    cp = c;
    return 1;
  }
  if (c >= 0xC2 && c <= 0xDF && cont(1)) {
    cp = (c & 0x1Fu) << 6 | (b(1) & 0x3Fu);
    return 2;
  }
  if (c >= 0xE0 && c <= 0xEF && cont(1) && cont(2)) {
    cp = (c & 0x0Fu) << 12 | (b(1) & 0x3Fu) << 6 | (b(2) & 0x3Fu);
    if (cp < 0x800 || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return 3;
  }
  if (c >= 0xF0 && c <= 0xF4 && cont(1) && cont(2) && cont(3)) {
    cp = (c & 0x07u) << 18 | (b(1) & 0x3Fu) << 12 | (b(2) & 0x3Fu) << 6 | (b(3) & 0x3Fu);
    if (cp < 0x10000 || cp > 0x10FFFF) return 0;
    return 4;
  }
  return 0;
}
}  // namespace utf8_detail

// True when `s` is well-formed UTF-8.
inline bool valid_utf8(std::string_view s) noexcept {
  std::uint32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_detail::decode(s, i, cp);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

// The longest prefix of `s` of at most `max_bytes` bytes that does not end
// inside a UTF-8 character: a cut that keeps valid text valid.
inline std::string_view utf8_prefix(std::string_view s, std::size_t max_bytes) noexcept {
  if (s.size() <= max_bytes) return s;
  std::size_t cut = max_bytes;
  // Back off the continuation bytes (10xxxxxx) of the character cut through.
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xC0) == 0x80) --cut;
  return s.substr(0, cut);
}

// `s` with every ill-formed byte replaced by U+FFFD; `escape_controls` also
// turns control characters into visible escapes (\x1b, \x7f, \u0085).
inline std::string sanitize_utf8(std::string_view s, bool escape_controls = false) {
  static constexpr char hex[] = "0123456789abcdef";
  std::string out;
  out.reserve(s.size());
  std::uint32_t cp = 0;
  for (std::size_t i = 0; i < s.size();) {
    std::size_t n = utf8_detail::decode(s, i, cp);
    if (n == 0) {
      out += "\xEF\xBF\xBD";
      ++i;
      continue;
    }
    if (escape_controls && (cp < 0x20 || cp == 0x7F)) {
      out += "\\x";
      out += hex[cp >> 4];
      out += hex[cp & 0xF];
    } else if (escape_controls && cp >= 0x80 && cp <= 0x9F) {
      out += "\\u00";
      out += hex[cp >> 4];
      out += hex[cp & 0xF];
    } else {
      out.append(s.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace beamlink
