#include "relay/channel_socket_server.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <unordered_map>
#include <vector>

#include "common/loop_owned.hpp"

namespace beamlink::relay {

// One client: its WebSocket and its protocol core. States: Open → Closed
// (on_closed ran; retired from the server's LoopOwned set: freed on a later
// loop iteration, not inside the WebSocket's callback).
struct Client {
  std::unique_ptr<WebSocket> ws;
  std::unique_ptr<ChannelSession> session;
  bool slow = false;  // closed for its outbound queue: what was queued is dropped
  bool closed = false;
};

struct ChannelSocketServer::Impl {
  uv_loop_t* loop;
  ChannelHub& hub;
  ChannelOptions options;
  ChannelStats stats;
  bool closing = false;
  // The last broadcast's frame, encoded once for all its listeners (they
  // are called one after another with the same v2_text; holding it keeps
  // its address from being reused).
  std::shared_ptr<const std::string> framed_text;
  SharedFrame frame;
  LoopOwned<Client> clients;
  Liveness alive;  // what the upgrade handlers given to HttpServers watch

  Impl(uv_loop_t* l, ChannelHub& h, ChannelOptions o) : loop(l), hub(h), options(o), clients(l) {}

  std::optional<Response> check(const Request& req) {
    std::optional<Response> refusal;
    if (closing) {
      refusal = Response::error(503, "unavailable", "the relay is shutting down");
    } else if (clients.size() >= options.max_sockets) {
      refusal = Response::error(503, "too_many_websockets",
                                std::to_string(clients.size()) +
                                    " WebSocket clients are connected, the most allowed "
                                    "(--relay-max-websockets): retry later");
      refusal->headers.emplace_back("Retry-After", "1");
    } else if (auto vsn = query_param(req.query, "vsn");
               vsn && !vsn->empty() && !vsn->starts_with("2.")) {
      refusal = Response::error(
          400, "bad_request",
          "unsupported vsn \"" + *vsn +
              "\": this relay speaks Phoenix Channels V2 only (the phoenix client's vsn=2.0.0)");
    } else {
      refusal = check_websocket_handshake(req);
    }
    if (refusal) ++stats.upgrades_refused;
    return refusal;
  }

  void take(const Request& req, UvHandle<uv_tcp_t> tcp, std::string leftover) {
    if (closing) return;  // dropping tcp closes it
    Client* c = clients.add(std::make_unique<Client>());
    WebSocket::Callbacks cb;
    cb.on_text = [this, c](std::string_view text) { on_text(c, text); };
    cb.on_binary = [this, c](std::string_view) {
      ++stats.protocol_errors;
      spdlog::info("relay websocket: closing a client that sent a binary message");
      c->ws->close(CloseCode::unsupported_data,
                   "binary messages are not supported (Phoenix V2 JSON only)");
    };
    cb.on_closed = [this, c](const WebSocket::Closed& info) { on_closed(c, info); };
    c->ws = std::make_unique<WebSocket>(loop, std::move(tcp), options.websocket, std::move(cb),
                                        &stats.output);
    c->session = std::make_unique<ChannelSession>(
        hub, options.limits, stats, [this, c](const ChannelBroadcast& b) { deliver(c, b); });
    ++stats.sockets_open;
    ++stats.sockets_total;
    c->ws->start(websocket_handshake_response(req), std::move(leftover));
  }

  void on_text(Client* c, std::string_view text) {
    if (c->closed || !c->ws->open()) return;
    auto out = c->session->handle_text(text);
    for (auto& reply : out.frames) {
      if (!sent(c, c->ws->send_text(reply))) return;
    }
    if (out.close) {
      spdlog::info("relay websocket: closing a client: {}", out.close->reason);
      c->ws->close(out.close->code, out.close->reason);
    }
  }

  void deliver(Client* c, const ChannelBroadcast& b) {
    if (c->closed || !b.v2_text) return;
    if (b.v2_text != framed_text) {
      framed_text = b.v2_text;
      frame = std::make_shared<const std::string>(encode_server_frame(Opcode::text, *b.v2_text));
    }
    if (sent(c, c->ws->send_frame(frame))) ++stats.broadcasts_sent;
  }

  // A frame queued, or not; a client whose queue would overflow is closed
  // (counted), its queue discarded.
  bool sent(Client* c, WebSocket::Send result) {
    switch (result) {
      case WebSocket::Send::queued:
        return true;
      case WebSocket::Send::closing:
        return false;
      case WebSocket::Send::overflow:
        break;
    }
    ++stats.slow_client_closes;
    c->slow = true;
    auto reason =
        "slow client: over " + std::to_string(options.websocket.max_outbound) + " bytes queued";
    spdlog::warn("relay websocket: closing a client: {}", reason);
    c->ws->close(CloseCode::policy_violation, reason, WebSocket::Pending::discard);
    return false;
  }

  void on_closed(Client* c, const WebSocket::Closed& info) {
    c->closed = true;
    --stats.sockets_open;
    if (info.idle) ++stats.idle_closes;
    if (info.unsent > 0 && !c->slow) {
      ++stats.unsent_closes;
      spdlog::info("relay websocket: a connection closed with {} bytes unsent (close code {}{}{})",
                   info.unsent, info.code, info.error ? ", " : "",
                   info.error ? uv_strerror(info.error) : "");
    }
    // wslay's own closes: a frame breaking RFC 6455, a message over the
    // limit; and ours for invalid UTF-8 (the others are counted where sent).
    auto code = static_cast<CloseCode>(info.code);
    if (!info.by_peer && (code == CloseCode::protocol_error || code == CloseCode::message_too_big ||
                          code == CloseCode::invalid_payload)) {
      ++stats.protocol_errors;
    }
    // Freed (and unsubscribed) on a later iteration: we are inside the
    // WebSocket's callback, maybe inside the hub's listener.
    clients.retire(c);
  }

  void close_all() {
    closing = true;
    for (auto* c : clients.live()) {
      if (!c->closed) c->ws->close(CloseCode::going_away, "server shutting down");
    }
  }
};

ChannelSocketServer::ChannelSocketServer(uv_loop_t* loop, ChannelHub& hub, ChannelOptions options)
    : impl_(std::make_unique<Impl>(loop, hub, options)) {}

// Every client is destroyed with impl_ (its TCP connection closes then).
ChannelSocketServer::~ChannelSocketServer() = default;

void ChannelSocketServer::attach(HttpServer& http, std::string path) {
  Impl* impl = impl_.get();
  UpgradeHandler h;
  h.check = [impl, alive = impl->alive.watch()](const Request& req) -> std::optional<Response> {
    if (!alive) return Response::error(503, "unavailable", "the WebSocket endpoint is gone");
    return impl->check(req);
  };
  h.take = [impl, alive = impl->alive.watch()](Request req, UvHandle<uv_tcp_t> tcp,
                                               std::string leftover) {
    if (!alive) return;  // dropping tcp closes it
    impl->take(req, std::move(tcp), std::move(leftover));
  };
  http.on_upgrade(std::move(path), std::move(h));
}

const ChannelStats& ChannelSocketServer::stats() const {
  return impl_->stats;
}

std::size_t ChannelSocketServer::sockets() const {
  return impl_->clients.size();
}

void ChannelSocketServer::close() {
  impl_->close_all();
}

void ChannelSocketServer::write_metrics(MetricsWriter& m) const {
  using T = MetricsWriter::Type;
  const auto& c = stats();
  m.gauge("beamlink_relay_websockets_open", "Open WebSocket (Phoenix channel) connections.",
          static_cast<double>(c.sockets_open));
  m.counter("beamlink_relay_websockets_total", "WebSocket connections accepted.", c.sockets_total);
  m.counter("beamlink_relay_websocket_upgrades_refused_total",
            "WebSocket handshakes answered with an HTTP error.", c.upgrades_refused);
  m.family("beamlink_relay_channel_events_total", T::counter,
           "Phoenix channel events from clients, by kind.");
  m.sample("beamlink_relay_channel_events_total", c.joins, {{"kind", "join"}});
  m.sample("beamlink_relay_channel_events_total", c.joins_refused, {{"kind", "join_refused"}});
  m.sample("beamlink_relay_channel_events_total", c.leaves, {{"kind", "leave"}});
  m.sample("beamlink_relay_channel_events_total", c.pushes, {{"kind", "push"}});
  m.sample("beamlink_relay_channel_events_total", c.pushes_refused, {{"kind", "push_refused"}});
  m.sample("beamlink_relay_channel_events_total", c.heartbeats, {{"kind", "heartbeat"}});
  m.sample("beamlink_relay_channel_events_total", c.unmatched, {{"kind", "unmatched_topic"}});
  m.counter("beamlink_relay_websocket_broadcasts_total",
            "Broadcast frames queued to WebSocket clients.", c.broadcasts_sent);
  m.family("beamlink_relay_websocket_closes_total", T::counter,
           "WebSocket connections the relay closed, by reason.");
  m.sample("beamlink_relay_websocket_closes_total", c.slow_client_closes,
           {{"reason", "slow_client"}});
  m.sample("beamlink_relay_websocket_closes_total", c.idle_closes, {{"reason", "idle"}});
  m.sample("beamlink_relay_websocket_closes_total", c.protocol_errors,
           {{"reason", "protocol_error"}});
  m.counter("beamlink_relay_websocket_unsent_closes_total",
            "WebSocket connections closed with bytes still unwritten (the client left or was "
            "stuck).",
            c.unsent_closes);
  m.counter("beamlink_relay_websocket_frames_out_total", "Frames written to WebSocket clients.",
            c.output.buffers);
  m.counter("beamlink_relay_websocket_writes_total",
            "Write calls to WebSocket clients (each carries one or more frames).", c.output.writes);
  m.counter("beamlink_relay_websocket_bytes_out_total", "Bytes written to WebSocket clients.",
            c.output.bytes);
}

}  // namespace beamlink::relay
