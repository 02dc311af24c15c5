// One distribution connection after the handshake: the socket on a libuv
// stream, our framing on it, ticks and batched, bounded writes.
//
// State machine: Up -> Closing -> Closed. close() moves to Closing once,
// tells the Node (connection_closed) synchronously, and uv_close()s the
// handle; the object deletes itself in the close callback, never before.
// Thread: the loop's thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "dist/framer.hpp"
#include "dist/node.hpp"

namespace beamlink::dist {

class Node;

class Connection {
 public:
  enum class State { up, closing, closed };

  // Takes ownership of `fd` (a connected, handshaken socket).
  Connection(Node& node, int fd, std::string peer, bool inbound);
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Puts the fd on the loop and starts reading. On failure the fd is closed
  // and the object must be destroyed with close().
  Result<void> open();

  const std::string& peer() const { return peer_; }
  bool inbound() const { return inbound_; }
  State state() const { return state_; }

  // Appends one frame to the outbound queue and starts a write when none is
  // in flight; frames queued meanwhile go out together in the next write.
  void send_frame(std::span<const char> control, std::span<const char> message);
  void send_tick();
  // Writes what send_frame queued (called by the Node once per loop turn).
  void flush();
  std::size_t queued() const { return pending_.size() + inflight_.size(); }

  // Data frames (ticks excluded) handed to send_frame, and those whose write
  // completed, since this connection opened; id is unique within the Node.
  std::uint64_t id() const { return id_; }
  // Shared with the Node, which keeps it readable after the close; the
  // connection updates it until it is released (then `final`).
  const std::shared_ptr<OutboundProgress>& progress() const { return progress_; }

  // Called by the node's ticker: sends a tick when idle, closes when the peer
  // has been silent for a whole ticktime.
  void on_tick_check(std::uint64_t now_ms, std::uint64_t ticktime_ms);

  void close(const Error& why);

  // Waiters for room in the outbound queue (below half of max_outbound).
  // Called from a later write completion; see Node::when_writable for the
  // case where there is room already.
  void when_writable(std::function<void(Result<void>)> cb);
  bool has_room() const;

  // A cache for the REG_SEND control of the last (from, name) pair.
  term::Pid regsend_from;
  std::string regsend_name;
  bool regsend_valid = false;
  std::string regsend_control;

 private:
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  static void on_close(uv_handle_t* h);
  void start_write();
  void notify_writable(const Result<void>& r);

  Node& node_;
  uv_tcp_t tcp_;
  uv_write_t write_req_;
  int fd_;
  std::string peer_;
  std::uint64_t id_;
  bool inbound_;
  State state_ = State::up;
  bool opened_ = false;
  bool writing_ = false;
  Framer framer_;
  std::string pending_;
  std::string inflight_;
  std::uint64_t last_read_ms_ = 0;
  std::uint64_t last_write_ms_ = 0;
  std::shared_ptr<OutboundProgress> progress_;
  std::uint64_t pending_frames_ = 0;
  std::uint64_t inflight_frames_ = 0;
  bool flush_scheduled_ = false;
  std::vector<std::function<void(Result<void>)>> writable_waiters_;
};

}  // namespace beamlink::dist
