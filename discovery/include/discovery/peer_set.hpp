// The peer set as DNS polls change it: the core of the NODE_DNS poller, with
// no I/O and no clock. Feed it each poll's result; it returns what changed.
//
// Rules:
// - A peer is PEER_NAME@IP for each IPv4 address the name resolves to.
// - PEER_NAME@IP is skipped only where it would be this node itself: its
//   alive part is this node's and IP is one of this node's addresses (or the
//   host part of its name). Otherwise an address of this host is a peer like
//   any other: a sidecar shares its pod's IP and epmd under another name, and
//   PEER_NAME@<own IP> is then the pod's own Elixir node. IPv6 addresses are
//   skipped: ei is IPv4-only.
// - Each address skipped for one of those reasons is reported once, when it
//   first appears (again if it leaves DNS and comes back).
// - A failed poll (timeout, SERVFAIL, NXDOMAIN, no server, ...) KEEPS the last
//   known set: a DNS hiccup must not drop the cluster (libcluster's DNS
//   strategy does). Failures are reported once per change of state: the
//   first failure, and then only when the kind of failure changes (timeout,
//   refused and I/O errors are one kind, "unreachable"; NXDOMAIN or SERVFAIL
//   are others); the next success reports `ok` again.
// - The first successful poll reports `ok` and the whole set as `added`.
//
// Not thread-safe; one owner.
#pragma once

#include <optional>
#include <set>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "discovery/address.hpp"

namespace beamlink::discovery {

struct PeerDiff {
  std::vector<std::string> added;    // PEER_NAME@IP, sorted
  std::vector<std::string> removed;  // PEER_NAME@IP, sorted
  bool empty() const { return added.empty() && removed.empty(); }
  bool operator==(const PeerDiff&) const = default;
};

enum class PollState {
  starting,  // no poll has completed
  ok,        // the last poll succeeded
  failing,   // the last poll failed; the set is the last known one
};

// An address that resolved but is not a peer.
struct Skipped {
  enum class Reason { own_address, ipv6 } reason;
  Address address;
  std::string message;  // for the log: the address and why
};

class PeerSet {
 public:
  // What one poll changed. Everything empty/nullopt: nothing to report.
  struct Outcome {
    std::vector<Skipped> skipped;      // newly seen skipped addresses
    PeerDiff diff;                     // empty on failure
    std::optional<PollState> entered;  // ok or failing, when to report it
    std::optional<Error> error;        // with entered == failing
  };

  // `own_addresses`: this node's IPs, as text (IPv4 or IPv6 literals; others
  // are ignored). `peer_name`: the alive part of the peers' node names.
  // `own_name`: this node's full name (alive@host); empty: no address is
  // this node (every address is a peer).
  PeerSet(std::string peer_name, const std::vector<std::string>& own_addresses,
          const std::string& own_name);

  // Whether PEER_NAME@`address` (canonical text) is this node itself.
  bool is_self(const std::string& address) const;
  // Whether `address` (canonical text) is one of this node's own addresses,
  // whoever PEER_NAME@address is (the doctor's sidecar check).
  bool is_own_address(const std::string& address) const { return own_.count(address) != 0; }

  Outcome update(const Result<std::vector<Address>>& resolved);

  const std::set<std::string>& peers() const { return peers_; }
  PollState state() const { return state_; }
  // The error of the last failed poll, when state() == failing.
  const std::optional<Error>& last_error() const { return last_error_; }
  const std::string& peer_name() const { return peer_name_; }

 private:
  std::string peer_name_;
  std::set<std::string> own_;    // canonical text
  bool self_alive_ = false;      // own_name's alive part is peer_name
  std::set<std::string> peers_;  // PEER_NAME@IP
  std::set<Address> skipped_;    // skipped in the last successful poll
  PollState state_ = PollState::starting;
  std::optional<Error> last_error_;
};

// The addresses an SRV lookup yields, for the poller: every target's
// addresses. A target that does not exist (NXDOMAIN / no A records: a pod
// that just left) is dropped; any other target failure (timeout, SERVFAIL)
// fails the whole result, so that the last known set is kept rather than
// shrunk by a DNS hiccup.
Result<std::vector<Address>> srv_addresses(const Result<std::vector<SrvTarget>>& srv);

}  // namespace beamlink::discovery
