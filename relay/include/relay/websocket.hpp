// WebSocket (RFC 6455) for the relay: a server-side connection over a
// uv_tcp_t taken from the HttpServer (UpgradeHandler::take); the handshake
// and frame encoding it uses, without I/O, are in websocket_protocol.hpp. wslay parses what the
// client sends and runs the close handshake; every byte sent goes through one ordered output queue.
//
// WebSocket contract:
// - Thread: the loop's thread only.
// - Received: complete messages (fragments reassembled by wslay). A text
//   message is valid UTF-8 (else the socket closes with 1007, RFC 6455 8.1:
//   wslay 1.1 checks it, without a reason; we check again with simdjson);
//   one over max_message closes with 1009. Pings are answered with pongs, a
//   close frame with a close frame (RFC 6455 5.5), both by wslay.
// - Sent: send_text() encodes a whole message; send_frame() queues one
//   already encoded (encode_server_frame), shared with other sockets without
//   a copy. Frames, replies and wslay's control frames (pong, close) go on
//   the wire in the order they were queued. Nothing is written from inside
//   the call: a socket with frames queued is flushed once per loop iteration
//   (an idle handle, active only then), all of its queue in one uv_write
//   (writev), with at most one uv_write in flight; what is queued meanwhile
//   goes in the next one. Queued and unwritten bytes (the logical frame
//   sizes, shared or not) are bounded by max_outbound: a frame that would
//   exceed it is refused (overflow) and nothing is queued; the caller
//   decides (the channel server closes the socket with 1008). Frames queued
//   while open are written in order; none is dropped silently while the
//   socket is open.
// - close() queues a close frame (RFC 6455 7.1.2) after the frames already
//   queued (Pending::send) or instead of those not yet handed to uv_write
//   (Pending::discard, for a client too slow to keep). The TCP connection
//   closes when both close frames have passed, when the client closes it,
//   or when the client is stuck: no write completed for close_timeout since
//   close() (the queue drains first as long as the client reads), or
//   drain_timeout after close() whatever happens. A client that sends
//   nothing for idle_timeout is closed with 1000 "idle timeout" (as cowboy,
//   Phoenix's server, does on its idle timeout); any bytes received reset
//   it, however much output is queued, and bytes already waiting in the
//   kernel are read before the timeout is acted upon.
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

#include "common/uv_handle.hpp"
#include "relay/http_message.hpp"
#include "relay/websocket_protocol.hpp"

namespace beamlink::relay {

struct WebSocketOptions {
  std::size_t max_message = 1u << 20;             // received message bytes; over it: close 1009
  std::size_t max_outbound = 1u << 20;            // queued, unwritten bytes; see send_text
  std::chrono::milliseconds idle_timeout{60000};  // no bytes from the client: close 1000
  // Closing: no write completed (or our close frame unanswered) this long: drop TCP.
  std::chrono::milliseconds close_timeout{5000};
  std::chrono::milliseconds drain_timeout{30000};  // close() to TCP close, at most
};

class WebSocket {
 public:
  struct Closed {
    std::uint16_t code = 1006;  // the close code we sent, else the client's, else 1006
    bool clean = false;         // both close frames passed before the TCP close
    bool idle = false;          // closed for idle_timeout
    bool by_peer = false;       // the client sent the first close frame
    std::size_t unsent = 0;     // bytes queued or in flight when the TCP connection closed
    // The libuv error that ended it, else 0: UV_EOF for the client's FIN,
    // UV_ECONNRESET for an aborted connection (see was_reset in the .cpp).
    int error = 0;
  };
  struct Callbacks {
    std::function<void(std::string_view text)> on_text;
    // Unset: a binary message closes the socket with 1003.
    std::function<void(std::string_view data)> on_binary;
    std::function<void(const Closed&)> on_closed;
  };

  // Takes ownership of `tcp` (see UpgradeHandler::take): open, `data`
  // unused. Nothing happens until start(). `output`, when set, must outlive
  // the WebSocket.
  WebSocket(uv_loop_t* loop, UvHandle<uv_tcp_t> tcp, WebSocketOptions options, Callbacks callbacks,
            WebSocketOutputStats* output = nullptr);
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
  // `frame`: one whole text or binary frame (encode_server_frame), not null.
  Send send_frame(SharedFrame frame);

  // What happens to the frames queued and not yet handed to uv_write.
  enum class Pending {
    send,     // written before the close frame
    discard,  // dropped (a slow client's): the close frame follows what is in flight
  };
  // Queues a close frame (reason cut to 123 bytes) once; later calls and
  // calls after the client's close frame do nothing.
  void close(CloseCode code, std::string_view reason, Pending pending = Pending::send);

  bool open() const;                 // not closing, not closed
  std::size_t queued_bytes() const;  // what counts against max_outbound

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamlink::relay
