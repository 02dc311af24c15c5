#include "relay/delivery.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include "common/uv_util.hpp"

namespace beamlink::relay {

DeliveryCore::DeliveryCore(Link& link, DeliveryOptions options)
    : link_(link), options_(std::move(options)) {}

Result<void> DeliveryCore::enqueue(std::vector<Outbound> batch, std::uint64_t now_ms) {
  if (batch.empty()) return make_error(Errc::invalid_argument, "delivery: nothing to send");
  for (auto& m : batch) {
    auto it = queues_.find(m.node);
    std::size_t depth = it == queues_.end() ? 0 : it->second.size();
    if (depth >= options_.max_queue) {
      ++stats_.refused_full;
      return make_error(Errc::queue_full, "the queue to " + m.node + " is full (" +
                                              std::to_string(depth) +
                                              " broadcasts not yet written): retry later");
    }
  }
  std::vector<std::string> nodes;
  for (auto& m : batch) {
    nodes.push_back(m.node);
    queues_[m.node].waiting.push_back(Item{std::move(m), now_ms});
    ++stats_.accepted;
  }
  for (auto& n : nodes) pump(n, now_ms);
  return {};
}

void DeliveryCore::confirm(Queue& q, const cnode::OutboundProgress& p) {
  while (!q.in_flight.empty()) {
    auto& front = q.in_flight.front();
    if (front.connection != p.connection || front.seq > p.written) break;
    q.in_flight.pop_front();
    ++stats_.delivered;
  }
}

void DeliveryCore::pump(const std::string& node, std::uint64_t now_ms) {
  auto it = queues_.find(node);
  if (it == queues_.end()) return;
  Queue& q = it->second;
  auto p = link_.progress(node);
  confirm(q, p);
  if (!q.in_flight.empty() && q.in_flight.front().connection != p.connection) {
    // Handed to a connection that is gone (its close was not reported):
    // those wait again, ahead of the rest.
    connection_lost(node, now_ms);
    it = queues_.find(node);
    if (it == queues_.end()) return;
  }
  Queue& queue = it->second;
  if (link_.connected(node)) {
    while (!queue.waiting.empty() && link_.queued_bytes(node) < options_.high_water) {
      Item& item = queue.waiting.front();
      if (auto r = link_.send(item.msg); !r) {
        // queue_full or gone: the next write completion or node up pumps again.
        spdlog::debug("delivery to {}: {}", node, r.error().message);
        break;
      }
      auto after = link_.progress(node);
      item.connection = after.connection;
      item.seq = after.enqueued;
      queue.in_flight.push_back(std::move(item));
      queue.waiting.pop_front();
    }
  }
  if (queue.size() == 0) queues_.erase(it);
}

void DeliveryCore::connection_lost(const std::string& node, std::uint64_t) {
  auto it = queues_.find(node);
  if (it == queues_.end()) return;
  Queue& q = it->second;
  confirm(q, link_.progress(node));
  if (q.in_flight.empty()) return;
  std::size_t n = q.in_flight.size();
  // Back to the front, keeping their order ahead of what waited already.
  for (auto r = q.in_flight.rbegin(); r != q.in_flight.rend(); ++r) {
    r->connection = r->seq = 0;
    q.waiting.push_front(std::move(*r));
  }
  q.in_flight.clear();
  stats_.retried += n;
  spdlog::warn(
      "{} broadcast(s) to {} were not written before its connection closed: they wait for it "
      "to reconnect (at most {} ms after they were accepted)",
      n, node, options_.ttl.count());
}

std::map<std::string, std::size_t> DeliveryCore::expire(std::uint64_t now_ms) {
  std::map<std::string, std::size_t> dropped;
  auto ttl = static_cast<std::uint64_t>(options_.ttl.count());
  for (auto it = queues_.begin(); it != queues_.end();) {
    auto& q = it->second;
    std::size_t n = 0;
    while (!q.waiting.empty() && now_ms - q.waiting.front().accepted_ms >= ttl) {
      q.waiting.pop_front();
      ++n;
    }
    if (n != 0) {
      stats_.expired += n;
      dropped[it->first] = n;
      spdlog::error(
          "dropped {} broadcast(s) for {}: not written within {} ms of being accepted ({}); {} "
          "still queued",
          n, it->first, options_.ttl.count(),
          link_.connected(it->first) ? "the node is too slow" : "the node is not connected",
          q.size());
    }
    if (q.size() == 0)
      it = queues_.erase(it);
    else
      ++it;
  }
  return dropped;
}

std::map<std::string, std::size_t> DeliveryCore::depths() const {
  std::map<std::string, std::size_t> out;
  for (auto& [n, q] : queues_) out[n] = q.size();
  return out;
}

std::size_t DeliveryCore::depth(const std::string& node) const {
  auto it = queues_.find(node);
  return it == queues_.end() ? 0 : it->second.size();
}

// ---------------------------------------------------------------------------

Result<void> Delivery::NodeLink::send(const Outbound& m) {
  return node_.reg_send(m.from, m.node, m.to,
                        std::span<const char>(m.bytes->data(), m.bytes->size()));
}

Delivery::Delivery(cnode::Node& node, DeliveryOptions options)
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
    spdlog::error("shutting down with {} accepted broadcast(s) not written to {} node(s)", n,
                  left.size());
}

Result<void> Delivery::enqueue(std::vector<Outbound> batch) {
  return core_.enqueue(std::move(batch), now());
}

std::uint64_t Delivery::now() const {
  return uv_now(node_.loop());
}

}  // namespace beamlink::relay
