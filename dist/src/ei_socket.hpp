// ei's user-supplied socket interface (ei_connect_xinit_ussi, "User Supplied
// Socket Implementation" in ei's manual), implemented with poll() so that ei
// never builds an fd_set: its own callbacks wait with select() and FD_SET,
// which write past the set for a descriptor above 1023 (a SIGSEGV once
// beamlink holds ~1,090 sockets). EI_SCLBK_FLG_FULL_IMPL tells ei the
// callbacks implement the timeouts themselves, so ei calls them directly.
//
// A dial thread that runs ei_xconnect_host_port_tmo through these callbacks
// opens a HandshakeRecording first: every callback then also honours its
// deadline (one deadline for the whole handshake, where ei restarts its
// timeout at each step), and every byte ei reads is kept, so the peer's
// challenge (its flags and its name, which ei does not report) can be read
// afterwards.
//
// Thread: the callbacks run on whichever thread calls ei; the recording is
// per thread.
#pragma once

#include <ei.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

namespace beamlink::dist {

// The callbacks (static storage; pass to ei_connect_xinit_ussi).
ei_socket_callbacks* poll_socket_callbacks();

// While alive, the callbacks on this thread record what they read and stop
// at `deadline`. Not nestable.
class HandshakeRecording {
 public:
  explicit HandshakeRecording(std::chrono::steady_clock::time_point deadline);
  ~HandshakeRecording();
  HandshakeRecording(const HandshakeRecording&) = delete;
  HandshakeRecording& operator=(const HandshakeRecording&) = delete;

  const std::string& received() const { return received_; }
  std::chrono::steady_clock::time_point deadline() const { return deadline_; }
  void append(const char* p, std::size_t n) { received_.append(p, n); }

 private:
  std::chrono::steady_clock::time_point deadline_;
  std::string received_;
};

// What the initiator's received handshake bytes say about the peer: the
// version 6 challenge ('N' Flags:8 Challenge:4 Creation:4 Nlen:2 Name) after
// the status message. nullopt when they hold no such challenge.
struct PeerChallenge {
  std::uint64_t flags = 0;
  std::string name;
};
std::optional<PeerChallenge> parse_received_challenge(const std::string& received);

}  // namespace beamlink::dist
