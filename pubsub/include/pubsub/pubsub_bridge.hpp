// beamlink as a member of one Phoenix.PubSub (DESIGN.md, "Facts verified").
//
// Wire version 2.x (Phoenix.PubSub.PG2 adapter on `pg`): the scope is
// 'Elixir.Phoenix.PubSub' whatever the pubsub's name; for name NAME and pool
// size N the groups are 'Elixir.NAME.Adapter', 'Elixir.NAME.Adapter_2' …
// '_N', each member a worker registered locally under its group atom. A BEAM
// broadcast sends {forward_to_local, Topic, Message, Dispatcher} to the
// remote members of ONE group (phash2(self(), N)), so the bridge joins all N
// groups, each with its own worker registered under the group atom, and
// learns N from the peers' groups (the largest suffix seen; 1 until known).
// Publishing sends that tuple once per BEAM node that has the pubsub, to the
// registered name 'Elixir.NAME.Adapter' there.
//
// Wire version 1.1 (Phoenix.PubSub.PG2Server on pg2, OTP 21/22). Publish:
// the message {forward_to_local, Fastlane, none, Topic, Msg} goes once to
// the name 'Elixir.NAME' on every connected node (the PG2Server there
// dispatches it locally only, so it never comes back to us). Receive: the
// bridge has a member process of its own and makes it a member of the pg2
// group {phx, 'Elixir.NAME'} on every node by casting pg2's exchange,
//   {'$gen_cast', {exchange, OurNode, [[{phx, 'Elixir.NAME'}, [Member]]]}}
// to {pg2, Node}, on node up and every pg2_announce (pg2 sends its own
// exchange to visible nodes only, never to a hidden one; a restarted pg2
// starts empty; pg2 ignores a pid it already has). 1.1.2's broadcast then
// sends {forward_to_local, Fastlane, From, Topic, Msg} to the member, once
// per broadcast; the member accepts that and the 2.x shape. On OTP 24+ nodes
// there is no pg2: the cast goes nowhere and no 1.1 broadcast reaches us
// (phoenix_pubsub 1.1 there sends to visible nodes only).
//
// Version `automatic` finds out per node: a node whose scope has the pool's
// groups speaks 2.x; otherwise, once connected, the bridge asks it for
// erlang:registered() and a node that registers 'Elixir.NAME' but not
// 'Elixir.NAME.Adapter' speaks 1.1 (2.x registers both: the Registry under
// the name and the worker under the group). A node with neither has no such
// pubsub and gets nothing. A node found to speak 1.1 is announced to as
// for a 1.1 pubsub (above).
//
// The codec functions are the core without I/O; PubSubBridge is the adapter.
//
// Thread: the loop's thread only (not synchronised).
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "common/result.hpp"
#include "common/signal.hpp"
#include "common/topic_registry.hpp"
#include "pubsub/pg_scope.hpp"
#include "term/term.hpp"

namespace beamlink::dist {
class Node;
}  // namespace beamlink::dist

namespace beamlink::pubsub {

// "EWalletAPI.PubSub" or "Elixir.EWalletAPI.PubSub" -> "Elixir.EWalletAPI.PubSub".
std::string elixir_atom(std::string_view module);
// The 2.x pool group of `index` (1-based): "Elixir.NAME.Adapter", "..._2", …
std::string pubsub_group(std::string_view pubsub_name, int index);
// The pool size that `groups` (atom names of one node's pg groups) reveal
// for the pubsub: the largest index among its groups, 0 when it has none.
int pubsub_pool_size(std::string_view pubsub_name, const std::vector<std::string>& groups);

// A received {forward_to_local, Topic, Message, Dispatcher}; views into the
// message that was decoded.
struct ForwardToLocal {
  std::string_view topic;
  std::span<const char> message;  // the term, no version byte
  std::string dispatcher;
};
// Decodes a 2.x message (with version byte). Errors: unexpected_message for
// a term that is not a 4-tuple tagged forward_to_local (another message),
// bad_term for one with a malformed field or bytes that are no term.
Result<ForwardToLocal> decode_forward_to_local(std::span<const char> message);
// {forward_to_local, Topic, Message, Dispatcher} with version byte.
// message: an encoded term without version byte.
Result<std::string> encode_forward_to_local(std::string_view topic, std::span<const char> message,
                                            std::string_view dispatcher);
// 1.1: {forward_to_local, Fastlane, none, Topic, Message} with version byte.
Result<std::string> encode_forward_to_local_v1(std::string_view fastlane, std::string_view topic,
                                               std::span<const char> message);
// Decodes a 1.1 {forward_to_local, Fastlane, From, Topic, Message} (with
// version byte; From a pid or the atom none); `dispatcher` is the fastlane
// (nil or e.g. Elixir.Phoenix.Channel.Server). Errors as
// decode_forward_to_local. `from` (optional) gets From when it is a pid.
Result<ForwardToLocal> decode_forward_to_local_v1(std::span<const char> message,
                                                  std::optional<term::Pid>* from = nullptr);
// Either shape (2.x first, then 1.1), as a 1.1.2 PG2Server accepts them.
Result<ForwardToLocal> decode_forward_to_local_any(std::span<const char> message,
                                                   std::optional<term::Pid>* from = nullptr);
// 1.1's pg2 group {phx, 'Elixir.NAME'} (no version byte).
Result<std::string> encode_pg2_group(std::string_view pubsub_name);
// pg2's exchange cast joining `member` to {phx, 'Elixir.NAME'}, with version
// byte: {'$gen_cast', {exchange, OurNode, [[{phx, 'Elixir.NAME'}, [Member]]]}}.
Result<std::string> encode_pg2_exchange(std::string_view our_node, std::string_view pubsub_name,
                                        const term::Pid& member);

inline constexpr std::string_view kChannelServer = "Elixir.Phoenix.Channel.Server";

struct PubSubOptions {
  enum class Version { v2, v1_1, automatic };
  std::string name;  // "EWalletAPI.PubSub" (the Elixir module, with or without "Elixir.")
  Version version = Version::v2;
  std::string fastlane = "nil";                   // 1.1 only: the Fastlane atom of forward_to_local
  std::chrono::milliseconds probe_timeout{5000};  // automatic: the erlang:registered() rpc
  // 1.1 (and automatic nodes found to be 1.1): how often the pg2 exchange
  // is cast again to every such node (0: on node up only).
  std::chrono::milliseconds pg2_announce{5000};
};

// "2" / "2.x" -> v2, "1.1" -> v1_1, "auto" -> automatic; invalid_argument else.
Result<PubSubOptions::Version> parse_pubsub_version(std::string_view text);
std::string_view to_string(PubSubOptions::Version v);

// Where a publish goes on one node: the name `to` on `node`, sent as `from`.
// One per node, shared by every publish to it while it stays the same.
struct PubSubRoute {
  std::string node;
  term::Pid from;
  std::string to;
};

// One message of a publish: `message` (version byte first) along `route`.
// Every send of one publish to nodes of the same wire version shares the
// bytes.
struct PubSubSend {
  std::shared_ptr<const PubSubRoute> route;
  std::shared_ptr<const std::string> message;
};

// What a subscriber receives; views valid during the call only.
struct PubSubMessage {
  std::string_view topic;
  std::span<const char> message;  // the term, no version byte
  std::string_view dispatcher;
  const term::Pid* from = nullptr;  // the sender, when the control message named one
};

class PubSubBridge {
 public:
  using Subscriber = std::function<void(const PubSubMessage&)>;

  // 2.x: registers and joins the pool's workers through `scope` (which must
  // be a 'Elixir.Phoenix.PubSub' scope and outlive the bridge); 1.1: nothing
  // to register. Fails with already_exists when a group name is taken here.
  static Result<std::unique_ptr<PubSubBridge>> create(dist::Node& node, PgScope& scope,
                                                      PubSubOptions options);
  // Leaves the groups and ends the workers.
  ~PubSubBridge();
  PubSubBridge(const PubSubBridge&) = delete;
  PubSubBridge& operator=(const PubSubBridge&) = delete;

  const std::string& name() const { return atom_; }  // "Elixir.NAME"
  int pool_size() const { return static_cast<int>(workers_.size()); }
  std::vector<term::Pid> workers() const { return workers_; }
  // 1.1 and automatic: the process announced as the member of
  // {phx, 'Elixir.NAME'} (unset for 2.x).
  const std::optional<term::Pid>& pg2_member() const { return pg2_member_; }
  // Casts pg2's exchange now to every node that takes it (1.1: every
  // connected node; automatic: the nodes found to be 1.1).
  void announce_pg2();
  std::uint64_t pg2_announcements() const { return pg2_announcements_; }

  // Local subscribers of a topic, until the Subscription goes (it may
  // outlive the bridge). A callback may drop any subscription or destroy
  // nothing else. Each received broadcast reaches each subscriber of its
  // topic once.
  Subscription subscribe(const std::string& topic, Subscriber cb);

  // The BEAM nodes a publish goes to: 2.x, the connected nodes whose scope
  // has a member of the pubsub's first group; 1.1, every connected node;
  // automatic, the union of the 2.x nodes and the nodes found to be 1.1.
  std::vector<std::string> nodes() const;
  // automatic: the version found for a connected node, if any yet.
  std::optional<PubSubOptions::Version> version_of(const std::string& node) const;
  // Whether the bridge has heard enough from `node` to say if it has the
  // pubsub (2.x: its scope synced; automatic: the probe answered or its
  // groups arrived; 1.1: connected).
  bool knows(const std::string& node) const;

  // The sends of one publish, one per node of nodes(), nothing sent yet.
  // `message`: an encoded term without version byte. Fails with
  // not_connected when there is no such node.
  Result<std::vector<PubSubSend>> plan(std::string_view topic, std::span<const char> message,
                                       std::string_view dispatcher = kChannelServer) const;

  // plan() and send each now. Returns the nodes it was queued for; a node
  // whose send failed (queue full, gone) is left out and logged, and the
  // first such error is returned when no node took it.
  Result<std::vector<std::string>> publish(std::string_view topic, std::span<const char> message,
                                           std::string_view dispatcher = kChannelServer);

  // Entries the bridge holds for peers (automatic: probe results, reprobe
  // backoff and timers): 0 once every peer has gone.
  std::size_t peer_entries() const {
    return probed_.size() + reprobe_attempts_.size() + reprobe_timers_.size();
  }

  std::uint64_t received() const { return received_; }
  std::uint64_t ignored() const { return ignored_; }

 private:
  PubSubBridge(dist::Node& node, PgScope& scope, PubSubOptions options);
  Result<void> grow_to(int n);
  void on_worker_message(const dist::Envelope& e);
  void announce_pg2(const std::string& node);
  bool takes_pg2(const std::string& node) const;
  void probe(const std::string& node);
  // automatic: asks again later (1 s, doubling to 30 s) while connected.
  void schedule_reprobe(const std::string& node);
  void cancel_reprobe(const std::string& node);
  bool has_v2(const std::string& node) const;

  dist::Node& node_;
  PgScope& scope_;
  PubSubOptions options_;
  std::string atom_;
  std::string group1_;  // "Elixir.NAME.Adapter": where 2.x publishes go
  // plan()'s targets (node, speaks 1.1, the route last planned), recomputed
  // after a change.
  struct Target {
    std::string node;
    bool v1 = false;
    std::shared_ptr<const PubSubRoute> route;
  };
  mutable std::vector<Target> targets_;
  mutable bool targets_dirty_ = true;
  std::vector<term::Pid> workers_;
  TopicRegistry<const PubSubMessage&> subscribers_;
  int change_id_ = 0;
  Subscription node_up_;
  Subscription node_down_;
  Liveness alive_;                      // rpc callbacks and worker handlers watch it
  std::map<std::string, bool> probed_;  // automatic: node -> speaks 1.1 (false: not, or 2.x)
  std::map<std::string, int> reprobe_attempts_;
  struct ReprobeTimer;  // a timer and its peer, defined with the adapter
  std::map<std::string, std::unique_ptr<ReprobeTimer>> reprobe_timers_;
  std::optional<term::Pid> pg2_member_;
  std::string pg2_exchange_;  // the exchange cast, encoded once
  struct AnnounceTimer;       // the periodic pg2 announce, defined with the adapter
  std::unique_ptr<AnnounceTimer> announce_timer_;
  std::uint64_t pg2_announcements_ = 0;
  std::uint64_t received_ = 0;
  std::uint64_t ignored_ = 0;
};

}  // namespace beamlink::pubsub
