#include "term/term_json.hpp"

#include "common/base64.hpp"
#include "common/bytes.hpp"

#include <ei.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

#include "term/term_text.hpp"
#include "term_walker.hpp"

namespace beamlink::term {
namespace {

using bytes::append_utf8;
using bytes::get_u16;
using bytes::get_u32;

bool is_code_point(std::uint32_t c) {
  return c <= 0x10FFFF && !(c >= 0xD800 && c <= 0xDFFF);
}

std::string utf8_of(const std::vector<std::uint32_t>& codes) {
  std::string s;
  for (std::uint32_t c : codes) append_utf8(s, c);
  return s;
}

// to_json()'s visitor of the term walk.
class JsonText : public TermVisitor {
 public:
  explicit JsonText(const JsonOptions& options) : options_(options) {}
  std::size_t max_integer_bytes() const override { return options_.max_integer_bytes; }

  // The improper-list openers spliced in, each before its '['.
  std::string take_text() {
    if (inserts_.empty()) return std::move(out_);
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

  Result<std::optional<std::size_t>> take(const TermAt& t, bool key) override {
    if (key) return map_key(t);
    if (!options_.charlists_as_strings) return std::optional<std::size_t>{};
    std::vector<std::uint32_t> codes;
    std::size_t end = 0;
    if (t.tag() == ERL_STRING_EXT) {
      const std::size_t n = get_u16(t.b + t.at + 1);
      const unsigned char* s = t.b + t.at + 3;
      if (!std::all_of(s, s + n, [](unsigned char c) { return printable_char(c); }))
        return std::optional<std::size_t>{};
      codes.assign(s, s + n);  // Latin-1
      end = t.at + 3 + n;
    } else if (t.tag() != ERL_LIST_EXT ||
               !read_char_list(t.b, t.at, printable_char, &codes, &end)) {
      return std::optional<std::size_t>{};
    }
    append_json_quoted(out_, utf8_of(codes));
    return std::optional<std::size_t>{end};
  }

  void number(std::string_view text) override { out_ += text; }  // Erlang's float form is JSON

  void atom(std::string_view name) override {
    if (name == "true" || name == "false") {
      out_ += name;
    } else if (name == "nil" || name == "undefined") {
      out_ += "null";
    } else {
      out_ += "{\"$atom\":";
      append_json_quoted(out_, name);
      out_ += "}";
    }
  }

  void binary(std::string_view bytes) override {
    if (is_valid_utf8(bytes)) {
      append_json_quoted(out_, bytes);
    } else {
      out_ += "{\"$binary\":\"" + base64_encode(bytes) + "\"}";
    }
  }

  void opaque(Opaque kind, std::string_view text) override {
    out_ += "{\"$";
    out_ += opaque_name(kind);
    out_ += "\":";
    append_json_quoted(out_, text);
    out_ += "}";
  }

  void begin(Container c) override {
    switch (c) {
      case Container::tuple:
        out_ += "{\"$tuple\":[";
        break;
      case Container::list:
        lists_.push_back(out_.size());
        out_ += "[";
        break;
      case Container::map:
        out_ += "{";
        break;
    }
  }
  void separator(bool key_value) override { out_.push_back(key_value ? ':' : ','); }
  // The array written so far becomes {"$improper":[elements..., tail]}.
  void improper_tail() override {
    inserts_.emplace_back(lists_.back(), "{\"$improper\":");
    out_.push_back(',');
  }
  void end(Container c, bool improper) override {
    if (c == Container::list) lists_.pop_back();
    out_ += c == Container::map ? "}" : (c == Container::list && !improper) ? "]" : "]}";
  }

 private:
  // An object key: the text of a binary, atom or character list; any other
  // key's Erlang text.
  Result<std::optional<std::size_t>> map_key(const TermAt& t) {
    std::size_t end = t.at;
    switch (t.tag()) {
      case ERL_BINARY_EXT: {
        const std::size_t n = get_u32(t.b + t.at + 1);
        std::string_view bytes(t.chars() + t.at + 5, n);
        if (!is_valid_utf8(bytes)) break;
        append_json_quoted(out_, bytes);
        return std::optional<std::size_t>{t.at + 5 + n};
      }
      case ERL_ATOM_EXT:
      case ERL_ATOM_UTF8_EXT:
      case ERL_SMALL_ATOM_EXT:
      case ERL_SMALL_ATOM_UTF8_EXT: {
        auto a = read_atom_name(t.b, &end);
        if (!a) return a.error();
        append_json_quoted(out_, *a);
        return std::optional<std::size_t>{end};
      }
      case ERL_STRING_EXT: {
        const std::size_t n = get_u16(t.b + t.at + 1);
        const unsigned char* s = t.b + t.at + 3;
        append_json_quoted(out_, utf8_of(std::vector<std::uint32_t>(s, s + n)));  // Latin-1
        return std::optional<std::size_t>{t.at + 3 + n};
      }
      case ERL_LIST_EXT: {
        std::vector<std::uint32_t> codes;
        if (!read_char_list(t.b, t.at, is_code_point, &codes, &end)) break;
        append_json_quoted(out_, utf8_of(codes));
        return std::optional<std::size_t>{end};
      }
      default:
        break;
    }
    TermReader r(t.chars(), t.size, t.at);
    auto text = format_term(r);
    if (!text) return text.error();
    append_json_quoted(out_, *text);
    return std::optional<std::size_t>{r.index()};
  }

  const JsonOptions& options_;
  std::string out_;
  std::vector<std::size_t> lists_;  // where each open list's '[' is in out_
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
  JsonText json(options);
  if (auto w = walk_term(r, json); !w) return w.error();
  return json.take_text();
}

}  // namespace beamlink::term
