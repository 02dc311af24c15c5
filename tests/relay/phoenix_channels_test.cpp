// The Phoenix Channels V2 core over a fake ChannelHub: text messages in,
// frames out, exactly as Phoenix.Socket 1.7 answers them (replies, join_ref
// and ref placement, phx_close after leave and duplicate join, unmatched
// topics), plus the relay's limits and malformed input.
#include <doctest/doctest.h>

#include <map>
#include <memory>
#include <string>
#include <tuple>
#include <vector>

#include "fake_channel_hub.hpp"
#include "relay/phoenix_channels.hpp"

using namespace beamlink;
using namespace beamlink::relay;

namespace {

using FakeHub = beamlink::test::FakeChannelHub;

struct Fixture {
  FakeHub hub;
  ChannelStats stats;
  std::vector<std::shared_ptr<const std::string>> delivered;
  ChannelSession session{hub, ChannelLimits{16, 2}, stats,
                         [this](const ChannelBroadcast& b) { delivered.push_back(b.v2_text); }};

  std::vector<std::string> in(std::string_view text) {
    auto out = session.handle_text(text);
    CHECK_FALSE(out.close.has_value());
    return out.frames;
  }
};

using Frames = std::vector<std::string>;

}  // namespace

TEST_CASE("phoenix heartbeat is answered on topic phoenix with a null join_ref") {
  Fixture f;
  CHECK(f.in(R"([null,"7","phoenix","heartbeat",{}])") ==
        Frames{R"([null,"7","phoenix","phx_reply",{"status":"ok","response":{}}])"});
  CHECK(f.stats.heartbeats == 1);
}

TEST_CASE("phoenix join subscribes and replies with join_ref and ref") {
  Fixture f;
  CHECK(f.in(R"(["1","1","room:lobby","phx_join",{"user":"x"}])") ==
        Frames{R"(["1","1","room:lobby","phx_reply",{"status":"ok","response":{}}])"});
  CHECK(f.hub.subscribers("room:lobby") == 1);
  CHECK(f.session.joined() == 1);
  CHECK(f.stats.joins == 1);
}

TEST_CASE("phoenix broadcasts reach a joined topic only - as the shared frame") {
  Fixture f;
  (void)f.in(R"(["1","1","room:a","phx_join",{}])");
  f.hub.broadcast("room:b", "shout", R"({"n":1})");
  CHECK(f.delivered.empty());
  f.hub.broadcast("room:a", "shout", R"({"n":2})");
  REQUIRE(f.delivered.size() == 1);
  CHECK(*f.delivered[0] == R"([null,null,"room:a","shout",{"n":2}])");
}

TEST_CASE("phoenix push publishes into the hub and replies with the channel's join_ref") {
  Fixture f;
  (void)f.in(R"(["1","1","room:a","phx_join",{}])");
  CHECK(f.in(R"(["1","2","room:a","shout",{ "body" : "hi \"you\"", "n": [1, 2.5, null]}])") ==
        Frames{R"(["1","2","room:a","phx_reply",{"status":"ok","response":{}}])"});
  REQUIRE(f.hub.published.size() == 1);
  CHECK(f.hub.published[0] ==
        std::make_tuple(std::string("room:a"), std::string("shout"),
                        std::string(R"({"body":"hi \"you\"","n":[1,2.5,null]})")));
  CHECK(f.stats.pushes == 1);
}

TEST_CASE("phoenix push failures reply status error with the reason") {
  Fixture f;
  (void)f.in(R"(["1","1","room:a","phx_join",{}])");
  f.hub.fail = make_error(Errc::queue_full, "every node's queue is full");
  CHECK(
      f.in(R"(["1","2","room:a","shout",{}])") ==
      Frames{
          R"(["1","2","room:a","phx_reply",{"status":"error","response":{"reason":"queue_full"}}])"});
  f.hub.fail = make_error(Errc::not_connected, "no node");
  CHECK(
      f.in(R"(["1","3","room:a","shout",{}])") ==
      Frames{
          R"(["1","3","room:a","phx_reply",{"status":"error","response":{"reason":"not_connected"}}])"});
  f.hub.fail = make_error(Errc::invalid_argument, "payload nested deeper than 64 levels");
  CHECK(
      f.in(R"(["1","4","room:a","shout",{}])") ==
      Frames{
          R"(["1","4","room:a","phx_reply",{"status":"error","response":{"reason":"payload nested deeper than 64 levels"}}])"});
  f.hub.fail.reset();
  CHECK(
      f.in(R"(["1","5","room:a","phx_close",{}])") ==
      Frames{
          R"(["1","5","room:a","phx_reply",{"status":"error","response":{"reason":"reserved event"}}])"});
  CHECK(f.hub.published.empty());
  CHECK(f.stats.pushes_refused == 4);
}

TEST_CASE("phoenix events on a topic not joined reply unmatched topic") {
  Fixture f;
  CHECK(
      f.in(R"(["3","4","room:x","shout",{}])") ==
      Frames{
          R"([null,"4","room:x","phx_reply",{"status":"error","response":{"reason":"unmatched topic"}}])"});
  CHECK(f.hub.published.empty());
  CHECK(f.stats.unmatched == 1);
}

TEST_CASE("phoenix leave unsubscribes - replies ok - then pushes phx_close") {
  Fixture f;
  (void)f.in(R"(["1","1","room:a","phx_join",{}])");
  CHECK(f.in(R"(["1","2","room:a","phx_leave",{}])") ==
        Frames{R"(["1","2","room:a","phx_reply",{"status":"ok","response":{}}])",
               R"(["1","1","room:a","phx_close",{}])"});
  CHECK(f.hub.subscribers("room:a") == 0);
  f.hub.broadcast("room:a", "shout", "{}");
  CHECK(f.delivered.empty());
  // Not joined any more: Phoenix.Socket itself answers a leave with ok.
  CHECK(f.in(R"(["1","3","room:a","phx_leave",{}])") ==
        Frames{R"(["1","3","room:a","phx_reply",{"status":"ok","response":{}}])"});
  CHECK(f.stats.leaves == 1);
}

TEST_CASE("phoenix leave with a stale join_ref is dropped") {
  Fixture f;
  (void)f.in(R"(["5","5","room:a","phx_join",{}])");
  CHECK(f.in(R"(["4","6","room:a","phx_leave",{}])").empty());
  CHECK(f.hub.subscribers("room:a") == 1);
}

TEST_CASE("phoenix duplicate join closes the old channel and joins again") {
  Fixture f;
  (void)f.in(R"(["1","1","room:a","phx_join",{}])");
  CHECK(f.in(R"(["3","3","room:a","phx_join",{}])") ==
        Frames{R"(["3","3","room:a","phx_reply",{"status":"ok","response":{}}])",
               R"(["1","1","room:a","phx_close",{}])"});
  CHECK(f.hub.subscribers("room:a") == 1);
  CHECK(f.session.join_ref("room:a") == std::optional<std::optional<std::string>>("3"));
  f.hub.broadcast("room:a", "shout", "{}");
  CHECK(f.delivered.size() == 1);  // once, not once per join
}

TEST_CASE("phoenix join limits: topic length and topics per socket") {
  Fixture f;  // at most 16 bytes per topic, 2 topics
  CHECK(
      f.in(R"(["1","1","room:0123456789abc","phx_join",{}])") ==
      Frames{
          R"(["1","1","room:0123456789abc","phx_reply",{"status":"error","response":{"reason":"topic over 16 bytes"}}])"});
  CHECK(
      f.in(R"(["2","2","","phx_join",{}])") ==
      Frames{R"(["2","2","","phx_reply",{"status":"error","response":{"reason":"empty topic"}}])"});
  (void)f.in(R"(["3","3","a","phx_join",{}])");
  (void)f.in(R"(["4","4","b","phx_join",{}])");
  CHECK(
      f.in(R"(["5","5","c","phx_join",{}])") ==
      Frames{
          R"j(["5","5","c","phx_reply",{"status":"error","response":{"reason":"too many topics (at most 2 per socket)"}}])j"});
  CHECK(f.session.joined() == 2);
  CHECK(f.hub.subscribers("c") == 0);
  CHECK(f.stats.joins_refused == 3);
}

TEST_CASE("phoenix malformed messages close the socket with 1008 and a reason") {
  for (std::string_view bad :
       {R"(not json)", R"({"topic":"t"})", R"(["1","1","t","e"])", R"([1,"1","t","e",{}])",
        R"(["1",2,"t","e",{}])", R"(["1","1",3,"e",{}])", R"(["1","1","t",null,{}])", R"([)",
        R"("str")", ""}) {
    Fixture f;
    auto out = f.session.handle_text(bad);
    CHECK(out.frames.empty());
    REQUIRE_MESSAGE(out.close.has_value(), bad);
    CHECK(out.close->code == CloseCode::policy_violation);
    CHECK(out.close->reason.starts_with("malformed message: "));
    CHECK(out.close->reason.size() <= 123);
    CHECK(f.stats.protocol_errors == 1);
  }
}

TEST_CASE("phoenix refs over 64 bytes close the socket instead of being kept") {
  Fixture f;
  std::string ref(65, '7');
  auto out = f.session.handle_text(R"([")" + ref + R"(","1","room:1","phx_join",{}])");
  REQUIRE(out.close.has_value());
  CHECK(out.close->code == CloseCode::policy_violation);
  CHECK(out.close->reason.find("longer than 64 bytes") != std::string::npos);
  CHECK(f.hub.subscribers("room:1") == 0);
  Fixture g;
  out = g.session.handle_text(R"([")" + std::string(64, '7') + R"(","1","room:1","phx_join",{}])");
  CHECK_FALSE(out.close.has_value());
}

TEST_CASE("phoenix accepts extra elements after the payload - as Phoenix does") {
  Fixture f;
  CHECK(f.in(R"([null,"1","phoenix","heartbeat",{},"extra"])").size() == 1);
}

TEST_CASE("phoenix session unsubscribes everything when destroyed") {
  FakeHub hub;
  ChannelStats stats;
  {
    ChannelSession s(hub, {}, stats, [](const ChannelBroadcast&) {});
    (void)s.handle_text(R"(["1","1","a","phx_join",{}])");
    (void)s.handle_text(R"(["2","2","b","phx_join",{}])");
    CHECK(hub.subs.size() == 2);
  }
  CHECK(hub.subs.empty());
}

TEST_CASE("json strings are escaped per RFC 8259") {
  std::string out;
  append_json_string(out, std::string("a\"b\\c\n\t\x01\x1f/é", 12));
  CHECK(out == "\"a\\\"b\\\\c\\n\\t\\u0001\\u001f/é\"");
  CHECK(encode_channel_message(std::nullopt, std::string("r\""), "t", "e", "[1]") ==
        R"([null,"r\"","t","e",[1]])");
}
