// A ChannelHub without a cluster, for the WebSocket tests: records what
// clients publish (or fails as told) and broadcasts to its listeners the way
// ClusterHub does, one rendered frame shared by all of them.
#pragma once

#include <map>
#include <memory>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

#include "common/topic_registry.hpp"
#include "relay/channel_hub.hpp"
#include "relay/phoenix_channels.hpp"

namespace beamlink::test {

struct FakeChannelHub : relay::ChannelHub {
  TopicRegistry<const relay::ChannelBroadcast&> subs;
  std::vector<std::tuple<std::string, std::string, std::string>> published;
  std::optional<Error> fail;  // set: publish answers this error

  Subscription subscribe(const std::string& topic, Listener listener) override {
    return subs.subscribe(topic, std::move(listener));
  }
  Result<void> publish(std::string_view topic, std::string_view event,
                       std::string_view payload_json) override {
    if (fail) return *fail;
    published.emplace_back(topic, event, payload_json);
    return {};
  }
  std::size_t subscribers(const std::string& topic) const { return subs.count(topic); }
  void broadcast(const std::string& topic, const std::string& event, const std::string& payload) {
    auto text = std::make_shared<const std::string>(
        relay::encode_channel_message(std::nullopt, std::nullopt, topic, event, payload));
    relay::ChannelBroadcast b{topic, event, payload, text};
    subs.emit(topic, b);
  }
};

}  // namespace beamlink::test
