#include "relay/delivery.hpp"

#include <spdlog/spdlog.h>
#include <uv.h>

#include "common/uv_handle.hpp"

namespace beamlink::relay {

Result<void> Delivery::NodeLink::send(const Outbound& m, dist::SendDone done) {
  return node_.reg_send(m.route->from, m.route->node, m.route->to,
                        std::span<const char>(m.bytes->data(), m.bytes->size()), std::move(done));
}

Delivery::Delivery(dist::Node& node, DeliveryOptions options)
    : node_(node), link_(node), core_(link_, std::move(options)) {
  auto pump = [this](const std::string& peer) { core_.pump(peer, now()); };
  node_up_ = node_.on_node_up(pump);
  written_ = node_.on_written(pump);
  node_down_ = node_.on_node_down(
      [this](const std::string& peer, const Error&) { core_.connection_lost(peer, now()); });
  // Without its sweep timer (only on a failing loop) expiry waits for pumps.
  if (int rc = timer_.init(node_.loop(), this, uv_timer_init); rc != 0) {
    spdlog::error("delivery: cannot create the expiry timer: {}", uv_strerror(rc));
    return;
  }
  auto every = static_cast<std::uint64_t>(core_.options().sweep.count());
  uv_timer_start(
      timer_.get(),
      [](uv_timer_t* t) {
        if (auto* self = static_cast<Delivery*>(t->data)) self->core_.expire(self->now());
      },
      every, every);
  uv_unref(timer_.handle());
}

Delivery::~Delivery() {
  timer_.reset();
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
  m.family("beamlink_relay_queue_bytes", T::gauge,
           "Bytes of the messages accepted for a node and not yet written to it (at most "
           "max_queue_bytes per node).");
  for (auto& [n, depth] : all)
    m.sample("beamlink_relay_queue_bytes", std::uint64_t{core_.depth_bytes(n)}, {{"node", n}});
  m.family("beamlink_relay_queue_limit", T::gauge,
           "The bounds of each node's queue: messages (--relay-queue) and bytes "
           "(--relay-queue-bytes); past either a broadcast is refused (503 queue_full).");
  m.sample("beamlink_relay_queue_limit", std::uint64_t{core_.options().max_queue},
           {{"bound", "count"}});
  m.sample("beamlink_relay_queue_limit", std::uint64_t{core_.options().max_queue_bytes},
           {{"bound", "bytes"}});
  m.family("beamlink_relay_queue_refusals_total", T::counter,
           "Broadcasts refused because a target node's queue was full, by the bound hit.");
  m.sample("beamlink_relay_queue_refusals_total", d.refused_full_count, {{"bound", "count"}});
  m.sample("beamlink_relay_queue_refusals_total", d.refused_full_bytes, {{"bound", "bytes"}});
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
