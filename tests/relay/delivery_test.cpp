// DeliveryCore against a fake Link: order, write confirmation, retry after a
// lost connection, TTL expiry with counts, all-or-none refusal when a queue
// is full, and holding back above the high-water mark.
#include <doctest/doctest.h>

#include <deque>
#include <map>
#include <string>
#include <vector>

#include "relay/delivery_core.hpp"

using namespace beamlink;
using namespace beamlink::relay;

namespace {

// Connections as counters: send() appends to the node's wire and counts the
// frame as enqueued, keeping its completion; write(n) marks the next n as
// written and completes them ok (also after a disconnect, as libuv reports
// writes that completed before the close). disconnect() closes the
// connection; release() ends it: what was not written is lost, as on a real
// socket, and its completions say so. reconnect() releases the old
// connection and opens a new one.
struct FakeLink : Link {
  struct Progress {
    std::uint64_t connection = 0;
    std::uint64_t enqueued = 0;
    std::uint64_t written = 0;
    bool up = false;
    bool final = false;
  };
  struct Conn {
    Progress p;
    std::vector<std::string> wire;           // every frame handed to this connection
    std::deque<dist::SendDone> completions;  // of the frames not yet completed
  };
  std::map<std::string, Conn> conns;     // the current (or last) connection per node
  std::map<std::uint64_t, Conn> closed;  // earlier connections, by id, not yet released
  std::map<std::string, std::vector<std::string>> written;  // what reached each node
  std::uint64_t next_id = 0;
  std::size_t bytes_per_frame = 10;
  bool refuse = false;

  // As a real node's connections do when they close, every send still
  // pending completes (cancelled): the core's completion sink, which
  // outlives the core while completions are pending, is freed by the last.
  ~FakeLink() override {
    for (auto& [n, c] : conns) end(c);
    for (auto& [id, c] : closed) end(c);
  }

  // Completes what `c` did not write as cancelled, in order.
  static void end(Conn& c) {
    c.p.up = false;
    c.p.final = true;
    auto left = std::move(c.completions);
    c.completions.clear();
    for (auto& d : left) d(make_error(Errc::connection_closed, "closed before written"));
  }
  void reconnect(const std::string& n) {
    if (auto it = conns.find(n); it != conns.end() && !it->second.p.final) {
      Conn old = std::move(it->second);
      it->second = Conn{};
      end(old);
    }
    open(n);
  }
  // A new connection to n, leaving the old one (not released) in `closed`.
  void replace(const std::string& n) {
    auto& c = conns[n];
    c.p.up = false;
    closed[c.p.connection] = std::move(c);
    open(n);
  }
  void open(const std::string& n) {
    auto& c = conns[n];
    c = Conn{};
    c.p.connection = ++next_id;
    c.p.up = true;
  }
  void disconnect(const std::string& n) { conns[n].p.up = false; }
  void release(const std::string& n) { end(conns[n]); }
  void release(std::uint64_t id) {
    end(closed[id]);
    closed.erase(id);
  }
  void write(const std::string& n, std::size_t count) {
    auto& c = conns[n];
    for (std::size_t i = 0; i < count && c.p.written < c.p.enqueued; ++i) {
      written[n].push_back(c.wire[c.p.written++]);
      auto d = std::move(c.completions.front());
      c.completions.pop_front();
      d({});
    }
  }
  bool connected(const std::string& n) const override {
    auto it = conns.find(n);
    return it != conns.end() && it->second.p.up;
  }
  std::uint64_t connection(const std::string& n) const override {
    return connected(n) ? conns.at(n).p.connection : 0;
  }
  std::size_t queued_bytes(const std::string& n) const override {
    auto it = conns.find(n);
    if (it == conns.end()) return 0;
    return (it->second.p.enqueued - it->second.p.written) * bytes_per_frame;
  }
  Result<void> send(const Outbound& m, dist::SendDone done) override {
    if (!connected(m.node())) return make_error(Errc::not_connected, m.node());
    if (refuse) return make_error(Errc::queue_full, "connection queue full");
    auto& c = conns[m.node()];
    c.wire.push_back(*m.bytes);
    c.completions.push_back(std::move(done));
    ++c.p.enqueued;
    return {};
  }
};

std::vector<Outbound> batch(const std::vector<std::string>& nodes, const std::string& text) {
  auto bytes = std::make_shared<const std::string>(text);
  std::vector<Outbound> out;
  for (auto& n : nodes)
    out.push_back(Outbound{
        std::make_shared<const pubsub::PubSubRoute>(pubsub::PubSubRoute{n, term::Pid{}, "worker"}),
        bytes});
  return out;
}

DeliveryOptions opts(std::size_t max_queue = 100) {
  DeliveryOptions o;
  o.max_queue = max_queue;
  o.ttl = std::chrono::milliseconds(1000);
  o.high_water = 1000;
  return o;
}

}  // namespace

TEST_CASE("delivery: sends in order - counts delivered once written") {
  FakeLink link;
  link.reconnect("a@h");
  link.reconnect("b@h");
  DeliveryCore core(link, opts());
  for (int i = 0; i < 3; ++i)
    REQUIRE(core.enqueue(batch({"a@h", "b@h"}, "m" + std::to_string(i)), 0));
  CHECK(core.stats().accepted == 6);
  CHECK(core.stats().delivered == 0);
  CHECK(core.depth("a@h") == 3);
  link.write("a@h", 2);
  core.pump("a@h", 1);
  CHECK(core.stats().delivered == 2);
  CHECK(core.depth("a@h") == 1);
  link.write("a@h", 5);
  link.write("b@h", 5);
  core.pump("a@h", 2);
  core.pump("b@h", 2);
  CHECK(core.stats().delivered == 6);
  CHECK(core.depths().empty());
  CHECK(link.written["a@h"] == std::vector<std::string>{"m0", "m1", "m2"});
  CHECK(link.written["b@h"] == std::vector<std::string>{"m0", "m1", "m2"});
}

TEST_CASE("delivery: what a closed connection did not write is sent again after reconnect") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts());
  for (int i = 0; i < 4; ++i) REQUIRE(core.enqueue(batch({"a@h"}, "m" + std::to_string(i)), 0));
  link.write("a@h", 1);  // m0 made it; m1..m3 were in the socket's queue
  link.disconnect("a@h");
  core.connection_lost("a@h", 10);
  CHECK(core.stats().retried == 0);  // not released yet: its counts may still grow
  link.release("a@h");
  core.connection_lost("a@h", 10);
  CHECK(core.stats().delivered == 1);
  CHECK(core.stats().retried == 3);
  CHECK(core.depth("a@h") == 3);
  // Accepted while down: waits behind the retried ones.
  REQUIRE(core.enqueue(batch({"a@h"}, "m4"), 20));
  link.reconnect("a@h");
  core.pump("a@h", 30);
  link.write("a@h", 10);
  core.pump("a@h", 40);
  CHECK(core.stats().delivered == 5);
  CHECK(core.depth("a@h") == 0);
  CHECK(link.written["a@h"] == std::vector<std::string>{"m0", "m1", "m2", "m3", "m4"});
}

TEST_CASE("delivery: writes that complete after the close count - no duplicates") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts());
  for (int i = 0; i < 3; ++i) REQUIRE(core.enqueue(batch({"a@h"}, "m" + std::to_string(i)), 0));
  link.disconnect("a@h");
  core.connection_lost("a@h", 1);
  link.write("a@h", 2);  // the write callback of m0 m1 runs after the close
  link.release("a@h");
  REQUIRE(core.enqueue(batch({"a@h"}, "m3"), 2));  // waits: the node is down
  link.reconnect("a@h");
  core.pump("a@h", 3);
  link.write("a@h", 10);
  core.pump("a@h", 4);
  CHECK(core.stats().retried == 1);
  CHECK(core.stats().delivered == 4);
  CHECK(link.written["a@h"] == std::vector<std::string>{"m0", "m1", "m2", "m3"});
}

TEST_CASE("delivery: nothing newer is sent before a replaced connection is settled") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts());
  REQUIRE(core.enqueue(batch({"a@h"}, "m0"), 0));
  // Replaced before release: the old connection's fate is not known yet.
  std::uint64_t old = link.conns["a@h"].p.connection;
  link.replace("a@h");
  REQUIRE(core.enqueue(batch({"a@h"}, "m1"), 1));
  CHECK(link.conns["a@h"].p.enqueued == 0);  // m1 held back behind m0
  link.release(old);                         // its completion settles it: m0 goes again, then m1
  core.expire(2);
  link.write("a@h", 10);
  core.pump("a@h", 3);
  CHECK(link.written["a@h"] == std::vector<std::string>{"m0", "m1"});
  CHECK(core.stats().retried == 1);
}

TEST_CASE("delivery: a message older than the TTL is dropped rather than sent late") {
  FakeLink link;
  DeliveryCore core(link, opts());
  REQUIRE(core.enqueue(batch({"a@h"}, "old"), 0));
  REQUIRE(core.enqueue(batch({"a@h"}, "new"), 900));
  link.reconnect("a@h");
  core.pump("a@h", 1200);  // "old" waited 1200 ms (TTL 1000), "new" 300
  link.write("a@h", 10);
  core.pump("a@h", 1201);
  CHECK(link.written["a@h"] == std::vector<std::string>{"new"});
  CHECK(core.stats().expired == 1);
  CHECK(core.stats().accepted == core.stats().delivered + core.stats().expired);
}

TEST_CASE("delivery: a batch with two messages for one node counts both against its queue") {
  FakeLink link;
  DeliveryCore core(link, opts(3));
  REQUIRE(core.enqueue(batch({"a@h", "a@h"}, "m0"), 0));
  auto r = core.enqueue(batch({"a@h", "a@h"}, "m1"), 0);
  CHECK_FALSE(r);
  CHECK(core.depth("a@h") == 2);
}

TEST_CASE("delivery: a connection replaced without a reported close still retries") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts());
  REQUIRE(core.enqueue(batch({"a@h"}, "m0"), 0));
  link.reconnect("a@h");  // new connection id, m0 never written on the old one
  core.pump("a@h", 1);
  link.write("a@h", 1);
  core.pump("a@h", 2);
  CHECK(core.stats().retried == 1);
  CHECK(core.stats().delivered == 1);
  CHECK(link.written["a@h"] == std::vector<std::string>{"m0"});
}

TEST_CASE("delivery: waiting messages expire after the TTL - counted per node") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts());
  REQUIRE(core.enqueue(batch({"a@h", "b@h"}, "m0"), 0));  // b@h never connected
  REQUIRE(core.enqueue(batch({"b@h"}, "m1"), 600));
  CHECK(core.expire(999).empty());
  auto dropped = core.expire(1000);
  CHECK(dropped == std::map<std::string, std::size_t>{{"b@h", 1}});
  CHECK(core.stats().expired == 1);
  CHECK(core.depth("b@h") == 1);
  dropped = core.expire(1600);
  CHECK(dropped == std::map<std::string, std::size_t>{{"b@h", 1}});
  CHECK(core.stats().expired == 2);
  // In flight on a live connection: not expired (the socket has it).
  CHECK(core.expire(5000).empty());
  CHECK(core.depth("a@h") == 1);
  // Everything accepted is accounted for: delivered + expired + still queued.
  link.write("a@h", 1);
  core.pump("a@h", 5001);
  CHECK(core.stats().accepted == core.stats().delivered + core.stats().expired);
}

TEST_CASE("delivery: a full queue refuses the whole broadcast and says which node") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts(2));
  REQUIRE(core.enqueue(batch({"a@h"}, "m0"), 0));
  REQUIRE(core.enqueue(batch({"a@h"}, "m1"), 0));
  auto r = core.enqueue(batch({"b@h", "a@h"}, "m2"), 0);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::queue_full);
  CHECK(r.error().message.find("a@h") != std::string::npos);
  // The reason names the bound that was hit, with its numbers.
  CHECK(r.error().message.find("count bound") != std::string::npos);
  CHECK(r.error().message.find("2 messages not yet written, at most 2") != std::string::npos);
  CHECK(core.depth("b@h") == 0);  // none: all or nothing
  CHECK(core.stats().refused_full == 1);
  CHECK(core.stats().refused_full_count == 1);
  CHECK(core.stats().refused_full_bytes == 0);
  CHECK(core.stats().accepted == 2);
  link.write("a@h", 1);
  core.pump("a@h", 1);
  CHECK(core.enqueue(batch({"b@h", "a@h"}, "m2"), 0));
  CHECK_FALSE(core.enqueue({}, 0));
}

TEST_CASE("delivery: holds back above the high-water mark and resumes after writes") {
  FakeLink link;
  link.reconnect("a@h");
  auto o = opts();
  o.high_water = 30;  // three frames of 10 bytes
  DeliveryCore core(link, o);
  for (int i = 0; i < 10; ++i) REQUIRE(core.enqueue(batch({"a@h"}, "m" + std::to_string(i)), 0));
  CHECK(link.conns["a@h"].p.enqueued == 3);
  link.write("a@h", 3);
  core.pump("a@h", 1);
  CHECK(link.conns["a@h"].p.enqueued == 6);
  for (int i = 0; i < 3; ++i) {
    link.write("a@h", 3);
    core.pump("a@h", 2);
  }
  CHECK(core.stats().delivered == 10);
  CHECK(link.written["a@h"].size() == 10);
  CHECK(link.written["a@h"].back() == "m9");
}

TEST_CASE("delivery: a send the connection refuses waits for the next pump") {
  FakeLink link;
  link.reconnect("a@h");
  DeliveryCore core(link, opts());
  link.refuse = true;
  REQUIRE(core.enqueue(batch({"a@h"}, "m0"), 0));
  CHECK(link.conns["a@h"].p.enqueued == 0);
  CHECK(core.depth("a@h") == 1);
  link.refuse = false;
  core.pump("a@h", 1);
  link.write("a@h", 1);
  core.pump("a@h", 2);
  CHECK(core.stats().delivered == 1);
}

TEST_CASE("delivery: a node's queue is bounded in bytes as well as in messages") {
  FakeLink link;  // a@h is down: everything waits
  DeliveryOptions o = opts();
  o.max_queue_bytes = 1000;
  DeliveryCore core(link, o);
  const std::string big(300, 'x');
  for (int i = 0; i < 3; ++i) REQUIRE(core.enqueue(batch({"a@h", "b@h"}, big), 0));
  CHECK(core.depth_bytes("a@h") == 900);
  // A fourth would make 1200 bytes: refused as a whole, for both nodes.
  auto r = core.enqueue(batch({"a@h", "b@h"}, big), 0);
  REQUIRE_FALSE(r);
  CHECK(r.error().code == Errc::queue_full);
  CHECK(r.error().message.find("900 bytes not yet written, at most 1000") != std::string::npos);
  CHECK(r.error().message.find("byte bound") != std::string::npos);
  CHECK(r.error().message.find("this broadcast adds 300") != std::string::npos);
  CHECK(core.stats().refused_full == 1);
  CHECK(core.stats().refused_full_bytes == 1);
  CHECK(core.stats().refused_full_count == 0);
  CHECK(core.depth("b@h") == 3);
  // A small one still fits.
  REQUIRE(core.enqueue(batch({"a@h"}, std::string(100, 'y')), 0));
  CHECK(core.depth_bytes("a@h") == 1000);
  // Written messages free their bytes.
  link.reconnect("a@h");
  core.pump("a@h", 1);
  link.write("a@h", 2);
  CHECK(core.depth_bytes("a@h") == 400);
  REQUIRE(core.enqueue(batch({"a@h"}, big), 2));
  // Expired ones too (b@h never connected).
  core.expire(5000);
  CHECK(core.depth_bytes("b@h") == 0);
  CHECK(core.depth("b@h") == 0);
}
