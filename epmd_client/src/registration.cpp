#include "epmd_client/registration.hpp"

#include <utility>

#include "link.hpp"

namespace beamlink::epmd_client {

using detail::Link;

Registration::Registration(uv_loop_t* loop, Options opts,
                           std::function<void(const Event&)> on_event)
    : loop_(loop), opts_(std::move(opts)), on_event_(std::move(on_event)) {}

Registration::~Registration() {
  stop();
}

void Registration::start() {
  if (state_ != State::idle) return;
  state_ = State::registering;
  (void)retry_timer_.init(loop_, this, uv_timer_init);  // cannot fail for a timer
  attempt();
}

void Registration::stop() {
  state_ = State::stopped;
  link_.reset();
  retry_timer_.reset();
}

void Registration::attempt() {
  received_.clear();
  Link::Callbacks cbs;
  cbs.on_data = [this](std::span<const char> data) { on_data(data); };
  cbs.on_end = [this](Error e) { on_end(std::move(e)); };
  if (auto ok = check_alive_name(opts_.alive); !ok) {
    link_ = Link::open_failed(loop_, opts_.epmd, std::move(ok).error(), std::move(cbs));
    return;
  }
  link_ = Link::open(
      loop_, opts_.epmd,
      encode_alive2_req(opts_.port, opts_.alive, opts_.node_type, opts_.highest, opts_.lowest),
      opts_.timeout, std::move(cbs));
}

Error Registration::explain(Error e) const {
  const std::string where = "epmd at " + opts_.epmd.str();
  if (e.code == Errc::already_exists)
    e.message = "the name '" + opts_.alive + "' is already registered with " + where +
                " — another node is using it; choose another name or stop that node";
  else if (e.code == Errc::protocol_error)
    e.message = where + ": " + e.message;
  return e;
}

void Registration::on_data(std::span<const char> data) {
  if (state_ == State::registered) {
    // epmd sends nothing after ALIVE2_X_RESP on this connection. (The
    // bytes are the Link's: counted before it goes.)
    const auto unexpected = data.size();
    link_.reset();
    return connection_lost(
        make_error(Errc::protocol_error, "epmd at " + opts_.epmd.str() + " sent " +
                                             std::to_string(unexpected) +
                                             " unexpected bytes on the registration connection"));
  }
  received_.append(data.data(), data.size());
  auto d = decode_alive2_resp(received_);
  if (d.ok() && !d->has_value()) return;  // need more
  if (!d.ok()) {
    link_.reset();
    return attempt_failed(explain(std::move(d).error()));
  }
  link_->stop_timer();  // the connection now lives as long as the registration
  creation_ = **d;
  const bool again = ever_registered_;
  ever_registered_ = true;
  state_ = State::registered;
  last_retry_failure_.reset();
  emit(Event{again ? Event::Kind::reregistered : Event::Kind::registered, creation_, {}});
}

void Registration::on_end(Error e) {
  link_.reset();  // its handles are closed already
  if (state_ == State::registered) {
    if (e.is(ErrorDomain::uv, UV_EOF))
      e.message = "epmd at " + opts_.epmd.str() +
                  " closed the registration connection (was it stopped or restarted?)";
    e.message += " — re-registering every " + std::to_string(opts_.retry_interval.count()) + " ms";
    return connection_lost(std::move(e));
  }
  if (e.is(ErrorDomain::uv, UV_EOF))
    e = make_error(Errc::protocol_error, "epmd at " + opts_.epmd.str() +
                                             " closed the connection without answering "
                                             "ALIVE2_REQ (after " +
                                             std::to_string(received_.size()) + " bytes)");
  attempt_failed(explain(std::move(e)));
}

void Registration::attempt_failed(Error e) {
  if (!ever_registered_) {
    stop();
    return emit(Event{Event::Kind::failed, 0, std::move(e)});
  }
  state_ = State::retrying;
  uv_timer_start(retry_timer_.get(), on_retry_timer,
                 static_cast<uint64_t>(opts_.retry_interval.count()), 0);
  if (last_retry_failure_ && last_retry_failure_->code == e.code &&
      last_retry_failure_->message == e.message)
    return;  // same reason as last time: do not repeat it
  last_retry_failure_ = e;
  emit(Event{Event::Kind::failed, 0, std::move(e)});
}

void Registration::connection_lost(Error e) {
  state_ = State::retrying;
  last_retry_failure_.reset();
  attempt();  // at once: epmd may already be back
  emit(Event{Event::Kind::lost, 0, std::move(e)});
}

void Registration::on_retry_timer(uv_timer_t* t) noexcept {
  auto* self = static_cast<Registration*>(t->data);
  if (self->state_ == State::retrying && !self->link_) self->attempt();
}

void Registration::emit(Event ev) {
  auto cb = on_event_;  // a copy: the callback may destroy this, and with it on_event_
  if (cb) cb(ev);
}

}  // namespace beamlink::epmd_client
