#include "relay/broadcast_api.hpp"

#include <string>

#include "pubsub/socket_broadcast.hpp"
#include "term/json_term_impl.hpp"

namespace beamlink::relay {

namespace {
Error bad(std::string reason) {
  return make_error(Errc::invalid_argument, std::move(reason));
}
}  // namespace

BroadcastApi::BroadcastApi(Publisher& publisher, BroadcastOptions options)
    : publisher_(publisher), options_(std::move(options)), json_(options_.json) {}

Result<BroadcastApi::Built> BroadcastApi::build(std::string_view body) {
  auto& impl = json_.impl();
  auto doc = impl.parse(body);
  if (!doc) return std::move(doc).error();
  simdjson::dom::object obj;
  if (doc->get_object().get(obj)) return bad("the body must be a JSON object");
  std::string_view topic, event;
  simdjson::dom::element payload;
  bool has_topic = false, has_event = false, has_payload = false;
  for (auto field : obj) {
    if (field.key == "topic") {
      if (field.value.get_string().get(topic)) return bad("field \"topic\" must be a string");
      has_topic = true;
    } else if (field.key == "event") {
      if (field.value.get_string().get(event)) return bad("field \"event\" must be a string");
      has_event = true;
    } else if (field.key == "payload") {
      if (!field.value.is_object()) return bad("field \"payload\" must be an object");
      payload = field.value;
      has_payload = true;
    } else {
      return bad("unknown field \"" + std::string(field.key) +
                 "\" (expected \"topic\", \"event\", \"payload\")");
    }
  }
  if (!has_topic) return bad("missing field \"topic\"");
  if (!has_event) return bad("missing field \"event\"");
  if (!has_payload) return bad("missing field \"payload\"");
  if (topic.empty()) return bad("field \"topic\" must not be empty");
  if (event.empty()) return bad("field \"event\" must not be empty");

  Built b{std::string(topic), term::TermWriter(true)};
  auto r = pubsub::write_socket_broadcast(b.term, topic, event, [&](term::TermWriter& w) {
    return impl.write(payload, w, 1);  // the payload sits one level below the body object
  });
  if (!r) return std::move(r).error();
  return b;
}

Response BroadcastApi::handle(const Request& req) {
  auto built = build(req.body);
  if (!built) {
    const auto& e = built.error();
    return Response::error(400, e.code == Errc::bad_json ? "bad_json" : "bad_request", e.message);
  }
  auto r = publisher_.publish(built->topic, built->term.bytes());
  if (r) {
    Response ok;
    ok.status = 202;
    ok.body = R"({"status":"accepted"})";
    return ok;
  }
  const auto& e = r.error();
  switch (e.code) {
    case Errc::not_connected:
    case Errc::queue_full:
    case Errc::shutting_down: {
      Response u = Response::error(503, errc_name(e.code), e.message);
      u.headers.emplace_back("Retry-After", std::to_string(options_.retry_after_seconds));
      return u;
    }
    case Errc::invalid_argument:
    case Errc::bad_term:
      return Response::error(400, "bad_request", e.message);
    default:
      return Response::error(500, "internal_error", e.message);
  }
}

Handler BroadcastApi::handler() {
  return [this](const Request& req, Responder res) { res.respond(handle(req)); };
}

}  // namespace beamlink::relay
