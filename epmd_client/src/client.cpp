#include "epmd_client/client.hpp"

#include <utility>

#include "link.hpp"

namespace beamlink::epmd_client {

using detail::Link;

struct Client::Request {
  Endpoint epmd;
  std::string alive;  // port_please only
  std::string received;
  std::unique_ptr<Link> link;  // destroying it cancels the exchange
  std::function<void(Result<NodeInfo>)> on_port;
  std::function<void(Result<std::vector<NameEntry>>)> on_names;
  std::list<std::unique_ptr<Request>>::iterator self;
};

Client::Client(uv_loop_t* loop) : loop_(loop) {}

Client::~Client() {
  pending_.clear();
}

Client::Request& Client::add(const Endpoint& epmd) {
  pending_.push_back(std::make_unique<Request>());
  auto& r = *pending_.back();
  r.self = std::prev(pending_.end());
  r.epmd = epmd;
  return r;
}

void Client::finish_port(Request* r, Result<NodeInfo> res) {
  auto cb = std::move(r->on_port);
  pending_.erase(r->self);
  cb(std::move(res));  // last: it may destroy this
}

void Client::finish_names(Request* r, Result<std::vector<NameEntry>> res) {
  auto cb = std::move(r->on_names);
  pending_.erase(r->self);
  cb(std::move(res));  // last: it may destroy this
}

void Client::port_please(const Endpoint& epmd, std::string alive, std::chrono::milliseconds timeout,
                         std::function<void(Result<NodeInfo>)> cb) {
  Request& req = add(epmd);
  Request* r = &req;
  r->alive = std::move(alive);
  r->on_port = std::move(cb);
  Link::Callbacks cbs;
  cbs.on_data = [this, r](std::span<const char> data) {
    r->received.append(data.data(), data.size());
    auto d = decode_port2_resp(r->received);
    if (d.ok() && !d->has_value()) return;  // need more
    if (d.ok()) return finish_port(r, std::move(**d));
    Error e = std::move(d).error();
    if (e.code == Errc::not_found)
      e.message =
          "epmd at " + r->epmd.str() + " has no node named '" + r->alive +
          "' — is it running? `beamlink names " + r->epmd.host +
          (r->epmd.port == default_epmd_port ? std::string()
                                             : " --epmd-port " + std::to_string(r->epmd.port)) +
          "` lists the registered names";
    else
      e.message = "epmd at " + r->epmd.str() + ": " + e.message;
    finish_port(r, std::move(e));
  };
  cbs.on_end = [this, r](Error e) {
    if (e.is(ErrorDomain::uv, UV_EOF))
      e = make_error(Errc::protocol_error,
                     "epmd at " + r->epmd.str() +
                         " closed the connection before a complete PORT2_RESP (after " +
                         std::to_string(r->received.size()) + " bytes)");
    finish_port(r, std::move(e));
  };
  if (auto ok = check_alive_name(r->alive); !ok)
    r->link = Link::open_failed(loop_, epmd, std::move(ok).error(), std::move(cbs));
  else
    r->link = Link::open(loop_, epmd, encode_port_please2_req(r->alive), timeout, std::move(cbs));
}

void Client::names(const Endpoint& epmd, std::chrono::milliseconds timeout,
                   std::function<void(Result<std::vector<NameEntry>>)> cb) {
  Request& req = add(epmd);
  Request* r = &req;
  r->on_names = std::move(cb);
  Link::Callbacks cbs;
  cbs.on_data = [this, r](std::span<const char> data) {
    if (r->received.size() + data.size() > max_names_resp_bytes)
      return finish_names(r, make_error(Errc::frame_too_large,
                                        "epmd at " + r->epmd.str() + " sent a NAMES_RESP over " +
                                            std::to_string(max_names_resp_bytes) + " bytes"));
    r->received.append(data.data(), data.size());
  };
  cbs.on_end = [this, r](Error e) {
    if (!e.is(ErrorDomain::uv, UV_EOF)) return finish_names(r, std::move(e));
    // NAMES_RESP ends when epmd closes the connection.
    auto names = parse_names_resp(r->received);
    if (!names) {
      Error pe = std::move(names).error();
      pe.message = "epmd at " + r->epmd.str() + ": " + pe.message;
      return finish_names(r, std::move(pe));
    }
    finish_names(r, std::move(names));
  };
  r->link = Link::open(loop_, epmd, encode_names_req(), timeout, std::move(cbs));
}

}  // namespace beamlink::epmd_client
