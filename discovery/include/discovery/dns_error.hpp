// Turning a c-ares status into the project's Error: a code for programs and
// a message that says what failed, where, and what to do. No I/O; callable
// from any thread. The c-ares status is kept in Error::source.
//
//   ARES_ENOTFOUND (NXDOMAIN)       not_found           the name does not exist
//   ARES_ENODATA                    not_found           it exists, with no records of the type
//   ARES_ETIMEOUT                   timeout             no server answered
//   ARES_ECONNREFUSED               connection_refused  nothing listens at the server address
//   ARES_ESERVFAIL, ARES_EREFUSED   io_error            the server answered with that rcode
//   ARES_EBADNAME                   invalid_argument
//   ARES_EFORMERR, EBADRESP, ENOTIMP, EBADQUERY  protocol_error
//   ARES_EOF                        connection_closed
//   ARES_ECANCELLED, EDESTRUCTION   shutting_down
//   anything else                   io_error (with c-ares's own text)
#pragma once

#include <chrono>
#include <span>
#include <string>
#include <string_view>

#include "common/result.hpp"

namespace beamlink::discovery {

enum class QueryType { address, srv };  // A + AAAA, or SRV

// Where a failed query was going, for the message.
struct QueryContext {
  std::string_view what = "NODE_DNS name";  // how to call the name: "NODE_DNS name", "SRV target"
  std::string_view name;
  QueryType type = QueryType::address;
  std::span<const std::string> servers;  // "IP:PORT" each; empty: "the system's DNS servers"
  std::chrono::milliseconds elapsed{0};  // from the query's start to its failure
};

// `status` is an ares status (ARES_E*), not ARES_SUCCESS.
Error dns_error(int status, const QueryContext& ctx);

// "127.0.0.1:5353, 10.0.0.10:53", or "the system's DNS servers" when empty.
std::string describe_servers(std::span<const std::string> servers);

}  // namespace beamlink::discovery
