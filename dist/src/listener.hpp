// The listening side of the node: the distribution port (the first free one
// of the range, as inet_dist_listen_min/max), accepted with libuv, and every
// inbound handshake run on the loop by HandshakeAcceptorCore — no thread, no
// blocking read, no select().
//
// Guards against peers that stall or flood (a BEAM's own inet_tcp_dist has
// a handshake timer per connection; we add caps):
// - one deadline for the whole handshake (handshake_timeout), however the
//   peer splits or trickles its bytes;
// - at most max_total handshakes in progress (a hard cap). Below it
//   nothing is shed, from whatever address: a connection closed is one a
//   flood opens again at once, and every flood connection not held here
//   waits in the kernel's accept queue in front of the next legitimate
//   peer (measured: a flood of 10,000 idle connections against a cap of
//   64 kept that queue full, and a legitimate ping waited behind it). So
//   the cap is sized to hold a flood (NodeConfig::max_handshakes, bounded
//   by the descriptor limit), and idle connections end at their deadline,
//   as a BEAM's do. At the cap the new connection always goes on and one
//   in progress makes room, picked among the kShedScan oldest (a bounded
//   scan, so an accept costs the same however many are held): first from
//   an address with more than max_per_source in progress (the new one
//   counted), so a flood from one address pays before anyone else; then
//   one that has said nothing for shed_grace (a legitimate peer sends its
//   name right after connecting and its reply right after our challenge);
//   then one still waiting for a name; then the oldest. Before one is shed
//   its socket is peeked: bytes that arrived but are not read yet (libuv
//   accepts a whole burst of connections before it reads any) spare it;
// - at most kAcceptBurst connections accepted in a row: then the loop
//   gets one turn (reads of the handshakes in progress, timers, other
//   work) before the next burst. libuv accepts until the queue is empty,
//   and a flood that reconnects as fast as it is shed never empties it:
//   without the turn, no handshake (a legitimate peer's included) would be
//   read again, and nothing else would run on the loop;
// - no pause or backoff after a failure: the next peer is served at once;
// - one log line per failure (peer address, step, why), at most kLogBurst
//   per reason per kLogWindowMs (a garbage flood does not hide the one
//   wrong-cookie line), then one summary line with the count by reason.
//
// On success the listener detaches the socket (a dup of its fd; the
// handshake's uv handle is closed) and hands it with the peer as the
// handshake proved it (name, version, flags, creation) to on_accepted.
//
// Thread: the loop's thread only. Callbacks are never called from inside
// start() or after stop(); on_accepted may stop or destroy the Listener.
#pragma once

#include <uv.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "common/result.hpp"
#include "common/uv_handle.hpp"
#include "dist/handshake_acceptor_core.hpp"

namespace beamlink::dist {

// Binds and listens on the first free port of [port_min, port_max] (port 0:
// any, read back). Returns the socket and its port; already_exists, naming
// the range and what to do, when none is free.
Result<std::pair<int, std::uint16_t>> listen_in_range(std::uint16_t port_min,
                                                      std::uint16_t port_max);

class Listener {
 public:
  struct Options {
    std::string our_name;  // alive@host
    std::string cookie;
    std::uint32_t creation = 1;
    std::chrono::milliseconds handshake_timeout{5000};  // the whole handshake
    std::size_t max_per_source = 8;                     // over it, an address pays first at the cap
    std::size_t max_total = 64;
    // At the cap, a handshake that has said nothing for this long is shed
    // before one that has.
    std::chrono::milliseconds shed_grace{200};
  };
  struct Accepted {
    int fd = -1;          // connected, handshaken; the receiver owns it
    AcceptedPeer peer;    // as the handshake proved it
    std::string address;  // "ip:port" of the peer
  };
  struct Stats {
    std::uint64_t accepted = 0;
    std::uint64_t failed = 0;
    std::map<std::string, std::uint64_t> failed_by_reason;  // HandshakeAcceptorCore::reason()
    std::uint64_t shed = 0;    // in-progress handshakes closed for a newer one (caps)
    std::uint64_t spared = 0;  // candidates to shed spared: their bytes had arrived unread
    std::size_t in_progress = 0;
  };
  using OnAccepted = std::function<void(Accepted)>;
  using NameStatusFn = std::function<NameStatus(const std::string&)>;

  // How many failures of one reason are logged per window before they are
  // only counted.
  static constexpr int kLogBurst = 5;
  static constexpr std::uint64_t kLogWindowMs = 10000;
  // Connections accepted before the loop gets a turn.
  static constexpr int kAcceptBurst = 32;

  explicit Listener(uv_loop_t* loop);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Takes ownership of listen_fd (also on failure) and accepts on it.
  Result<void> start(int listen_fd, Options opts, NameStatusFn name_status, OnAccepted on_accepted);
  // Stops accepting and closes every handshake in progress. Idempotent.
  void stop();

  const Stats& stats() const { return stats_; }

 private:
  struct Pending;
  using List = std::list<std::unique_ptr<Pending>>;
  // By source address (ip): how many handshakes it has in progress (the
  // shed ranking's "over its share").
  using Sources = std::unordered_map<std::string, std::size_t>;
  // How many of the oldest handshakes the total cap weighs to pick one to
  // shed.
  static constexpr std::size_t kShedScan = 64;

  static void on_connection(uv_stream_t* server, int status);
  static void on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf);
  static void on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t* buf);
  // Takes the connection libuv accepted; false when uv_accept failed.
  bool accept_one();
  // Makes room for a new connection from `source` under the caps.
  void make_room(const std::string& source);
  // The first of `candidates` whose peer has sent nothing that is waiting
  // unread in its socket, or null.
  Pending* first_quiet(const std::vector<Pending*>& candidates);
  void shed(List::iterator it);
  void remove(List::iterator it);
  // Sends bytes (try_write, then a queued write for what did not fit).
  // Returns false when the socket failed (the handshake was failed).
  bool send(Pending& p, std::string bytes);
  void fail(List::iterator it);
  void succeed(List::iterator it);
  void arm_deadline();
  void expire();
  void log_failure(const std::string& line, std::string_view reason);
  void flush_log_summary();

  uv_loop_t* loop_;
  Options opts_;
  NameStatusFn name_status_;
  OnAccepted on_accepted_;
  UvHandle<uv_tcp_t> server_;       // data: this
  UvHandle<uv_timer_t> deadline_;   // the oldest handshake's deadline
  UvHandle<uv_timer_t> log_timer_;  // flushes the suppressed-failure summary
  UvHandle<uv_idle_t> resume_;      // accepts the connection left pending after a burst
  int accepted_in_burst_ = 0;
  List pending_;  // oldest first
  Sources by_source_;
  Stats stats_;
  char read_buf_[4096];
  // Log rate limiting.
  std::uint64_t log_window_start_ = 0;
  std::map<std::string, int> logged_in_window_;  // by reason
  std::map<std::string, std::uint64_t> suppressed_;
  bool stopped_ = false;
};

}  // namespace beamlink::dist
