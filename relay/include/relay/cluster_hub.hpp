// The relay's link to the cluster: one object that both gateways use.
//
// Outbound (POST /v1/broadcast, a WebSocket push): a %Phoenix.Socket.Broadcast{}
// goes into every configured pubsub: each bridge plans one forward_to_local
// per BEAM node that has it (Phoenix.Channel.Server as dispatcher), and the
// sends of all bridges are queued in Delivery as one batch, all or none.
// Local listeners of the topic (WebSocket clients of this relay) get it too,
// as a Phoenix node's own subscribers do.
//
// Inbound: while a topic has listeners, every bridge is subscribed to it; a
// received %Phoenix.Socket.Broadcast{} is rendered once (payload to JSON,
// then the Phoenix V2 frame text) and handed to each listener of the topic.
// Other messages on a topic (Phoenix.PubSub carries any term) are counted as
// not_broadcast and logged at debug level: a channel client could not read
// them.
//
// Thread: the loop's thread only.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/metrics.hpp"
#include "common/topic_registry.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "relay/broadcast_api.hpp"
#include "relay/channel_hub.hpp"
#include "relay/delivery.hpp"
#include "term/json_term.hpp"

namespace beamlink::relay {

struct HubStats {
  std::uint64_t published = 0;              // broadcasts accepted (each for every node)
  std::uint64_t refused_not_connected = 0;  // publishes refused: no node has the pubsub
  std::uint64_t refused_queue_full = 0;     // publishes refused: a node's queue is full
  std::uint64_t refused_other = 0;          // publishes refused for another reason
  std::uint64_t received = 0;               // Socket.Broadcast messages from the cluster
  std::uint64_t not_broadcast = 0;          // other messages on a subscribed topic
  std::uint64_t undecodable = 0;            // broadcasts whose payload could not be rendered
  std::uint64_t local_deliveries = 0;       // listener calls
};

// A %Phoenix.Socket.Broadcast{} (pubsub::decode_socket_broadcast) with its
// payload as JSON text. Errors: unexpected_message when the term is another
// kind of message, bad_term when the payload has no JSON form or the bytes
// are no valid term.
struct DecodedBroadcast {
  std::string topic, event, payload_json;
};
Result<DecodedBroadcast> decode_broadcast_json(std::span<const char> term);

// [null,null,topic,event,payload] as Phoenix.Socket.V2.JSONSerializer sends
// a broadcast.
std::string v2_broadcast_text(std::string_view topic, std::string_view event,
                              std::string_view payload_json);

class ClusterHub : public Publisher, public ChannelHub {
 public:
  // The bridges and the delivery must outlive the hub.
  ClusterHub(Delivery& delivery, std::vector<pubsub::PubSubBridge*> bridges,
             term::JsonTermOptions json = {});
  ~ClusterHub() override;
  ClusterHub(const ClusterHub&) = delete;
  ClusterHub& operator=(const ClusterHub&) = delete;

  // A bridge created later (once the node is up): it joins the topics that
  // have listeners already.
  void add_bridge(pubsub::PubSubBridge* bridge);
  // How many bridges are configured (created once the node is up): until
  // they all exist, a publish says the relay is starting.
  void expect_bridges(std::size_t n) { expected_bridges_ = n; }
  const std::vector<pubsub::PubSubBridge*>& bridges() const { return bridges_; }

  // Publisher (POST /v1/broadcast): `message_term` is the Socket.Broadcast
  // with version byte.
  Result<void> publish(std::string_view topic, std::span<const char> message_term) override;

  // ChannelHub.
  Subscription subscribe(const std::string& topic, Listener listener) override;
  Result<void> publish(std::string_view topic, std::string_view event,
                       std::string_view payload_json) override;

  const HubStats& stats() const { return stats_; }
  std::size_t topics() const { return listeners_.size(); }
  // Broadcasts offered by outcome, broadcasts received from the cluster,
  // messages ignored by reason, subscribed topics.
  void write_metrics(MetricsWriter& m) const;

 private:
  // A topic's first listener subscribes every bridge to it; its last one
  // drops those subscriptions.
  void open_topic(const std::string& topic);
  // The broadcast term without its version byte, into every bridge's nodes.
  Result<void> publish_body(std::string_view topic, std::span<const char> body);
  void on_cluster_message(const pubsub::PubSubMessage& m);
  void dispatch_local(const std::string& topic, std::string_view event,
                      std::string_view payload_json);

  Delivery& delivery_;
  std::vector<pubsub::PubSubBridge*> bridges_;
  term::JsonToTerm json_;
  std::size_t expected_bridges_ = 0;
  HubStats stats_;
  std::map<std::string, std::vector<Subscription>, std::less<>> bridge_subs_;  // topic → bridges'
  TopicRegistry<const ChannelBroadcast&> listeners_;
};

}  // namespace beamlink::relay
