// beamlink as a peer of real erl nodes, each test on its own epmd.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>

#include "node_fixture.hpp"
#include "term/term_text.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

TEST_CASE("a BEAM node's net_adm:ping gets pong and sees beamlink as hidden") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  CHECK(t1.eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "true");
  CHECK(t1.eval("lists:member('beamlink@127.0.0.1', nodes())") == "false");
  CHECK(wait_until([&] { return bl.connected("t1@127.0.0.1"); }, 5s));
}

TEST_CASE("a BEAM process sends to a name registered in beamlink and gets the reply") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  install_echo(bl);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  t1.eval("{echo, 'beamlink@127.0.0.1'} ! {self(), {hello, <<\"world\">>, 42}}");
  CHECK(t1.eval("receive {echo, M} -> M after 5000 -> timeout end") == "{hello,<<\"world\">>,42}");
}

TEST_CASE("beamlink sends to a BEAM registered process and to a pid") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("register(sink, self())") == "true");
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  auto sent = bl.on_loop([&] {
    term::TermWriter msg;
    msg.tuple(2).atom("relay").binary("topic");
    auto from = bl->spawn([](const term::Pid&, const dist::Envelope&) {});
    return bl->reg_send(from, "t1@127.0.0.1", "sink", msg.bytes()).ok();
  });
  CHECK(sent);
  CHECK(t1.eval("receive {relay, T} -> T after 5000 -> timeout end") == "<<\"topic\">>");
}

TEST_CASE("links from BEAM processes stay consistent") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  install_echo(bl);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  t1.eval("{echo, 'beamlink@127.0.0.1'} ! {self(), whoami}");
  CHECK(t1.eval("receive {pid, P} -> Echo = P, is_pid(P) after 5000 -> timeout end") == "true");
  t1.eval("process_flag(trap_exit, true)");
  CHECK(t1.eval("link(Echo)") == "true");
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->processes().link_count() == 1; }); },
                   5s));

  // The process ends: the linked peer gets EXIT with the reason.
  bl.on_loop([&] { bl->exit(*bl->processes().whereis("echo"), "shutdown"); });
  CHECK(t1.eval("receive {'EXIT', Echo, R1} -> R1 after 5000 -> timeout end") == "shutdown");

  // Linking to a process that is gone: EXIT noproc at once.
  CHECK(t1.eval("link(Echo), receive {'EXIT', Echo, R2} -> R2 after 5000 -> timeout end") ==
        "noproc");

  // unlink (UNLINK_ID, acknowledged) leaves no link behind.
  install_echo(bl);
  t1.eval("{echo, 'beamlink@127.0.0.1'} ! {self(), whoami}");
  CHECK(t1.eval("receive {pid, P2} -> Echo2 = P2, ok after 5000 -> timeout end") == "ok");
  CHECK(t1.eval("link(Echo2), unlink(Echo2)") == "true");
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->processes().link_count() == 0; }); },
                   5s));

  // A linked peer whose connection goes: the link is dropped on our side, and
  // the BEAM process gets EXIT noconnection.
  CHECK(t1.eval("link(Echo2)") == "true");
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->processes().link_count() == 1; }); },
                   5s));
  bl.on_loop([&] { bl->disconnect("t1@127.0.0.1"); });
  CHECK(t1.eval("receive {'EXIT', Echo2, R3} -> R3 after 5000 -> timeout end") == "noconnection");
  CHECK(bl.on_loop([&] { return bl->processes().link_count(); }) == 0);
}

TEST_CASE("a BEAM monitor on a beamlink process watches the connection") {
  // erts sends MONITOR_P only to peers with DFLAG_DIST_MONITOR_NAME, which
  // ei's handshake does not advertise; such a monitor "only supervises the
  // connection" (erts dist.c). So the DOWN comes when the connection goes.
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  install_echo(bl);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  t1.eval("{echo, 'beamlink@127.0.0.1'} ! {self(), whoami}");
  CHECK(t1.eval("receive {pid, P} -> Echo = P, ok after 5000 -> timeout end") == "ok");
  CHECK(t1.eval("M = erlang:monitor(process, Echo), is_reference(M)") == "true");
  bl.on_loop([&] { bl->disconnect("t1@127.0.0.1"); });
  CHECK(t1.eval("receive {'DOWN', M, process, _, R} -> R after 5000 -> timeout end") ==
        "noconnection");
}

TEST_CASE("a wrong cookie in either direction is refused and both sides stay up") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode good(erl_options("good@127.0.0.1", epmd.port()));
  ErlNode bad(erl_options("bad@127.0.0.1", epmd.port(), 60, "some-other-cookie"));

  // BEAM -> beamlink with the wrong cookie.
  CHECK(bad.eval("net_adm:ping('beamlink@127.0.0.1')") == "pang");
  CHECK(
      wait_until([&] { return bl.on_loop([&] { return bl->stats().accept_failures >= 1; }); }, 5s));
  // beamlink -> BEAM with the wrong cookie.
  auto err = bl.connect("bad@127.0.0.1");
  CHECK(err.find("cookie") != std::string::npos);
  CHECK_FALSE(bl.connected("bad@127.0.0.1"));
  // Both stay up: the good node still gets pong, the bad node still runs.
  CHECK(good.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  CHECK(bad.eval("1 + 1") == "2");
}

TEST_CASE("an idle connection survives 5x net_ticktime") {
  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.ticktime = 4s;
  TestNode bl(lt, cfg);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port(), 4));
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  // Nothing but ticks for 20 s: the connection must not drop on either side.
  bool dropped = wait_until([&] { return !bl.connected("t1@127.0.0.1"); }, 20s);
  CHECK_FALSE(dropped);
  CHECK(t1.eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "true");
  auto ticks =
      bl.on_loop([&] { return std::make_pair(bl->stats().ticks_in, bl->stats().ticks_out); });
  CHECK(ticks.first >= 10);  // the BEAM ticks every ticktime/4 = 1 s
  CHECK(ticks.second >= 10);
}

TEST_CASE("a stopped peer (SIGSTOP) is dropped within net_ticktime") {
  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.ticktime = 4s;
  TestNode bl(lt, cfg);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port(), 4));
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  REQUIRE(bl.connected("t1@127.0.0.1"));
  t1.process().signal(SIGSTOP);
  auto t0 = std::chrono::steady_clock::now();
  // Silent for a whole ticktime, checked every ticktime/8.
  CHECK(wait_until([&] { return !bl.connected("t1@127.0.0.1"); }, 4s + 500ms + 1s));
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("dropped after " << took.count() << " ms");
  CHECK(bl.on_loop([&] { return bl->stats().tick_timeouts; }) == 1);
  t1.process().signal(SIGCONT);
}

TEST_CASE("epmd killed and restarted: re-registered within 3 s - connections untouched") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  epmd.kill();
  epmd.restart();
  auto t0 = std::chrono::steady_clock::now();
  bool back = wait_until(
      [&] {
        auto r = run({"epmd", "-port", std::to_string(epmd.port()), "-names"}, 5s);
        return r.out.find("name beamlink at port") != std::string::npos;
      },
      3s);
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("re-registered after " << took.count() << " ms");
  CHECK(back);
  CHECK(bl.connected("t1@127.0.0.1"));
  CHECK(bl.on_loop([&] { return bl->stats().epmd_reregistrations; }) == 1);
  // The connection still carries traffic.
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
}

TEST_CASE("10 BEAM peers connected at once") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  std::vector<std::unique_ptr<ErlNode>> peers;
  for (int i = 0; i < 10; ++i)
    peers.push_back(std::make_unique<ErlNode>(
        erl_options("p" + std::to_string(i) + "@127.0.0.1", epmd.port()), false));
  for (auto& p : peers) p->wait_ready();
  for (auto& p : peers) p->process().write_stdin("0 net_adm:ping('beamlink@127.0.0.1')\n");
  CHECK(wait_until([&] { return bl.on_loop([&] { return bl->connected_nodes().size(); }) == 10; },
                   20s));
  for (auto& p : peers)
    CHECK(p->eval("lists:member('beamlink@127.0.0.1', nodes(hidden))") == "true");
}

TEST_CASE("a peer that stops reading gets backpressure and loses nothing") {
  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.max_outbound = 1u << 20;
  TestNode bl(lt, cfg);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("register(sink, self())") == "true");
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  t1.process().signal(SIGSTOP);

  term::TermWriter msg;
  msg.tuple(3).atom("relay").binary("topic").binary(std::string(100, 'x'));
  std::string bytes(msg.bytes().data(), msg.size());
  auto from = bl.on_loop([&] { return bl->spawn([](const term::Pid&, const dist::Envelope&) {}); });
  std::size_t sent = 0, max_queued = 0;
  auto writable = std::make_shared<std::atomic<bool>>(false);
  bool stalled = false;
  // Send until the queue is full; wait for room; repeat until no room comes:
  // the kernel's buffers are full too and the peer is not reading.
  for (int round = 0; round < 500 && !stalled; ++round) {
    writable->store(false);
    bl.on_loop([&] {
      for (;;) {
        auto r = bl->reg_send(from, "t1@127.0.0.1", "sink", {bytes.data(), bytes.size()});
        if (!r) {
          REQUIRE(r.error().code == Errc::queue_full);
          break;
        }
        ++sent;
      }
      max_queued = std::max(max_queued, bl->queued_bytes("t1@127.0.0.1"));
      bl->when_writable("t1@127.0.0.1", [writable](Result<void> w) { writable->store(w.ok()); });
    });
    stalled = !wait_until([&] { return writable->load(); }, 2s);
  }
  REQUIRE(stalled);
  MESSAGE("queued " << sent << " messages before the peer's buffers and ours were full");
  // Bounded: at most the limit plus the frame that crossed it.
  CHECK(max_queued <= cfg.max_outbound + bytes.size() + 64);
  CHECK(bl.on_loop([&] { return bl->stats().queue_full; }) >= 1);

  // The peer reads again: the queue drains and every accepted message arrives.
  t1.process().signal(SIGCONT);
  CHECK(wait_until([&] { return writable->load(); }, 20s));
  CHECK(wait_until(
      [&] {
        return t1.eval("element(2, process_info(self(), message_queue_len))") ==
               std::to_string(sent);
      },
      30s));
  CHECK(bl.connected("t1@127.0.0.1"));
}

TEST_CASE("stop returns at once even with an inbound handshake stalled") {
  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.accept_timeout = 10s;
  TestNode bl(lt, cfg);
  // A client that connects to the distribution port and says nothing: its
  // handshake stays in progress until accept_timeout.
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(bl->listen_port());
  inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
  REQUIRE(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  auto t0 = std::chrono::steady_clock::now();
  bl.on_loop([&] { bl->stop(); });
  auto took =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
  MESSAGE("stop() took " << took.count() << " ms with a stalled handshake");
  CHECK(took < 1s);  // not accept_timeout (10 s)
  ::close(fd);
}

TEST_CASE("every accepted send completes once - written or cancelled by the close") {
  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.max_outbound = 1u << 20;
  TestNode bl(lt, cfg);
  ErlNode t1(erl_options("t1@127.0.0.1", epmd.port()));
  CHECK(t1.eval("register(sink, self())") == "true");
  REQUIRE(bl.connect("t1@127.0.0.1") == "");

  term::TermWriter msg;
  msg.tuple(2).atom("relay").binary(std::string(100, 'x'));
  std::string bytes(msg.bytes().data(), msg.size());
  auto from = bl.on_loop([&] { return bl->spawn([](const term::Pid&, const dist::Envelope&) {}); });
  struct Counts {
    std::atomic<int> ok{0}, closed{0}, other{0}, inside{0};
  };
  auto counts = std::make_shared<Counts>();
  bool in_send = false;  // loop thread only
  auto done = [counts, &in_send](Result<void> r) {
    if (in_send) ++counts->inside;
    if (r)
      ++counts->ok;
    else if (r.error().code == Errc::connection_closed &&
             r.error().message.find("closed before the frame was written") != std::string::npos)
      ++counts->closed;
    else
      ++counts->other;
  };

  // A reading peer: every send completes ok, once.
  bl.on_loop([&] {
    for (int i = 0; i < 100; ++i) {
      in_send = true;
      auto r = bl->reg_send(from, "t1@127.0.0.1", "sink", {bytes.data(), bytes.size()}, done);
      in_send = false;
      REQUIRE(r);
    }
  });
  CHECK(wait_until([&] { return counts->ok.load() == 100; }, 10s));

  // A peer that stops reading, then our side closes: what was written
  // completes ok, the rest connection_closed; each exactly once.
  t1.process().signal(SIGSTOP);
  int sent = 0;
  for (int round = 0; round < 50; ++round) {
    bool full = bl.on_loop([&] {
      for (;;) {
        in_send = true;
        auto r = bl->reg_send(from, "t1@127.0.0.1", "sink", {bytes.data(), bytes.size()}, done);
        in_send = false;
        if (!r) return r.error().code == Errc::queue_full;
        ++sent;
      }
    });
    REQUIRE(full);
    if (!wait_until(
            [&] {
              return bl.on_loop([&] { return bl->queued_bytes("t1@127.0.0.1"); }) <
                     cfg.max_outbound / 2;
            },
            1s))
      break;  // no room comes: the kernel's buffers are full too
  }
  bl.on_loop([&] { bl->disconnect("t1@127.0.0.1"); });
  CHECK(wait_until([&] { return counts->ok + counts->closed + counts->other == 100 + sent; }, 10s));
  t1.process().signal(SIGCONT);
  CHECK(counts->closed.load() > 0);
  CHECK(counts->other.load() == 0);
  CHECK(counts->inside.load() == 0);
  MESSAGE(sent << " sent to a stopped peer: " << counts->ok - 100 << " written, " << counts->closed
               << " cancelled by the close");
  // Nothing completes twice, later either.
  bl.on_loop([&] {});
  CHECK(counts->ok + counts->closed + counts->other == 100 + sent);
}

TEST_CASE("peers that come and go leave nothing behind in the node") {
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  auto entries = [&] { return bl.on_loop([&] { return bl->peer_entries(); }); };
  auto from = bl.on_loop([&] { return bl->spawn([](const term::Pid&, const dist::Envelope&) {}); });
  for (int i = 0; i < 3; ++i) {
    // Distinct names, as pods replaced in a cluster get: one dialled by
    // beamlink, one that dials beamlink.
    std::string out = "out" + std::to_string(i) + "@127.0.0.1";
    std::string in = "in" + std::to_string(i) + "@127.0.0.1";
    auto a = std::make_unique<ErlNode>(erl_options(out, epmd.port()));
    auto b = std::make_unique<ErlNode>(erl_options(in, epmd.port()));
    REQUIRE(bl.connect(out) == "");
    REQUIRE(b->eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
    REQUIRE(wait_until([&] { return bl.connected(in); }, 60s));
    // A message each way, so the connections have written and read.
    REQUIRE(a->eval("register(sink, self())") == "true");
    CHECK(bl.on_loop([&] {
      term::TermWriter msg;
      msg.atom("hi");
      return bl->reg_send(from, out, "sink", msg.bytes()).ok();
    }));
    CHECK(a->eval("receive hi -> ok after 60000 -> timeout end", 90s) == "ok");
    CHECK(entries() >= 2);
    a.reset();
    b.reset();
    CHECK_MESSAGE(wait_until([&] { return entries() == 0; }, 60s), entries() << " entries");
  }
  // A dial that fails leaves nothing either.
  CHECK(bl.connect("nobody@127.0.0.1") != "");
  CHECK_MESSAGE(wait_until([&] { return entries() == 0; }, 60s), entries() << " entries");
}
