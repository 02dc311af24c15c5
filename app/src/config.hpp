// Configuration shared by every subcommand: the environment variables of the
// eWallet deployment and their flags (DESIGN.md, "Configuration").
#pragma once

#include <CLI/CLI.hpp>

#include <chrono>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "discovery/dns_poller.hpp"
#include "dist/node.hpp"
#include "pubsub/pubsub_bridge.hpp"

namespace beamlink::app {

struct Config {
  std::string node_host;              // NODE_HOST / --host
  std::string node_name;              // NODE_NAME / --name
  std::string peer_name = "ewallet";  // PEER_NAME / --peer-name
  std::string cookie_file;            // --cookie-file (wins over ERLANG_COOKIE)
  int epmd_port = 4369;               // ERL_EPMD_PORT / --epmd-port
  std::string dist_ports;  // --dist-ports MIN-MAX; empty: DIST_PORT_MIN/MAX, else 6900-6909  //
                           // DIST_PORT_MIN/MAX / --dist-ports
  int ticktime = 60;       // NET_TICKTIME / --ticktime
  std::string log_level;   // LOG_LEVEL / --log-level
  std::string log_format = "text";  // LOG_FORMAT / --log-format: text or json
  bool print_config = false;        // --print-config: print the effective configuration, exit
  // Discovery (run only).
  std::string dns;                       // NODE_DNS / --dns
  bool dns_srv = false;                  // --dns-srv
  int poll_interval = 5;                 // POLL_INTERVAL / --poll-interval, seconds
  std::vector<std::string> dns_servers;  // --dns-server IP[:PORT] (default: resolv.conf)
};

// Adds the discovery options (NODE_DNS and friends) to a subcommand.
void add_discovery_options(CLI::App& cmd, Config& cfg);

// This host's IPv4 addresses: never peers of ours.
std::vector<std::string> own_ipv4_addresses();

// The DNS poller's options for this node (named `own_name`) as NODE_DNS and
// its flags say: the name, SRV or not, PEER_NAME, the DNS servers, and this
// host's addresses and name as never-peers. Timing (interval, resolver
// timeout and tries) stays the caller's: only `run` sets it from
// POLL_INTERVAL.
discovery::DnsPoller::Options dns_poller_options(const Config& cfg, const std::string& own_name);

// Adds the shared options to a subcommand.
void add_common_options(CLI::App& cmd, Config& cfg);
// --pg-scope / PG_SCOPE: the pg scope the pubsubs use.
void add_pg_scope_option(CLI::App& cmd, std::string& scope);

// Builds the node configuration. `publish` false gives a one-shot client
// named beamlink_<pid>@host unless NODE_NAME/--name is set.
// With cookie_warning (the doctor), an unsafe cookie file is read anyway and
// *cookie_warning says why it is unsafe.
Result<dist::NodeConfig> make_node_config(const Config& cfg, bool publish,
                                          std::string* cookie_warning = nullptr);

// A PUBSUB entry: "EWalletAPI.PubSub" (version auto) or "NAME:VERSION"
// with VERSION 2, 2.x, 1.1 or auto.
Result<pubsub::PubSubOptions> parse_pubsub_entry(const std::string& entry);
// Every entry of PUBSUB / --pubsub; the first bad one's error.
Result<std::vector<pubsub::PubSubOptions>> parse_pubsub_entries(
    const std::vector<std::string>& entries);

// Sets up stderr logging at the configured level (default `fallback`), as
// text or JSON lines (LOG_FORMAT).
void setup_logging(const Config& cfg, const std::string& fallback);

// Where the cookie comes from: --cookie-file, else ERLANG_COOKIE, else
// ~/.erlang.cookie. "ERLANG_COOKIE" or the file's path.
std::string cookie_source(const Config& cfg);

// --print-config: the subcommand's effective configuration (each option's
// flag, else its environment variable, else its default; the node name,
// cookie source and ports as resolved), one `key=value` a line on stdout.
// Never the cookie nor the relay token. Returns the exit code.
int print_config(const CLI::App& cmd, const Config& cfg, bool publish);

}  // namespace beamlink::app
