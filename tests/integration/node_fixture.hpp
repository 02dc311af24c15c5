// A beamlink Node on a loop thread, registered with a test's own epmd, for
// integration tests against real erl nodes.
#pragma once

#include <doctest/doctest.h>

#include <future>
#include <memory>
#include <string>

#include "dist/node.hpp"
#include "loop_thread.hpp"
#include "support.hpp"

namespace beamlink::test {

inline dist::NodeConfig test_node_config(int epmd_port,
                                         const std::string& name = "beamlink@127.0.0.1") {
  dist::NodeConfig c;
  c.name = name;
  c.cookie = kCookie;
  c.epmd_port = static_cast<std::uint16_t>(epmd_port);
  // Port 0: the kernel picks a free one when the node binds (listen_port()
  // reads it back). A port picked beforehand could be taken by another
  // socket's connect() before the bind, as floods that cycle through the
  // ephemeral range showed ("no free distribution port").
  c.port_min = c.port_max = 0;
  c.connect_timeout = std::chrono::milliseconds(5000);
  c.accept_timeout = std::chrono::milliseconds(2000);
  // The flood tests exercise shedding at the cap: a small one.
  c.max_handshakes = 64;
  return c;
}

class TestNode {
 public:
  TestNode(LoopThread& lt, dist::NodeConfig cfg) : lt_(lt) {
    node_ = lt_.call([&] { return std::make_unique<dist::Node>(lt_.loop(), cfg); });
    auto ready = std::make_shared<std::promise<std::string>>();
    auto fut = ready->get_future();
    auto started = lt_.call([&] {
      auto r = node_->start([ready](Result<void> res) {
        ready->set_value(res ? std::string() : res.error().message);
      });
      return r ? std::string() : r.error().message;
    });
    REQUIRE_MESSAGE(started.empty(), started);
    REQUIRE(fut.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    auto err = fut.get();
    REQUIRE_MESSAGE(err.empty(), err);
  }
  ~TestNode() {
    // Stop, let the loop close the handles (a later iteration), then destroy.
    lt_.call([&] { node_->stop(); });
    lt_.call([&] { node_.reset(); });
  }
  dist::Node& operator*() { return *node_; }
  dist::Node* operator->() { return node_.get(); }
  const std::string& name() const { return node_->name(); }

  // Connects from the loop and waits for the outcome ("" on success).
  std::string connect(const std::string& peer) {
    auto done = std::make_shared<std::promise<std::string>>();
    auto fut = done->get_future();
    lt_.post([&, peer, done] {
      node_->connect(
          peer, [done](Result<void> r) { done->set_value(r ? std::string() : r.error().message); });
    });
    if (fut.wait_for(std::chrono::seconds(15)) != std::future_status::ready) return "timeout";
    return fut.get();
  }
  bool connected(const std::string& peer) {
    return lt_.call([&] { return node_->is_connected(peer); });
  }
  template <class F>
  auto on_loop(F f) {
    return lt_.call(std::move(f));
  }

 private:
  LoopThread& lt_;
  std::unique_ptr<dist::Node> node_;
};

// Registers `echo`: {From, Msg} -> From ! {echo, Msg}; {From, whoami} -> From ! {pid, Self}.
inline void install_echo(TestNode& node) {
  node.on_loop([&] {
    auto r =
        node->register_name("echo", [n = &*node](const term::Pid& self, const dist::Envelope& e) {
          if (e.kind != dist::Envelope::Kind::message) return;
          auto in = term::TermReader::from_external(e.term);
          if (!in) return;
          auto a = in->read_tuple_header();
          auto from = in->read_pid();
          if (!a || *a != 2 || !from) return;
          term::TermReader probe = *in;
          term::TermWriter reply;
          if (auto atom = probe.read_atom(); atom && *atom == "whoami") {
            reply.tuple(2).atom("pid").pid(self);
          } else {
            auto msg = in->read_raw();
            if (!msg) return;
            reply.tuple(2).atom("echo").raw(*msg);
          }
          (void)n->send(*from, reply.bytes());
        });
    REQUIRE(r.ok());
  });
}

}  // namespace beamlink::test
