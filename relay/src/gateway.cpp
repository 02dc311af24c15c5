#include "relay/gateway.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <charconv>

#include "term/term_json.hpp"

namespace beamlink::relay {

Result<ListenAddress> parse_listen_address(std::string_view text) {
  auto bad = [&](std::string why) {
    return make_error(Errc::invalid_argument, "listen address \"" + std::string(text) +
                                                  "\": " + why +
                                                  " (expected IP:PORT, e.g. 127.0.0.1:7070 "
                                                  "or [::1]:7070)");
  };
  ListenAddress out;
  std::string_view port;
  if (text.starts_with('[')) {
    auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':')
      return bad("an IPv6 address needs [ADDR]:PORT");
    out.host = std::string(text.substr(1, close - 1));
    port = text.substr(close + 2);
  } else {
    auto colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("no port");
    out.host = std::string(text.substr(0, colon));
    port = text.substr(colon + 1);
    if (out.host.find(':') != std::string::npos) return bad("put an IPv6 address in brackets");
  }
  unsigned char buf[16];
  bool v6 = out.host.find(':') != std::string::npos;
  if (inet_pton(v6 ? AF_INET6 : AF_INET, out.host.c_str(), buf) != 1)
    return bad("\"" + out.host + "\" is not an IP address");
  auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), out.port);
  if (ec != std::errc() || p != port.data() + port.size() || out.port < 0 || out.port > 65535)
    return bad("bad port \"" + std::string(port) + "\"");
  return out;
}

bool is_loopback(std::string_view ip) {
  std::string s(ip);
  unsigned char buf[16];
  if (inet_pton(AF_INET, s.c_str(), buf) == 1) return buf[0] == 127;
  if (inet_pton(AF_INET6, s.c_str(), buf) == 1) {
    static const unsigned char one[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    return std::equal(buf, buf + 16, one);
  }
  return false;
}

Gateway::Gateway(uv_loop_t* loop, dist::Node& node, GatewayOptions options)
    : loop_(loop),
      node_(node),
      options_(std::move(options)),
      delivery_(node, options_.delivery),
      hub_(delivery_, {}, options_.broadcast.json),
      api_(hub_, options_.broadcast) {
  router_.add("POST", "/v1/broadcast", [this](const Request& req, Responder res) {
    ++stats_.broadcast_requests;
    auto r = api_.handle(req);
    ++stats_.broadcast_responses[r.status];
    res.respond(std::move(r));
  });
  router_.add("GET", "/healthz", [this](const Request&, Responder res) {
    ++stats_.health_checks;
    auto why = unhealthy_reason();
    Response r;
    if (why.empty()) {
      r.body = R"({"status":"ok","node":)" + term::json_quote(node_.name()) + R"(,"peers":)" +
               std::to_string(node_.connected_nodes().size()) + "}";
    } else {
      r = Response::error(503, "unhealthy", why);
    }
    res.respond(std::move(r));
  });
  router_.add("GET", "/metrics", [this](const Request&, Responder res) {
    ++stats_.scrapes;
    Response r;
    r.content_type = std::string(MetricsWriter::content_type);
    r.body = metrics_text();
    res.respond(std::move(r));
  });
  ServerOptions so;
  so.host = options_.listen.host;
  so.port = options_.listen.port;
  so.limits = options_.limits;
  so.bearer_token = options_.token;
  so.max_connections = options_.max_connections;
  server_ = std::make_unique<HttpServer>(
      loop_, so, [this](const Request& req, Responder res) { router_(req, std::move(res)); });
  channels_ = std::make_unique<ChannelSocketServer>(loop_, hub_, options_.channels);
  channels_->attach(*server_, "/socket/websocket");
}

Gateway::~Gateway() = default;

Error insecure_listen_error(const ListenAddress& a) {
  return make_error(Errc::insecure, "the relay would listen on " + a.host + ":" +
                                        std::to_string(a.port) +
                                        ", beyond loopback, without a token: set RELAY_TOKEN (or "
                                        "--relay-token-file) so every request must carry "
                                        "\"Authorization: Bearer <token>\", or listen on "
                                        "127.0.0.1");
}

Result<void> Gateway::start() {
  if (options_.token.empty() && !is_loopback(options_.listen.host))
    return insecure_listen_error(options_.listen);
  return server_->listen();
}

int Gateway::port() const {
  return server_->port();
}

void Gateway::close() {
  channels_->close();
  server_->close();
}

void Gateway::add_metrics(std::function<void(MetricsWriter&)> source) {
  metrics_.push_back(std::move(source));
}

std::string Gateway::unhealthy_reason() const {
  if (!node_.registered())
    return "not registered with epmd at " + node_.config().epmd_host + ":" +
           std::to_string(node_.config().epmd_port);
  if (node_.connected_nodes().empty()) {
    std::string why = "no BEAM node connected";
    if (peer_hint_) {
      auto hint = peer_hint_();
      if (!hint.empty()) why += " (" + hint + ")";
    }
    return why;
  }
  return {};
}

std::string Gateway::metrics_text() {
  using T = MetricsWriter::Type;
  MetricsWriter m;
  const auto& s = node_.stats();
  auto peers = node_.connected_nodes();
  m.gauge("beamlink_epmd_registered", "1 while registered with epmd.", node_.registered() ? 1 : 0);
  m.gauge("beamlink_peers", "Connected BEAM nodes.", static_cast<double>(peers.size()));
  m.family("beamlink_peer_up", T::gauge, "1 for each connected BEAM node.");
  for (auto& p : peers) m.sample("beamlink_peer_up", std::uint64_t{1}, {{"node", p}});
  m.counter("beamlink_connects_total", "Outbound connections established.", s.connects);
  m.family("beamlink_connect_failures_total", T::counter, "Outbound connects that failed.");
  for (auto& [why, n] : node_.connect_failures_by_reason())
    m.sample("beamlink_connect_failures_total", n, {{"reason", why}});
  m.counter("beamlink_accepts_total", "Inbound connections accepted.", s.accepts);
  m.family("beamlink_accept_failures_total", T::counter, "Inbound handshakes that failed.");
  for (auto& [why, n] : node_.accept_failures_by_reason())
    m.sample("beamlink_accept_failures_total", n, {{"reason", why}});
  m.counter("beamlink_frames_in_total", "Distribution frames received (ticks excluded).",
            s.frames_in);
  m.counter("beamlink_frames_out_total", "Distribution frames sent (ticks excluded).",
            s.frames_out);
  m.counter("beamlink_bytes_in_total", "Distribution bytes received.", s.bytes_in);
  m.counter("beamlink_bytes_out_total", "Distribution bytes sent.", s.bytes_out);
  m.counter("beamlink_malformed_frames_total", "Frames that could not be decoded.",
            s.malformed_frames);
  m.counter("beamlink_dropped_messages_total",
            "Messages to a name or pid that does not exist here.", s.dropped_messages);
  m.counter("beamlink_tick_timeouts_total", "Connections closed for missing ticks.",
            s.tick_timeouts);

  const auto& d = delivery_.stats();
  const auto& h = hub_.stats();
  m.family("beamlink_relay_queue_depth", T::gauge,
           "Messages accepted for a node and not yet written to it (every connected node, and "
           "any node with a queue).");
  {
    auto depths = delivery_.depths();
    for (auto& p : peers) depths.try_emplace(p, 0);
    for (auto& [n, depth] : depths)
      m.sample("beamlink_relay_queue_depth", std::uint64_t{depth}, {{"node", n}});
  }
  m.family("beamlink_relay_broadcasts_total", T::counter,
           "Broadcasts offered to the relay (HTTP and WebSocket), by outcome.");
  m.sample("beamlink_relay_broadcasts_total", h.published, {{"outcome", "accepted"}});
  m.sample("beamlink_relay_broadcasts_total", h.refused_not_connected,
           {{"outcome", "refused_not_connected"}});
  m.sample("beamlink_relay_broadcasts_total", h.refused_queue_full,
           {{"outcome", "refused_queue_full"}});
  m.sample("beamlink_relay_broadcasts_total", h.refused_other, {{"outcome", "refused_other"}});
  m.counter("beamlink_relay_messages_queued_total",
            "Messages queued for nodes (one per node per accepted broadcast).", d.accepted);
  m.counter("beamlink_relay_messages_delivered_total",
            "Queued messages written to their node's connection.", d.delivered);
  m.counter("beamlink_relay_messages_retried_total",
            "Messages put back in their queue because their connection closed before writing "
            "them (sent again on reconnect, or expired).",
            d.retried);
  m.family("beamlink_relay_messages_dropped_total", T::counter,
           "Queued messages dropped, by reason.");
  m.sample("beamlink_relay_messages_dropped_total", d.expired, {{"reason", "expired"}});
  m.family("beamlink_relay_http_broadcast_responses_total", T::counter,
           "POST /v1/broadcast answers by status (401, 413 and 431 are answered by the HTTP "
           "server before the route and are not counted here).");
  for (auto& [status, n] : stats_.broadcast_responses)
    m.sample("beamlink_relay_http_broadcast_responses_total", n,
             {{"status", std::to_string(status)}});
  m.counter("beamlink_relay_cluster_broadcasts_total",
            "Phoenix.Socket.Broadcast messages received from the cluster.", h.received);
  m.family("beamlink_relay_cluster_messages_ignored_total", T::counter,
           "Messages on subscribed topics that no client could read, by reason.");
  m.sample("beamlink_relay_cluster_messages_ignored_total", h.not_broadcast,
           {{"reason", "not_broadcast"}});
  m.sample("beamlink_relay_cluster_messages_ignored_total", h.undecodable,
           {{"reason", "undecodable"}});
  m.gauge("beamlink_relay_subscribed_topics", "Topics with local subscribers.",
          static_cast<double>(hub_.topics()));
  m.gauge("beamlink_relay_http_connections", "Open HTTP connections.",
          static_cast<double>(server_->connection_count()));
  m.counter("beamlink_relay_http_connection_waits_total",
            "Times new HTTP connections waited in the listen backlog because the most allowed "
            "were open (--relay-max-connections).",
            server_->connection_waits());
  m.family("beamlink_relay_http_timeouts_total", T::counter,
           "HTTP connections closed after idling, and requests answered 408 for taking too "
           "long.");
  m.sample("beamlink_relay_http_timeouts_total", server_->idle_closes(), {{"kind", "idle"}});
  m.sample("beamlink_relay_http_timeouts_total", server_->request_timeouts(),
           {{"kind", "request"}});
  const auto& c = channels_->stats();
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
  for (auto& src : metrics_) src(m);
  return m.take();
}

}  // namespace beamlink::relay
