// A hidden Erlang distribution node on a libuv loop.
//
// The node listens on the first free port of its range, registers with epmd,
// accepts connections (the handshake runs on the loop in our own core, see
// dist/src/listener.hpp) and initiates them (through ei on worker threads;
// port lookups go through our own epmd client), and then owns each
// socket on the loop with its own framing: ticks, a maximum frame size,
// batched bounded writes. Built-in processes: net_kernel (answers is_auth, so
// net_adm:ping gets pong) and an rpc client speaking rex's gen_call protocol.
//
// Thread: every method runs on the loop's thread. Callbacks are never called
// from inside the call that takes them; each is called exactly once: stop()
// fails pending connects and rpcs with shutting_down, destroying the Node
// drops them uncalled. connect() and rpc() work once start()'s callback said
// ok (before that they fail, later, with invalid_argument).
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/metrics.hpp"
#include "common/result.hpp"
#include "common/signal.hpp"
#include "dist/handshake_acceptor_core.hpp"
#include "dist/process_table.hpp"
#include "dist/send_done.hpp"
#include "term/term.hpp"

namespace beamlink::dist {

struct NodeConfig {
  std::string name;    // alive@host
  std::string cookie;  // never logged
  std::string epmd_host = "127.0.0.1";
  std::uint16_t epmd_port = 4369;
  bool publish = true;  // listen and register with epmd; false for one-shot clients
  std::uint16_t port_min = 6900;
  std::uint16_t port_max = 6909;
  std::chrono::milliseconds ticktime{60000};        // net_ticktime
  std::chrono::milliseconds connect_timeout{5000};  // epmd lookup, TCP connect and handshake
  // An inbound handshake, from accept to our ack: one deadline however the
  // peer splits its bytes.
  std::chrono::milliseconds accept_timeout{5000};
  std::size_t max_frame = 128u << 20;
  std::size_t max_outbound = 16u << 20;  // bytes queued per peer before send() says queue_full
  // Inbound handshakes in progress (Listener): at most max_handshakes, and
  // no more than half the descriptor limit (RLIMIT_NOFILE's soft value at
  // start), so a flood is held, not churned, while the other half stays for
  // connections and clients. At the cap one in progress is shed for the new
  // one, from an address with more than max_handshakes_per_source first.
  std::size_t max_handshakes_per_source = 8;
  std::size_t max_handshakes = 16384;
  // Where the output of our rpcs goes (we are their group leader): UTF-8
  // text as the calls print it. Unset: logged at info.
  std::function<void(const std::string& utf8)> rpc_output;
};

// Counters for logs, tests and metrics.
struct NodeStats {
  std::uint64_t frames_in = 0, frames_out = 0, bytes_in = 0, bytes_out = 0;
  std::uint64_t ticks_in = 0, ticks_out = 0;
  std::uint64_t connects = 0, connect_failures = 0, accepts = 0, accept_failures = 0;
  std::uint64_t malformed_frames = 0, unknown_controls = 0, dropped_messages = 0;
  std::uint64_t tick_timeouts = 0, queue_full = 0, late_rpc_replies = 0;
  std::uint64_t epmd_reregistrations = 0;
  std::uint64_t handshakes_shed = 0;         // inbound handshakes shed by the caps
  std::uint64_t handshakes_spared = 0;       // candidates to shed whose unread bytes spared them
  std::uint64_t handshakes_in_progress = 0;  // inbound, now
};

// The outcome of an rpc: the reply term (with version byte). {badrpc,
// Reason} is not a reply: it comes back as Errc::badrpc with the reason's
// text in the message.
struct RpcReply {
  std::string term;  // the reply, encoded with its version byte
};

// What one connection's peer can handle: the handshake version and the
// distribution flags it announced (dflag::*). What beamlink sends on a
// connection depends on them (e.g. no UNLINK_ID_ACK toward a peer without
// dflag::unlink_id, which uses the old link protocol).
struct PeerCaps {
  int version = 6;
  std::uint64_t flags = 0;
  bool flags_known = true;  // false: assumed from the version (ei reports none)
  bool has(std::uint64_t flag) const { return (flags & flag) != 0; }
};

class Connection;

class Node {
 public:
  using NodeEvent = std::function<void(const std::string& node)>;
  using NodeDownEvent = std::function<void(const std::string& node, const Error& reason)>;

  Node(uv_loop_t* loop, NodeConfig config);
  ~Node();
  Node(const Node&) = delete;
  Node& operator=(const Node&) = delete;

  // Listens and registers with epmd (when publish), then calls on_ready with
  // the outcome. Fails now (and never calls on_ready) for a bad config.
  Result<void> start(std::function<void(Result<void>)> on_ready);
  // Unregisters, stops the acceptors and closes every connection in order:
  // what is queued is written, our side is shut, and each connection closes
  // when its peer does (at most 5 s later), so nothing already reported
  // written is lost to a reset. Their node-down events come then. A second
  // stop() closes those still finishing at once. After stop() the loop runs
  // to completion once its handles close.
  void stop();

  const std::string& name() const { return config_.name; }
  const NodeConfig& config() const { return config_; }
  std::uint16_t listen_port() const { return listen_port_; }
  std::uint32_t creation() const { return table_.creation(); }
  // Counters, the inbound handshake ones taken from the listener now.
  const NodeStats& stats() const;
  // Failed connects by reason (errc_name of the error: "cookie_rejected",
  // "connection_refused", "timeout", ...) and failed inbound handshakes by
  // HandshakeAcceptorCore::reason() ("digest_mismatch", "timeout",
  // "name_refused", "protocol", ...), for metrics.
  const std::map<std::string, std::uint64_t>& connect_failures_by_reason() const {
    return connect_failure_reasons_;
  }
  const std::map<std::string, std::uint64_t>& accept_failures_by_reason() const;
  // The node's /metrics families: epmd registration, peers, connects and
  // accepts (failures by reason), frames, bytes and the drops of NodeStats.
  void write_metrics(MetricsWriter& m) const;
  // Registered with epmd now (false before start, while re-registering after
  // the registration was lost, after stop; always false when !publish).
  bool registered() const { return registered_; }
  ProcessTable& processes() { return table_; }

  // Connects to `node` (alive@host; host an IPv4 address or a name). Calls cb
  // once it is up (at once, later, if it already is) or failed.
  void connect(const std::string& node, std::function<void(Result<void>)> cb);
  bool is_connected(const std::string& node) const;
  // The capabilities of the connection to `node`; nullopt when not connected.
  std::optional<PeerCaps> peer_caps(const std::string& node) const;
  // How a connected peer that dialled us handshook (name, version 5 or 6,
  // its flags, creation); nullopt for outbound connections and unknown
  // nodes. What beamlink sends on a connection may depend on it.
  std::optional<AcceptedPeer> inbound_handshake(const std::string& node) const;
  std::vector<std::string> connected_nodes() const;
  void disconnect(const std::string& node);
  // Entries the node holds for peers (connections, dials and their waiters,
  // the handshakes of connected inbound peers, closed connections not yet
  // freed): 0 once every peer has gone. Peers that come and go must not
  // accumulate state.
  std::size_t peer_entries() const;

  // Node events. Each returns the Subscription that keeps the callback: keep
  // it as a member of the object the callback uses; destroying it (before or
  // after the Node) unsubscribes. Callbacks run on the loop, never from
  // inside the call that subscribes; they may send, connect, close
  // connections, subscribe and unsubscribe. Node-down callbacks do not run
  // while the Node is being destroyed.
  [[nodiscard]] Subscription on_node_up(NodeEvent cb) { return node_up_.subscribe(std::move(cb)); }
  [[nodiscard]] Subscription on_node_down(NodeDownEvent cb) {
    return node_down_.subscribe(std::move(cb));
  }

  // Local processes.
  term::Pid spawn(Handler h) { return table_.spawn(std::move(h)); }
  Result<term::Pid> register_name(const std::string& name, Handler h) {
    return table_.register_name(name, std::move(h));
  }
  // Ends a local process and tells its linked and monitoring peers.
  void exit(const term::Pid& pid, std::string_view reason_atom = "normal");
  term::Ref make_ref() { return table_.make_ref(); }

  // Sending. `msg` is a term with its version byte. A send to a remote node
  // that is not connected fails with not_connected; one whose peer queue is
  // full fails with queue_full (wait with when_writable). A send to a local
  // pid or name is delivered synchronously.
  // `done` (optional): see SendDone; a local delivery completes ok.
  Result<void> send(const term::Pid& to, std::span<const char> msg, SendDone done = {});
  Result<void> reg_send(const term::Pid& from, const std::string& node, const std::string& name,
                        std::span<const char> msg, SendDone done = {});
  // Calls cb once, later, when the node's outbound queue has room (below half
  // of max_outbound): on the next loop turn when it has room now, else from
  // the write completion that makes room; with not_connected when the
  // connection is down or goes down first. Room is not "written": to know
  // that a frame left, give its send a SendDone.
  void when_writable(const std::string& node, std::function<void(Result<void>)> cb);
  // Bytes queued towards `node` (0 when not connected).
  std::size_t queued_bytes(const std::string& node) const;
  // Which connection to `node` is up now: an id unique within this Node
  // (a reconnect gets a new one), 0 when not connected.
  std::uint64_t connection_id(const std::string& node) const;
  // Called after a write with data frames towards `node` completed (after
  // that write's completions). The callback may send and may close
  // connections.
  [[nodiscard]] Subscription on_written(NodeEvent cb) { return written_.subscribe(std::move(cb)); }

  // rpc:call(Node, Mod, Fun, Args) through rex, matched by a unique reference.
  // args: an encoded list with version byte.
  void rpc(const std::string& node, const std::string& mod, const std::string& fun,
           std::span<const char> args, std::chrono::milliseconds timeout,
           std::function<void(Result<RpcReply>)> cb);

  uv_loop_t* loop() const { return loop_; }

 private:
  struct Impl;  // also the ConnectionOwner of every Connection
  // Adopts a connected, handshaken socket as the connection to `peer`.
  // Adopts a connected, handshaken socket as the connection to `peer`, with
  // the capabilities its handshake showed. `handshake`: for inbound
  // connections, what the peer's handshake proved.
  Result<void> adopt(int fd, const std::string& peer, bool inbound, PeerCaps caps,
                     const AcceptedPeer* handshake = nullptr);
  void connection_closed(Connection& c, const Error& why);
  void dispatch(Connection& c, std::span<const char> control, std::span<const char> message);
  void frames_written(Connection& c);
  // Calls every waiter of an outbound connect to `node` once, then forgets them.
  void finish_connect(const std::string& node, Result<void> r);
  void send_outgoing(const std::vector<struct Outgoing>& out);
  void install_builtins();

  uv_loop_t* loop_;
  NodeConfig config_;
  ProcessTable table_;
  mutable NodeStats stats_;  // stats() refreshes the listener's counters
  std::uint16_t listen_port_ = 0;
  Signal<const std::string&> node_up_;
  Signal<const std::string&, const Error&> node_down_;
  Signal<const std::string&> written_;
  std::uint64_t last_connection_id_ = 0;
  std::map<std::string, std::uint64_t> connect_failure_reasons_;
  bool registered_ = false;
  std::unique_ptr<Impl> impl_;
};

// Splits "alive@host". Fails with invalid_argument for anything else.
Result<std::pair<std::string, std::string>> split_node_name(const std::string& node);

}  // namespace beamlink::dist
