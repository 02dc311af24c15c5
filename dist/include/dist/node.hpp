// A hidden Erlang distribution node on a libuv loop.
//
// The node listens on the first free port of its range, registers with epmd,
// accepts and initiates connections (the handshake runs through ei on worker
// threads; port lookups go through our own epmd client), and then owns each
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
#include <string>
#include <vector>

#include "common/result.hpp"
#include "dist/process_table.hpp"
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
  std::chrono::milliseconds accept_timeout{5000};   // an inbound handshake
  std::size_t max_frame = 128u << 20;
  std::size_t max_outbound = 16u << 20;  // bytes queued per peer before send() says queue_full
  int acceptor_threads = 2;
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
};

// Data frames sent towards a node on one connection (ticks excluded):
// handed to the connection, and written to the socket. Writes that had
// completed when the connection closed still count (their callbacks run
// after the close); once the connection is released (`final`) the counts no
// longer change, and a frame counted in `enqueued` but not in `written` never
// left this host.
struct OutboundProgress {
  std::uint64_t connection = 0;  // 0: unknown (never connected, or forgotten)
  std::uint64_t enqueued = 0;
  std::uint64_t written = 0;
  bool up = false;     // the connection is open
  bool final = false;  // closed and released: the counts are final
};

// The outcome of an rpc: the reply term (with version byte). {badrpc,
// Reason} is not a reply: it comes back as Errc::badrpc with the reason's
// text in the message.
struct RpcReply {
  std::string term;  // the reply, encoded with its version byte
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
  // Closes every connection, unregisters, stops the acceptors. Idempotent.
  // After stop() the loop runs to completion once its handles close.
  void stop();

  const std::string& name() const { return config_.name; }
  const NodeConfig& config() const { return config_; }
  std::uint16_t listen_port() const { return listen_port_; }
  std::uint32_t creation() const { return table_.creation(); }
  const NodeStats& stats() const { return stats_; }
  // Failed connects and accepts by reason (errc_name of the error:
  // "cookie_rejected", "connection_refused", "timeout", ...), for metrics.
  const std::map<std::string, std::uint64_t>& connect_failures_by_reason() const {
    return connect_failure_reasons_;
  }
  const std::map<std::string, std::uint64_t>& accept_failures_by_reason() const {
    return accept_failure_reasons_;
  }
  // Registered with epmd now (false before start, while re-registering after
  // the registration was lost, after stop; always false when !publish).
  bool registered() const { return registered_; }
  ProcessTable& processes() { return table_; }

  // Connects to `node` (alive@host; host an IPv4 address or a name). Calls cb
  // once it is up (at once, later, if it already is) or failed.
  void connect(const std::string& node, std::function<void(Result<void>)> cb);
  bool is_connected(const std::string& node) const;
  std::vector<std::string> connected_nodes() const;
  void disconnect(const std::string& node);

  void on_node_up(NodeEvent cb) { node_up_.push_back(std::move(cb)); }
  void on_node_down(NodeDownEvent cb) { node_down_.push_back(std::move(cb)); }

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
  Result<void> send(const term::Pid& to, std::span<const char> msg);
  Result<void> reg_send(const term::Pid& from, const std::string& node, const std::string& name,
                        std::span<const char> msg);
  // Calls cb once the node's outbound queue has room again (or the
  // connection went down: then with an error).
  void when_writable(const std::string& node, std::function<void(Result<void>)> cb);
  // Bytes queued towards `node` (0 when not connected).
  std::size_t queued_bytes(const std::string& node) const;
  // The frames of the current connection to `node`, or of the last one once
  // it closed (it stays readable in and after the node-down callbacks).
  OutboundProgress progress(const std::string& node) const;
  // The frames of connection `connection` to `node` (the current or the last
  // closed one); connection == 0 in the answer when it is neither.
  OutboundProgress progress(const std::string& node, std::uint64_t connection) const;
  // Called after a write towards `node` completed (progress().written grew).
  // The callback may send and may close connections.
  void on_written(NodeEvent cb) { written_.push_back(std::move(cb)); }

  // rpc:call(Node, Mod, Fun, Args) through rex, matched by a unique reference.
  // args: an encoded list with version byte.
  void rpc(const std::string& node, const std::string& mod, const std::string& fun,
           std::span<const char> args, std::chrono::milliseconds timeout,
           std::function<void(Result<RpcReply>)> cb);

  // Internal: used by Connection.
  void connection_up(Connection* c);
  void connection_closed(Connection* c, const Error& why);
  void dispatch(Connection* c, std::span<const char> control, std::span<const char> message);
  NodeStats& mutable_stats() { return stats_; }
  std::uint64_t next_connection_id() { return ++last_connection_id_; }
  void frames_written(Connection* c);
  // The connection has frames to write: it is flushed at the end of this
  // loop turn (Connection::flush), once however many frames it gets.
  void schedule_flush(Connection* c);
  uv_loop_t* loop() const { return loop_; }

 private:
  struct Impl;
  void finish_rpc(const term::Ref& ref, Result<RpcReply> result);
  // Calls every waiter of an outbound connect to `node` once, then forgets them.
  void finish_connect(const std::string& node, Result<void> r);
  void send_outgoing(const std::vector<struct Outgoing>& out);
  void install_builtins();

  uv_loop_t* loop_;
  NodeConfig config_;
  ProcessTable table_;
  NodeStats stats_;
  std::uint16_t listen_port_ = 0;
  std::vector<NodeEvent> node_up_;
  std::vector<NodeDownEvent> node_down_;
  std::deque<NodeEvent> written_;  // a deque: adding one keeps the others in place
  std::uint64_t last_connection_id_ = 0;
  std::map<std::string, std::uint64_t> connect_failure_reasons_;
  std::map<std::string, std::uint64_t> accept_failure_reasons_;
  bool registered_ = false;
  std::unique_ptr<Impl> impl_;
};

// Splits "alive@host". Fails with invalid_argument for anything else.
Result<std::pair<std::string, std::string>> split_node_name(const std::string& node);

}  // namespace beamlink::dist
