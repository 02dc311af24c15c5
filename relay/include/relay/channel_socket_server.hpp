// The relay's WebSocket endpoint (DESIGN.md, "Relay contract"): Phoenix
// Channels V2 over RFC 6455, so the official `phoenix` JavaScript client
// connects unchanged:
//
//   import {Socket} from "phoenix"
//   const socket = new Socket("ws://relay:4000/socket", {params: {token}})
//   socket.connect()                      // GET /socket/websocket?token=…&vsn=2.0.0
//   socket.channel("room:lobby").join()   // subscribes to cluster broadcasts
//
// The adapter between the HttpServer's upgrade hand-off, a WebSocket per
// client and a ChannelSession (the protocol core, phoenix_channels.hpp) per
// client, over one ChannelHub.
//
// Usage:
//   ChannelSocketServer ws(loop, hub, {});
//   ws.attach(http);            // before http serves the path
//   ...
//   ws.close();                 // close frames 1001 to every client
//
// Contract:
// - Thread: the loop's thread only.
// - attach() registers the path with HttpServer::on_upgrade. The handshake:
//   the bearer token (when the HttpServer has one) as a header or `?token=`
//   (401 otherwise, by the HttpServer); RFC 6455 checks (400/426, see
//   check_websocket_handshake); `vsn` absent or 2.x, else 400 (only the V2
//   serializer is spoken); 503 after close().
// - Per client: the WebSocket limits of ChannelOptions (max message → 1009,
//   invalid UTF-8 → 1007, binary message → 1003, idle → 1000); a malformed
//   Phoenix message → 1008 with the reason (logged, counted in
//   protocol_errors); a broadcast or reply that would take the client's
//   outbound queue over max_outbound → 1008 "slow client" (counted in
//   slow_client_closes, logged): what was queued for it and not yet written
//   is dropped with it; nothing is dropped while a socket stays open. Other
//   closes (idle, protocol errors, close()) send the queue first.
// - Broadcasts reach exactly the sockets joined to their topic, as one
//   WebSocket frame per broadcast encoded once from the hub's shared v2_text
//   and queued to every socket without a copy; each socket writes what it
//   has queued once per loop iteration (WebSocket, websocket.hpp), so under
//   load many frames go in one syscall. Memory per client: max_outbound of
//   frames (counted at their full size), held as pointers.
// - The hub and the HttpServer it is attached to may outlive this object
//   (upgrades that arrive later get 503). The hub must outlive it. The
//   destructor closes every client's TCP connection at once (no close
//   frame); run the loop once more before uv_loop_close.
#pragma once

#include <uv.h>

#include <cstddef>
#include <memory>
#include <string>

#include "relay/channel_hub.hpp"
#include "relay/http_server.hpp"
#include "relay/phoenix_channels.hpp"
#include "relay/websocket.hpp"

namespace beamlink::relay {

struct ChannelOptions {
  WebSocketOptions websocket;
  ChannelLimits limits;
  // Open WebSocket clients; a handshake beyond it is answered 503.
  std::size_t max_sockets = 16384;
};

class ChannelSocketServer {
 public:
  ChannelSocketServer(uv_loop_t* loop, ChannelHub& hub, ChannelOptions options = {});
  ~ChannelSocketServer();
  ChannelSocketServer(const ChannelSocketServer&) = delete;
  ChannelSocketServer& operator=(const ChannelSocketServer&) = delete;

  // Serves Phoenix sockets on `path` of `http` (the phoenix client appends
  // "/websocket" to the URL it is given: "ws://host/socket" →
  // "/socket/websocket"). May be called for several servers or paths.
  void attach(HttpServer& http, std::string path = "/socket/websocket");

  const ChannelStats& stats() const;
  std::size_t sockets() const;  // open WebSocket connections
  // WebSocket clients, channel events by kind, broadcasts, closes by reason,
  // output.
  void write_metrics(MetricsWriter& m) const;

  // Refuses new sockets (503) and starts the closing handshake (1001
  // "server shutting down") on every open one; each TCP connection closes
  // when its client answers, or after the close timeout.
  void close();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamlink::relay
