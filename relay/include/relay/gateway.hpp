// The relay as `beamlink run` serves it: one HTTP listener (RELAY_LISTEN) on
// the node's loop with
//   POST /v1/broadcast   a channel broadcast into every configured pubsub
//   GET  /healthz        liveness: 200 when registered with epmd and
//                        connected to at least one peer, else 503 with the
//                        reason
//   GET  /readyz         readiness: as /healthz, and besides at least one
//                        connected node has one of the configured pubsubs
//                        (so a POST would be accepted) and the readiness
//                        check of set_readiness_check (if any) passes; 503
//                        with {"error":"not_ready","reason":...} until then
//   GET  /metrics        Prometheus text: the node's families
//                        (dist::Node::write_metrics), the relay's
//                        (write_metrics: each part writes its own), and what
//                        add_metrics() sources write (DNS polls, ...)
//   GET  /socket/websocket  Phoenix Channels V2 over WebSocket (the official
//                        phoenix client connects unchanged): joining a topic
//                        subscribes to the cluster's broadcasts on it, a push
//                        is broadcast into the cluster
// Listening beyond loopback needs
// a bearer token: start() refuses (Errc::insecure) without one.
//
// Thread: the loop's thread only. Destroy before the node.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.hpp"
#include "common/result.hpp"
#include "dist/node.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "relay/broadcast_api.hpp"
#include "relay/channel_socket_server.hpp"
#include "relay/cluster_hub.hpp"
#include "relay/delivery.hpp"
#include "relay/http_server.hpp"

namespace beamlink::relay {

struct ListenAddress {
  std::string host;  // an IP literal, no brackets
  int port = 0;
};
// "127.0.0.1:7070", "[::1]:7070", "0.0.0.0:7070". invalid_argument else.
Result<ListenAddress> parse_listen_address(std::string_view text);
// 127.0.0.0/8 and ::1.
bool is_loopback(std::string_view ip);
// Why a listener beyond loopback without a token is refused (Errc::insecure).
Error insecure_listen_error(const ListenAddress& a);

struct GatewayOptions {
  ListenAddress listen{"127.0.0.1", 7070};
  std::string token;  // bearer token; required beyond loopback
  ParserLimits limits;
  std::size_t max_connections = 1024;  // open HTTP connections (ServerOptions)
  BroadcastOptions broadcast;
  DeliveryOptions delivery;
  ChannelOptions channels;
};

struct GatewayStats {
  std::uint64_t broadcast_requests = 0;
  std::map<int, std::uint64_t> broadcast_responses;  // by status
  std::uint64_t health_checks = 0, readiness_checks = 0, scrapes = 0;
};

class Gateway {
 public:
  Gateway(uv_loop_t* loop, dist::Node& node, GatewayOptions options);
  ~Gateway();
  Gateway(const Gateway&) = delete;
  Gateway& operator=(const Gateway&) = delete;

  // Checks the token rule and listens. Errors: insecure (beyond loopback
  // without a token), and HttpServer::listen's.
  Result<void> start();
  int port() const;
  void close();

  void add_bridge(pubsub::PubSubBridge* bridge) { hub_.add_bridge(bridge); }
  // Extra /metrics families, written after the built-in ones.
  void add_metrics(std::function<void(MetricsWriter&)> source);
  // Appended to /healthz's reason when no peer is connected (e.g. what DNS
  // said), so the answer says where to look.
  void set_peer_hint(std::function<std::string()> hint) { peer_hint_ = std::move(hint); }
  // One more condition of /readyz, asked last: empty when met, else why not
  // (e.g. `run`'s "has found the whole cluster"). Called on the loop's
  // thread for each readiness answer.
  void set_readiness_check(std::function<std::string()> check) {
    readiness_check_ = std::move(check);
  }

  // The health answer now: empty when healthy, else why not.
  std::string unhealthy_reason() const;
  // The readiness answer now (/readyz): empty when a broadcast would be
  // accepted by at least one pubsub (or none is configured and a node is
  // connected), else why not.
  std::string not_ready_reason() const;
  // How many pubsub bridges `run` will add (ClusterHub::expect_bridges):
  // until they exist the relay is not ready.
  void expect_bridges(std::size_t n) {
    expected_bridges_ = n;
    hub_.expect_bridges(n);
  }
  // The relay's own families: delivery, hub, the broadcast route's answers,
  // the HTTP server and the WebSocket clients.
  void write_metrics(MetricsWriter& m) const;
  // GET /metrics: the node's families, the relay's, then add_metrics()'s.
  std::string metrics_text();

  HttpServer& server() { return *server_; }
  Router& router() { return router_; }
  ClusterHub& hub() { return hub_; }
  const Delivery& delivery() const { return delivery_; }
  const GatewayStats& stats() const { return stats_; }
  const ChannelSocketServer& channels() const { return *channels_; }

 private:
  uv_loop_t* loop_;
  dist::Node& node_;
  GatewayOptions options_;
  Delivery delivery_;
  ClusterHub hub_;
  BroadcastApi api_;
  Router router_;
  std::unique_ptr<HttpServer> server_;
  std::unique_ptr<ChannelSocketServer> channels_;  // destroyed before the server and hub
  std::vector<std::function<void(MetricsWriter&)>> metrics_;
  std::function<std::string()> peer_hint_;
  std::function<std::string()> readiness_check_;
  std::size_t expected_bridges_ = 0;
  GatewayStats stats_;
};

}  // namespace beamlink::relay
