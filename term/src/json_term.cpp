#include "term/json_term.hpp"

#include <algorithm>
#include <cstdint>
#include <string>
#include <vector>

#include "common/utf8.hpp"
#include "term/json_term_impl.hpp"

namespace beamlink::term {

namespace {

constexpr std::size_t kDepthCap = 1024;
constexpr std::size_t kMaxAtomChars = 255;

// Valid JSON whose shape the mapping refuses.
Error bad(std::string reason) {
  return make_error(Errc::invalid_argument, std::move(reason));
}
// Text that is not JSON within the limits.
Error bad_json(std::string reason) {
  return make_error(Errc::bad_json, std::move(reason));
}

Error too_deep(std::size_t max_depth) {
  return bad_json("JSON nested deeper than " + std::to_string(max_depth) + " levels");
}

std::size_t utf8_chars(std::string_view s) {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

Result<void> write_atom(std::string_view name, term::TermWriter& out) {
  if (utf8_chars(name) > kMaxAtomChars) {
    return bad("atom \"" + std::string(utf8_prefix(name, 32)) + "...\" is over " +
               std::to_string(kMaxAtomChars) + " characters");
  }
  out.atom(name);
  return {};
}

}  // namespace

std::string json_error_reason(simdjson::error_code code, const JsonTermOptions& options) {
  using simdjson::error_code;
  switch (code) {
    case error_code::DEPTH_ERROR:
      return "JSON nested deeper than " + std::to_string(options.max_depth) + " levels";
    case error_code::CAPACITY:
      return "JSON document over " + std::to_string(options.max_size) + " bytes";
    case error_code::UTF8_ERROR:
      return "invalid UTF-8 in JSON text";
    case error_code::NUMBER_ERROR:
      return "number out of range (integers from -2^63 to 2^64-1, finite floats)";
    case error_code::EMPTY:
      return "empty JSON document";
    default:
      return std::string("invalid JSON: ") + simdjson::error_message(code);
  }
}

JsonToTerm::Impl::Impl(JsonTermOptions o) : options(std::move(o)), parser(options.max_size + 128) {
  options.max_depth = std::min(options.max_depth, kDepthCap);
}

Result<simdjson::dom::element> JsonToTerm::Impl::parse(std::string_view json) {
  // simdjson copies the input with memcpy, which must not be given the null
  // pointer an empty view may hold; an empty document is invalid JSON anyway.
  if (json.empty()) return bad_json("invalid JSON: empty document");
  if (json.size() > options.max_size) {
    return bad_json("JSON document of " + std::to_string(json.size()) +
                    " bytes is over the limit of " + std::to_string(options.max_size) + " bytes");
  }
  // Our size check above is the limit; simdjson's capacity is a little over
  // it (it rounds up). simdjson counts the root level too; our own walk enforces max_depth
  // exactly, simdjson only bounds its stack a little above it.
  if (parser.max_depth() != options.max_depth + 2) {
    if (auto err = parser.allocate(
            std::min<std::size_t>(std::max<std::size_t>(json.size(), 64), options.max_size + 128),
            options.max_depth + 2)) {
      return bad_json(json_error_reason(err, options));
    }
  }
  simdjson::dom::element doc;
  if (auto err = parser.parse(json.data(), json.size(), true).get(doc)) {
    return bad_json(json_error_reason(err, options));
  }
  return doc;
}

Result<void> JsonToTerm::Impl::write(simdjson::dom::element e, term::TermWriter& out,
                                     std::size_t depth, std::string_view key) {
  using simdjson::dom::element_type;
  switch (e.type()) {
    case element_type::INT64:
      out.integer(e.get_int64().value_unsafe());
      return {};
    case element_type::UINT64:
      out.uinteger(e.get_uint64().value_unsafe());
      return {};
    case element_type::DOUBLE:
      out.floating(e.get_double().value_unsafe());
      return {};
    case element_type::BOOL:
      out.boolean(e.get_bool().value_unsafe());
      return {};
    case element_type::NULL_VALUE:
      out.atom("nil");
      return {};
    case element_type::STRING: {
      std::string_view s = e.get_string().value_unsafe();
      if (!key.empty() && std::find(options.atom_value_keys.begin(), options.atom_value_keys.end(),
                                    key) != options.atom_value_keys.end()) {
        return write_atom(s, out);
      }
      out.binary(s);
      return {};
    }
    case element_type::ARRAY: {
      if (depth + 1 > options.max_depth) {
        return too_deep(options.max_depth);
      }
      auto arr = e.get_array().value_unsafe();
      std::size_t n = arr.size();
      if (n == 0) {
        out.nil();
        return {};
      }
      out.list(static_cast<int>(n));
      for (auto item : arr) {
        if (auto r = write(item, out, depth + 1); !r) return r;
      }
      out.nil();
      return {};
    }
    case element_type::OBJECT: {
      if (depth + 1 > options.max_depth) {
        return too_deep(options.max_depth);
      }
      auto obj = e.get_object().value_unsafe();
      std::vector<std::string_view> keys;
      for (auto field : obj) keys.push_back(field.key);
      // The explicit forms: {"$atom": "name"} and {"$tuple": [...]}.
      bool has_dollar = std::any_of(keys.begin(), keys.end(),
                                    [](std::string_view k) { return k.starts_with('$'); });
      if (has_dollar) {
        if (keys.size() != 1) {
          return bad(
              "an object with a \"$\" key must have that key only (\"$atom\" or \"$tuple\")");
        }
        auto field = *obj.begin();
        if (field.key == "$atom") {
          std::string_view name;
          if (field.value.get_string().get(name)) return bad("\"$atom\" takes a string");
          return write_atom(name, out);
        }
        if (field.key == "$tuple") {
          simdjson::dom::array items;
          if (field.value.get_array().get(items)) return bad("\"$tuple\" takes an array");
          if (depth + 2 > options.max_depth) {
            return too_deep(options.max_depth);
          }
          out.tuple(static_cast<int>(items.size()));
          for (auto item : items) {
            if (auto r = write(item, out, depth + 2); !r) return r;
          }
          return {};
        }
        return bad("unknown form \"" + std::string(field.key) +
                   "\" (known: \"$atom\", \"$tuple\")");
      }
      std::vector<std::string_view> sorted = keys;
      std::sort(sorted.begin(), sorted.end());
      if (auto dup = std::adjacent_find(sorted.begin(), sorted.end()); dup != sorted.end()) {
        return bad("duplicate key \"" + std::string(*dup) + "\" in a JSON object");
      }
      out.map(static_cast<int>(keys.size()));
      for (auto field : obj) {
        if (options.atom_keys) {
          if (auto r = write_atom(field.key, out); !r) return r;
        } else {
          out.binary(field.key);
        }
        if (auto r = write(field.value, out, depth + 1, field.key); !r) return r;
      }
      return {};
    }
  }
  return bad("unsupported JSON value");
}

JsonToTerm::JsonToTerm(JsonTermOptions options)
    : impl_(std::make_unique<Impl>(std::move(options))) {}
JsonToTerm::~JsonToTerm() = default;
JsonToTerm::JsonToTerm(JsonToTerm&&) noexcept = default;
JsonToTerm& JsonToTerm::operator=(JsonToTerm&&) noexcept = default;

const JsonTermOptions& JsonToTerm::options() const noexcept {
  return impl_->options;
}

Result<void> JsonToTerm::convert(std::string_view json, term::TermWriter& out) {
  auto doc = impl_->parse(json);
  if (!doc) return std::move(doc).error();
  if (auto r = impl_->write(*doc, out, 0); !r) return r;
  return out.status();
}

Result<term::TermWriter> JsonToTerm::convert(std::string_view json) {
  term::TermWriter out(true);
  if (auto r = convert(json, out); !r) return std::move(r).error();
  return out;
}

Result<term::TermWriter> json_to_term(std::string_view json, const JsonTermOptions& options) {
  JsonToTerm c(options);
  return c.convert(json);
}

}  // namespace beamlink::term
