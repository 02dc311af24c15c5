// The initiating distribution handshake, run by ei on worker threads (ei's
// calls block): connect to a known address and port (found by our own epmd
// client) and run ei's handshake with a timeout. After the handshake ei never
// touches the fd again. (Inbound handshakes run on the loop in our own core:
// handshake_acceptor_core.hpp, listener.hpp.)
#pragma once

#include <ei.h>
#include <netinet/in.h>

#include <atomic>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/result.hpp"

namespace beamlink::dist {

// Initialises ei's identity for `node_name` (alive@host). ei copies the cookie.
// `cbs`: ei's user-supplied socket callbacks (poll_socket_callbacks() for
// the dialling identity); null: ei's own (select-based) ones.
Result<void> init_ei_identity(ei_cnode* ec, const std::string& node_name, const std::string& cookie,
                              std::uint32_t creation, ei_socket_callbacks* cbs = nullptr);

// What a version 6 handshake through ei left us: the fd, and the peer's
// flags and name read from its challenge (ei reports neither).
struct EiDialed {
  int fd = -1;
  std::uint64_t peer_flags = 0;
  std::string peer_name;
  bool challenge_seen = false;
};

// Blocking: TCP connect + handshake, bounded by timeout_ms for the whole of
// it when `ec` uses poll_socket_callbacks(). Returns the fd; refuses (and
// closes) a peer whose handshake name is not `peer`, as a BEAM does.
Result<EiDialed> handshake_initiate(const ei_cnode& ec, const std::string& peer, in_addr addr,
                                    std::uint16_t port, unsigned timeout_ms);

}  // namespace beamlink::dist
