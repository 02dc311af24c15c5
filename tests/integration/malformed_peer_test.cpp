// A peer that completes a real handshake (through ei, as any C node would)
// and then sends bytes that break the protocol: beamlink closes only that
// connection, logs why, and keeps serving its other peers.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <ei.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <poll.h>

#include "dist/control.hpp"
#include "dist/framer.hpp"
#include "node_fixture.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// Connects to beamlink as `name` with the right cookie; returns the fd.
int evil_connect(const std::string& alive, int port) {
  static bool init = [] { return ei_init() == 0; }();
  REQUIRE(init);
  ei_cnode ec;
  in_addr addr{};
  inet_pton(AF_INET, "127.0.0.1", &addr);
  std::string node = alive + "@127.0.0.1";
  REQUIRE(ei_connect_xinit(&ec, "127.0.0.1", alive.c_str(), node.c_str(), &addr, kCookie.c_str(),
                           1) == 0);
  int fd = ei_xconnect_host_port_tmo(&ec, &addr, port, 5000);
  REQUIRE(fd >= 0);
  return fd;
}

void write_all(int fd, const std::string& bytes) {
  REQUIRE(::write(fd, bytes.data(), bytes.size()) == static_cast<ssize_t>(bytes.size()));
}

std::string be32(std::uint32_t v) {
  return std::string{static_cast<char>(v >> 24), static_cast<char>(v >> 16),
                     static_cast<char>(v >> 8), static_cast<char>(v)};
}

// Reads frames from fd until `want` non-tick frames arrived or the deadline passed.
std::vector<std::pair<dist::Control, std::string>> read_controls(
    int fd, std::size_t want, std::chrono::milliseconds timeout) {
  std::vector<std::pair<dist::Control, std::string>> out;
  dist::Framer framer;
  std::vector<std::string> keep;  // controls' spans point into their own copy
  auto deadline = std::chrono::steady_clock::now() + timeout;
  while (out.size() < want && std::chrono::steady_clock::now() < deadline) {
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, 50) <= 0) continue;
    auto space = framer.prepare(65536);
    ssize_t n = ::read(fd, space.data(), space.size());
    if (n <= 0) break;
    framer.commit(static_cast<std::size_t>(n));
    for (;;) {
      auto f = framer.next();
      REQUIRE(f.ok());
      if (!*f) break;
      if ((*f)->tick) continue;
      keep.emplace_back((*f)->control.data(), (*f)->control.size());
      auto c = dist::decode_control({keep.back().data(), keep.back().size()});
      REQUIRE(c.ok());
      std::string reason(c->reason.data(), c->reason.size());
      out.emplace_back(*c, reason);
    }
  }
  return out;
}

void send_control(int fd, const term::TermWriter& control) {
  std::string frame;
  dist::append_frame(frame, control.bytes());
  write_all(fd, frame);
}

struct Case {
  const char* what;
  std::string bytes;
  bool close_after;      // close our side after writing (truncation)
  const char* log_text;  // what beamlink must log about it
};

}  // namespace

TEST_CASE("malformed input from a peer closes only that connection - with a logged reason") {
  auto ring = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(256);
  auto previous = spdlog::default_logger();
  auto previous_level = spdlog::get_level();
  spdlog::set_default_logger(std::make_shared<spdlog::logger>("test", ring));
  spdlog::set_level(spdlog::level::info);
  auto logged = [&](const std::string& needle) {
    for (auto& line : ring->last_formatted())
      if (line.find(needle) != std::string::npos) return true;
    return false;
  };

  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(ErlNode::Options{"t1@127.0.0.1", kCookie, epmd.port(), 60, {}});
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");

  // {6, notapid} as a control: a REG_SEND with the wrong arity and types.
  std::string bad_control = std::string("\x83\x68\x02\x61\x06\x77\x07", 7) + "notapid";
  std::vector<Case> cases = {
      {"garbage bytes", be32(5) + "hello", false, "malformed frame from evil0@127.0.0.1"},
      {"a length with the sign bit set", be32(0x80000001u) + "xxxx", false,
       "malformed frame from evil1@127.0.0.1"},
      {"a length over the maximum", be32(0x7ffffff0u), false,
       "malformed frame from evil2@127.0.0.1"},
      {"a truncated frame", be32(100) + std::string(10, 'p'), true,
       "connection to evil3@127.0.0.1 closed"},
      {"a malformed control tuple",
       be32(static_cast<std::uint32_t>(1 + bad_control.size())) + "p" + bad_control, false,
       "malformed control message from evil4@127.0.0.1"},
  };
  int i = 0;
  for (auto& c : cases) {
    CAPTURE(c.what);
    std::string alive = "evil" + std::to_string(i++);
    int fd = evil_connect(alive, bl->listen_port());
    std::string node = alive + "@127.0.0.1";
    CHECK(wait_until([&] { return bl.connected(node); }, 5s));
    write_all(fd, c.bytes);
    if (c.close_after) ::close(fd);
    CHECK(wait_until([&] { return !bl.connected(node); }, 5s));
    CHECK(wait_until([&] { return logged(c.log_text); }, 2s));
    if (!c.close_after) {
      // beamlink closed it: our side reads EOF.
      char b;
      CHECK(::read(fd, &b, 1) == 0);
      ::close(fd);
    }
    // The other peer is untouched.
    CHECK(bl.connected("t1@127.0.0.1"));
    CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  }
  CHECK(bl.on_loop([&] { return bl->stats().malformed_frames; }) == 4);
  spdlog::set_default_logger(previous);
  spdlog::set_level(previous_level);
}

TEST_CASE("a peer that sends MONITOR_P gets MONITOR_P_EXIT when the process ends") {
  // The BEAM reduces monitors on C nodes to connection supervision (see
  // node_test.cpp); a peer that does send MONITOR_P, by pid or by name, gets
  // the protocol's answers: noproc at once for a missing process, the exit
  // reason when the process ends, nothing after DEMONITOR_P.
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  auto echo = bl.on_loop(
      [&] { return *bl->register_name("echo", [](const term::Pid&, const dist::Envelope&) {}); });
  int fd = evil_connect("mon", bl->listen_port());
  REQUIRE(wait_until([&] { return bl.connected("mon@127.0.0.1"); }, 5s));
  term::Pid watcher{"mon@127.0.0.1", 7, 0, 1};
  auto make_ref = [](std::uint32_t n) {
    term::Ref r;
    r.node = "mon@127.0.0.1";
    r.creation = 1;
    r.len = 3;
    r.n = {n, 0, 0, 0, 0};
    return r;
  };
  send_control(fd, dist::encode_monitor_p(watcher, echo, make_ref(1)));
  send_control(fd, dist::encode_monitor_p(watcher, std::string("echo"), make_ref(2)));
  send_control(fd, dist::encode_monitor_p(watcher, std::string("nobody"), make_ref(3)));
  send_control(fd, dist::encode_monitor_p(watcher, echo, make_ref(4)));
  send_control(fd, dist::encode_demonitor_p(watcher, echo, make_ref(4)));

  auto noproc = read_controls(fd, 1, 5s);
  REQUIRE(noproc.size() == 1);
  CHECK(noproc[0].first.tag == dist::ControlTag::monitor_p_exit);
  CHECK(noproc[0].first.from_name == "nobody");
  CHECK(noproc[0].first.ref == make_ref(3));
  CHECK(noproc[0].second == dist::atom_reason("noproc"));
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->processes().monitor_count(); }) == 2; },
                   5s));

  bl.on_loop([&] { bl->exit(echo, "shutdown"); });
  auto downs = read_controls(fd, 2, 5s);
  REQUIRE(downs.size() == 2);
  int by_pid = 0, by_name = 0;
  for (auto& [c, reason] : downs) {
    CHECK(c.tag == dist::ControlTag::monitor_p_exit);
    CHECK(c.to == watcher);
    CHECK(reason == dist::atom_reason("shutdown"));
    if (c.has_from && c.from == echo && c.ref == make_ref(1)) ++by_pid;
    if (c.from_name == "echo" && c.ref == make_ref(2)) ++by_name;
  }
  CHECK(by_pid == 1);
  CHECK(by_name == 1);
  // The demonitored one (ref 4) sends nothing more.
  CHECK(read_controls(fd, 1, 500ms).empty());
  ::close(fd);
}
