// Phoenix.PubSub 1.1 on pg2: the terms beamlink sends to and takes from OTP
// 21/22 nodes (pg2's exchange cast, 1.x and 2.x forward_to_local). Golden
// bytes made by a real OTP 22.3 erl (term_to_binary/1, as its pg2 and
// PG2Server send them: ATOM_EXT atoms, PID_EXT pids).
#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "pubsub/pubsub_bridge.hpp"
#include "term/term.hpp"
#include "term/term_text.hpp"
#include "term_bytes.hpp"

using namespace beamlink;
using namespace beamlink::term;
using namespace beamlink::pubsub;
using namespace beamlink::test;

namespace {

std::string from_bytes(std::initializer_list<int> b) {
  std::string s;
  for (int c : b) s.push_back(static_cast<char>(c));
  return s;
}

std::string text(std::span<const char> external) {
  auto r = TermReader::from_external(external);
  REQUIRE(r.ok());
  auto t = format_term(*r);
  REQUIRE(t.ok());
  return *t;
}

std::string text_raw(std::span<const char> term) {
  TermReader r(term);
  auto t = format_term(r);
  REQUIRE(t.ok());
  return *t;
}

// term_to_binary({forward_to_local, nil, none, <<"room:1">>, #{status => ok, data => 1}})
const std::string kV1None = from_bytes(
    {131, 104, 5,   100, 0,   16,  102, 111, 114, 119, 97,  114, 100, 95,  116, 111, 95,  108, 111,
     99,  97,  108, 100, 0,   3,   110, 105, 108, 100, 0,   4,   110, 111, 110, 101, 109, 0,   0,
     0,   6,   114, 111, 111, 109, 58,  49,  116, 0,   0,   0,   2,   100, 0,   4,   100, 97,  116,
     97,  97,  1,   100, 0,   6,   115, 116, 97,  116, 117, 115, 100, 0,   2,   111, 107});
// term_to_binary({forward_to_local, 'Elixir.Phoenix.Channel.Server', <0.85.0>, <<"room:1">>,
// hello}) on g22@127.0.0.1 (creation 2)
const std::string kV1From =
    from_bytes({131, 104, 5,   100, 0,   16,  102, 111, 114, 119, 97,  114, 100, 95,  116, 111, 95,
                108, 111, 99,  97,  108, 100, 0,   29,  69,  108, 105, 120, 105, 114, 46,  80,  104,
                111, 101, 110, 105, 120, 46,  67,  104, 97,  110, 110, 101, 108, 46,  83,  101, 114,
                118, 101, 114, 103, 100, 0,   13,  103, 50,  50,  64,  49,  50,  55,  46,  48,  46,
                48,  46,  49,  0,   0,   0,   85,  0,   0,   0,   0,   2,   109, 0,   0,   0,   6,
                114, 111, 111, 109, 58,  49,  100, 0,   5,   104, 101, 108, 108, 111});
// term_to_binary({phx, 'Elixir.EWalletAPI.PubSub'})
const std::string kGroup = from_bytes({131, 104, 2,   100, 0,   3,   112, 104, 120, 100, 0,   24,
                                       69,  108, 105, 120, 105, 114, 46,  69,  87,  97,  108, 108,
                                       101, 116, 65,  80,  73,  46,  80,  117, 98,  83,  117, 98});

}  // namespace

TEST_CASE("decode_forward_to_local_v1 reads OTP 22's 1.x forward_to_local with none and a pid") {
  std::optional<Pid> from;
  auto f = decode_forward_to_local_v1(span(kV1None), &from);
  REQUIRE(f.ok());
  CHECK(f->topic == "room:1");
  CHECK(f->dispatcher == "nil");
  CHECK_FALSE(from.has_value());
  CHECK(text_raw(f->message) == "#{data => 1,status => ok}");

  auto g = decode_forward_to_local_v1(span(kV1From), &from);
  REQUIRE(g.ok());
  CHECK(g->topic == "room:1");
  CHECK(g->dispatcher == "Elixir.Phoenix.Channel.Server");
  REQUIRE(from.has_value());
  CHECK(from->node == "g22@127.0.0.1");
  CHECK(from->num == 85);
  CHECK(from->creation == 2);
  CHECK(text_raw(g->message) == "hello");

  // What beamlink publishes decodes back the same way.
  TermWriter msg(false);
  msg.atom("hello");
  auto ours = encode_forward_to_local_v1("Elixir.Phoenix.Channel.Server", "room:1", msg.bytes());
  REQUIRE(ours.ok());
  auto h = decode_forward_to_local_v1(span(*ours));
  REQUIRE(h.ok());
  CHECK(h->topic == "room:1");
  CHECK(text_raw(h->message) == "hello");
}

TEST_CASE("decode_forward_to_local_any takes both shapes and refuses the rest") {
  auto v1 = decode_forward_to_local_any(span(kV1None));
  REQUIRE(v1.ok());
  CHECK(v1->dispatcher == "nil");

  TermWriter m(false);
  m.atom("x");
  auto v2bytes = encode_forward_to_local("room:2", m.bytes(), "Elixir.Phoenix.PubSub");
  REQUIRE(v2bytes.ok());
  auto v2 = decode_forward_to_local_any(span(*v2bytes));
  REQUIRE(v2.ok());
  CHECK(v2->topic == "room:2");
  CHECK(v2->dispatcher == "Elixir.Phoenix.PubSub");

  // Another message: unexpected_message; a malformed forward_to_local: bad_term.
  TermWriter other;
  other.tuple(2).atom("forward_to_local").atom("x");
  auto o =
      decode_forward_to_local_any(span(std::string(other.bytes().data(), other.bytes().size())));
  REQUIRE_FALSE(o.ok());
  CHECK(o.error().code == Errc::unexpected_message);
  TermWriter bad;
  bad.tuple(5).atom("forward_to_local").atom("nil").atom("none").atom("not_a_binary").atom("m");
  auto b = decode_forward_to_local_any(span(std::string(bad.bytes().data(), bad.bytes().size())));
  REQUIRE_FALSE(b.ok());
  CHECK(b.error().code == Errc::bad_term);
  TermWriter badfrom;
  badfrom.tuple(5).atom("forward_to_local").atom("nil").integer(3).binary("t").atom("m");
  auto bf = decode_forward_to_local_any(
      span(std::string(badfrom.bytes().data(), badfrom.bytes().size())));
  REQUIRE_FALSE(bf.ok());
  CHECK(bf.error().code == Errc::bad_term);
  // Truncated bytes never read past the end.
  for (std::size_t n = 0; n < kV1From.size(); ++n)
    CHECK_FALSE(decode_forward_to_local_any(std::span<const char>(kV1From.data(), n)).ok());
}

TEST_CASE("encode_pg2_group and encode_pg2_exchange are the terms pg2 stores") {
  auto g = encode_pg2_group("EWalletAPI.PubSub");
  REQUIRE(g.ok());
  CHECK(text_raw(span(*g)) == text(span(kGroup)));
  CHECK(*encode_pg2_group("Elixir.EWalletAPI.PubSub") == *g);

  const Pid member{"beamlink@10.0.0.2", 12, 0, 7};
  auto x = encode_pg2_exchange("beamlink@10.0.0.2", "EWalletAPI.PubSub", member);
  REQUIRE(x.ok());
  // pg2.erl: handle_cast({exchange, _Node, List}) -> store(List) with
  // List = [[Name, Members]].
  auto r = TermReader::from_external(span(*x));
  REQUIRE(r.ok());
  CHECK(*r->read_tuple_header() == 2);
  CHECK(r->expect_atom("$gen_cast").ok());
  CHECK(*r->read_tuple_header() == 3);
  CHECK(r->expect_atom("exchange").ok());
  CHECK(*r->read_atom() == "beamlink@10.0.0.2");
  CHECK(*r->read_list_header() == 1);
  CHECK(*r->read_list_header() == 2);
  auto group = r->read_raw();
  REQUIRE(group.ok());
  CHECK(std::string(group->data(), group->size()) == *g);
  CHECK(*r->read_list_header() == 1);
  CHECK(*r->read_pid() == member);
  CHECK(*r->read_list_header() == 0);  // the members' tail
  CHECK(*r->read_list_header() == 0);  // [Name, Members]'s tail
  CHECK(*r->read_list_header() == 0);  // List's tail
  CHECK(r->at_end());
  CHECK(text(span(*x)) ==
        "{'$gen_cast',{exchange,'beamlink@10.0.0.2',[[{phx,'Elixir.EWalletAPI."
        "PubSub'},[#Pid<beamlink@10.0.0.2.12.0>]]]}}");
}
