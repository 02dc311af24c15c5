#include "discovery/dns_error.hpp"

#include <ares.h>

namespace beamlink::discovery {

std::string describe_servers(std::span<const std::string> servers) {
  if (servers.empty()) return "the system's DNS servers";
  std::string s;
  for (const auto& one : servers) {
    if (!s.empty()) s += ", ";
    s += one;
  }
  return s;
}

Error dns_error(int status, const QueryContext& ctx) {
  const std::string name(ctx.name);
  const std::string what(ctx.what);
  const std::string at = describe_servers(ctx.servers);
  const std::string records = ctx.type == QueryType::srv ? "SRV" : "A or AAAA";
  switch (status) {
    case ARES_ENOTFOUND:
      return ares_error(
          Errc::not_found,
          what + " " + name + " does not exist (NXDOMAIN) — check the Service name and namespace",
          status);
    case ARES_ENODATA:
      return ares_error(
          Errc::not_found,
          what + " " + name + " exists but has no " + records + " records — " +
              (ctx.type == QueryType::srv
                   ? "check the Service's port names, or look up its A records instead of SRV"
                   : "is it a headless Service (clusterIP: None) with ready pods?"),
          status);
    case ARES_ETIMEOUT:
      return ares_error(Errc::timeout,
                        "no DNS server answered within " + std::to_string(ctx.elapsed.count()) +
                            " ms (asked " + at + " for " + name +
                            ") — is the DNS server reachable from here?",
                        status);
    case ARES_ECONNREFUSED:
      return ares_error(Errc::connection_refused,
                        "no DNS server at " + at + " (connection refused while asking for " + name +
                            ") — is the DNS server running?",
                        status);
    case ARES_ESERVFAIL:
      return ares_error(Errc::io_error,
                        "the DNS server (" + at + ") failed to answer for " + name +
                            " (SERVFAIL) — it could not reach its upstream or the zone is "
                            "broken; check the cluster DNS (CoreDNS/kube-dns)",
                        status);
    case ARES_EREFUSED:
      return ares_error(Errc::io_error,
                        "the DNS server (" + at + ") refused to answer for " + name +
                            " (REFUSED) — it does not serve that domain; use the cluster's DNS "
                            "server",
                        status);
    case ARES_EBADNAME:
      return ares_error(Errc::invalid_argument, what + " '" + name + "' is not a valid DNS name",
                        status);
    case ARES_EFORMERR:
    case ARES_EBADRESP:
    case ARES_ENOTIMP:
    case ARES_EBADQUERY:
      return ares_error(Errc::protocol_error,
                        "the DNS server (" + at + ") sent a bad or unusable answer for " + name +
                            " (" + ares_strerror(status) + ")",
                        status);
    case ARES_EOF:
      return ares_error(Errc::connection_closed,
                        "the DNS server (" + at + ") closed the connection while asked for " + name,
                        status);
    case ARES_ECANCELLED:
    case ARES_EDESTRUCTION:
      return ares_error(Errc::shutting_down, "the DNS query for " + name + " was cancelled",
                        status);
    default:
      return ares_error(
          Errc::io_error,
          "the DNS query for " + name + " (asked " + at + ") failed: " + ares_strerror(status),
          status);
  }
}

}  // namespace beamlink::discovery
