#include <doctest/doctest.h>

#include "dist/process_table.hpp"

using namespace beamlink;
using namespace beamlink::term;
using namespace beamlink::dist;

namespace {

Pid remote(std::uint32_t num, const std::string& node = "t1@127.0.0.1") {
  return Pid{node, num, 0, 7};
}

Ref ref(std::uint32_t n) {
  Ref r;
  r.node = "t1@127.0.0.1";
  r.creation = 7;
  r.len = 3;
  r.n = {n, 0, 0, 0, 0};
  return r;
}

}  // namespace

TEST_CASE("pids and refs carry the node and creation - and are unique") {
  ProcessTable t("bl@127.0.0.1", 42);
  auto a = t.make_pid(), b = t.make_pid();
  CHECK(a != b);
  CHECK(a.node == "bl@127.0.0.1");
  CHECK(a.creation == 42);
  CHECK(t.make_ref() != t.make_ref());
  for (int i = 0; i < 70000; ++i) (void)t.make_pid();  // wraps num into serial
  auto c = t.make_pid();
  CHECK(c.num <= 0x7fff);
  CHECK(c.serial <= 0x1fff);
}

TEST_CASE("names are unique and messages reach their handler") {
  ProcessTable t("bl@127.0.0.1", 1);
  int got = 0;
  auto p = t.register_name("echo", [&](const Pid&, const Envelope&) { ++got; });
  REQUIRE(p.ok());
  auto again = t.register_name("echo", [](const Pid&, const Envelope&) {});
  REQUIRE_FALSE(again.ok());
  CHECK(again.error().code == Errc::already_exists);
  Envelope e;
  CHECK(t.deliver("echo", e));
  CHECK(t.deliver(*p, e));
  CHECK_FALSE(t.deliver("nobody", e));
  CHECK(got == 2);
  CHECK(t.registered() == std::vector<std::string>{"echo"});
}

TEST_CASE("a process ending tells its links and monitors - names and pids are freed") {
  ProcessTable t("bl@127.0.0.1", 1);
  auto p = *t.register_name("svc", [](const Pid&, const Envelope&) {});
  CHECK(t.link(remote(1), p).empty());
  CHECK(t.monitor(remote(2), p, ref(1)).empty());
  CHECK(t.monitor(remote(3), std::string("svc"), ref(2)).empty());
  CHECK(t.link_count() == 1);
  CHECK(t.monitor_count() == 2);
  auto out = t.exit(p, atom_reason("shutdown"));
  REQUIRE(out.size() == 3);
  int exits = 0, downs_by_pid = 0, downs_by_name = 0;
  for (auto& o : out) {
    CHECK(o.reason == atom_reason("shutdown"));
    if (o.kind == Outgoing::Kind::exit) {
      ++exits;
      CHECK(o.to == remote(1));
    } else if (o.kind == Outgoing::Kind::monitor_p_exit) {
      if (std::holds_alternative<std::string>(o.from)) {
        ++downs_by_name;
        CHECK(std::get<std::string>(o.from) == "svc");
        CHECK(o.ref == ref(2));
      } else {
        ++downs_by_pid;
        CHECK(o.ref == ref(1));
      }
    }
  }
  CHECK(exits == 1);
  CHECK(downs_by_pid == 1);
  CHECK(downs_by_name == 1);
  CHECK_FALSE(t.whereis("svc"));
  CHECK_FALSE(t.exists(p));
  CHECK(t.exit(p, atom_reason("normal")).empty());
}

TEST_CASE("links and monitors on a missing process answer noproc at once") {
  ProcessTable t("bl@127.0.0.1", 1);
  Pid ghost{"bl@127.0.0.1", 999, 0, 1};
  auto l = t.link(remote(1), ghost);
  REQUIRE(l.size() == 1);
  CHECK(l[0].kind == Outgoing::Kind::exit);
  CHECK(l[0].reason == atom_reason("noproc"));
  auto m = t.monitor(remote(1), std::string("nobody"), ref(5));
  REQUIRE(m.size() == 1);
  CHECK(m[0].kind == Outgoing::Kind::monitor_p_exit);
  CHECK(std::get<std::string>(m[0].from) == "nobody");
  CHECK(m[0].ref == ref(5));
}

TEST_CASE("unlink - unlink_id (acknowledged) and demonitor") {
  ProcessTable t("bl@127.0.0.1", 1);
  auto p = t.spawn([](const Pid&, const Envelope&) {});
  (void)t.link(remote(1), p);
  (void)t.link(remote(2), p);
  t.unlink(remote(1), p);
  auto ack = t.unlink_id(77, remote(2), p);
  REQUIRE(ack.size() == 1);
  CHECK(ack[0].kind == Outgoing::Kind::unlink_id_ack);
  CHECK(ack[0].id == 77);
  CHECK(t.link_count() == 0);
  (void)t.monitor(remote(3), p, ref(9));
  t.demonitor(remote(4), p, ref(9));  // not the watcher: ignored
  CHECK(t.monitor_count() == 1);
  t.demonitor(remote(3), p, ref(9));
  CHECK(t.monitor_count() == 0);
}

TEST_CASE("a node going down drops its links and monitors and tells linked processes") {
  ProcessTable t("bl@127.0.0.1", 1);
  std::vector<Envelope::Kind> seen;
  std::string reason;
  auto p = t.spawn([&](const Pid&, const Envelope& e) {
    seen.push_back(e.kind);
    reason.assign(e.term.data(), e.term.size());
  });
  (void)t.link(remote(1, "gone@h"), p);
  (void)t.link(remote(2, "stays@h"), p);
  (void)t.monitor(remote(3, "gone@h"), p, ref(1));
  t.node_down("gone@h");
  CHECK(t.link_count() == 1);
  CHECK(t.monitor_count() == 0);
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == Envelope::Kind::exit);
  CHECK(reason == atom_reason("noconnection"));
}

TEST_CASE("a handler may end its own process while it runs") {
  ProcessTable t("bl@127.0.0.1", 1);
  ProcessTable* tp = &t;
  auto p = *t.register_name("once", [tp](const Pid& self, const Envelope&) {
    (void)tp->exit(self, atom_reason("normal"));
  });
  Envelope e;
  CHECK(t.deliver(p, e));
  CHECK_FALSE(t.exists(p));
}
