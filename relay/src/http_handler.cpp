#include "relay/http_handler.hpp"

namespace beamlink::relay {

// Router --------------------------------------------------------------------

Router& Router::add(std::string method, std::string path, Handler handler) {
  routes_[std::move(path)][std::move(method)] = std::move(handler);
  return *this;
}

void Router::operator()(const Request& req, Responder res) const {
  auto p = routes_.find(req.path);
  if (p == routes_.end()) {
    res.respond(Response::error(404, "not_found", "no route for " + req.path));
    return;
  }
  auto m = p->second.find(req.method);
  if (m == p->second.end()) {
    std::string allow;
    for (const auto& [method, h] : p->second) allow += (allow.empty() ? "" : ", ") + method;
    Response r = Response::error(
        405, "method_not_allowed",
        req.method + " is not allowed on " + req.path + " (allowed: " + allow + ")");
    r.headers.emplace_back("Allow", allow);
    res.respond(std::move(r));
    return;
  }
  m->second(req, std::move(res));
}

}  // namespace beamlink::relay
