// One distribution connection after the handshake: the socket on a libuv
// stream, our framing on it, ticks and batched, bounded writes.
//
// Ownership: the Node owns each Connection (a std::unique_ptr in its table)
// and talks to it through ConnectionOwner. The tcp handle is a UvHandle:
// closing the connection closes it and clears its data, so libuv callbacks
// that still run for it (reads never; write requests cancelled by the close
// complete with UV_ECANCELED) touch nothing but their own request.
//
// State machine: Up -> (Finishing ->) Closed. close() moves to Closed once,
// tells the owner (connection_closed) synchronously and closes the handle;
// the owner destroys the object on a later loop turn, never inside a
// callback of its own. finish() is the orderly way out when the node stops:
// Finishing writes what is pending, shuts our side (FIN) and reads, dropping
// what arrives, until the peer closes or the linger time passes, then
// close()s. Closing a socket that holds unread bytes makes the kernel send
// RST, and a RST makes the peer drop what it had not read yet: frames
// already reported written would be lost.
//
// Write completions: a frame sent with a SendDone is completed exactly once,
// later: ok from the callback of the uv_write that carried it (status 0,
// also when that callback runs after the close), or connection_closed when
// the connection closed before it was written (cancelled in flight, or still
// in the pending buffer). Completions of one connection run in send order.
//
// Thread: the loop's thread only.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "connection_owner.hpp"
#include "dist/framer.hpp"
#include "dist/node.hpp"

namespace beamlink::dist {

class Connection {
 public:
  enum class State { up, finishing, closed };

  // Takes ownership of `fd` (a connected, handshaken socket).
  Connection(ConnectionOwner& owner, int fd, std::string peer, bool inbound, std::uint64_t id);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Puts the fd on the loop and starts reading. On failure the fd is closed;
  // the object is then closed (close() tells the owner nothing: it was
  // never up in its table) and destroyed by its owner.
  Result<void> open();

  const std::string& peer() const { return peer_; }
  bool inbound() const { return inbound_; }
  State state() const { return state_; }
  // What the peer announced in its handshake (set by the owner before open()).
  const PeerCaps& caps() const { return caps_; }
  void set_caps(const PeerCaps& caps) { caps_ = caps; }
  // Unique within the Node: which connection to a peer this is.
  std::uint64_t id() const { return id_; }

  // Appends one frame to the outbound queue; the owner flushes it at the end
  // of the loop turn, and frames queued meanwhile go out in the same write.
  // `done` (may be empty) is completed as the class comment says.
  void send_frame(std::span<const char> control, std::span<const char> message, SendDone done = {});
  void send_tick();
  // Writes what send_frame queued (called by the owner once per loop turn).
  void flush();
  std::size_t queued() const { return pending_.size() + inflight_bytes_; }

  // Called by the node's ticker: sends a tick when idle, closes when the peer
  // has been silent for a whole ticktime.
  void on_tick_check(std::uint64_t now_ms, std::uint64_t ticktime_ms);

  void close(const Error& why);
  // The orderly close described above; `why` is what close() reports at the
  // end. Frames sent meanwhile are dropped (the node is stopping). Does
  // nothing unless Up.
  void finish(const Error& why, std::uint64_t linger_ms);

  // Waiters for room in the outbound queue (below half of max_outbound):
  // called from a later write completion, or with an error when the
  // connection closes. See Node::when_writable for when there is room now.
  void when_writable(std::function<void(Result<void>)> cb);
  bool has_room() const;

  // The REG_SEND control of the last (from, name) pair, encoded once: a
  // reg_send to the same registered name reuses it.
  std::span<const char> reg_send_control(const term::Pid& from, const std::string& name,
                                         Result<void>& status);

 private:
  struct Write;
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  static void on_write(uv_write_t* req, int status);
  void start_write();
  void notify_writable(const Result<void>& r);
  // Finishing, nothing left to write: shut our side and wait for the peer.
  void shut_write_side();

  ConnectionOwner& owner_;
  UvHandle<uv_tcp_t> tcp_;
  int fd_;
  std::string peer_;
  std::uint64_t id_;
  bool inbound_;
  PeerCaps caps_;
  State state_ = State::up;
  Framer framer_;
  std::string pending_;
  std::vector<SendDone> pending_done_;  // completions of the frames in pending_
  Write* inflight_ = nullptr;           // owned by libuv until on_write
  std::size_t inflight_bytes_ = 0;
  std::unique_ptr<Write> spare_;  // a finished write, reused (its buffer's capacity too)
  std::uint64_t last_read_ms_ = 0;
  std::uint64_t last_write_ms_ = 0;
  bool flush_scheduled_ = false;
  std::vector<std::function<void(Result<void>)>> writable_waiters_;
  term::Pid regsend_from_;
  std::string regsend_name_;
  std::string regsend_control_;  // empty: none cached
  Error finish_why_;             // Finishing: what close() will report
  UvHandle<uv_timer_t> linger_;  // Finishing: the longest wait for the peer's close
  bool shut_ = false;            // Finishing: shutdown requested
};

}  // namespace beamlink::dist
