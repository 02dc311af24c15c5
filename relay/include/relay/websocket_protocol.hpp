// WebSocket (RFC 6455) without I/O: the opening handshake as pure functions
// over an HTTP Request, the server's frame encoder, close codes, and the
// output counters a connection keeps. What the protocol cores (Phoenix
// Channels) need, without libuv; the connection itself is websocket.hpp.
//
// Thread: none (pure functions and plain values).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "relay/http_message.hpp"

namespace beamlink::relay {

// RFC 6455 7.4.1 status codes used here.
enum class CloseCode : std::uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,
  unsupported_data = 1003,
  abnormal = 1006,  // never sent: the connection closed without a close frame
  invalid_payload = 1007,
  policy_violation = 1008,
  message_too_big = 1009,
  internal_error = 1011,
};

// RFC 6455 4.2.2 step 5.4: base64(SHA-1(key ++ "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")).
std::string websocket_accept(std::string_view key);

// RFC 6455 4.2.1: checks a client's opening handshake. std::nullopt when it
// is one; otherwise the answer to send instead of 101:
//   400  not GET, not HTTP/1.1 or later, no Host, Sec-WebSocket-Key missing
//        or not the base64 of 16 bytes
//   426  no "Upgrade: websocket" or no "upgrade" token in Connection, or a
//        Sec-WebSocket-Version other than 13 (with "Sec-WebSocket-Version: 13"
//        and "Upgrade: websocket", RFC 6455 4.2.2 and RFC 9110 15.5.22)
std::optional<Response> check_websocket_handshake(const Request& req);

// The bytes of the 101 Switching Protocols answer to a checked handshake.
std::string websocket_handshake_response(const Request& req);

// RFC 6455 5.2 opcodes of the frames a server sends.
enum class Opcode : std::uint8_t {
  text = 0x1,
  binary = 0x2,
  close = 0x8,
  ping = 0x9,
  pong = 0xA,
};

// RFC 6455 5.2: the header of a final (FIN set), unmasked frame: the opcode
// byte, then the payload length in 7 bits (0-125), or 126 and 16 bits
// (126-65535), or 127 and 64 bits, in network byte order. 2, 4 or 10 bytes.
std::string server_frame_header(Opcode opcode, std::uint64_t payload_length);

// A whole frame: server_frame_header then the payload.
std::string encode_server_frame(Opcode opcode, std::string_view payload);

// An encoded frame, shared by every socket it is queued to.
using SharedFrame = std::shared_ptr<const std::string>;

// Output counters, shared by the sockets of a server.
struct WebSocketOutputStats {
  std::uint64_t buffers = 0;  // handed to uv_write: a frame each (wslay's output: one or more)
  std::uint64_t writes = 0;   // uv_write calls (each a writev of its buffers)
  std::uint64_t bytes = 0;    // handed to uv_write
};

}  // namespace beamlink::relay
