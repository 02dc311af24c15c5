#include "term_walker.hpp"

#include <ei.h>

#include <cmath>
#include <cstdlib>
#include <cstring>

#include "bad_term.hpp"
#include "common/bytes.hpp"
#include "term/term_text.hpp"

namespace beamlink::term {
namespace {

using bytes::append_utf8;
using bytes::get_u16;
using bytes::get_u32;

// Magnitude (little-endian bytes) to decimal digits.
std::string magnitude_to_decimal(const unsigned char* bytes, std::size_t n) {
  std::vector<std::uint32_t> limbs((n + 3) / 4, 0);
  for (std::size_t i = 0; i < n; ++i) limbs[i / 4] |= std::uint32_t{bytes[i]} << (8 * (i % 4));
  while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
  if (limbs.empty()) return "0";
  std::string rev;
  while (!limbs.empty()) {
    std::uint64_t rem = 0;
    for (std::size_t i = limbs.size(); i-- > 0;) {
      std::uint64_t cur = (rem << 32) | limbs[i];
      limbs[i] = static_cast<std::uint32_t>(cur / 1000000000u);
      rem = cur % 1000000000u;
    }
    while (!limbs.empty() && limbs.back() == 0) limbs.pop_back();
    for (int k = 0; k < 9; ++k) {
      rev.push_back(static_cast<char>('0' + rem % 10));
      rem /= 10;
      if (limbs.empty() && rem == 0) break;
    }
  }
  return std::string(rev.rbegin(), rev.rend());
}

void append_bytes_as_list(std::string& out, const unsigned char* p, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) {
    if (i) out.push_back(',');
    out += std::to_string(p[i]);
  }
}

class Walker {
 public:
  Walker(const unsigned char* buf, std::size_t size, std::size_t at, TermVisitor& v)
      : b_(buf), size_(size), at_(at), v_(v) {}

  Result<void> run() {
    if (auto r = term(false); !r) return r;
    while (!stack_.empty()) {
      Frame& f = stack_.back();
      if (f.left == 0) {
        if (f.kind == Container::list && f.tail) {
          f.tail = false;
          if (b_[at_] == ERL_NIL_EXT) {
            ++at_;
          } else {
            f.improper = true;
            v_.improper_tail();
            if (auto r = term(false); !r) return r;
          }
          continue;
        }
        v_.end(f.kind, f.improper);
        stack_.pop_back();
        continue;
      }
      const bool key = f.kind == Container::map && f.left % 2 == 0;
      if (f.kind == Container::map && !key) {
        v_.separator(true);
      } else if (!f.first) {
        v_.separator(false);
      }
      f.first = false;
      --f.left;
      if (auto r = term(key); !r) return r;
    }
    return {};
  }

  std::size_t end() const { return at_; }

 private:
  struct Frame {
    Container kind;
    std::uint64_t left;
    bool first = true;
    bool tail = false;  // a list: its tail is still to walk
    bool improper = false;
  };

  void open(Container c, std::uint64_t n) {
    v_.begin(c);
    if (n == 0 && c != Container::list) {
      v_.end(c, false);
      return;
    }
    stack_.push_back(Frame{c, n, true, c == Container::list, false});
  }

  Result<void> integer_field(std::size_t* at, std::size_t limit, std::int64_t* v) const {
    if (*at >= limit) return detail::bad_term_at("truncated fun", *at);
    if (b_[*at] == ERL_SMALL_INTEGER_EXT && limit - *at >= 2) {
      *v = b_[*at + 1];
      *at += 2;
      return {};
    }
    if (b_[*at] == ERL_INTEGER_EXT && limit - *at >= 5) {
      *v = static_cast<std::int32_t>(get_u32(b_ + *at + 1));
      *at += 5;
      return {};
    }
    return detail::bad_term_at("expected an integer in a fun", *at);
  }

  Result<void> atom_field(std::size_t* at, std::size_t limit, std::string* name) const {
    if (*at >= limit) return detail::bad_term_at("truncated fun", *at);
    const unsigned char tag = b_[*at];
    std::size_t need = (tag == ERL_ATOM_EXT || tag == ERL_ATOM_UTF8_EXT) ? 3 : 2;
    if (limit - *at < need) return detail::bad_term_at("truncated fun", *at);
    std::size_t len = need == 3 ? get_u16(b_ + *at + 1) : b_[*at + 1];
    if (limit - *at - need < len) return detail::bad_term_at("truncated fun", *at);
    auto a = read_atom_name(b_, at);
    if (!a) return a.error();
    *name = std::move(*a);
    return {};
  }

  Result<void> term(bool key) {
    // A list of no elements is its tail: erts decodes LIST_EXT with length 0
    // as the tail term itself ([|T] is T), so the tail is walked in its place.
    // A loop, not recursion: a chain of such headers can be as long as the input.
    while (b_[at_] == ERL_LIST_EXT && get_u32(b_ + at_ + 1) == 0) at_ += 5;
    auto took = v_.take(TermAt{b_, size_, at_}, key);
    if (!took) return took.error();
    if (*took) {
      at_ = **took;
      return {};
    }
    const std::size_t at = at_;
    const unsigned char tag = b_[at];
    const unsigned char* p = b_ + at;
    switch (tag) {
      case ERL_SMALL_INTEGER_EXT:
        v_.number(std::to_string(p[1]));
        at_ += 2;
        return {};
      case ERL_INTEGER_EXT:
        v_.number(std::to_string(static_cast<std::int32_t>(get_u32(p + 1))));
        at_ += 5;
        return {};
      case ERL_SMALL_BIG_EXT:
      case ERL_LARGE_BIG_EXT: {
        const bool small = tag == ERL_SMALL_BIG_EXT;
        const std::size_t n = small ? p[1] : get_u32(p + 1);
        const std::size_t header = small ? 3 : 6;
        if (const std::size_t max = v_.max_integer_bytes(); n > max)
          return detail::bad_term_at(
              "integer of " + std::to_string(n) + " bytes (more than " + std::to_string(max) + ")",
              at);
        std::string digits = magnitude_to_decimal(p + header, n);
        if (p[header - 1] != 0 && digits != "0") digits.insert(digits.begin(), '-');
        v_.number(digits);
        at_ += header + n;
        return {};
      }
      case NEW_FLOAT_EXT: {
        std::uint64_t bits = (std::uint64_t{get_u32(p + 1)} << 32) | get_u32(p + 5);
        double v = 0;
        std::memcpy(&v, &bits, sizeof v);
        if (!std::isfinite(v)) return detail::bad_term_at("float is not finite", at);
        v_.number(format_float(v));
        at_ += 9;
        return {};
      }
      case ERL_FLOAT_EXT: {
        char text[32] = {};
        std::memcpy(text, p + 1, 31);
        char* end = nullptr;
        double v = std::strtod(text, &end);
        if (end == text || !std::isfinite(v)) return detail::bad_term_at("undecodable float", at);
        v_.number(format_float(v));
        at_ += 32;
        return {};
      }
      case ERL_ATOM_EXT:
      case ERL_ATOM_UTF8_EXT:
      case ERL_SMALL_ATOM_EXT:
      case ERL_SMALL_ATOM_UTF8_EXT: {
        auto a = read_atom_name(b_, &at_);
        if (!a) return a.error();
        v_.atom(*a);
        return {};
      }
      case ERL_SMALL_TUPLE_EXT:
        at_ += 2;
        open(Container::tuple, p[1]);
        return {};
      case ERL_LARGE_TUPLE_EXT:
        at_ += 5;
        open(Container::tuple, get_u32(p + 1));
        return {};
      case ERL_MAP_EXT:
        at_ += 5;
        open(Container::map, std::uint64_t{get_u32(p + 1)} * 2);
        return {};
      case ERL_NIL_EXT:
        v_.begin(Container::list);
        v_.end(Container::list, false);
        at_ += 1;
        return {};
      case ERL_STRING_EXT: {  // a proper list of bytes, without a term per element
        const std::size_t n = get_u16(p + 1);
        v_.begin(Container::list);
        for (std::size_t i = 0; i < n; ++i) {
          if (i) v_.separator(false);
          v_.number(std::to_string(p[3 + i]));
        }
        v_.end(Container::list, false);
        at_ += 3 + n;
        return {};
      }
      case ERL_LIST_EXT:
        at_ += 5;
        open(Container::list, get_u32(p + 1));
        return {};
      case ERL_BINARY_EXT: {
        const std::size_t n = get_u32(p + 1);
        v_.binary(std::string_view(reinterpret_cast<const char*>(p + 5), n));
        at_ += 5 + n;
        return {};
      }
      case ERL_BIT_BINARY_EXT: {
        const std::size_t n = get_u32(p + 1);
        const unsigned bits = p[5];
        if (n > 0 && (bits < 1 || bits > 8))
          return detail::bad_term_at("bitstring with a bad bit count", at);
        std::string text;
        if (n == 0 || bits == 8) {
          append_binary_text(text, std::string_view(reinterpret_cast<const char*>(p + 6), n));
        } else {
          text += "<<";
          append_bytes_as_list(text, p + 6, n - 1);
          if (n > 1) text.push_back(',');
          text += std::to_string(p[6 + n - 1] >> (8 - bits));
          // Appended piece by piece: GCC 12 at -O3 reports ":" + to_string()
          // (operator+(const char*, string&&)) as an overlapping memcpy.
          text += ':';
          text += std::to_string(bits);
          text += ">>";
        }
        v_.opaque(Opaque::bitstring, text);
        at_ += 6 + n;
        return {};
      }
      case ERL_PID_EXT:
      case ERL_NEW_PID_EXT: {
        std::size_t q = at + 1;
        auto node = read_atom_name(b_, &q);
        if (!node) return node.error();
        v_.opaque(Opaque::pid, "#Pid<" + *node + "." + std::to_string(get_u32(b_ + q)) + "." +
                                   std::to_string(get_u32(b_ + q + 4)) + ">");
        at_ = q + (tag == ERL_PID_EXT ? 9 : 12);
        return {};
      }
      case ERL_PORT_EXT:
      case ERL_NEW_PORT_EXT:
      case ERL_V4_PORT_EXT: {
        std::size_t q = at + 1;
        auto node = read_atom_name(b_, &q);
        if (!node) return node.error();
        std::uint64_t id = get_u32(b_ + q);
        if (tag == ERL_V4_PORT_EXT) id = (id << 32) | get_u32(b_ + q + 4);
        v_.opaque(Opaque::port, "#Port<" + *node + "." + std::to_string(id) + ">");
        at_ = q + (tag == ERL_PORT_EXT ? 5 : tag == ERL_NEW_PORT_EXT ? 8 : 12);
        return {};
      }
      case ERL_REFERENCE_EXT:
      case ERL_NEW_REFERENCE_EXT:
      case ERL_NEWER_REFERENCE_EXT: {
        std::size_t q = at + (tag == ERL_REFERENCE_EXT ? 1 : 3);
        const std::size_t words = tag == ERL_REFERENCE_EXT ? 1 : get_u16(p + 1);
        auto node = read_atom_name(b_, &q);
        if (!node) return node.error();
        std::size_t ids = q + (tag == ERL_REFERENCE_EXT ? 0 : tag == ERL_NEW_REFERENCE_EXT ? 1 : 4);
        std::string text = "#Ref<" + *node;
        for (std::size_t w = words; w-- > 0;) {
          text += '.';  // not "." + to_string(): see the bitstring case
          text += std::to_string(get_u32(b_ + ids + 4 * w));
        }
        text += ">";
        v_.opaque(Opaque::ref, text);
        at_ = ids + 4 * words + (tag == ERL_REFERENCE_EXT ? 1 : 0);
        return {};
      }
      case ERL_NEW_FUN_EXT: {
        // Size(4) Arity(1) Uniq(16) Index(4) NumFree(4) Module OldIndex OldUniq Pid Free...
        const std::size_t limit = at + 1 + get_u32(p + 1);
        std::size_t q = at + 1 + 4 + 1 + 16 + 4 + 4;
        std::string module;
        std::int64_t old_index = 0, old_uniq = 0;
        if (q > limit) return detail::bad_term_at("truncated fun", at);
        if (auto r = atom_field(&q, limit, &module); !r) return r;
        if (auto r = integer_field(&q, limit, &old_index); !r) return r;
        if (auto r = integer_field(&q, limit, &old_uniq); !r) return r;
        v_.opaque(Opaque::fun, "#Fun<" + module + "." + std::to_string(old_index) + "." +
                                   std::to_string(old_uniq) + ">");
        at_ = limit;
        return {};
      }
      case ERL_EXPORT_EXT: {
        std::size_t q = at + 1;
        std::string module, function;
        if (auto r = atom_field(&q, size_, &module); !r) return r;
        if (auto r = atom_field(&q, size_, &function); !r) return r;
        if (q + 2 > size_ || b_[q] != ERL_SMALL_INTEGER_EXT)
          return detail::bad_term_at("expected the arity of an export fun", q);
        v_.opaque(Opaque::fun, "fun " + format_atom(module) + ":" + format_atom(function) + "/" +
                                   std::to_string(b_[q + 1]));
        at_ = q + 2;
        return {};
      }
      default:
        return detail::bad_term_at("unsupported term tag " + std::to_string(tag), at);
    }
  }

  const unsigned char* b_;
  std::size_t size_;
  std::size_t at_;
  TermVisitor& v_;
  std::vector<Frame> stack_;
};

}  // namespace

std::string_view opaque_name(Opaque kind) {
  switch (kind) {
    case Opaque::bitstring:
      return "bitstring";
    case Opaque::pid:
      return "pid";
    case Opaque::port:
      return "port";
    case Opaque::ref:
      return "ref";
    case Opaque::fun:
      return "fun";
  }
  return "?";
}

Result<void> walk_term(TermReader& r, TermVisitor& v) {
  auto extent = term_extent(r.data(), r.size(), r.index());
  if (!extent) return extent.error();
  const std::size_t end = r.index() + *extent;
  Walker w(reinterpret_cast<const unsigned char*>(r.data()), end, r.index(), v);
  if (auto s = w.run(); !s) return s;
  r = TermReader(r.data(), r.size(), end);
  return {};
}

Result<std::string> read_atom_name(const unsigned char* b, std::size_t* at) {
  const unsigned char tag = b[*at];
  std::size_t len = 0, header = 0;
  if (tag == ERL_ATOM_EXT || tag == ERL_ATOM_UTF8_EXT) {
    len = get_u16(b + *at + 1), header = 3;
  } else if (tag == ERL_SMALL_ATOM_EXT || tag == ERL_SMALL_ATOM_UTF8_EXT) {
    len = b[*at + 1], header = 2;
  } else {
    return detail::bad_term_at("expected an atom", *at);
  }
  std::string_view raw(reinterpret_cast<const char*>(b) + *at + header, len);
  std::string name;
  if (tag == ERL_ATOM_EXT || tag == ERL_SMALL_ATOM_EXT) {
    for (char c : raw) append_utf8(name, static_cast<unsigned char>(c));  // Latin-1
  } else {
    if (!is_valid_utf8(raw)) return detail::bad_term_at("atom is not valid UTF-8", *at);
    name = raw;
  }
  *at += header + len;
  return name;
}

bool read_char_list(const unsigned char* b, std::size_t at, bool (*ok)(std::uint32_t),
                    std::vector<std::uint32_t>* codes, std::size_t* end) {
  const std::uint64_t n = get_u32(b + at + 1);
  std::size_t q = at + 5;
  for (std::uint64_t i = 0; i < n; ++i) {
    std::uint32_t c = 0;
    if (b[q] == ERL_SMALL_INTEGER_EXT) {
      c = b[q + 1];
      q += 2;
    } else if (b[q] == ERL_INTEGER_EXT) {
      auto v = static_cast<std::int32_t>(get_u32(b + q + 1));
      c = v < 0 ? 0xFFFFFFFFu : static_cast<std::uint32_t>(v);
      q += 5;
    } else {
      return false;
    }
    if (!ok(c)) return false;
    codes->push_back(c);
  }
  if (b[q] != ERL_NIL_EXT) return false;
  *end = q + 1;
  return true;
}

}  // namespace beamlink::term
