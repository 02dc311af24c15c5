// What an HTTP request handler sees, without I/O: the Responder it answers
// through, the Handler type, and a Router dispatching on method and path.
// The HttpServer (http_server.hpp) calls Handlers; cores such as
// BroadcastApi provide them without depending on libuv.
//
// A Responder answers its request exactly once: the first respond() counts,
// later calls are ignored (false). It may be copied and kept to answer later;
// when the last copy goes without an answer, the request gets 500. Answering
// after the connection closed does nothing.
//
// Thread: the loop's thread only (the server's).
#pragma once

#include <functional>
#include <map>
#include <memory>
#include <string>

#include "relay/http_message.hpp"

namespace beamlink::relay {

class Responder {
 public:
  // Answers the request; true the first time, false (and ignored) after.
  bool respond(Response r) const;
  bool answered() const noexcept;

  struct State;
  explicit Responder(std::shared_ptr<State> s) : state_(std::move(s)) {}

 private:
  std::shared_ptr<State> state_;
};

using Handler = std::function<void(const Request&, Responder)>;

// Dispatches on exact method and path: 404 for an unknown path, 405 (with
// Allow) for a known path and another method.
class Router {
 public:
  Router& add(std::string method, std::string path, Handler handler);
  void operator()(const Request& req, Responder res) const;

 private:
  std::map<std::string, std::map<std::string, Handler>> routes_;  // path → method → handler
};

}  // namespace beamlink::relay
