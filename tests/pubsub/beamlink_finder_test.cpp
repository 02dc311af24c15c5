// The rule by which beamlinks find each other (the hidden members of the
// pubsub's groups, as a pod lists them) and the decoders of the pod's rpc
// replies; and two beamlink scope cores exchanging membership as pg does.
#include "pubsub/beamlink_finder.hpp"

#include <doctest/doctest.h>

#include <string>

#include "pubsub/pg_scope.hpp"
#include "term/term.hpp"
#include "term_bytes.hpp"

using namespace beamlink;
using namespace beamlink::term;
using namespace beamlink::pubsub;
using namespace beamlink::test;

TEST_CASE("beamlink finder: hidden members other than this node are the other beamlinks") {
  std::vector<Pid> members = {{"ewallet@10.0.0.11", 1, 0, 1},
                              {"beamlink@10.0.0.2", 5, 0, 1},
                              {"beamlink@10.0.0.3", 5, 0, 1},
                              {"beamlink@10.0.0.3", 6, 0, 1},
                              {"ewallet@10.0.0.12", 1, 0, 1}};
  std::vector<std::string> hidden = {"beamlink@10.0.0.2", "beamlink@10.0.0.3",
                                     "remsh@10.0.0.11"};  // a remote shell: no member
  CHECK(hidden_member_nodes(members, hidden, "beamlink@10.0.0.2") ==
        std::set<std::string>{"beamlink@10.0.0.3"});
  // A visible member (another pod) is never one, even if this node is alone.
  CHECK(hidden_member_nodes(members, {}, "x@y").empty());
}

TEST_CASE("beamlink finder: rpc replies decode as lists of pids and atoms or fail") {
  TermWriter pids;
  pids.list(2).pid(Pid{"a@h", 1, 2, 3}).pid(Pid{"b@h", 4, 5, 6}).nil();
  auto p = decode_pid_list(span(bytes(pids)));
  REQUIRE(p);
  REQUIRE(p->size() == 2);
  CHECK((*p)[1].node == "b@h");
  TermWriter empty;
  empty.nil();
  REQUIRE(decode_pid_list(span(bytes(empty))));
  CHECK(decode_pid_list(span(bytes(empty)))->empty());
  TermWriter atoms;
  atoms.list(2).atom("x@h").atom("y@h").nil();
  auto a = decode_atom_list(span(bytes(atoms)));
  REQUIRE(a);
  CHECK(*a == std::vector<std::string>{"x@h", "y@h"});
  // {badrpc, nodedown} and a list of the wrong kind fail.
  TermWriter badrpc;
  badrpc.tuple(2).atom("badrpc").atom("nodedown");
  CHECK(decode_pid_list(span(bytes(badrpc))).error().code == Errc::bad_term);
  CHECK(decode_atom_list(span(bytes(pids))).error().code == Errc::bad_term);
}

TEST_CASE("beamlink finder: two beamlink scopes exchange membership as pg scopes do") {
  const Pid a_scope{"beamlink@10.0.0.2", 1, 0, 1}, a_worker{"beamlink@10.0.0.2", 2, 0, 1};
  const Pid b_scope{"beamlink@10.0.0.3", 1, 0, 1}, b_worker{"beamlink@10.0.0.3", 2, 0, 1};
  const std::string group = "Elixir.My.PubSub.Adapter";
  PgScopeCore a("Elixir.Phoenix.PubSub", a_scope), b("Elixir.Phoenix.PubSub", b_scope);
  (void)a.join(group, a_worker);
  (void)b.join(group, b_worker);
  // a connected to b: a discovers; b answers with its sync and a discover
  // (a is new to it); a answers that discover with its own sync.
  auto s1 = a.discover({"beamlink@10.0.0.3"});
  REQUIRE(s1.out.size() == 1);
  CHECK_FALSE(s1.out[0].to.has_value());  // to {Scope, Node}
  auto s2 = b.handle(span(s1.out[0].term));
  REQUIRE(s2);
  REQUIRE(s2->out.size() == 2);
  for (auto& o : s2->out) CHECK(*o.to == a_scope);
  for (auto& o : s2->out) {
    auto s3 = a.handle(span(o.term));
    REQUIRE(s3);
    for (auto& back : s3->out) REQUIRE(b.handle(span(back.term)));
  }
  CHECK(a.members(group) ==
        std::map<std::string, std::vector<Pid>>{{"beamlink@10.0.0.3", {b_worker}}});
  CHECK(b.members(group) ==
        std::map<std::string, std::vector<Pid>>{{"beamlink@10.0.0.2", {a_worker}}});
  // b goes away: a forgets its members.
  auto gone = a.node_down("beamlink@10.0.0.3");
  CHECK(gone.changed == std::vector<std::string>{"beamlink@10.0.0.3"});
  CHECK(a.members(group).empty());
}
