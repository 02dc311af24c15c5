// WebSocket (RFC 6455) for the relay: the opening handshake as pure
// functions over an HTTP Request, and a server-side connection that drives
// wslay's event API over a uv_tcp_t taken from the HttpServer
// (UpgradeHandler::take).
//
// WebSocket contract:
// - Thread: the loop's thread only.
// - Received: complete messages (fragments reassembled by wslay). A text
//   message is valid UTF-8 (else the socket closes with 1007, RFC 6455 8.1:
//   wslay 1.1 checks it, without a reason; we check again with simdjson);
//   one over max_message closes with 1009. Pings are answered with pongs, a
//   close frame with a close frame (RFC 6455 5.5), both by wslay.
// - Sent: send_text() queues a whole message. What is queued and not yet
//   written (wslay's queue, plus bytes handed to uv_write) is bounded by
//   max_outbound: a message that would exceed it is refused (overflow) and
//   nothing is queued; the caller decides (the channel server closes the
//   socket with 1008). Messages queued while open are written in order; none
//   is dropped silently while the socket is open.
// - close() starts the closing handshake (RFC 6455 7.1.2); the TCP
//   connection closes when both close frames have passed, when the client
//   closes it, or close_timeout after ours was queued. A client that sends
//   no bytes for idle_timeout is closed with 1000 "idle timeout" (as cowboy,
//   Phoenix's server, does on its idle timeout).
// - Callbacks run from libuv callbacks, never from inside a member call
//   (bytes that came with the upgrade request are processed on a later loop
//   iteration). They must not destroy the WebSocket; destroy it later (e.g.
//   with beamlink::defer). on_closed is called exactly once, when the TCP
//   connection is closed (not when the owner destroys the WebSocket).
// - The destructor closes the TCP connection at once (no close frame);
//   handles are freed in their close callbacks, so run the loop once more
//   before uv_loop_close.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
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

struct WebSocketOptions {
  std::size_t max_message = 1u << 20;             // received message bytes; over it: close 1009
  std::size_t max_outbound = 4u << 20;            // queued, unwritten bytes; see send_text
  std::chrono::milliseconds idle_timeout{60000};  // no bytes from the client: close 1000
  std::chrono::milliseconds close_timeout{5000};  // our close frame unanswered: drop TCP
};

class WebSocket {
 public:
  struct Closed {
    std::uint16_t code = 1006;  // the close code we sent, else the client's, else 1006
    bool clean = false;         // both close frames passed before the TCP close
    bool idle = false;          // closed for idle_timeout
    bool by_peer = false;       // the client sent the first close frame
  };
  struct Callbacks {
    std::function<void(std::string_view text)> on_text;
    // Unset: a binary message closes the socket with 1003.
    std::function<void(std::string_view data)> on_binary;
    std::function<void(const Closed&)> on_closed;
  };

  // Takes ownership of `tcp` (see UpgradeHandler::take). Nothing happens
  // until start().
  WebSocket(uv_loop_t* loop, uv_tcp_t* tcp, WebSocketOptions options, Callbacks callbacks);
  ~WebSocket();
  WebSocket(const WebSocket&) = delete;
  WebSocket& operator=(const WebSocket&) = delete;

  // Writes `handshake_response` (the 101), starts reading and the idle timer;
  // `leftover` (bytes sent after the upgrade request) is processed on a later
  // loop iteration. Calls no callback from inside.
  void start(std::string handshake_response, std::string leftover);

  enum class Send {
    queued,
    closing,   // close() was called or the socket is closed: not queued
    overflow,  // would take the outbound queue over max_outbound: not queued
  };
  Send send_text(std::string_view text);

  // Queues a close frame (reason cut to 123 bytes) once; later calls and
  // calls after the client's close frame do nothing.
  void close(CloseCode code, std::string_view reason);

  bool open() const;                 // not closing, not closed
  std::size_t queued_bytes() const;  // what counts against max_outbound

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamlink::relay
