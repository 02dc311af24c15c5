// Where an epmd listens.
#pragma once

#include <cstdint>
#include <string>

namespace beamlink::epmd_client {

inline constexpr uint16_t default_epmd_port = 4369;

// host is an IPv4 literal ("127.0.0.1"); resolving names is discovery's job.
// A host that is not a literal is reported as Errc::invalid_argument by the
// calls that take an Endpoint.
struct Endpoint {
  std::string host = "127.0.0.1";
  uint16_t port = default_epmd_port;
  std::string str() const;  // "127.0.0.1:4369"
};

}  // namespace beamlink::epmd_client
