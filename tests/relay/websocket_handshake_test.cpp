// The WebSocket opening handshake (RFC 6455 4.2.1, 4.2.2) checked on
// Request values: what is accepted, and the status and headers of a refusal.
// And the server's frame encoder (RFC 6455 5.2) against the RFC's own
// examples (5.7) and each length encoding's bounds.
#include <doctest/doctest.h>

#include <string>

#include "relay/websocket.hpp"

using namespace beamlink::relay;

namespace {

Request handshake() {
  Request r;
  r.method = "GET";
  r.target = r.path = "/socket/websocket";
  r.upgrade = true;
  r.headers = {{"host", "relay:4000"},
               {"upgrade", "websocket"},
               {"connection", "Upgrade"},
               {"sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="},
               {"sec-websocket-version", "13"}};
  return r;
}

void set(Request& r, const std::string& name, std::string value) {
  for (auto& [n, v] : r.headers) {
    if (n == name) {
      v = std::move(value);
      return;
    }
  }
  r.headers.emplace_back(name, std::move(value));
}

void drop(Request& r, const std::string& name) {
  std::erase_if(r.headers, [&](const auto& h) { return h.first == name; });
}

std::string header(const Response& r, const std::string& name) {
  for (const auto& [n, v] : r.headers)
    if (n == name) return v;
  return "";
}

}  // namespace

TEST_CASE("websocket handshake accepts RFC 6455's example and answers 101") {
  auto req = handshake();
  CHECK_FALSE(check_websocket_handshake(req).has_value());
  CHECK(websocket_handshake_response(req) ==
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n");
}

TEST_CASE("websocket handshake takes header tokens case-insensitively in lists") {
  auto req = handshake();
  set(req, "upgrade", "WebSocket");
  set(req, "connection", "keep-alive, UPGRADE");
  CHECK_FALSE(check_websocket_handshake(req).has_value());
}

TEST_CASE("websocket handshake refuses what is not a WebSocket upgrade with 426") {
  for (auto name : {"upgrade", "connection"}) {
    auto req = handshake();
    drop(req, name);
    auto r = check_websocket_handshake(req);
    REQUIRE(r.has_value());
    CHECK(r->status == 426);
    CHECK(header(*r, "Sec-WebSocket-Version") == "13");
    CHECK(header(*r, "Upgrade") == "websocket");
  }
  auto req = handshake();
  set(req, "connection", "keep-alive");
  CHECK(check_websocket_handshake(req)->status == 426);
  set(req, "connection", "upgrade");
  set(req, "upgrade", "h2c");
  CHECK(check_websocket_handshake(req)->status == 426);
}

TEST_CASE("websocket handshake refuses another version with 426 naming 13") {
  for (auto v : {"8", "12", "14", ""}) {
    auto req = handshake();
    set(req, "sec-websocket-version", v);
    auto r = check_websocket_handshake(req);
    REQUIRE(r.has_value());
    CHECK(r->status == 426);
    CHECK(header(*r, "Sec-WebSocket-Version") == "13");
  }
}

TEST_CASE("websocket handshake refuses a bad key - method - version or missing Host with 400") {
  for (auto key :
       {"", "dGhlIHNhbXBsZSBub25jZQ", "dGhlIHNhbXBsZSBub25jZQ=", "dGhlIHNhbXBsZSBub25jZR==",
        "dGhlIHNhbXBsZSBub25j!Q==", "c2hvcnQ=", "dGhlIHNhbXBsZSBub25jZSEh"}) {
    auto req = handshake();
    set(req, "sec-websocket-key", key);
    auto r = check_websocket_handshake(req);
    REQUIRE_MESSAGE(r.has_value(), key);
    CHECK(r->status == 400);
  }
  auto req = handshake();
  drop(req, "sec-websocket-key");
  CHECK(check_websocket_handshake(req)->status == 400);

  req = handshake();
  req.method = "POST";
  CHECK(check_websocket_handshake(req)->status == 400);

  req = handshake();
  req.http_minor = 0;
  CHECK(check_websocket_handshake(req)->status == 400);

  req = handshake();
  drop(req, "host");
  CHECK(check_websocket_handshake(req)->status == 400);
}

namespace {

std::string bytes(std::initializer_list<unsigned> b) {
  std::string s;
  for (auto x : b) s.push_back(static_cast<char>(x));
  return s;
}

}  // namespace

TEST_CASE("websocket server frames - the RFC 6455 5.7 examples") {
  // "A single-frame unmasked text message"
  CHECK(encode_server_frame(Opcode::text, "Hello") == bytes({0x81, 0x05, 'H', 'e', 'l', 'l', 'o'}));
  // "256 bytes binary message in a single unmasked frame"
  std::string p256(256, 'x');
  CHECK(encode_server_frame(Opcode::binary, p256) == bytes({0x82, 0x7E, 0x01, 0x00}) + p256);
  // "64KiB binary message in a single unmasked frame"
  std::string p64k(65536, 'y');
  CHECK(encode_server_frame(Opcode::binary, p64k) ==
        bytes({0x82, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}) + p64k);
  // "Unmasked Ping request" with body "Hello"
  CHECK(encode_server_frame(Opcode::ping, "Hello") == bytes({0x89, 0x05, 'H', 'e', 'l', 'l', 'o'}));
}

TEST_CASE("websocket server frames - the 7 16 and 64-bit lengths at their bounds") {
  CHECK(server_frame_header(Opcode::text, 0) == bytes({0x81, 0x00}));
  CHECK(server_frame_header(Opcode::text, 125) == bytes({0x81, 0x7D}));
  CHECK(server_frame_header(Opcode::text, 126) == bytes({0x81, 0x7E, 0x00, 0x7E}));
  CHECK(server_frame_header(Opcode::text, 65535) == bytes({0x81, 0x7E, 0xFF, 0xFF}));
  CHECK(server_frame_header(Opcode::text, 65536) ==
        bytes({0x81, 0x7F, 0, 0, 0, 0, 0, 0x01, 0x00, 0x00}));
  CHECK(server_frame_header(Opcode::close, 0x0102030405060708ull) ==
        bytes({0x88, 0x7F, 1, 2, 3, 4, 5, 6, 7, 8}));
  for (std::size_t n : {0u, 125u, 126u, 65535u, 65536u}) {
    std::string payload(n, 'z');
    auto frame = encode_server_frame(Opcode::text, payload);
    auto header = server_frame_header(Opcode::text, n);
    CHECK(frame.size() == header.size() + n);
    CHECK(frame.substr(0, header.size()) == header);
    CHECK(frame.substr(header.size()) == payload);
    CHECK(header.size() == (n <= 125 ? 2u : n <= 65535 ? 4u : 10u));
  }
}

// RFC 6455 1.3 gives the digest b3 7a 4f 2c c0 62 4f 16 90 f6 46 06 cf 38 59 45
// b2 be c4 ea, base64 "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" (python3's hashlib agrees).
TEST_CASE("websocket accept matches the example of RFC 6455 section 1.3") {
  CHECK(websocket_accept("dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
}
