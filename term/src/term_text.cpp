#include "term/term_text.hpp"

#include "common/bytes.hpp"

#include <ei.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <span>
#include <utility>
#include <vector>

#include "term_walker.hpp"

namespace beamlink::term {
namespace {

using bytes::append_utf8;
using bytes::get_u16;
using bytes::get_u32;

// ------------------------------------------------------------ shared helpers

// Decodes one well-formed UTF-8 character at s[i]; returns its length, 0 if
// the bytes there are not well-formed.
std::size_t decode_utf8(std::string_view s, std::size_t i, std::uint32_t* cp) {
  auto b = [&](std::size_t k) { return static_cast<unsigned char>(s[i + k]); };
  const std::size_t left = s.size() - i;
  const unsigned char c0 = b(0);
  if (c0 < 0x80) {
    *cp = c0;
    return 1;
  }
  std::size_t n = 0;
  std::uint32_t v = 0, min = 0;
  if (c0 >= 0xC2 && c0 <= 0xDF) {
    n = 2, v = c0 & 0x1Fu, min = 0x80;
  } else if (c0 >= 0xE0 && c0 <= 0xEF) {
    n = 3, v = c0 & 0x0Fu, min = 0x800;
  } else if (c0 >= 0xF0 && c0 <= 0xF4) {
    n = 4, v = c0 & 0x07u, min = 0x10000;
  } else {
    return 0;
  }
  if (left < n) return 0;
  for (std::size_t k = 1; k < n; ++k) {
    if ((b(k) & 0xC0) != 0x80) return 0;
    v = (v << 6) | (b(k) & 0x3Fu);
  }
  if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) return 0;
  *cp = v;
  return n;
}

// io_lib:write_string/2 (unicode_as_unicode): one character inside quotes q.
void write_char(std::string& out, std::uint32_t c, char q) {
  if (c == static_cast<unsigned char>(q)) {
    out.push_back('\\');
    out.push_back(q);
    return;
  }
  switch (c) {
    case '\\':
      out += "\\\\";
      return;
    case '\n':
      out += "\\n";
      return;
    case '\r':
      out += "\\r";
      return;
    case '\t':
      out += "\\t";
      return;
    case '\v':
      out += "\\v";
      return;
    case '\b':
      out += "\\b";
      return;
    case '\f':
      out += "\\f";
      return;
    case 27:
      out += "\\e";
      return;
    case 127:
      out += "\\d";
      return;
    default:
      break;
  }
  if ((c >= 32 && c <= 126) || c >= 0xA0) {
    append_utf8(out, c);
    return;
  }
  out.push_back('\\');  // other control characters: three octal digits
  out.push_back(static_cast<char>('0' + ((c >> 6) & 7)));
  out.push_back(static_cast<char>('0' + ((c >> 3) & 7)));
  out.push_back(static_cast<char>('0' + (c & 7)));
}

bool is_reserved_word(std::string_view a) {
  // erl_scan:reserved_word/1 in OTP 25 (maybe/else only with the feature on).
  static constexpr std::string_view kWords[] = {
      "after", "begin", "case", "try", "cond",    "catch", "andalso", "orelse", "end",
      "fun",   "if",    "let",  "of",  "receive", "when",  "bnot",    "not",    "div",
      "rem",   "band",  "and",  "bor", "bxor",    "bsl",   "bsr",     "or",     "xor"};
  return std::find(std::begin(kWords), std::end(kWords), a) != std::end(kWords);
}

bool atom_start_char(std::uint32_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 0xDF && c <= 0xFF && c != 0xF7);
}
bool atom_name_char(std::uint32_t c) {
  return atom_start_char(c) || (c >= 'A' && c <= 'Z') || (c >= 0xC0 && c <= 0xDE && c != 0xD7) ||
         (c >= '0' && c <= '9') || c == '_' || c == '@';
}

// ------------------------------------------------------------------ parser

struct PNode {
  enum class Kind { atom, integer, big, floating, binary, chars, list, tuple, map };
  Kind kind = Kind::atom;
  std::string text;                  // atom name (UTF-8), binary bytes, big: LE magnitude
  std::int64_t i = 0;                // integer value; binary: bits used in the last byte (0: all)
  bool negative = false;             // big
  double f = 0;                      // floating
  std::vector<std::uint32_t> chars;  // a string literal's characters
  std::vector<PNode> kids;           // elements; for a map k0, v0, k1, v1, ...
  bool has_tail = false;             // list: the last kid is the tail
};

class Parser {
 public:
  explicit Parser(std::string_view text) : s_(text) {}

  Result<void> term(PNode& n, int depth);
  Result<void> sequence_until_end(std::vector<PNode>& items);
  void skip_ws();
  bool at_end() const { return pos_ >= s_.size(); }
  char peek() const { return at_end() ? '\0' : s_[pos_]; }
  std::size_t pos() const { return pos_; }
  void set_pos(std::size_t p) { pos_ = p; }
  // Optional trailing '.' and then the end of the input.
  Result<void> finish();
  Error fail(std::string_view expected) const { return fail_at(pos_, expected); }
  Error fail_at(std::size_t at, std::string_view what) const;

 private:
  Result<void> atom_bare(PNode& n);
  Result<void> atom_quoted(PNode& n);
  Result<void> number(PNode& n, bool negative);
  Result<void> char_literal(PNode& n, bool negative);
  Result<void> string_literal(std::vector<std::uint32_t>& out);
  Result<void> escape(std::uint32_t* c);
  Result<void> binary(PNode& n);
  Result<void> list(PNode& n, int depth);
  Result<void> tuple(PNode& n, int depth);
  Result<void> map(PNode& n, int depth);
  bool next_char(std::uint32_t* c);  // decodes and advances; false at end or bad UTF-8
  std::uint32_t peek_char(std::size_t* len) const;

  std::string_view s_;
  std::size_t pos_ = 0;
};

Error Parser::fail_at(std::size_t at, std::string_view what) const {
  std::size_t column = 1;
  for (std::size_t i = 0; i < at && i < s_.size(); ++i)
    if ((static_cast<unsigned char>(s_[i]) & 0xC0) != 0x80) ++column;
  std::string msg = "at column " + std::to_string(column) + ": ";
  if (what.starts_with("expected")) {
    msg += what;
    msg += at >= s_.size() ? ", found the end of the input" : "";
  } else {
    msg += what;
  }
  return make_error(Errc::invalid_argument, std::move(msg));
}

void Parser::skip_ws() {
  while (pos_ < s_.size()) {
    char c = s_[pos_];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v') {
      ++pos_;
    } else if (c == '%') {
      while (pos_ < s_.size() && s_[pos_] != '\n') ++pos_;
    } else {
      break;
    }
  }
}

std::uint32_t Parser::peek_char(std::size_t* len) const {
  std::uint32_t c = 0;
  *len = at_end() ? 0 : decode_utf8(s_, pos_, &c);
  return *len ? c : 0xFFFFFFFFu;
}

bool Parser::next_char(std::uint32_t* c) {
  if (at_end()) return false;
  std::size_t n = decode_utf8(s_, pos_, c);
  if (n == 0) return false;
  pos_ += n;
  return true;
}

Result<void> Parser::finish() {
  skip_ws();
  if (peek() == '.') {
    ++pos_;
    skip_ws();
  }
  if (!at_end()) return fail("expected the end of the input");
  return {};
}

Result<void> Parser::term(PNode& n, int depth) {
  if (depth > kMaxParseDepth)
    return fail("terms nested deeper than " + std::to_string(kMaxParseDepth) + " levels");
  skip_ws();
  if (at_end()) return fail("expected a term");
  const char c = peek();
  if (c == '-' || c == '+') {
    ++pos_;
    skip_ws();
    if (peek() >= '0' && peek() <= '9') return number(n, c == '-');
    if (peek() == '$') return char_literal(n, c == '-');
    return fail("expected a number after the sign");
  }
  if (c >= '0' && c <= '9') return number(n, false);
  if (c == '$') return char_literal(n, false);
  if (c == '\'') return atom_quoted(n);
  if (c == '"') {
    n.kind = PNode::Kind::chars;
    // Adjacent string literals are one string, as in Erlang.
    do {
      if (auto r = string_literal(n.chars); !r) return r;
      skip_ws();
    } while (peek() == '"');
    return {};
  }
  if (c == '[') return list(n, depth);
  if (c == '{') return tuple(n, depth);
  if (c == '#') {
    if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '{') return map(n, depth);
    return fail_at(pos_ + 1, "expected '{' after '#' (a map is #{k => v})");
  }
  if (c == '<') {
    if (pos_ + 1 < s_.size() && s_[pos_ + 1] == '<') return binary(n);
    return fail("expected a term ('<<' starts a binary; pids have no literal syntax)");
  }
  std::size_t len = 0;
  std::uint32_t cp = peek_char(&len);
  if (len == 0) return fail("invalid UTF-8 in the input");
  if (atom_start_char(cp)) return atom_bare(n);
  if ((cp >= 'A' && cp <= 'Z') || cp == '_' || (cp >= 0xC0 && cp <= 0xDE && cp != 0xD7)) {
    std::size_t end = pos_;
    while (end < s_.size()) {
      std::uint32_t ch = 0;
      std::size_t k = decode_utf8(s_, end, &ch);
      if (k == 0 || !atom_name_char(ch)) break;
      end += k;
    }
    std::string name(s_.substr(pos_, end - pos_));
    return fail("expected a term, found the variable " + name +
                " (quote an atom that starts with "
                "a capital or '_': '" +
                name + "')");
  }
  return fail("expected a term");
}

Result<void> Parser::atom_bare(PNode& n) {
  std::size_t start = pos_;
  n.kind = PNode::Kind::atom;
  n.text.clear();
  while (!at_end()) {
    std::size_t len = 0;
    std::uint32_t c = peek_char(&len);
    if (len == 0 || !atom_name_char(c)) break;
    append_utf8(n.text, c);
    pos_ += len;
  }
  if (is_reserved_word(n.text))
    return fail_at(
        start, "'" + n.text + "' is a reserved word; quote it to make an atom: '" + n.text + "'");
  return {};
}

Result<void> Parser::escape(std::uint32_t* c) {
  // At the character after the backslash. Erlang's escapes (erl_scan).
  if (at_end()) return fail("expected an escape sequence");
  const char e = s_[pos_];
  auto hex = [](char h) -> int {
    if (h >= '0' && h <= '9') return h - '0';
    if (h >= 'a' && h <= 'f') return h - 'a' + 10;
    if (h >= 'A' && h <= 'F') return h - 'A' + 10;
    return -1;
  };
  if (e >= '0' && e <= '7') {
    std::uint32_t v = 0;
    for (int k = 0; k < 3 && !at_end() && s_[pos_] >= '0' && s_[pos_] <= '7'; ++k, ++pos_)
      v = v * 8 + static_cast<std::uint32_t>(s_[pos_] - '0');
    *c = v;
    return {};
  }
  if (e == 'x') {
    ++pos_;
    if (peek() == '{') {
      ++pos_;
      std::uint32_t v = 0;
      int digits = 0;
      while (!at_end() && hex(s_[pos_]) >= 0) {
        v = v * 16 + static_cast<std::uint32_t>(hex(s_[pos_]));
        if (v > 0x10FFFF) return fail("character code over 16#10FFFF in \\x{...}");
        ++pos_, ++digits;
      }
      if (digits == 0 || peek() != '}') return fail("expected hex digits and '}' in \\x{...}");
      ++pos_;
      *c = v;
      return {};
    }
    if (pos_ + 1 < s_.size() && hex(s_[pos_]) >= 0 && hex(s_[pos_ + 1]) >= 0) {
      *c = static_cast<std::uint32_t>(hex(s_[pos_]) * 16 + hex(s_[pos_ + 1]));
      pos_ += 2;
      return {};
    }
    return fail("expected two hex digits or {...} after \\x");
  }
  if (e == '^') {
    ++pos_;
    char k = peek();
    if ((k >= 'a' && k <= 'z') || (k >= 'A' && k <= 'Z') || (k >= '@' && k <= '_')) {
      ++pos_;
      *c = static_cast<std::uint32_t>(k) & 0x1Fu;
      return {};
    }
    if (k == '?') {
      ++pos_;
      *c = 127;
      return {};
    }
    return fail("expected a letter after \\^");
  }
  switch (e) {
    case 'b':
      *c = 8;
      break;
    case 'd':
      *c = 127;
      break;
    case 'e':
      *c = 27;
      break;
    case 'f':
      *c = 12;
      break;
    case 'n':
      *c = 10;
      break;
    case 'r':
      *c = 13;
      break;
    case 's':
      *c = 32;
      break;
    case 't':
      *c = 9;
      break;
    case 'v':
      *c = 11;
      break;
    default:
      if (!next_char(c)) return fail("invalid UTF-8 in the input");
      return {};
  }
  ++pos_;
  return {};
}

Result<void> Parser::atom_quoted(PNode& n) {
  std::size_t start = pos_;
  ++pos_;  // '
  n.kind = PNode::Kind::atom;
  n.text.clear();
  std::size_t count = 0;
  for (;;) {
    if (at_end()) return fail_at(start, "unterminated quoted atom (expected a closing ')");
    std::uint32_t c = 0;
    if (s_[pos_] == '\'') {
      ++pos_;
      break;
    }
    if (s_[pos_] == '\\') {
      ++pos_;
      if (auto r = escape(&c); !r) return r;
    } else if (!next_char(&c)) {
      return fail("invalid UTF-8 in the input");
    }
    if (c >= 0xD800 && c <= 0xDFFF) return fail("a surrogate code point cannot be in an atom");
    append_utf8(n.text, c);
    ++count;
  }
  if (count > 255) return fail_at(start, "atom longer than 255 characters");
  return {};
}

Result<void> Parser::char_literal(PNode& n, bool negative) {
  ++pos_;  // $
  std::uint32_t c = 0;
  if (at_end()) return fail("expected a character after $");
  if (s_[pos_] == '\\') {
    ++pos_;
    if (auto r = escape(&c); !r) return r;
  } else if (!next_char(&c)) {
    return fail("invalid UTF-8 in the input");
  }
  n.kind = PNode::Kind::integer;
  n.i = negative ? -std::int64_t{c} : std::int64_t{c};
  return {};
}

Result<void> Parser::string_literal(std::vector<std::uint32_t>& out) {
  std::size_t start = pos_;
  ++pos_;  // "
  for (;;) {
    if (at_end()) return fail_at(start, "unterminated string (expected a closing \")");
    std::uint32_t c = 0;
    if (s_[pos_] == '"') {
      ++pos_;
      return {};
    }
    if (s_[pos_] == '\\') {
      ++pos_;
      if (auto r = escape(&c); !r) return r;
    } else if (!next_char(&c)) {
      return fail("invalid UTF-8 in the input");
    }
    out.push_back(c);
  }
}

// Little-endian base-2^32 magnitude arithmetic for integers of any size.
void mag_mul_add(std::vector<std::uint32_t>& m, std::uint32_t mul, std::uint32_t add) {
  std::uint64_t carry = add;
  for (auto& limb : m) {
    std::uint64_t v = std::uint64_t{limb} * mul + carry;
    limb = static_cast<std::uint32_t>(v);
    carry = v >> 32;
  }
  if (carry) m.push_back(static_cast<std::uint32_t>(carry));
}

Result<void> Parser::number(PNode& n, bool negative) {
  const std::size_t start = pos_;
  auto digit_value = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'z') return c - 'a' + 10;
    if (c >= 'A' && c <= 'Z') return c - 'A' + 10;
    return 99;
  };
  // Digits with '_' separators between them; returns the digits without '_'.
  auto digits = [&](int base, std::string* out) -> Result<void> {
    std::size_t first = pos_;
    while (!at_end()) {
      char c = s_[pos_];
      if (c == '_' && pos_ > first && pos_ + 1 < s_.size() && digit_value(s_[pos_ + 1]) < base &&
          s_[pos_ - 1] != '_') {
        ++pos_;
        continue;
      }
      if (digit_value(c) >= base) break;
      out->push_back(c);
      ++pos_;
    }
    if (out->empty()) return fail("expected a digit in base " + std::to_string(base));
    return {};
  };
  std::string ds;
  if (auto r = digits(10, &ds); !r) return r;
  int base = 10;
  if (peek() == '#') {
    if (ds.size() > 2 || std::stoi(ds) < 2 || std::stoi(ds) > 36)
      return fail_at(start, "a base must be between 2 and 36 (as in 16#FF)");
    base = std::stoi(ds);
    ++pos_;
    ds.clear();
    if (auto r = digits(base, &ds); !r) return r;
  } else if (peek() == '.' && pos_ + 1 < s_.size() && s_[pos_ + 1] >= '0' && s_[pos_ + 1] <= '9') {
    std::string fs = negative ? "-" + ds : ds;
    ++pos_;
    fs.push_back('.');
    if (auto r = digits(10, &fs); !r) return r;
    if (peek() == 'e' || peek() == 'E') {
      ++pos_;
      fs.push_back('e');
      if (peek() == '+' || peek() == '-') fs.push_back(s_[pos_++]);
      std::string ex;
      if (auto r = digits(10, &ex); !r) return r;
      fs += ex;
    }
    double v = 0;
    auto res = std::from_chars(fs.data(), fs.data() + fs.size(), v);
    if (res.ec != std::errc() || !std::isfinite(v))
      return fail_at(start, "float out of range (Erlang floats are finite 64-bit doubles)");
    n.kind = PNode::Kind::floating;
    n.f = v;
    return {};
  }
  std::vector<std::uint32_t> mag;
  for (char c : ds)
    mag_mul_add(mag, static_cast<std::uint32_t>(base), static_cast<std::uint32_t>(digit_value(c)));
  while (!mag.empty() && mag.back() == 0) mag.pop_back();
  std::uint64_t low = 0;
  if (mag.size() <= 2)
    low = (mag.size() > 0 ? mag[0] : 0) | (std::uint64_t{mag.size() > 1 ? mag[1] : 0} << 32);
  if (mag.size() <= 2 &&
      (low <= static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ||
       (negative && low == std::uint64_t{1} << 63))) {
    n.kind = PNode::Kind::integer;
    n.i = negative ? static_cast<std::int64_t>(0 - low) : static_cast<std::int64_t>(low);
    return {};
  }
  n.kind = PNode::Kind::big;
  n.negative = negative;
  n.text.clear();
  for (std::uint32_t limb : mag)
    for (int k = 0; k < 4; ++k) n.text.push_back(static_cast<char>(limb >> (8 * k)));
  while (!n.text.empty() && n.text.back() == '\0') n.text.pop_back();
  return {};
}

// Appends `size` bits of the two's complement value v, most significant
// first (big) or by bytes least significant first (little).
struct BitWriter {
  std::string bytes;
  std::size_t bits = 0;
  void put_bit(bool b) {
    if (bits % 8 == 0) bytes.push_back('\0');
    if (b) bytes.back() = static_cast<char>(bytes.back() | (0x80 >> (bits % 8)));
    ++bits;
  }
  static bool bit_of(std::int64_t v, std::size_t i) {
    return i < 64 ? ((static_cast<std::uint64_t>(v) >> i) & 1u) != 0 : v < 0;
  }
  void put(std::int64_t v, std::size_t size, bool little) {
    if (!little) {
      for (std::size_t i = size; i-- > 0;) put_bit(bit_of(v, i));
    } else {
      for (std::size_t byte = 0; byte < size / 8; ++byte)
        for (std::size_t j = 8; j-- > 0;) put_bit(bit_of(v, byte * 8 + j));
    }
  }
};

Result<void> Parser::binary(PNode& n) {
  pos_ += 2;  // <<
  n.kind = PNode::Kind::binary;
  BitWriter w;
  skip_ws();
  if (peek() == '>' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '>') {
    pos_ += 2;
    return {};
  }
  for (;;) {
    skip_ws();
    const std::size_t seg_start = pos_;
    std::vector<std::int64_t> values;
    bool is_string = false;
    if (peek() == '"') {
      std::vector<std::uint32_t> cs;
      do {
        if (auto r = string_literal(cs); !r) return r;
        skip_ws();
      } while (peek() == '"');
      values.assign(cs.begin(), cs.end());
      is_string = true;
    } else {
      PNode v;
      bool neg = false;
      if (peek() == '-' || peek() == '+') {
        neg = peek() == '-';
        ++pos_;
        skip_ws();
      }
      if (peek() >= '0' && peek() <= '9') {
        if (auto r = number(v, neg); !r) return r;
      } else if (peek() == '$') {
        if (auto r = char_literal(v, neg); !r) return r;
      } else {
        return fail("expected an integer, a character or a string in a binary");
      }
      if (v.kind == PNode::Kind::floating)
        return fail_at(seg_start, "float segments are not supported");
      if (v.kind == PNode::Kind::big)
        return fail_at(seg_start, "integer too large for a binary segment");
      values.push_back(v.i);
    }
    skip_ws();
    std::size_t size = 8;
    bool has_size = false;
    if (peek() == ':') {
      ++pos_;
      skip_ws();
      std::size_t size_at = pos_;
      PNode sz;
      if (!(peek() >= '0' && peek() <= '9')) return fail("expected a size in bits after ':'");
      if (auto r = number(sz, false); !r) return r;
      if (sz.kind != PNode::Kind::integer || sz.i > (1 << 20))
        return fail_at(size_at, "segment size must be an integer up to 1048576 bits");
      size = static_cast<std::size_t>(sz.i);
      has_size = true;
      skip_ws();
    }
    bool utf8 = false, little = false;
    if (peek() == '/') {
      ++pos_;
      for (;;) {
        skip_ws();
        std::size_t type_at = pos_;
        std::string type;
        while (!at_end() && ((s_[pos_] >= 'a' && s_[pos_] <= 'z') || s_[pos_] == '8'))
          type.push_back(s_[pos_++]);
        if (type == "utf8") {
          utf8 = true;
        } else if (type == "little") {
          little = true;
        } else if (type != "big" && type != "integer" && type != "unsigned" && type != "signed") {
          return fail_at(type_at,
                         "expected a segment type: utf8, integer, big, little, signed or unsigned");
        }
        skip_ws();
        if (peek() != '-') break;
        ++pos_;
      }
    }
    if (utf8 && has_size) return fail_at(seg_start, "a utf8 segment has no size");
    if (little && size % 8 != 0)
      return fail_at(seg_start, "little-endian segments need a size that is a multiple of 8");
    for (std::int64_t v : values) {
      if (utf8) {
        if (v < 0 || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF))
          return fail_at(seg_start, "not a Unicode code point in a utf8 segment");
        std::string u;
        append_utf8(u, static_cast<std::uint32_t>(v));
        for (char ch : u) w.put(static_cast<unsigned char>(ch), 8, false);
      } else {
        if (is_string && !has_size && v > 255)
          return fail_at(seg_start, "character " + std::to_string(v) +
                                        " does not fit in a byte; write <<\"...\"/utf8>>");
        w.put(v, size, little);
      }
    }
    skip_ws();
    if (peek() == ',') {
      ++pos_;
      continue;
    }
    if (peek() == '>' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '>') {
      pos_ += 2;
      break;
    }
    return fail("expected ',' or '>>'");
  }
  n.text = std::move(w.bytes);
  n.i = static_cast<std::int64_t>(w.bits % 8);
  return {};
}

Result<void> Parser::list(PNode& n, int depth) {
  ++pos_;  // [
  n.kind = PNode::Kind::list;
  skip_ws();
  if (peek() == ']') {
    ++pos_;
    return {};
  }
  for (;;) {
    n.kids.emplace_back();
    if (auto r = term(n.kids.back(), depth + 1); !r) return r;
    skip_ws();
    if (peek() == ',') {
      ++pos_;
      continue;
    }
    if (peek() == '|') {
      ++pos_;
      PNode tail;
      if (auto r = term(tail, depth + 1); !r) return r;
      skip_ws();
      if (peek() != ']') return fail("expected ']'");
      ++pos_;
      // [a | [b, c]] is the list [a, b, c]; [a | "bc"] is [a, $b, $c].
      if (tail.kind == PNode::Kind::list) {
        for (auto& k : tail.kids) n.kids.push_back(std::move(k));
        n.has_tail = tail.has_tail;
      } else if (tail.kind == PNode::Kind::chars) {
        for (std::uint32_t c : tail.chars) {
          PNode k;
          k.kind = PNode::Kind::integer;
          k.i = c;
          n.kids.push_back(std::move(k));
        }
      } else {
        n.kids.push_back(std::move(tail));
        n.has_tail = true;
      }
      return {};
    }
    if (peek() == ']') {
      ++pos_;
      return {};
    }
    return fail("expected ',', '|' or ']'");
  }
}

Result<void> Parser::tuple(PNode& n, int depth) {
  ++pos_;  // {
  n.kind = PNode::Kind::tuple;
  skip_ws();
  if (peek() == '}') {
    ++pos_;
    return {};
  }
  for (;;) {
    n.kids.emplace_back();
    if (auto r = term(n.kids.back(), depth + 1); !r) return r;
    skip_ws();
    if (peek() == ',') {
      ++pos_;
      continue;
    }
    if (peek() == '}') {
      ++pos_;
      return {};
    }
    return fail("expected ',' or '}'");
  }
}

Result<void> Parser::map(PNode& n, int depth) {
  pos_ += 2;  // #{
  n.kind = PNode::Kind::map;
  skip_ws();
  if (peek() == '}') {
    ++pos_;
    return {};
  }
  for (;;) {
    n.kids.emplace_back();
    if (auto r = term(n.kids.back(), depth + 1); !r) return r;
    skip_ws();
    if (peek() == ':' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '=')
      return fail("expected '=>' (':=' only updates an existing map)");
    if (!(peek() == '=' && pos_ + 1 < s_.size() && s_[pos_ + 1] == '>'))
      return fail("expected '=>'");
    pos_ += 2;
    n.kids.emplace_back();
    if (auto r = term(n.kids.back(), depth + 1); !r) return r;
    skip_ws();
    if (peek() == ',') {
      ++pos_;
      continue;
    }
    if (peek() == '}') {
      ++pos_;
      return {};
    }
    return fail("expected ',' or '}'");
  }
}

Result<void> Parser::sequence_until_end(std::vector<PNode>& items) {
  for (;;) {
    items.emplace_back();
    if (auto r = term(items.back(), 1); !r) return r;
    skip_ws();
    if (peek() == ',') {
      ++pos_;
      continue;
    }
    return finish();
  }
}

// ----------------------------------------------------------------- encoder

void encode_big(bool negative, std::string_view mag, TermWriter& out) {
  std::string b;
  if (mag.size() <= 255) {
    b.push_back(static_cast<char>(ERL_SMALL_BIG_EXT));
    b.push_back(static_cast<char>(mag.size()));
  } else {
    b.push_back(static_cast<char>(ERL_LARGE_BIG_EXT));
    auto n = static_cast<std::uint32_t>(mag.size());
    for (int k = 3; k >= 0; --k) b.push_back(static_cast<char>(n >> (8 * k)));
  }
  b.push_back(negative ? 1 : 0);
  b.append(mag);
  out.raw(b);
}

void encode(const PNode& n, TermWriter& out);

void encode_map(const PNode& n, TermWriter& out) {
  // A repeated key keeps its last value, as #{a => 1, a => 2} does in Erlang.
  std::vector<std::string> keys;
  std::vector<std::size_t> value_of;  // index into kids of each kept key's value
  for (std::size_t i = 0; i + 1 < n.kids.size(); i += 2) {
    TermWriter k(false);
    encode(n.kids[i], k);
    std::string kb(k.bytes().data(), k.bytes().size());
    auto it = std::find(keys.begin(), keys.end(), kb);
    if (it != keys.end()) {
      value_of[static_cast<std::size_t>(it - keys.begin())] = i + 1;
    } else {
      keys.push_back(std::move(kb));
      value_of.push_back(i + 1);
    }
  }
  out.map(static_cast<int>(keys.size()));
  for (std::size_t k = 0; k < keys.size(); ++k) {
    out.raw(keys[k]);
    encode(n.kids[value_of[k]], out);
  }
}

void encode(const PNode& n, TermWriter& out) {
  switch (n.kind) {
    case PNode::Kind::atom:
      out.atom(n.text);
      return;
    case PNode::Kind::integer:
      out.integer(n.i);
      return;
    case PNode::Kind::big:
      encode_big(n.negative, n.text, out);
      return;
    case PNode::Kind::floating:
      out.floating(n.f);
      return;
    case PNode::Kind::binary: {
      if (n.i == 0) {
        out.binary(n.text);
        return;
      }
      std::string b;
      b.push_back(static_cast<char>(ERL_BIT_BINARY_EXT));
      auto len = static_cast<std::uint32_t>(n.text.size());
      for (int k = 3; k >= 0; --k) b.push_back(static_cast<char>(len >> (8 * k)));
      b.push_back(static_cast<char>(n.i));
      b += n.text;
      out.raw(b);
      return;
    }
    case PNode::Kind::chars: {
      bool bytes = n.chars.size() <= 65535 && std::all_of(n.chars.begin(), n.chars.end(),
                                                          [](std::uint32_t c) { return c <= 255; });
      if (bytes) {
        std::string s(n.chars.begin(), n.chars.end());
        out.string(s);  // [] when empty
        return;
      }
      out.list(static_cast<int>(n.chars.size()));
      for (std::uint32_t c : n.chars) out.integer(c);
      out.nil();
      return;
    }
    case PNode::Kind::list: {
      const std::size_t elems = n.kids.size() - (n.has_tail ? 1 : 0);
      if (elems == 0) {
        out.nil();
        return;
      }
      bool bytes = !n.has_tail && elems <= 65535 &&
                   std::all_of(n.kids.begin(), n.kids.end(), [](const PNode& k) {
                     return k.kind == PNode::Kind::integer && k.i >= 0 && k.i <= 255;
                   });
      if (bytes) {  // term_to_binary writes a list of bytes as STRING_EXT
        std::string s;
        for (const auto& k : n.kids) s.push_back(static_cast<char>(k.i));
        out.string(s);
        return;
      }
      out.list(static_cast<int>(elems));
      for (const auto& k : n.kids) encode(k, out);
      if (!n.has_tail) out.nil();
      return;
    }
    case PNode::Kind::tuple:
      out.tuple(static_cast<int>(n.kids.size()));
      for (const auto& k : n.kids) encode(k, out);
      return;
    case PNode::Kind::map:
      encode_map(n, out);
      return;
  }
}

// ------------------------------------------------------------------ printer

// format_term()'s visitor of the term walk: Erlang text, as ~0tp prints it.
class ErlangText : public TermVisitor {
 public:
  std::string take_text() { return std::move(out_); }

  // A proper list of printable characters is a "string".
  Result<std::optional<std::size_t>> take(const TermAt& t, bool) override {
    std::vector<std::uint32_t> chars;
    std::size_t end = 0;
    if (t.tag() == ERL_STRING_EXT) {
      const std::size_t n = get_u16(t.b + t.at + 1);
      const unsigned char* s = t.b + t.at + 3;
      if (n == 0 || !std::all_of(s, s + n, [](unsigned char c) { return printable_char(c); }))
        return std::optional<std::size_t>{};
      chars.assign(s, s + n);
      end = t.at + 3 + n;
    } else if (t.tag() != ERL_LIST_EXT ||
               !read_char_list(t.b, t.at, printable_char, &chars, &end)) {
      return std::optional<std::size_t>{};
    }
    out_.push_back('"');
    for (std::uint32_t c : chars) write_char(out_, c, '"');
    out_.push_back('"');
    return std::optional<std::size_t>{end};
  }

  void number(std::string_view text) override { out_ += text; }
  void atom(std::string_view name) override { out_ += format_atom(name); }
  void binary(std::string_view bytes) override { append_binary_text(out_, bytes); }
  void opaque(Opaque, std::string_view text) override { out_ += text; }

  void begin(Container c) override {
    out_ += c == Container::tuple ? "{" : c == Container::list ? "[" : "#{";
  }
  void separator(bool key_value) override {
    if (key_value)
      out_ += " => ";
    else
      out_.push_back(',');
  }
  void improper_tail() override { out_.push_back('|'); }
  void end(Container c, bool) override { out_.push_back(c == Container::list ? ']' : '}'); }

 private:
  std::string out_;
};

}  // namespace

// io_lib:printable_unicode_list/1 and io_lib_pretty's printable_char/2.
bool printable_char(std::uint32_t c) {
  switch (c) {
    case '\n':
    case '\r':
    case '\t':
    case '\v':
    case '\b':
    case '\f':
    case 27:
      return true;
    default:
      break;
  }
  return (c >= 32 && c <= 126) || (c >= 0xA0 && c < 0xD800) || (c > 0xDFFF && c < 0xFFFE) ||
         (c > 0xFFFF && c <= 0x10FFFF);
}

void append_binary_text(std::string& out, std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const std::size_t n = s.size();
  out += "<<";
  if (n > 0) {
    bool printable = false, multibyte = false;
    if (is_valid_utf8(s)) {
      printable = true;
      for (std::size_t i = 0; i < n && printable;) {
        std::uint32_t c = 0;
        std::size_t k = decode_utf8(s, i, &c);
        printable = printable_char(c);
        multibyte = multibyte || k > 1;
        i += k;
      }
      if (printable) {
        out.push_back('"');
        for (std::size_t i = 0; i < n;) {
          std::uint32_t c = 0;
          i += decode_utf8(s, i, &c);
          write_char(out, c, '"');
        }
        out += multibyte ? "\"/utf8" : "\"";
      }
    } else {  // not UTF-8: printable when every byte is a printable Latin-1 character
      printable = std::all_of(p, p + n, [](unsigned char c) { return printable_char(c); });
      if (printable) {
        out.push_back('"');
        for (std::size_t i = 0; i < n; ++i) write_char(out, p[i], '"');
        out.push_back('"');
      }
    }
    if (!printable) {
      for (std::size_t i = 0; i < n; ++i) {
        if (i) out.push_back(',');
        out += std::to_string(p[i]);
      }
    }
  }
  out += ">>";
}

bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    std::uint32_t c = 0;
    std::size_t n = decode_utf8(s, i, &c);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string format_atom(std::string_view name) {
  // io_lib:write_atom/1: bare when it starts with a lowercase letter, is all
  // name characters and is not a reserved word.
  bool bare = !name.empty() && is_valid_utf8(name) && !is_reserved_word(name);
  for (std::size_t i = 0; bare && i < name.size();) {
    std::uint32_t c = 0;
    std::size_t n = decode_utf8(name, i, &c);
    bare = i == 0 ? atom_start_char(c) : atom_name_char(c);
    i += n;
  }
  if (bare) return std::string(name);
  std::string out = "'";
  for (std::size_t i = 0; i < name.size();) {
    std::uint32_t c = 0;
    std::size_t n = decode_utf8(name, i, &c);
    if (n == 0) {  // not UTF-8: show the byte
      c = static_cast<unsigned char>(name[i]);
      n = 1;
    }
    write_char(out, c, '\'');
    i += n;
  }
  return out + "'";
}

std::string format_float(double v) {
  // io_lib_format:fwrite_g/1 (OTP 25): the shortest digits that read back
  // exactly, written in decimal or with an exponent, whichever is shorter
  // (decimal on a tie); an integral value of 2^53 or more always takes the
  // exponent. Checked against erl for 27,000 values.
  if (v == 0) return std::signbit(v) ? "-0.0" : "0.0";
  char buf[64];
  auto res = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific);
  std::string_view sci(buf, static_cast<std::size_t>(res.ptr - buf));
  std::string sign;
  if (sci.front() == '-') {
    sign = "-";
    sci.remove_prefix(1);
  }
  const std::size_t e = sci.find('e');
  std::string digits;
  for (char c : sci.substr(0, e))
    if (c != '.') digits.push_back(c);
  int exp10 = 0;
  std::string_view ex = sci.substr(e + 1);
  if (!ex.empty() && ex.front() == '+') ex.remove_prefix(1);
  std::from_chars(ex.data(), ex.data() + ex.size(), exp10);
  const int len = static_cast<int>(digits.size());
  if (exp10 >= 0 && exp10 < len - 1)  // a fraction after an integer part: 123.456
    return sign + digits.substr(0, static_cast<std::size_t>(exp10 + 1)) + "." +
           digits.substr(static_cast<std::size_t>(exp10 + 1));
  std::string expform = digits.substr(0, 1) + "." +
                        (len == 1 ? std::string("0") : digits.substr(1)) + "e" +
                        std::to_string(exp10);
  if (exp10 >= 0 && std::fabs(v) >= 9007199254740992.0) return sign + expform;
  std::string dec =
      exp10 < 0 ? "0." + std::string(static_cast<std::size_t>(-exp10 - 1), '0') + digits
                : digits + std::string(static_cast<std::size_t>(exp10 - (len - 1)), '0') + ".0";
  return sign + (dec.size() <= expform.size() ? dec : expform);
}

Result<void> parse_term(std::string_view text, TermWriter& out) {
  Parser p(text);
  PNode n;
  if (auto r = p.term(n, 1); !r) return r;
  if (auto r = p.finish(); !r) return r;
  encode(n, out);
  return out.status();
}

Result<void> parse_terms(std::string_view text, TermWriter& out, int* count) {
  Parser p(text);
  p.skip_ws();
  std::vector<PNode> items;
  if (p.at_end()) {
    out.nil();
    if (count) *count = 0;
    return out.status();
  }
  // One bracketed list that is the whole input: its elements are the items.
  bool whole_list = false;
  if (p.peek() == '[') {
    const std::size_t start = p.pos();
    PNode n;
    if (auto r = p.term(n, 1); !r) return r;
    if (p.finish().ok() && !n.has_tail) {
      items = std::move(n.kids);
      whole_list = true;
    } else if (n.has_tail) {
      p.skip_ws();
      if (p.at_end())
        return p.fail_at(start, "the ARGS list must be a proper list, not [...|Tail]");
    }
    if (!whole_list) p.set_pos(start);
  }
  if (!whole_list) {
    if (auto r = p.sequence_until_end(items); !r) return r;
  }
  if (items.empty()) {
    out.nil();
  } else {
    out.list(static_cast<int>(items.size()));
    for (const auto& it : items) encode(it, out);
    out.nil();
  }
  if (count) *count = static_cast<int>(items.size());
  return out.status();
}

Result<std::string> format_term(TermReader& r) {
  ErlangText text;
  if (auto w = walk_term(r, text); !w) return w.error();
  return text.take_text();
}

}  // namespace beamlink::term
