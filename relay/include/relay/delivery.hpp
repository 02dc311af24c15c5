// Delivery of accepted broadcasts to BEAM nodes, over a dist::Node: the
// adapter that drives DeliveryCore (relay/delivery_core.hpp, where the
// states, bounds and order are described) from the node's events and a
// libuv timer.
//
// Thread: the loop's thread only.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "common/metrics.hpp"
#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/uv_handle.hpp"
#include "dist/node.hpp"
#include "relay/delivery_core.hpp"

namespace beamlink::relay {

// The adapter: DeliveryCore over a Node, pumping on node up and after each
// write, expiring on a timer. The Node must outlive
// it; destroy it before the loop closes (the timer is freed in its close
// callback).
class Delivery {
 public:
  Delivery(dist::Node& node, DeliveryOptions options = {});
  ~Delivery();
  Delivery(const Delivery&) = delete;
  Delivery& operator=(const Delivery&) = delete;

  Result<void> enqueue(std::vector<Outbound> batch);

  const DeliveryStats& stats() const { return core_.stats(); }
  std::map<std::string, std::size_t> depths() const { return core_.depths(); }
  const DeliveryOptions& options() const { return core_.options(); }
  // The queue depth of every connected node and any node with a queue, and
  // the messages queued, delivered, retried and dropped.
  void write_metrics(MetricsWriter& m) const;

 private:
  class NodeLink : public Link {
   public:
    explicit NodeLink(dist::Node& n) : node_(n) {}
    bool connected(const std::string& node) const override { return node_.is_connected(node); }
    std::uint64_t connection(const std::string& node) const override {
      return node_.connection_id(node);
    }
    std::size_t queued_bytes(const std::string& node) const override {
      return node_.queued_bytes(node);
    }
    Result<void> send(const Outbound& m, dist::SendDone done) override;

   private:
    dist::Node& node_;
  };
  std::uint64_t now() const;

  dist::Node& node_;
  NodeLink link_;
  DeliveryCore core_;
  UvHandle<uv_timer_t> timer_;  // the expiry sweep
  Subscription node_up_;
  Subscription node_down_;
  Subscription written_;
};

}  // namespace beamlink::relay
