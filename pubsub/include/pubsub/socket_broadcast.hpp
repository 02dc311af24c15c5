// %Phoenix.Socket.Broadcast{}: what a Phoenix channel broadcast carries
// through Phoenix.PubSub, encoded and decoded in one place.
//
//   #{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',
//     topic => <<Topic>>, event => <<Event>>, payload => Payload}
//
// The encoder writes the keys in that order (the relay's POST /v1/broadcast
// and channel pushes, and `beamlink broadcast`, all come here).
// term_to_binary on a BEAM node writes a small map's keys in term order
// ('__struct__', event, payload, topic) instead; binary_to_term reads either
// as the same map, and the decoder takes the keys in any order.
//
// Thread: pure functions; use them anywhere.
#pragma once

#include <functional>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"
#include "term/term.hpp"

namespace beamlink::pubsub {

inline constexpr std::string_view kSocketBroadcast = "Elixir.Phoenix.Socket.Broadcast";

// Writes one term that `payload` appends: a channel payload is a map.
using PayloadWriter = std::function<Result<void>(term::TermWriter&)>;

// Appends the struct to `out` (which may already hold a version byte or
// other terms), the payload written by `payload`. Errors: the payload
// writer's, and the writer's status (bad_term). On error `out` may hold a
// partial term: discard it.
Result<void> write_socket_broadcast(term::TermWriter& out, std::string_view topic,
                                    std::string_view event, const PayloadWriter& payload);
// The struct without version byte; `payload` is an encoded term without
// version byte.
Result<std::string> socket_broadcast(std::string_view topic, std::string_view event,
                                     std::span<const char> payload);

// A decoded struct: views into the term that was decoded.
struct SocketBroadcast {
  std::string_view topic, event;
  std::span<const char> payload;  // the payload term, no version byte
};
// Decodes a term without version byte. Errors: unexpected_message when the
// term is another message (not a map, another struct, a map without a binary
// topic and event and a payload); bad_term when the bytes are no valid term.
Result<SocketBroadcast> decode_socket_broadcast(std::span<const char> term);

}  // namespace beamlink::pubsub
