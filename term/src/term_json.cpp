#include "term/term_json.hpp"

#include "common/base64.hpp"
#include "common/bytes.hpp"

#include <ei.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "term/term_text.hpp"

namespace beamlink::term {
namespace {

using bytes::append_utf8;
using bytes::get_u32;

bool is_code_point(std::int64_t c) {
  return c >= 0 && c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
}

bool printable(std::int64_t c) {
  return c == '\n' || c == '\r' || c == '\t' || c == '\v' || c == '\b' || c == '\f' || c == 27 ||
         (c >= 32 && c <= 126) || (c >= 0xA0 && c < 0xD800) || (c > 0xDFFF && c < 0xFFFE) ||
         (c > 0xFFFF && c <= 0x10FFFF);
}

// Walks a term that term_extent() has validated (see Printer in
// term_text.cpp); scalars are printed by format_term().
class JsonWriter {
 public:
  JsonWriter(const char* buf, std::size_t size, std::size_t at, const JsonOptions& options)
      : buf_(buf),
        b_(reinterpret_cast<const unsigned char*>(buf)),
        size_(size),
        at_(at),
        options_(options) {}

  Result<std::string> run() {
    if (auto r = value(); !r) return r.error();
    while (!stack_.empty()) {
      Frame& f = stack_.back();
      if (f.left == 0) {
        if (f.kind == Frame::list && f.tail) {
          f.tail = false;
          if (b_[at_] == ERL_NIL_EXT) {
            ++at_;
          } else {  // improper: wrap the array, which has been written already
            inserts_.emplace_back(f.opened_at, "{\"$improper\":");
            f.improper = true;
            out_.push_back(',');
            if (auto r = value(); !r) return r.error();
          }
          continue;
        }
        out_ += f.kind == Frame::object ? "}" : (f.kind == Frame::list && !f.improper) ? "]" : "]}";
        stack_.pop_back();
        continue;
      }
      const bool key = f.kind == Frame::object && f.left % 2 == 0;
      if (f.kind == Frame::object && !key) {
        out_.push_back(':');
      } else if (!f.first) {
        out_.push_back(',');
      }
      f.first = false;
      --f.left;
      if (key) {
        if (auto r = map_key(); !r) return r.error();
      } else if (auto r = value(); !r) {
        return r.error();
      }
    }
    if (inserts_.empty()) return std::move(out_);
    // Splice in the improper-list openers, each before its '['.
    std::sort(inserts_.begin(), inserts_.end());
    std::string all;
    std::size_t from = 0;
    for (auto& [pos, text] : inserts_) {
      all.append(out_, from, pos - from);
      all += text;
      from = pos;
    }
    all.append(out_, from, std::string::npos);
    return all;
  }

 private:
  struct Frame {
    enum Kind { list, tuple, object } kind;
    std::uint64_t left;
    std::size_t opened_at = 0;  // list: where its '[' is in out_
    bool first = true;
    bool tail = false;
    bool improper = false;
  };

  // format_term() of the term at at_, advancing at_.
  Result<std::string> text() {
    TermReader r(buf_, size_, at_);
    auto s = format_term(r);
    if (!s) return s;
    at_ = r.index();
    return s;
  }

  Result<std::string> atom_name() {
    TermReader r(buf_, size_, at_);
    auto a = r.read_atom();
    if (!a) return a;
    if (!is_valid_utf8(*a)) return make_error(Errc::bad_term, "atom is not valid UTF-8");
    at_ = r.index();
    return a;
  }

  Result<void> tagged(std::string_view tag) {
    auto s = text();
    if (!s) return s.error();
    out_ += "{\"$";
    out_ += tag;
    out_ += "\":";
    out_ += json_quote(*s);
    out_ += "}";
    return {};
  }

  // A proper list of character codes (LIST_EXT of integers) at at_: its
  // text and end, if every element is a code point accepted by `ok`.
  bool char_list(bool (*ok)(std::int64_t), std::string* s, std::size_t* end) const {
    const std::uint64_t n = get_u32(b_ + at_ + 1);
    std::size_t q = at_ + 5;
    for (std::uint64_t i = 0; i < n; ++i) {
      std::int64_t c = 0;
      if (b_[q] == ERL_SMALL_INTEGER_EXT) {
        c = b_[q + 1];
        q += 2;
      } else if (b_[q] == ERL_INTEGER_EXT) {
        c = static_cast<std::int32_t>(get_u32(b_ + q + 1));
        q += 5;
      } else {
        return false;
      }
      if (!ok(c)) return false;
      append_utf8(*s, static_cast<std::uint32_t>(c));
    }
    if (b_[q] != ERL_NIL_EXT) return false;
    *end = q + 1;
    return true;
  }

  Result<void> map_key() {
    const unsigned char tag = b_[at_];
    switch (tag) {
      case ERL_BINARY_EXT: {
        const std::size_t n = get_u32(b_ + at_ + 1);
        std::string_view bytes(buf_ + at_ + 5, n);
        if (!is_valid_utf8(bytes)) break;
        out_ += json_quote(bytes);
        at_ += 5 + n;
        return {};
      }
      case ERL_ATOM_EXT:
      case ERL_ATOM_UTF8_EXT:
      case ERL_SMALL_ATOM_EXT:
      case ERL_SMALL_ATOM_UTF8_EXT: {
        auto a = atom_name();
        if (!a) return a.error();
        out_ += json_quote(*a);
        return {};
      }
      case ERL_STRING_EXT: {
        const std::size_t n = (std::size_t{b_[at_ + 1]} << 8) | b_[at_ + 2];
        std::string s;
        for (std::size_t i = 0; i < n; ++i) append_utf8(s, b_[at_ + 3 + i]);  // Latin-1
        out_ += json_quote(s);
        at_ += 3 + n;
        return {};
      }
      case ERL_LIST_EXT: {
        std::string s;
        std::size_t end = 0;
        if (!char_list(is_code_point, &s, &end)) break;
        out_ += json_quote(s);
        at_ = end;
        return {};
      }
      default:
        break;
    }
    auto s = text();
    if (!s) return s.error();
    out_ += json_quote(*s);
    return {};
  }

  void push(Frame::Kind k, std::uint64_t n, const char* open, const char* empty) {
    if (n == 0 && k != Frame::list) {
      out_ += empty;
      return;
    }
    std::size_t opened_at = out_.size() + std::string_view(open).find('[');
    out_ += open;
    stack_.push_back(Frame{k, n, opened_at, true, k == Frame::list, false});
  }

  Result<void> value() {
    const unsigned char tag = b_[at_];
    switch (tag) {
      case ERL_SMALL_INTEGER_EXT:
      case ERL_INTEGER_EXT:
      case ERL_SMALL_BIG_EXT:
      case ERL_LARGE_BIG_EXT:
      case NEW_FLOAT_EXT:
      case ERL_FLOAT_EXT: {
        auto s = text();  // digits, or Erlang's float form, which is valid JSON
        if (!s) return s.error();
        out_ += *s;
        return {};
      }
      case ERL_ATOM_EXT:
      case ERL_ATOM_UTF8_EXT:
      case ERL_SMALL_ATOM_EXT:
      case ERL_SMALL_ATOM_UTF8_EXT: {
        auto a = atom_name();
        if (!a) return a.error();
        if (*a == "true" || *a == "false") {
          out_ += *a;
        } else if (*a == "nil" || *a == "undefined") {
          out_ += "null";
        } else {
          out_ += "{\"$atom\":" + json_quote(*a) + "}";
        }
        return {};
      }
      case ERL_SMALL_TUPLE_EXT:
        push(Frame::tuple, b_[at_ + 1], "{\"$tuple\":[", "{\"$tuple\":[]}");
        at_ += 2;
        return {};
      case ERL_LARGE_TUPLE_EXT:
        push(Frame::tuple, get_u32(b_ + at_ + 1), "{\"$tuple\":[", "{\"$tuple\":[]}");
        at_ += 5;
        return {};
      case ERL_MAP_EXT:
        push(Frame::object, std::uint64_t{get_u32(b_ + at_ + 1)} * 2, "{", "{}");
        at_ += 5;
        return {};
      case ERL_NIL_EXT:
        out_ += "[]";
        at_ += 1;
        return {};
      case ERL_STRING_EXT: {
        const std::size_t n = (std::size_t{b_[at_ + 1]} << 8) | b_[at_ + 2];
        const unsigned char* s = b_ + at_ + 3;
        if (options_.charlists_as_strings &&
            std::all_of(s, s + n, [](unsigned char c) { return printable(c); })) {
          std::string text;
          for (std::size_t i = 0; i < n; ++i) append_utf8(text, s[i]);  // Latin-1
          out_ += json_quote(text);
        } else {
          out_.push_back('[');
          for (std::size_t i = 0; i < n; ++i) {
            if (i) out_.push_back(',');
            out_ += std::to_string(s[i]);
          }
          out_.push_back(']');
        }
        at_ += 3 + n;
        return {};
      }
      case ERL_LIST_EXT: {
        std::string s;
        std::size_t end = 0;
        if (options_.charlists_as_strings && char_list(printable, &s, &end)) {
          out_ += json_quote(s);
          at_ = end;
          return {};
        }
        push(Frame::list, get_u32(b_ + at_ + 1), "[", "[");
        at_ += 5;
        return {};
      }
      case ERL_BINARY_EXT: {
        const std::size_t n = get_u32(b_ + at_ + 1);
        std::string_view bytes(buf_ + at_ + 5, n);
        if (is_valid_utf8(bytes)) {
          out_ += json_quote(bytes);
        } else {
          out_ += "{\"$binary\":\"" + base64_encode(bytes) + "\"}";
        }
        at_ += 5 + n;
        return {};
      }
      case ERL_BIT_BINARY_EXT:
        return tagged("bitstring");
      case ERL_PID_EXT:
      case ERL_NEW_PID_EXT:
        return tagged("pid");
      case ERL_PORT_EXT:
      case ERL_NEW_PORT_EXT:
      case ERL_V4_PORT_EXT:
        return tagged("port");
      case ERL_REFERENCE_EXT:
      case ERL_NEW_REFERENCE_EXT:
      case ERL_NEWER_REFERENCE_EXT:
        return tagged("ref");
      case ERL_NEW_FUN_EXT:
      case ERL_EXPORT_EXT:
        return tagged("fun");
      default:
        return make_error(Errc::bad_term, "unsupported term tag " + std::to_string(tag) +
                                              " at byte " + std::to_string(at_));
    }
  }

  const char* buf_;
  const unsigned char* b_;
  std::size_t size_;
  std::size_t at_;
  const JsonOptions& options_;
  std::string out_;
  std::vector<Frame> stack_;
  std::vector<std::pair<std::size_t, std::string>> inserts_;
};

}  // namespace

std::string json_quote(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  append_json_quoted(out, s);
  return out;
}

void append_json_quoted(std::string& out, std::string_view s) {
  out.push_back('"');
  for (char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    switch (c) {
      case '"':
        out += "\\\"";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\r':
        out += "\\r";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\b':
        out += "\\b";
        break;
      case '\f':
        out += "\\f";
        break;
      default:
        if (c < 0x20) {
          static constexpr char kHex[] = "0123456789abcdef";
          out += "\\u00";
          out.push_back(kHex[c >> 4]);
          out.push_back(kHex[c & 15]);
        } else {
          out.push_back(ch);
        }
    }
  }
  out.push_back('"');
}

Result<std::string> to_json(TermReader& r, const JsonOptions& options) {
  auto extent = term_extent(r.data(), r.size(), r.index());
  if (!extent) return extent.error();
  JsonWriter w(r.data(), r.index() + *extent, r.index(), options);
  auto s = w.run();
  if (!s) return s;
  r = TermReader(r.data(), r.size(), r.index() + *extent);
  return s;
}

}  // namespace beamlink::term
