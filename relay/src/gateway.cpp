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
  router_.add("GET", "/readyz", [this](const Request&, Responder res) {
    ++stats_.readiness_checks;
    auto why = not_ready_reason();
    Response r;
    if (why.empty()) {
      std::string found;
      for (auto* b : hub_.bridges()) {
        // Appended piece by piece: GCC 12 at -O3 reports a false -Wrestrict
        // for `const char* + std::string&&` here.
        std::string nodes;
        for (auto& n : b->nodes()) {
          if (!nodes.empty()) nodes += ',';
          nodes += term::json_quote(n);
        }
        if (!found.empty()) found += ',';
        found += term::json_quote(b->name());
        found += ":[";
        found += nodes;
        found += ']';
      }
      r.body = R"({"status":"ready","node":)" + term::json_quote(node_.name()) + R"(,"peers":)" +
               std::to_string(node_.connected_nodes().size()) + R"(,"pubsubs":{)" + found + "}}";
    } else {
      r = Response::error(503, "not_ready", why);
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

std::string Gateway::not_ready_reason() const {
  if (auto why = unhealthy_reason(); !why.empty()) return why;
  const auto& bridges = hub_.bridges();
  if (bridges.size() < expected_bridges_)
    return "starting: the configured pubsub(s) are not set up yet";
  std::string names;
  bool found = bridges.empty();  // nothing to relay into: connected is ready
  for (auto* b : bridges) {
    if (!b->nodes().empty()) found = true;
    names += (names.empty() ? "" : ", ") + b->name();
  }
  if (!found)
    return "no connected BEAM node has the configured pubsub(s) (" + names +
           "): " + std::to_string(node_.connected_nodes().size()) +
           " node(s) connected; broadcasts would be refused";
  return readiness_check_ ? readiness_check_() : std::string();
}

void Gateway::write_metrics(MetricsWriter& m) const {
  delivery_.write_metrics(m);
  hub_.write_metrics(m);
  m.family("beamlink_relay_http_broadcast_responses_total", MetricsWriter::Type::counter,
           "POST /v1/broadcast answers by status (401, 413 and 431 are answered by the HTTP "
           "server before the route and are not counted here).");
  for (auto& [status, n] : stats_.broadcast_responses)
    m.sample("beamlink_relay_http_broadcast_responses_total", n,
             {{"status", std::to_string(status)}});
  server_->write_metrics(m);
  channels_->write_metrics(m);
}

std::string Gateway::metrics_text() {
  MetricsWriter m;
  node_.write_metrics(m);
  write_metrics(m);
  for (auto& src : metrics_) src(m);
  return m.take();
}

}  // namespace beamlink::relay
