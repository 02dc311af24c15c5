// The relay's WebSocket endpoint as a client meets it, end to end on a real
// libuv loop: the HttpServer (http_server.cpp) reading an HTTP Upgrade
// request, the hand-off to the ChannelSocketServer, the WebSocket
// (websocket.cpp, wslay: masking, lengths, opcodes, fragments, ping, close,
// UTF-8) and the Phoenix Channels session (phoenix_channels.cpp: join,
// heartbeat, push, leave, malformed) over one AF_UNIX socketpair, the
// server's end adopted by the HttpServer.
//
// Input: fuzz::feed_in_pieces (byte 0 seeds the splits); each piece is
// written to the client's end and the loop runs until nothing moves (no
// bytes left unread by the server, nothing new from it, a few quiet
// iterations); what the server sends is read and dropped. At the end the
// client half-closes and the loop settles. Then, for one input in 16 (the
// last byte's low four bits zero), the endpoint closes with the client
// still there (1001 to the open sockets), the loop settles, everything is
// destroyed and the loop must close cleanly (every handle closed); for the
// others the client closes its end and the server must let the connection
// go. ASan's leak check covers the rest.
//
// One server serves input after input, as the relay serves client after
// client, instead of a loop and servers built (and a 64 KiB read buffer
// zeroed) for every input: 3,584 inputs a second from the seeds, against
// 2,794. A connection the server keeps after its client closed ends that
// server, as above, and is counted in a line printed at exit. A crash
// found this way may need the inputs before it to replay.
//
// A hub stands for the cluster: a client's push comes back as a broadcast on
// the same topic on a later iteration (as a cluster broadcast would), so
// joined sockets get broadcasts too.
//
// Seeds (fuzz/corpus/websocket): the bytes real clients sent to a running
// relay, recorded by fuzz/capture_websocket.js (the official phoenix client,
// and the `ws` client sending the v1 object form, fragments, pings, binary
// and close frames).
#include <fcntl.h>
#include <linux/sockios.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "common/topic_registry.hpp"
#include "relay/channel_hub.hpp"
#include "relay/channel_socket_server.hpp"
#include "relay/http_server.hpp"
#include "relay/phoenix_channels.hpp"
#include "splitter.hpp"

using namespace beamlink;

namespace {

struct Published {
  std::string topic, event, payload;
};

// Pushes come back as broadcasts, later (flush), never from inside publish.
struct EchoHub : relay::ChannelHub {
  TopicRegistry<const relay::ChannelBroadcast&> subs;
  std::vector<Published> pending;
  Subscription subscribe(const std::string& topic, Listener l) override {
    return subs.subscribe(topic, std::move(l));
  }
  Result<void> publish(std::string_view topic, std::string_view event,
                       std::string_view payload) override {
    if (pending.size() >= 64) return make_error(Errc::queue_full, "fuzz hub: queue full");
    pending.push_back({std::string(topic), std::string(event), std::string(payload)});
    return {};
  }
  bool flush() {
    if (pending.empty()) return false;
    auto now = std::move(pending);
    pending.clear();
    for (auto& p : now) {
      std::string text = "[null,null,";
      relay::append_json_string(text, p.topic);
      text += ',';
      relay::append_json_string(text, p.event);
      text += ',';
      text += p.payload;
      text += ']';
      relay::ChannelBroadcast b{p.topic, p.event, p.payload,
                                std::make_shared<const std::string>(std::move(text))};
      subs.emit(p.topic, b);
    }
    return true;
  }
};

int unread_by_server(int client) {
  int n = 0;
  if (::ioctl(client, SIOCOUTQ, &n) != 0) return 0;
  return n;
}

// Reads and drops what the server sent; false once it closed its end.
bool drain(int client, bool& got) {
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(client, buf, sizeof buf);
    if (n > 0) {
      got = true;
      continue;
    }
    if (n == 0) return false;
    return errno == EAGAIN || errno == EINTR;
  }
}

// The loop and the endpoint, kept across inputs.
struct World {
  uv_loop_t loop;
  EchoHub hub;
  std::optional<relay::HttpServer> http;
  std::optional<relay::ChannelSocketServer> ws;

  World() { build(); }
  void build() {
    if (uv_loop_init(&loop) != 0) std::abort();
    relay::ServerOptions so;
    http.emplace(&loop, so, [](const relay::Request&, relay::Responder res) {
      res.respond(relay::Response::error(404, "not_found", "fuzz"));
    });
    relay::ChannelOptions co;
    co.websocket.max_message = 64u << 10;
    co.websocket.max_outbound = 256u << 10;
    co.limits.max_topics = 8;
    ws.emplace(&loop, hub, co);
    ws->attach(*http);
  }
  bool idle() const { return http->connection_count() == 0 && ws->sockets() == 0; }
  // Runs the loop until no connection is left, or gives up; idle() says which.
  void run_until_idle() {
    for (int i = 0; i < 2000 && !idle(); ++i) {
      uv_run(&loop, UV_RUN_NOWAIT);
      hub.flush();
    }
  }
  // The endpoint closes (1001 to open sockets), everything goes, and the
  // loop must close with no handle left; then a new endpoint.
  void rebuild() {
    ws->close();
    http->close();
    run_until_idle();
    ws.reset();
    http.reset();
    hub.pending.clear();
    for (int i = 0; i < 16 && uv_loop_alive(&loop); ++i) uv_run(&loop, UV_RUN_NOWAIT);
    if (uv_loop_close(&loop) != 0) std::abort();  // a handle left open
    build();
  }
};

struct Session {
  uv_loop_t* loop;
  int client;
  EchoHub& hub;
  bool server_open = true;

  // Runs the loop until nothing moves for a few iterations.
  void settle() {
    int quiet = 0, last_unread = -1;
    for (int round = 0; round < 2000 && quiet < 4; ++round) {
      uv_run(loop, UV_RUN_NOWAIT);
      bool got = false;
      if (server_open) server_open = drain(client, got);
      bool moved = got || hub.flush();
      int unread = unread_by_server(client);
      if (unread != last_unread) moved = true;
      last_unread = unread;
      quiet = moved ? 0 : quiet + 1;
    }
  }

  // Writes all of `piece`, letting the server read; false when it stopped
  // reading for good or closed.
  bool write(std::span<const char> piece) {
    while (!piece.empty()) {
      ssize_t n = ::send(client, piece.data(), piece.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        piece = piece.subspan(static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        int before = unread_by_server(client);
        settle();
        if (unread_by_server(client) >= before) return false;  // not reading any more
        continue;
      }
      return false;  // EPIPE / ECONNRESET: the server closed
    }
    settle();
    return server_open;
  }
};

std::size_t kept_after_close = 0;

void report() {
  std::fprintf(stderr, "websocket fuzz: %zu connections kept after their client closed\n",
               kept_after_close);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  static World* world = [] {
    spdlog::set_level(
        spdlog::level::off);  // a log line per closed client would be most of the time
    std::atexit(report);
    return new World;
  }();
  World& w = *world;
  int sv[2];
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) != 0) std::abort();
  int client = sv[1];
  ::fcntl(client, F_SETFL, ::fcntl(client, F_GETFL) | O_NONBLOCK);
  if (!w.http->adopt(sv[0])) std::abort();
  Session s{&w.loop, client, w.hub};
  fuzz::feed_in_pieces(data, size, [&](std::span<const char> piece) { return s.write(piece); });
  // The client is done: half-close; then the endpoint closes, or the client.
  ::shutdown(client, SHUT_WR);
  s.settle();
  if (size > 0 && (data[size - 1] & 15) == 0) {
    w.rebuild();
    ::close(client);
    return 0;
  }
  ::close(client);
  w.run_until_idle();
  if (!w.idle()) {
    ++kept_after_close;
    w.rebuild();
  }
  return 0;
}
