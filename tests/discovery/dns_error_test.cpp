// dns_error: each c-ares status becomes an Errc and a message saying what
// failed, where, and what to do.
#include "discovery/dns_error.hpp"

#include <ares.h>
#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace beamlink;
using namespace beamlink::discovery;
using namespace std::chrono_literals;

namespace {

const std::vector<std::string> servers{"127.0.0.1:5353"};

QueryContext ctx(QueryType type = QueryType::address) {
  QueryContext c;
  c.name = "ewallet.default.svc.cluster.local";
  c.type = type;
  c.servers = servers;
  c.elapsed = 1234ms;
  return c;
}

bool has(const Error& e, const std::string& s) {
  return e.message.find(s) != std::string::npos;
}

}  // namespace

TEST_CASE("discovery errors: NXDOMAIN is not_found naming the name and what to check") {
  Error e = dns_error(ARES_ENOTFOUND, ctx());
  CHECK(e.code == Errc::not_found);
  CHECK(e.source == ARES_ENOTFOUND);
  CHECK(e.domain == ErrorDomain::ares);
  CHECK(e.message ==
        "NODE_DNS name ewallet.default.svc.cluster.local does not exist (NXDOMAIN) — check the "
        "Service name and namespace");
}

TEST_CASE("discovery errors: no records is not_found and says which records") {
  Error a = dns_error(ARES_ENODATA, ctx());
  CHECK(a.code == Errc::not_found);
  CHECK(has(a, "no A or AAAA records"));
  CHECK(has(a, "headless"));
  Error s = dns_error(ARES_ENODATA, ctx(QueryType::srv));
  CHECK(has(s, "no SRV records"));
}

TEST_CASE("discovery errors: timeout says how long and whom it asked") {
  Error e = dns_error(ARES_ETIMEOUT, ctx());
  CHECK(e.code == Errc::timeout);
  CHECK(has(e, "no DNS server answered within 1234 ms"));
  CHECK(has(e, "127.0.0.1:5353"));
}

TEST_CASE("discovery errors: connection refused names the server") {
  Error e = dns_error(ARES_ECONNREFUSED, ctx());
  CHECK(e.code == Errc::connection_refused);
  CHECK(has(e, "no DNS server at 127.0.0.1:5353"));
}

TEST_CASE("discovery errors: SERVFAIL and REFUSED are io_error naming the rcode") {
  Error sf = dns_error(ARES_ESERVFAIL, ctx());
  CHECK(sf.code == Errc::io_error);
  CHECK(has(sf, "SERVFAIL"));
  Error rf = dns_error(ARES_EREFUSED, ctx());
  CHECK(rf.code == Errc::io_error);
  CHECK(has(rf, "REFUSED"));
}

TEST_CASE("discovery errors: other statuses map to their Errc") {
  CHECK(dns_error(ARES_EBADNAME, ctx()).code == Errc::invalid_argument);
  CHECK(dns_error(ARES_EFORMERR, ctx()).code == Errc::protocol_error);
  CHECK(dns_error(ARES_EBADRESP, ctx()).code == Errc::protocol_error);
  CHECK(dns_error(ARES_EOF, ctx()).code == Errc::connection_closed);
  CHECK(dns_error(ARES_EDESTRUCTION, ctx()).code == Errc::shutting_down);
  CHECK(dns_error(ARES_ECANCELLED, ctx()).code == Errc::shutting_down);
  Error other = dns_error(ARES_ENOMEM, ctx());
  CHECK(other.code == Errc::io_error);
  CHECK(other.source == ARES_ENOMEM);
}

TEST_CASE("discovery errors: SRV targets are named as such and no servers means the system ones") {
  QueryContext c = ctx();
  c.what = "SRV target";
  c.servers = {};
  CHECK(has(dns_error(ARES_ENOTFOUND, c), "SRV target ewallet"));
  CHECK(has(dns_error(ARES_ETIMEOUT, c), "the system's DNS servers"));
  CHECK(describe_servers(servers) == "127.0.0.1:5353");
}
