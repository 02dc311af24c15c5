// What a DNS lookup yields: addresses (A/AAAA) and SRV targets, as plain
// values. No I/O here; callable from any thread.
#pragma once

#include <compare>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/result.hpp"

namespace beamlink::discovery {

enum class Family { ipv4, ipv6 };

// One address from an A (ipv4) or AAAA (ipv6) record, as text in the
// canonical form inet_ntop gives ("10.0.0.1", "fd00::1").
struct Address {
  Family family = Family::ipv4;
  std::string text;
  auto operator<=>(const Address&) const = default;
};

// One SRV record (RFC 2782) and what its target resolved to.
struct SrvTarget {
  std::string target;  // the target host name, as the record has it
  uint16_t port = 0;
  uint16_t priority = 0;
  uint16_t weight = 0;
  std::vector<Address> addresses;  // the target's A/AAAA records, sorted
  std::optional<Error> error;      // set when resolving the target failed
};

// The canonical text of an IPv4 or IPv6 literal ("010.0.0.1" is not one), or
// nullopt when `text` is neither.
std::optional<Address> parse_address(const std::string& text);

// Sorted, without duplicates.
void normalize(std::vector<Address>& addresses);

}  // namespace beamlink::discovery
