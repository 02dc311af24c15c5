#include "config.hpp"

#include "pubsub/pg_scope.hpp"
#include "pubsub/pubsub_bridge.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <netinet/in.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <charconv>
#include <cstdlib>
#include <optional>
#include <string_view>

#include "dist/identity.hpp"
#include "logging.hpp"

namespace beamlink::app {

void add_common_options(CLI::App& cmd, Config& cfg) {
  cmd.add_option("--host", cfg.node_host,
                 "this node's host part (default: first non-loopback IPv4)")
      ->envname("NODE_HOST");
  cmd.add_option("--name", cfg.node_name, "this node's full name (default: beamlink@$NODE_HOST)")
      ->envname("NODE_NAME");
  cmd.add_option("--peer-name", cfg.peer_name, "peers are PEER_NAME@IP")
      ->envname("PEER_NAME")
      ->capture_default_str();
  cmd.add_option("--cookie-file", cfg.cookie_file,
                 "file holding the cookie (default: ERLANG_COOKIE, else ~/.erlang.cookie)");
  cmd.add_option("--epmd-port", cfg.epmd_port, "epmd port")
      ->envname("ERL_EPMD_PORT")
      ->check(CLI::Range(1, 65535))
      ->capture_default_str();
  cmd.add_option(
      "--dist-ports", cfg.dist_ports,
      "distribution listen range MIN-MAX (default DIST_PORT_MIN-DIST_PORT_MAX, else 6900-6909)");
  cmd.add_option("--ticktime", cfg.ticktime, "net_ticktime in seconds")
      ->envname("NET_TICKTIME")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd.add_option("--log-level", cfg.log_level, "trace, debug, info, warn, error, off")
      ->envname("LOG_LEVEL")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "off"}));
  cmd.add_option("--log-format", cfg.log_format,
                 "text, or json: one JSON object per line (time, level, event, peer, reason, "
                 "message)")
      ->envname("LOG_FORMAT")
      ->check(CLI::IsMember({"text", "json"}))
      ->capture_default_str();
  cmd.add_flag("--print-config", cfg.print_config,
               "print the effective configuration (flag, else environment, else default) and "
               "exit; never the cookie");
}

void add_pg_scope_option(CLI::App& cmd, std::string& scope) {
  cmd.add_option("--pg-scope", scope,
                 "the pg scope of the pubsubs: Phoenix.PubSub 2.x uses Phoenix.PubSub (an Elixir "
                 "alias; an Erlang atom such as my_scope is taken as is)")
      ->envname("PG_SCOPE")
      ->capture_default_str()
      // The atom's text from here on, checked once for every command.
      ->transform(CLI::Validator(
          [](std::string& s) -> std::string {
            auto atom = pubsub::pg_scope_name(s);
            if (!atom) return atom.error().message;
            s = std::move(*atom);
            return {};
          },
          "SCOPE"));
}

void add_discovery_options(CLI::App& cmd, Config& cfg) {
  cmd.add_option(
         "--dns", cfg.dns,
         "name whose A (or SRV) records are the peers, e.g. ewallet.default.svc.cluster.local")
      ->envname("NODE_DNS");
  cmd.add_flag("--dns-srv", cfg.dns_srv, "resolve NODE_DNS as SRV records and use their targets");
  cmd.add_option("--poll-interval", cfg.poll_interval, "seconds between DNS polls")
      ->envname("POLL_INTERVAL")
      ->check(CLI::Range(1, 3600))
      ->capture_default_str();
  cmd.add_option("--dns-server", cfg.dns_servers,
                 "DNS server IP[:PORT] to ask instead of resolv.conf's (repeatable)");
}

std::vector<std::string> own_ipv4_addresses() {
  std::vector<std::string> out;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || i->ifa_addr->sa_family != AF_INET) continue;
    char buf[INET_ADDRSTRLEN];
    if (inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(i->ifa_addr)->sin_addr, buf, sizeof buf))
      out.emplace_back(buf);
  }
  freeifaddrs(list);
  return out;
}

discovery::DnsPoller::Options dns_poller_options(const Config& cfg, const std::string& own_name) {
  discovery::DnsPoller::Options po;
  po.name = cfg.dns;
  po.srv = cfg.dns_srv;
  po.peer_name = cfg.peer_name;
  po.own_addresses = own_ipv4_addresses();
  po.own_name = own_name;
  po.resolver.servers = cfg.dns_servers;
  return po;
}

namespace {

// A whole decimal port number, or nullopt.
std::optional<int> parse_port(std::string_view text) {
  int v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || v < 0 || v > 65535)
    return std::nullopt;
  return v;
}

Result<std::pair<int, int>> parse_ports(const Config& cfg) {
  // --dist-ports wins; else DIST_PORT_MIN and DIST_PORT_MAX (each optional,
  // as inet_dist_listen_min/max), else 6900-6909.
  std::string lo_text = "6900", hi_text = "6909";
  std::string what;
  if (!cfg.dist_ports.empty()) {
    auto dash = cfg.dist_ports.find('-');
    lo_text = cfg.dist_ports.substr(0, dash);
    hi_text = dash == std::string::npos ? lo_text : cfg.dist_ports.substr(dash + 1);
    what = "--dist-ports '" + cfg.dist_ports + "'";
  } else {
    const char* env_min = std::getenv("DIST_PORT_MIN");
    const char* env_max = std::getenv("DIST_PORT_MAX");
    if (env_min && *env_min) lo_text = env_min;
    if (env_max && *env_max) hi_text = env_max;
    if (env_min && !env_max) hi_text = lo_text;
    what = "DIST_PORT_MIN/MAX '" + lo_text + "-" + hi_text + "'";
  }
  auto lo = parse_port(lo_text), hi = parse_port(hi_text);
  if (!lo || !hi)
    return make_error(Errc::invalid_argument,
                      what + " is not a port range MIN-MAX, e.g. 6900-6909");
  if (*lo > *hi) return make_error(Errc::invalid_argument, what + ": MIN is above MAX");
  return std::make_pair(*lo, *hi);
}

}  // namespace

Result<dist::NodeConfig> make_node_config(const Config& cfg, bool publish,
                                          std::string* cookie_warning) {
  dist::NodeConfig nc;
  std::string host = cfg.node_host.empty() ? dist::first_non_loopback_ipv4() : cfg.node_host;
  if (!cfg.node_name.empty())
    nc.name =
        cfg.node_name.find('@') == std::string::npos ? cfg.node_name + "@" + host : cfg.node_name;
  else if (publish)
    nc.name = "beamlink@" + host;
  else
    nc.name = "beamlink_" + std::to_string(::getpid()) + "@" + host;
  // A flag wins over the environment: --cookie-file over ERLANG_COOKIE.
  const char* env_cookie = cfg.cookie_file.empty() ? std::getenv("ERLANG_COOKIE") : nullptr;
  auto cookie =
      dist::load_cookie(env_cookie ? env_cookie : "", cfg.cookie_file, cookie_warning != nullptr);
  if (!cookie) return cookie.error();
  if (cookie_warning) *cookie_warning = cookie->warning;
  nc.cookie = cookie->value;
  spdlog::debug("cookie from {} (fingerprint {})", cookie->source,
                dist::cookie_fingerprint(cookie->value));
  nc.epmd_port = static_cast<std::uint16_t>(cfg.epmd_port);
  auto ports = parse_ports(cfg);
  if (!ports) return ports.error();
  nc.port_min = static_cast<std::uint16_t>(ports->first);
  nc.port_max = static_cast<std::uint16_t>(ports->second);
  nc.ticktime = std::chrono::seconds(cfg.ticktime);
  nc.publish = publish;
  return nc;
}

void setup_logging(const Config& cfg, const std::string& fallback) {
  std::shared_ptr<spdlog::logger> logger;
  if (cfg.log_format == "json") {
    logger = spdlog::stderr_logger_mt("beamlink");
    logger->set_formatter(make_json_log_formatter());
  } else {
    logger = spdlog::stderr_color_mt("beamlink");
    logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e %^%l%$ %v");
  }
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(cfg.log_level.empty() ? fallback : cfg.log_level));
}

// "EWalletAPI.PubSub" or "EWalletAPI.PubSub:1.1".
Result<pubsub::PubSubOptions> parse_pubsub_entry(const std::string& entry) {
  pubsub::PubSubOptions po;
  po.version = pubsub::PubSubOptions::Version::automatic;
  auto colon = entry.rfind(':');
  po.name = entry.substr(0, colon);
  if (colon != std::string::npos) {
    auto v = pubsub::parse_pubsub_version(entry.substr(colon + 1));
    if (!v)
      return make_error(Errc::invalid_argument,
                        "PUBSUB entry \"" + entry + "\": " + v.error().message);
    po.version = *v;
  }
  if (po.name.empty() || po.name.find_first_of(" ;") != std::string::npos)
    return make_error(Errc::invalid_argument, "PUBSUB entry \"" + entry +
                                                  "\": expected NAME or NAME:VERSION, e.g. "
                                                  "EWalletAPI.PubSub or EWalletAPI.PubSub:1.1");
  return po;
}

Result<std::vector<pubsub::PubSubOptions>> parse_pubsub_entries(
    const std::vector<std::string>& entries) {
  std::vector<pubsub::PubSubOptions> out;
  for (auto& entry : entries) {
    auto po = parse_pubsub_entry(entry);
    if (!po) return po.error();
    out.push_back(std::move(po).value());
  }
  return out;
}

}  // namespace beamlink::app
