// Phoenix Channels, protocol version 2 (JSON), the server side as the
// official `phoenix` JavaScript client expects it: the core of one socket,
// without I/O. Text messages in, text frames (and maybe a close) out; joins
// and pushes go to a ChannelHub.
//
// Wire format (Phoenix.Socket.V2.JSONSerializer): every message is a JSON
// array [join_ref, ref, topic, event, payload]; join_ref and ref are strings
// or null. Replies are [join_ref, ref, topic, "phx_reply",
// {"status": "ok"|"error", "response": {...}}]. Behaviour follows
// Phoenix.Socket (1.7) and Phoenix.Channel.Server:
//   heartbeat  [_, ref, "phoenix", "heartbeat", _] → [null, ref, "phoenix",
//              "phx_reply", {"status":"ok","response":{}}], joined or not.
//   phx_join   subscribe, reply ok with the message's join_ref and ref.
//              Joining a joined topic again closes the old channel first:
//              after the new join's reply comes [old_join_ref, old_join_ref,
//              topic, "phx_close", {}] (Phoenix.Socket's duplicate join),
//              which the client drops as outdated. A topic that is empty,
//              over max_topic_bytes, or one joined topic too many is refused
//              with status error and {"reason": ...}.
//   phx_leave  on a joined topic: unsubscribe, reply ok with the channel's
//              join_ref, then [join_ref, join_ref, topic, "phx_close", {}].
//              A leave whose join_ref is not the channel's (a client racing
//              a close) is dropped, as Phoenix does. On a topic not joined:
//              reply ok (Phoenix.Socket answers those itself).
//   other      on a joined topic: ChannelHub::publish(topic, event, payload
//              as JSON text), reply ok, or error with {"reason": ...}: the
//              hub's message for invalid_argument, else the Errc name
//              (queue_full, not_connected, shutting_down). Events starting
//              with "phx_" are refused (reason "reserved event"): broadcast,
//              they would make every client's channel close or error.
//              On a topic not joined: [null, ref, topic, "phx_reply",
//              {"status":"error","response":{"reason":"unmatched topic"}}].
//   malformed  not JSON, not an array of at least 5 (Phoenix ignores extra
//              elements), a topic or event that is not a string, a ref that
//              is neither string nor null: the socket is to be closed with
//              1008 and the reason (Phoenix's socket process crashes).
// Broadcasts from the hub go to the Deliver callback, for every topic this
// session joined, as the hub's shared v2_text.
//
// Thread: the loop's thread only. A ChannelSession unsubscribes everything
// when destroyed (its Subscriptions go).
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "relay/channel_hub.hpp"
#include "relay/websocket_protocol.hpp"

namespace beamlink::relay {

struct ChannelLimits {
  std::size_t max_topic_bytes = 256;
  std::size_t max_topics = 100;  // topics joined at once per socket
};

// Counters for metrics, shared by every socket of a ChannelSocketServer.
struct ChannelStats {
  std::uint64_t sockets_open = 0;      // now (a gauge)
  std::uint64_t sockets_total = 0;     // accepted since start
  std::uint64_t upgrades_refused = 0;  // handshakes answered with an HTTP error
  std::uint64_t joins = 0;             // successful phx_join
  std::uint64_t joins_refused = 0;     // phx_join answered with an error (limits)
  std::uint64_t leaves = 0;            // phx_leave of a joined topic
  std::uint64_t pushes = 0;            // client pushes the hub accepted
  std::uint64_t pushes_refused = 0;    // client pushes answered with an error
  std::uint64_t heartbeats = 0;
  std::uint64_t unmatched = 0;           // events on topics not joined
  std::uint64_t broadcasts_sent = 0;     // broadcast frames queued to sockets
  std::uint64_t slow_client_closes = 0;  // closed: outbound queue over its bound
  std::uint64_t idle_closes = 0;         // closed: nothing received for idle_timeout
  std::uint64_t protocol_errors = 0;     // closed: malformed message, binary message, invalid
                                         // UTF-8, message too big, RFC 6455 violation
  std::uint64_t unsent_closes = 0;       // TCP closed with bytes unwritten (the client left
                                         // or was stuck), slow clients aside
  WebSocketOutputStats output;           // what the sockets wrote, and in how many uv_writes
};

// One client message, decoded.
struct ChannelMessage {
  std::optional<std::string> join_ref;
  std::optional<std::string> ref;
  std::string topic;
  std::string event;
  std::string payload;  // JSON text (minified)
};

// Decodes a V2 text message. Errors: bad_json (not JSON) and protocol_error
// (not [join_ref, ref, topic, event, payload]), the message a reason fit
// for a close frame ("malformed message: invalid JSON (...)", "malformed
// message: expected [join_ref, ref, ...]").
Result<ChannelMessage> decode_channel_message(std::string_view text);

// [join_ref, ref, topic, event, payload] with `payload_json` inserted as is.
std::string encode_channel_message(const std::optional<std::string>& join_ref,
                                   const std::optional<std::string>& ref, std::string_view topic,
                                   std::string_view event, std::string_view payload_json);

// `s` as a JSON string, quotes included (RFC 8259 section 7), appended.
void append_json_string(std::string& out, std::string_view s);

class ChannelSession {
 public:
  struct Output {
    std::vector<std::string> frames;  // text frames to send, in order
    struct Close {
      CloseCode code;
      std::string reason;
    };
    std::optional<Close> close;  // close the socket after the frames
  };
  using Deliver = std::function<void(const ChannelBroadcast&)>;

  // `stats` must outlive the session. `deliver` is called from the hub's
  // listener, for each broadcast on a joined topic.
  ChannelSession(ChannelHub& hub, ChannelLimits limits, ChannelStats& stats, Deliver deliver);
  ~ChannelSession();
  ChannelSession(const ChannelSession&) = delete;
  ChannelSession& operator=(const ChannelSession&) = delete;

  // One complete text message from the client (valid UTF-8).
  Output handle_text(std::string_view text);

  std::size_t joined() const { return channels_.size(); }
  // The join_ref of the channel on `topic`, when joined (nullopt inside if
  // the client sent null).
  std::optional<std::optional<std::string>> join_ref(const std::string& topic) const;

 private:
  struct Channel {
    std::optional<std::string> join_ref;
    Subscription subscription;  // to the hub's broadcasts on the topic
  };
  void join(const ChannelMessage& m, Output& out);
  void leave(const ChannelMessage& m, Output& out);
  void push(const ChannelMessage& m, const Channel& channel, Output& out);

  ChannelHub& hub_;
  ChannelLimits limits_;
  ChannelStats& stats_;
  Deliver deliver_;
  std::map<std::string, Channel, std::less<>> channels_;  // topic → channel
};

}  // namespace beamlink::relay
