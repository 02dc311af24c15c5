// connect_timeout bounds a whole dial from the moment it is asked for: a
// name whose resolver never answers, and more dials than dial threads to
// peers whose handshake stalls, each fail at about connect_timeout from
// submission with an error naming the step that ran out, and a legitimate
// dial queued behind them still connects.
//
// The hung resolver is real glibc getaddrinfo against a real UDP socket that
// reads the query and answers only when the test says so: the test process
// enters its own mount namespace (root) and binds a resolv.conf over
// /etc/resolv.conf that names that socket (a loopback address of its own,
// port 53). Nothing outside the process sees it.
#include <arpa/inet.h>
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <random>
#include <vector>

#include "common/uv_handle.hpp"
#include "epmd_client/codec.hpp"
#include "node_fixture.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

namespace {

// A DNS server on 127.A.B.C:53 that reads queries and answers only when
// asked to (answer_all), with one A record.
class SilentResolver {
 public:
  SilentResolver() {
    std::random_device rd;
    for (int attempt = 0; attempt < 50 && fd_ < 0; ++attempt) {
      int fd = ::socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
      REQUIRE(fd >= 0);
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(53);
      sa.sin_addr.s_addr = htonl((127u << 24) | ((rd() % 250 + 2) << 16) | ((rd() % 250 + 2) << 8) |
                                 (rd() % 250 + 2));
      if (::bind(fd, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0) {
        fd_ = fd;
        addr_ = sa.sin_addr;
      } else {
        ::close(fd);
      }
    }
    REQUIRE_MESSAGE(fd_ >= 0, "cannot bind a loopback UDP port 53: " << std::strerror(errno));
  }
  ~SilentResolver() { ::close(fd_); }
  std::string ip() const {
    char b[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, &addr_, b, sizeof b);
    return b;
  }
  // Reads what has arrived; returns how many queries are held.
  std::size_t poll_queries() {
    for (;;) {
      Query q;
      char buf[512];
      socklen_t len = sizeof q.from;
      ssize_t n = ::recvfrom(fd_, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&q.from), &len);
      if (n < 0) break;
      q.bytes.assign(buf, static_cast<std::size_t>(n));
      if (q.bytes.size() > 12) queries_.push_back(std::move(q));
    }
    return queries_.size();
  }
  // Answers every query held with one A record for `ip`.
  void answer_all(const std::string& ip) {
    in_addr a{};
    REQUIRE(inet_pton(AF_INET, ip.c_str(), &a) == 1);
    for (auto& q : queries_) {
      std::string r = q.bytes;         // id, flags, counts, question
      r[2] = static_cast<char>(0x81);  // QR, RD
      r[3] = static_cast<char>(0x80);  // RA, NOERROR
      r[6] = 0;
      r[7] = 1;  // ANCOUNT 1
      r[8] = r[9] = r[10] = r[11] = 0;
      std::size_t end = 12;  // past QNAME, QTYPE, QCLASS
      while (end < r.size() && r[end] != 0) end += 1 + static_cast<unsigned char>(r[end]);
      end += 1 + 4;
      r.resize(end);
      const char answer[] = {'\xc0', '\x0c', 0, 1, 0, 1, 0, 0, 0, 60, 0, 4};
      r.append(answer, sizeof answer);
      r.append(reinterpret_cast<const char*>(&a.s_addr), 4);
      (void)::sendto(fd_, r.data(), r.size(), 0, reinterpret_cast<sockaddr*>(&q.from),
                     sizeof q.from);
    }
    queries_.clear();
  }

 private:
  struct Query {
    sockaddr_in from{};
    std::string bytes;
  };
  int fd_ = -1;
  in_addr addr_{};
  std::vector<Query> queries_;
};

// Enters a private mount namespace and binds a resolv.conf naming
// `nameserver` (one try, 30 s) over /etc/resolv.conf. Empty on success,
// else why not. Must run before the process has a second thread. Undone by
// ~ResolvConfMount (the process stays in its namespace, which then sees
// the host's file again).
std::string use_private_resolver(const std::string& nameserver) {
  if (::unshare(CLONE_NEWNS) != 0) return std::string("unshare: ") + std::strerror(errno);
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0)
    return std::string("mount --make-rprivate /: ") + std::strerror(errno);
  auto path = std::filesystem::temp_directory_path() /
              ("beamlink-resolv-" + std::to_string(::getpid()) + ".conf");
  {
    std::ofstream f(path);
    f << "nameserver " << nameserver << "\noptions timeout:30 attempts:1\n";
  }
  int rc = ::mount(path.c_str(), "/etc/resolv.conf", nullptr, MS_BIND, nullptr);
  int err = errno;
  std::filesystem::remove(path);  // the mount holds the file
  if (rc != 0) return std::string("bind-mount /etc/resolv.conf: ") + std::strerror(err);
  return {};
}

struct ResolvConfMount {
  ~ResolvConfMount() { ::umount2("/etc/resolv.conf", MNT_DETACH); }
};

int thread_count() {
  int n = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator("/proc/self/task")) ++n;
  return n;
}

// A dial's outcome and how long it took from submission.
struct Outcome {
  std::string error;  // "" on success
  std::chrono::milliseconds took{};
};

// Submits a connect on the loop now; the future holds its outcome.
std::future<Outcome> dial(LoopThread& lt, TestNode& node, const std::string& peer) {
  auto done = std::make_shared<std::promise<Outcome>>();
  auto fut = done->get_future();
  lt.post([&node, peer, done] {
    auto t0 = Clock::now();
    node->connect(peer, [done, t0](Result<void> r) {
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
      done->set_value(Outcome{r ? std::string() : r.error().message, took});
    });
  });
  return fut;
}

const char* const kHungResolverCase =
    "dial deadline - a name whose resolver never answers fails at connect_timeout and the late "
    "answer is ignored";

}  // namespace

TEST_CASE(
    "dial deadline - a name whose resolver never answers fails at connect_timeout and the late "
    "answer is ignored") {
  if (::geteuid() != 0) {
    MESSAGE("skipped: needs root (a private mount namespace for the test resolv.conf)");
    return;
  }
  if (thread_count() > 1) {
    // Run with other cases in one process: run this case alone, where the
    // process is still single-threaded (CTest runs every case that way).
    auto r = run({"/proc/self/exe", std::string("--test-case=") + kHungResolverCase}, 120s);
    INFO(r.out << r.err);
    CHECK(r.code == 0);
    return;
  }
  SilentResolver resolver;
  auto err = use_private_resolver(resolver.ip());
  REQUIRE_MESSAGE(err.empty(), err);
  ResolvConfMount unmount;  // after the node and its loop are gone

  Epmd epmd;
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.connect_timeout = 1500ms;
  TestNode bl(lt, cfg);
  std::atomic<int> calls{0};
  auto done = std::make_shared<std::promise<Outcome>>();
  auto fut = done->get_future();
  lt.post([&] {
    auto t0 = Clock::now();
    bl->connect("t1@hung.beamlink.test", [&calls, done, t0](Result<void> r) {
      auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
      if (calls++ == 0) done->set_value(Outcome{r ? std::string() : r.error().message, took});
    });
  });
  REQUIRE(fut.wait_for(60s) == std::future_status::ready);
  auto got = fut.get();
  INFO(got.error);
  CHECK(got.error.find("resolving hung.beamlink.test took longer than 1500 ms") !=
        std::string::npos);
  CHECK(got.took >= 1400ms);
  CHECK(got.took < 2500ms);  // not the resolver's 30 s
  // The query did reach the silent resolver: glibc is still waiting for it.
  REQUIRE(wait_until([&] { return resolver.poll_queries() >= 1; }, 60s));

  // Now it answers, after the deadline: the result is freed and ignored
  // (no second callback, no connection; LeakSanitizer checks the free).
  resolver.answer_all("127.0.0.1");
  // The node goes on dialling: a second dial to the name asks the resolver
  // again (glibc caches nothing), which answers this time in time.
  auto second = dial(lt, bl, "t1@hung.beamlink.test");
  REQUIRE(wait_until([&] { return resolver.poll_queries() >= 1; }, 60s));
  resolver.answer_all("127.0.0.1");
  REQUIRE(second.wait_for(60s) == std::future_status::ready);
  auto s = second.get();
  INFO(s.error);
  // Resolved this time: it fails at the epmd lookup (no t1 registered), not
  // at resolving.
  CHECK(s.error.find("resolving") == std::string::npos);
  CHECK(s.error != "");
  CHECK(calls.load() == 1);
  CHECK_FALSE(bl.connected("t1@hung.beamlink.test"));
}

namespace {

// A name registered in a test epmd for a port whose listener accepts
// connections into its backlog and never answers: a handshake that stalls.
class StalledPeer {
 public:
  StalledPeer(int epmd_port, int listen_port, const std::string& alive) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    sa.sin_port = htons(static_cast<std::uint16_t>(epmd_port));
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    auto req = epmd_client::encode_alive2_req(static_cast<std::uint16_t>(listen_port), alive);
    REQUIRE(::write(fd_, req.data(), req.size()) == static_cast<ssize_t>(req.size()));
    std::string got;
    for (;;) {
      char b[64];
      ssize_t n = ::read(fd_, b, sizeof b);
      REQUIRE(n > 0);
      got.append(b, static_cast<std::size_t>(n));
      auto r = epmd_client::decode_alive2_resp(got);
      REQUIRE(r.ok());
      if (r.value()) break;
    }
  }
  ~StalledPeer() { ::close(fd_); }  // epmd forgets the name
  StalledPeer(const StalledPeer&) = delete;
  StalledPeer& operator=(const StalledPeer&) = delete;

 private:
  int fd_ = -1;
};

// Listens on 127.0.0.1 and never accepts: the kernel completes the TCP
// connect, nobody ever reads or writes.
class BlackHole {
 public:
  BlackHole() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(fd_, reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0);
    REQUIRE(::listen(fd_, 128) == 0);
    socklen_t len = sizeof sa;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&sa), &len);
    port_ = ntohs(sa.sin_port);
  }
  ~BlackHole() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

}  // namespace

TEST_CASE(
    "dial deadline - more stalled handshakes than dial threads each fail at connect_timeout from "
    "submission and a dial queued behind them connects") {
  constexpr auto kTimeout = 2000ms;
  constexpr int kStalled = 7;  // more than the node's dial threads (4)
  Epmd epmd;
  BlackHole hole;
  std::vector<std::unique_ptr<StalledPeer>> stalled;
  for (int i = 0; i < kStalled; ++i)
    stalled.push_back(
        std::make_unique<StalledPeer>(epmd.port(), hole.port(), "stall" + std::to_string(i)));
  ErlNode good(ErlNode::Options{"good@127.0.0.1", kCookie, epmd.port(), 60, {}});
  LoopThread lt;
  auto cfg = test_node_config(epmd.port());
  cfg.connect_timeout = kTimeout;
  TestNode bl(lt, cfg);

  std::vector<std::future<Outcome>> outcomes;
  for (int i = 0; i < kStalled; ++i)
    outcomes.push_back(dial(lt, bl, "stall" + std::to_string(i) + "@127.0.0.1"));
  // Half a connect_timeout later (a loop timer, not a sleep), a dial to a
  // real node joins the queue behind them.
  auto good_done = std::make_shared<std::promise<Outcome>>();
  auto good_fut = good_done->get_future();
  UvHandle<uv_timer_t> later;
  struct Later {
    TestNode* node;
    std::shared_ptr<std::promise<Outcome>> done;
  } ctx{&bl, good_done};
  lt.call([&] {
    REQUIRE(later.init(lt.loop(), &ctx, uv_timer_init) == 0);
    uv_timer_start(
        later.get(),
        [](uv_timer_t* t) {
          auto* c = static_cast<Later*>(t->data);
          if (!c) return;
          auto t0 = Clock::now();
          (*c->node)->connect("good@127.0.0.1", [done = c->done, t0](Result<void> r) {
            auto took = std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0);
            done->set_value(Outcome{r ? std::string() : r.error().message, took});
          });
        },
        static_cast<std::uint64_t>(kTimeout.count() / 2), 0);
  });

  int handshaking = 0, queued = 0, waited = 0;
  for (auto& f : outcomes) {
    REQUIRE(f.wait_for(60s) == std::future_status::ready);
    auto o = f.get();
    INFO(o.error << " after " << o.took.count() << " ms");
    CHECK(o.took >= kTimeout - 100ms);
    CHECK(o.took < kTimeout * 3 / 2);  // from submission: not a multiple of it
    if (o.error.find(" ms for a dial thread") != std::string::npos &&
        o.error.find("connect_timeout (2000 ms) ran out before the handshake could start") !=
            std::string::npos)
      ++queued;
    else if (o.error.find(
                 "TCP connect and handshake with 127.0.0.1:" + std::to_string(hole.port()) +
                 " did not finish within 2000 ms") != std::string::npos)
      ++handshaking;
    else
      FAIL_CHECK("unexpected error: " << o.error);
    if (o.error.find(" ms for a dial thread") != std::string::npos ||
        o.error.find(" ms of it waiting for a dial thread") != std::string::npos)
      ++waited;
  }
  CHECK(handshaking + queued == kStalled);
  // Those that never got a thread, or got one too late, say they waited.
  CHECK(waited >= kStalled - 4);

  REQUIRE(good_fut.wait_for(60s) == std::future_status::ready);
  auto g = good_fut.get();
  INFO(g.error << " after " << g.took.count() << " ms");
  CHECK(g.error == "");
  // It waited for the stalled ones to give their threads back.
  CHECK(g.took >= kTimeout / 2 - 200ms);
  CHECK(bl.connected("good@127.0.0.1"));
  CHECK(good.eval("nodes(hidden)") == "['beamlink@127.0.0.1']");
  lt.call([&] { later.reset(); });
}
