// POST /v1/broadcast (DESIGN.md, "Relay contract"): the handler core, no I/O.
//
// The body is {"topic": string, "event": string, "payload": object}, all
// three required; any other field is a 400 naming it. The message handed to
// the Publisher is the %Phoenix.Socket.Broadcast{} struct, version byte
// included:
//   #{'__struct__' => 'Elixir.Phoenix.Socket.Broadcast',
//     topic => <<Topic>>, event => <<Event>>, payload => PayloadMap}
// with the payload mapped by JsonToTerm (its options apply to the payload).
//
// Answers (bodies {"error": ..., "reason": ...} except 202):
//   202 {"status":"accepted"}    the Publisher queued it
//   400 bad_json / bad_request   invalid JSON, a missing, mistyped or unknown
//                                field, a limit of JsonTermOptions
//   503 unavailable              Publisher said not_connected, queue_full or
//                                shutting_down; with Retry-After
//   500 internal_error           any other Publisher error
//
// Thread: a BroadcastApi holds a JsonToTerm; use it on one thread (the loop).
#pragma once

#include <span>
#include <string_view>

#include "common/result.hpp"
#include "relay/http_handler.hpp"
#include "relay/http_message.hpp"
#include "term/json_term.hpp"
#include "term/term.hpp"

namespace beamlink::relay {

class Publisher {
 public:
  virtual ~Publisher() = default;
  // Queues `message_term` (external format, version byte first) for every
  // subscriber of `topic` in the cluster. Errors: not_connected, queue_full,
  // shutting_down (answered 503), invalid_argument (400), others (500).
  virtual Result<void> publish(std::string_view topic, std::span<const char> message_term) = 0;
};

struct BroadcastOptions {
  term::JsonTermOptions json;  // limits and key mapping for the payload
  int retry_after_seconds = 1;
};

class BroadcastApi {
 public:
  BroadcastApi(Publisher& publisher, BroadcastOptions options = {});

  // The Broadcast term for a request body, and the topic. Errors, with a
  // message fit for the `reason` field: bad_json (not JSON, or over a limit
  // of JsonTermOptions: answered bad_json), invalid_argument (a missing,
  // mistyped or unknown field, or a payload the mapping refuses) and bad_term
  // (answered bad_request).
  struct Built {
    std::string topic;
    term::TermWriter term;
  };
  Result<Built> build(std::string_view body);

  // The whole request → response step.
  Response handle(const Request& req);
  // As a Handler for Router::add("POST", "/v1/broadcast", api.handler()).
  // The BroadcastApi must outlive the handler.
  Handler handler();

 private:
  Publisher& publisher_;
  BroadcastOptions options_;
  term::JsonToTerm json_;
};

}  // namespace beamlink::relay
