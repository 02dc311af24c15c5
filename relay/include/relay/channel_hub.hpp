// What the WebSocket side of the relay (Phoenix Channels V2) needs from the
// cluster: subscribe to a topic's broadcasts, publish a client's push. The
// production implementation is the relay's ClusterHub over the PubSub
// bridges; tests use a fake.
//
// A broadcast is handed to listeners already rendered once for all of them:
// `v2_text` is the Phoenix V2 JSON frame `[null,null,topic,event,payload]`
// that Phoenix.Socket.V2.JSONSerializer's fastlane sends for a
// %Phoenix.Socket.Broadcast{}, shared by every listener of the topic.
//
// Thread: the loop's thread only.
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "common/signal.hpp"

namespace beamlink::relay {

struct ChannelBroadcast {
  std::string_view topic;
  std::string_view event;
  std::string_view payload_json;  // the payload as JSON text
  std::shared_ptr<const std::string> v2_text;
};

class ChannelHub {
 public:
  using Listener = std::function<void(const ChannelBroadcast&)>;
  virtual ~ChannelHub() = default;

  // Each broadcast on `topic` reaches the listener once, until the
  // Subscription goes (it may outlive the hub). A listener may drop any
  // subscription during the call, its own included.
  virtual Subscription subscribe(const std::string& topic, Listener listener) = 0;
  // A push from a client: {topic, event, payload JSON} into the cluster as a
  // %Phoenix.Socket.Broadcast{}. Errors as for POST /v1/broadcast:
  // bad_json (the payload is not JSON, or over a limit) and invalid_argument
  // (a payload the mapping refuses): the message is the reason;
  // not_connected / queue_full / shutting_down (no node can take it now).
  virtual Result<void> publish(std::string_view topic, std::string_view event,
                               std::string_view payload_json) = 0;
};

}  // namespace beamlink::relay
