// Outbound handshakes with many descriptors open: ei's own socket callbacks
// wait with select() and FD_SET, which writes past the fd_set for a
// descriptor above 1023. beamlink dials through its poll() callbacks, so a
// node holding 1,100 and then 20,000 descriptors still connects to a real
// OTP 25 node (and to an OTP 22 one, through its own core).
#include <doctest/doctest.h>
#include <fcntl.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <future>
#include <vector>

#include "node_fixture.hpp"
#include "term/term_text.hpp"

using namespace beamlink;
using namespace beamlink::test;
using namespace std::chrono_literals;

namespace {

// Descriptors held open (on /dev/null) until destroyed.
class OpenFds {
 public:
  // Opens descriptors until the highest one held is at least `number`.
  void grow_to(int number) {
    while (highest() < number) {
      int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
      REQUIRE_MESSAGE(fd >= 0, "open /dev/null: " << std::strerror(errno));
      fds_.push_back(fd);
    }
  }
  ~OpenFds() {
    for (int fd : fds_) ::close(fd);
  }
  int highest() const { return fds_.empty() ? -1 : fds_.back(); }

 private:
  std::vector<int> fds_;
};

// Raises RLIMIT_NOFILE to `want` (the hard limit too when allowed: root).
// Returns the soft limit now in force.
rlim_t raise_fd_limit(rlim_t want) {
  rlimit rl{};
  ::getrlimit(RLIMIT_NOFILE, &rl);
  rlimit wanted{want, want > rl.rlim_max ? want : rl.rlim_max};
  if (::setrlimit(RLIMIT_NOFILE, &wanted) != 0) {
    rl.rlim_cur = rl.rlim_max;
    (void)::setrlimit(RLIMIT_NOFILE, &rl);
  }
  ::getrlimit(RLIMIT_NOFILE, &rl);
  return rl.rlim_cur;
}

std::string rpc_text(LoopThread& lt, TestNode& node, const std::string& peer,
                     const std::string& mod, const std::string& fun, const std::string& args) {
  auto done = std::make_shared<std::promise<std::string>>();
  auto fut = done->get_future();
  lt.post([&, done] {
    term::TermWriter a;
    if (auto r = term::parse_term(args, a); !r) return done->set_value("bad args");
    node->rpc(peer, mod, fun, a.bytes(), 30s, [done](Result<dist::RpcReply> r) {
      if (!r) return done->set_value("error: " + r.error().message);
      auto in = term::TermReader::from_external(r->term);
      if (!in) return done->set_value("undecodable");
      auto text = term::format_term(*in);
      done->set_value(text ? *text : "unformattable");
    });
  });
  if (fut.wait_for(60s) != std::future_status::ready) return "timeout";
  return fut.get();
}

}  // namespace

TEST_CASE("with 1100 and then 20000 descriptors open beamlink dials OTP 25 and rpcs it") {
  auto limit = raise_fd_limit(20500);
  REQUIRE_MESSAGE(limit >= 20000, "RLIMIT_NOFILE stays at " << limit);
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode t1(ErlNode::Options{"t1@127.0.0.1", kCookie, epmd.port(), 60, {}});
  ErlNode t2(ErlNode::Options{"t2@127.0.0.1", kCookie, epmd.port(), 60, {}});
  OpenFds fds;

  fds.grow_to(1100);
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  CHECK(rpc_text(lt, bl, "t1@127.0.0.1", "erlang", "node", "[]") == "'t1@127.0.0.1'");
  CHECK(t1.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");

  fds.grow_to(19900);  // 20,000 open with what the process holds
  REQUIRE(bl.connect("t2@127.0.0.1") == "");
  CHECK(rpc_text(lt, bl, "t2@127.0.0.1", "lists", "reverse", "[[1, 2, 3]]") == "[3,2,1]");
  CHECK(t2.eval("net_adm:ping('beamlink@127.0.0.1')") == "pong");
  // The first connection is still up.
  CHECK(rpc_text(lt, bl, "t1@127.0.0.1", "erlang", "node", "[]") == "'t1@127.0.0.1'");
}

TEST_CASE("with 20000 descriptors open beamlink dials OTP 22 with version 5") {
  auto limit = raise_fd_limit(20500);
  REQUIRE_MESSAGE(limit >= 20000, "RLIMIT_NOFILE stays at " << limit);
  Epmd epmd;
  LoopThread lt;
  TestNode bl(lt, test_node_config(epmd.port()));
  ErlNode::Options o{"t1@127.0.0.1", kCookie, epmd.port(), 60, {}};
  o.erl = otp22_erl();
  ErlNode t1(o);
  OpenFds fds;
  fds.grow_to(19900);
  REQUIRE(bl.connect("t1@127.0.0.1") == "");
  CHECK(rpc_text(lt, bl, "t1@127.0.0.1", "erlang", "node", "[]") == "'t1@127.0.0.1'");
}
