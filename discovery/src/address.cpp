#include "discovery/address.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>

namespace beamlink::discovery {

std::optional<Address> parse_address(const std::string& text) {
  char buf[INET6_ADDRSTRLEN];
  in_addr a4{};
  if (inet_pton(AF_INET, text.c_str(), &a4) == 1 && inet_ntop(AF_INET, &a4, buf, sizeof buf))
    return Address{Family::ipv4, buf};
  in6_addr a6{};
  if (inet_pton(AF_INET6, text.c_str(), &a6) == 1 && inet_ntop(AF_INET6, &a6, buf, sizeof buf))
    return Address{Family::ipv6, buf};
  return std::nullopt;
}

void normalize(std::vector<Address>& addresses) {
  std::sort(addresses.begin(), addresses.end());
  addresses.erase(std::unique(addresses.begin(), addresses.end()), addresses.end());
}

}  // namespace beamlink::discovery
