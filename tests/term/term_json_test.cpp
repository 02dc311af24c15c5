// Terms to JSON (DESIGN.md "Relay contract", in reverse).
#include "term/term_json.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>
#include <utility>

#include "term/term.hpp"
#include "term/term_text.hpp"

namespace beamlink::term {
namespace {

std::string json(std::string_view erlang, const JsonOptions& options = {}) {
  TermWriter w;
  auto p = parse_term(erlang, w);
  REQUIRE_MESSAGE(p.ok(), (p.ok() ? "" : p.error().message));
  auto r = TermReader::from_external(w.bytes());
  auto j = to_json(*r, options);
  if (!j) return "error: " + j.error().message;
  CHECK(r->at_end());
  return *j;
}

std::string json(const TermWriter& w) {
  auto r = TermReader::from_external(w.bytes());
  auto j = to_json(*r);
  if (!j) return "error: " + j.error().message;
  return *j;
}

TEST_CASE("to_json maps scalars") {
  CHECK(json("1") == "1");
  CHECK(json("-2147483649") == "-2147483649");
  CHECK(json("123456789012345678901234567890") == "123456789012345678901234567890");
  CHECK(json("1.5") == "1.5");
  CHECK(json("1.0e10") == "1.0e10");
  CHECK(json("-2.5e-6") == "-2.5e-6");
  CHECK(json("true") == "true");
  CHECK(json("false") == "false");
  CHECK(json("nil") == "null");
  CHECK(json("undefined") == "null");
  CHECK(json("ok") == R"({"$atom":"ok"})");
  CHECK(json("'Elixir.Foo'") == R"({"$atom":"Elixir.Foo"})");
  CHECK(json("<<\"hi\">>") == R"("hi")");
  CHECK(json("<<\"héllo\"/utf8>>") == "\"h\xc3\xa9llo\"");
  CHECK(json("<<>>") == R"("")");
  CHECK(json("<<255,0,1>>") == R"({"$binary":"/wAB"})");
  CHECK(json("<<255>>") == R"({"$binary":"/w=="})");
  CHECK(json("<<255,1>>") == R"({"$binary":"/wE="})");
  CHECK(json("<<1,2:3>>") == R"({"$bitstring":"<<1,2:3>>"})");
}

TEST_CASE("to_json escapes strings as RFC 8259 requires") {
  CHECK(json(R"(<<"a\"b\\c\n\r\t\b\f\x01\x1f/">>)") == R"("a\"b\\c\n\r\t\b\f\u0001\u001f/")");
  CHECK(json("<<\"\\x{2028}\"/utf8>>") == "\"\xe2\x80\xa8\"");
  CHECK(json_quote("\x7f") == "\"\x7f\"");
}

TEST_CASE("to_json maps containers") {
  CHECK(json("[1,2,3]") == "[1,2,3]");
  CHECK(json("[]") == "[]");
  CHECK(json("[a,<<\"b\">>,[]]") == R"([{"$atom":"a"},"b",[]])");
  CHECK(json("{}") == R"({"$tuple":[]})");
  CHECK(json("{ok,1}") == R"({"$tuple":[{"$atom":"ok"},1]})");
  CHECK(json("[a|b]") == R"({"$improper":[{"$atom":"a"},{"$atom":"b"}]})");
  CHECK(json("[1,[2|3]|4]") == R"({"$improper":[1,{"$improper":[2,3]},4]})");
  CHECK(json("[[1|2]|[3|4]]") == R"({"$improper":[{"$improper":[1,2]},3,4]})");
  CHECK(json("#{}") == "{}");
  CHECK(json("#{<<\"a\">> => 1, b => [true], \"c\" => nil}") == R"({"a":1,"b":[true],"c":null})");
  CHECK(json("#{1 => x, {a,1} => <<\"y\">>, <<1,255>> => z, [] => 0}") ==
        R"({"1":{"$atom":"x"},"{a,1}":"y","<<1,255>>":{"$atom":"z"},"[]":0})");
  CHECK(json("#{[20320,22909] => 1}") == "{\"\xe4\xbd\xa0\xe5\xa5\xbd\":1}");
  CHECK(json("#{a => #{b => #{c => {}}}}") == R"({"a":{"b":{"c":{"$tuple":[]}}}})");
}

TEST_CASE("a list of no elements is its tail - as binary_to_term reads it") {
  // LIST_EXT with length 0 and tail 16777216: erl's binary_to_term gives
  // 16777216; a chain of such headers ending in NIL gives [].
  const std::string tail_int{"\x83\x6c\x00\x00\x00\x00\x62\x01\x00\x00\x00", 11};
  const std::string chain{"\x83\x6c\x00\x00\x00\x00\x6c\x00\x00\x00\x00\x6a", 12};
  for (const auto& [bytes, want] :
       {std::pair{tail_int, std::string("16777216")}, std::pair{chain, std::string("[]")}}) {
    auto r = TermReader::from_external({bytes.data(), bytes.size()});
    REQUIRE(r);
    auto j = to_json(*r);
    REQUIRE(j);
    CHECK(*j == want);
    CHECK(r->at_end());
    auto t = TermReader::from_external({bytes.data(), bytes.size()});
    REQUIRE(t);
    auto text = format_term(*t);
    REQUIRE(text);
    CHECK(*text == want);
  }
}

TEST_CASE("to_json refuses integers over max_integer_bytes - format_term takes them") {
  // LARGE_BIG_EXT with an n-byte magnitude of 0xff bytes, positive.
  auto big = [](std::size_t n) {
    std::string b{"\x83\x6f", 2};
    for (int shift = 24; shift >= 0; shift -= 8)
      b.push_back(static_cast<char>((n >> shift) & 0xff));
    b.push_back('\0');
    b.append(n, '\xff');
    return b;
  };
  const std::string ok = big(4096), over = big(4097);
  auto r = TermReader::from_external({ok.data(), ok.size()});
  REQUIRE(r);
  auto j = to_json(*r);
  REQUIRE(j);
  CHECK(j->size() == 9865);  // 2^32768 - 1 has 9,865 digits
  auto r2 = TermReader::from_external({over.data(), over.size()});
  REQUIRE(r2);
  auto j2 = to_json(*r2);
  REQUIRE_FALSE(j2);
  CHECK(j2.error().code == Errc::bad_term);
  CHECK(j2.error().message == "integer of 4097 bytes (more than 4096) at byte 1");
  auto r3 = TermReader::from_external({over.data(), over.size()});
  REQUIRE(r3);
  auto text = format_term(*r3);
  REQUIRE(text);
  CHECK(text->size() == 9867);
  // A 1 MiB integer: refused at once by both, before any conversion.
  const std::string mib = big(1u << 20);
  auto r4 = TermReader::from_external({mib.data(), mib.size()});
  REQUIRE(r4);
  CHECK(to_json(*r4).error().message == "integer of 1048576 bytes (more than 4096) at byte 1");
  CHECK(format_term(*r4).error().message == "integer of 1048576 bytes (more than 65536) at byte 1");
}

TEST_CASE("to_json keeps character lists as arrays unless asked") {
  CHECK(json("\"abc\"") == "[97,98,99]");
  CHECK(json("[104,105|x]") == R"({"$improper":[104,105,{"$atom":"x"}]})");
  JsonOptions o;
  o.charlists_as_strings = true;
  CHECK(json("\"abc\"", o) == R"("abc")");
  CHECK(json("\"héllo\"", o) == "\"h\xc3\xa9llo\"");
  CHECK(json("\"你好\"", o) == "\"\xe4\xbd\xa0\xe5\xa5\xbd\"");
  CHECK(json("[1,2,3]", o) == "[1,2,3]");  // not printable
  CHECK(json("[\"ab\",[0]]", o) == R"(["ab",[0]])");
}

TEST_CASE("to_json tags pids - references - ports and funs with their text") {
  TermWriter w;
  w.tuple(2).pid(Pid{"ewallet@10.0.0.1", 77, 3, 1});
  Ref ref;
  ref.node = "a@b";
  ref.len = 3;
  ref.n = {1, 2, 3, 0, 0};
  w.ref(ref);
  CHECK(json(w) ==
        R"({"$tuple":[{"$pid":"#Pid<ewallet@10.0.0.1.77.3>"},{"$ref":"#Ref<a@b.3.2.1>"}]})");
  // fun lists:map/2 as erl encodes it (EXPORT_EXT).
  const char fun[] = "\x83\x71\x77\x05lists\x77\x03map\x61\x02";
  auto r = TermReader::from_external(std::span<const char>(fun, sizeof fun - 1));
  CHECK(*to_json(*r) == R"({"$fun":"fun lists:map/2"})");
  const char port[] =
      "\x83\x59\x77\x03"
      "a@b\x00\x00\x00\x05\x00\x00\x00\x01";
  auto p = TermReader::from_external(std::span<const char>(port, sizeof port - 1));
  CHECK(*to_json(*p) == R"({"$port":"#Port<a@b.5>"})");
}

TEST_CASE("to_json refuses malformed terms without advancing") {
  const char bad[] = {'\x68', '\x02', '\x61', '\x01'};
  TermReader r(bad, sizeof bad);
  CHECK_FALSE(to_json(r).ok());
  CHECK(r.index() == 0);
  const char bad_atom[] = {'\x77', '\x01', '\xff'};
  TermReader a(bad_atom, sizeof bad_atom);
  CHECK_FALSE(to_json(a).ok());
}

}  // namespace
}  // namespace beamlink::term
