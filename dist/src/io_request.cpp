#include "dist/io_request.hpp"

#include <ei.h>

#include <memory>
#include <optional>

#include "common/bytes.hpp"
#include "term/term.hpp"

namespace beamlink::dist {
namespace {

constexpr int kMaxRequestsDepth = 16;  // {requests, [...]} nested this deep at most

std::string reply_error(std::string_view reason) {
  term::TermWriter w(false);
  w.tuple(2).atom("error").atom(reason);
  auto b = w.bytes();
  return std::string(b.data(), b.size());
}

Error bad_chars(const std::string& what) {
  return make_error(Errc::bad_term, "io request: not chardata: " + what);
}

bool append_code_point(std::string& out, std::int64_t c) {
  if (c < 0 || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF)) return false;
  bytes::append_utf8(out, static_cast<std::uint32_t>(c));
  return true;
}

void append_binary(std::string& out, std::string_view data, IoEncoding encoding) {
  if (encoding == IoEncoding::unicode) {
    out.append(data);
    return;
  }
  for (char b : data) bytes::append_utf8(out, static_cast<unsigned char>(b));
}

// Reads the tail of a finished list: [] or a binary (an iolist may end in one).
Result<void> append_tail(term::TermReader& in, IoEncoding encoding, std::string& out) {
  auto tail = in.peek();
  if (!tail) return tail.error();
  if (tail->tag == ERL_NIL_EXT) return in.skip();
  if (tail->tag != ERL_BINARY_EXT) return bad_chars("an improper list");
  auto b = in.read_binary();
  if (!b) return b.error();
  append_binary(out, *b, encoding);
  return {};
}

// Appends the chardata at `in` (advancing it). Lists are walked with an
// explicit stack of the elements each open list has left: nesting depth
// costs no native stack.
Result<void> append_chardata(term::TermReader& in, IoEncoding encoding, std::string& out) {
  std::vector<int> left;
  for (;;) {
    auto t = in.peek();
    if (!t) return t.error();
    switch (t->tag) {
      case ERL_LIST_EXT: {
        auto n = in.read_list_header();
        if (!n) return n.error();
        if (*n > 0) {
          left.push_back(*n);
          continue;  // its elements come next
        }
        if (auto r = append_tail(in, encoding, out); !r) return r;
        break;
      }
      case ERL_BINARY_EXT: {
        auto b = in.read_binary();
        if (!b) return b.error();
        append_binary(out, *b, encoding);
        break;
      }
      case ERL_STRING_EXT: {  // bytes: code points below 256
        auto s = in.read_string();
        if (!s) return s.error();
        for (char c : *s) bytes::append_utf8(out, static_cast<unsigned char>(c));
        break;
      }
      case ERL_NIL_EXT:
        if (auto r = in.skip(); !r) return r;
        break;
      case ERL_SMALL_INTEGER_EXT:
      case ERL_INTEGER_EXT: {
        if (left.empty()) return bad_chars("an integer outside a list");
        auto c = in.read_int();
        if (!c) return c.error();
        if (!append_code_point(out, *c))
          return bad_chars("integer " + std::to_string(*c) + " is not a code point");
        break;
      }
      default:
        return bad_chars("a term of tag " + std::to_string(t->tag));
    }
    // The term just read was an element of the innermost open list; a list
    // whose last element that was ends with its tail, and is itself an
    // element of the list around it.
    while (!left.empty()) {
      if (--left.back() > 0) break;
      left.pop_back();
      if (auto r = append_tail(in, encoding, out); !r) return r;
    }
    if (left.empty()) return {};
  }
}

std::optional<IoEncoding> encoding_of(const std::string& atom) {
  if (atom == "unicode" || atom == "utf8") return IoEncoding::unicode;
  if (atom == "latin1") return IoEncoding::latin1;
  return std::nullopt;
}

// {put_chars, ...} after its tag, `arity` the tuple's.
IoStep parse_put_chars(term::TermReader& in, int arity) {
  IoEncoding encoding = IoEncoding::latin1;  // the old forms' (no encoding element)
  if (arity == 3 || arity == 5) {
    auto enc = in.read_atom();
    if (!enc || !encoding_of(*enc)) return IoRefuse{reply_error("badarg")};
    encoding = *encoding_of(*enc);
  }
  if (arity == 2 || arity == 3) {
    auto chars = in.read_raw();
    if (!chars) return IoRefuse{reply_error("badarg")};
    auto text = chardata_to_utf8(*chars, encoding);
    if (!text) return IoRefuse{reply_error("badarg")};
    return IoText{std::move(*text)};
  }
  // {put_chars, M, F, A} or {put_chars, Encoding, M, F, A}.
  auto mod = in.read_atom();
  auto fun = mod ? in.read_atom() : Result<std::string>(mod.error());
  auto args = fun ? in.read_raw() : Result<std::span<const char>>(fun.error());
  if (!args) return IoRefuse{reply_error("badarg")};
  auto t = term::TermReader(*args).peek();
  if (!t || (t->tag != ERL_LIST_EXT && t->tag != ERL_NIL_EXT && t->tag != ERL_STRING_EXT))
    return IoRefuse{reply_error("badarg")};
  IoApply a;
  a.mod = std::move(*mod);
  a.fun = std::move(*fun);
  a.args.reserve(args->size() + 1);
  a.args.push_back(static_cast<char>(131));
  a.args.append(args->data(), args->size());
  a.encoding = encoding;
  return a;
}

void parse_into(term::TermReader in, std::vector<IoStep>& steps, int depth) {
  auto refuse = [&](std::string_view reason) { steps.push_back(IoRefuse{reply_error(reason)}); };
  auto t = in.peek();
  if (!t) return refuse("request");
  if (t->tag == ERL_ATOM_EXT || t->tag == ERL_SMALL_ATOM_EXT || t->tag == ERL_ATOM_UTF8_EXT ||
      t->tag == ERL_SMALL_ATOM_UTF8_EXT) {
    auto a = in.read_atom();
    return refuse(a && *a == "getopts" ? "enotsup" : "request");
  }
  auto arity = in.read_tuple_header();
  if (!arity || *arity < 1 || !in.next_is_atom()) return refuse("request");
  auto tag = in.read_atom();
  if (!tag) return refuse("request");
  if (*tag == "put_chars" && *arity >= 2 && *arity <= 5) {
    steps.push_back(parse_put_chars(in, *arity));
    return;
  }
  if (*tag == "requests" && *arity == 2) {
    if (depth >= kMaxRequestsDepth) return refuse("request");
    auto n = in.read_list_header();
    if (!n) return refuse("request");
    for (int i = 0; i < *n; ++i) {
      auto one = in.read_raw();
      if (!one) return refuse("request");
      parse_into(term::TermReader(*one), steps, depth + 1);
      if (std::holds_alternative<IoRefuse>(steps.back())) return;  // the first error ends them
    }
    return;
  }
  // Input and options: no terminal here, as erl_call's group leader says.
  if (*tag == "get_until" || *tag == "get_chars" || *tag == "get_line" || *tag == "get_geometry" ||
      *tag == "setopts" || *tag == "get_password")
    return refuse("enotsup");
  refuse("request");
}

// Runs steps[i...] one after another; keeps itself alive across applies.
struct Serving : std::enable_shared_from_this<Serving> {
  std::vector<IoStep> steps;
  IoHooks hooks;
  std::size_t next = 0;

  void run() {
    while (next < steps.size()) {
      auto& step = steps[next++];
      if (auto* text = std::get_if<IoText>(&step)) {
        if (!text->utf8.empty()) hooks.output(text->utf8);
        continue;
      }
      if (auto* refuse = std::get_if<IoRefuse>(&step)) return hooks.reply(refuse->reply);
      auto& apply = std::get<IoApply>(step);
      // erl_call's group leader: {error, F} when M:F(A) raised; bad
      // chardata from it is an error too.
      return hooks.apply(apply, [self = shared_from_this(), apply](Result<std::string> r) {
        if (!r) return self->hooks.reply(reply_error(apply.fun));
        auto in = term::TermReader::from_external(*r);
        if (!in) return self->hooks.reply(reply_error(apply.fun));
        auto text = chardata_to_utf8(
            std::span<const char>(in->data() + in->index(), in->size() - in->index()),
            apply.encoding);
        if (!text) return self->hooks.reply(reply_error("badarg"));
        if (!text->empty()) self->hooks.output(*text);
        self->run();
      });
    }
    hooks.reply(io_reply_ok());
  }
};

}  // namespace

Result<std::string> chardata_to_utf8(std::span<const char> chars, IoEncoding encoding) {
  term::TermReader in(chars);
  std::string out;
  if (auto r = append_chardata(in, encoding, out); !r) return r.error();
  if (!in.at_end()) return bad_chars("bytes after the term");
  return out;
}

std::vector<IoStep> parse_io_request(std::span<const char> request) {
  std::vector<IoStep> steps;
  parse_into(term::TermReader(request), steps, 0);
  return steps;
}

std::string io_reply_ok() {
  term::TermWriter w(false);
  w.atom("ok");
  auto b = w.bytes();
  return std::string(b.data(), b.size());
}

std::string io_reply_error(std::string_view reason) {
  return reply_error(reason);
}

void serve_io_request(std::span<const char> request, IoHooks hooks) {
  auto s = std::make_shared<Serving>();
  s->steps = parse_io_request(request);
  s->hooks = std::move(hooks);
  s->run();
}

}  // namespace beamlink::dist
