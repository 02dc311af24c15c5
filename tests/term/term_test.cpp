// Term reader, writer and term_extent tests. The golden terms are erl's
// term_to_binary bytes from term_text_test.cpp (made by
// tests/term/gen_term_golden.escript). Run under -DBEAMLINK_SANITIZE=ON:
// every truncation is copied into a buffer of exactly its size, so any read
// past the end is an ASan error.
#include "term/term.hpp"

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <span>
#include <string>
#include <vector>

#include "term/term_json.hpp"
#include "term/term_text.hpp"

namespace beamlink::term {

std::vector<std::vector<std::uint8_t>> golden_term_bytes();  // term_text_test.cpp

namespace {

std::span<const char> as_chars(const std::vector<std::uint8_t>& b) {
  return {reinterpret_cast<const char*>(b.data()), b.size()};
}

std::vector<std::uint8_t> find_golden(std::initializer_list<std::uint8_t> prefix) {
  for (auto& g : golden_term_bytes())
    if (g.size() >= prefix.size() && std::equal(prefix.begin(), prefix.end(), g.begin())) return g;
  FAIL("no golden term with that prefix");
  return {};
}

// Decodes every part of the term with TermReader's typed decoders.
void decode_all(TermReader& r, int depth = 0) {
  REQUIRE(depth < 100);
  auto t = r.peek();
  REQUIRE(t.ok());
  const std::size_t start = r.index();
  switch (static_cast<Tag>(t->tag)) {
    case Tag::small_integer:
    case Tag::integer:
      REQUIRE(r.read_int().ok());
      break;
    case Tag::small_big:
    case Tag::large_big: {
      auto v = r.read_int();  // fails, without advancing, when over 64 bits
      if (!v) REQUIRE(r.skip().ok());
      break;
    }
    case Tag::new_float:
    case Tag::float_ext:
      REQUIRE(r.read_double().ok());
      break;
    case Tag::atom:
    case Tag::small_atom:
    case Tag::atom_utf8:
    case Tag::small_atom_utf8:
      REQUIRE(r.next_is_atom());
      REQUIRE(r.read_atom().ok());
      break;
    case Tag::binary:
      REQUIRE(r.read_binary()->size() == static_cast<std::size_t>(t->size));
      break;
    case Tag::string:
      REQUIRE(r.read_string()->size() == static_cast<std::size_t>(t->size));
      break;
    case Tag::nil:
      REQUIRE(*r.read_list_header() == 0);
      break;
    case Tag::list: {
      int n = *r.read_list_header();
      for (int i = 0; i < n; ++i) decode_all(r, depth + 1);
      decode_all(r, depth + 1);  // the tail
      break;
    }
    case Tag::small_tuple:
    case Tag::large_tuple: {
      int n = *r.read_tuple_header();
      for (int i = 0; i < n; ++i) decode_all(r, depth + 1);
      break;
    }
    case Tag::map: {
      int n = *r.read_map_header();
      for (int i = 0; i < 2 * n; ++i) decode_all(r, depth + 1);
      break;
    }
    case Tag::new_pid:
      REQUIRE(r.read_pid().ok());
      break;
    case Tag::newer_reference:
      REQUIRE(r.read_ref().ok());
      break;
    default:
      REQUIRE(r.skip().ok());
  }
  REQUIRE(r.index() > start);
}

TEST_CASE("term_extent measures every golden term and rejects every truncation of it") {
  auto golden = golden_term_bytes();
  REQUIRE(golden.size() > 100);
  std::size_t cuts = 0;
  for (const auto& g : golden) {
    CAPTURE(g.size());
    auto whole = term_extent(as_chars(g).data(), g.size(), 1);
    REQUIRE(whole.ok());
    CHECK(*whole == g.size() - 1);
    for (std::size_t k = 0; k + 1 < g.size(); ++k) {
      // Exactly k bytes after the version byte, in a buffer of that size.
      std::vector<char> cut(g.begin() + 1, g.begin() + 1 + static_cast<std::ptrdiff_t>(k));
      auto n = term_extent(cut.data(), cut.size(), 0);
      CHECK_FALSE(n.ok());
      if (!n.ok()) CHECK(n.error().code == Errc::bad_term);
      TermReader r(cut.data(), cut.size());
      CHECK_FALSE(format_term(r).ok());
      CHECK_FALSE(to_json(r).ok());
      CHECK_FALSE(r.skip().ok());
      CHECK(r.index() == 0);
      ++cuts;
    }
  }
  CHECK(cuts > 1000);
}

TEST_CASE("one-byte mutations of every golden term are printed or refused - never a crash") {
  std::size_t printed = 0, refused = 0;
  for (const auto& g : golden_term_bytes()) {
    for (std::size_t i = 1; i < g.size(); ++i) {
      for (std::uint8_t v :
           {std::uint8_t{0}, std::uint8_t{255}, static_cast<std::uint8_t>(g[i] ^ 1),
            static_cast<std::uint8_t>(g[i] + 1)}) {
        std::vector<char> m(g.begin() + 1, g.end());
        m[i - 1] = static_cast<char>(v);
        TermReader r(m.data(), m.size());
        auto text = format_term(r);
        TermReader j(m.data(), m.size());
        auto json = to_json(j);
        (text.ok() ? printed : refused) += 1;
        (void)json.ok();
      }
    }
  }
  CHECK(printed > 0);
  CHECK(refused > 0);
}

TEST_CASE("TermReader's decoders read every golden term to its end") {
  for (const auto& g : golden_term_bytes()) {
    auto r = TermReader::from_external(as_chars(g));
    REQUIRE(r.ok());
    decode_all(*r);
    CHECK(r->at_end());
  }
}

TEST_CASE("term_extent rejects impossible counts at once") {
  using namespace std::chrono;
  const auto start = steady_clock::now();
  // LIST_EXT claiming 2^32-1 elements in a 10-byte buffer.
  const char list[10] = {'\x6c', '\xff', '\xff', '\xff', '\xff',
                         '\x61', '\x01', '\x61', '\x02', '\x6a'};
  auto n = term_extent(list, sizeof list, 0);
  REQUIRE_FALSE(n.ok());
  CHECK(n.error().message.find("more elements than bytes") != std::string::npos);
  const char map[6] = {'\x74', '\xff', '\xff', '\xff', '\xff', '\x6a'};
  CHECK_FALSE(term_extent(map, sizeof map, 0).ok());
  const char tuple[6] = {'\x69', '\x7f', '\xff', '\xff', '\xff', '\x6a'};
  CHECK_FALSE(term_extent(tuple, sizeof tuple, 0).ok());
  const char binary[6] = {'\x6d', '\xff', '\xff', '\xff', '\xff', '\x00'};
  CHECK_FALSE(term_extent(binary, sizeof binary, 0).ok());
  CHECK(steady_clock::now() - start < milliseconds(50));

  TermLimits limits;
  limits.max_terms = 3;
  const char four[] = {'\x6c', 0, 0, 0, 3, '\x61', 1, '\x61', 2, '\x61', 3, '\x6a'};
  CHECK_FALSE(term_extent(four, sizeof four, 0, limits).ok());
  CHECK(term_extent(four, sizeof four, 0).ok());
}

TEST_CASE("term_extent refuses tags a peer without the flags must not send") {
  for (int tag : {82, 121, 80, 117, 0, 255}) {
    const char b[8] = {static_cast<char>(tag), 0, 0, 0, 0, 0, 0, 0};
    CHECK_FALSE(term_extent(b, sizeof b, 0).ok());
  }
  const char ref_words[] = {'\x5a', 0, 6, '\x77', 1, 'a', 0, 0, 0, 0};  // 6 words
  CHECK_FALSE(term_extent(ref_words, sizeof ref_words, 0).ok());
}

TEST_CASE("term_extent - skip and to_json handle 100 -000-deep nesting") {
  constexpr std::size_t kDepth = 100000;
  std::string b;
  for (std::size_t i = 0; i < kDepth; ++i) b += std::string("\x6c\x00\x00\x00\x01", 5);
  b += "\x6a";
  b.append(kDepth, '\x6a');
  auto n = term_extent(b.data(), b.size(), 0);
  REQUIRE(n.ok());
  CHECK(*n == b.size());
  TermReader r(b.data(), b.size());
  CHECK(r.skip().ok());
  CHECK(r.at_end());
  TermReader j(b.data(), b.size());
  auto json = to_json(j);
  REQUIRE(json.ok());
  CHECK(json->size() == 2 * kDepth + 2);
}

TEST_CASE("TermWriter writes a pid and a reference as erl does") {
  // binary_to_term of handcrafted NEW_PID_EXT / NEWER_REFERENCE_EXT, then
  // term_to_binary: see gen_term_golden.escript.
  auto pid_bytes = find_golden({131, 88, 119, 16});
  auto ref_bytes = find_golden({131, 90, 0, 3});
  const Pid pid{"ewallet@10.0.0.1", 77, 3, 0x5f3a1b2c};
  Ref ref;
  ref.node = "ewallet@10.0.0.1";
  ref.creation = 0x5f3a1b2c;
  ref.len = 3;
  ref.n = {0x11, 0x22, 0x33, 0, 0};

  TermWriter w;
  w.pid(pid);
  REQUIRE(w.ok());
  CHECK(std::vector<std::uint8_t>(w.bytes().begin(), w.bytes().end()) == pid_bytes);
  TermWriter wr;
  wr.ref(ref);
  REQUIRE(wr.ok());
  CHECK(std::vector<std::uint8_t>(wr.bytes().begin(), wr.bytes().end()) == ref_bytes);

  auto rp = TermReader::from_external(as_chars(pid_bytes));
  CHECK(*rp->read_pid() == pid);
  auto rr = TermReader::from_external(as_chars(ref_bytes));
  CHECK(*rr->read_ref() == ref);
  CHECK(to_string(ref) == "#Ref<ewallet@10.0.0.1.51.34.17>");
}

TEST_CASE("TermWriter round trips through TermReader") {
  const Pid pid{"beamlink@127.0.0.1", 1, 0, 0x12345678};
  Ref ref;
  ref.node = "beamlink@127.0.0.1";
  ref.creation = 7;
  ref.len = 5;
  ref.n = {1, 2, 3, 4, 5};
  const std::string long_bytes(70000, 'x');
  const std::string utf8_atom = [] {
    std::string s;
    for (int i = 0; i < 255; ++i) s += "\xc3\xa9";  // 255 × é: 510 bytes
    return s;
  }();

  TermWriter w;
  w.tuple(15)
      .atom("ok")
      .atom(utf8_atom)
      .binary(std::string_view("\0\xff", 2))
      .integer(std::numeric_limits<std::int64_t>::min())
      .integer(std::numeric_limits<std::int64_t>::max())
      .uinteger(std::numeric_limits<std::uint64_t>::max())
      .floating(-2.5e-6)
      .string("abc")
      .string(long_bytes)
      .list(2)
      .integer(1)
      .boolean(true)
      .nil()
      .map(1)
      .atom("k")
      .nil()
      .pid(pid)
      .ref(ref)
      .string("")
      .raw(std::span<const char>("\x61\x05", 2));
  REQUIRE(w.ok());

  auto r = TermReader::from_external(w.bytes());
  REQUIRE(r.ok());
  CHECK(*r->read_tuple_header() == 15);
  CHECK(*r->read_atom() == "ok");
  CHECK(*r->read_atom() == utf8_atom);
  CHECK(*r->read_binary() == std::string_view("\0\xff", 2));
  CHECK(*r->read_int() == std::numeric_limits<std::int64_t>::min());
  CHECK(*r->read_int() == std::numeric_limits<std::int64_t>::max());
  {
    TermReader copy = *r;
    CHECK_FALSE(copy.read_int().ok());  // 2^64-1 does not fit
    CHECK(*format_term(*r) == "18446744073709551615");
  }
  CHECK(*r->read_double() == -2.5e-6);
  CHECK(*r->read_string() == "abc");
  CHECK(*r->read_string() == long_bytes);  // a list of integers past 65535
  CHECK(*r->read_list_header() == 2);
  CHECK(*r->read_int() == 1);
  CHECK_NOTHROW(r->expect_atom("true").ok());
  CHECK(*r->read_list_header() == 0);
  CHECK(*r->read_map_header() == 1);
  CHECK(r->expect_atom("k").ok());
  CHECK(*r->read_list_header() == 0);
  CHECK(*r->read_pid() == pid);
  CHECK(*r->read_ref() == ref);
  CHECK(*r->read_string() == "");
  CHECK(*r->read_int() == 5);
  CHECK(r->at_end());

  TermWriter too_long;
  too_long.atom(std::string(256, 'a'));
  CHECK_FALSE(too_long.ok());
  TermWriter bad_ref;
  bad_ref.ref(Ref{});
  CHECK_FALSE(bad_ref.status().ok());
}

TEST_CASE("TermWriter writes integers in erl's smallest form") {
  auto bytes = [](auto write) {
    TermWriter w(false);
    write(w);
    REQUIRE(w.ok());
    return std::vector<std::uint8_t>(w.bytes().begin(), w.bytes().end());
  };
  using V = std::vector<std::uint8_t>;
  CHECK(bytes([](TermWriter& w) { w.integer(255); }) == V{97, 255});
  CHECK(bytes([](TermWriter& w) { w.integer(256); }) == V{98, 0, 0, 1, 0});
  CHECK(bytes([](TermWriter& w) { w.integer(-1); }) == V{98, 255, 255, 255, 255});
  // ei alone would write these two as SMALL_BIG_EXT (it stops at 28 bits).
  CHECK(bytes([](TermWriter& w) { w.integer(134217728); }) == V{98, 8, 0, 0, 0});
  CHECK(bytes([](TermWriter& w) { w.uinteger(2147483647); }) == V{98, 127, 255, 255, 255});
  CHECK(bytes([](TermWriter& w) { w.integer(2147483648); }) == V{110, 4, 0, 0, 0, 0, 128});
  CHECK(bytes([](TermWriter& w) { w.integer(-2147483649LL); }) == V{110, 4, 1, 1, 0, 0, 128});
  CHECK(bytes([](TermWriter& w) { w.uinteger(1ULL << 63); }) ==
        V{110, 8, 0, 0, 0, 0, 0, 0, 0, 0, 128});
}

TEST_CASE("TermReader refuses a wrong type without advancing") {
  TermWriter w(false);
  w.atom("x");
  TermReader r(w.bytes());
  CHECK_FALSE(r.read_int().ok());
  CHECK_FALSE(r.read_binary().ok());
  CHECK_FALSE(r.expect_atom("y").ok());
  CHECK(r.index() == 3);  // expect_atom consumed the atom it compared
  TermReader e(w.bytes().data(), 0);
  CHECK_FALSE(e.peek().ok());
  CHECK_FALSE(TermReader::from_external(std::span<const char>()).ok());
  const char no_version[] = {'\x6a'};
  CHECK_FALSE(TermReader::from_external(no_version).ok());
}

}  // namespace
}  // namespace beamlink::term
