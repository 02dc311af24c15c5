// decode_broadcast_json: what the relay makes of a cluster's
// %Phoenix.Socket.Broadcast{} before it goes to WebSocket clients.
#include <doctest/doctest.h>

#include <string>
#include <tuple>

#include "pubsub/socket_broadcast.hpp"
#include "relay/cluster_hub.hpp"

using namespace beamlink;
using namespace beamlink::relay;

namespace {

std::string broadcast(std::string_view topic, std::string_view event) {
  term::TermWriter empty(false);
  empty.map(0);
  auto b = pubsub::socket_broadcast(topic, event, empty.bytes());
  REQUIRE(b);
  return *b;
}

}  // namespace

TEST_CASE("cluster broadcasts become JSON for WebSocket clients") {
  auto b = broadcast("room:1", "new_msg");
  auto d = decode_broadcast_json({b.data(), b.size()});
  REQUIRE(d);
  CHECK(d->topic == "room:1");
  CHECK(d->event == "new_msg");
  CHECK(d->payload_json == "{}");
}

TEST_CASE("cluster broadcasts whose topic or event is not UTF-8 never reach a text frame") {
  // RFC 6455 section 8.1: a browser fails a connection that gets a text
  // frame with invalid UTF-8, so such a broadcast is refused (counted as
  // undecodable by the hub) instead of sent to every joined client.
  for (auto [topic, event, why] :
       {std::tuple{"room:\xff", "new_msg", "the topic is not valid UTF-8"},
        std::tuple{"room:1", "new\xc3", "the event is not valid UTF-8"}}) {
    auto b = broadcast(topic, event);
    auto d = decode_broadcast_json({b.data(), b.size()});
    REQUIRE_FALSE(d);
    CHECK(d.error().code == Errc::bad_term);
    CHECK(d.error().message == why);
  }
}
