// beamlink's subcommands. Each returns the process exit code: 0 success,
// 1 the operation failed (the reason printed on stderr), 2 bad usage or
// configuration.
#pragma once

#include <string>
#include <vector>

#include "config.hpp"

namespace beamlink::app {

struct RunOptions {
  std::vector<std::string> connect;  // nodes to connect to and keep connected
  bool watch = false;                // `watch`: print membership changes, do not register
  // `subscribe`: print the cluster's broadcasts on these topics as JSON lines
  // (a hidden client, like watch, with a pg scope and a bridge per pubsub).
  std::vector<std::string> subscribe_topics;
  // Phoenix.PubSub names, each NAME or NAME:VERSION (2, 1.1, auto; default
  // auto for run, 2 for subscribe).
  std::vector<std::string> pubsub;
  std::string pg_scope = "Elixir.Phoenix.PubSub";  // the pubsubs' pg scope atom (--pg-scope)
  // run: the relay's listener ("off" for none), its bearer token (or a file
  // holding it), JSON options and delivery limits.
  std::string relay_listen = "127.0.0.1:7070";
  std::string relay_token;
  std::string relay_token_file;
  bool relay_atom_keys = false;
  std::vector<std::string> relay_atom_values;  // keys whose string values become atoms
  std::size_t relay_max_body = 1u << 20;
  std::size_t relay_queue = 10000;            // messages per node (count bound)
  std::size_t relay_queue_bytes = 64u << 20;  // bytes per node (byte bound)
  int relay_ttl_ms = 30000;
  std::size_t relay_max_connections = 1024;  // open HTTP connections
  std::size_t relay_max_websockets = 16384;  // open WebSocket clients
  // run: a listener of its own serving GET /metrics ("off" for none), so
  // there are metrics with the relay off too.
  std::string metrics_listen = "off";
};
int cmd_run(const Config& cfg, const RunOptions& opts);

// `broadcast TOPIC EVENT JSON`.
struct BroadcastCmdOptions {
  std::string topic, event, payload;  // payload: a JSON object
  std::vector<std::string> connect;   // nodes besides NODE_DNS's
  std::vector<std::string> pubsub;    // PUBSUB entries
  std::string pg_scope = "Elixir.Phoenix.PubSub";
  bool atom_keys = false;
  std::vector<std::string> atom_values;  // keys whose string values become atoms (status)
  int timeout_ms = 5000;                 // to connect, learn the pubsubs, and write
};
int cmd_broadcast(const Config& cfg, const BroadcastCmdOptions& opts);

int cmd_ping(const Config& cfg, const std::string& node, int timeout_ms);

int cmd_names(const Config& cfg, const std::string& host, int timeout_ms);

struct RpcOptions {
  std::string node, mod, fun, args;  // args: an Erlang list in term syntax ("" = [])
  bool json = false;
  int timeout_ms = 10000;
};
int cmd_rpc(const Config& cfg, const RpcOptions& opts);

struct DoctorOptions {
  std::vector<std::string> peers;                  // --connect: peers to check besides NODE_DNS's
  std::vector<std::string> pubsub;                 // --pubsub / PUBSUB
  std::string pg_scope = "Elixir.Phoenix.PubSub";  // --pg-scope / PG_SCOPE
  bool json = false;
  int timeout_ms = 1000;  // per stage
};
int cmd_doctor(const Config& cfg, const DoctorOptions& opts);

// Helpers shared by the commands.
// Runs the loop until it has nothing left, then closes it (asserting that
// every handle was closed).
void drain_and_close(uv_loop_t* loop);
// Calls fn on the next loop iteration (used to stop a node from outside its
// own callbacks).
void on_next_tick(uv_loop_t* loop, std::function<void()> fn);

}  // namespace beamlink::app
