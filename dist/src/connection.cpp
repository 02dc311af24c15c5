#include "connection.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include "dist/node.hpp"

namespace beamlink::dist {

Connection::Connection(Node& node, int fd, std::string peer, bool inbound)
    : node_(node),
      fd_(fd),
      peer_(std::move(peer)),
      id_(node.next_connection_id()),
      inbound_(inbound),
      framer_(node.config().max_frame),
      progress_(std::make_shared<OutboundProgress>()) {
  progress_->connection = id_;
  progress_->up = true;
  tcp_.data = this;
  write_req_.data = this;
}

Result<void> Connection::open() {
  int flags = fcntl(fd_, F_GETFL);
  if (flags >= 0) fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
  int rc = uv_tcp_init(node_.loop(), &tcp_);
  if (rc == 0) {
    rc = uv_tcp_open(&tcp_, fd_);
    if (rc != 0) {
      ::close(fd_);
    }
    opened_ = true;
  } else {
    ::close(fd_);
  }
  if (rc == 0) {
    uv_tcp_nodelay(&tcp_, 1);
    rc = uv_read_start(reinterpret_cast<uv_stream_t*>(&tcp_), on_alloc, on_read);
  }
  last_read_ms_ = last_write_ms_ = uv_now(node_.loop());
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
  if (nread == 0 || self->state_ != State::up) return;
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
  auto& stats = self->node_.mutable_stats();
  stats.bytes_in += static_cast<std::uint64_t>(nread);
  self->framer_.commit(static_cast<std::size_t>(nread));
  self->last_read_ms_ = uv_now(self->node_.loop());
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
    // The handler may close this connection (or any other); state_ is
    // checked before the next frame, and the object lives until on_close.
    self->node_.dispatch(self, (*frame)->control, (*frame)->message);
  }
}

void Connection::send_frame(std::span<const char> control, std::span<const char> message) {
  if (state_ != State::up) return;
  append_frame(pending_, control, message);
  ++progress_->enqueued;
  ++pending_frames_;
  ++node_.mutable_stats().frames_out;
  if (!writing_ && !flush_scheduled_) {
    flush_scheduled_ = true;
    node_.schedule_flush(this);
  }
}

void Connection::flush() {
  flush_scheduled_ = false;
  if (!writing_) start_write();
}

void Connection::send_tick() {
  if (state_ != State::up) return;
  append_tick(pending_);
  ++node_.mutable_stats().ticks_out;
  if (!writing_) start_write();
}

void Connection::start_write() {
  if (pending_.empty() || state_ != State::up) return;
  inflight_.swap(pending_);
  pending_.clear();
  inflight_frames_ = pending_frames_;
  pending_frames_ = 0;
  writing_ = true;
  uv_buf_t buf = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
  int rc = uv_write(&write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1, on_write);
  if (rc != 0) {
    writing_ = false;
    close(
        uv_error(Errc::io_error, std::string("writing to ") + peer_ + ": " + uv_strerror(rc), rc));
    return;
  }
  last_write_ms_ = uv_now(node_.loop());
}

void Connection::on_write(uv_write_t* req, int status) {
  auto* self = static_cast<Connection*>(req->data);
  self->writing_ = false;
  std::size_t written = self->inflight_.size();
  self->inflight_.clear();
  std::uint64_t frames = self->inflight_frames_;
  self->inflight_frames_ = 0;
  // After close() the write is cancelled, or it had completed (status 0):
  // then its frames left, and count. The Node may already be gone: touch
  // nothing but this object.
  if (self->state_ != State::up) {
    if (status == 0) self->progress_->written += frames;
    return;
  }
  if (status != 0) {
    self->close(uv_error(Errc::io_error,
                         std::string("writing to ") + self->peer_ + ": " + uv_strerror(status),
                         status));
    return;
  }
  self->node_.mutable_stats().bytes_out += written;
  self->progress_->written += frames;
  if (!self->pending_.empty()) self->start_write();
  if (!self->writable_waiters_.empty() && self->has_room()) self->notify_writable({});
  // Last: a listener may send (more frames) or close this connection.
  if (frames != 0 && self->state_ == State::up) self->node_.frames_written(self);
}

bool Connection::has_room() const {
  return queued() < node_.config().max_outbound / 2;
}

void Connection::when_writable(std::function<void(Result<void>)> cb) {
  writable_waiters_.push_back(std::move(cb));
}

void Connection::notify_writable(const Result<void>& r) {
  auto waiters = std::move(writable_waiters_);
  writable_waiters_.clear();
  for (auto& w : waiters) w(r);
}

void Connection::on_tick_check(std::uint64_t now_ms, std::uint64_t ticktime_ms) {
  if (state_ != State::up) return;
  if (now_ms - last_read_ms_ >= ticktime_ms) {
    ++node_.mutable_stats().tick_timeouts;
    close(make_error(Errc::timeout, peer_ + " sent nothing for " +
                                        std::to_string(now_ms - last_read_ms_) +
                                        " ms (net_ticktime " + std::to_string(ticktime_ms / 1000) +
                                        " s): it is stopped, partitioned or overloaded"));
    return;
  }
  if (!writing_ && pending_.empty() && now_ms - last_write_ms_ >= ticktime_ms / 4) send_tick();
}

void Connection::close(const Error& why) {
  if (state_ != State::up) return;
  state_ = State::closing;
  progress_->up = false;
  node_.connection_closed(this, why);
  if (!writable_waiters_.empty())
    notify_writable(
        make_error(Errc::not_connected, "connection to " + peer_ + " closed: " + why.message));
  if (opened_) {
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_close);
  } else {
    progress_->final = true;
    delete this;
  }
}

void Connection::on_close(uv_handle_t* h) {
  auto* self = static_cast<Connection*>(h->data);
  self->state_ = State::closed;
  // Every write callback has run (libuv calls them before the close
  // callback): the counts are final.
  self->progress_->final = true;
  delete self;
}

}  // namespace beamlink::dist
