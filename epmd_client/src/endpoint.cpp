#include "epmd_client/endpoint.hpp"

namespace beamlink::epmd_client {

std::string Endpoint::str() const {
  return host + ":" + std::to_string(port);
}

}  // namespace beamlink::epmd_client
