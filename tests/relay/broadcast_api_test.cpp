// POST /v1/broadcast core: the Broadcast term (checked with format_term),
// error answers. The Router is tested with the server (integration).
#include "relay/broadcast_api.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "term/term_text.hpp"

namespace beamlink::relay {
namespace {

struct FakePublisher : Publisher {
  std::vector<std::pair<std::string, std::string>> got;  // topic, format_term text
  Result<void> next = {};
  Result<void> publish(std::string_view topic, std::span<const char> term) override {
    auto r = term::TermReader::from_external(term);
    REQUIRE(r.ok());
    auto text = term::format_term(*r);
    REQUIRE(text.ok());
    got.emplace_back(std::string(topic), *text);
    return next;
  }
};

Request post(std::string body) {
  Request r;
  r.method = "POST";
  r.path = "/v1/broadcast";
  r.body = std::move(body);
  return r;
}

TEST_CASE("BroadcastApi builds a Phoenix.Socket.Broadcast") {
  FakePublisher pub;
  BroadcastApi api(pub);
  auto res = api.handle(post(R"({"topic":"room:1","event":"new_msg","payload":{"n":[1,2.5]}})"));
  CHECK(res.status == 202);
  CHECK(res.body == R"({"status":"accepted"})");
  REQUIRE(pub.got.size() == 1);
  CHECK(pub.got[0].first == "room:1");
  CHECK(pub.got[0].second ==
        "#{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',topic => <<\"room:1\">>,"
        "event => <<\"new_msg\">>,payload => #{<<\"n\">> => [1,2.5]}}");
}

TEST_CASE("BroadcastApi applies atom keys to the payload") {
  FakePublisher pub;
  BroadcastOptions o;
  o.json.atom_keys = true;
  o.json.atom_value_keys = {"status"};
  BroadcastApi api(pub, o);
  CHECK(
      api.handle(post(R"({"payload":{"status":"ok","data":{}},"event":"e","topic":"t"})")).status ==
      202);
  REQUIRE(pub.got.size() == 1);
  CHECK(pub.got[0].second.ends_with("payload => #{status => ok,data => #{}}}"));
}

TEST_CASE("BroadcastApi answers 400 with the reason") {
  FakePublisher pub;
  BroadcastOptions o;
  o.json.max_depth = 3;
  BroadcastApi api(pub, o);
  auto check = [&](std::string body, std::string error, std::string reason) {
    auto res = api.handle(post(std::move(body)));
    if (error.empty()) {
      CHECK(res.status == 202);
      return;
    }
    CHECK(res.status == 400);
    CHECK(res.body == R"({"error":")" + error + R"(","reason":")" + reason + "\"}");
  };
  check("{", "bad_json",
        "invalid JSON: The JSON document has an improper structure: missing or superfluous commas, "
        "braces, missing keys, etc.");
  check("[1]", "bad_request", "the body must be a JSON object");
  check(R"({"event":"e","payload":{}})", "bad_request", "missing field \\\"topic\\\"");
  check(R"({"topic":"t","payload":{}})", "bad_request", "missing field \\\"event\\\"");
  check(R"({"topic":"t","event":"e"})", "bad_request", "missing field \\\"payload\\\"");
  check(R"({"topic":1,"event":"e","payload":{}})", "bad_request",
        "field \\\"topic\\\" must be a string");
  check(R"({"topic":"t","event":"e","payload":[]})", "bad_request",
        "field \\\"payload\\\" must be an object");
  check(R"({"topic":"t","event":"e","payload":{},"extra":1})", "bad_request",
        "unknown field \\\"extra\\\" (expected \\\"topic\\\", \\\"event\\\", \\\"payload\\\")");
  check(R"({"topic":"t","event":"e","payload":{"a":{"b":1}}})", "", "");
  check(R"({"topic":"t","event":"e","payload":{"a":{"b":[1]}}})", "bad_json",
        "JSON nested deeper than 3 levels");
  check("{\"topic\":\"\xff\",\"event\":\"e\",\"payload\":{}}", "bad_json",
        "invalid UTF-8 in JSON text");
  CHECK(pub.got.size() == 1);  // only the one within the depth limit
}

TEST_CASE("BroadcastApi maps publisher errors") {
  FakePublisher pub;
  BroadcastApi api(pub);
  std::string body = R"({"topic":"t","event":"e","payload":{}})";
  pub.next = make_error(Errc::queue_full, "queue for ewallet@10.0.0.2 is full");
  auto r = api.handle(post(body));
  CHECK(r.status == 503);
  CHECK(r.body == R"({"error":"queue_full","reason":"queue for ewallet@10.0.0.2 is full"})");
  REQUIRE(r.headers.size() == 1);
  CHECK(r.headers[0] == std::pair<std::string, std::string>("Retry-After", "1"));
  pub.next = make_error(Errc::not_connected, "no node connected");
  CHECK(api.handle(post(body)).status == 503);
  pub.next = make_error(Errc::io_error, "boom");
  CHECK(api.handle(post(body)).status == 500);
}

}  // namespace
}  // namespace beamlink::relay
