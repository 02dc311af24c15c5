#include "relay/phoenix_channels.hpp"

#include <simdjson.h>

#include "common/utf8.hpp"
#include "term/term_json.hpp"

namespace beamlink::relay {

namespace {

constexpr std::string_view kOk = R"({"status":"ok","response":{}})";

Error malformed(std::string reason) {
  return make_error(Errc::protocol_error, std::move(reason));
}

// {"status":"error","response":{"reason":<reason>}}
std::string error_response(std::string_view reason) {
  std::string out = R"({"status":"error","response":{"reason":)";
  append_json_string(out, reason);
  out += "}}";
  return out;
}

constexpr std::size_t kMaxRef = 64;

// join_ref and ref: a string or null (Phoenix.Socket.Message).
Result<std::optional<std::string>> optional_string(simdjson::dom::element e, const char* what) {
  if (e.is_null()) return std::optional<std::string>{};
  std::string_view s;
  if (e.get(s) != simdjson::SUCCESS) {
    return malformed(std::string("malformed message: ") + what + " must be a string or null");
  }
  // phoenix.js sends short decimal counters; a long ref would be kept per
  // channel and echoed in every reply.
  if (s.size() > kMaxRef)
    return malformed(std::string("malformed message: ") + what + " longer than " +
                     std::to_string(kMaxRef) + " bytes");
  return std::optional<std::string>(std::string(s));
}

}  // namespace

void append_json_string(std::string& out, std::string_view s) {
  term::append_json_quoted(out, s);
}

std::string encode_channel_message(const std::optional<std::string>& join_ref,
                                   const std::optional<std::string>& ref, std::string_view topic,
                                   std::string_view event, std::string_view payload_json) {
  std::string out;
  out.reserve(32 + topic.size() + event.size() + payload_json.size());
  out.push_back('[');
  if (join_ref) {
    append_json_string(out, *join_ref);
  } else {
    out += "null";
  }
  out.push_back(',');
  if (ref) {
    append_json_string(out, *ref);
  } else {
    out += "null";
  }
  out.push_back(',');
  append_json_string(out, topic);
  out.push_back(',');
  append_json_string(out, event);
  out.push_back(',');
  out += payload_json;
  out.push_back(']');
  return out;
}

Result<ChannelMessage> decode_channel_message(std::string_view text) {
  // One parser for every socket of the loop's thread: its buffers grow to
  // the largest message seen (bounded by the WebSocket's max_message).
  thread_local simdjson::dom::parser parser;
  simdjson::dom::element doc;
  // simdjson copies the input with memcpy, which must not be given the null
  // pointer an empty view may hold.
  if (text.empty()) return make_error(Errc::bad_json, "malformed message: empty text frame");
  if (auto err = parser.parse(text.data(), text.size()).get(doc)) {
    return make_error(Errc::bad_json, std::string("malformed message: invalid JSON (") +
                                          simdjson::error_message(err) + ")");
  }
  simdjson::dom::array arr;
  if (doc.get(arr) != simdjson::SUCCESS || arr.size() < 5) {
    return malformed("malformed message: expected [join_ref, ref, topic, event, payload]");
  }
  ChannelMessage m;
  auto join_ref = optional_string(arr.at(0).value_unsafe(), "join_ref");
  if (!join_ref) return std::move(join_ref).error();
  auto ref = optional_string(arr.at(1).value_unsafe(), "ref");
  if (!ref) return std::move(ref).error();
  m.join_ref = std::move(*join_ref);
  m.ref = std::move(*ref);
  std::string_view topic, event;
  if (arr.at(2).get(topic) != simdjson::SUCCESS) {
    return malformed("malformed message: topic must be a string");
  }
  if (arr.at(3).get(event) != simdjson::SUCCESS) {
    return malformed("malformed message: event must be a string");
  }
  m.topic = std::string(topic);
  m.event = std::string(event);
  m.payload = simdjson::minify(arr.at(4).value_unsafe());
  return m;
}

// ChannelSession -------------------------------------------------------------

ChannelSession::ChannelSession(ChannelHub& hub, ChannelLimits limits, ChannelStats& stats,
                               Deliver deliver)
    : hub_(hub), limits_(limits), stats_(stats), deliver_(std::move(deliver)) {}

ChannelSession::~ChannelSession() = default;

std::optional<std::optional<std::string>> ChannelSession::join_ref(const std::string& topic) const {
  auto it = channels_.find(topic);
  if (it == channels_.end()) return std::nullopt;
  return it->second.join_ref;
}

ChannelSession::Output ChannelSession::handle_text(std::string_view text) {
  Output out;
  auto decoded = decode_channel_message(text);
  if (!decoded) {
    ++stats_.protocol_errors;
    // RFC 6455 5.5: a close reason fits in 123 bytes (ours are ASCII).
    out.close =
        Output::Close{CloseCode::policy_violation,
                      std::string(utf8_prefix(sanitize_utf8(decoded.error().message), 123))};
    return out;
  }
  const ChannelMessage& m = *decoded;
  // Phoenix.Socket handle_in/4, clause by clause.
  if (m.topic == "phoenix" && m.event == "heartbeat") {
    ++stats_.heartbeats;
    out.frames.push_back(encode_channel_message(std::nullopt, m.ref, "phoenix", "phx_reply", kOk));
    return out;
  }
  if (m.event == "phx_join") {
    join(m, out);
    return out;
  }
  auto it = channels_.find(m.topic);
  if (it == channels_.end()) {
    if (m.event == "phx_leave") {
      out.frames.push_back(encode_channel_message(m.join_ref, m.ref, m.topic, "phx_reply", kOk));
    } else {
      ++stats_.unmatched;
      out.frames.push_back(encode_channel_message(std::nullopt, m.ref, m.topic, "phx_reply",
                                                  error_response("unmatched topic")));
    }
    return out;
  }
  if (m.event == "phx_leave") {
    leave(m, out);
  } else {
    push(m, it->second, out);
  }
  return out;
}

void ChannelSession::join(const ChannelMessage& m, Output& out) {
  std::optional<std::string> closed_old;  // phx_close for a duplicate join's old channel
  if (auto it = channels_.find(m.topic); it != channels_.end()) {
    closed_old = encode_channel_message(it->second.join_ref, it->second.join_ref, m.topic,
                                        "phx_close", "{}");
    channels_.erase(it);
  }
  std::string refused;
  if (m.topic.empty()) {
    refused = "empty topic";
  } else if (m.topic.size() > limits_.max_topic_bytes) {
    refused = "topic over " + std::to_string(limits_.max_topic_bytes) + " bytes";
  } else if (channels_.size() >= limits_.max_topics) {
    refused = "too many topics (at most " + std::to_string(limits_.max_topics) + " per socket)";
  }
  if (!refused.empty()) {
    ++stats_.joins_refused;
    out.frames.push_back(
        encode_channel_message(m.join_ref, m.ref, m.topic, "phx_reply", error_response(refused)));
  } else {
    ++stats_.joins;
    auto sub = hub_.subscribe(m.topic, [this](const ChannelBroadcast& b) { deliver_(b); });
    channels_.emplace(m.topic, Channel{m.join_ref, std::move(sub)});
    out.frames.push_back(encode_channel_message(m.join_ref, m.ref, m.topic, "phx_reply", kOk));
  }
  if (closed_old) out.frames.push_back(std::move(*closed_old));
}

void ChannelSession::leave(const ChannelMessage& m, Output& out) {
  auto it = channels_.find(m.topic);
  auto join_ref = it->second.join_ref;
  // Phoenix: `existing_join_ref in [join_ref, nil]`, else the client raced a
  // server close: no reply.
  if (join_ref && join_ref != m.join_ref) return;
  ++stats_.leaves;
  channels_.erase(it);  // unsubscribes
  // Phoenix.Channel.Server replies, then its {:shutdown, :left} stop makes
  // the socket push phx_close.
  out.frames.push_back(encode_channel_message(join_ref, m.ref, m.topic, "phx_reply", kOk));
  out.frames.push_back(encode_channel_message(join_ref, join_ref, m.topic, "phx_close", "{}"));
}

void ChannelSession::push(const ChannelMessage& m, const Channel& channel, Output& out) {
  std::string response;
  if (m.event.starts_with("phx_")) {
    response = error_response("reserved event");
  } else if (auto r = hub_.publish(m.topic, m.event, m.payload); !r) {
    const auto& e = r.error();
    bool says_why = e.code == Errc::invalid_argument || e.code == Errc::bad_json;
    response = error_response(says_why ? e.message : errc_name(e.code));
  } else {
    ++stats_.pushes;
    response = std::string(kOk);
  }
  if (response != kOk) ++stats_.pushes_refused;
  out.frames.push_back(
      encode_channel_message(channel.join_ref, m.ref, m.topic, "phx_reply", response));
}

}  // namespace beamlink::relay
