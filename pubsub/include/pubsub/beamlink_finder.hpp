// Finds the other beamlinks of one cluster from what its BEAM nodes already
// know, not from a registry of our own (DESIGN.md, "Several beamlinks in one
// cluster").
//
// Every beamlink that bridges a Phoenix.PubSub 2.x joins the pubsub's pg
// groups on every pod, so each pod lists the beamlinks' workers among the
// members of 'Elixir.NAME.Adapter'. Hidden nodes do not find each other by
// themselves; a beamlink asks the pods instead:
//
//   rpc erlang:nodes([hidden])              the pod's hidden connections
//   rpc pg:get_members(Scope, Group)        per configured group
//
// and the nodes of the members that the pod sees as hidden (pods are
// visible to each other) are the other beamlinks (relays, sidecars,
// `beamlink subscribe`). hidden_member_nodes() is that rule without I/O.
//
// BeamlinkFinder polls every `interval` (and on poll_now()): it asks each
// connected BEAM node (`is_beam`: the pods found by DNS or --connect; never
// another beamlink, which has no rex) and reports how the set of beamlinks
// changed. A node none of the pods that answered lists any more is removed
// (a beamlink that went away: the pods drop its members when its connection
// goes); a poll in which no pod answered changes nothing.
//
// Contract: the loop's thread only. on_change runs on a later loop
// iteration, never from inside start(), poll_now() or stop(); it may call
// stop() or destroy the finder. The finder must be destroyed (or stopped)
// before the Node; the timer is closed with uv_close: run the loop once more
// before uv_loop_close.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "pubsub/pubsub_bridge.hpp"
#include "term/term.hpp"

namespace beamlink::dist {
class Node;
}  // namespace beamlink::dist

namespace beamlink::pubsub {

// The nodes of `members` that `hidden` (the pod's erlang:nodes(hidden)) lists,
// without `self`.
std::set<std::string> hidden_member_nodes(const std::vector<term::Pid>& members,
                                          const std::vector<std::string>& hidden,
                                          const std::string& self);
// An rpc reply (with version byte) that is a proper list of pids / atoms.
// bad_term for anything else ({badrpc, _} included).
Result<std::vector<term::Pid>> decode_pid_list(std::span<const char> reply);
Result<std::vector<std::string>> decode_atom_list(std::span<const char> reply);

// The groups whose hidden members are the other beamlinks: the first pool
// group of every pubsub that is not 1.1 (1.1 rides on pg2, which has no
// scope to ask).
std::vector<std::string> finder_groups(const std::vector<PubSubOptions>& pubsubs);

struct BeamlinkFinderOptions {
  std::string scope = "Elixir.Phoenix.PubSub";  // the pg scope (an atom's text)
  std::vector<std::string> groups;              // atom texts: "Elixir.NAME.Adapter", ...
  std::chrono::milliseconds interval{5000};     // POLL_INTERVAL
  std::chrono::milliseconds rpc_timeout{5000};
};

class BeamlinkFinder {
 public:
  struct Diff {
    std::vector<std::string> added;    // sorted
    std::vector<std::string> removed;  // sorted
  };
  using IsBeam = std::function<bool(const std::string& node)>;
  using ChangeCallback = std::function<void(const Diff&)>;

  // `node` must outlive the finder. Nothing is asked before start().
  BeamlinkFinder(dist::Node& node, BeamlinkFinderOptions options, IsBeam is_beam,
                 ChangeCallback on_change);
  ~BeamlinkFinder();
  BeamlinkFinder(const BeamlinkFinder&) = delete;
  BeamlinkFinder& operator=(const BeamlinkFinder&) = delete;

  // The first poll on the next loop iteration, then every interval. Fails
  // when the timer cannot be made. Only the first call counts.
  [[nodiscard]] Result<void> start();
  // Polls at once (after the poll in flight, if any).
  void poll_now();
  // No more polls and no more events. Idempotent.
  void stop();

  // The other beamlinks known now.
  const std::set<std::string>& found() const { return found_; }
  std::uint64_t polls_completed() const { return polls_completed_; }
  // A poll is waiting for its answers (it completes later).
  bool polling() const { return in_flight_; }

 private:
  struct Timer;
  struct Poll;
  void poll();
  void finished(Poll& p);

  dist::Node& node_;
  BeamlinkFinderOptions options_;
  IsBeam is_beam_;
  ChangeCallback on_change_;
  std::unique_ptr<Timer> timer_;
  std::set<std::string> found_;
  bool started_ = false;
  bool stopped_ = false;
  bool in_flight_ = false;
  bool again_ = false;
  std::uint64_t polls_completed_ = 0;
  Liveness alive_;
};

}  // namespace beamlink::pubsub
