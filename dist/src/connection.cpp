#include "connection.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "common/uv_util.hpp"
#include "dist/control.hpp"

namespace beamlink::dist {

// One uv_write: its request, the bytes it carries and the completions of the
// data frames among them. Allocated by the connection, owned by libuv from
// uv_write until on_write, which frees it (or hands it back as the spare).
struct Connection::Write {
  uv_write_t req{};
  std::string bytes;
  std::vector<SendDone> done;
  // Completions of frames that were still pending when the connection
  // closed: always cancelled, after `done`, to keep the send order.
  std::vector<SendDone> cancelled;
  std::string closed_message;  // set by close(): what the cancelled ones report
};

namespace {

Error closed_before_written(const std::string& what) {
  return make_error(Errc::connection_closed, what);
}

void complete_all(std::vector<SendDone>& done, const Result<void>& r) {
  for (auto& d : done)
    if (d) d(r);
}

}  // namespace

Connection::Connection(ConnectionOwner& owner, int fd, std::string peer, bool inbound,
                       std::uint64_t id)
    : owner_(owner),
      fd_(fd),
      peer_(std::move(peer)),
      id_(id),
      inbound_(inbound),
      framer_(owner.config().max_frame) {}

// The owner closes a connection before it destroys it; if not, the tcp
// handle still closes with its UvHandle.
Connection::~Connection() = default;

Result<void> Connection::open() {
  int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  int rc = tcp_.init(owner_.loop(), this, uv_tcp_init);
  if (rc == 0) {
    rc = uv_tcp_open(tcp_.get(), fd_);
    if (rc != 0) ::close(fd_);
  } else {
    ::close(fd_);
  }
  if (rc == 0) {
    uv_tcp_nodelay(tcp_.get(), 1);
    rc = uv_read_start(tcp_.stream(), on_alloc, on_read);
  }
  last_read_ms_ = last_write_ms_ = uv_now(owner_.loop());
  if (rc != 0)
    return uv_error(Errc::io_error,
                    "cannot put the connection to " + peer_ + " on the loop: " + uv_strerror(rc),
                    rc);
  return {};
}

void Connection::on_alloc(uv_handle_t* h, size_t suggested, uv_buf_t* buf) {
  auto* self = static_cast<Connection*>(h->data);
  auto space = self->framer_.prepare(suggested < 65536 ? 65536 : suggested);
  *buf = uv_buf_init(space.data(), static_cast<unsigned>(space.size()));
}

void Connection::on_read(uv_stream_t* s, ssize_t nread, const uv_buf_t*) {
  auto* self = static_cast<Connection*>(s->data);
  if (!self || nread == 0 || self->state_ == State::closed) return;
  if (self->state_ == State::finishing) {
    // Read only so that the close sends FIN, not RST: the bytes are dropped.
    if (nread < 0) return self->close(self->finish_why_);
    self->framer_.commit(static_cast<std::size_t>(nread));
    for (;;) {
      auto frame = self->framer_.next();
      if (!frame || !*frame) break;  // a malformed stream is as good as EOF now
    }
    return;
  }
  if (nread < 0) {
    Error why =
        nread == UV_EOF
            ? make_error(Errc::connection_closed, self->peer_ + " closed the connection")
            : uv_error(Errc::io_error,
                       "reading from " + self->peer_ + ": " + uv_strerror(static_cast<int>(nread)),
                       static_cast<int>(nread));
    self->close(why);
    return;
  }
  auto& stats = self->owner_.stats();
  stats.bytes_in += static_cast<std::uint64_t>(nread);
  self->framer_.commit(static_cast<std::size_t>(nread));
  self->last_read_ms_ = uv_now(self->owner_.loop());
  while (self->state_ == State::up) {
    auto frame = self->framer_.next();
    if (!frame) {
      ++stats.malformed_frames;
      self->close(make_error(frame.error().code,
                             "malformed frame from " + self->peer_ + ": " + frame.error().message));
      return;
    }
    if (!*frame) return;  // need more bytes
    if ((*frame)->tick) {
      ++stats.ticks_in;
      continue;
    }
    ++stats.frames_in;
    // The handler may close this connection (or any other), even destroy
    // the Node: state_ is checked before the next frame, and the owner
    // destroys closed connections on a later loop turn only.
    self->owner_.dispatch(*self, (*frame)->control, (*frame)->message);
  }
}

void Connection::send_frame(std::span<const char> control, std::span<const char> message,
                            SendDone done) {
  if (state_ != State::up) {
    // Finishing: the node is stopping and takes no more sends; the frame
    // is reported unwritten, as when the connection closes.
    if (done && state_ == State::finishing)
      defer(owner_.loop(), [done = std::move(done), peer = peer_] {
        done(closed_before_written("the connection to " + peer +
                                   " is closing (the node is stopping): the frame was not sent"));
      });
    return;
  }
  append_frame(pending_, control, message);
  if (done) pending_done_.push_back(std::move(done));
  ++owner_.stats().frames_out;
  if (!inflight_ && !flush_scheduled_) {
    flush_scheduled_ = true;
    owner_.schedule_flush(*this);
  }
}

void Connection::flush() {
  flush_scheduled_ = false;
  if (!inflight_) start_write();
}

void Connection::send_tick() {
  if (state_ != State::up) return;
  append_tick(pending_);
  ++owner_.stats().ticks_out;
  if (!inflight_) start_write();
}

void Connection::start_write() {
  if (pending_.empty() || state_ == State::closed) return;
  std::unique_ptr<Write> w = spare_ ? std::move(spare_) : std::make_unique<Write>();
  w->bytes.swap(pending_);
  pending_.clear();
  w->done.swap(pending_done_);
  pending_done_.clear();
  w->req.data = w.get();
  uv_buf_t buf = uv_buf_init(w->bytes.data(), static_cast<unsigned>(w->bytes.size()));
  int rc = uv_write(&w->req, tcp_.stream(), &buf, 1, on_write);
  if (rc != 0) {
    // Not written: its frames go back to the pending buffer's completions,
    // which close() cancels.
    for (auto& d : w->done) pending_done_.push_back(std::move(d));
    close(
        uv_error(Errc::io_error, std::string("writing to ") + peer_ + ": " + uv_strerror(rc), rc));
    return;
  }
  inflight_bytes_ = w->bytes.size();
  inflight_ = w.release();
  last_write_ms_ = uv_now(owner_.loop());
}

void Connection::on_write(uv_write_t* req, int status) {
  std::unique_ptr<Write> w(static_cast<Write*>(req->data));
  auto* self = static_cast<Connection*>(req->handle->data);
  Result<void> outcome;
  if (status != 0)
    outcome = closed_before_written(
        !w->closed_message.empty()
            ? w->closed_message
            : std::string("the connection closed before the frame was written: ") +
                  uv_strerror(status));
  if (!self) {
    // After close(): the handle's data is cleared, its owner may be gone.
    // A write that completed before the close was written (status 0); the
    // rest were cancelled. Touch nothing but this request.
    complete_all(w->done, outcome);
    if (!w->cancelled.empty()) complete_all(w->cancelled, closed_before_written(w->closed_message));
    return;
  }
  self->inflight_ = nullptr;
  self->inflight_bytes_ = 0;
  std::size_t written = w->bytes.size();
  bool had_frames = !w->done.empty();
  if (status != 0) {
    Error why =
        uv_error(Errc::io_error,
                 std::string("writing to ") + self->peer_ + ": " + uv_strerror(status), status);
    complete_all(w->done, make_error(Errc::connection_closed,
                                     "the connection to " + self->peer_ +
                                         " closed before the frame was written: " + why.message));
    self->close(why);
    return;
  }
  self->owner_.stats().bytes_out += written;
  // Completions may send (to the pending buffer) or close this connection.
  std::vector<SendDone> done = std::move(w->done);
  w->bytes.clear();
  w->done.clear();
  self->spare_ = std::move(w);
  complete_all(done, {});
  if (self->state_ == State::finishing) {
    if (!self->pending_.empty())
      self->start_write();
    else
      self->shut_write_side();
    return;
  }
  if (self->state_ != State::up) return;
  if (!self->pending_.empty()) self->start_write();
  if (self->state_ != State::up) return;
  if (!self->writable_waiters_.empty() && self->has_room()) self->notify_writable({});
  // Last: a listener may send (more frames) or close this connection.
  if (had_frames && self->state_ == State::up) self->owner_.frames_written(*self);
}

bool Connection::has_room() const {
  return queued() < owner_.config().max_outbound / 2;
}

void Connection::when_writable(std::function<void(Result<void>)> cb) {
  writable_waiters_.push_back(std::move(cb));
}

void Connection::notify_writable(const Result<void>& r) {
  auto waiters = std::move(writable_waiters_);
  writable_waiters_.clear();
  for (auto& w : waiters) w(r);
}

std::span<const char> Connection::reg_send_control(const term::Pid& from, const std::string& name,
                                                   Result<void>& status) {
  if (regsend_control_.empty() || regsend_from_ != from || regsend_name_ != name) {
    auto control = encode_reg_send(from, name);
    status = control.status();
    if (!status) return {};
    auto bytes = control.bytes();
    regsend_control_.assign(bytes.data(), bytes.size());
    regsend_from_ = from;
    regsend_name_ = name;
  }
  status = {};
  return regsend_control_;
}

void Connection::on_tick_check(std::uint64_t now_ms, std::uint64_t ticktime_ms) {
  if (state_ != State::up) return;
  if (now_ms - last_read_ms_ >= ticktime_ms) {
    ++owner_.stats().tick_timeouts;
    close(make_error(Errc::timeout, peer_ + " sent nothing for " +
                                        std::to_string(now_ms - last_read_ms_) +
                                        " ms (net_ticktime " + std::to_string(ticktime_ms / 1000) +
                                        " s): it is stopped, partitioned or overloaded"));
    return;
  }
  if (!inflight_ && pending_.empty() && now_ms - last_write_ms_ >= ticktime_ms / 4) send_tick();
}

void Connection::finish(const Error& why, std::uint64_t linger_ms) {
  if (state_ != State::up) return;
  state_ = State::finishing;
  finish_why_ = why;
  if (linger_.init(owner_.loop(), this, uv_timer_init) == 0)
    uv_timer_start(
        linger_.get(),
        [](uv_timer_t* t) {
          auto* self = static_cast<Connection*>(t->data);
          self->close(self->finish_why_);
        },
        linger_ms, 0);
  if (!inflight_) {
    if (!pending_.empty())
      start_write();
    else
      shut_write_side();
  }
}

void Connection::shut_write_side() {
  if (shut_ || state_ != State::finishing) return;
  shut_ = true;
  // The request outlives this connection if it closes first (libuv then
  // completes it with UV_ECANCELED and the handle's data is cleared).
  auto* req = new uv_shutdown_t;
  int rc = uv_shutdown(req, tcp_.stream(), [](uv_shutdown_t* r, int status) {
    auto* self = static_cast<Connection*>(r->handle->data);
    delete r;
    if (self && status != 0) self->close(self->finish_why_);
  });
  if (rc != 0) {
    delete req;
    close(finish_why_);
  }
}

void Connection::close(const Error& why) {
  if (state_ == State::closed) return;
  state_ = State::closed;
  linger_.reset();
  // Frames not yet written will never be: their completions report it after
  // those of the write in flight (whose callback runs after this close), or
  // on the next loop turn when none is in flight.
  std::string closed_message =
      "the connection to " + peer_ + " closed before the frame was written: " + why.message;
  if (inflight_) {
    inflight_->closed_message = closed_message;
    for (auto& d : pending_done_) inflight_->cancelled.push_back(std::move(d));
    inflight_ = nullptr;  // libuv hands it to on_write, which frees it
    inflight_bytes_ = 0;
  } else if (!pending_done_.empty()) {
    auto cancelled = std::make_shared<std::vector<SendDone>>(std::move(pending_done_));
    defer(owner_.loop(), [cancelled, closed_message] {
      complete_all(*cancelled, closed_before_written(closed_message));
    });
  }
  pending_done_.clear();
  pending_.clear();
  tcp_.reset();  // data cleared first: pending write callbacks find nullptr
  owner_.connection_closed(*this, why);
  if (!writable_waiters_.empty())
    notify_writable(
        make_error(Errc::not_connected, "connection to " + peer_ + " closed: " + why.message));
}

}  // namespace beamlink::dist
