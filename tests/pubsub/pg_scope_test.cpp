// The pg scope core and the pubsub codecs: exact term shapes, as pg.erl and
// Phoenix.PubSub expect them.
#include <doctest/doctest.h>

#include <string>

#include "pubsub/pg_scope.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "pubsub/socket_broadcast.hpp"
#include "term/term.hpp"
#include "term_bytes.hpp"

using namespace beamlink;
using namespace beamlink::term;
using namespace beamlink::pubsub;
using namespace beamlink::test;

namespace {

const Pid kSelf{"beamlink@127.0.0.1", 1, 0, 7};
const Pid kWorker{"beamlink@127.0.0.1", 2, 0, 7};
const Pid kPeer{"t1@127.0.0.1", 40, 0, 3};     // t1's scope
const Pid kPeer2{"t1@127.0.0.1", 41, 0, 3};    // t1's scope after a restart
const Pid kMember{"t1@127.0.0.1", 50, 0, 3};   // a member on t1
const Pid kMember2{"t1@127.0.0.1", 51, 0, 3};  // another
const std::string kGroup = "Elixir.MyApp.PubSub.Adapter";

std::string discover(const Pid& p) {
  TermWriter w;
  w.tuple(2).atom("discover").pid(p);
  return bytes(w);
}

// {'$gen_cast', {sync, Peer, [{Group, [Pid]}]}} with one group (or none).
std::string sync(const Pid& peer, const std::string& group = "", std::vector<Pid> pids = {}) {
  TermWriter w;
  w.tuple(2).atom("$gen_cast").tuple(3).atom("sync").pid(peer);
  if (!group.empty()) {
    w.list(1).tuple(2).atom(group);
    if (!pids.empty()) {
      w.list(static_cast<int>(pids.size()));
      for (auto& p : pids) w.pid(p);
    }
    w.nil();
  }
  w.nil();
  return bytes(w);
}

std::string join_msg(const Pid& peer, const std::string& group, const Pid& pid) {
  TermWriter w;
  w.tuple(4).atom("join").pid(peer).atom(group).list(1).pid(pid).nil();
  return bytes(w);
}

std::string leave_msg(const Pid& peer, const Pid& pid, const std::string& group) {
  TermWriter w;
  w.tuple(4).atom("leave").pid(peer).list(1).pid(pid).nil().list(1).atom(group).nil();
  return bytes(w);
}

PgStep feed(PgScopeCore& core, const std::string& msg) {
  auto r = core.handle(std::span<const char>(msg.data(), msg.size()));
  REQUIRE_MESSAGE(r.ok(), (r.ok() ? "" : r.error().message));
  return std::move(*r);
}

}  // namespace

TEST_CASE("pg core announces with discover to the registered scope on each node") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  auto step = core.discover({"t1@127.0.0.1", "t2@127.0.0.1", kSelf.node});
  REQUIRE(step.out.size() == 2);  // never to ourselves
  CHECK_FALSE(step.out[0].to.has_value());
  CHECK(step.out[0].node == "t1@127.0.0.1");
  CHECK(step.out[1].node == "t2@127.0.0.1");
  CHECK(step.out[0].term == discover(kSelf));
}

TEST_CASE("pg core answers a discover with its sync and discovers an unknown peer back") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  core.join(kGroup, kWorker);
  auto step = feed(core, discover(kPeer));
  REQUIRE(step.out.size() == 2);
  CHECK(step.out[0].to == kPeer);
  CHECK(step.out[0].term == sync(kSelf, kGroup, {kWorker}));
  CHECK(step.out[1].to == kPeer);
  CHECK(step.out[1].term == discover(kSelf));
  // Known now: a second discover gets the sync only, as pg's handle_discover.
  auto again = feed(core, discover(kPeer));
  REQUIRE(again.out.size() == 1);
  CHECK(again.out[0].term == sync(kSelf, kGroup, {kWorker}));
  // OTP 26+'s {discover, Peer, Version} is the same.
  TermWriter v3;
  v3.tuple(3).atom("discover").pid(kPeer).integer(1);
  CHECK(feed(core, bytes(v3)).out.size() == 1);
}

TEST_CASE("pg core sync with no groups is an empty list") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  CHECK(core.sync_message() == sync(kSelf));
}

TEST_CASE("pg core takes a peer's sync as the whole truth about it") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  auto step = feed(core, sync(kPeer, kGroup, {kMember, kMember2}));
  CHECK(step.out.empty());  // pg does not answer a sync
  REQUIRE(step.changed.size() == 1);
  CHECK(step.changed[0] == "t1@127.0.0.1");
  auto m = core.members(kGroup);
  REQUIRE(m.count("t1@127.0.0.1") == 1);
  CHECK(m["t1@127.0.0.1"] == std::vector<Pid>{kMember, kMember2});
  CHECK(core.groups_of("t1@127.0.0.1") == std::vector<std::string>{kGroup});
  CHECK(core.scope_of("t1@127.0.0.1") == kPeer);
  // A later sync without the group removes it.
  auto empty = feed(core, sync(kPeer));
  CHECK(empty.changed.size() == 1);
  CHECK(core.members(kGroup).empty());
  CHECK(core.groups_of("t1@127.0.0.1").empty());
}

TEST_CASE("pg core applies join and leave only from a known scope") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  // Unknown peer: ignored, as pg does.
  CHECK(feed(core, join_msg(kPeer, kGroup, kMember)).changed.empty());
  CHECK(core.members(kGroup).empty());

  feed(core, sync(kPeer));
  auto j = feed(core, join_msg(kPeer, kGroup, kMember));
  CHECK(j.out.empty());
  CHECK(j.changed.size() == 1);
  CHECK(core.members(kGroup)["t1@127.0.0.1"] == std::vector<Pid>{kMember});

  // A single pid (not a list) is accepted too: pg allows pid() | [pid()].
  TermWriter single;
  single.tuple(4).atom("join").pid(kPeer).atom(kGroup).pid(kMember2);
  feed(core, bytes(single));
  CHECK(core.members(kGroup)["t1@127.0.0.1"].size() == 2);

  auto l = feed(core, leave_msg(kPeer, kMember, kGroup));
  CHECK(l.changed.size() == 1);
  CHECK(core.members(kGroup)["t1@127.0.0.1"] == std::vector<Pid>{kMember2});
  feed(core, leave_msg(kPeer, kMember2, kGroup));
  CHECK(core.members(kGroup).empty());
  CHECK(core.groups_of("t1@127.0.0.1").empty());
}

TEST_CASE("pg core sends join and leave to every known scope in pg's shapes") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  feed(core, sync(kPeer));
  auto j = core.join(kGroup, kWorker);
  REQUIRE(j.out.size() == 1);
  CHECK(j.out[0].to == kPeer);
  CHECK(j.out[0].term == join_msg(kSelf, kGroup, kWorker));
  CHECK(core.join(kGroup, kWorker).out.empty());  // already a member
  CHECK(core.local_groups() == std::vector<std::string>{kGroup});

  auto l = core.leave(kGroup, kWorker);
  REQUIRE(l.out.size() == 1);
  CHECK(l.out[0].term == leave_msg(kSelf, kWorker, kGroup));
  // Never a leave for a group we did not announce: pg's leave_remote does
  // maps:get(Group, ...) and would crash the remote scope.
  CHECK(core.leave(kGroup, kWorker).out.empty());
  CHECK(core.leave("Elixir.Other", kWorker).out.empty());
  CHECK(core.local_groups().empty());
}

TEST_CASE("pg core forgets a node that goes down and a scope that restarted") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  feed(core, sync(kPeer, kGroup, {kMember}));
  // The scope restarted: its discover comes from a new pid; the old groups go.
  auto d = feed(core, discover(kPeer2));
  CHECK(d.changed.size() == 1);
  REQUIRE(d.out.size() == 2);
  CHECK(d.out[0].to == kPeer2);
  CHECK(core.members(kGroup).empty());
  CHECK(core.scope_of("t1@127.0.0.1") == kPeer2);
  // Joins from the dead scope are ignored.
  CHECK(feed(core, join_msg(kPeer, kGroup, kMember)).changed.empty());

  feed(core, sync(kPeer2, kGroup, {kMember2}));
  auto down = core.node_down("t1@127.0.0.1");
  CHECK(down.changed.size() == 1);
  CHECK(core.members(kGroup).empty());
  CHECK(core.nodes().empty());
  CHECK(core.node_down("t1@127.0.0.1").changed.empty());
}

TEST_CASE("pg core refresh rediscovers and syncs known scopes") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  core.join(kGroup, kWorker);
  feed(core, sync(kPeer));
  auto r = core.refresh({"t1@127.0.0.1", "t2@127.0.0.1"});
  REQUIRE(r.out.size() == 3);
  CHECK(r.out[0].term == discover(kSelf));
  CHECK(r.out[1].term == discover(kSelf));
  CHECK(r.out[2].to == kPeer);
  CHECK(r.out[2].term == sync(kSelf, kGroup, {kWorker}));
}

TEST_CASE("pg core refuses what is not a pg message and changes nothing") {
  PgScopeCore core("Elixir.Phoenix.PubSub", kSelf);
  TermWriter w1;
  w1.tuple(2).atom("hello").pid(kPeer);
  TermWriter w2;
  w2.tuple(2).atom("$gen_cast").tuple(2).atom("sync").pid(kPeer);
  TermWriter w3;
  w3.tuple(4).atom("join").pid(kPeer).atom(kGroup).atom("notapid");
  TermWriter w4;
  w4.atom("discover");
  for (auto* w : {&w1, &w2, &w3, &w4}) {
    auto r = core.handle(w->bytes());
    CHECK_FALSE(r.ok());
    if (!r.ok()) CHECK(r.error().code == Errc::bad_term);
  }
  std::string truncated = sync(kPeer, kGroup, {kMember});
  truncated.resize(truncated.size() - 4);
  CHECK_FALSE(core.handle(std::span<const char>(truncated.data(), truncated.size())).ok());
  CHECK(core.nodes().empty());
}

TEST_CASE("pubsub group names and pool size follow Phoenix.PubSub.PG2") {
  CHECK(elixir_atom("MyApp.PubSub") == "Elixir.MyApp.PubSub");
  CHECK(elixir_atom("Elixir.MyApp.PubSub") == "Elixir.MyApp.PubSub");
  CHECK(pubsub_group("MyApp.PubSub", 1) == "Elixir.MyApp.PubSub.Adapter");
  CHECK(pubsub_group("MyApp.PubSub", 3) == "Elixir.MyApp.PubSub.Adapter_3");
  CHECK(pubsub_pool_size("MyApp.PubSub", {}) == 0);
  CHECK(pubsub_pool_size("MyApp.PubSub", {"Elixir.MyApp.PubSub.Adapter"}) == 1);
  CHECK(pubsub_pool_size("MyApp.PubSub",
                         {"Elixir.MyApp.PubSub.Adapter_3", "Elixir.MyApp.PubSub.Adapter",
                          "Elixir.MyApp.PubSub.Adapter_2", "Elixir.Other.PubSub.Adapter_9",
                          "Elixir.MyApp.PubSub.Adapter_x", "Elixir.MyApp.PubSub.Adapter_07"}) == 3);
}

TEST_CASE("pubsub forward_to_local round-trips") {
  TermWriter payload(false);
  payload.map(1).atom("status").atom("ok");
  auto b = socket_broadcast("room:1", "new_msg", payload.bytes());
  REQUIRE(b.ok());

  auto f = encode_forward_to_local("room:1", std::span<const char>(b->data(), b->size()),
                                   kChannelServer);
  REQUIRE(f.ok());
  TermWriter fx;
  fx.tuple(4)
      .atom("forward_to_local")
      .binary("room:1")
      .raw(std::span<const char>(b->data(), b->size()))
      .atom("Elixir.Phoenix.Channel.Server");
  CHECK(*f == bytes(fx));
  auto d = decode_forward_to_local(std::span<const char>(f->data(), f->size()));
  REQUIRE(d.ok());
  CHECK(d->topic == "room:1");
  CHECK(d->dispatcher == "Elixir.Phoenix.Channel.Server");
  CHECK(std::string(d->message.data(), d->message.size()) == *b);

  auto v1 = encode_forward_to_local_v1("nil", "room:1", payload.bytes());
  REQUIRE(v1.ok());
  TermWriter v1x;
  v1x.tuple(5)
      .atom("forward_to_local")
      .atom("nil")
      .atom("none")
      .binary("room:1")
      .raw(payload.bytes());
  CHECK(*v1 == bytes(v1x));
  auto not_v2 = decode_forward_to_local(std::span<const char>(v1->data(), v1->size()));
  REQUIRE_FALSE(not_v2.ok());
  CHECK(not_v2.error().code == Errc::unexpected_message);
}

TEST_CASE("pg_scope_name: an Elixir alias gets Elixir. - an Erlang atom is kept") {
  CHECK(*pubsub::pg_scope_name("Phoenix.PubSub") == "Elixir.Phoenix.PubSub");
  CHECK(*pubsub::pg_scope_name("Elixir.Phoenix.PubSub") == "Elixir.Phoenix.PubSub");
  CHECK(*pubsub::pg_scope_name("my_scope") == "my_scope");
  CHECK(pubsub::pg_scope_name("").error().code == Errc::invalid_argument);
  CHECK(pubsub::pg_scope_name(std::string(256, 'a')).error().code == Errc::invalid_argument);
  CHECK(pubsub::pg_scope_name(std::string(255, 'a')).ok());
}
