// Phoenix Channels V2 text messages from a WebSocket client: the session
// core (join, leave, push, heartbeat, malformed), a sequence of messages per
// input (separated by newlines), against a hub that records pushes.
#include <cstddef>
#include <cstdint>
#include <string>

#include "common/topic_registry.hpp"
#include "common/utf8.hpp"
#include "relay/channel_hub.hpp"
#include "relay/phoenix_channels.hpp"

using namespace beamlink;

namespace {
struct Hub : relay::ChannelHub {
  TopicRegistry<const relay::ChannelBroadcast&> subs;
  Subscription subscribe(const std::string& topic, Listener l) override {
    return subs.subscribe(topic, std::move(l));
  }
  Result<void> publish(std::string_view, std::string_view, std::string_view) override { return {}; }
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Hub hub;
  relay::ChannelStats stats;
  {
    relay::ChannelSession session(hub, relay::ChannelLimits{}, stats,
                                  [](const relay::ChannelBroadcast&) {});
    std::string_view all(reinterpret_cast<const char*>(data), size);
    while (!all.empty()) {
      auto nl = all.find('\n');
      auto msg = all.substr(0, nl);
      // The WebSocket layer closes a connection on invalid UTF-8 before the
      // session sees the message (RFC 6455 section 8.1).
      if (!valid_utf8(msg)) break;
      auto out = session.handle_text(msg);
      if (out.close) break;
      if (nl == std::string_view::npos) break;
      all.remove_prefix(nl + 1);
    }
  }
  if (!hub.subs.empty()) std::abort();  // a closed session leaves no subscription behind
  return 0;
}
