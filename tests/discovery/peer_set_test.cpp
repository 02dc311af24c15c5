// PeerSet, the core of the NODE_DNS poller: diffs, this node itself and IPv6
// skipped, failures keeping the set and reported once per change of state.
#include "discovery/peer_set.hpp"

#include <ares.h>
#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace beamlink;
using namespace beamlink::discovery;

namespace {

Address v4(const std::string& s) {
  return Address{Family::ipv4, s};
}
Address v6(const std::string& s) {
  return Address{Family::ipv6, s};
}
Result<std::vector<Address>> ok(std::vector<Address> a) {
  return a;
}
Result<std::vector<Address>> fail(Errc code, int source, std::string msg = "failed") {
  return ares_error(code, std::move(msg), source);
}
using Strings = std::vector<std::string>;

}  // namespace

TEST_CASE("discovery peer set: first successful poll reports the whole set as added and ok") {
  PeerSet set("ewallet", {}, "beamlink@10.0.0.99");
  CHECK(set.state() == PollState::starting);
  auto out = set.update(ok({v4("10.0.0.3"), v4("10.0.0.1"), v4("10.0.0.2")}));
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.1", "ewallet@10.0.0.2", "ewallet@10.0.0.3"});
  CHECK(out.diff.removed.empty());
  REQUIRE(out.entered.has_value());
  CHECK(*out.entered == PollState::ok);
  CHECK(set.state() == PollState::ok);
  CHECK(set.peers().size() == 3);
}

TEST_CASE("discovery peer set: an empty first answer is ok with no diff") {
  PeerSet set("ewallet", {}, "beamlink@10.0.0.99");
  auto out = set.update(ok({}));
  CHECK(out.diff.empty());
  CHECK(out.entered == PollState::ok);
}

TEST_CASE("discovery peer set: later polls report only what was added and removed") {
  PeerSet set("ewallet", {}, "beamlink@10.0.0.99");
  (void)set.update(ok({v4("10.0.0.1"), v4("10.0.0.2")}));
  auto same = set.update(ok({v4("10.0.0.2"), v4("10.0.0.1")}));
  CHECK(same.diff.empty());
  CHECK_FALSE(same.entered.has_value());

  auto out = set.update(ok({v4("10.0.0.2"), v4("10.0.0.3")}));
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.3"});
  CHECK(out.diff.removed == Strings{"ewallet@10.0.0.1"});
  CHECK_FALSE(out.entered.has_value());
  CHECK(set.peers() == std::set<std::string>{"ewallet@10.0.0.2", "ewallet@10.0.0.3"});
}

TEST_CASE("discovery peer set: peers use the configured peer name") {
  PeerSet set("wallet_api", {}, "beamlink@10.0.0.99");
  auto out = set.update(ok({v4("192.168.1.7")}));
  CHECK(out.diff.added == Strings{"wallet_api@192.168.1.7"});
}

TEST_CASE("discovery peer set: PEER_NAME at an own address that is this node is skipped once") {
  PeerSet set("ewallet", {"10.0.0.2", "not-an-ip"}, "ewallet@10.0.0.2");
  auto out = set.update(ok({v4("10.0.0.1"), v4("10.0.0.2")}));
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.1"});
  REQUIRE(out.skipped.size() == 1);
  CHECK(out.skipped[0].reason == Skipped::Reason::own_address);
  CHECK(out.skipped[0].address.text == "10.0.0.2");

  auto again = set.update(ok({v4("10.0.0.1"), v4("10.0.0.2")}));
  CHECK(again.skipped.empty());
  CHECK(again.diff.empty());
}

TEST_CASE("discovery peer set: own address given in a non canonical form still matches") {
  PeerSet set("ewallet", {"fd00:0:0:0:0:0:0:1"}, "ewallet@somehost");
  auto out = set.update(ok({v6("fd00::1"), v4("10.0.0.1")}));
  REQUIRE(out.skipped.size() == 1);
  CHECK(out.skipped[0].reason == Skipped::Reason::own_address);
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.1"});
}

TEST_CASE("discovery peer set: in a sidecar the pod's own node at an own address is a peer") {
  // beamlink@10.0.0.2 shares the pod (IP and epmd) with ewallet@10.0.0.2.
  PeerSet set("ewallet", {"10.0.0.2"}, "beamlink@10.0.0.2");
  auto out = set.update(ok({v4("10.0.0.1"), v4("10.0.0.2")}));
  CHECK(out.skipped.empty());
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.1", "ewallet@10.0.0.2"});
  CHECK(set.is_own_address("10.0.0.2"));
  CHECK_FALSE(set.is_self("10.0.0.2"));
}

TEST_CASE("discovery peer set: the host part of this node's name counts as its address") {
  PeerSet set("ewallet", {}, "ewallet@10.0.0.3");
  auto out = set.update(ok({v4("10.0.0.1"), v4("10.0.0.3")}));
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.1"});
  REQUIRE(out.skipped.size() == 1);
  CHECK(out.skipped[0].message.find("ewallet@10.0.0.3 is this node itself") != std::string::npos);
  CHECK(set.is_self("10.0.0.3"));
}

TEST_CASE(
    "discovery peer set: IPv6 addresses are skipped with the reason and reported once per "
    "appearance") {
  PeerSet set("ewallet", {}, "beamlink@10.0.0.99");
  auto out = set.update(ok({v4("10.0.0.1"), v6("fd00::1")}));
  CHECK(out.diff.added == Strings{"ewallet@10.0.0.1"});
  REQUIRE(out.skipped.size() == 1);
  CHECK(out.skipped[0].reason == Skipped::Reason::ipv6);
  CHECK(out.skipped[0].message.find("fd00::1") != std::string::npos);
  CHECK(out.skipped[0].message.find("ei is IPv4-only") != std::string::npos);

  CHECK(set.update(ok({v4("10.0.0.1"), v6("fd00::1")})).skipped.empty());
  CHECK(set.update(ok({v4("10.0.0.1")})).skipped.empty());                     // it left
  CHECK(set.update(ok({v4("10.0.0.1"), v6("fd00::1")})).skipped.size() == 1);  // back
}

TEST_CASE(
    "discovery peer set: a failed poll keeps the set and is reported once per change of state") {
  PeerSet set("ewallet", {}, "beamlink@10.0.0.99");
  (void)set.update(ok({v4("10.0.0.1"), v4("10.0.0.2")}));

  auto f1 = set.update(fail(Errc::timeout, ARES_ETIMEOUT, "no DNS server answered within 5 ms"));
  CHECK(f1.diff.empty());
  REQUIRE(f1.entered.has_value());
  CHECK(*f1.entered == PollState::failing);
  REQUIRE(f1.error.has_value());
  CHECK(f1.error->code == Errc::timeout);
  CHECK(set.state() == PollState::failing);
  CHECK(set.peers().size() == 2);

  // The same failure again (even with another elapsed time): nothing to report.
  auto f2 = set.update(fail(Errc::timeout, ARES_ETIMEOUT, "no DNS server answered within 7 ms"));
  CHECK_FALSE(f2.entered.has_value());
  CHECK(f2.diff.empty());
  CHECK(set.peers().size() == 2);

  // An unreachable server answers "refused" to some polls and nothing to
  // others: one kind of failure, not reported again.
  auto f2b = set.update(fail(Errc::connection_refused, ARES_ECONNREFUSED));
  CHECK_FALSE(f2b.entered.has_value());
  auto f2c = set.update(fail(Errc::timeout, ARES_ETIMEOUT));
  CHECK_FALSE(f2c.entered.has_value());

  // Another kind of failure: reported.
  auto f3 = set.update(fail(Errc::not_found, ARES_ENOTFOUND));
  CHECK(f3.entered == PollState::failing);
  CHECK(f3.error->code == Errc::not_found);
  CHECK(set.last_error()->code == Errc::not_found);
  CHECK(set.peers().size() == 2);

  // Back: ok once, diff against the kept set.
  auto back = set.update(ok({v4("10.0.0.2"), v4("10.0.0.3")}));
  CHECK(back.entered == PollState::ok);
  CHECK(back.diff.added == Strings{"ewallet@10.0.0.3"});
  CHECK(back.diff.removed == Strings{"ewallet@10.0.0.1"});
  CHECK_FALSE(set.last_error().has_value());
}

TEST_CASE("discovery peer set: failing before any success reports failing and then the first set") {
  PeerSet set("ewallet", {}, "beamlink@10.0.0.99");
  auto f = set.update(fail(Errc::connection_refused, ARES_ECONNREFUSED));
  CHECK(f.entered == PollState::failing);
  CHECK(set.peers().empty());
  auto s = set.update(ok({v4("10.0.0.1")}));
  CHECK(s.entered == PollState::ok);
  CHECK(s.diff.added == Strings{"ewallet@10.0.0.1"});
}

TEST_CASE(
    "discovery peer set: srv_addresses drops vanished targets and fails on other target errors") {
  std::vector<SrvTarget> targets(3);
  targets[0].target = "ewallet-0.ewallet";
  targets[0].addresses = {v4("10.0.0.2")};
  targets[1].target = "ewallet-1.ewallet";
  targets[1].addresses = {v4("10.0.0.1"), v4("10.0.0.2")};
  targets[2].target = "ewallet-2.ewallet";
  targets[2].error = ares_error(Errc::not_found, "gone", ARES_ENOTFOUND);
  auto all = srv_addresses(targets);
  REQUIRE(all.ok());
  CHECK(*all == std::vector<Address>{v4("10.0.0.1"), v4("10.0.0.2")});

  targets[2].error = ares_error(Errc::timeout, "slow", ARES_ETIMEOUT);
  auto failed = srv_addresses(targets);
  REQUIRE_FALSE(failed.ok());
  CHECK(failed.error().code == Errc::timeout);

  auto whole = srv_addresses(Result<std::vector<SrvTarget>>(make_error(Errc::not_found, "x")));
  CHECK_FALSE(whole.ok());
}

TEST_CASE("discovery peer set: parse_address gives canonical text and the family") {
  CHECK(parse_address("10.0.0.1") == Address{Family::ipv4, "10.0.0.1"});
  CHECK(parse_address("FD00:0::1") == Address{Family::ipv6, "fd00::1"});
  CHECK_FALSE(parse_address("ewallet").has_value());
  CHECK_FALSE(parse_address("10.0.0").has_value());
}
