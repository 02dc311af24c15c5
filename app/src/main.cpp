// beamlink: a C++ peer for BEAM clusters. Subcommand parsing and wiring only;
// the behaviour lives in the libraries.
#include <sys/resource.h>
#include <CLI/CLI.hpp>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <utility>

#include "beamlink_version.hpp"
#include "commands.hpp"
#include "config.hpp"

int main(int argc, char** argv) {
  using namespace beamlink::app;
  // Outbound handshakes block a libuv pool thread each (ei blocks), and so
  // do name lookups: 4 threads (the default) would let 4 black-holed peers
  // stall the rest. Set before the pool's first use; the user's value wins.
  ::setenv("UV_THREADPOOL_SIZE", "16", 0);
  // Every descriptor the hard limit allows (as Go's runtime does since
  // 1.19): beamlink holds a socket per peer, WebSocket client and inbound
  // handshake in progress, and nothing in it uses select(), so a soft limit
  // of 1,024 would only make a flood or a busy relay fail early. The
  // handshake cap is sized from what this leaves (dist::NodeConfig).
  if (rlimit rl{}; ::getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max == RLIM_INFINITY ? rlim_t{1} << 20 : rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  CLI::App app{"beamlink — a C++ peer for BEAM (Erlang/Elixir) clusters"};
  app.require_subcommand(1);
  app.set_version_flag("--version",
                       "beamlink " BEAMLINK_VERSION " (commit " BEAMLINK_GIT_COMMIT ")");

  // A Config per subcommand: CLI11 applies every subcommand's environment
  // bindings, the unused ones' too, so one shared Config would let another
  // subcommand's environment value overwrite this one's flag. Each option:
  // its flag, else its environment variable, else its default.
  Config run_cfg, watch_cfg, sub_cfg, bc_cfg, ping_cfg, names_cfg, rpc_cfg, doctor_cfg;

  RunOptions run_opts;
  auto* run =
      app.add_subcommand("run", "join: register with epmd, connect, stay until SIGINT/SIGTERM");
  add_common_options(*run, run_cfg);
  add_discovery_options(*run, run_cfg);
  run->add_option("--connect", run_opts.connect,
                  "a node to connect to and keep connected (repeatable)");
  run->add_option("--pubsub", run_opts.pubsub,
                  "Phoenix.PubSub to relay, NAME or NAME:VERSION (2, 1.1, auto; default auto), "
                  "e.g. EWalletAPI.PubSub:1.1 (repeatable)")
      ->envname("PUBSUB")
      ->delimiter(',');
  add_pg_scope_option(*run, run_opts.pg_scope);
  run->add_option("--relay-listen", run_opts.relay_listen,
                  "the relay's HTTP/WebSocket listener IP:PORT, or off")
      ->envname("RELAY_LISTEN")
      ->capture_default_str();
  run->add_option("--relay-token", run_opts.relay_token,
                  "bearer token every relay request must carry (required beyond loopback)")
      ->envname("RELAY_TOKEN");
  run->add_option("--relay-token-file", run_opts.relay_token_file,
                  "read the relay's bearer token from this file");
  run->add_flag("--relay-atom-keys", run_opts.relay_atom_keys,
                "JSON object keys become atoms (eWallet's serializer reads atom keys)")
      ->envname("RELAY_ATOM_KEYS");
  run->add_option("--relay-atom-values", run_opts.relay_atom_values,
                  "keys whose string values become atoms, e.g. status (with --relay-atom-keys, "
                  "{\"status\":\"ok\"} becomes #{status => ok})")
      ->envname("RELAY_ATOM_VALUES")
      ->delimiter(',');
  run->add_option("--relay-max-body", run_opts.relay_max_body, "largest request body, bytes")
      ->capture_default_str();
  run->add_option("--relay-queue", run_opts.relay_queue,
                  "broadcasts queued per node before POSTs get 503 (the count bound)")
      ->envname("RELAY_QUEUE")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 30))
      ->capture_default_str();
  run->add_option("--relay-queue-bytes", run_opts.relay_queue_bytes,
                  "bytes of broadcasts queued per node before POSTs get 503 (the byte bound)")
      ->envname("RELAY_QUEUE_BYTES")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 40))
      ->capture_default_str();
  run->add_option("--relay-ttl", run_opts.relay_ttl_ms,
                  "milliseconds a queued broadcast waits for its node before it is dropped")
      ->capture_default_str();
  run->add_option("--relay-max-connections", run_opts.relay_max_connections,
                  "open HTTP connections; more wait in the listen backlog until one closes")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  run->add_option("--relay-max-websockets", run_opts.relay_max_websockets,
                  "open WebSocket clients; more are answered 503")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1} << 20))
      ->capture_default_str();
  run->add_option("--metrics-listen", run_opts.metrics_listen,
                  "a listener IP:PORT of its own serving GET /metrics (no token), or off")
      ->envname("METRICS_LISTEN")
      ->capture_default_str();

  RunOptions watch_opts;
  watch_opts.watch = true;
  auto* watch = app.add_subcommand(
      "watch", "show live membership: peers joining, leaving and reconnecting, with reasons");
  add_common_options(*watch, watch_cfg);
  add_discovery_options(*watch, watch_cfg);
  watch->add_option("--connect", watch_opts.connect,
                    "a node to watch besides NODE_DNS's (repeatable)");

  RunOptions sub_opts;
  auto* subscribe = app.add_subcommand(
      "subscribe", "print the cluster's Phoenix.PubSub broadcasts on TOPICs as JSON lines");
  add_common_options(*subscribe, sub_cfg);
  add_discovery_options(*subscribe, sub_cfg);
  subscribe->add_option("--connect", sub_opts.connect,
                        "a node to join besides NODE_DNS's (repeatable)");
  subscribe->add_option("--pubsub", sub_opts.pubsub, "Phoenix.PubSub names, e.g. MyApp.PubSub")
      ->envname("PUBSUB")
      ->delimiter(',')
      ->required();
  add_pg_scope_option(*subscribe, sub_opts.pg_scope);
  subscribe->add_option("TOPIC", sub_opts.subscribe_topics, "topics to print")->required();

  BroadcastCmdOptions bc_opts;
  auto* bcast = app.add_subcommand(
      "broadcast", "send one Phoenix channel broadcast into the cluster's pubsubs and exit");
  add_common_options(*bcast, bc_cfg);
  add_discovery_options(*bcast, bc_cfg);
  bcast->add_option("--connect", bc_opts.connect,
                    "a node to send to besides NODE_DNS's (repeatable)");
  bcast->add_option("--pubsub", bc_opts.pubsub, "Phoenix.PubSub NAME or NAME:VERSION (repeatable)")
      ->envname("PUBSUB")
      ->delimiter(',')
      ->required();
  add_pg_scope_option(*bcast, bc_opts.pg_scope);
  bcast->add_flag("--atom-keys", bc_opts.atom_keys, "payload keys become atoms");
  bcast
      ->add_option("--atom-values", bc_opts.atom_values,
                   "keys whose string values become atoms, e.g. status (as --relay-atom-values: "
                   "with --atom-keys, eWallet's {\"status\":\"ok\"} becomes #{status => ok})")
      ->delimiter(',');
  bcast->add_option("--timeout", bc_opts.timeout_ms, "milliseconds")->capture_default_str();
  bcast->add_option("TOPIC", bc_opts.topic, "the topic, e.g. room:lobby")->required();
  bcast->add_option("EVENT", bc_opts.event, "the event, e.g. new_msg")->required();
  bcast->add_option("JSON", bc_opts.payload, "the payload, a JSON object")->required();

  std::string ping_node;
  int ping_timeout = 5000;
  auto* ping = app.add_subcommand("ping", "ping a node as net_adm:ping does; exit 0 on pong");
  add_common_options(*ping, ping_cfg);
  ping->add_option("NODE", ping_node, "the node, e.g. ewallet@10.0.0.5")->required();
  ping->add_option("--timeout", ping_timeout, "milliseconds")->capture_default_str();

  std::string names_host;
  int names_timeout = 5000;
  auto* names = app.add_subcommand("names", "list the names an epmd has registered");
  add_common_options(*names, names_cfg);
  names->add_option("HOST", names_host, "epmd's host (default 127.0.0.1)");
  names->add_option("--timeout", names_timeout, "milliseconds")->capture_default_str();

  RpcOptions rpc_opts;
  auto* rpc = app.add_subcommand("rpc", "call MOD:FUN(ARGS...) on a node, as erl_call -a");
  add_common_options(*rpc, rpc_cfg);
  rpc->add_option("NODE", rpc_opts.node, "the node")->required();
  rpc->add_option("MOD", rpc_opts.mod, "module")->required();
  rpc->add_option("FUN", rpc_opts.fun, "function")->required();
  rpc->add_option("ARGS", rpc_opts.args, "arguments as an Erlang list, e.g. '[1, <<\"x\">>]'");
  rpc->add_flag("--json", rpc_opts.json, "print the result as JSON");
  rpc->add_option("--timeout", rpc_opts.timeout_ms, "milliseconds")->capture_default_str();

  DoctorOptions doctor_opts;
  auto* doctor = app.add_subcommand(
      "doctor",
      "say exactly why a cluster does not connect: DNS, epmd, port, handshake, cookie, mesh");
  add_common_options(*doctor, doctor_cfg);
  add_discovery_options(*doctor, doctor_cfg);
  doctor->add_option("--connect", doctor_opts.peers,
                     "a peer to check besides NODE_DNS's (repeatable)");
  doctor->add_option("--pubsub", doctor_opts.pubsub, "Phoenix.PubSub names to check (repeatable)")
      ->envname("PUBSUB")
      ->delimiter(',');
  add_pg_scope_option(*doctor, doctor_opts.pg_scope);
  doctor->add_flag("--json", doctor_opts.json, "print the report as JSON with stable check ids");
  doctor->add_option("--timeout", doctor_opts.timeout_ms, "milliseconds per stage")
      ->capture_default_str();

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    int rc = app.exit(e);
    return rc == 0 ? 0 : 2;
  }

  try {
    // --print-config: what the subcommand would run with, then exit.
    const std::pair<CLI::App*, const Config*> configs[] = {
        {run, &run_cfg},   {watch, &watch_cfg}, {subscribe, &sub_cfg}, {bcast, &bc_cfg},
        {ping, &ping_cfg}, {names, &names_cfg}, {rpc, &rpc_cfg},       {doctor, &doctor_cfg}};
    for (auto& [cmd, c] : configs)
      if (*cmd && c->print_config) return print_config(*cmd, *c, cmd == run);
    if (*run) {
      setup_logging(run_cfg, "info");
      return cmd_run(run_cfg, run_opts);
    }
    if (*watch) {
      setup_logging(watch_cfg, "warn");
      return cmd_run(watch_cfg, watch_opts);
    }
    if (*subscribe) {
      setup_logging(sub_cfg, "warn");
      return cmd_run(sub_cfg, sub_opts);
    }
    if (*bcast) {
      setup_logging(bc_cfg, "warn");
      return cmd_broadcast(bc_cfg, bc_opts);
    }
    if (*ping) {
      setup_logging(ping_cfg, "warn");
      return cmd_ping(ping_cfg, ping_node, ping_timeout);
    }
    if (*names) {
      setup_logging(names_cfg, "warn");
      return cmd_names(names_cfg, names_host, names_timeout);
    }
    if (*doctor) {
      setup_logging(doctor_cfg, "error");
      return cmd_doctor(doctor_cfg, doctor_opts);
    }
    if (*rpc) {
      setup_logging(rpc_cfg, "warn");
      return cmd_rpc(rpc_cfg, rpc_opts);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "beamlink: %s\n", e.what());
    return 2;
  }
  return 2;
}
