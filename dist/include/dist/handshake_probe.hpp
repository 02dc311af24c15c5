// A blocking handshake probe for `beamlink doctor`: connects to a peer's
// distribution port, runs HandshakeInitiatorCore over the socket with poll()
// and one deadline, and reports the stage reached and everything the peer
// said. Meant for a worker thread; it blocks for at most `timeout`.
//
// After a completed handshake the probe closes the socket at once: the peer
// sees a hidden node connect and go (nodeup, then nodedown), which is
// harmless. The probe answers an `alive` status with "false", so it never
// takes over a live connection of a node with the same name.
#pragma once

#include <netinet/in.h>

#include <chrono>
#include <cstdint>
#include <string>

#include "common/result.hpp"
#include "dist/handshake_core.hpp"

namespace beamlink::dist {

struct HandshakeReport {
  bool tcp_connected = false;  // false: the TCP connect itself failed (see outcome)
  // The stage reached: done on success; otherwise where it failed (failed_at()).
  HandshakeStage stage = HandshakeStage::send_name;
  Result<void> outcome;    // ok, or the finding: what happened and what to do
  HandshakeFindings peer;  // status, peer name, flags, version, creation, OTP hint, ack
  // The peer calls itself something other than the name we dialled.
  bool name_mismatch = false;
  std::string name_mismatch_message;  // what to fix (NODE_HOST, PEER_NAME)
  std::chrono::milliseconds elapsed{0};
};

// peer_node_expected: the name we meant to reach (e.g. ewallet@10.0.0.5);
// ip/port: where its distribution listener is (from epmd); our_name: the name
// we present; cookie: ours; our_flags: what we announce (tests pass fewer
// flags to see a peer refuse them); version: 6, or 5 for a peer whose epmd
// reports highest version 5 (OTP 21/22; our_flags is then dflag::v5_default
// unless given).
HandshakeReport probe_handshake(const std::string& peer_node_expected, in_addr ip,
                                std::uint16_t port, const std::string& our_name,
                                const std::string& cookie, std::chrono::milliseconds timeout,
                                std::uint64_t our_flags = dflag::probe_default, int version = 6);

// The name_mismatch finding for a peer that calls itself `actual` when we
// dialled `expected`; empty when they are equal.
std::string describe_name_mismatch(const std::string& expected, const std::string& actual);

}  // namespace beamlink::dist
