#include "relay/cluster_hub.hpp"

#include <spdlog/spdlog.h>

#include "common/utf8.hpp"
#include "pubsub/socket_broadcast.hpp"
#include "term/term_json.hpp"

namespace beamlink::relay {

Result<DecodedBroadcast> decode_broadcast_json(std::span<const char> term) {
  auto b = pubsub::decode_socket_broadcast(term);
  if (!b) return b.error();
  // Every client gets it as a WebSocket text frame, which must be UTF-8
  // (RFC 6455 section 8.1: a browser fails the connection otherwise).
  if (!valid_utf8(b->topic)) return make_error(Errc::bad_term, "the topic is not valid UTF-8");
  if (!valid_utf8(b->event)) return make_error(Errc::bad_term, "the event is not valid UTF-8");
  term::TermReader r(b->payload);
  auto json = term::to_json(r);
  if (!json) return make_error(Errc::bad_term, "payload: " + json.error().message);
  return DecodedBroadcast{std::string(b->topic), std::string(b->event), std::move(*json)};
}

std::string v2_broadcast_text(std::string_view topic, std::string_view event,
                              std::string_view payload_json) {
  std::string out;
  auto t = term::json_quote(topic);
  auto e = term::json_quote(event);
  out.reserve(12 + t.size() + e.size() + payload_json.size());
  out += "[null,null,";
  out += t;
  out += ',';
  out += e;
  out += ',';
  out += payload_json;
  out += ']';
  return out;
}

ClusterHub::ClusterHub(Delivery& delivery, std::vector<pubsub::PubSubBridge*> bridges,
                       term::JsonTermOptions json)
    : delivery_(delivery),
      bridges_(std::move(bridges)),
      json_(std::move(json)),
      listeners_([this](const std::string& topic) { open_topic(topic); },
                 [this](const std::string& topic) { bridge_subs_.erase(topic); }) {}

void ClusterHub::add_bridge(pubsub::PubSubBridge* bridge) {
  bridges_.push_back(bridge);
  for (const auto& topic : listeners_.topics()) {
    bridge_subs_[topic].push_back(bridge->subscribe(
        topic, [this](const pubsub::PubSubMessage& m) { on_cluster_message(m); }));
  }
}

void ClusterHub::open_topic(const std::string& topic) {
  auto& subs = bridge_subs_[topic];
  for (auto* bridge : bridges_) {
    subs.push_back(bridge->subscribe(
        topic, [this](const pubsub::PubSubMessage& m) { on_cluster_message(m); }));
  }
}

// The listeners' subscriptions may outlive the hub; the bridges' go with it.
ClusterHub::~ClusterHub() = default;

Result<void> ClusterHub::publish(std::string_view topic, std::span<const char> message_term) {
  if (message_term.empty() || static_cast<unsigned char>(message_term[0]) != 131)
    return make_error(Errc::invalid_argument, "the broadcast term has no version byte");
  return publish_body(topic, message_term.subspan(1));
}

Result<void> ClusterHub::publish_body(std::string_view topic, std::span<const char> body) {
  std::vector<Outbound> batch;
  std::optional<Error> first;
  for (auto* bridge : bridges_) {
    auto sends = bridge->plan(topic, body, pubsub::kChannelServer);
    if (!sends) {
      if (!first) first = sends.error();
      continue;  // this pubsub has no node yet; the others may
    }
    for (auto& s : *sends) batch.push_back(Outbound{std::move(s.route), std::move(s.message)});
  }
  if (batch.empty()) {
    if (first && first->code != Errc::not_connected) {
      ++stats_.refused_other;
      return *first;
    }
    ++stats_.refused_not_connected;
    if (bridges_.size() < expected_bridges_)
      return make_error(Errc::not_connected,
                        "the relay is starting: not registered with epmd yet, so not in the "
                        "cluster's pubsubs");
    return make_error(Errc::not_connected,
                      bridges_.empty() ? "no pubsub is configured (set PUBSUB)"
                                       : "no connected BEAM node has the configured pubsub(s)");
  }
  if (auto r = delivery_.enqueue(std::move(batch)); !r) {
    ++(r.error().code == Errc::queue_full ? stats_.refused_queue_full : stats_.refused_other);
    return r;
  }
  ++stats_.published;
  if (listeners_.has(topic)) {
    auto d = decode_broadcast_json(body);
    if (d)
      dispatch_local(d->topic, d->event, d->payload_json);
    else
      ++stats_.undecodable;
  }
  return {};
}

Result<void> ClusterHub::publish(std::string_view topic, std::string_view event,
                                 std::string_view payload_json) {
  if (topic.empty()) return make_error(Errc::invalid_argument, "the topic must not be empty");
  if (event.empty()) return make_error(Errc::invalid_argument, "the event must not be empty");
  auto first = payload_json.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos || payload_json[first] != '{')
    return make_error(Errc::invalid_argument, "the payload must be a JSON object");
  term::TermWriter body(false);
  auto r = pubsub::write_socket_broadcast(
      body, topic, event, [&](term::TermWriter& w) { return json_.convert(payload_json, w); });
  if (!r) return r;
  return publish_body(topic, body.bytes());
}

Subscription ClusterHub::subscribe(const std::string& topic, Listener listener) {
  return listeners_.subscribe(topic, [this, l = std::move(listener)](const ChannelBroadcast& b) {
    ++stats_.local_deliveries;
    l(b);
  });
}

void ClusterHub::on_cluster_message(const pubsub::PubSubMessage& m) {
  auto d = decode_broadcast_json(m.message);
  if (!d) {
    if (d.error().code == Errc::unexpected_message) {
      ++stats_.not_broadcast;
      spdlog::debug("relay: a message on topic {} that is not a Phoenix.Socket.Broadcast: {}",
                    m.topic, d.error().message);
    } else {
      ++stats_.undecodable;
      spdlog::warn("relay: a broadcast on topic {} could not be rendered as JSON: {}",
                   sanitize_utf8(m.topic, true), d.error().message);
    }
    return;
  }
  ++stats_.received;
  dispatch_local(std::string(m.topic), d->event, d->payload_json);
}

void ClusterHub::dispatch_local(const std::string& topic, std::string_view event,
                                std::string_view payload_json) {
  if (!listeners_.has(topic)) return;
  auto text = std::make_shared<const std::string>(v2_broadcast_text(topic, event, payload_json));
  ChannelBroadcast b{topic, event, payload_json, text};
  listeners_.emit(topic, b);  // a listener may drop any subscription meanwhile
}

void ClusterHub::write_metrics(MetricsWriter& m) const {
  using T = MetricsWriter::Type;
  const auto& h = stats_;
  m.family("beamlink_relay_broadcasts_total", T::counter,
           "Broadcasts offered to the relay (HTTP and WebSocket), by outcome.");
  m.sample("beamlink_relay_broadcasts_total", h.published, {{"outcome", "accepted"}});
  m.sample("beamlink_relay_broadcasts_total", h.refused_not_connected,
           {{"outcome", "refused_not_connected"}});
  m.sample("beamlink_relay_broadcasts_total", h.refused_queue_full,
           {{"outcome", "refused_queue_full"}});
  m.sample("beamlink_relay_broadcasts_total", h.refused_other, {{"outcome", "refused_other"}});
  m.counter("beamlink_relay_cluster_broadcasts_total",
            "Phoenix.Socket.Broadcast messages received from the cluster.", h.received);
  m.family("beamlink_relay_cluster_messages_ignored_total", T::counter,
           "Messages on subscribed topics that no client could read, by reason.");
  m.sample("beamlink_relay_cluster_messages_ignored_total", h.not_broadcast,
           {{"reason", "not_broadcast"}});
  m.sample("beamlink_relay_cluster_messages_ignored_total", h.undecodable,
           {{"reason", "undecodable"}});
  m.gauge("beamlink_relay_subscribed_topics", "Topics with local subscribers.",
          static_cast<double>(topics()));
}

}  // namespace beamlink::relay
