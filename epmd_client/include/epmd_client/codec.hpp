// The epmd protocol as bytes, with no I/O: request encoders and incremental
// response decoders.
//
// Reference: ERTS User's Guide, "Distribution Protocol", section "EPMD
// Protocol". Every request travels as a 2-byte big-endian length followed by
// the request; responses carry no length prefix, so the decoders below work on
// "the bytes received so far" and say when they need more.
//
// Nothing here allocates beyond what a message needs, and every length read
// from the wire is bounds-checked before it is used. Pure functions: callable
// from any thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"

namespace beamlink::epmd_client {

// Message tags, named as the spec names them.
enum class Tag : uint8_t {
  names_req = 110,         // NAMES_REQ
  alive2_x_resp = 118,     // ALIVE2_X_RESP (OTP 23+, 32-bit creation)
  port2_resp = 119,        // PORT2_RESP
  alive2_req = 120,        // ALIVE2_REQ
  alive2_resp = 121,       // ALIVE2_RESP (older epmd, 16-bit creation)
  port_please2_req = 122,  // PORT_PLEASE2_REQ
};

// NodeType in ALIVE2_REQ / PORT2_RESP.
inline constexpr uint8_t node_type_hidden = 72;  // what ei registers as
inline constexpr uint8_t node_type_normal = 77;  // what erl registers as
// Protocol in ALIVE2_REQ / PORT2_RESP: 0 = TCP/IPv4.
inline constexpr uint8_t protocol_tcp_ipv4 = 0;

// epmd's limit on a node name (an atom: 255 characters, UTF-8 → 255*4 bytes;
// erts/epmd/src/epmd_int.h MAXSYMLEN). Also bounds the Extra field we accept.
inline constexpr std::size_t max_name_bytes = 255 * 4;

// The PORT2_RESP payload: how to reach a node.
struct NodeInfo {
  uint16_t port = 0;
  uint8_t node_type = 0;
  uint8_t protocol = 0;
  uint16_t highest_version = 0;
  uint16_t lowest_version = 0;
  std::string name;   // the alive part, as registered
  std::string extra;  // opaque; usually empty
  bool operator==(const NodeInfo&) const = default;
};

// One line of a NAMES_RESP.
struct NameEntry {
  std::string name;
  uint16_t port = 0;
  bool operator==(const NameEntry&) const = default;
};

// Checks an alive name (the part before '@') before it goes on the wire:
// non-empty, at most max_name_bytes, no '@', no control characters.
// Errc::invalid_argument with a message that says how to fix it.
[[nodiscard]] Result<void> check_alive_name(std::string_view alive);

// ALIVE2_REQ, length prefix included. Assumes `alive` passed
// check_alive_name and extra.size() <= max_name_bytes (both are asserted).
std::string encode_alive2_req(uint16_t port, std::string_view alive,
                              uint8_t node_type = node_type_hidden, uint16_t highest = 6,
                              uint16_t lowest = 6, std::string_view extra = {});
// PORT_PLEASE2_REQ, length prefix included. Same assumption on `alive`.
std::string encode_port_please2_req(std::string_view alive);
// NAMES_REQ, length prefix included: always the 3 bytes 00 01 6E.
std::string encode_names_req();

// Decoders over the bytes received so far (from the first response byte).
// Value: the decoded response. nullopt: need more bytes. Error: malformed
// (Errc::protocol_error, message says what), or epmd answered with a
// non-zero result (see each). Bytes past the end of the response are
// malformed: epmd sends nothing more on these connections.

// ALIVE2_X_RESP (tag 118, 4-byte creation) or ALIVE2_RESP (tag 121, 2-byte
// creation) → the creation. Result != 0 → Errc::already_exists (epmd's only
// refusal reason in practice is a name in use), source = the result byte.
[[nodiscard]] Result<std::optional<uint32_t>> decode_alive2_resp(std::span<const char> bytes);

// PORT2_RESP → the node. Result != 0 (2-byte response) → Errc::not_found,
// source = the result byte.
[[nodiscard]] Result<std::optional<NodeInfo>> decode_port2_resp(std::span<const char> bytes);

// NAMES_RESP, complete (epmd closes the connection after it): a 4-byte epmd
// port, then lines "name <name> at port <port>\n". An empty list is valid.
[[nodiscard]] Result<std::vector<NameEntry>> parse_names_resp(std::span<const char> complete);

}  // namespace beamlink::epmd_client
