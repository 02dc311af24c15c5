#include "relay/delivery_core.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>

namespace beamlink::relay {

DeliveryCore::DeliveryCore(Link& link, DeliveryOptions options)
    : link_(link), options_(std::move(options)), sink_(new Sink{this, 0}) {}

DeliveryCore::~DeliveryCore() {
  // Completions still pending (their connections end later) find the core
  // gone; the last one frees the sink.
  if (sink_->pending == 0)
    delete sink_;
  else
    sink_->core = nullptr;
}

Result<void> DeliveryCore::enqueue(std::vector<Outbound> batch, std::uint64_t now_ms) {
  last_now_ = now_ms;
  if (batch.empty()) return make_error(Errc::invalid_argument, "delivery: nothing to send");
  // A batch may hold several messages for one node (one per pubsub). A
  // batch has a few nodes: a vector searched in order.
  struct PerNode {
    std::shared_ptr<const pubsub::PubSubRoute> route;
    std::size_t n = 0, bytes = 0;
  };
  std::vector<PerNode> per_node;
  per_node.reserve(batch.size());
  for (auto& m : batch) {
    auto same = std::find_if(per_node.begin(), per_node.end(),
                             [&](const auto& e) { return e.route->node == m.node(); });
    if (same == per_node.end()) same = per_node.insert(per_node.end(), PerNode{m.route});
    ++same->n;
    same->bytes += m.bytes->size();
  }
  for (auto& [route, n, bytes] : per_node) {
    const std::string& node = route->node;
    auto it = queues_.find(node);
    std::size_t depth = it == queues_.end() ? 0 : it->second.size();
    std::size_t depth_bytes = it == queues_.end() ? 0 : it->second.bytes;
    if (depth + n > options_.max_queue) {
      ++stats_.refused_full;
      ++stats_.refused_full_count;
      return make_error(Errc::queue_full,
                        "the queue to " + node + " is full: its count bound was hit (" +
                            std::to_string(depth) + " messages not yet written, at most " +
                            std::to_string(options_.max_queue) +
                            " per node, --relay-queue): retry later");
    }
    if (depth_bytes + bytes > options_.max_queue_bytes) {
      ++stats_.refused_full;
      ++stats_.refused_full_bytes;
      return make_error(Errc::queue_full,
                        "the queue to " + node + " is full: its byte bound was hit (" +
                            std::to_string(depth_bytes) + " bytes not yet written, at most " +
                            std::to_string(options_.max_queue_bytes) +
                            " per node, --relay-queue-bytes; this broadcast adds " +
                            std::to_string(bytes) + "): retry later");
    }
  }
  for (auto& m : batch) {
    auto it = queues_.find(m.node());
    if (it == queues_.end()) {
      it = queues_.try_emplace(m.node()).first;
      it->second.node = m.node();
    }
    it->second.bytes += m.bytes->size();
    it->second.waiting.push_back(Item{std::move(m), now_ms});
    ++stats_.accepted;
  }
  // The routes hold the node names: valid whatever the pumps do.
  for (auto& p : per_node) pump(p.route->node, now_ms);
  return {};
}

void DeliveryCore::completed(Queue& q, const Result<void>& r) {
  if (q.in_flight.empty()) return;  // not ours: cannot happen
  Item item = std::move(q.in_flight.front());
  q.in_flight.pop_front();
  if (r) {
    ++stats_.delivered;
    q.bytes -= item.msg.bytes->size();
  } else {
    q.cancelled.push_back(std::move(item));
  }
  // Settled once nothing of the cancelled ones' connection is in flight
  // (its completions come in order): they go back to the front, in order.
  if (q.cancelled.empty() ||
      (!q.in_flight.empty() && q.in_flight.front().connection == q.cancelled.front().connection))
    return;
  std::size_t n = q.cancelled.size();
  for (auto it = q.cancelled.rbegin(); it != q.cancelled.rend(); ++it) {
    it->connection = 0;
    q.waiting.push_front(std::move(*it));
  }
  q.cancelled.clear();
  stats_.retried += n;
  spdlog::warn(
      "{} message(s) to {} were not written before its connection closed: they are sent again "
      "when it is connected (at most {} ms after they were accepted)",
      n, q.node, options_.ttl.count());
  if (link_.connected(q.node)) pump(q.node, last_now_);
}

bool DeliveryCore::settled(const Queue& q) const {
  return q.cancelled.empty() &&
         (q.in_flight.empty() || q.in_flight.front().connection == link_.connection(q.node));
}

std::size_t DeliveryCore::drop_expired(const std::string& node, Queue& q, std::uint64_t now_ms) {
  auto ttl = static_cast<std::uint64_t>(options_.ttl.count());
  std::size_t n = 0;
  while (!q.waiting.empty() && now_ms - q.waiting.front().accepted_ms >= ttl) {
    q.bytes -= q.waiting.front().msg.bytes->size();
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
  last_now_ = now_ms;
  auto it = queues_.find(node);
  if (it == queues_.end()) return;
  Queue& q = it->second;
  if (settled(q) && link_.connected(node)) {
    // Older than the TTL: dropped rather than sent late (e.g. after a
    // reconnect), as the sweep would have.
    drop_expired(node, q, now_ms);
    std::uint64_t conn = link_.connection(node);
    Queue* qp = &q;  // stable: a queue with messages in flight stays in the map
    Sink* sink = sink_;
    while (!q.waiting.empty() && link_.queued_bytes(node) < options_.high_water) {
      // Out of the queue before the send: a send may close the connection,
      // and its handlers touch this queue.
      Item item = std::move(q.waiting.front());
      q.waiting.pop_front();
      auto r = link_.send(item.msg, [sink, qp](Result<void> done) {
        --sink->pending;
        if (sink->core)
          sink->core->completed(*qp, done);
        else if (sink->pending == 0)
          delete sink;
      });
      if (!r) {
        // queue_full or gone: the next write completion or node up pumps again.
        spdlog::debug("delivery to {}: {}", node, r.error().message);
        q.waiting.push_front(std::move(item));
        break;
      }
      ++sink_->pending;
      item.connection = conn;
      q.in_flight.push_back(std::move(item));
    }
  }
  // Kept while the node is connected (the next broadcast reuses it).
  if (q.size() == 0 && !link_.connected(node)) queues_.erase(it);
}

void DeliveryCore::connection_lost(const std::string&, std::uint64_t now_ms) {
  // What the connection did not write comes back through its completions.
  last_now_ = now_ms;
}

std::map<std::string, std::size_t> DeliveryCore::expire(std::uint64_t now_ms) {
  last_now_ = now_ms;
  std::map<std::string, std::size_t> dropped;
  std::vector<std::string> to_pump;
  for (auto it = queues_.begin(); it != queues_.end();) {
    auto& q = it->second;
    if (auto n = drop_expired(it->first, q, now_ms); n != 0) dropped[it->first] = n;
    if (settled(q) && !q.waiting.empty() && link_.connected(it->first))
      to_pump.push_back(it->first);
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

std::size_t DeliveryCore::depth_bytes(const std::string& node) const {
  auto it = queues_.find(node);
  return it == queues_.end() ? 0 : it->second.bytes;
}

}  // namespace beamlink::relay
