// `beamlink doctor`: checks, stage by stage, why a BEAM cluster does or does
// not connect, and says what to do.
//
// Stages: the cookie's provenance; NODE_DNS; then for every peer, in
// parallel and each stage bounded by `timeout`: epmd reachable, the peer
// registered with it, its distribution port (range, reachability), the
// handshake step by step (status, the peer's own name, version and flags,
// the cookie); then over rpc, each reachable peer's view of the others and
// its net_ticktime, and with --pubsub the Phoenix.PubSub pg groups. A peer
// stops at its first failing stage; later stages are reported as skipped.
// PEER_NAME@IP is skipped only where it is this node itself (our_name); an
// address of this host is a peer like the others (a sidecar's pod node), and
// when NODE_DNS answers this host's IP without a PEER_NAME node registered
// with the epmd here, dns.own_address warns: the pods' Peerage would keep
// dialling PEER_NAME@<this IP>.
//
// Thread: the loop's thread; the handshake probes run on libuv's pool.
// run() calls `done` once, later, with the report.
#pragma once

#include <uv.h>

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "discovery/peer_set.hpp"
#include "discovery/resolver.hpp"
#include "doctor/report.hpp"

namespace beamlink::doctor {

struct Options {
  std::string dns;                    // NODE_DNS (may be empty when peers are given)
  bool srv = false;                   // resolve NODE_DNS as SRV
  std::vector<std::string> peers;     // explicit peers (alive@host), besides DNS
  std::string peer_name = "ewallet";  // PEER_NAME
  std::vector<std::string>
      own_addresses;           // this host's IPs: PEER_NAME@IP is skipped only if our_name
  std::string our_name;        // the probe's node name
  std::string rpc_name;        // the rpcs' node name (empty: our_name)
  std::string cookie;          // never printed
  std::string cookie_source;   // "ERLANG_COOKIE" or a file path
  std::string cookie_warning;  // set when the cookie file is unsafe
  std::uint16_t epmd_port = 4369;
  std::uint16_t port_min = 6900, port_max = 6909;
  std::chrono::milliseconds timeout{1000};         // per stage
  std::vector<std::string> pubsub;                 // Phoenix.PubSub names, e.g. "EWalletAPI.PubSub"
  std::string pg_scope = "Elixir.Phoenix.PubSub";  // their pg scope (an atom's text)
  discovery::Resolver::Options resolver;
};

// BEAM processes in this network namespace (this pod) whose command line
// carries the cookie (-setcookie, which elixir --cookie becomes): any local
// user reads it with ps.
struct CmdlineCookie {
  int pid;
  std::string node;  // from -name/-sname, or "?"
};
std::vector<CmdlineCookie> cookies_on_command_lines();

class Doctor {
 public:
  Doctor(uv_loop_t* loop, Options options);
  ~Doctor();
  Doctor(const Doctor&) = delete;
  Doctor& operator=(const Doctor&) = delete;

  void run(std::function<void(Report)> done);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace beamlink::doctor
