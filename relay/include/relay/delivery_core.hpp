// Delivery of accepted broadcasts to BEAM nodes: one bounded FIFO per node,
// so that what the relay accepted reaches each node in order or is counted
// and logged when it cannot (DESIGN.md, "Relay contract": nothing accepted is
// dropped silently).
//
// A message moves through three states per node:
//   waiting   in our queue, not yet handed to the connection;
//   in flight handed to the connection (Node::reg_send), not yet written;
//   done      the connection wrote it to the socket (counted delivered).
// Each send carries a completion (dist::SendDone) that the connection calls
// exactly once: written (done), or cancelled because the connection closed
// first (writes that completed before the close still count as written).
// Once every in-flight message of a closed connection is completed, the
// cancelled ones go back to the front of the waiting queue, in order, and
// are sent again once the node is connected; nothing newer is sent to the
// node before that is settled. A waiting message older than the TTL is dropped, counted
// as expired and logged (one line per node per sweep), also when its node is
// back (checked before each send). A node's queue holds at
// most max_queue messages and max_queue_bytes bytes; a publish that would
// overflow any of its target
// nodes is refused as a whole (queue_full), so a refused broadcast reached
// nobody and an accepted one is queued for every target.
//
// Order: one FIFO per node; a retried message keeps its place ahead of
// everything accepted after it. So the order of broadcasts per node (and so
// per topic per node) is the order they were accepted.
//
// DeliveryCore is the logic without I/O: it talks to the connections through
// the Link interface and takes the time as an argument. Its header includes
// no libuv (tests/relay/no_io_headers_test.cpp checks it); Delivery, the
// adapter over dist::Node and a libuv timer, is in relay/delivery.hpp.
//
// Thread: the loop's thread only.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "dist/send_done.hpp"
#include "pubsub/pubsub_bridge.hpp"

namespace beamlink::relay {

// One message for one node: `bytes` (version byte first) to the registered
// name route->to on route->node, sent as route->from. The bytes are shared
// by every node's copy, the route by every message to the node.
struct Outbound {
  std::shared_ptr<const pubsub::PubSubRoute> route;
  std::shared_ptr<const std::string> bytes;
  const std::string& node() const { return route->node; }
};

struct DeliveryOptions {
  std::size_t max_queue = 10000;  // messages per node, waiting or in flight
  // Bytes per node, waiting or in flight (a message's bytes are shared by
  // every node's copy, so the process holds about the largest node's).
  std::size_t max_queue_bytes = 64u << 20;
  std::chrono::milliseconds ttl{30000};   // how long a message may wait for its node
  std::size_t high_water = 256u << 10;    // bytes in the connection's queue before we hold back
  std::chrono::milliseconds sweep{1000};  // how often expiry is checked
};

struct DeliveryStats {
  std::uint64_t accepted = 0;            // messages queued (one per node per broadcast)
  std::uint64_t delivered = 0;           // written to a node's connection
  std::uint64_t retried = 0;             // sent again after their connection closed unwritten
  std::uint64_t expired = 0;             // dropped: not sent within the TTL
  std::uint64_t refused_full = 0;        // publishes refused: a target queue was full
  std::uint64_t refused_full_count = 0;  // of which its message count bound (max_queue)
  std::uint64_t refused_full_bytes = 0;  // of which its byte bound (max_queue_bytes)
};

// What DeliveryCore needs from the connections (dist::Node in production).
class Link {
 public:
  virtual ~Link() = default;
  virtual bool connected(const std::string& node) const = 0;
  // Which connection to `node` is up (unique per link; 0: none).
  virtual std::uint64_t connection(const std::string& node) const = 0;
  virtual std::size_t queued_bytes(const std::string& node) const = 0;
  // Hands `m` to the node's connection. When it succeeds, `done` is called
  // exactly once, later, never from inside send: ok once written, an error
  // once the connection closed without writing it; the completions of one
  // connection in the order of the sends. When it fails, never.
  virtual Result<void> send(const Outbound& m, dist::SendDone done) = 0;
};

class DeliveryCore {
 public:
  DeliveryCore(Link& link, DeliveryOptions options);

  // Queues one broadcast: every message of `batch` (one per node), all or
  // none. Fails with queue_full (naming the node) when a target queue is
  // full, with invalid_argument for an empty batch. Sends what it can now.
  Result<void> enqueue(std::vector<Outbound> batch, std::uint64_t now_ms);

  // Sends a node's waiting messages while its connection has room. Call
  // when it connects and after its writes. (A completion that settles a
  // closed connection pumps by itself.)
  void pump(const std::string& node, std::uint64_t now_ms);
  // The node's connection closed: what it did not write waits again once
  // its completions have all come (they say which were written).
  void connection_lost(const std::string& node, std::uint64_t now_ms);
  // Drops waiting messages older than the TTL and pumps connected nodes.
  // Returns, per node, how many it dropped.
  std::map<std::string, std::size_t> expire(std::uint64_t now_ms);

  ~DeliveryCore();
  DeliveryCore(const DeliveryCore&) = delete;
  DeliveryCore& operator=(const DeliveryCore&) = delete;

  const DeliveryStats& stats() const { return stats_; }
  // Messages waiting or in flight, per node (nodes with none are left out).
  std::map<std::string, std::size_t> depths() const;
  std::size_t depth(const std::string& node) const;
  // Bytes of the node's messages waiting or in flight.
  std::size_t depth_bytes(const std::string& node) const;
  const DeliveryOptions& options() const { return options_; }

 private:
  struct Item {
    Outbound msg;
    std::uint64_t accepted_ms = 0;
    std::uint64_t connection = 0;  // in flight: the connection it was handed to
  };
  struct Queue {
    std::string node;
    std::deque<Item> in_flight;   // oldest first; completed in this order
    std::deque<Item> waiting;     // oldest first
    std::vector<Item> cancelled;  // completed unwritten, until their connection is settled
    std::size_t size() const { return in_flight.size() + waiting.size() + cancelled.size(); }
    std::size_t bytes = 0;  // of every message in the three lists
  };
  // What the completions capture: 16 bytes, so a std::function holds them
  // without allocating. Outlives the core while completions are pending
  // (then `core` is null and the last completion frees it).
  struct Sink {
    DeliveryCore* core = nullptr;
    std::size_t pending = 0;
  };
  void completed(Queue& q, const Result<void>& r);
  // Nothing of an earlier connection is in flight: new sends may go.
  bool settled(const Queue& q) const;
  std::size_t drop_expired(const std::string& node, Queue& q, std::uint64_t now_ms);

  Link& link_;
  DeliveryOptions options_;
  std::map<std::string, Queue, std::less<>> queues_;
  DeliveryStats stats_;
  Sink* sink_;
  std::uint64_t last_now_ = 0;  // the time of the last call, for pumps from completions
};

}  // namespace beamlink::relay
