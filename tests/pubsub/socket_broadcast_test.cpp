// The %Phoenix.Socket.Broadcast{} codec: the exact bytes it writes, and
// decoding its own output, a BEAM node's (keys in term order) and other
// messages.
#include "pubsub/socket_broadcast.hpp"

#include <doctest/doctest.h>

#include <string>

#include "term/term.hpp"
#include "term/term_text.hpp"
#include "term_bytes.hpp"

using namespace beamlink;
using namespace beamlink::term;
using namespace beamlink::pubsub;
using namespace beamlink::test;

namespace {

// Erlang text to its encoding, without version byte.
std::string encoded(std::string_view text) {
  TermWriter w(false);
  REQUIRE(parse_term(text, w).ok());
  return bytes(w);
}

std::string text(std::span<const char> term) {
  TermReader r(term);
  auto t = format_term(r);
  REQUIRE(t.ok());
  return *t;
}

}  // namespace

TEST_CASE("socket broadcast: the struct's keys in the relay's order") {
  TermWriter payload(false);
  payload.map(1).atom("status").atom("ok");
  auto b = socket_broadcast("room:1", "new_msg", payload.bytes());
  REQUIRE(b.ok());
  TermWriter expected(false);
  expected.map(4)
      .atom("__struct__")
      .atom("Elixir.Phoenix.Socket.Broadcast")
      .atom("topic")
      .binary("room:1")
      .atom("event")
      .binary("new_msg")
      .atom("payload")
      .map(1)
      .atom("status")
      .atom("ok");
  CHECK(*b == bytes(expected));
}

TEST_CASE(
    "socket broadcast: the writer appends after a version byte and reports its payload's error") {
  TermWriter w(true);
  auto r = write_socket_broadcast(w, "t", "e", [](TermWriter& out) -> Result<void> {
    out.map(0);
    return {};
  });
  REQUIRE(r.ok());
  auto reader = TermReader::from_external(w.bytes());
  REQUIRE(reader.ok());
  CHECK(*format_term(*reader) ==
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',topic => <<\"t\">>,"
        "event => <<\"e\">>,payload => #{}}");

  TermWriter failed(false);
  auto e = write_socket_broadcast(failed, "t", "e", [](TermWriter&) -> Result<void> {
    return make_error(Errc::bad_json, "invalid JSON: x");
  });
  REQUIRE_FALSE(e.ok());
  CHECK(e.error().code == Errc::bad_json);
  CHECK(e.error().message == "invalid JSON: x");
}

TEST_CASE("socket broadcast: decodes its own and a BEAM node's encoding") {
  TermWriter payload(false);
  payload.map(1).binary("n").integer(1);
  auto ours = socket_broadcast("room:1", "new_msg", payload.bytes());
  REQUIRE(ours.ok());
  // term_to_binary(%Phoenix.Socket.Broadcast{...}) on OTP 25: the keys in
  // term order, '__struct__', event, payload, topic.
  const std::string beam = encoded(
      "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', event => <<\"new_msg\">>, "
      "payload => #{<<\"n\">> => 1}, topic => <<\"room:1\">>}");
  const std::string& own = *ours;
  for (const std::string* term : {&own, &beam}) {
    auto d = decode_socket_broadcast(span(*term));
    REQUIRE(d.ok());
    CHECK(d->topic == "room:1");
    CHECK(d->event == "new_msg");
    CHECK(text(d->payload) == "#{<<\"n\">> => 1}");
  }
}

TEST_CASE("socket broadcast: another message is unexpected_message - broken bytes bad_term") {
  for (const char* other :
       {"{forward_to_local, <<\"t\">>, x, y}", "#{}", "#{1 => 2}",
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Message', topic => <<\"t\">>, "
        "event => <<\"e\">>, payload => #{}}",
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<\"t\">>, "
        "event => <<\"e\">>}",
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => t, "
        "event => <<\"e\">>, payload => #{}}"}) {
    auto d = decode_socket_broadcast(span(encoded(other)));
    REQUIRE_FALSE(d.ok());
    CHECK_MESSAGE(d.error().code == Errc::unexpected_message, other);
  }
  auto whole = encoded(
      "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast', topic => <<\"t\">>, "
      "event => <<\"e\">>, payload => #{a => 1}}");
  auto cut = decode_socket_broadcast(span(whole).first(whole.size() - 3));
  REQUIRE_FALSE(cut.ok());
  CHECK(cut.error().code == Errc::bad_term);
}
