#include "pubsub/socket_broadcast.hpp"

namespace beamlink::pubsub {

Result<void> write_socket_broadcast(term::TermWriter& out, std::string_view topic,
                                    std::string_view event, const PayloadWriter& payload) {
  out.map(4)
      .atom("__struct__")
      .atom(kSocketBroadcast)
      .atom("topic")
      .binary(topic)
      .atom("event")
      .binary(event)
      .atom("payload");
  if (auto r = payload(out); !r) return r;
  return out.status();
}

Result<std::string> socket_broadcast(std::string_view topic, std::string_view event,
                                     std::span<const char> payload) {
  term::TermWriter w(false);
  auto r = write_socket_broadcast(w, topic, event, [&](term::TermWriter& out) -> Result<void> {
    out.raw(payload);
    return {};
  });
  if (!r) return r.error();
  return std::string(w.bytes().data(), w.bytes().size());
}

Result<SocketBroadcast> decode_socket_broadcast(std::span<const char> term) {
  auto other = [](std::string what) {
    return make_error(Errc::unexpected_message, std::move(what));
  };
  term::TermReader r(term);
  auto arity = r.read_map_header();
  if (!arity) {
    if (auto t = r.peek(); !t) return t.error();  // no valid term at all
    return other("not a map");
  }
  SocketBroadcast out;
  bool is_broadcast = false, has_topic = false, has_event = false, has_payload = false;
  for (int i = 0; i < *arity; ++i) {
    if (!r.next_is_atom()) return other("a map key that is not an atom");
    auto key = r.read_atom();
    if (!key) return key.error();
    if (*key == "__struct__") {
      auto s = r.read_atom();
      if (!s || *s != kSocketBroadcast) return other("another struct");
      is_broadcast = true;
    } else if (*key == "topic" || *key == "event") {
      auto b = r.read_binary();
      if (!b) return other("a " + *key + " that is not a binary");
      (*key == "topic" ? out.topic : out.event) = *b;
      (*key == "topic" ? has_topic : has_event) = true;
    } else if (*key == "payload") {
      auto p = r.read_raw();
      if (!p) return p.error();
      out.payload = *p;
      has_payload = true;
    } else if (auto s = r.skip(); !s) {
      return s.error();
    }
  }
  if (!is_broadcast || !has_topic || !has_event || !has_payload)
    return other("not a %Phoenix.Socket.Broadcast{}");
  return out;
}

}  // namespace beamlink::pubsub
