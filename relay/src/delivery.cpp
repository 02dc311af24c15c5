#include "relay/delivery.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include <algorithm>

#include "common/uv_util.hpp"

namespace beamlink::relay {

DeliveryCore::DeliveryCore(Link& link, DeliveryOptions options)
    : link_(link), options_(std::move(options)) {}

Result<void> DeliveryCore::enqueue(std::vector<Outbound> batch, std::uint64_t now_ms) {
  if (batch.empty()) return make_error(Errc::invalid_argument, "delivery: nothing to send");
  // A batch may hold several messages for one node (one per pubsub). A
  // batch has a few nodes: a vector searched in order.
  std::vector<std::pair<std::shared_ptr<const pubsub::PubSubRoute>, std::size_t>> per_node;
  per_node.reserve(batch.size());
  for (auto& m : batch) {
    auto same = std::find_if(per_node.begin(), per_node.end(),
                             [&](const auto& e) { return e.first->node == m.node(); });
    if (same == per_node.end())
      per_node.emplace_back(m.route, 1);
    else
      ++same->second;
  }
  for (auto& [route, n] : per_node) {
    const std::string& node = route->node;
    auto it = queues_.find(node);
    std::size_t depth = it == queues_.end() ? 0 : it->second.size();
    if (depth + n > options_.max_queue) {
      ++stats_.refused_full;
      return make_error(Errc::queue_full, "the queue to " + node + " is full (" +
                                              std::to_string(depth) +
                                              " messages not yet written): retry later");
    }
  }
  for (auto& m : batch) {
    auto it = queues_.find(m.node());
    if (it == queues_.end()) it = queues_.try_emplace(m.node()).first;
    it->second.waiting.push_back(Item{std::move(m), now_ms});
    ++stats_.accepted;
  }
  // The routes hold the node names: valid whatever the pumps do.
  for (auto& [route, n] : per_node) pump(route->node, now_ms);
  return {};
}

void DeliveryCore::confirm(Queue& q, const dist::OutboundProgress& p) {
  while (!q.in_flight.empty()) {
    auto& front = q.in_flight.front();
    if (front.connection != p.connection || front.seq > p.written) break;
    q.in_flight.pop_front();
    ++stats_.delivered;
  }
}

bool DeliveryCore::settle(const std::string& node, Queue& q) {
  auto live = link_.progress(node);
  while (!q.in_flight.empty()) {
    std::uint64_t conn = q.in_flight.front().connection;
    if (live.up && conn == live.connection) {
      confirm(q, live);
      return true;
    }
    auto p = link_.progress(node, conn);
    if (p.connection == conn && !p.final) return false;  // its last writes may still complete
    if (p.connection == conn) confirm(q, p);
    // What is left of `conn` was not written (or, when the link forgot the
    // connection, cannot be known to be): back to the front, in order.
    std::vector<Item> back;
    while (!q.in_flight.empty() && q.in_flight.front().connection == conn) {
      back.push_back(std::move(q.in_flight.front()));
      q.in_flight.pop_front();
    }
    if (back.empty()) continue;
    for (auto r = back.rbegin(); r != back.rend(); ++r) {
      r->connection = r->seq = 0;
      q.waiting.push_front(std::move(*r));
    }
    stats_.retried += back.size();
    spdlog::warn(
        "{} message(s) to {} were not written before its connection closed{}: they are sent "
        "again when it is connected (at most {} ms after they were accepted)",
        back.size(), node, p.connection == conn ? "" : " (or cannot be known to have been)",
        options_.ttl.count());
  }
  return true;
}

std::size_t DeliveryCore::drop_expired(const std::string& node, Queue& q, std::uint64_t now_ms) {
  auto ttl = static_cast<std::uint64_t>(options_.ttl.count());
  std::size_t n = 0;
  while (!q.waiting.empty() && now_ms - q.waiting.front().accepted_ms >= ttl) {
    q.waiting.pop_front();
    ++n;
  }
  if (n != 0) {
    stats_.expired += n;
    spdlog::error(
        "dropped {} message(s) for {}: not written within {} ms of being accepted ({}); {} still "
        "queued",
        n, node, options_.ttl.count(),
        link_.connected(node) ? "the node is too slow" : "the node is not connected", q.size());
  }
  return n;
}

void DeliveryCore::pump(const std::string& node, std::uint64_t now_ms) {
  auto it = queues_.find(node);
  if (it == queues_.end()) return;
  Queue& q = it->second;
  bool settled = settle(node, q);
  if (settled && link_.connected(node)) {
    // Older than the TTL: dropped rather than sent late (e.g. after a
    // reconnect), as the sweep would have.
    drop_expired(node, q, now_ms);
    while (!q.waiting.empty() && link_.queued_bytes(node) < options_.high_water) {
      // Out of the queue before the send: a send may close the connection,
      // and its handlers touch this queue.
      Item item = std::move(q.waiting.front());
      q.waiting.pop_front();
      if (auto r = link_.send(item.msg); !r) {
        // queue_full or gone: the next write completion or node up pumps again.
        spdlog::debug("delivery to {}: {}", node, r.error().message);
        q.waiting.push_front(std::move(item));
        break;
      }
      auto after = link_.progress(node);
      item.connection = after.connection;
      item.seq = after.enqueued;
      q.in_flight.push_back(std::move(item));
    }
  }
  // Kept while the node is connected (the next broadcast reuses it).
  if (q.size() == 0 && !link_.connected(node)) queues_.erase(it);
}

void DeliveryCore::connection_lost(const std::string& node, std::uint64_t) {
  auto it = queues_.find(node);
  if (it == queues_.end()) return;
  settle(node, it->second);  // if already released; else at the next pump or sweep
}

std::map<std::string, std::size_t> DeliveryCore::expire(std::uint64_t now_ms) {
  std::map<std::string, std::size_t> dropped;
  std::vector<std::string> to_pump;
  for (auto it = queues_.begin(); it != queues_.end();) {
    auto& q = it->second;
    bool settled = settle(it->first, q);
    if (auto n = drop_expired(it->first, q, now_ms); n != 0) dropped[it->first] = n;
    // A settle may have put messages back while the node is connected (its
    // connection was replaced): send them now.
    if (settled && !q.waiting.empty() && link_.connected(it->first)) to_pump.push_back(it->first);
    if (q.size() == 0)
      it = queues_.erase(it);
    else
      ++it;
  }
  for (auto& n : to_pump) pump(n, now_ms);
  return dropped;
}

std::map<std::string, std::size_t> DeliveryCore::depths() const {
  std::map<std::string, std::size_t> out;
  for (auto& [n, q] : queues_)
    if (q.size() != 0) out[n] = q.size();
  return out;
}

std::size_t DeliveryCore::depth(const std::string& node) const {
  auto it = queues_.find(node);
  return it == queues_.end() ? 0 : it->second.size();
}

// ---------------------------------------------------------------------------

Result<void> Delivery::NodeLink::send(const Outbound& m) {
  return node_.reg_send(m.route->from, m.route->node, m.route->to,
                        std::span<const char>(m.bytes->data(), m.bytes->size()));
}

Delivery::Delivery(dist::Node& node, DeliveryOptions options)
    : node_(node), link_(node), core_(link_, std::move(options)) {
  alive_ = std::make_shared<Delivery*>(this);
  std::weak_ptr<Delivery*> weak = alive_;
  auto pump = [weak](const std::string& peer) {
    if (auto c = weak.lock(); c && *c) (*c)->core_.pump(peer, (*c)->now());
  };
  node_.on_node_up(pump);
  node_.on_written(pump);
  node_.on_node_down([weak](const std::string& peer, const Error&) {
    if (auto c = weak.lock(); c && *c) (*c)->core_.connection_lost(peer, (*c)->now());
  });
  timer_ = new uv_timer_t;
  uv_timer_init(node_.loop(), timer_);
  timer_->data = this;
  auto every = static_cast<std::uint64_t>(core_.options().sweep.count());
  uv_timer_start(
      timer_,
      [](uv_timer_t* t) {
        auto* self = static_cast<Delivery*>(t->data);
        self->core_.expire(self->now());
      },
      every, every);
  uv_unref(reinterpret_cast<uv_handle_t*>(timer_));
}

Delivery::~Delivery() {
  *alive_ = nullptr;
  close_and_delete(timer_);
  timer_ = nullptr;
  auto left = core_.depths();
  std::size_t n = 0;
  for (auto& [node, d] : left) n += d;
  if (n != 0)
    spdlog::error("shutting down with {} accepted message(s) not written to {} node(s): dropped", n,
                  left.size());
}

Result<void> Delivery::enqueue(std::vector<Outbound> batch) {
  return core_.enqueue(std::move(batch), now());
}

std::uint64_t Delivery::now() const {
  return uv_now(node_.loop());
}

void Delivery::write_metrics(MetricsWriter& m) const {
  using T = MetricsWriter::Type;
  const auto& d = stats();
  m.family("beamlink_relay_queue_depth", T::gauge,
           "Messages accepted for a node and not yet written to it (every connected node, and "
           "any node with a queue).");
  auto all = depths();
  for (auto& p : node_.connected_nodes()) all.try_emplace(p, 0);
  for (auto& [n, depth] : all)
    m.sample("beamlink_relay_queue_depth", std::uint64_t{depth}, {{"node", n}});
  m.counter("beamlink_relay_messages_queued_total",
            "Messages queued for nodes (one per node per accepted broadcast).", d.accepted);
  m.counter("beamlink_relay_messages_delivered_total",
            "Queued messages written to their node's connection.", d.delivered);
  m.counter("beamlink_relay_messages_retried_total",
            "Messages put back in their queue because their connection closed before writing "
            "them (sent again on reconnect, or expired).",
            d.retried);
  m.family("beamlink_relay_messages_dropped_total", T::counter,
           "Queued messages dropped, by reason.");
  m.sample("beamlink_relay_messages_dropped_total", d.expired, {{"reason", "expired"}});
}

}  // namespace beamlink::relay
