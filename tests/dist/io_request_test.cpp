// The io server's request parsing: every put_chars form (old and new),
// requests, refusals, and chardata as UTF-8.
#include <doctest/doctest.h>

#include "dist/io_request.hpp"
#include "term/term_text.hpp"

using namespace beamlink;
using namespace beamlink::dist;

namespace {

// A request written in Erlang syntax, encoded without its version byte.
std::string req(const std::string& text) {
  term::TermWriter w(false);
  auto r = term::parse_term(text, w);
  REQUIRE_MESSAGE(r, text);
  auto b = w.bytes();
  return std::string(b.data(), b.size());
}

std::vector<IoStep> steps_of(const std::string& text) {
  auto r = req(text);
  return parse_io_request(std::span<const char>(r.data(), r.size()));
}

std::string text_of(const IoStep& s) {
  auto* t = std::get_if<IoText>(&s);
  REQUIRE(t);
  return t->utf8;
}

std::string refusal_of(const IoStep& s) {
  auto* r = std::get_if<IoRefuse>(&s);
  REQUIRE(r);
  term::TermReader in(std::span<const char>(r->reply.data(), r->reply.size()));
  auto f = term::format_term(in);
  REQUIRE(f);
  return *f;
}

}  // namespace

TEST_CASE("io request: the old put_chars forms are latin1 text") {
  auto s = steps_of("{put_chars, <<\"hello\\n\">>}");
  REQUIRE(s.size() == 1);
  CHECK(text_of(s[0]) == "hello\n");
  // Latin1 bytes become UTF-8.
  s = steps_of("{put_chars, <<233>>}");
  CHECK(text_of(s[0]) == "\xC3\xA9");
  // A list (what an old server gets when the text is not latin1).
  s = steps_of("{put_chars, [104, \"i\", [<<\" \">>, 20320] | <<\"!\">>]}");
  CHECK(text_of(s[0]) == "hi \xE4\xBD\xA0!");
}

TEST_CASE("io request: the new put_chars form with an encoding") {
  auto s = steps_of("{put_chars, unicode, <<104, 195, 169>>}");
  CHECK(text_of(s[0]) == "h\xC3\xA9");
  s = steps_of("{put_chars, latin1, <<104, 233>>}");
  CHECK(text_of(s[0]) == "h\xC3\xA9");
  s = steps_of("{put_chars, unicode, \"abc\"}");
  CHECK(text_of(s[0]) == "abc");
  s = steps_of("{put_chars, unicode, []}");
  CHECK(text_of(s[0]).empty());
}

TEST_CASE("io request: put_chars with M F A asks for M:F(A) - old and new forms") {
  auto s = steps_of("{put_chars, io_lib, format, [\"~p~n\", [x]]}");
  REQUIRE(s.size() == 1);
  auto* a = std::get_if<IoApply>(&s[0]);
  REQUIRE(a);
  CHECK(a->mod == "io_lib");
  CHECK(a->fun == "format");
  CHECK(a->encoding == IoEncoding::latin1);
  auto args =
      term::TermReader::from_external(std::span<const char>(a->args.data(), a->args.size()));
  REQUIRE(args);
  CHECK(term::format_term(*args).value() == "[\"~p~n\",[x]]");

  s = steps_of("{put_chars, unicode, io_lib, fwrite, [\"~ts\", [<<\"x\">>]]}");
  a = std::get_if<IoApply>(&s[0]);
  REQUIRE(a);
  CHECK(a->fun == "fwrite");
  CHECK(a->encoding == IoEncoding::unicode);
  // A non-list A is refused.
  CHECK(refusal_of(steps_of("{put_chars, io_lib, format, x}")[0]) == "{error,badarg}");
}

TEST_CASE("io request: requests run in order and stop at the first refusal") {
  auto s = steps_of(
      "{requests, [{put_chars, <<\"a\">>}, {put_chars, unicode, <<\"b\">>}, "
      "{put_chars, io_lib, format, [\"c\", []]}, {requests, [{put_chars, \"d\"}]}]}");
  REQUIRE(s.size() == 4);
  CHECK(text_of(s[0]) == "a");
  CHECK(text_of(s[1]) == "b");
  CHECK(std::holds_alternative<IoApply>(s[2]));
  CHECK(text_of(s[3]) == "d");

  s = steps_of("{requests, [{put_chars, \"a\"}, {get_line, unicode, \"> \"}, {put_chars, \"b\"}]}");
  REQUIRE(s.size() == 2);
  CHECK(refusal_of(s[1]) == "{error,enotsup}");
}

TEST_CASE("io request: input and options and unknown requests are refused as erl_call does") {
  CHECK(refusal_of(steps_of("{get_line, unicode, \"> \"}")[0]) == "{error,enotsup}");
  CHECK(refusal_of(steps_of("{get_chars, unicode, \"\", 1}")[0]) == "{error,enotsup}");
  CHECK(refusal_of(steps_of("{setopts, [binary]}")[0]) == "{error,enotsup}");
  CHECK(refusal_of(steps_of("getopts")[0]) == "{error,enotsup}");
  CHECK(refusal_of(steps_of("{frobnicate, 1}")[0]) == "{error,request}");
  CHECK(refusal_of(steps_of("42")[0]) == "{error,request}");
  // Not chardata: an atom inside, a code point out of range, an improper tail.
  CHECK(refusal_of(steps_of("{put_chars, unicode, [a]}")[0]) == "{error,badarg}");
  CHECK(refusal_of(steps_of("{put_chars, unicode, [16#110000]}")[0]) == "{error,badarg}");
  CHECK(refusal_of(steps_of("{put_chars, unicode, [$a | b]}")[0]) == "{error,badarg}");
  CHECK(refusal_of(steps_of("{put_chars, utf16, <<\"a\">>}")[0]) == "{error,badarg}");
}

TEST_CASE("io request: serve prints each step and applies M:F(A) and replies once") {
  auto r =
      req("{requests, [{put_chars, <<\"a\">>}, {put_chars, io_lib, format, [\"~p\", [1]]}, "
          "{put_chars, unicode, <<\"c\">>}]}");
  std::string printed;
  std::vector<std::string> replies;
  std::function<void(Result<std::string>)> pending;
  IoHooks h;
  h.output = [&](const std::string& t) { printed += t; };
  h.apply = [&](const IoApply& a, std::function<void(Result<std::string>)> done) {
    CHECK(a.fun == "format");
    pending = std::move(done);
  };
  h.reply = [&](const std::string& reply) { replies.push_back(reply); };
  serve_io_request(std::span<const char>(r.data(), r.size()), h);
  CHECK(printed == "a");  // waits for M:F(A) before going on
  CHECK(replies.empty());
  REQUIRE(pending);
  term::TermWriter result;
  result.string("1");
  auto b = result.bytes();
  pending(std::string(b.data(), b.size()));
  CHECK(printed == "a1c");
  REQUIRE(replies.size() == 1);
  CHECK(replies[0] == io_reply_ok());

  // M:F(A) failed: {error, F}, as erl_call's group leader answers.
  replies.clear();
  pending = nullptr;
  auto r2 = req("{put_chars, io_lib, format, [\"~p\"]}");
  serve_io_request(std::span<const char>(r2.data(), r2.size()), h);
  REQUIRE(pending);
  pending(make_error(Errc::badrpc, "badrpc: badarg"));
  REQUIRE(replies.size() == 1);
  CHECK(replies[0] == io_reply_error("format"));
}
