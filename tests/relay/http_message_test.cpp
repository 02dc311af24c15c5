// The HTTP/1.1 request parser (http-parser, no I/O) fed whole, split at every
// point and byte by byte; response serialization.
#include "relay/http_message.hpp"

#include <doctest/doctest.h>

#include <string>
#include <vector>

#include "common/utf8.hpp"

namespace beamlink::relay {
namespace {

const std::string kTwo =
    "POST /v1/broadcast?x=1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
    "Content-Length: 7\r\n\r\n{\"a\":1}"
    "GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n";

void check_two(const std::vector<Request>& out) {
  REQUIRE(out.size() == 2);
  CHECK(out[0].method == "POST");
  CHECK(out[0].target == "/v1/broadcast?x=1");
  CHECK(out[0].path == "/v1/broadcast");
  CHECK(out[0].query == "x=1");
  CHECK(out[0].body == "{\"a\":1}");
  CHECK(out[0].keep_alive);
  CHECK(out[0].header("content-type") == "application/json");
  CHECK(out[0].header("host") == "a");
  CHECK_FALSE(out[0].header("x-missing").has_value());
  CHECK(out[1].method == "GET");
  CHECK(out[1].path == "/healthz");
  CHECK(out[1].body.empty());
  CHECK_FALSE(out[1].keep_alive);
}

std::vector<Request> feed_in_pieces(const std::string& s, std::size_t piece) {
  RequestParser p;
  std::vector<Request> out;
  for (std::size_t i = 0; i < s.size(); i += piece) {
    auto fed = p.feed(std::span<const char>(s.data() + i, std::min(piece, s.size() - i)), out);
    REQUIRE_FALSE(fed.error.has_value());
  }
  CHECK_FALSE(p.finish().has_value());
  return out;
}

TEST_CASE("RequestParser parses pipelined requests whole") {
  RequestParser p;
  std::vector<Request> out;
  auto fed = p.feed(kTwo, out);
  CHECK(fed.consumed == kTwo.size());
  CHECK_FALSE(fed.error.has_value());
  check_two(out);
}

TEST_CASE("RequestParser parses byte by byte and split anywhere") {
  check_two(feed_in_pieces(kTwo, 1));
  for (std::size_t cut = 1; cut < kTwo.size(); ++cut) {
    RequestParser p;
    std::vector<Request> out;
    REQUIRE_FALSE(p.feed(std::span<const char>(kTwo.data(), cut), out).error.has_value());
    REQUIRE_FALSE(
        p.feed(std::span<const char>(kTwo.data() + cut, kTwo.size() - cut), out).error.has_value());
    check_two(out);
  }
}

TEST_CASE("RequestParser handles chunked bodies and HTTP/1.0") {
  std::string chunked =
      "POST /x HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
  auto out = feed_in_pieces(chunked, 1);
  REQUIRE(out.size() == 1);
  CHECK(out[0].body == "abcde");
  auto old = feed_in_pieces("GET / HTTP/1.0\r\n\r\n", 3);
  REQUIRE(old.size() == 1);
  CHECK_FALSE(old[0].keep_alive);
  CHECK(old[0].http_minor == 0);
  auto kept = feed_in_pieces("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 5);
  REQUIRE(kept.size() == 1);
  CHECK(kept[0].keep_alive);
}

TEST_CASE("RequestParser limits the body size") {
  ParserLimits l;
  l.max_body = 4;
  {
    RequestParser p(l);
    std::vector<Request> out;
    auto fed = p.feed(std::string_view("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\n"), out);
    REQUIRE(fed.error.has_value());
    CHECK(fed.error->status == 413);
    CHECK(fed.error->reason == "request body over the limit of 4 bytes");
    CHECK(out.empty());
    CHECK(p.feed(std::string_view("more"), out).consumed == 0);
  }
  {
    RequestParser p(l);
    std::vector<Request> out;
    auto fed =
        p.feed(std::string_view(
                   "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n"),
               out);
    REQUIRE(fed.error.has_value());
    CHECK(fed.error->status == 413);
  }
  {
    RequestParser p(l);
    std::vector<Request> out;
    auto fed = p.feed(std::string_view("POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"), out);
    CHECK_FALSE(fed.error.has_value());
    REQUIRE(out.size() == 1);
  }
}

TEST_CASE("RequestParser limits the header size") {
  ParserLimits l;
  l.max_header_bytes = 64;
  RequestParser p(l);
  std::vector<Request> out;
  std::string big = "GET / HTTP/1.1\r\nX-Big: " + std::string(100, 'x') + "\r\n\r\n";
  std::optional<ParseError> err;
  for (char c : big) {
    auto fed = p.feed(std::span<const char>(&c, 1), out);
    if (fed.error) {
      err = fed.error;
      break;
    }
  }
  REQUIRE(err.has_value());
  CHECK(err->status == 431);
  CHECK(err->error == "headers_too_large");
}

TEST_CASE("RequestParser rejects malformed requests") {
  RequestParser p;
  std::vector<Request> out;
  auto fed = p.feed(std::string_view("GET / HTTP/1.1\r\nBad Header\r\n\r\n"), out);
  REQUIRE(fed.error.has_value());
  CHECK(fed.error->status == 400);
  CHECK(fed.error->reason.starts_with("malformed HTTP request"));
}

TEST_CASE("RequestParser reports a request cut short by EOF") {
  RequestParser p;
  std::vector<Request> out;
  CHECK_FALSE(
      p.feed(std::string_view("POST / HTTP/1.1\r\nContent-Length: 9\r\n\r\nab"), out).error);
  auto err = p.finish();
  REQUIRE(err.has_value());
  CHECK(err->status == 400);
  RequestParser idle;
  CHECK_FALSE(idle.finish().has_value());
}

TEST_CASE("RequestParser stops after an upgrade request") {
  RequestParser p;
  std::vector<Request> out;
  std::string up =
      "GET /socket/websocket HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "\r\n";
  std::string s = up + "\x81\x05hello";
  auto fed = p.feed(s, out);
  CHECK_FALSE(fed.error.has_value());
  CHECK(fed.consumed == up.size());
  REQUIRE(out.size() == 1);
  CHECK(out[0].upgrade);
}

// The one query-string parser: the bearer token (`?token=`, HttpServer) and
// the Phoenix serializer version (`?vsn=`, ChannelSocketServer) both use it.
TEST_CASE("query_param finds a name and percent-decodes its value") {
  CHECK(query_param("token=abc&vsn=2.0.0", "token") == "abc");
  CHECK(query_param("token=abc&vsn=2.0.0", "vsn") == "2.0.0");
  CHECK(query_param("vsn=2.0.0", "token") == std::nullopt);
  CHECK(query_param("", "vsn") == std::nullopt);
  CHECK(query_param("token=a%2Bb+c%3d%2f", "token") == "a+b c=/");  // '+' is a space
  CHECK(query_param("t=%zz%4", "t") == "%zz%4");                    // not an escape: kept
  CHECK(query_param("&&vsn=2.0.0&", "vsn") == "2.0.0");             // empty pairs skipped
}

TEST_CASE("query_param takes the first of repeated names and keeps empty values") {
  CHECK(query_param("vsn=1.0.0&vsn=2.0.0", "vsn") == "1.0.0");
  CHECK(query_param("token=&token=x", "token") == "");
  CHECK(query_param("token&vsn=2.0.0", "token") == "");  // no '=': the empty value
  CHECK(query_param("vsn=", "vsn") == "");
  // Names are compared as sent: neither decoded nor matched by prefix.
  CHECK(query_param("tok%65n=x&tokens=y&xtoken=z", "token") == std::nullopt);
}

TEST_CASE("serialize writes status line and framing headers") {
  Response r = Response::error(503, "queue_full", "node \"a\" is busy");
  r.headers.emplace_back("Retry-After", "1");
  std::string body = R"({"error":"queue_full","reason":"node \"a\" is busy"})";
  CHECK(serialize(r, true) ==
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Type: "
        "application/json\r\nContent-Length: " +
            std::to_string(body.size()) + "\r\n\r\n" + body);
  Response empty;
  empty.status = 200;
  CHECK(serialize(empty, false) ==
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
  CHECK(serialize(empty, true, true) ==
        "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: keep-alive\r\n\r\n");
}

TEST_CASE("error bodies are valid UTF-8 and bounded whatever the request echoed") {
  // A path with a byte that is not UTF-8, and one of 10,000 bytes.
  Response bad = Response::error(404, "not_found", "no route for /a\xff\xc3");
  CHECK(valid_utf8(bad.body));
  CHECK(bad.body.find("/a\xEF\xBF\xBD") != std::string::npos);  // U+FFFD in its place
  std::string long_path(10000, 'x');
  long_path[511] = '\xC3';  // é cut by the limit
  long_path[512] = '\xA9';
  Response big = Response::error(404, "not_found", long_path);
  CHECK(valid_utf8(big.body));
  CHECK(big.body.size() < 600);
  CHECK(big.body.find("...") != std::string::npos);
}

}  // namespace
}  // namespace beamlink::relay
