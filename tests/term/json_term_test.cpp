// JSON to terms (DESIGN.md "Relay contract"): the produced bytes are decoded
// with term::format_term and compared to Erlang text.
#include "term/json_term.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

#include "term/term.hpp"
#include "term/term_text.hpp"

namespace beamlink::term {
namespace {

std::string erl(std::string_view json, const JsonTermOptions& options = {}) {
  auto t = json_to_term(json, options);
  if (!t) return "error: " + t.error().message;
  auto r = term::TermReader::from_external(t->bytes());
  REQUIRE(r.ok());
  auto text = term::format_term(*r);
  REQUIRE_MESSAGE(text.ok(), (text.ok() ? "" : text.error().message));
  CHECK(r->at_end());
  return *text;
}

// The same bytes as Erlang's term_to_binary of the parsed Erlang text.
bool same_bytes(std::string_view json, std::string_view erlang) {
  auto t = json_to_term(json);
  REQUIRE(t.ok());
  term::TermWriter w;
  REQUIRE(term::parse_term(erlang, w).ok());
  auto a = t->bytes();
  auto b = w.bytes();
  return std::string_view(a.data(), a.size()) == std::string_view(b.data(), b.size());
}

TEST_CASE("json_to_term maps scalars") {
  CHECK(erl("1") == "1");
  CHECK(erl("-42") == "-42");
  CHECK(erl("9223372036854775807") == "9223372036854775807");
  CHECK(erl("-9223372036854775808") == "-9223372036854775808");
  CHECK(erl("18446744073709551615") == "18446744073709551615");
  CHECK(erl("1.5") == "1.5");
  CHECK(erl("-2.5e-6") == "-2.5e-6");
  CHECK(erl("1e10") == "1.0e10");
  CHECK(erl("true") == "true");
  CHECK(erl("false") == "false");
  CHECK(erl("null") == "nil");
  CHECK(erl("\"hello\"") == "<<\"hello\">>");
  CHECK(erl("\"h\\u00e9llo\"") == "<<\"héllo\"/utf8>>");
  CHECK(erl("\"\"") == "<<>>");
}

TEST_CASE("json_to_term maps arrays and objects") {
  CHECK(erl("[]") == "[]");
  CHECK(erl("[1,\"a\",[true]]") == "[1,<<\"a\">>,[true]]");
  CHECK(erl("{}") == "#{}");
  CHECK(erl(R"({"a":1,"b":{"c":null}})") == "#{<<\"a\">> => 1,<<\"b\">> => #{<<\"c\">> => nil}}");
  CHECK(same_bytes(R"({"a":[1,2.5,"x"]})", "#{<<\"a\">> => [1,2.5,<<\"x\">>]}"));
  CHECK(same_bytes(R"([-1,[2000,[{"$atom":"a"}]]])", "[-1,[2000,[a]]]"));
}

TEST_CASE("json_to_term explicit atom and tuple forms") {
  CHECK(erl(R"({"$atom":"ok"})") == "ok");
  CHECK(erl(R"({"$atom":"Elixir.Foo"})") == "'Elixir.Foo'");
  CHECK(erl(R"({"$tuple":[]})") == "{}");
  CHECK(erl(R"({"$tuple":[{"$atom":"error"},"why"]})") == "{error,<<\"why\">>}");
  CHECK(erl(R"([{"$tuple":[1,{"$tuple":[2]}]}])") == "[{1,{2}}]");
}

TEST_CASE("json_to_term atom keys for eWallet") {
  JsonTermOptions o;
  o.atom_keys = true;
  o.atom_value_keys = {"status"};
  CHECK(erl(R"({"status":"ok","data":{"id":"x"},"error":null})", o) ==
        "#{status => ok,data => #{id => <<\"x\">>},error => nil}");
  CHECK(erl(R"({"status":"error","reason":"bad"})", o) ==
        "#{status => error,reason => <<\"bad\">>}");
  JsonTermOptions keys_only;
  keys_only.atom_keys = true;
  CHECK(erl(R"({"status":"ok"})", keys_only) == "#{status => <<\"ok\">>}");
}

TEST_CASE("json_to_term rejects bad input with a reason") {
  CHECK(erl("{").starts_with("error: invalid JSON"));
  CHECK(erl("").starts_with("error: "));
  CHECK(erl("[1,]").starts_with("error: invalid JSON"));
  CHECK(erl("\"\xff\"") == "error: invalid UTF-8 in JSON text");
  CHECK(erl("18446744073709551616").starts_with("error: number out of range"));
  CHECK(erl("-9223372036854775809").starts_with("error: number out of range"));
  CHECK(erl("1e400").starts_with("error: number out of range"));
  CHECK(erl(R"({"$foo":1})") == "error: unknown form \"$foo\" (known: \"$atom\", \"$tuple\")");
  CHECK(erl(R"({"$atom":1})") == "error: \"$atom\" takes a string");
  CHECK(erl(R"({"$tuple":{}})") == "error: \"$tuple\" takes an array");
  CHECK(erl(R"({"$atom":"a","b":1})").starts_with("error: an object with a \"$\" key"));
  CHECK(erl(R"({"a":1,"a":2})") == "error: duplicate key \"a\" in a JSON object");
  CHECK(erl(R"({"$atom":")" + std::string(256, 'x') + "\"}").find("over 255 characters") !=
        std::string::npos);
  CHECK(erl(R"({"$atom":")" + std::string(255, 'x') + "\"}") == std::string(255, 'x'));
}

TEST_CASE("json_to_term depth limit") {
  auto nested = [](std::size_t n) { return std::string(n, '[') + std::string(n, ']'); };
  CHECK(erl(nested(64)).starts_with("[[[["));
  CHECK(erl(nested(65)) == "error: JSON nested deeper than 64 levels");
  CHECK(erl(nested(5000)) == "error: JSON nested deeper than 64 levels");
  JsonTermOptions o;
  o.max_depth = 3;
  CHECK(erl(R"({"a":{"b":[1]}})", o) == "#{<<\"a\">> => #{<<\"b\">> => [1]}}");
  CHECK(erl(R"({"a":{"b":[[1]]}})", o) == "error: JSON nested deeper than 3 levels");
  CHECK(erl(R"([{"$tuple":[1]}])", o) == "[{1}]");
  CHECK(erl(R"([[{"$tuple":[1]}]])", o) == "error: JSON nested deeper than 3 levels");
}

TEST_CASE("json_to_term size limit") {
  JsonTermOptions o;
  o.max_size = 10;
  CHECK(erl("[1,2,3,4]", o) == "[1,2,3,4]");
  CHECK(erl("[1,2,3,4,5]", o) == "error: JSON document of 11 bytes is over the limit of 10 bytes");
}

TEST_CASE("JsonToTerm is reusable across documents") {
  JsonToTerm c;
  for (int i = 0; i < 3; ++i) {
    auto t = c.convert("{\"n\":" + std::to_string(i) + "}");
    REQUIRE(t.ok());
    auto r = term::TermReader::from_external(t->bytes());
    CHECK(*term::format_term(*r) == "#{<<\"n\">> => " + std::to_string(i) + "}");
  }
  CHECK_FALSE(c.convert("[").ok());
  CHECK(c.convert("[1]").ok());
}

}  // namespace
}  // namespace beamlink::term
