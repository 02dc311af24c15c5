// An HTTP/1.1 server on a libuv uv_tcp_t listener: one RequestParser per
// connection, keep-alive, pipelining (responses in request order), limits
// (413 for a body over the limit, 431 for headers), an optional bearer token
// (401 without it), and a graceful close. A small Router dispatches on
// method and path.
//
// Contract:
// - Thread: the loop's thread only, like the loop itself.
// - The Handler (http_handler.hpp) is called once per request, in order,
//   from a read callback. It answers through the Responder, then or later
//   (asynchronously), exactly once: later calls are ignored. A Responder may
//   be copied; when the last copy goes without an answer, the request gets
//   500. Answering after the connection closed (or the server was
//   destroyed) does nothing.
// - A handler must not destroy the HttpServer from inside the call.
// - close() stops accepting, closes idle connections now and the others once
//   their pending responses are written. The destructor closes everything at
//   once; handles are freed in their close callbacks, so run the loop once
//   more before uv_loop_close.
// - Ownership: the server owns its connections (LoopOwned, loop_owned.hpp);
//   a closed connection is destroyed on a later loop iteration, never inside
//   its own callback. Every handle is a UvHandle.
// - After a response that ends the connection (an error, Connection: close,
//   HTTP/1.0 without keep-alive) the server half-closes and discards what
//   the client still sends, up to `linger`, so the client reads the answer.
// - Upgrades (WebSocket): on_upgrade(path, …) hands the socket of an accepted
//   Upgrade request on `path` to another protocol; see UpgradeHandler.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.hpp"
#include "common/result.hpp"
#include "common/uv_handle.hpp"
#include "relay/http_handler.hpp"
#include "relay/http_message.hpp"

namespace beamlink::relay {

// Takes over the connection of an Upgrade request (RFC 9110 7.8) on one path.
struct UpgradeHandler {
  // Decides on a request for the path before any hand-off. A Response
  // refuses it: it is answered like any other response (an Upgrade
  // request's connection then closes). std::nullopt accepts it. Called for every request on the
  // path that passed the bearer token check, Upgrade or not (so a plain GET can get 426); a request
  // that is not an Upgrade (http-parser saw no "Connection: upgrade" with "Upgrade") and is
  // accepted anyway gets 400.
  std::function<std::optional<Response>(const Request&)> check;
  // Called once per accepted Upgrade, after every earlier response on the
  // connection (pipelining) has been queued for writing, from the loop (never
  // from inside on_upgrade). Ownership of `tcp` moves to the callee: it is
  // open, not reading, `tcp->data` is null, and the server never touches it
  // again (dropping the UvHandle closes it). Earlier responses may still be
  // in libuv's write queue: bytes the callee writes follow them in order.
  // `leftover` holds the bytes the client sent after the request (they
  // belong to the new protocol). The callee answers the upgrade itself
  // (e.g. 101 Switching Protocols).
  std::function<void(Request req, UvHandle<uv_tcp_t> tcp, std::string leftover)> take;
};

struct ServerOptions {
  std::string host = "127.0.0.1";  // an IPv4 or IPv6 literal
  int port = 0;                    // 0: any free port, read it back with port()
  ParserLimits limits;
  // When not empty, every request must carry "Authorization: Bearer <token>";
  // others get 401 and never reach the handler. On an upgrade path the token
  // may come as the query parameter `token` instead (browsers cannot set
  // headers on a WebSocket): "/socket/websocket?token=<token>&vsn=2.0.0".
  std::string bearer_token;
  std::size_t max_pipeline = 64;  // unanswered requests per connection before reading pauses
  std::chrono::milliseconds linger{2000};
  // Open connections (not counting those handed to an upgrade handler). At
  // the limit new ones are not accepted: they wait in the listen backlog
  // until a connection closes, as ranch's max_connections does (its
  // default, 1024, is this one's).
  std::size_t max_connections = 1024;
  // A connection with nothing to answer and nothing read for idle_timeout
  // is closed; a request not complete within request_timeout of its first
  // bytes is answered 408 (so neither idle nor trickling clients hold a
  // connection for ever). Checked every quarter of the shorter, at most 1 s.
  std::chrono::milliseconds idle_timeout{60000};
  std::chrono::milliseconds request_timeout{30000};
  // Responses written but not yet taken by the client, per connection: above
  // this many bytes reading pauses (a client that pipelines requests and
  // never reads the answers gets no more answers made), and resumes below
  // half of it. A connection whose unsent bytes make no progress for
  // send_timeout is closed (its client stopped reading).
  std::size_t max_unsent_bytes = 1 << 20;
  std::chrono::milliseconds send_timeout{30000};
};

class HttpServer {
 public:
  HttpServer(uv_loop_t* loop, ServerOptions options, Handler handler);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds and listens. Errors: invalid_argument (host is not an IP literal),
  // already_exists (address in use), io_error (source = uv errno).
  Result<void> listen();
  int port() const;  // the bound port, once listening
  // Serves `fd`, a connected stream socket of any family (an AF_UNIX
  // socketpair end: the WebSocket fuzz target drives the server through
  // one), as if it had been accepted; it counts against max_connections
  // like the others but is never refused for it. On success the server owns
  // the fd (closed with its connection); on failure (io_error with the uv
  // errno: not a stream socket, already in the loop) the fd stays the
  // caller's. Without listen() no timeouts are checked.
  Result<void> adopt(int fd);
  // Requests on `path` (exact match, query ignored) go to `handler` instead
  // of the Handler; a later call for the same path replaces the earlier.
  // Register before the first request on the path arrives.
  void on_upgrade(std::string path, UpgradeHandler handler);
  void close();
  std::size_t connection_count() const;
  // Times a connection had to wait in the backlog because max_connections
  // were open.
  std::uint64_t connection_waits() const;
  // Connections closed for idling, and requests answered 408.
  std::uint64_t idle_closes() const;
  std::uint64_t request_timeouts() const;
  // Connections closed because their client took no response bytes for send_timeout.
  std::uint64_t send_timeouts() const;
  // Open connections, backlog waits, timeouts by kind.
  void write_metrics(MetricsWriter& m) const;

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamlink::relay
