#include "relay/websocket.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <simdjson.h>
#include <sys/socket.h>
#include <wslay/wslay.h>

#include <algorithm>
#include <cctype>
#include <deque>
#include <utility>
#include <vector>

#include "common/base64.hpp"
#include "common/digest.hpp"
#include "common/uv_handle.hpp"
#include "common/uv_util.hpp"

namespace beamlink::relay {

namespace {

// RFC 6455 1.3: the GUID appended to the key.
constexpr std::string_view kGuid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
// Once the idle timeout has passed, how long to wait for the bytes the
// kernel may already hold (read in the loop iteration in between) before
// closing: a busy loop reaches its timers before its reads.
constexpr std::uint64_t kIdleRecheckMs = 1;
// RFC 6455 5.5: a control frame's payload is at most 125 bytes, 2 of them the code.
constexpr std::size_t kMaxCloseReason = 123;

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// A comma-separated header value (RFC 9110 5.6.1) holds `token`, case-insensitively.
bool has_token(std::string_view value, std::string_view token) {
  while (true) {
    auto comma = value.find(',');
    if (iequals(trim(value.substr(0, comma)), token)) return true;
    if (comma == std::string_view::npos) return false;
    value.remove_prefix(comma + 1);
  }
}

bool base64_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' ||
         c == '/';
}

// RFC 6455 4.2.1 item 5: "a base64-encoded value that, when decoded, is 16
// bytes in length": 22 characters, the last carrying 2 bits, then "==".
bool valid_key(std::string_view key) {
  if (key.size() != 24 || key.substr(22) != "==") return false;
  if (!std::all_of(key.begin(), key.begin() + 22, base64_char)) return false;
  static constexpr std::string_view kTwoBits = "AQgw";  // values 0, 16, 32, 48
  return kTwoBits.find(key[21]) != std::string_view::npos;
}

Response refuse(int status, std::string_view error, std::string_view reason) {
  Response r = Response::error(status, error, reason);
  if (status == 426) {
    r.headers.emplace_back("Upgrade", "websocket");
    r.headers.emplace_back("Sec-WebSocket-Version", "13");
  }
  return r;
}

}  // namespace

std::string websocket_accept(std::string_view key) {
  std::string text(key);
  text += kGuid;
  auto d = sha1(text);
  return base64_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

std::optional<Response> check_websocket_handshake(const Request& req) {
  if (req.method != "GET") {
    return refuse(400, "bad_request", "a WebSocket handshake is a GET, not " + req.method);
  }
  if (req.http_major < 1 || (req.http_major == 1 && req.http_minor < 1)) {
    return refuse(400, "bad_request", "a WebSocket handshake needs HTTP/1.1");
  }
  if (!req.header("host")) return refuse(400, "bad_request", "the Host header is missing");
  auto upgrade = req.header("upgrade");
  if (!upgrade || !has_token(*upgrade, "websocket")) {
    return refuse(426, "upgrade_required", "this path speaks WebSocket: send Upgrade: websocket");
  }
  auto connection = req.header("connection");
  if (!connection || !has_token(*connection, "upgrade")) {
    return refuse(426, "upgrade_required", "the Connection header must contain \"upgrade\"");
  }
  auto version = req.header("sec-websocket-version");
  if (!version || trim(*version) != "13") {
    return refuse(426, "upgrade_required", "only Sec-WebSocket-Version 13 is supported");
  }
  auto key = req.header("sec-websocket-key");
  if (!key || !valid_key(trim(*key))) {
    return refuse(400, "bad_request",
                  "Sec-WebSocket-Key must be the base64 of 16 bytes (24 characters)");
  }
  return std::nullopt;
}

std::string server_frame_header(Opcode opcode, std::uint64_t payload_length) {
  std::string h;
  h.reserve(10);
  h.push_back(static_cast<char>(0x80 | static_cast<std::uint8_t>(opcode)));  // FIN, RSV 0
  int length_bytes = 0;  // the extended payload length, RFC 6455 5.2
  if (payload_length <= 125) {
    h.push_back(static_cast<char>(payload_length));  // MASK 0
  } else if (payload_length <= 0xFFFF) {
    h.push_back(static_cast<char>(126));
    length_bytes = 2;
  } else {
    h.push_back(static_cast<char>(127));
    length_bytes = 8;
  }
  for (int i = length_bytes - 1; i >= 0; --i) {
    h.push_back(static_cast<char>((payload_length >> (8 * i)) & 0xFF));
  }
  return h;
}

std::string encode_server_frame(Opcode opcode, std::string_view payload) {
  std::string f = server_frame_header(opcode, payload.size());
  f.append(payload);
  return f;
}

std::string websocket_handshake_response(const Request& req) {
  auto key = req.header("sec-websocket-key");
  return "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Accept: " +
         websocket_accept(key ? trim(*key) : std::string_view{}) + "\r\n\r\n";
}

// States: Open → Closing (our close frame queued, or the client's received)
// → Closed (TCP closed, handles closing). Every uv handle is a UvHandle whose
// data points here until Closed or destruction, then is null: late callbacks
// (a write cancelled by the close) see that.
//
// Output: `queue` holds whole frames in wire order (shared broadcast frames,
// owned replies, wslay's control frames); flush() hands all of it to one
// uv_write from the idle handle, which runs once per loop iteration while
// something is queued and no write is in flight.
struct WebSocket::Impl {
  uv_loop_t* loop;
  UvHandle<uv_tcp_t> tcp;
  UvHandle<uv_timer_t> timer;
  UvHandle<uv_idle_t> flusher;
  WebSocketOptions options;
  Callbacks cb;
  WebSocketOutputStats* output;
  wslay_event_context_ptr ctx = nullptr;
  std::string leftover;      // processed from the first timer tick
  const char* in = nullptr;  // input wslay's recv callback reads
  std::size_t in_len = 0;
  std::string control;            // wslay's output of one wslay_event_send
  std::deque<SharedFrame> queue;  // not yet handed to uv_write
  std::size_t queue_bytes = 0;    // their sizes
  std::size_t in_flight = 0;      // bytes of the uv_write in flight
  bool writing = false;           // a uv_write is in flight (at most one)
  bool scheduled = false;         // the flusher is active
  std::vector<uv_buf_t> bufs;     // flush()'s scratch
  int depth = 0;                  // inside a wslay call: do not re-enter wslay_event_send
  int in_api = 0;                 // inside a member call: on_closed goes to a later iteration
  Liveness alive;
  bool closing = false;
  bool closed = false;
  bool idle = false;
  bool idle_due = false;            // the idle timeout passed: recheck after one more read
  bool by_peer = false;             // the client's close frame came first
  std::uint64_t last_read = 0;      // uv_now at the last bytes received
  std::uint64_t close_started = 0;  // uv_now when Closing began
  std::uint64_t last_progress = 0;  // uv_now at the last completed write

  Impl(uv_loop_t* l, UvHandle<uv_tcp_t> t, WebSocketOptions o, Callbacks c,
       WebSocketOutputStats* out)
      : loop(l), tcp(std::move(t)), options(o), cb(std::move(c)), output(out) {
    tcp->data = this;
    // Timer and idle handles fail to initialise only on an invalid loop.
    (void)timer.init(loop, this, uv_timer_init);
    (void)flusher.init(loop, this, uv_idle_init);
    static const wslay_event_callbacks callbacks = {
        &Impl::recv_cb, &Impl::send_cb, nullptr, nullptr, nullptr, nullptr, &Impl::msg_cb};
    if (wslay_event_context_server_init(&ctx, &callbacks, this) != 0) ctx = nullptr;
    if (ctx) wslay_event_config_set_max_recv_msg_length(ctx, options.max_message);
  }

  // The handles close with their UvHandles (after wslay's context is freed:
  // nothing calls back into wslay from a close).
  ~Impl() {
    if (ctx) wslay_event_context_free(ctx);
  }

  void release_handles() {
    tcp.reset();  // pending write callbacks see data == nullptr
    timer.reset();
    flusher.reset();
  }

  // wslay callbacks ----------------------------------------------------------

  static ssize_t recv_cb(wslay_event_context_ptr c, std::uint8_t* buf, std::size_t len, int,
                         void* user) {
    auto* self = static_cast<Impl*>(user);
    if (self->in_len == 0 || self->closed) {
      wslay_event_set_error(c, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    std::size_t n = std::min(len, self->in_len);
    std::copy_n(self->in, n, reinterpret_cast<char*>(buf));
    self->in += n;
    self->in_len -= n;
    return static_cast<ssize_t>(n);
  }

  // Only control frames reach wslay's queue (data frames bypass it): taken
  // whole, into `control`, then into the output queue behind what is there.
  static ssize_t send_cb(wslay_event_context_ptr c, const std::uint8_t* data, std::size_t len, int,
                         void* user) {
    auto* self = static_cast<Impl*>(user);
    if (self->closed) {
      wslay_event_set_error(c, WSLAY_ERR_WOULDBLOCK);
      return -1;
    }
    self->control.append(reinterpret_cast<const char*>(data), len);
    return static_cast<ssize_t>(len);
  }

  static void msg_cb(wslay_event_context_ptr, const wslay_event_on_msg_recv_arg* arg, void* user) {
    static_cast<Impl*>(user)->on_message(*arg);
  }

  void on_message(const wslay_event_on_msg_recv_arg& m) {
    if (closing || closed) return;  // after our close frame: nothing more for the owner
    std::string_view data(reinterpret_cast<const char*>(m.msg), m.msg_length);
    if (m.opcode == WSLAY_TEXT_FRAME) {
      if (!simdjson::validate_utf8(data.data(), data.size())) {
        queue_close(CloseCode::invalid_payload, "invalid UTF-8 in a text message", Pending::send);
        return;
      }
      if (cb.on_text) cb.on_text(data);
    } else if (m.opcode == WSLAY_BINARY_FRAME) {
      if (cb.on_binary) {
        cb.on_binary(data);
      } else {
        queue_close(CloseCode::unsupported_data, "binary messages are not supported",
                    Pending::send);
      }
    } else if (m.opcode == WSLAY_CONNECTION_CLOSE) {
      // wslay answers it (behind what is queued); then we wait for the TCP close.
      if (!wslay_event_get_close_sent(ctx)) by_peer = true;
      start_closing();
    }
  }

  // Output ------------------------------------------------------------------

  void enqueue(SharedFrame frame) {
    queue_bytes += frame->size();
    queue.push_back(std::move(frame));
    schedule();
  }

  void schedule() {
    if (scheduled || writing || closed || queue.empty()) return;
    scheduled = true;
    uv_idle_start(flusher.get(), [](uv_idle_t* h) {
      if (auto* self = static_cast<Impl*>(h->data)) self->flush();
    });
  }

  // Everything queued, in one uv_write.
  void flush() {
    if (scheduled) {
      scheduled = false;
      if (flusher) uv_idle_stop(flusher.get());  // empty once closed
    }
    if (closed || writing || queue.empty()) return;
    struct WriteReq {
      uv_write_t req;
      std::vector<SharedFrame> frames;
    };
    auto* w = new WriteReq{{}, {}};
    w->frames.reserve(queue.size());
    bufs.clear();
    for (auto& f : queue) {
      bufs.push_back(uv_buf_init(const_cast<char*>(f->data()), static_cast<unsigned>(f->size())));
      w->frames.push_back(std::move(f));
    }
    queue.clear();
    in_flight = std::exchange(queue_bytes, 0);
    writing = true;
    if (output) {
      ++output->writes;
      output->buffers += bufs.size();
      output->bytes += in_flight;
    }
    int rc = uv_write(&w->req, tcp.stream(), bufs.data(), static_cast<unsigned>(bufs.size()),
                      [](uv_write_t* req, int status) {
                        auto* wr = reinterpret_cast<WriteReq*>(req);
                        auto* self = static_cast<Impl*>(req->handle->data);
                        delete wr;
                        if (self) self->on_written(status);
                      });
    if (rc != 0) {
      delete w;
      writing = false;
      finish(rc);
    }
  }

  void on_written(int status) {
    writing = false;
    in_flight = 0;
    if (status < 0) {
      finish(status);
      return;
    }
    last_progress = uv_now(loop);
    schedule();
    done_if_both_closed();
  }

  // Moves what wslay has to send (control frames) into the queue.
  void pump() {
    if (closed || depth > 0 || !ctx) return;
    ++depth;
    int rc = wslay_event_send(ctx);
    --depth;
    if (rc != 0) {
      finish();
      return;
    }
    if (!control.empty()) {
      auto bytes = std::exchange(control, {});
      // Pongs too count against the bound: a client that pings and never
      // reads would otherwise grow the queue without limit.
      if (!closing && queue_bytes + in_flight + bytes.size() > options.max_outbound &&
          queue_bytes + in_flight != 0) {
        queue_close(CloseCode::policy_violation, "slow client: outbound queue over its limit",
                    Pending::discard);
        pump();  // our close frame, now first in line
        return;
      }
      enqueue(std::make_shared<const std::string>(std::move(bytes)));
    }
    done_if_both_closed();
  }

  void done_if_both_closed() {
    if (closed || !ctx) return;
    if (!wslay_event_want_read(ctx) && !wslay_event_want_write(ctx) && queue.empty() && !writing) {
      finish();  // both close frames passed (RFC 6455 7.1.1: the server closes TCP first)
    }
  }

  // Input -------------------------------------------------------------------

  void start(std::string response, std::string rest) {
    last_read = uv_now(loop);
    enqueue(std::make_shared<const std::string>(std::move(response)));
    flush();
    if (!ctx) finish();  // wslay could not allocate
    if (closed) return;
    leftover = std::move(rest);
    uv_tcp_nodelay(tcp.get(), 1);
    if (!leftover.empty()) {
      // Bytes the client sent after its upgrade request: fed from the
      // timer (due at once while they wait), outside the owner's call, and
      // before anything read from the socket (reading starts once they are in).
      arm_timer();
    } else {
      start_reading();
    }
  }

  void start_reading() {
    uv_read_start(
        tcp.stream(),
        [](uv_handle_t*, size_t, uv_buf_t* buf) {
          // One buffer for every socket of the thread: wslay copies what it
          // keeps, and nothing reads another socket before feed() returns.
          thread_local std::vector<char> read_buf(64 * 1024);
          *buf = uv_buf_init(read_buf.data(), static_cast<unsigned>(read_buf.size()));
        },
        [](uv_stream_t* s, ssize_t nread, const uv_buf_t* buf) {
          if (auto* self = static_cast<Impl*>(s->data)) self->on_read(nread, buf);
        });
    arm_timer();
  }

  void on_read(ssize_t nread, const uv_buf_t* buf) {
    if (nread < 0) {  // EOF or error: nothing more can be said on this socket
      finish(nread == UV_EOF && was_reset() ? UV_ECONNRESET : static_cast<int>(nread));
      return;
    }
    if (nread == 0) return;
    last_read = uv_now(loop);
    idle_due = false;
    feed(buf->base, static_cast<std::size_t>(nread));
  }

  // A reset is reported to the first call that meets it. When that is a
  // write, libuv delivers its error one iteration later, and the read that
  // comes first sees only the end of the stream. The socket's state tells
  // the two apart (the relay never shuts down its own side): a FIN alone
  // leaves it in CLOSE_WAIT; CLOSE means the connection was aborted, by an
  // RST alone or answering data sent after the client's FIN (a client that
  // closed without reading), or by a retransmission timeout, which is then
  // also reported as a reset. Linux's TCP_INFO.
  bool was_reset() const {
    uv_os_fd_t fd;
    if (uv_fileno(tcp.handle(), &fd) != 0) return false;
    tcp_info ti{};
    socklen_t len = sizeof ti;
    return ::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &ti, &len) == 0 && ti.tcpi_state == TCP_CLOSE;
  }

  void feed(const char* p, std::size_t n) {
    in = p;
    in_len = n;
    ++depth;
    int rc = wslay_event_recv(ctx);
    --depth;
    in_len = 0;
    if (closed) return;
    if (rc != 0) {
      finish();
      return;
    }
    // wslay closes by itself on a protocol error (unmasked frame, bad
    // opcode, invalid UTF-8, a message over the limit): it queues its close
    // frame and stops reading without telling msg_cb. From here nothing more
    // may be sent, and the close timers must run.
    if (!closing && !wslay_event_get_read_enabled(ctx)) start_closing();
    pump();
  }

  // Timers ------------------------------------------------------------------

  // Closing: the TCP connection goes when no write has completed for
  // close_timeout (a stuck client; also our close frame written and not
  // answered), or drain_timeout after Closing began.
  std::uint64_t close_deadline() const {
    auto stuck = std::max(close_started, last_progress) +
                 static_cast<std::uint64_t>(options.close_timeout.count());
    auto bound = close_started + static_cast<std::uint64_t>(options.drain_timeout.count());
    return std::min(stuck, bound);
  }

  // The timer: leftover input first, then the idle deadline (Open) or the
  // close deadline (Closing).
  void arm_timer() {
    if (closed) return;
    std::uint64_t now = uv_now(loop);
    std::uint64_t due;
    if (!leftover.empty()) {
      due = now;  // the upgrade's leftover is fed first, whatever else is due
    } else if (closing) {
      due = close_deadline();
    } else if (idle_due) {
      due = now + kIdleRecheckMs;
    } else {
      due = last_read + static_cast<std::uint64_t>(options.idle_timeout.count());
    }
    uv_timer_start(
        timer.get(),
        [](uv_timer_t* t) {
          if (auto* self = static_cast<Impl*>(t->data)) self->on_timer();
        },
        due > now ? due - now : 0, 0);
  }

  void on_timer() {
    if (!leftover.empty()) {
      std::string rest = std::move(leftover);
      leftover.clear();
      last_read = uv_now(loop);
      feed(rest.data(), rest.size());
      if (closed) return;
      start_reading();
      return;
    }
    std::uint64_t now = uv_now(loop);
    if (closing) {
      if (now >= close_deadline()) {
        finish();
        return;
      }
    } else if (now >= last_read + static_cast<std::uint64_t>(options.idle_timeout.count())) {
      if (!idle_due) {
        idle_due = true;  // first read what may be waiting (a loop busy writing is late)
      } else {
        idle = true;
        queue_close(CloseCode::normal, "idle timeout", Pending::send);
        pump();
        return;
      }
    }
    arm_timer();
  }

  // Closing -----------------------------------------------------------------

  void start_closing() {
    closing = true;
    close_started = uv_now(loop);
    arm_timer();
  }

  void queue_close(CloseCode code, std::string_view reason, Pending pending) {
    if (closing || closed) return;
    if (!ctx) {
      finish();
      return;
    }
    if (pending == Pending::discard) {
      queue.clear();
      queue_bytes = 0;
    }
    reason = reason.substr(0, kMaxCloseReason);
    wslay_event_queue_close(ctx, static_cast<std::uint16_t>(code),
                            reinterpret_cast<const std::uint8_t*>(reason.data()), reason.size());
    start_closing();
  }

  Send send(SharedFrame frame) {
    if (closing || closed) return Send::closing;
    // The bound is on the backlog: a frame larger than it alone still goes
    // out to a client that has caught up.
    if (queue_bytes + in_flight != 0 &&
        queue_bytes + in_flight + frame->size() > options.max_outbound)
      return Send::overflow;
    enqueue(std::move(frame));
    return Send::queued;
  }

  void finish(int error = 0) {
    if (closed) return;
    closed = true;
    closing = true;
    Closed info;
    info.error = error;
    info.idle = idle;
    info.by_peer = by_peer;
    info.unsent = queue_bytes + in_flight;
    if (ctx) {
      bool sent = wslay_event_get_close_sent(ctx) != 0;
      bool received = wslay_event_get_close_received(ctx) != 0;
      info.clean = sent && received;
      if (sent) {
        info.code = wslay_event_get_status_code_sent(ctx);
      } else if (received) {
        info.code = wslay_event_get_status_code_received(ctx);
      }
    }
    queue.clear();
    queue_bytes = 0;
    release_handles();
    if (!cb.on_closed) return;
    if (in_api > 0) {
      defer(loop, alive.watch(), [this, info] { cb.on_closed(info); });
    } else {
      cb.on_closed(info);
    }
  }

  // Marks a member call (see the contract: no callback from inside one).
  struct Api {
    Impl& s;
    explicit Api(Impl& x) : s(x) { ++s.in_api; }
    ~Api() { --s.in_api; }
  };
};

WebSocket::WebSocket(uv_loop_t* loop, UvHandle<uv_tcp_t> tcp, WebSocketOptions options,
                     Callbacks callbacks, WebSocketOutputStats* output)
    : impl_(std::make_unique<Impl>(loop, std::move(tcp), options, std::move(callbacks), output)) {}

WebSocket::~WebSocket() = default;

void WebSocket::start(std::string handshake_response, std::string leftover) {
  Impl::Api api(*impl_);
  impl_->start(std::move(handshake_response), std::move(leftover));
}

WebSocket::Send WebSocket::send_text(std::string_view text) {
  Impl::Api api(*impl_);
  return impl_->send(std::make_shared<const std::string>(encode_server_frame(Opcode::text, text)));
}

WebSocket::Send WebSocket::send_frame(SharedFrame frame) {
  Impl::Api api(*impl_);
  return impl_->send(std::move(frame));
}

void WebSocket::close(CloseCode code, std::string_view reason, Pending pending) {
  Impl::Api api(*impl_);
  impl_->queue_close(code, reason, pending);
  impl_->pump();
}

bool WebSocket::open() const {
  return !impl_->closing && !impl_->closed;
}

std::size_t WebSocket::queued_bytes() const {
  return impl_->queue_bytes + impl_->in_flight;
}

}  // namespace beamlink::relay
